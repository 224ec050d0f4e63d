"""Counters in this process's memory: the embedded default for one process.

The semantics are those of `scripts/admit.lua` and `scripts/settle.lua`, step
for step and float operation for float operation, so both backends give the
same answers (`tests/contract` runs one suite against both). Each call runs
without an `await`, so it is atomic on the event loop.

Entries carry the expiry Redis would give them. Reads ignore expired entries,
and every call also inspects a few entries in least-recently-written order,
dropping the expired ones and rotating the rest to the back, so memory stays
bounded by the live keys without a background task or a full scan.

`Observe` keeps the same keys as admit.lua (one entry per sub-window set and
one per sub-window hash of counters and tally, plus the state hash), with two
differences:

- Distinct counts are exact here, where Redis's HyperLogLog estimates them
  (~0.81% standard error). Past `max_members` members in one sub-window's
  set, the set becomes a distinct sample: it keeps only members whose hash
  has at least `level` trailing zero bits, raising `level` (and halving the
  set) each time it fills again, and a window count is the sampled union
  times 2**level. Its standard error is then at most 1/sqrt(max_members / 2),
  about Redis's at the default, and the set never holds more than
  `max_members` members.
- A sub-window keeps the tally of at most `max_members` members. A member
  arriving when it is full is counted in this call's answer but not kept, so
  repeats of it count 1 each: only an identity sending that many distinct
  tally members in one sub-window sees it.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from gateway.clock import Clock, SystemClock
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
# Members kept per set (and per tally hash) per sub-window. A distinct sample
# of at least half this many has a standard error <= 1/sqrt(16384) = 0.78%,
# no worse than Redis's HyperLogLog (0.81%).
MAX_MEMBERS = 32_768


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


@dataclass(slots=True)
class _Distinct:
    """One sub-window's set (a HyperLogLog key in Redis).

    members maps each kept member to its hash rank (trailing zero bits), or -1
    while not yet needed. level 0: every member is kept (exact); level k: only
    members of rank >= k are (a 2**-k sample; see the module docstring).
    `version` moves whenever members change; `pending` lists members kept
    since the window count was last brought up to date (see _window_count).
    """

    members: dict[str, int]
    level: int
    expires_at: float
    version: int = 0
    pending: list[str] = field(default_factory=list)
    cache: _WindowCache | None = None


@dataclass(slots=True)
class _WindowCache:
    """The window count of a current sub-window, kept up to date as it grows.

    The previous sub-windows of a window no longer change, so the size of
    their union is computed once (per sub-window, and again only if one of
    them or the sampling level changes); each member the current sub-window
    gains then costs one membership test per previous sub-window. So a read
    costs O(slots), not O(members in the window): a flood of distinct prompts
    (which Observe counts even when refused) cannot make every request slower.
    """

    stamp: tuple[tuple[int, int], ...]  # (id, version) of each previous sub-window
    level: int
    previous: int  # members of the previous sub-windows' union (of rank >= level)
    novel: int  # members of the current sub-window in none of them (of rank >= level)


@dataclass(slots=True)
class _Counts:
    """A sub-window's hash: counter name -> float64 sum, tally member -> occurrences."""

    counters: dict[str, float]
    tally: dict[str, float]
    expires_at: float


@dataclass(slots=True)
class _State:
    """The state hash written by MergeState."""

    fields: dict[str, str]
    expires_at: float


_Entry = _Bucket | _Leases | _Distinct | _Counts | _State
_E = TypeVar("_E", _Bucket, _Leases, _Distinct, _Counts, _State)


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


