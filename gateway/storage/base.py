"""The counter backend interface: what every policy may ask of storage.

A request's counters are read and written in ONE call (`admit`), and settled
after the response in one more (`settle`). Both implementations (memory and
Redis) must give the same answers; `tests/contract` holds them to it.

Limits use GCRA (generic cell rate algorithm): each bucket keeps a
"theoretical arrival time" (TAT). A bucket of `rate` units per `period`
seconds with room for `burst` units admits a cost `c` at time `now` when

    new_tat = max(tat, now) + c * T        where T = period / rate
    new_tat - burst * T <= now + max_delay

and the caller then waits `max(0, new_tat - burst * T - now)` seconds. This is
exact (no double burst at window edges) and a `delay` is one round trip: the
slot is reserved in arrival order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

KEY_PREFIX = "dg"


def identity_key(identity_id: str, *parts: str) -> str:
    """A key for one identity; the hash tag keeps its keys on one Cluster slot."""
    return f"{KEY_PREFIX}:{{{identity_id}}}:" + ":".join(parts)


@dataclass(frozen=True, slots=True)
class Acquire:
    """Take `cost` units from a GCRA bucket, waiting at most `max_delay` seconds."""

    key: str
    rate: float
    period: float
    burst: float
    cost: float = 1.0
    max_delay: float = 0.0
    group: int = 0


@dataclass(frozen=True, slots=True)
class Lease:
    """Hold one of `limit` concurrent slots until released or `ttl` seconds pass."""

    key: str
    limit: int
    lease_id: str
    ttl: float = 600.0
    group: int = 0


@dataclass(frozen=True, slots=True)
class Adjust:
    """Charge (delta > 0) or refund (delta < 0) a GCRA bucket; never refuses."""

    key: str
    rate: float
    period: float
    burst: float
    delta: float


@dataclass(frozen=True, slots=True)
class Release:
    """Give back a concurrency slot taken by `Lease`."""

    key: str
    lease_id: str


AdmitOp = Acquire | Lease
SettleOp = Adjust | Release


@dataclass(frozen=True, slots=True)
class OpResult:
    """What one admit op saw. Units are the op's own (requests, tokens, slots).

    - allowed: this op alone would admit.
    - remaining: units left after this request; when nothing was written
      (refused, or its group refused), units left as storage stands.
    - reset_after: seconds until the bucket is full again.
    - retry_after: when refused, seconds until the cost would fit; else 0.
    - delay: when admitted, seconds the caller must wait first (delay mode).
    """

    allowed: bool
    limit: float
    remaining: float
    reset_after: float
    retry_after: float
    delay: float


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to one `admit` call.

    Ops are grouped by their `group` number and each group is all-or-nothing:
    when any op of a group refuses, no op of that group changes storage.
    `groups_allowed[g]` says whether group `g` was admitted.
    """

    results: tuple[OpResult, ...]
    groups_allowed: dict[int, bool]
    now: float


class StorageError(Exception):
    """Storage could not answer (down, slow, or broken)."""


class CircuitOpen(StorageError):
    """Storage is not even tried: it failed recently (see storage/breaker.py)."""


class CounterBackend(ABC):
    """Counters with atomic multi-bucket operations, one round trip per call."""

    name: str = "abstract"

    @abstractmethod
    async def admit(self, ops: Sequence[AdmitOp]) -> Admission:
        """Check and take every op atomically; each group all-or-nothing."""

    @abstractmethod
    async def settle(self, ops: Sequence[SettleOp]) -> None:
        """Apply reconciliations and releases atomically."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise StorageError when the backend cannot be reached."""

    async def prepare(self) -> None:  # noqa: B027 - optional hook
        """Warm up (load scripts) before traffic; raise StorageError if unreachable."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
