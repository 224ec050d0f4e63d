"""Counter storage: one interface (`base`), two backends with the same semantics."""

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

_REDIS_SCHEMES = ("redis", "rediss", "unix")


def open_backend(
    url: str, *, timeout: float, clock: Clock | None = None, max_connections: int = 32
) -> CounterBackend:
    """`"memory"` for this process only, or a `redis://`, `rediss://`, `unix://` URL."""
    if url == "memory":
        return MemoryBackend(clock)
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in _REDIS_SCHEMES:
        return RedisBackend.from_url(
            url, timeout=timeout, clock=clock, max_connections=max_connections)
    # Only the scheme is echoed: the URL may carry a password.
    raise ValueError(
        f"unsupported storage URL scheme {scheme or '(none)'!r}: use 'memory', redis://, "
        "rediss:// or unix:// (Redis Cluster and Sentinel are not supported yet)"
    )
