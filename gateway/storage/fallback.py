"""The local fallback used while shared storage is away.

Each gateway process enforces `limit / replicas` on its own, so with N
replicas the fleet as a whole stays near the configured limit.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TypeVar

from gateway.clock import Clock
from gateway.storage.base import Acquire, Adjust, AdmitOp, Lease, SettleOp
from gateway.storage.memory import MemoryBackend

Op = TypeVar("Op", AdmitOp, SettleOp, Acquire, Lease, Adjust)


def scale_op(op: Op, replicas: int) -> Op:
    """The op with its limit divided among `replicas` processes."""
    if replicas <= 1:
        return op
    if isinstance(op, Acquire | Adjust):
        return replace(op, rate=op.rate / replicas, burst=max(op.burst / replicas, 1.0))
    if isinstance(op, Lease):
        return replace(op, limit=max(1, math.ceil(op.limit / replicas)))
    return op


class LocalFallback(MemoryBackend):
    name = "memory-fallback"

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__(clock)
