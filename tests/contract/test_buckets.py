"""GCRA buckets: bursts, refill, window edges, costs, delay mode, peeks, settle."""

from __future__ import annotations

from dataclasses import astuple

from pytest import approx

from gateway.clock import FakeClock
from gateway.storage import (
    Acquire,
    Adjust,
    CounterBackend,
    OpResult,
    identity_key,
)
from tests.contract.helpers import stored_keys

KEY = identity_key("user-1", "rpm")
OTHER = identity_key("user-1", "tpm")


def per_minute(
    n: float = 10, *, key: str = KEY, cost: float = 1, max_delay: float = 0, group: int = 0
) -> Acquire:
    """n per minute with a burst of n."""
    return Acquire(key, rate=n, period=60, burst=n, cost=cost, max_delay=max_delay, group=group)


async def take(backend: CounterBackend, op: Acquire) -> OpResult:
    return (await backend.admit([op])).results[0]


async def test_burst_then_refusal_with_retry_after(backend: CounterBackend) -> None:
    for i in range(10):
        r = await take(backend, per_minute())
        assert astuple(r) == approx((True, 10, 9 - i, 6.0 * (i + 1), 0, 0))
    r = await take(backend, per_minute())
    assert not r.allowed
    assert (r.limit, r.remaining, r.delay) == (10, 0, 0)
    assert r.retry_after == approx(6.0)
    assert r.reset_after == approx(60.0)


async def test_retry_after_is_exact(backend: CounterBackend, clock: FakeClock) -> None:
    for _ in range(10):
        await take(backend, per_minute())
    retry_after = (await take(backend, per_minute())).retry_after
    clock.advance(retry_after - 0.001)
    assert not (await take(backend, per_minute())).allowed
    clock.advance(0.001)
    assert (await take(backend, per_minute())).allowed


async def test_refill_after_clock_advance(backend: CounterBackend, clock: FakeClock) -> None:
    for _ in range(10):
        await take(backend, per_minute())
    clock.advance(6)
    assert (await take(backend, per_minute())).allowed
    assert not (await take(backend, per_minute())).allowed
    clock.advance(60)
    r = await take(backend, per_minute())
    assert (r.allowed, r.remaining, r.reset_after) == approx((True, 9, 6.0))


async def test_half_a_window_refills_half_the_burst(
    backend: CounterBackend, clock: FakeClock
) -> None:
    assert all([(await take(backend, per_minute())).allowed for _ in range(10)])
    clock.advance(30)
    admitted = [(await take(backend, per_minute())).allowed for _ in range(8)]
    assert admitted == [True] * 5 + [False] * 3


async def test_no_double_burst_at_a_window_edge(backend: CounterBackend, clock: FakeClock) -> None:
    # A fixed-window counter would admit 10 at 0:59 and 10 more at 1:00.
    clock.advance(59)
    assert all([(await take(backend, per_minute())).allowed for _ in range(10)])
    clock.advance(1)
    assert not (await take(backend, per_minute())).allowed


async def test_never_more_than_burst_plus_rate_in_any_window(
    backend: CounterBackend, clock: FakeClock
) -> None:
    # A greedy client tries every second for 4 minutes.
    admitted_at: list[int] = []
    for second in range(240):
        while (await take(backend, per_minute())).allowed:
            admitted_at.append(second)
        clock.advance(1)
    # In any 60 s window: the burst of 10, then one per 6 s (at +6 .. +54).
    for start in range(240):
        assert sum(start <= t < start + 60 for t in admitted_at) <= 19
    assert len(admitted_at) == 10 + 240 // 6 - 1


async def test_cost_takes_several_units(backend: CounterBackend) -> None:
    tokens = Acquire(OTHER, rate=1000, period=60, burst=1000, cost=600)
    r = await take(backend, tokens)
    assert (r.allowed, r.remaining, r.limit) == (True, 400, 1000)
    r = await take(backend, tokens)
    assert (r.allowed, r.remaining) == (False, 400)
    assert r.retry_after == approx(200 * 0.06)
    r = await take(backend, Acquire(OTHER, rate=1000, period=60, burst=1000, cost=400))
    assert (r.allowed, r.remaining) == (True, 0)


async def test_cost_above_burst_needs_max_delay(backend: CounterBackend) -> None:
    # A cost above the burst never fits: the refusal says how far short it is.
    r = await take(backend, per_minute(cost=12))
    assert not r.allowed
    assert r.retry_after == approx(12.0)
    assert r.remaining == 10
    # Unless the caller may wait that long.
    r = await take(backend, per_minute(cost=12, max_delay=12))
    assert r.allowed
    assert r.delay == approx(12.0)
    assert r.remaining == 0


async def test_delay_mode_queues_in_arrival_order(
    backend: CounterBackend, clock: FakeClock
) -> None:
    paced = Acquire(KEY, rate=10, period=1, burst=1, max_delay=5)
    for i in range(51):
        r = await take(backend, paced)
        assert r.allowed, i
        assert r.delay == approx(i * 0.1, abs=1e-9)
    r = await take(backend, paced)
    assert not r.allowed
    assert r.delay == 0
    assert r.retry_after == approx(0.1)
    clock.advance(r.retry_after)
    r = await take(backend, paced)
    assert r.allowed
    assert r.delay == approx(5.0)


async def test_peek_with_cost_zero_reads_without_writing(
    backend: CounterBackend, clock: FakeClock
) -> None:
    peek = per_minute(cost=0)
    r = await take(backend, peek)
    assert (r.allowed, r.remaining, r.reset_after) == (True, 10, 0)
    assert await stored_keys(backend) == set()
    for _ in range(3):
        await take(backend, per_minute())
    for _ in range(2):
        r = await take(backend, peek)
        assert (r.allowed, r.remaining, r.reset_after) == approx((True, 7, 18.0))
    clock.advance(6)
    assert (await take(backend, peek)).remaining == 8


async def test_adjust_charges_and_refunds(backend: CounterBackend) -> None:
    await take(backend, per_minute())
    await backend.settle([Adjust(KEY, rate=10, period=60, burst=10, delta=3)])
    r = await take(backend, per_minute(cost=0))
    assert (r.remaining, r.reset_after) == approx((6, 24.0))
    await backend.settle([Adjust(KEY, rate=10, period=60, burst=10, delta=-2)])
    r = await take(backend, per_minute(cost=0))
    assert (r.remaining, r.reset_after) == approx((8, 12.0))


async def test_refund_never_banks_credit(backend: CounterBackend) -> None:
    await take(backend, per_minute())
    await backend.settle([Adjust(KEY, rate=10, period=60, burst=10, delta=-5)])
    r = await take(backend, per_minute(cost=0))
    assert (r.remaining, r.reset_after) == (10, 0)
    assert await stored_keys(backend) == set()
    admitted = [(await take(backend, per_minute())).allowed for _ in range(11)]
    assert admitted == [True] * 10 + [False]


async def test_charge_beyond_burst_is_debt(backend: CounterBackend) -> None:
    await backend.settle([Adjust(KEY, rate=10, period=60, burst=10, delta=15)])
    r = await take(backend, per_minute())
    assert not r.allowed
    assert r.retry_after == approx(36.0)
    assert r.reset_after == approx(90.0)
    assert r.remaining == 0


async def test_settle_of_nothing_is_a_no_op(backend: CounterBackend) -> None:
    await backend.settle([])
    assert (await backend.admit([])).results == ()
