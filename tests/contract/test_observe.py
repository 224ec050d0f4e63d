"""Sliding-window signals (Observe) and per-identity state (MergeState).

Distinct counts are exact on memory and HyperLogLog estimates on Redis, so
they are compared exactly on memory and with a tolerance on Redis; every other
number is the same on both.
"""

from __future__ import annotations

import math
import random

import pytest
from pytest import approx

from gateway.clock import FakeClock
from gateway.storage import (
    Acquire,
    CounterBackend,
    Lease,
    MemoryBackend,
    MergeState,
    Observe,
    ObserveResult,
    RedisBackend,
    StorageError,
    identity_key,
)
from tests.contract.helpers import stored_keys

KEY = identity_key("user-1", "pd", "rule")
RPM = identity_key("user-1", "rpm")
SLOTS = identity_key("user-1", "slots")
# 6 sub-windows of 10 s. FakeClock starts at 1_700_000_000, on a sub-window edge.
WINDOW = 60.0
START_SLOT = 170_000_000


def observe(
    *members: tuple[str, str],
    counters: tuple[tuple[str, float], ...] = (),
    tally: str | None = None,
    read_state: bool = False,
    group: int = 0,
    key: str = KEY,
) -> Observe:
    return Observe(key, WINDOW, 6, members=members, counters=counters, tally_member=tally,
                   read_state=read_state, group=group)


def one(*counters: str) -> tuple[tuple[str, float], ...]:
    return tuple((name, 1.0) for name in counters)


async def see(backend: CounterBackend, op: Observe) -> ObserveResult:
    result = (await backend.admit([op])).results[0]
    assert isinstance(result, ObserveResult)
    return result


def assert_distinct(backend: CounterBackend, got: dict[str, float], **expected: float) -> None:
    """Exact on memory; on Redis a HyperLogLog estimate (~0.81% standard error)."""
    assert got.keys() == expected.keys()
    for name, count in expected.items():
        if isinstance(backend, RedisBackend):
            assert got[name] == approx(count, rel=0.03, abs=1), name
        else:
            assert got[name] == count, name


async def test_distinct_members_per_set(backend: CounterBackend) -> None:
    r = await see(backend, observe(("p", "a"), ("t", "x")))
    assert_distinct(backend, r.distinct, p=1, t=1)
    r = await see(backend, observe(("p", "b"), ("t", "x")))
    assert_distinct(backend, r.distinct, p=2, t=1)
    r = await see(backend, observe(("p", "a"), ("t", "y"), ("b", "1"), ("b", "2"), ("b", "1")))
    assert_distinct(backend, r.distinct, p=2, t=2, b=2)
    for i in range(30):
        r = await see(backend, observe(*[("p", f"m{i}-{j}") for j in range(10)]))
    assert_distinct(backend, r.distinct, p=302)


async def test_an_observe_never_refuses(backend: CounterBackend) -> None:
    a = await backend.admit([observe(("p", "a"), counters=one("n"), tally="a")])
    assert a.groups_allowed == {0: True}
    r = a.results[0]
    assert isinstance(r, ObserveResult)
    assert (r.allowed, r.limit, r.remaining, r.retry_after, r.delay) == (True, 0, 0, 0, 0)
    assert (r.totals, r.tally, r.state) == ({"n": 1.0}, 1.0, {})


async def test_counters_sum_as_float64(backend: CounterBackend) -> None:
    for r_total in [0.1, 0.2, 0.30000000000000004]:  # float64 sums, on Redis too
        r = await see(backend, observe(counters=(("n", 1.0), ("r", 0.1), ("w", -2.5))))
        n = r.totals["n"]
        assert r.totals == {"n": n, "r": r_total, "w": -2.5 * n}
    assert n == 3
    # One name twice in one op: both increments, in order.
    r = await see(backend, observe(counters=(("r", 0.1), ("n", 2.0), ("r", 0.1))))
    assert r.totals == {"r": 0.30000000000000004 + 0.1 + 0.1, "n": 5.0}
    assert r.distinct == {}
    assert r.tally == 0


