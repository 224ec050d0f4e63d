"""Counters in Redis: every `admit` and every `settle` is ONE EVALSHA.

The Lua scripts in `scripts/` do all the work atomically on the server and read
the time from Redis `TIME`, so gateways with skewed clocks share one timeline.
Test seam: when a `clock` is injected, its `now()` is sent as ARGV[1] and the
scripts use it instead of `TIME`; production code never passes a clock.

Every failure (refused connection, timeout, script error) surfaces as
`StorageError`. Commands are not retried: the caller's storage-error policy
and circuit breaker decide, and a timed-out EVALSHA may still have run.

Redis Cluster: every key a script touches is in KEYS and shares the call's
hash tag, except an `Observe`'s sub-window keys, which depend on Redis TIME
and so are derived inside admit.lua as `<key>:<suffix>`. Its `key` goes in
KEYS instead: it routes the call, and the derived keys carry the same hash
tag, so they live on the same slot.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

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
    SettleOp,
    StorageError,
)

_FIELDS = 6  # reply fields per bucket or lease op: allowed, limit, remaining, reset, retry, delay


def _script(name: str) -> str:
    return files("gateway.storage").joinpath("scripts").joinpath(name).read_text(encoding="utf-8")


def _num(x: float) -> str:
    """Full-precision decimal for Lua: repr round-trips a float64 exactly."""
    value = float(x)
    if not math.isfinite(value):
        raise ValueError(f"counter parameters must be finite, got {x!r}")
    return repr(value)


class RedisBackend(CounterBackend):
    """GCRA buckets and lease sets in Redis; see the module docstring."""

    name = "redis"

    def __init__(
        self, client: Redis, *, clock: Clock | None = None, close_client: bool = True
    ) -> None:
        """Use an existing client; `aclose()` closes it unless `close_client` is False."""
        self._client = client
        self._clock = clock
        self._close_client = close_client
        # register_script sends nothing: the first EVALSHA that meets NOSCRIPT
        # (first use, or after a server restart) loads the script and retries.
        self._admit_script = client.register_script(_script("admit.lua"))
        self._settle_script = client.register_script(_script("settle.lua"))

    @classmethod
    def from_url(
        cls, url: str, *, timeout: float = 0.05, clock: Clock | None = None,
        max_connections: int = 32,
    ) -> RedisBackend:
        """Connect to `redis://`, `rediss://` or `unix://`; `timeout` bounds each call.

        The pool is bounded and blocking: a burst of requests queues for one of
        `max_connections` connections instead of opening hundreds at once. The
        queue wait is local (no Redis involved), so it gets a longer bound than
        a Redis call: a connection comes free within one call `timeout` anyway.
        """
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=max(10 * timeout, 0.5),
            socket_timeout=timeout,
            socket_connect_timeout=max(timeout, 0.25),
            retry=Retry(NoBackoff(), 0),
        )
        return cls(Redis(connection_pool=pool), clock=clock)

    @property
    def client(self) -> Redis:
        """The underlying client (for tests and health checks)."""
        return self._client

    async def admit(self, ops: Sequence[AdmitOp]) -> Admission:
        if not ops:  # nothing to count: spare the round trip
            now = self._clock.now() if self._clock is not None else time.time()
            return Admission(results=(), groups_allowed={}, now=now)
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
        reply = await self._call(self._admit_script, keys, args)
        return _parse_admission(ops, reply)

    async def settle(self, ops: Sequence[SettleOp]) -> None:
        if not ops:
            return
        keys: list[str] = []
        args: list[str] = [self._now_arg()]
        for op in ops:
            keys.append(op.key)
            if isinstance(op, Adjust):
                args += ["J", _num(op.period / op.rate), _num(op.delta)]
            elif isinstance(op, MergeState):
                keys[-1] = op.key + ":state"
                args += ["M", _num(op.ttl), str(len(op.fields))]
                for field, value in op.fields:
                    args += [field, value]
            else:
                args += ["R", op.lease_id, ""]
        await self._call(self._settle_script, keys, args)

    async def prepare(self) -> None:
        """Load both scripts now, so the first burst of requests meets no NOSCRIPT."""
        for script in (self._admit_script, self._settle_script):
            try:
                await self._client.script_load(script.script)
            except (RedisError, OSError) as exc:
                raise StorageError(f"redis script load failed: {exc}") from exc

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            raise StorageError(f"redis ping failed: {exc}") from exc

    async def aclose(self) -> None:
        if self._close_client:
            await self._client.aclose()

    def _now_arg(self) -> str:
        return "" if self._clock is None else _num(self._clock.now())

    async def _call(self, script: Any, keys: list[str], args: list[str]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            # OSError covers socket errors and asyncio timeouts the client lets through.
            raise StorageError(f"redis call failed: {type(exc).__name__}: {exc}") from exc


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
