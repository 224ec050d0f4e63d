"""An in-process gateway whose event loop, tasks, file descriptors and sockets can be
counted, for the leak checks of the fault tests (and bench/soak.py).

The gateway runs under uvicorn in a thread of this process (`serve_in_thread`),
so `/proc/self/fd` holds its descriptors together with those of the test's
client and of the fault upstream. `gateway_sockets` separates them by address
(/proc/net/tcp): a socket is the gateway's when its local port is the
gateway's (listening or accepted) or its remote port is the upstream's or
Redis's (the gateway's outgoing connections). The upstream's and client's
ends of the same connections are the other halves and are not counted.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.app import GatewayApp, create_app
from gateway.settings import Settings
from gateway.storage.base import Admission, AdmitOp, CircuitOpen, CounterBackend, SettleOp
from gateway.storage.breaker import CircuitBreaker
from tests.support.server import serve_in_thread


class _LoopCapture:
    """ASGI wrapper that remembers the loop the app runs on (seen at lifespan startup)."""

    def __init__(self, app: GatewayApp) -> None:
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        await self.app(scope, receive, send)


@dataclass
class Gateway:
    url: str
    app: GatewayApp
    loop: asyncio.AbstractEventLoop

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine on the gateway's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def tasks(self) -> list[str]:
        """Names of the asyncio tasks alive on the gateway's loop (this probe left out)."""

        async def names() -> list[str]:
            me = asyncio.current_task()
            return sorted(_describe(t) for t in asyncio.all_tasks() if t is not me)

        result: list[str] = self.call(names())
        return result

    def drain(self) -> None:
        """Wait for the gateway's background settlement."""
        assert self.app.proxy is not None
        self.call(self.app.proxy.drain())


def _describe(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", None) or repr(coro)
    return str(name)


@contextmanager
def in_process_gateway(
    policy: Path, upstream: str, redis: str = "memory", storage: CounterBackend | None = None,
    **overrides: Any,
) -> Iterator[Gateway]:
    overrides.setdefault("access_log", False)
    settings = Settings(policy=policy, upstream=upstream, redis=redis, **overrides)
    app = _LoopCapture(create_app(settings, storage=storage))
    with serve_in_thread(app) as url:
        assert app.loop is not None
        yield Gateway(url, app.app, app.loop)


async def eventually(check: Callable[[], object], within: float, every: float = 0.01) -> float:
    """Seconds until `check()` is true, polled every `every`; AssertionError after `within`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            raise AssertionError(f"condition not reached within {within:g} s")
        await asyncio.sleep(every)
    return time.monotonic() - started


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _socket_inodes() -> set[str]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed between listdir and readlink
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _tcp_table() -> dict[str, tuple[int, int]]:
    """inode -> (local port, remote port) of this network namespace's TCP sockets."""
    table = {}
    for name in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            table[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16))
    return table


def gateway_sockets(gateway_port: int, *backend_ports: int) -> int:
    """Sockets of this process that are the gateway's (see the module docstring)."""
    table = _tcp_table()
    count = 0
    for inode in _socket_inodes():
        ports = table.get(inode)
        if ports is None:
            continue
        local, remote = ports
        if local == gateway_port or (remote in backend_ports and remote != 0):
            count += 1
    return count


@dataclass
class Wait:
    """One admit as a request saw it: how long it waited on storage and how it ended."""

    started: float
    elapsed: float
    outcome: str  # "ok", "open" (refused by the breaker without a call), "failed"
    breaker_open_at_start: bool


@dataclass
class TimedStorage(CounterBackend):
    """Wraps the gateway's storage (the circuit breaker) and times every admit.

    Installed after startup as `state.storage` (`install`), so it measures exactly
    what a request waits for in the chain's one counter round trip.
    """

    inner: CounterBackend
    waits: list[Wait] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name = self.inner.name

    @property
    def breaker(self) -> CircuitBreaker:
        assert isinstance(self.inner, CircuitBreaker)
        return self.inner

    async def admit(self, ops: Sequence[AdmitOp]) -> Admission:
        was_open = isinstance(self.inner, CircuitBreaker) and self.inner.is_open
        at = time.monotonic()
        started = time.perf_counter()
        outcome = "failed"
        try:
            result = await self.inner.admit(ops)
            outcome = "ok"
            return result
        except CircuitOpen:
            outcome = "open"
            raise
        finally:
            self.waits.append(Wait(at, time.perf_counter() - started, outcome,
                                   was_open))

    async def settle(self, ops: Sequence[SettleOp]) -> None:
        await self.inner.settle(ops)

    async def ping(self) -> None:
        await self.inner.ping()

    async def prepare(self) -> None:
        await self.inner.prepare()

    async def aclose(self) -> None:
        await self.inner.aclose()


def install_timer(gateway: Gateway) -> TimedStorage:
    """Wrap the running gateway's storage in a TimedStorage (the chain reads
    `state.storage` on every request)."""
    state = gateway.app.state
    assert state is not None
    timed = TimedStorage(state.storage)
    state.storage = timed
    return timed
