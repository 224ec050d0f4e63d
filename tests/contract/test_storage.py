"""What the backends keep: every key expires, nothing lingers, type clashes fail."""

from __future__ import annotations

import pytest

from gateway.clock import FakeClock
from gateway.storage import (
    Acquire,
    Adjust,
    CounterBackend,
    Lease,
    MemoryBackend,
    RedisBackend,
    StorageError,
    identity_key,
)
from tests.contract.helpers import stored_keys

RPM = identity_key("user-1", "rpm")
TPM = identity_key("user-1", "tpm")
SLOTS = identity_key("user-1", "slots")


async def write_some_of_everything(backend: CounterBackend) -> None:
    await backend.admit(
        [
            Acquire(RPM, rate=10, period=60, burst=10),
            Acquire(TPM, rate=1000, period=60, burst=1000, cost=10, group=1),
            Lease(SLOTS, limit=2, lease_id="r0", ttl=120),
        ]
    )
    await backend.settle([Adjust(TPM, rate=1000, period=60, burst=1000, delta=90)])


async def test_every_key_written_expires(backend: CounterBackend, clock: FakeClock) -> None:
    await write_some_of_everything(backend)
    if isinstance(backend, RedisBackend):
        # Redis expires keys on its own clock; the TTL is what is left to use.
        keys = await stored_keys(backend)
        ttls = {k: await backend.client.pttl(k) for k in keys}
        assert set(ttls) == {RPM, TPM, SLOTS}
        assert 0 < ttls[RPM] <= 6001
        assert 5000 < ttls[TPM] <= 6001
        assert 119_000 < ttls[SLOTS] <= 120_001
    else:
        assert isinstance(backend, MemoryBackend)
        assert sorted(backend.keys()) == sorted([RPM, TPM, SLOTS])
        clock.advance(7)
        assert backend.keys() == [SLOTS]
        clock.advance(120)
        assert backend.keys() == []


async def test_memory_purges_expired_entries() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock)
    for i in range(100):
        await backend.admit([Acquire(identity_key(f"u{i}", "rpm"), rate=10, period=60, burst=10)])
    assert len(backend) == 100
    clock.advance(3600)
    peek = Acquire(RPM, rate=10, period=60, burst=10, cost=0)
    for _ in range(13):  # each call inspects at least 8 entries
        await backend.admit([peek])
    assert len(backend) == 0
    await write_some_of_everything(backend)
    clock.advance(3600)
    assert backend.purge_expired() == 3
    assert len(backend) == 0


async def test_memory_stays_bounded_under_churn() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock)
    for i in range(5000):  # a new identity every 100 ms, each key lives ~6 s
        await backend.admit([Acquire(identity_key(f"u{i}", "rpm"), rate=10, period=60, burst=10)])
        clock.advance(0.1)
    assert len(backend) < 200


async def test_a_bucket_key_used_as_leases_is_an_error(backend: CounterBackend) -> None:
    await backend.admit([Acquire(RPM, rate=10, period=60, burst=10)])
    with pytest.raises(StorageError):
        await backend.admit([Lease(RPM, limit=2, lease_id="r0")])
