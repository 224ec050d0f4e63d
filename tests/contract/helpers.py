"""What the contract tests ask of a backend beyond the interface: the keys it stores."""

from __future__ import annotations

from redis.asyncio.cluster import RedisCluster

from gateway.storage import CounterBackend, MemoryBackend, RedisBackend


async def stored_keys(backend: CounterBackend) -> set[str]:
    """Every key the backend holds now (on a cluster: on every primary)."""
    if isinstance(backend, RedisBackend):
        client = backend.client
        if isinstance(client, RedisCluster):
            keys = await client.keys(target_nodes=RedisCluster.PRIMARIES)
        else:
            keys = await client.keys()
        return {k.decode() if isinstance(k, bytes) else k for k in keys}
    assert isinstance(backend, MemoryBackend)
    return set(backend.keys())
