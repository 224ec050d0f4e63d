"""Counter storage: one interface (`base`), two backends with the same semantics.

The Redis backend runs against one server, Sentinel or Cluster, as the URL says
(`open_backend`, `redis_urls`).
"""

from __future__ import annotations

from gateway.clock import Clock
from gateway.storage.base import (
    Acquire,
    Adjust,
    Admission,
    AdmitOp,
    CounterBackend,
    Lease,
    MergeState,
    Observe,
    ObserveResult,
    OpResult,
    Release,
    SettleOp,
    StorageError,
    identity_key,
)
from gateway.storage.memory import MemoryBackend
from gateway.storage.redis import RedisBackend
from gateway.storage.redis_urls import SCHEMES as REDIS_SCHEMES
from gateway.storage.redis_urls import scheme_of

__all__ = [
    "Acquire",
    "Adjust",
    "Admission",
    "AdmitOp",
    "CounterBackend",
    "Lease",
    "MemoryBackend",
    "MergeState",
    "Observe",
    "ObserveResult",
    "OpResult",
    "RedisBackend",
    "Release",
    "SettleOp",
    "StorageError",
    "identity_key",
    "open_backend",
]

def open_backend(
    url: str, *, timeout: float, clock: Clock | None = None, max_connections: int = 32
) -> CounterBackend:
    """The backend a storage URL names; nothing connects until the first call.

    - `memory`: this process only.
    - `redis://`, `rediss://`, `unix://`: one Redis server.
    - `redis+cluster://h1:p1[,h2:p2...]` (TLS: `rediss+cluster://`): Redis Cluster.
    - `redis+sentinel://h1:p1[,h2:p2...]/service[/db]`: the master Sentinel names.

    See `gateway.storage.redis_urls` for the full forms.
    """
    if url == "memory":
        return MemoryBackend(clock)
    scheme = scheme_of(url)
    if scheme in REDIS_SCHEMES:
        return RedisBackend.from_url(
            url, timeout=timeout, clock=clock, max_connections=max_connections)
    # Only the scheme is echoed: the URL may carry a password.
    raise ValueError(
        f"unsupported storage URL scheme {scheme or '(none)'!r}: use 'memory', redis://, "
        "rediss://, unix://, redis+cluster://, rediss+cluster:// or redis+sentinel://"
    )