async def test_a_zero_increment_reads_without_writing(backend: CounterBackend) -> None:
    r = await see(backend, observe(counters=(("n", 0.0),), read_state=True))
    assert (r.totals, r.tally, r.state) == ({"n": 0.0}, 0.0, {})
    assert await stored_keys(backend) == set()
    await see(backend, observe(counters=one("n")))
    assert (await see(backend, observe(counters=(("n", 0.0), ("m", 0.0))))).totals == {
        "n": 1.0, "m": 0.0}


async def test_old_sub_windows_stop_counting(backend: CounterBackend, clock: FakeClock) -> None:
    # One request per sub-window: the window holds the last six.
    for i in range(12):
        r = await see(backend, observe(("p", f"m{i}"), counters=one("n"), tally="same"))
        assert r.totals == {"n": min(i + 1, 6)}
        assert r.tally == min(i + 1, 6)
        assert_distinct(backend, r.distinct, p=min(i + 1, 6))
        clock.advance(10)


async def test_sub_window_edges_are_exact(backend: CounterBackend, clock: FakeClock) -> None:
    await see(backend, observe(("p", "first"), counters=one("n")))  # sub-window 0, at its start
    clock.advance(9.999)
    await see(backend, observe(("p", "late"), counters=one("n")))  # still sub-window 0
    clock.advance(50)  # 59.999: sub-window 5, window = sub-windows 0..5
    r = await see(backend, observe(("p", "x"), counters=one("n")))
    assert r.totals == {"n": 3.0}
    assert_distinct(backend, r.distinct, p=3)
    clock.advance(0.001)  # 60.0: sub-window 6, sub-window 0 is out, both its requests with it
    r = await see(backend, observe(("p", "y"), counters=one("n")))
    assert r.totals == {"n": 2.0}
    assert_distinct(backend, r.distinct, p=2)
    clock.advance(3600)
    r = await see(backend, observe(("p", "x"), counters=one("n")))
    assert r.totals == {"n": 1.0}
    assert_distinct(backend, r.distinct, p=1)


async def test_one_slot_is_a_fixed_window(backend: CounterBackend, clock: FakeClock) -> None:
    op = Observe(KEY, 10, 1, members=(("p", "a"),), counters=one("n"))
    assert (await see(backend, op)).totals == {"n": 1.0}
    clock.advance(9.999)
    assert (await see(backend, op)).totals == {"n": 2.0}
    clock.advance(0.001)
    assert (await see(backend, op)).totals == {"n": 1.0}


async def test_tally_counts_this_member_only(backend: CounterBackend, clock: FakeClock) -> None:
    tallies = [(await see(backend, observe(tally=m, counters=one("n")))).tally
               for m in ["a", "b", "a", "a", "", "b"]]
    assert tallies == [1, 1, 2, 3, 1, 2]
    # Counter "x" and tally member "x" are different things.
    r = await see(backend, observe(counters=one("x"), tally="x"))
    assert (r.totals, r.tally) == ({"x": 1.0}, 1.0)
    assert (await see(backend, observe(counters=one("n")))).tally == 0  # no member: 0
    clock.advance(30)
    assert (await see(backend, observe(tally="a"))).tally == 4
    clock.advance(30)  # the first five are out
    assert (await see(backend, observe(tally="a"))).tally == 2


async def test_state_round_trip(backend: CounterBackend) -> None:
    assert (await see(backend, observe(read_state=True))).state == {}
    await backend.settle([MergeState(KEY, (("s", "0.25"), ("at", "1700000000.5")), ttl=600)])
    assert (await see(backend, observe(read_state=True))).state == {
        "s": "0.25", "at": "1700000000.5"}
    # Fields not named keep their values.
    await backend.settle([MergeState(KEY, (("s", "0.75"), ("tpl", "héllo wörld")), ttl=600)])
    assert (await see(backend, observe(read_state=True))).state == {
        "s": "0.75", "at": "1700000000.5", "tpl": "héllo wörld"}
    assert (await see(backend, observe())).state == {}  # only when asked
    other = identity_key("user-2", "pd", "rule")
    assert (await see(backend, observe(read_state=True, key=other))).state == {}


