"""Memory and Redis, fed the same random traffic on one clock, give the same answers."""

from __future__ import annotations

import random

import pytest

from gateway.clock import FakeClock
from gateway.storage import (
    Acquire,
    Adjust,
    AdmitOp,
    CounterBackend,
    Lease,
    MemoryBackend,
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
