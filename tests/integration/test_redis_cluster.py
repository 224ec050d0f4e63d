"""The gateway on a real three-node Redis Cluster, and on Redis behind Sentinel.

The cluster is the session's (tests/support/redis_cluster.py): three
redis-server primaries on loopback ports, slots split by `redis-cli --cluster
create`. Round trips are counted with INFO commandstats on every node.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from gateway.clock import FakeClock
from gateway.storage import (
    Acquire,
    MergeState,
    Observe,
    ObserveResult,
    RedisBackend,
    StorageError,
    identity_key,
    open_backend,
)
from gateway.storage.base import CircuitOpen
from gateway.storage.breaker import CircuitBreaker
from tests.support.redis_cluster import LocalCluster, session_cluster, start_redis_sentinel
from tests.support.replicas import (
    PER_KEY_100_AN_HOUR,
    evalsha_calls,
    fast_upstream,
    gateways_under_load,
    write_policy,
)

pytestmark = pytest.mark.redis

USER = identity_key("user-1", "rs", "per-key", "0")  # the keys sit on three nodes
GLOBAL = identity_key("global", "rs", "fleet", "0")
TEMPLATE = identity_key("tpl-abc", "pd", "diversity")
GROUP = identity_key("grp-x", "pd", "diversity")


@pytest.fixture(scope="module")
def cluster() -> LocalCluster:
    return session_cluster()


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with fast_upstream() as url:
        yield url


@pytest.fixture
async def backend(cluster: LocalCluster) -> AsyncIterator[RedisBackend]:
    backend = RedisBackend.from_url(cluster.url, timeout=1.0, clock=FakeClock())
    await backend.client.flushall()
    await backend.prepare()
    try:
        yield backend
    finally:
        await backend.aclose()


def calls(cluster: LocalCluster) -> dict[int, int]:
    return {port: evalsha_calls(port) for port in cluster.ports}


def since(before: dict[int, int], cluster: LocalCluster) -> dict[int, int]:
    """EVALSHA per node since `before`, nodes with none left out."""
    return {port: n - before[port] for port, n in calls(cluster).items() if n != before[port]}


def user(cost: float = 1) -> Acquire:
    return Acquire(USER, rate=1000, period=3600, burst=1000, cost=cost)


def fleet(cost: float = 1) -> Acquire:
    return Acquire(GLOBAL, rate=5, period=3600, burst=5, cost=cost)


def test_exactly_the_limit_across_two_processes(
    tmp_path: Path, upstream: str, cluster: LocalCluster
) -> None:
    run = gateways_under_load(write_policy(tmp_path, PER_KEY_100_AN_HOUR), upstream, cluster.url,
                              cluster.ports, total=500)
    assert run.statuses == Counter({200: 100, 429: 400})
    assert run.fallback_admits == [False, False]
    # one identity, one slot: one EVALSHA per request, all on the node owning it
    assert sorted(run.evalsha.values()) == [0, 0, 500]


def test_identity_and_global_scopes_cost_two_calls(
    tmp_path: Path, upstream: str, cluster: LocalCluster
) -> None:
    """Two slots per request (in parallel); a refusal by the global rule gives the
    identity's unit back with one more call."""
    policy = write_policy(tmp_path, PER_KEY_100_AN_HOUR + """
  - name: fleet
    kind: rate_shaping
    config:
      key: global
      limits:
        - requests: 30/hour
""")
    keys = [{"authorization": f"Bearer sk-member-{n}"} for n in range(5)]
    run = gateways_under_load(policy, upstream, cluster.url, cluster.ports, total=60,
                              replicas=1, headers=keys)
    assert run.statuses == Counter({200: 30, 429: 30})
    assert run.fallback_admits == [False]
    fleet_node = cluster.node_for(GLOBAL).port  # the rule's key has the same tag
    assert run.evalsha[fleet_node] >= 60  # every request asked the global slot
    assert sum(run.evalsha.values()) == 60 * 2 + 30  # + one refund per refusal


