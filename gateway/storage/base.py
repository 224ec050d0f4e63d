"""The counter backend interface: what every policy may ask of storage.

A request's counters are read and written in ONE call (`admit`), and settled
after the response in one more (`settle`). Both implementations (memory and
Redis) must give the same answers; `tests/contract` holds them to it (Redis
as one server and as a three-node Cluster).

Keys carry a Redis Cluster hash tag (`identity_key`): the keys of one call
with the same tag are on one slot and so cost one script run. On a cluster a
call over several tags (an identity's and a `{global}` limit, say) becomes one
run per slot, in parallel; see storage/redis.py for what that costs.

Limits use GCRA (generic cell rate algorithm): each bucket keeps a
"theoretical arrival time" (TAT). A bucket of `rate` units per `period`
seconds with room for `burst` units admits a cost `c` at time `now` when

    new_tat = max(tat, now) + c * T        where T = period / rate
    new_tat - burst * T <= now + max_delay

and the caller then waits `max(0, new_tat - burst * T - now)` seconds. This is
exact (no double burst at window edges) and a `delay` is one round trip: the
slot is reserved in arrival order.

Signals (`Observe`) ride in the same round trip: sliding-window counts of
requests, distinct values and repeats per identity, plus a small per-identity
state hash that `settle` writes back (`MergeState`). They never refuse.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

KEY_PREFIX = "dg"
# Bounds on one Observe, so its Lua arguments fit unpack() (a few thousand
# values) and the per-call work stays small: it reads `slots` sub-windows per
# set in one PFCOUNT, and all its counters in one HMGET per sub-window.
MAX_SLOTS = 1024
MAX_COUNTERS = 1000


def identity_key(identity_id: str, *parts: str) -> str:
    """`dg:{<identity_id>}:<parts>`: the hash tag keeps an identity's keys on one
    Cluster slot. Shared scopes pass their own tag instead (`tier=gold`,
    `global`, `tpl-<hash>`), which lands on a slot of its own."""
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


@dataclass(frozen=True, slots=True)
class Observe:
    """Count one request into sliding-window signals under `key`, and read the window back.

    The window is `slots` sub-windows of `window / slots` seconds each, indexed
    by floor(now / (window / slots)) with `now` from the backend (Redis TIME).
    Per sub-window: one HyperLogLog per set name (PFADD of `members`) and one
    hash of float counters (`counters`) that also counts occurrences of
    `tally_member` (its tally), so the caller learns how often THIS value
    occurred in the window. (Counters and tally share the hash, in fields
    "c<name>" and "t<member>": one key less per sub-window, ~10% of an idle
    identity's memory, and one read per sub-window.) Reads cover the current
    and the `slots - 1` previous sub-windows: PFCOUNT over the union of each
    set's HLLs, the sum of each counter, the summed tally of `tally_member`.
    So a request counts for between `window - window / slots` and `window`
    seconds, depending on where in its sub-window it fell. Keys derive from
    `key` (which carries the hash tag) and expire `window` seconds after their
    sub-window ends. An Observe never refuses (allowed=True) and may share a
    group with Acquire/Lease ops, but it is applied even when its group is
    refused (a refused request is still a signal).

    Distinct counts are estimates on Redis (HyperLogLog: ~0.81% standard
    error, and small counts may be off by one) and exact on the memory backend
    up to a per-sub-window cap (see memory.py). Counters are added as float64
    in both backends (Redis HINCRBYFLOAT would add in long double and round to
    17 decimals, which the memory backend could not mirror); a counter
    increment of 0 reads without writing. Several members for one set name, or
    several increments of one counter name, are all applied in order; results
    are keyed by name.

    Ops within one call are applied in this order: every group's Acquire and
    Lease ops first, then each Observe in call order.
    """

    key: str
    window: float
    slots: int = 6
    members: tuple[tuple[str, str], ...] = ()  # (set name, member)
    counters: tuple[tuple[str, float], ...] = ()  # (counter name, increment)
    tally_member: str | None = None
    read_state: bool = False  # also return HGETALL of f"{key}:state"
    group: int = 0

    def __post_init__(self) -> None:
        # Fail when the rule is planned, not as a script error on the request path.
        if not (0 < self.window < math.inf):
            raise ValueError(f"Observe window must be positive and finite, got {self.window!r}")
        if not isinstance(self.slots, int) or not 1 <= self.slots <= MAX_SLOTS:
            raise ValueError(f"Observe slots must be 1..{MAX_SLOTS}, got {self.slots!r}")
        if len(self.counters) > MAX_COUNTERS:
            raise ValueError(f"Observe takes at most {MAX_COUNTERS} counters")
        for name, increment in self.counters:
            if not math.isfinite(increment):
                raise ValueError(f"counter {name!r}: increment must be finite, got {increment!r}")

    @property
    def set_names(self) -> tuple[str, ...]:
        """Set names in order of first appearance: the keys of `ObserveResult.distinct`."""
        return tuple(dict.fromkeys(name for name, _ in self.members))

    @property
    def counter_names(self) -> tuple[str, ...]:
        """Counter names in order of first appearance: the keys of `ObserveResult.totals`."""
        return tuple(dict.fromkeys(name for name, _ in self.counters))


@dataclass(frozen=True, slots=True)
class MergeState:
    """Settle-time write of fields into the hash f"{key}:state" (HSET), expiring after ttl seconds.

    Fields not named keep their values; every merge restarts the TTL (with no
    fields it only restarts the TTL of an existing hash). `Observe(read_state=True)`
    on the same `key` reads it back on the next request, in the same round trip
    as its counters.
    """

    key: str
    fields: tuple[tuple[str, str], ...]
    ttl: float

    def __post_init__(self) -> None:
        if not (0 < self.ttl < math.inf):
            raise ValueError(f"MergeState ttl must be positive and finite, got {self.ttl!r}")


AdmitOp = Acquire | Lease | Observe
SettleOp = Adjust | Release | MergeState


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
class ObserveResult(OpResult):
    """What one `Observe` saw: the window, this request included.

    - distinct: set name -> PFCOUNT over the window (for sets in `members`).
    - totals: counter name -> sum over the window (for names in `counters`).
    - tally: occurrences of `tally_member` in the window (0 if None).
    - state: the state hash when `read_state`, else {}.

    It is an `OpResult` so that code handling results by position (the chain,
    handlers of Acquire/Lease ops) keeps its types: an Observe never refuses,
    so `allowed` is True and the limit fields are 0 (they mean nothing here).
    Tell it apart with `isinstance(result, ObserveResult)`.
    """

    distinct: dict[str, float]
    totals: dict[str, float]
    tally: float
    state: dict[str, str]
    allowed: bool = field(default=True, kw_only=True)
    limit: float = field(default=0.0, kw_only=True)
    remaining: float = field(default=0.0, kw_only=True)
    reset_after: float = field(default=0.0, kw_only=True)
    retry_after: float = field(default=0.0, kw_only=True)
    delay: float = field(default=0.0, kw_only=True)


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to one `admit` call.

    Ops are grouped by their `group` number and each group is all-or-nothing:
    when any op of a group refuses, no op of that group changes storage.
    `groups_allowed[g]` says whether group `g` was admitted. Observe ops do
    not count toward it (they never refuse and are applied either way); a
    group holding only Observe ops is True.

    `results[i]` answers `ops[i]`: an `ObserveResult` for an Observe, a plain
    `OpResult` otherwise.
    """

    results: tuple[OpResult | ObserveResult, ...]
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