async def test_state_expires_after_its_ttl(backend: CounterBackend, clock: FakeClock) -> None:
    state_key = KEY + ":state"
    await backend.settle([MergeState(KEY, (("s", "1"),), ttl=600)])
    clock.advance(500)
    await backend.settle([MergeState(KEY, (), ttl=300)])  # no fields: restart the TTL only
    await backend.settle([MergeState(identity_key("user-2", "pd", "rule"), (), ttl=300)])
    assert await stored_keys(backend) == {state_key}  # ... and create nothing
    if isinstance(backend, RedisBackend):
        # Redis expires keys on its own clock; the TTL is what is left to use.
        assert 299_000 < await backend.client.pttl(state_key) <= 300_001
        return
    clock.advance(299.9)
    assert (await see(backend, observe(read_state=True))).state == {"s": "1"}
    clock.advance(0.102)
    assert (await see(backend, observe(read_state=True))).state == {}


async def test_observe_counts_when_its_group_is_refused(backend: CounterBackend) -> None:
    one_per_minute = Acquire(RPM, rate=1, period=60, burst=1)
    lease = Lease(SLOTS, limit=5, lease_id="r1")
    a = await backend.admit([one_per_minute, lease, observe(("p", "a"), counters=one("n"))])
    assert a.groups_allowed == {0: True}
    a = await backend.admit([one_per_minute, lease, observe(("p", "b"), counters=one("n"))])
    assert a.groups_allowed == {0: False}
    refused, taken, seen = a.results
    assert not refused.allowed
    assert (taken.allowed, taken.remaining) == (True, 4)  # would fit, storage unchanged
    assert isinstance(seen, ObserveResult)
    assert seen.allowed
    assert seen.totals == {"n": 2.0}  # the refused request counted too
    assert_distinct(backend, seen.distinct, p=2)
    assert (await see(backend, observe(counters=(("n", 0.0),)))).totals == {"n": 2.0}


async def test_groups_allowed_ignores_observe_ops(backend: CounterBackend) -> None:
    a = await backend.admit([
        observe(counters=one("n"), group=4),
        Acquire(RPM, rate=10, period=60, burst=10, group=1),
        observe(counters=one("n"), group=1),
    ])
    assert a.groups_allowed == {4: True, 1: True}
    assert [type(r) for r in a.results] == [ObserveResult, type(a.results[1]), ObserveResult]
    assert not isinstance(a.results[1], ObserveResult)
    assert a.results[1].remaining == 9
    # Observes of one call run in order, after the buckets: the second sees the first.
    first, second = (a.results[0], a.results[2])
    assert isinstance(first, ObserveResult) and isinstance(second, ObserveResult)
    assert (first.totals, second.totals) == ({"n": 1.0}, {"n": 2.0})


async def test_every_observed_key_expires(backend: CounterBackend, clock: FakeClock) -> None:
    clock.advance(4)  # 6 s before the sub-window ends; its keys live 60 s more
    await see(backend, observe(("p", "a"), ("t", "x"), counters=one("n"), tally="x"))
    derived = {f"{KEY}:{START_SLOT}:{suffix}" for suffix in ("s:p", "s:t", "c")}
    assert await stored_keys(backend) == derived
    if isinstance(backend, RedisBackend):
        for key in derived:
            assert 65_000 < await backend.client.pttl(key) <= 66_001
        return
    assert isinstance(backend, MemoryBackend)
    clock.advance(65.999)
    assert set(backend.keys()) == derived
    clock.advance(0.002)
    assert backend.keys() == []


async def test_a_key_of_another_kind_is_an_error(backend: CounterBackend) -> None:
    await backend.admit([Acquire(f"{KEY}:{START_SLOT}:c", rate=10, period=60, burst=10)])
    with pytest.raises(StorageError):
        await backend.admit([observe(counters=one("n"))])


