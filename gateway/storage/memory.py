"""Counters in this process's memory: the embedded default for one process.

The semantics are those of `scripts/admit.lua` and `scripts/settle.lua`, step
for step and float operation for float operation, so both backends give the
same answers (`tests/contract` runs one suite against both). Each call runs
without an `await`, so it is atomic on the event loop.

Entries carry the expiry Redis would give them. Reads ignore expired entries,
and every call also inspects a few entries in least-recently-written order,
dropping the expired ones and rotating the rest to the back, so memory stays
bounded by the live keys without a background task or a full scan.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.clock import Clock, SystemClock
from gateway.storage.base import (
    Acquire,
    Adjust,
    Admission,
    AdmitOp,
    CounterBackend,
    Lease,
    OpResult,
    SettleOp,
    StorageError,
)

# Within 1 us of its slot a request is on time: timestamps resolve no finer
# (Redis TIME: 1 us; float64 epoch seconds: ~0.24 us). Same value as admit.lua.
EPS = 1e-6
# Entries inspected for expiry per op (at least _SWEEP_MIN per call): more than
# a call can create, so expired entries cannot pile up.
_SWEEP_PER_OP = 2
_SWEEP_MIN = 8


@dataclass(slots=True)
class _Bucket:
    # The TAT is whole + fraction; kept split for precision (see admit.lua).
    whole: float
    fraction: float
    expires_at: float


@dataclass(slots=True)
class _Leases:
    members: dict[str, float]  # lease id -> expiry time
    expires_at: float


_Entry = _Bucket | _Leases


@dataclass(frozen=True, slots=True)
class _Now:
    value: float
    whole: float
    fraction: float

    @classmethod
    def of(cls, now: float) -> _Now:
        whole = float(math.floor(now))
        return cls(whole + (now - whole), whole, now - whole)  # as admit.lua: ns + nf


def _ttl_ms(rel: float) -> int:
    return math.ceil(rel * 1000) + 1


def _remaining(rel: float, t: float, burst: float) -> float:
    r = float(math.floor((burst * t - rel + EPS) / t))
    return min(max(r, 0.0), burst)


class MemoryBackend(CounterBackend):
    """GCRA buckets and lease sets in a dict; see the module docstring."""

    name = "memory"

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock or SystemClock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        """Entries held, including expired ones not yet swept."""
        return len(self._entries)

    async def admit(self, ops: Sequence[AdmitOp]) -> Admission:
        now = _Now.of(self._clock.now())
        groups: dict[int, list[int]] = {}
        for i, op in enumerate(ops):
            groups.setdefault(op.group, []).append(i)
        results: list[OpResult | None] = [None] * len(ops)
        allowed: dict[int, bool] = {}
        for group, members in groups.items():
            allowed[group] = self._admit_group(ops, members, now, results)
        self._sweep(now.value, max(_SWEEP_MIN, _SWEEP_PER_OP * len(ops)))
        return Admission(
            results=tuple(r for r in results if r is not None),
            groups_allowed=allowed,
            now=now.value,
        )

    async def settle(self, ops: Sequence[SettleOp]) -> None:
        now = _Now.of(self._clock.now())
        for op in ops:
            if isinstance(op, Adjust):
                rel = self._bucket_rel(op.key, now)
                # A refund never moves the TAT below now (deleting = full bucket).
                new_rel = rel + op.delta * (op.period / op.rate)
                if new_rel > 0:
                    self._store_tat(op.key, new_rel, now)
                else:
                    self._entries.pop(op.key, None)
            else:
                leases = self._leases(op.key, now)
                if leases is not None:
                    leases.members.pop(op.lease_id, None)
                    if not leases.members:
                        del self._entries[op.key]
        self._sweep(now.value, max(_SWEEP_MIN, _SWEEP_PER_OP * len(ops)))

    async def ping(self) -> None:
        return None

    def keys(self) -> list[str]:
        """Keys of the unexpired entries (for tests and debugging)."""
        now = self._clock.now()
        return [k for k, e in self._entries.items() if e.expires_at > now]

    def purge_expired(self) -> int:
        """Drop every expired entry now (a full scan); return how many went."""
        now = self._clock.now()
        expired = [k for k, e in self._entries.items() if e.expires_at <= now]
        for key in expired:
            del self._entries[key]
        return len(expired)

    # -- admit ---------------------------------------------------------------

    def _admit_group(
        self,
        ops: Sequence[AdmitOp],
        members: list[int],
        now: _Now,
        results: list[OpResult | None],
    ) -> bool:
        # Writes are staged so a later op of the group sees an earlier one on the same key.
        staged_tat: dict[str, float] = {}
        staged_leases: dict[str, dict[str, float]] = {}
        ok = True
        for i in members:
            op = ops[i]
            if isinstance(op, Acquire):
                admitted, results[i] = self._acquire(op, now, staged_tat)
            else:
                admitted, results[i] = self._lease(op, now, staged_leases)
            ok = ok and admitted
        if ok:
            for key, rel in staged_tat.items():
                self._store_tat(key, rel, now)
            for key, ids in staged_leases.items():
                self._store_leases(key, ids, now)
            return True
        for i in members:
            result = results[i]
            if result is not None and result.allowed:
                results[i] = self._unchanged(ops[i], now)
        return False

    def _acquire(self, op: Acquire, now: _Now, staged: dict[str, float]) -> tuple[bool, OpResult]:
        t = op.period / op.rate
        burst = float(op.burst)
        rel = staged[op.key] if op.key in staged else self._bucket_rel(op.key, now)
        new_rel = rel + op.cost * t
        wait = new_rel - burst * t
        if wait <= op.max_delay + EPS:
            if op.cost > 0:
                staged[op.key] = new_rel
            remaining = _remaining(new_rel, t, burst)
            return True, OpResult(True, burst, remaining, new_rel, 0.0, max(0.0, wait))
        remaining = _remaining(rel, t, burst)
        return False, OpResult(False, burst, remaining, rel, wait - op.max_delay, 0.0)

    def _lease(
        self, op: Lease, now: _Now, staged: dict[str, dict[str, float]]
    ) -> tuple[bool, OpResult]:
        stored = self._leases(op.key, now)
        held = stored.members if stored is not None else {}
        ids = staged.get(op.key)
        present = (ids is not None and op.lease_id in ids) or op.lease_id in held
        count = len(held) + (len([i for i in ids if i not in held]) if ids else 0)
        limit = float(op.limit)
        if present or count < op.limit:
            staged.setdefault(op.key, {})[op.lease_id] = now.value + op.ttl
            count += 0 if present else 1
            return True, OpResult(True, limit, max(0.0, limit - count), 0.0, 0.0, 0.0)
        scores = [*held.values(), *(ids.values() if ids else ())]
        # With no lease to wait for (limit <= 0) the op's own ttl is reported.
        retry = min(scores) - now.value if scores else float(op.ttl)
        return False, OpResult(False, limit, max(0.0, limit - count), 0.0, retry, 0.0)

    def _unchanged(self, op: AdmitOp, now: _Now) -> OpResult:
        """Result fields for an op that writes nothing: storage as it stands."""
        if isinstance(op, Acquire):
            t = op.period / op.rate
            burst = float(op.burst)
            rel = self._bucket_rel(op.key, now)
            return OpResult(True, burst, _remaining(rel, t, burst), rel, 0.0, 0.0)
        stored = self._leases(op.key, now)
        count = len(stored.members) if stored is not None else 0
        return OpResult(True, float(op.limit), max(0.0, op.limit - count), 0.0, 0.0, 0.0)

    # -- storage ---------------------------------------------------------------

    def _get(self, key: str, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at <= now:
            del self._entries[key]
            return None
        return entry

    def _bucket_rel(self, key: str, now: _Now) -> float:
        """Seconds the stored TAT lies ahead of now; 0 when absent or past."""
        entry = self._get(key, now.value)
        if entry is None:
            return 0.0
        if not isinstance(entry, _Bucket):
            raise StorageError(f"WRONGTYPE {key!r} holds leases, not a bucket")
        rel = (entry.whole - now.whole) + (entry.fraction - now.fraction)
        return rel if rel > 0 else 0.0

    def _store_tat(self, key: str, rel: float, now: _Now) -> None:
        t = now.fraction + rel
        k = float(math.floor(t))
        expires_at = now.value + _ttl_ms(rel) / 1000
        self._entries[key] = _Bucket(now.whole + k, t - k, expires_at)
        self._entries.move_to_end(key)

    def _leases(self, key: str, now: _Now) -> _Leases | None:
        """The lease set at `key` with expired leases purged, or None."""
        entry = self._get(key, now.value)
        if entry is None:
            return None
        if not isinstance(entry, _Leases):
            raise StorageError(f"WRONGTYPE {key!r} holds a bucket, not leases")
        for lease_id in [i for i, exp in entry.members.items() if exp <= now.value]:
            del entry.members[lease_id]
        if not entry.members:
            del self._entries[key]
            return None
        return entry

    def _store_leases(self, key: str, ids: dict[str, float], now: _Now) -> None:
        stored = self._leases(key, now)
        members = stored.members if stored is not None else {}
        members.update(ids)
        # The key lives as long as its longest lease.
        expires_at = now.value + _ttl_ms(max(members.values()) - now.value) / 1000
        self._entries[key] = _Leases(members, expires_at)
        self._entries.move_to_end(key)

    def _sweep(self, now: float, budget: int) -> None:
        """Look at `budget` entries from the front: drop the expired, rotate the rest."""
        entries = self._entries
        for _ in range(min(budget, len(entries))):
            key, entry = next(iter(entries.items()))
            if entry.expires_at <= now:
                del entries[key]
            else:
                entries.move_to_end(key)