async def test_round_trips_per_call(backend: RedisBackend, cluster: LocalCluster) -> None:
    await backend.admit([user(), fleet(), Observe(TEMPLATE, 60), Observe(GROUP, 60)])  # warm
    user_node, fleet_node = cluster.node_for(USER).port, cluster.node_for(GLOBAL).port
    before = calls(cluster)
    signals = Observe(identity_key("user-1", "pd", "diversity"), 60, read_state=True)
    await backend.admit([user(), signals])  # one identity: one call
    assert since(before, cluster) == {user_node: 1}
    before = calls(cluster)
    admission = await backend.admit([user(), fleet(), signals])  # and a global rule: two
    assert admission.groups_allowed == {0: True}
    assert since(before, cluster) == {user_node: 1, fleet_node: 1}
    before = calls(cluster)
    await backend.admit([Observe(TEMPLATE, 60), Observe(GROUP, 60)])  # cross-identity keys
    assert sum(since(before, cluster).values()) == 2
    before = calls(cluster)
    await backend.admit([fleet(cost=3)])  # the fleet's last units
    refused = await backend.admit([user(), fleet(), signals])
    assert refused.groups_allowed == {0: False}
    assert refused.results[0].remaining == 997  # three taken before; this one given back
    # 1 + 2 calls, then the refund of the identity's unit on its node
    assert since(before, cluster) == {fleet_node: 2, user_node: 2}
    assert (await backend.admit([user(cost=0)])).results[0].remaining == 997


async def test_scripts_are_loaded_on_every_primary_and_reloaded_after_a_flush(
    backend: RedisBackend, cluster: LocalCluster
) -> None:
    for port in cluster.ports:
        with redis.Redis(port=port) as node:
            assert len(node.execute_command("SCRIPT", "EXISTS", *_shas())) == 2
            assert all(node.execute_command("SCRIPT", "EXISTS", *_shas()))
            node.script_flush()  # as after a failover to a node that never loaded them
    before = calls(cluster)
    admission = await backend.admit([user(), fleet()])
    assert admission.groups_allowed == {0: True}
    await backend.settle([MergeState(TEMPLATE, (("peers", "3"),), ttl=60)])
    observed = (await backend.admit([Observe(TEMPLATE, 60, read_state=True)])).results[0]
    assert isinstance(observed, ObserveResult) and observed.state == {"peers": "3"}
    assert sum(since(before, cluster).values()) == 4  # NOSCRIPT replies are not counted


def _shas() -> list[str]:
    from gateway.storage.redis import ADMIT, SETTLE

    return [ADMIT.sha, SETTLE.sha]


async def test_a_plain_url_to_a_cluster_node_is_refused(cluster: LocalCluster) -> None:
    backend = open_backend(f"redis://127.0.0.1:{cluster.ports[0]}/0", timeout=1.0)
    try:
        with pytest.raises(StorageError, match=r"redis\+cluster://"):
            await backend.prepare()
    finally:
        await backend.aclose()


async def test_a_hung_node_times_out_then_the_breaker_opens(cluster: LocalCluster) -> None:
    inner = RedisBackend.from_url(cluster.url, timeout=0.1)
    breaker = CircuitBreaker(inner, failure_threshold=1, reset_after=0.2)
    node = cluster.node_for(USER)
    try:
        await breaker.prepare()
        assert (await breaker.admit([user(cost=0)])).groups_allowed == {0: True}
        node.pause()  # well under the cluster's node timeout (2 s): no failover
        try:
            started = time.monotonic()
            with pytest.raises(StorageError):
                await breaker.admit([user(cost=0), fleet(cost=0)])
            assert time.monotonic() - started < 0.5
            with pytest.raises(CircuitOpen):  # not even tried
                await breaker.admit([fleet(cost=0)])
            with pytest.raises(StorageError):  # /readyz: every primary must answer
                await breaker.ping()
        finally:
            node.resume()
        await asyncio.sleep(0.25)  # the breaker lets a probe through after reset_after
        assert (await breaker.admit([user(cost=0), fleet(cost=0)])).groups_allowed == {0: True}
    finally:
        node.resume()
        await breaker.aclose()


async def test_sentinel_url() -> None:
    with start_redis_sentinel() as sentinel:
        backend = open_backend(sentinel.url, timeout=1.0)
        assert isinstance(backend, RedisBackend) and backend.mode == "sentinel"
        try:
            await backend.prepare()
            await backend.ping()
            admitted = [(await backend.admit([fleet()])).groups_allowed[0] for _ in range(6)]
            await backend.settle([MergeState(TEMPLATE, (("peers", "1"),), ttl=60)])
        finally:
            await backend.aclose()
        with redis.Redis(port=sentinel.master.port) as master:  # the counters are there
            assert master.exists(GLOBAL, TEMPLATE + ":state") == 2
    assert admitted == [True] * 5 + [False]

