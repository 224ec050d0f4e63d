"""Keys of several hash tags in one call: one identity's, a global one, a template's.

On one server (and in memory) a call is one atomic script. On Redis Cluster the
tags hash to slots on different nodes, so the backend splits the call by slot;
the answers must not change, and no call may fail with CROSSSLOT.
"""

from __future__ import annotations

from dataclasses import astuple

import pytest
from pytest import approx
from redis.crc import key_slot

from gateway.storage import (
    Acquire,
    Adjust,
    CounterBackend,
    Lease,
    MergeState,
    Observe,
    ObserveResult,
    RedisBackend,
    Release,
    identity_key,
)

USER = identity_key("user-1", "rs", "per-key", "0")
SLOTS = identity_key("user-1", "rs", "per-key", "1")
GLOBAL = identity_key("global", "rs", "fleet", "0")
TEMPLATE = identity_key("tpl-abc", "pd", "diversity")
GROUP = identity_key("grp-x", "pd", "diversity")


def user(cost: float = 1, group: int = 0) -> Acquire:
    return Acquire(USER, rate=10, period=60, burst=10, cost=cost, group=group)


def fleet(cost: float = 1, group: int = 0) -> Acquire:
    return Acquire(GLOBAL, rate=5, period=60, burst=5, cost=cost, group=group)


def seen_by(key: str, member: str) -> Observe:
    return Observe(key, 3600, 6, members=(("ids", member),), counters=(("n", 1.0),))


def test_the_keys_are_on_three_slots_of_three_nodes() -> None:
    """The premise of this file (3 primaries split 0-5460, 5461-10922, 10923-16383)."""
    slots = [key_slot(key.encode()) for key in (USER, GLOBAL, TEMPLATE)]
    assert sorted(slot // 5461 for slot in slots) == [0, 1, 2]
    assert key_slot(SLOTS.encode()) == slots[0]  # one identity: one slot


async def test_one_call_over_several_tags(backend: CounterBackend) -> None:
    ops = [user(), seen_by(TEMPLATE, "user-1"), fleet(), Lease(SLOTS, 2, "r1"),
           seen_by(GROUP, "user-1"), fleet(group=1), seen_by(TEMPLATE, "user-2")]
    a = await backend.admit(ops)
    assert a.groups_allowed == {0: True, 1: True}
    assert a.now == 1_700_000_000.0
    first, observed, shared, lease, group_seen, again, second = a.results
    assert astuple(first) == approx((True, 10, 9, 6.0, 0, 0))
    assert astuple(shared) == approx((True, 5, 4, 12.0, 0, 0))
    assert astuple(again) == approx((True, 5, 3, 24.0, 0, 0))
    assert (lease.allowed, lease.remaining) == (True, 1)
    for result, peers, count in ((observed, 1, 1), (group_seen, 1, 1), (second, 2, 2)):
        assert isinstance(result, ObserveResult)
        assert (result.distinct, result.totals) == ({"ids": peers}, {"n": count})


async def test_a_group_over_several_slots_is_all_or_nothing(backend: CounterBackend) -> None:
    await backend.admit([fleet(cost=5)])  # the fleet is spent
    a = await backend.admit([user(), Lease(SLOTS, 1, "r1"), fleet(), seen_by(TEMPLATE, "u")])
    assert a.groups_allowed == {0: False}
    ok, lease, refused, observed = a.results
    # Each result says whether the op alone would fit, and shows storage as it stands.
    assert astuple(ok) == approx((True, 10, 10, 0, 0, 0))
    assert (lease.allowed, lease.remaining) == (True, 1)
    assert (refused.allowed, refused.remaining) == (False, 0)
    assert refused.retry_after == approx(12.0)
    assert isinstance(observed, ObserveResult) and observed.totals == {"n": 1}  # applied anyway
    # nothing of the refused group is held: the identity's bucket is full, the slot free
    after = await backend.admit([user(cost=10), Lease(SLOTS, 1, "r2")])
    assert after.groups_allowed == {0: True}


async def test_groups_on_other_slots_stay_independent(backend: CounterBackend) -> None:
    await backend.admit([fleet(cost=5)])
    a = await backend.admit([user(group=1), fleet(group=2), user(group=3)])
    assert a.groups_allowed == {1: True, 2: False, 3: True}
    assert [r.remaining for r in a.results] == [9, 0, 8]


async def test_settle_over_several_slots(backend: CounterBackend) -> None:
    await backend.admit([user(cost=4), fleet(cost=4), Lease(SLOTS, 1, "r1")])
    await backend.settle([
        Adjust(USER, rate=10, period=60, burst=10, delta=-3),
        MergeState(TEMPLATE, (("peers", "7"),), ttl=600),
        Adjust(GLOBAL, rate=5, period=60, burst=5, delta=-4),
        Release(SLOTS, "r1"),
    ])
    a = await backend.admit([
        user(cost=0), fleet(cost=0), Lease(SLOTS, 1, "r2"),
        Observe(TEMPLATE, 3600, 6, read_state=True),
    ])
    assert [r.remaining for r in a.results[:3]] == [9, 5, 0]
    state = a.results[3]
    assert isinstance(state, ObserveResult) and state.state == {"peers": "7"}


async def test_cluster_calls_are_split_only_when_needed(backend: CounterBackend) -> None:
    if not isinstance(backend, RedisBackend):
        return
    parts = backend.parts_by_slot  # the split, without the network
    one_identity = [USER, SLOTS, identity_key("user-1", "pd", "diversity")]
    assert parts(one_identity) == [[0, 1, 2]]
    expected = [[0, 2], [1]] if backend.is_cluster else [[0, 1, 2]]
    assert parts([USER, GLOBAL, SLOTS]) == expected


async def test_observe_keys_need_a_hash_tag_on_a_cluster(backend: CounterBackend) -> None:
    if not (isinstance(backend, RedisBackend) and backend.is_cluster):
        return
    with pytest.raises(ValueError, match="hash tag"):
        await backend.admit([user(), Observe("dg:no-tag:pd", 60)])
