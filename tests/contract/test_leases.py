"""Concurrency leases: a limit of slots, idempotent ids, release, expiry."""

from __future__ import annotations

from dataclasses import astuple

from pytest import approx

from gateway.clock import FakeClock
from gateway.storage import CounterBackend, Lease, OpResult, Release, identity_key

SLOTS = identity_key("user-1", "concurrency")


async def lease(backend: CounterBackend, lease_id: str, ttl: float = 600) -> OpResult:
    return (await backend.admit([Lease(SLOTS, limit=3, lease_id=lease_id, ttl=ttl)])).results[0]


async def test_limit_of_concurrent_leases(backend: CounterBackend) -> None:
    assert [(await lease(backend, f"r{i}")).remaining for i in range(3)] == [2, 1, 0]
    r = await lease(backend, "r3")
    assert astuple(r) == approx((False, 3, 0, 0, 600.0, 0))


async def test_same_lease_id_is_idempotent(backend: CounterBackend) -> None:
    for i in range(3):
        await lease(backend, f"r{i}")
    r = await lease(backend, "r1")
    assert (r.allowed, r.remaining) == (True, 0)
    assert not (await lease(backend, "r9")).allowed


async def test_release_frees_a_slot(backend: CounterBackend) -> None:
    for i in range(3):
        await lease(backend, f"r{i}")
    await backend.settle([Release(SLOTS, "r1"), Release(SLOTS, "unknown")])
    r = await lease(backend, "r3")
    assert (r.allowed, r.remaining) == (True, 0)


async def test_leases_expire_after_ttl(backend: CounterBackend, clock: FakeClock) -> None:
    await lease(backend, "r0", ttl=30)
    clock.advance(10)
    await lease(backend, "r1", ttl=30)
    await lease(backend, "r2", ttl=30)
    r = await lease(backend, "r3", ttl=30)
    assert not r.allowed
    assert r.retry_after == approx(20.0)  # r0 expires first
    clock.advance(20)
    r = await lease(backend, "r3", ttl=30)
    assert (r.allowed, r.remaining) == (True, 0)
    clock.advance(10)
    assert (await lease(backend, "r4")).remaining == 1


async def test_renewing_a_lease_extends_it(backend: CounterBackend, clock: FakeClock) -> None:
    await lease(backend, "r0", ttl=30)
    clock.advance(25)
    await lease(backend, "r0", ttl=30)
    clock.advance(25)
    for i in (1, 2):
        await lease(backend, f"r{i}")
    assert not (await lease(backend, "r3")).allowed


async def test_zero_limit_never_admits(backend: CounterBackend) -> None:
    a = await backend.admit([Lease(SLOTS, limit=0, lease_id="r0", ttl=60)])
    assert a.results[0] == OpResult(False, 0, 0, 0, 60, 0)
