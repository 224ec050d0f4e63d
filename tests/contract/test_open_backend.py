"""open_backend picks the backend from the storage URL."""

from __future__ import annotations

import pytest

from gateway.storage import MemoryBackend, RedisBackend, open_backend


async def test_memory_url() -> None:
    assert isinstance(open_backend("memory", timeout=0.05), MemoryBackend)


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379/0", "rediss://user:pw@host:6380", "unix:///tmp/redis.sock"]
)
async def test_redis_urls(url: str) -> None:
    backend = open_backend(url, timeout=0.05)  # connects lazily
    assert isinstance(backend, RedisBackend)
    await backend.aclose()


@pytest.mark.parametrize("url", ["redis+sentinel://secret@host", "memcached://host", "localhost"])
def test_other_urls_are_refused_without_echoing_secrets(url: str) -> None:
    with pytest.raises(ValueError, match="not supported yet") as info:
        open_backend(url, timeout=0.05)
    assert "secret" not in str(info.value)
