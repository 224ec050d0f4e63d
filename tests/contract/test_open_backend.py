"""open_backend picks the backend, and the Redis mode, from the storage URL."""

from __future__ import annotations

import pytest

from gateway.storage import MemoryBackend, RedisBackend, open_backend
from gateway.storage.redis_urls import RedisTarget, parse_redis_url


async def test_memory_url() -> None:
    assert isinstance(open_backend("memory", timeout=0.05), MemoryBackend)


@pytest.mark.parametrize(
    ("url", "mode"),
    [
        ("redis://localhost:6379/0", "single"),
        ("rediss://user:pw@host:6380", "single"),
        ("unix:///tmp/redis.sock", "single"),
        ("redis+cluster://10.0.0.1:7000,10.0.0.2:7001", "cluster"),
        ("rediss+cluster://:pw@redis.internal", "cluster"),
        ("redis+sentinel://s1:26379,s2:26379/mymaster/2", "sentinel"),
    ],
)
async def test_redis_urls(url: str, mode: str) -> None:
    backend = open_backend(url, timeout=0.05)  # connects lazily
    assert isinstance(backend, RedisBackend)
    assert backend.mode == mode
    assert backend.is_cluster == (mode == "cluster")
    await backend.aclose()


def test_cluster_and_sentinel_urls_parse() -> None:
    assert parse_redis_url("rediss+cluster://us%40r:p%3Ass@a:7000,[::1]:7001,b/0") == RedisTarget(
        "cluster", (("a", 7000), ("::1", 7001), ("b", 6379)), "us@r", "p:ss", tls=True)
    assert parse_redis_url(
        "redis+sentinel://:pw@s1,s2:5000/my%20master/3?sentinel_password=sp") == RedisTarget(
        "sentinel", (("s1", 26379), ("s2", 5000)), None, "pw", db=3, service="my master",
        sentinel_password="sp")


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://secret@host",  # no service name
        "redis+sentinel://:secret@host/svc/0/extra",
        "redis+sentinel://:secret@host/svc?ssl=secret",
        "redis+cluster://:secret@host:7000/1",  # a cluster has db 0 only
        "redis+cluster://:secret@host:7000?read_from_replicas=secret",
        "redis+cluster://:secret@host:port",
        "redis+cluster://:secret@,host",
        "memcached://secret@host",
        "localhost",
    ],
)
def test_other_urls_are_refused_without_echoing_secrets(url: str) -> None:
    with pytest.raises(ValueError) as info:
        open_backend(url, timeout=0.05)
    assert "secret" not in str(info.value)
