"""One admit call: ops grouped, each group all-or-nothing, groups independent."""

from __future__ import annotations

from gateway.storage import Acquire, CounterBackend, Lease, identity_key

RPM = identity_key("user-1", "rpm")
TPM = identity_key("user-1", "tpm")
SLOTS = identity_key("user-1", "slots")


def rpm(group: int = 0, cost: float = 1) -> Acquire:
    return Acquire(RPM, rate=10, period=60, burst=10, cost=cost, group=group)


def tpm(cost: float, group: int = 0) -> Acquire:
    return Acquire(TPM, rate=1000, period=60, burst=1000, cost=cost, group=group)


async def test_group_is_all_or_nothing(backend: CounterBackend) -> None:
    await backend.admit([tpm(1000)])
    a = await backend.admit([rpm(), tpm(1), Lease(SLOTS, limit=2, lease_id="r1")])
    assert a.groups_allowed == {0: False}
    ok, refused, lease = a.results
    # Each result says whether the op alone would fit, and shows storage unchanged.
    assert (ok.allowed, ok.remaining, ok.reset_after) == (True, 10, 0)
    assert (refused.allowed, refused.remaining) == (False, 0)
    assert (lease.allowed, lease.remaining) == (True, 2)
    after = await backend.admit([rpm(cost=0), Lease(SLOTS, limit=1, lease_id="other")])
    assert after.results[0].remaining == 10
    assert after.results[1].allowed  # no slot was taken by "r1"


async def test_groups_are_independent(backend: CounterBackend) -> None:
    await backend.admit([tpm(1000)])
    a = await backend.admit([tpm(1, group=1), rpm(group=2), rpm(group=1)])
    assert a.groups_allowed == {1: False, 2: True}
    assert [r.allowed for r in a.results] == [False, True, True]
    assert a.results[1].remaining == 9
    assert (await backend.admit([rpm(cost=0)])).results[0].remaining == 9


async def test_ops_of_a_group_on_one_key_add_up(backend: CounterBackend) -> None:
    await backend.admit([rpm(cost=8)])
    a = await backend.admit([rpm(), rpm(), rpm()])
    assert [r.allowed for r in a.results] == [True, True, False]
    assert a.groups_allowed == {0: False}
    assert (await backend.admit([rpm(cost=0)])).results[0].remaining == 2
    a = await backend.admit([rpm(), rpm()])
    assert [r.remaining for r in a.results] == [1, 0]


async def test_later_groups_see_earlier_groups(backend: CounterBackend) -> None:
    a = await backend.admit([rpm(cost=6, group=5), rpm(cost=6, group=3), rpm(cost=4, group=7)])
    assert a.groups_allowed == {5: True, 3: False, 7: True}
    assert [r.remaining for r in a.results] == [4, 4, 0]


async def test_admission_reports_the_time_used(backend: CounterBackend) -> None:
    clock_now = 1_700_000_000.0  # FakeClock's default start
    assert (await backend.admit([rpm()])).now == clock_now
