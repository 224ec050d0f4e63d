"""Fixtures for the backend contract suite: every `backend` test runs on memory, one
Redis server and a three-node Redis Cluster.

All backends share one injected FakeClock, so no test sleeps. Redis comes from
REDIS_URL when set, else from a redis-server started once per session; the
cluster from REDIS_CLUSTER_URL when set, else from the session's cluster
(tests/support/redis_cluster.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from gateway.clock import FakeClock
from gateway.storage import CounterBackend, MemoryBackend, RedisBackend
from tests.support.redis_cluster import cluster_url_for_tests
from tests.support.redis_server import external_redis_url, start_redis_server

# Generous for a loaded CI box; the fault tests use their own short timeouts.
REDIS_TIMEOUT = 1.0


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = external_redis_url()
    if url is not None:
        yield url
        return
    with start_redis_server() as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_cluster_url() -> str:
    return cluster_url_for_tests()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("cluster", marks=pytest.mark.redis)])
async def backend(
    request: pytest.FixtureRequest, clock: FakeClock
) -> AsyncIterator[CounterBackend]:
    if request.param == "memory":
        yield MemoryBackend(clock)
        return
    fixture = "redis_url" if request.param == "redis" else "redis_cluster_url"
    url: str = request.getfixturevalue(fixture)
    redis_backend = RedisBackend.from_url(url, timeout=REDIS_TIMEOUT, clock=clock)
    await redis_backend.client.flushall()
    try:
        yield redis_backend
    finally:
        await redis_backend.aclose()