def _rank(member: str) -> int:
    """Trailing zero bits of a 64-bit hash of `member`: >= k with probability 2**-k."""
    digest = hashlib.blake2b(member.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    h = int.from_bytes(digest, "little")
    return 64 if h == 0 else (h & -h).bit_length() - 1


def _ranked(sample: _Distinct, member: str) -> int:
    rank = sample.members[member]
    if rank < 0:
        rank = sample.members[member] = _rank(member)
    return rank


def _window_count(current: _Distinct, previous: list[_Distinct]) -> float:
    """PFCOUNT over a window: exact, or from the common sample (all at one level)."""
    level = max([current.level, *(p.level for p in previous)])
    stamp = tuple((id(p), p.version) for p in previous)
    cache = current.cache
    if cache is None or cache.stamp != stamp or cache.level != level:
        union: set[str] = set()
        for p in previous:
            union.update(m for m in p.members if level == 0 or _ranked(p, m) >= level)
        novel = sum(1 for m in current.members
                    if (level == 0 or _ranked(current, m) >= level) and m not in union)
        current.cache = cache = _WindowCache(stamp, level, len(union), novel)
    else:
        for m in current.pending:
            # A member of rank >= level that a previous sub-window saw was kept there.
            if (m in current.members and (level == 0 or _ranked(current, m) >= level)
                    and not any(m in p.members for p in previous)):
                cache.novel += 1
    current.pending.clear()
    return float((cache.previous + cache.novel) * 2**level)


def _writes(op: AdmitOp) -> int:
    """Entries one admit op may write (the sweep must outpace them)."""
    if isinstance(op, Observe):
        return len(op.set_names) + 1
    return 1


class MemoryBackend(CounterBackend):
    """GCRA buckets and lease sets in a dict; see the module docstring."""

    name = "memory"

    def __init__(self, clock: Clock | None = None, *, max_members: int = MAX_MEMBERS) -> None:
        """`max_members`: members kept per set and per tally hash per sub-window."""
        if max_members < 2:
            raise ValueError(f"max_members must be at least 2, got {max_members}")
        self._clock: Clock = clock or SystemClock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._max_members = max_members

    def __len__(self) -> int:
        """Entries held, including expired ones not yet swept."""
        return len(self._entries)

    async def admit(self, ops: Sequence[AdmitOp]) -> Admission:
        now = _Now.of(self._clock.now())
        groups: dict[int, list[int]] = {}
        for i, op in enumerate(ops):
            # Observe ops join no group's decision: they never refuse.
            members = groups.setdefault(op.group, [])
            if not isinstance(op, Observe):
                members.append(i)
        results: list[OpResult | None] = [None] * len(ops)
        allowed: dict[int, bool] = {}
        for group, members in groups.items():
            allowed[group] = self._admit_group(ops, members, now, results)
        for i, op in enumerate(ops):
            if isinstance(op, Observe):
                results[i] = self._observe(op, now.value)
        self._sweep(now.value, max(_SWEEP_MIN, _SWEEP_PER_OP * sum(map(_writes, ops))))
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
            elif isinstance(op, MergeState):
                self._merge_state(op, now.value)
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

    def members_held(self) -> int:
        """Set members and tally members held, expired or not (for tests: the cap)."""
        return sum(
            len(e.members) if isinstance(e, _Distinct) else len(e.tally)
            for e in self._entries.values()
            if isinstance(e, _Distinct | _Counts)
        )

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
                assert isinstance(op, Lease)  # Observe ops are in no group's members
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
            op = ops[i]
            if result is not None and result.allowed and not isinstance(op, Observe):
                results[i] = self._unchanged(op, now)
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

    def _unchanged(self, op: Acquire | Lease, now: _Now) -> OpResult:
        """Result fields for an op that writes nothing: storage as it stands."""
        if isinstance(op, Acquire):
            t = op.period / op.rate
            burst = float(op.burst)
            rel = self._bucket_rel(op.key, now)
            return OpResult(True, burst, _remaining(rel, t, burst), rel, 0.0, 0.0)
        stored = self._leases(op.key, now)
        count = len(stored.members) if stored is not None else 0
        return OpResult(True, float(op.limit), max(0.0, op.limit - count), 0.0, 0.0, 0.0)

    # -- observe (admit.lua: observe) -------------------------------------------

    def _observe(self, op: Observe, now: float) -> ObserveResult:
        sub = op.window / op.slots
        idx = math.floor(now / sub)
        first = idx - op.slots + 1
        # Each sub-window key lives until `window` seconds after its sub-window ends.
        expires_at = now + _ttl_ms((idx + 1) * sub + op.window - now) / 1000
        prefix = op.key + ":"

        for name, member in op.members:
            self._add_member(f"{prefix}{idx}:s:{name}", member, now, expires_at)
        distinct: dict[str, float] = {}
        for name in op.set_names:
            current = self._get_typed(f"{prefix}{idx}:s:{name}", now, _Distinct)
            assert current is not None  # just added to
            current.expires_at = expires_at  # PEXPIRE
            previous = [p for j in range(first, idx)
                        if (p := self._get_typed(f"{prefix}{j}:s:{name}", now, _Distinct))
                        is not None]
            distinct[name] = _window_count(current, previous)

        # One hash per sub-window holds the counters and the tally (admit.lua: "c" / "t" fields).
        hk = f"{prefix}{idx}:c"
        wrote = False
        for name, increment in op.counters:
            if increment != 0:
                counts = self._counts(hk, now, expires_at)
                counts.counters[name] = counts.counters.get(name, 0.0) + increment
                wrote = True
        kept = True
        tallied = op.tally_member
        if tallied is not None:
            counts = self._counts(hk, now, expires_at)
            kept = tallied in counts.tally or len(counts.tally) < self._max_members
            if kept:
                counts.tally[tallied] = counts.tally.get(tallied, 0.0) + 1
            wrote = True
        if wrote:
            self._touch(hk, expires_at)
        names = op.counter_names
        totals = dict.fromkeys(names, 0.0)
        tally = 0.0
        if names or tallied is not None:
            # Oldest sub-window first, as admit.lua adds.
            for j in range(first, idx + 1):
                stored = self._get_typed(f"{prefix}{j}:c", now, _Counts)
                if stored is None:
                    continue
                for name in names:
                    value = stored.counters.get(name)
                    if value is not None:
                        totals[name] += value
                if tallied is not None and tallied in stored.tally:
                    tally += stored.tally[tallied]
        if not kept:  # a full tally hash: this occurrence counts, unkept
            tally += 1

        state: dict[str, str] = {}
        if op.read_state:
            stored_state = self._get_typed(op.key + ":state", now, _State)
            if stored_state is not None:
                state = dict(stored_state.fields)
        return ObserveResult(distinct, totals, tally, state)

    def _add_member(self, key: str, member: str, now: float, expires_at: float) -> None:
        """PFADD, with the distinct-sample fallback past `max_members`."""
        sample = self._get_typed(key, now, _Distinct)
        if sample is None:
            sample = _Distinct({}, 0, expires_at)
            self._entries[key] = sample
        self._entries.move_to_end(key)
        members = sample.members
        if member in members:
            return
        if sample.level == 0:
            members[member] = -1
        else:
            rank = _rank(member)
            if rank < sample.level:
                return  # not in the sample
            members[member] = rank
        sample.version += 1
        sample.pending.append(member)
        while len(members) > self._max_members:
            sample.level += 1
            sample.version += 1
            level = sample.level
            sample.members = members = {
                m: r for m in members if (r := _ranked(sample, m)) >= level}

    def _counts(self, key: str, now: float, expires_at: float) -> _Counts:
        """The hash at `key`, created (to live until `expires_at`) when absent."""
        counts = self._get_typed(key, now, _Counts)
        if counts is None:
            counts = _Counts({}, {}, expires_at)
            self._entries[key] = counts
        return counts

    def _touch(self, key: str, expires_at: float) -> None:
        """PEXPIRE an entry just written, and mark it recently written."""
        entry = self._entries[key]
        entry.expires_at = expires_at
        self._entries.move_to_end(key)

    def _merge_state(self, op: MergeState, now: float) -> None:
        key = op.key + ":state"
        stored = self._get_typed(key, now, _State)
        expires_at = now + _ttl_ms(op.ttl) / 1000
        if op.fields:
            if stored is None:
                stored = _State({}, expires_at)
                self._entries[key] = stored
            stored.fields.update(op.fields)
        if stored is not None:
            self._touch(key, expires_at)

    # -- storage ---------------------------------------------------------------

    def _get_typed(self, key: str, now: float, kind: type[_E]) -> _E | None:
        entry = self._get(key, now)
        if entry is None or isinstance(entry, kind):
            return entry
        raise StorageError(f"WRONGTYPE {key!r} holds a {type(entry).__name__}, not {kind.__name__}")

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
