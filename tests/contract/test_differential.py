"""Memory and Redis, fed the same random traffic on one clock, give the same answers."""

from __future__ import annotations

import random

import pytest
from pytest import approx

from gateway.clock import FakeClock
from gateway.storage import (
    Acquire,
    Adjust,
    Admission,
    AdmitOp,
    CounterBackend,
    Lease,
    MemoryBackend,
    MergeState,
    Observe,
    ObserveResult,
    RedisBackend,
    Release,
    SettleOp,
    identity_key,
)

pytestmark = pytest.mark.redis

BUCKETS = [  # key, rate, period, burst
    (identity_key("u", "rps"), 10.0, 1.0, 1.0),
    (identity_key("u", "rpm"), 7.0, 60.0, 7.0),
    (identity_key("u", "tpm"), 1000.0, 60.0, 1500.0),
]
SLOTS = identity_key("u", "slots")


def random_admit(rng: random.Random) -> list[AdmitOp]:
    ops: list[AdmitOp] = []
    for _ in range(rng.randint(1, 5)):
        group = rng.randint(0, 2)
        if rng.random() < 0.25:
            ops.append(Lease(SLOTS, 3, f"r{rng.randint(0, 5)}", rng.choice([5.0, 30.0]), group))
            continue
        key, rate, period, burst = rng.choice(BUCKETS)
        cost = rng.choice([0.0, 1.0, 1.0, 2.0, rng.uniform(0, 400)])
        max_delay = rng.choice([0.0, 0.0, 0.3, 2.5])
        ops.append(Acquire(key, rate, period, burst, cost, max_delay, group))
    return ops


def random_settle(rng: random.Random) -> list[SettleOp]:
    key, rate, period, burst = rng.choice(BUCKETS)
    return [
        Adjust(key, rate, period, burst, rng.uniform(-300, 300)),
        Release(SLOTS, f"r{rng.randint(0, 5)}"),
    ]


@pytest.mark.parametrize("seed", range(3))
async def test_same_answers_on_random_traffic(redis_url: str, seed: int) -> None:
    rng = random.Random(seed)
    clock = FakeClock()
    redis_backend = RedisBackend.from_url(redis_url, timeout=1.0, clock=clock)
    backends: list[CounterBackend] = [MemoryBackend(clock), redis_backend]
    try:
        await redis_backend.client.flushall()
        for step in range(300):
            if rng.random() < 0.15:
                settle = random_settle(rng)
                for b in backends:
                    await b.settle(settle)
            else:
                admit = random_admit(rng)
                mem, red = [await b.admit(admit) for b in backends]
                assert mem == red, (step, admit)
            clock.advance(rng.choice([0.0, 0.0, 0.05, 0.1, rng.uniform(0, 3), 0.1 / 3]))
    finally:
        await redis_backend.aclose()


SIGNALS = [  # key, window, slots: whole, fractional (11.25 s) and single sub-windows
    (identity_key("u", "pd", "a"), 60.0, 6),
    (identity_key("u", "pd", "b"), 45.0, 4),
    (identity_key("u", "pd", "c"), 10.0, 1),
    (identity_key("u", "pd", "d"), 3600.0, 6),  # keeps the whole run: counts in the hundreds
]
SET_NAMES = ["p", "t", "b"]


def random_observe(rng: random.Random) -> Observe:
    key, window, slots = rng.choice(SIGNALS)
    members = tuple((rng.choice(SET_NAMES), f"m{rng.randint(0, 1000)}")
                    for _ in range(rng.randint(0, 6)))
    counters = tuple((rng.choice(["n", "r", "w"]),
                      rng.choice([0.0, 1.0, 1.0, 0.1, -0.5, rng.uniform(-10, 10)]))
                     for _ in range(rng.randint(0, 3)))
    tally = rng.choice([None, "t0", "t1", "t2", f"t{rng.randint(0, 30)}"])
    return Observe(key, window, slots, members, counters, tally, rng.random() < 0.5,
                   rng.randint(0, 2))


def random_merge(rng: random.Random) -> MergeState:
    key, _, _ = rng.choice(SIGNALS)
    fields = tuple((rng.choice(["s", "at", "peers"]), repr(rng.random()))
                   for _ in range(rng.randint(0, 2)))
    # Longer than the run: Redis expires on its own clock, not the fake one.
    return MergeState(key, fields, ttl=86400)


def assert_same(mem: Admission, red: Admission, context: object) -> None:
    """Equal, but for distinct counts: exact on memory, HyperLogLog estimates on Redis."""
    assert (mem.now, mem.groups_allowed) == (red.now, red.groups_allowed), context
    for m, r in zip(mem.results, red.results, strict=True):
        if not isinstance(m, ObserveResult):
            assert m == r, context
            continue
        assert isinstance(r, ObserveResult), context
        assert (m.totals, m.tally, m.state) == (r.totals, r.tally, r.state), context
        assert m.distinct.keys() == r.distinct.keys(), context
        for name, count in m.distinct.items():
            assert r.distinct[name] == approx(count, rel=0.03, abs=1), context


@pytest.mark.parametrize("seed", range(3))
async def test_same_signals_on_random_traffic(redis_url: str, seed: int) -> None:
    rng = random.Random(seed)
    clock = FakeClock()
    redis_backend = RedisBackend.from_url(redis_url, timeout=1.0, clock=clock)
    backends: list[CounterBackend] = [MemoryBackend(clock), redis_backend]
    try:
        await redis_backend.client.flushall()
        for step in range(300):
            if rng.random() < 0.15:
                settle = [*random_settle(rng), random_merge(rng)]
                rng.shuffle(settle)
                for b in backends:
                    await b.settle(settle)
            else:
                admit = random_admit(rng) if rng.random() < 0.5 else []
                admit += [random_observe(rng) for _ in range(rng.randint(1, 3))]
                rng.shuffle(admit)
                mem, red = [await b.admit(admit) for b in backends]
                assert_same(mem, red, (step, admit))
            clock.advance(rng.choice([0.0, 0.05, rng.uniform(0, 3), 11.25, rng.uniform(0, 40)]))
    finally:
        await redis_backend.aclose()