def test_invalid_ops_fail_when_built() -> None:
    for bad in (
        lambda: Observe(KEY, 0),
        lambda: Observe(KEY, math.inf),
        lambda: Observe(KEY, 60, 0),
        lambda: Observe(KEY, 60, 2000),
        lambda: Observe(KEY, 60, counters=(("n", math.nan),)),
        lambda: MergeState(KEY, (), ttl=0),
    ):
        with pytest.raises(ValueError):
            bad()


# -- memory only: bounded, with a documented approximation past the cap -------


async def test_memory_drops_observed_entries_after_expiry() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock)
    for i in range(100):
        key = identity_key(f"u{i}", "pd")
        await backend.admit([observe(("p", "a"), ("t", "b"), counters=one("n"), key=key)])
        await backend.settle([MergeState(key, (("s", "1"),), ttl=120)])
    assert len(backend) == 400
    clock.advance(121)
    assert backend.purge_expired() == 400
    assert len(backend) == 0


async def test_memory_stays_bounded_under_observe_churn() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock)
    for i in range(5000):  # a new identity every 100 ms; its 5 keys live <= 7 s
        op = Observe(identity_key(f"u{i}", "pd"), 6, 6,
                     members=(("p", "a"), ("t", "b"), ("b", "c"), ("x", "d")),
                     counters=one("n", "r"), tally_member="b")
        await backend.admit([op])
        clock.advance(0.1)
    assert len(backend) < 5 * 70 + 100


async def test_memory_past_the_cap_counts_from_a_sample(clock: FakeClock) -> None:
    backend = MemoryBackend(clock, max_members=1024)
    for batch in range(200):  # 20,000 distinct members in one sub-window
        r = await see(backend, observe(*[("p", f"m{batch}-{i}") for i in range(100)]))
    assert r.distinct["p"] == approx(20_000, rel=0.1)
    assert backend.members_held() <= 1024
    clock.advance(10)  # next sub-window, exact again: 500 old members, 500 new
    for i in range(10):
        r = await see(backend, observe(*[("p", f"m{i}-{j}") for j in range(50)],
                                       *[("p", f"new{i}-{j}") for j in range(50)]))
    assert r.distinct["p"] == approx(20_500, rel=0.1)
    assert backend.members_held() <= 2 * 1024
    clock.advance(50)  # the sampled sub-window is out, the exact one still in
    r = await see(backend, observe(("p", "x")))
    assert r.distinct["p"] == 1001  # exact again: new* (500) + m* (500) + x


async def test_memory_tally_past_the_cap(clock: FakeClock) -> None:
    backend = MemoryBackend(clock, max_members=2)
    assert [(await see(backend, observe(tally=m))).tally for m in "abcca"] == [1, 1, 1, 1, 2]
    clock.advance(10)  # a new sub-window has room again
    assert [(await see(backend, observe(tally=m))).tally for m in "cc"] == [1, 2]


async def test_memory_window_counts_match_an_exact_model() -> None:
    """Counts kept up to date as sub-windows grow equal counting from scratch."""
    rng = random.Random(7)
    clock = FakeClock()
    backend = MemoryBackend(clock)
    shapes = {identity_key("u", "a"): (60.0, 6), identity_key("u", "b"): (45.0, 4),
              identity_key("u", "c"): (10.0, 1)}
    seen: list[tuple[float, str, str, str]] = []  # (time, key, set, member)
    for step in range(1500):
        key = rng.choice(list(shapes))
        window, slots = shapes[key]
        members = tuple((rng.choice("pq"), f"m{rng.randint(0, 80)}")
                        for _ in range(rng.randint(1, 4)))
        now = clock.now()
        seen.extend((now, key, name, member) for name, member in members)
        r = await see(backend, Observe(key, window, slots, members=members))
        sub = window / slots
        first = math.floor(now / sub) - slots + 1
        expected = {name: float(len({m for t, k, n, m in seen
                                     if k == key and n == name and math.floor(t / sub) >= first}))
                    for name, _ in members}
        assert r.distinct == expected, step
        clock.advance(rng.choice([0.0, 0.5, rng.uniform(0, 5), 11.25]))
