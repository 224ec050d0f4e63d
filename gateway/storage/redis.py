"""Counters in Redis: on one server every `admit` and every `settle` is ONE EVALSHA.

The Lua scripts in `scripts/` do all the work atomically on the server and read
the time from Redis `TIME`, so gateways with skewed clocks share one timeline.
Test seam: when a `clock` is injected, its `now()` is sent as ARGV[1] and the
scripts use it instead of `TIME`; production code never passes a clock.

Every failure (refused connection, timeout, script error) surfaces as
`StorageError`. Commands are not retried: the caller's storage-error policy
and circuit breaker decide, and a timed-out EVALSHA may still have run. The
one exception is NOSCRIPT (a restarted or failed-over server has an empty
script cache): the script is loaded again and the call retried once.

One server, Sentinel or Cluster: the URL decides (see `redis_urls`); the
scripts and their answers are the same.

Redis Cluster. All keys of one EVALSHA must hash to one slot, so a call is
split by slot and the parts run concurrently (`asyncio.gather`), one EVALSHA
per slot, results put back in op order. Every key a script touches is in KEYS,
except an `Observe`'s sub-window keys, which depend on Redis TIME and so are
derived inside admit.lua as `<key>:<suffix>`; its `key` must carry a hash tag,
so the derived keys hash to the slot of the key that routed the call. Each
part reads its own node's TIME; a key lives on one node, so every bucket and
window keeps one timeline (`Admission.now` is that of the first op's node).

What that costs per request:

- Keys of one identity share its hash tag (`identity_key`): a policy scoped
  by identity (the common case) is one slot, so ONE EVALSHA, as on a single
  server. Several identities' keys may share a slot; they are never split.
- A rule scoped by tier, tenant or globally has a hash tag of its own
  (`{tier=...}`, `{global}`), on another slot: a request under an identity
  rule and a global rule makes 2 EVALSHA, sent in parallel (latency of about
  one round trip, twice the commands). prompt_diversity's cross-identity ops
  (off the request path, in `Chain.complete`) make one EVALSHA per template or
  group key, in parallel.
- A group (all-or-nothing) whose ops land on several slots cannot be decided
  in one script. Each slot decides its share; when one share is refused, the
  shares another slot admitted are given back (Adjust -cost, Release) in one
  more call per slot. So a group never takes more than its limits allow, but
  until the refund lands (one round trip) a concurrent request may see the
  given-back units as taken and be refused. Only refusals of mixed-slot
  groups pay this.
- A call that fails on one slot raises StorageError even when another slot's
  share was applied (as a timed-out call may have run): the caller falls back,
  and the applied share counts against the limit until it expires.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from importlib.resources import files
from typing import Any, TypeVar, cast

from redis.asyncio import Connection, Redis, UnixDomainSocketConnection
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import NoScriptError, RedisError

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
)
from gateway.storage.redis_urls import Mode, connect, queue_timeout
from gateway.storage.resp import PipelinedRedis

log = logging.getLogger("distill_guard.storage")
T = TypeVar("T")

_FIELDS = 6  # reply fields per bucket or lease op: allowed, limit, remaining, reset, retry, delay


@dataclass(frozen=True, slots=True)
class _Script:
    name: str
    source: str
    sha: str


def _script(name: str) -> _Script:
    source = files("gateway.storage").joinpath("scripts").joinpath(name).read_text(
        encoding="utf-8")
    return _Script(name, source, hashlib.sha1(source.encode("utf-8")).hexdigest())


ADMIT = _script("admit.lua")
SETTLE = _script("settle.lua")


def _num(x: float) -> str:
    """Full-precision decimal for Lua: repr round-trips a float64 exactly."""
    value = float(x)
    if not math.isfinite(value):
        raise ValueError(f"counter parameters must be finite, got {x!r}")
    return repr(value)


def _has_hash_tag(key: str) -> bool:
    """Whether `key` has a non-empty `{...}` hash tag (what Cluster hashes instead of the key)."""
    start = key.find("{")
    return start >= 0 and key.find("}", start + 1) > start + 1


def _settle_key(op: SettleOp) -> str:
    return op.key + ":state" if isinstance(op, MergeState) else op.key


class RedisBackend(CounterBackend):
    """GCRA buckets and lease sets in Redis; see the module docstring."""

    name = "redis"

    def __init__(
        self, client: Redis | RedisCluster, *, clock: Clock | None = None,
        close_client: bool = True, max_in_flight: int | None = None,
        queue_timeout: float = 0.5, pipelined: PipelinedRedis | None = None,
    ) -> None:
        """Use an existing client; `aclose()` closes it unless `close_client` is False.

        A `RedisCluster` client makes this a cluster backend (calls split by slot).
        `max_in_flight` bounds concurrent EVALSHA calls, waiting at most
        `queue_timeout` seconds for a turn: for clients whose pool does not block.
        `pipelined`, on one server, carries the EVALSHA calls (see `resp`);
        `client` still does the rest (script loads, pings).
        """
        self._client = client
        self._pipelined = pipelined
        self._clock = clock
        self._close_client = close_client
        self._cluster = isinstance(client, RedisCluster)
        self._gate = asyncio.Semaphore(max_in_flight) if max_in_flight else None
        self._queue_timeout = queue_timeout
        self._initialized = not self._cluster
        self.mode: Mode = "cluster" if self._cluster else "single"

    @classmethod
    def from_url(
        cls, url: str, *, timeout: float = 0.05, clock: Clock | None = None,
        max_connections: int = 32,
    ) -> RedisBackend:
        """Connect (lazily) to a `redis_urls` URL; `timeout` bounds each call.

        At most `max_connections` calls are in flight; more queue locally for
        up to `queue_timeout(timeout)`.
        """
        client, mode = connect(url, timeout=timeout, max_connections=max_connections)
        gated = mode != "single"  # the single-server pool blocks by itself
        backend = cls(client, clock=clock, max_in_flight=max_connections if gated else None,
                      queue_timeout=queue_timeout(timeout),
                      pipelined=_pipelined_for(client, timeout) if mode == "single" else None)
        backend.mode = mode
        return backend

    @property
    def client(self) -> Redis | RedisCluster:
        """The underlying client (for tests and health checks)."""
        return self._client

    @property
    def is_cluster(self) -> bool:
        return self._cluster

    async def admit(self, ops: Sequence[AdmitOp]) -> Admission:
        if not ops:  # nothing to count: spare the round trip
            now = self._clock.now() if self._clock is not None else time.time()
            return Admission(results=(), groups_allowed={}, now=now)
        if self._cluster:
            _check_observe_tags(ops)
        parts = self.parts_by_slot([op.key for op in ops])
        if len(parts) == 1:
            return await self._admit_one(ops)
        partials = await self._gather(
            [self._admit_one([ops[i] for i in part]) for part in parts])
        return await self._combine(ops, parts, partials)

    async def settle(self, ops: Sequence[SettleOp]) -> None:
        if not ops:
            return
        parts = self.parts_by_slot([_settle_key(op) for op in ops])
        if len(parts) == 1:
            await self._settle_one(ops)
            return
        await self._gather([self._settle_one([ops[i] for i in part]) for part in parts])

    async def prepare(self) -> None:
        """Load both scripts now (on every primary of a cluster), so the first
        burst of requests meets no NOSCRIPT; refuse a cluster node behind a
        single-server URL."""
        try:
            if self._cluster:
                await self._ensure_initialized()
            else:
                await self._refuse_cluster_node()
            for script in (ADMIT, SETTLE):
                await self._client.script_load(script.source)
        except (RedisError, OSError) as exc:
            raise StorageError(f"redis script load failed: {exc}") from exc

    async def ping(self) -> None:
        """Every primary of a cluster must answer: a node away is a share of the
        identities without shared counters."""
        try:
            await self._ensure_initialized()
            if isinstance(self._client, RedisCluster):
                await self._client.ping(target_nodes=RedisCluster.PRIMARIES)
            else:
                await self._client.ping()
        except (RedisError, OSError) as exc:
            raise StorageError(f"redis ping failed: {exc}") from exc

    async def aclose(self) -> None:
        if self._pipelined is not None:
            await self._pipelined.aclose()
        if self._close_client:
            await self._client.aclose()

    # -- one EVALSHA ---------------------------------------------------------
    async def _admit_one(self, ops: Sequence[AdmitOp]) -> Admission:
        """One admit.lua call; every key of `ops` on one slot."""
        keys: list[str] = []
        args: list[str] = [self._now_arg(), ""]
        dense: dict[int, int] = {}
        for op in ops:
            keys.append(op.key)
            group = str(dense.setdefault(op.group, len(dense) + 1))
            if isinstance(op, Acquire):
                t = op.period / op.rate
                args += ["A", group, _num(t), _num(op.burst), _num(op.cost), _num(op.max_delay)]
            elif isinstance(op, Lease):
                args += ["L", group, str(int(op.limit)), op.lease_id, _num(op.ttl), ""]
            else:
                args += _observe_args(op, group)
        args[1] = str(len(dense))
        reply = await self._call(ADMIT, keys, args)
        return _parse_admission(ops, reply)

    async def _settle_one(self, ops: Sequence[SettleOp]) -> None:
        """One settle.lua call; every key of `ops` on one slot."""
        keys: list[str] = []
        args: list[str] = [self._now_arg()]
        for op in ops:
            keys.append(_settle_key(op))
            if isinstance(op, Adjust):
                args += ["J", _num(op.period / op.rate), _num(op.delta)]
            elif isinstance(op, MergeState):
                args += ["M", _num(op.ttl), str(len(op.fields))]
                for field, value in op.fields:
                    args += [field, value]
            else:
                args += ["R", op.lease_id, ""]
        await self._call(SETTLE, keys, args)

    def _now_arg(self) -> str:
        return "" if self._clock is None else _num(self._clock.now())

    async def _call(self, script: _Script, keys: list[str], args: list[str]) -> Any:
        try:
            if self._gate is None:
                return await self._evalsha(script, keys, args)
            return await self._gated(lambda: self._evalsha(script, keys, args))
        except (RedisError, OSError) as exc:
            # OSError covers socket errors and asyncio timeouts the client lets through.
            raise StorageError(f"redis call failed: {type(exc).__name__}: {exc}") from exc

    async def _evalsha(self, script: _Script, keys: list[str], args: list[str]) -> Any:
        await self._ensure_initialized()
        try:
            return await self._send(script, keys, args)
        except NoScriptError:
            # First use, or a restarted / failed-over server: load (on every
            # primary of a cluster) and retry once. On one server, through the
            # connection that just answered: redis-py's pooled ones may be stale.
            if self._pipelined is not None:
                await self._pipelined.execute("SCRIPT", "LOAD", script.source)
            else:
                await self._client.script_load(script.source)
            return await self._send(script, keys, args)

    async def _send(self, script: _Script, keys: list[str], args: list[str]) -> Any:
        if self._pipelined is not None:
            return await self._pipelined.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        return await self._client.evalsha(script.sha, len(keys), *keys, *args)

    async def _gated(self, call: Callable[[], Awaitable[T]]) -> T:
        assert self._gate is not None
        try:
            async with asyncio.timeout(self._queue_timeout):
                await self._gate.acquire()
        except TimeoutError:
            raise StorageError(
                f"no free redis connection within {self._queue_timeout:g} s") from None
        try:
            return await call()
        finally:
            self._gate.release()

    async def _ensure_initialized(self) -> None:
        """Learn a cluster's slots once before the first call: concurrent first
        calls on an uninitialized async RedisCluster can fail (redis-py #3935)."""
        if not self._initialized and isinstance(self._client, RedisCluster):
            await self._client.initialize()
            self._initialized = True

    async def _refuse_cluster_node(self) -> None:
        try:
            info = await self._client.info("cluster")
        except RedisError:  # INFO may be renamed or forbidden: nothing to learn
            return
        if str(info.get("cluster_enabled", "0")) == "1":
            raise StorageError(
                "this Redis is a Cluster node: use a redis+cluster:// (or rediss+cluster://) "
                "URL, or its keys on other nodes fail with MOVED")

    # -- Cluster: one call per slot -----------------------------------------
    def parts_by_slot(self, keys: Sequence[str]) -> list[list[int]]:
        """How a call over `keys` is split: their indices by hash slot, slots in
        order of first appearance (so the first part holds key 0). One part
        unless this is a cluster."""
        if not self._cluster:
            return [list(range(len(keys)))]
        parts: dict[int, list[int]] = {}
        for index, key in enumerate(keys):
            parts.setdefault(key_slot(key.encode("utf-8", "surrogateescape")), []).append(index)
        return list(parts.values())

    @staticmethod
    async def _gather(calls: Sequence[Awaitable[T]]) -> list[T]:
        """All parts, concurrently; the first failure is raised once all are done."""
        done = await asyncio.gather(*calls, return_exceptions=True)
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome
        return cast(list[T], done)

    async def _combine(
        self, ops: Sequence[AdmitOp], parts: list[list[int]], partials: list[Admission]
    ) -> Admission:
        """One Admission from per-slot ones; refund the shares of split groups that
        another slot refused (see the module docstring)."""
        results: list[OpResult | ObserveResult | None] = [None] * len(ops)
        part_allowed: list[dict[int, bool]] = []
        for part, partial in zip(parts, partials, strict=True):
            for index, result in zip(part, partial.results, strict=True):
                results[index] = result
            part_allowed.append(partial.groups_allowed)
        groups: dict[int, bool] = {}
        for op in ops:  # in op order, like one script would report them
            groups.setdefault(op.group, True)
        for allowed in part_allowed:
            for group, ok in allowed.items():
                groups[group] = groups[group] and ok
        refunds: list[SettleOp] = []
        for part, allowed in zip(parts, part_allowed, strict=True):
            for index in part:
                op, share = ops[index], results[index]
                if isinstance(op, Observe) or groups[op.group] or not allowed[op.group]:
                    continue
                assert share is not None
                refund, refunded = _refund(op, share)
                results[index] = refunded
                if refund is not None:
                    refunds.append(refund)
        if refunds:
            try:
                await self.settle(refunds)
            except StorageError as exc:  # the decision stands; the units stay taken
                log.warning("refund of a refused cross-slot group failed: %s", exc)
        final = tuple(r for r in results if r is not None)
        assert len(final) == len(ops)
        return Admission(results=final, groups_allowed=groups, now=partials[0].now)


def _pipelined_for(client: Redis | RedisCluster, timeout: float) -> PipelinedRedis | None:
    """The hot path's pipelined connection to the server `client` talks to: plain
    TCP or a Unix socket (a TLS URL keeps redis-py for every call)."""
    if not isinstance(client, Redis):
        return None
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    common: dict[str, Any] = {
        "db": int(kwargs.get("db") or 0), "username": kwargs.get("username"),
        "password": kwargs.get("password"), "timeout": timeout,
        "connect_timeout": max(timeout, 0.25),
    }
    if pool.connection_class is UnixDomainSocketConnection:
        return PipelinedRedis(path=kwargs["path"], **common)
    if pool.connection_class is Connection:
        return PipelinedRedis(host=kwargs.get("host", "localhost"),
                              port=int(kwargs.get("port", 6379)), **common)
    return None


def _check_observe_tags(ops: Sequence[AdmitOp]) -> None:
    for op in ops:
        if isinstance(op, Observe) and not _has_hash_tag(op.key):
            raise ValueError(
                f"Observe key {op.key!r} has no hash tag: on Redis Cluster the keys "
                "admit.lua derives from it would land on other slots")


def _refund(op: Acquire | Lease, result: OpResult) -> tuple[SettleOp | None, OpResult]:
    """What gives back an admitted share of a refused group, and its result as
    storage stands after that (as memory reports it for a refused group)."""
    if isinstance(op, Lease):
        # lease ids are per request: the slot was not held before this call
        remaining = min(result.limit, result.remaining + 1)
        return Release(op.key, op.lease_id), replace(result, remaining=remaining)
    if op.cost <= 0:
        return None, result
    back = op.cost * op.period / op.rate
    refunded = replace(
        result, remaining=min(result.limit, float(math.floor(result.remaining + op.cost))),
        reset_after=max(0.0, result.reset_after - back), delay=0.0)
    return Adjust(op.key, op.rate, op.period, op.burst, -op.cost), refunded


def _observe_args(op: Observe, group: str) -> list[str]:
    """The fields of one observe op (see the ARGV layout in admit.lua)."""
    args = [
        "O", group, _num(op.window / op.slots), str(op.slots), _num(op.window),
        str(len(op.members)), str(len(op.counters)),
        op.tally_member or "", "0" if op.tally_member is None else "1",
        "1" if op.read_state else "0",
    ]  # fmt: skip
    for name, member in op.members:
        args += [name, member]
    for name, increment in op.counters:
        args += [name, _num(increment)]
    return args


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def _parse_admission(ops: Sequence[AdmitOp], reply: Any) -> Admission:
    try:
        now = float(reply[0])
        results: list[OpResult] = []
        pos = 1
        for op in ops:
            if isinstance(op, Observe):
                observed, pos = _parse_observe(op, reply, pos)
                results.append(observed)
                continue
            f = reply[pos : pos + _FIELDS]
            pos += _FIELDS
            results.append(
                OpResult(
                    allowed=int(f[0]) == 1,
                    limit=float(f[1]),
                    remaining=float(f[2]),
                    reset_after=float(f[3]),
                    retry_after=float(f[4]),
                    delay=float(f[5]),
                )
            )
        if pos != len(reply):
            raise ValueError("reply length does not match the ops")
    except (TypeError, ValueError, IndexError) as exc:
        raise StorageError(f"unexpected reply from admit.lua: {reply!r}") from exc
    groups: dict[int, bool] = {}
    for op, result in zip(ops, results, strict=True):
        if isinstance(op, Observe):  # never refuses: it decides nothing
            groups.setdefault(op.group, True)
        else:
            groups[op.group] = groups.get(op.group, True) and result.allowed
    return Admission(results=tuple(results), groups_allowed=groups, now=now)


def _parse_observe(op: Observe, reply: Any, pos: int) -> tuple[ObserveResult, int]:
    distinct: dict[str, float] = {}
    for name in op.set_names:
        distinct[name] = float(reply[pos])
        pos += 1
    totals: dict[str, float] = {}
    for name in op.counter_names:
        totals[name] = float(reply[pos])
        pos += 1
    tally = float(reply[pos])
    count = int(reply[pos + 1])
    pos += 2
    state: dict[str, str] = {}
    for _ in range(count):
        state[_text(reply[pos])] = _text(reply[pos + 1])
        pos += 2
    return ObserveResult(distinct, totals, tally, state), pos
