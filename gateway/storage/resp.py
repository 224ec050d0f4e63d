"""One pipelined RESP connection to one Redis server: the hot path's client.

redis-py's asyncio client checks a connection out of a pool, wraps every call
in `asyncio.timeout`, encodes argument by argument and parses in Python around
hiredis: measured at ~200 us of gateway CPU per EVALSHA. Here commands are
written back to back on one socket and Redis answers in order, so a reply is
matched to the oldest waiting future; hiredis parses and `hiredis.pack_command`
encodes. Commands queued in one turn of the event loop leave in one write. One
connection is plenty: Redis runs one command at a time anyway.

A call that times out leaves its future in the queue (already failed), so the
late reply is still consumed in order and matched to nobody. A lost connection
fails every waiting call; the next call reconnects.

Errors are redis-py's exception classes, so the backend above handles this
client and redis-py alike: ConnectionError, TimeoutError, NoScriptError,
ResponseError.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, cast

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Waiting calls beyond this mean Redis has stalled: fail fast instead of queueing
# without bound (the breaker then opens).
MAX_PENDING = 4096


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        self.outbox: list[bytes] = []

    def enqueue(self, packed: bytes, future: asyncio.Future[Any]) -> None:
        """Queue a command; all queued in one turn of the loop go out in one write
        (one syscall for many concurrent requests' calls)."""
        if not self.outbox:
            future.get_loop().call_soon(self.flush)
        self.outbox.append(packed)
        self.waiting.append(future)

    def flush(self) -> None:
        data, self.outbox = b"".join(self.outbox), []
        if self.lost is None and self.transport is not None:
            self.transport.write(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting = self.waiting
        while (reply := self.reader.gets()) is not False:
            if not waiting:  # a reply nobody asked for: the stream is out of step
                self.close(RedisConnectionError("unexpected reply from redis"))
                return
            future = waiting.popleft()
            if not future.done():
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_all(RedisConnectionError(f"redis connection lost: {exc or 'closed'}"))

    def close(self, error: BaseException) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._fail_all(error)

    def _fail_all(self, error: BaseException) -> None:
        self.lost = error
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)


class PipelinedRedis:
    """`await client.execute(*args)`: one command, its reply; see the module docstring."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 6379, path: str | None = None,
        db: int = 0, username: str | None = None, password: str | None = None,
        timeout: float, connect_timeout: float,
    ) -> None:
        self._host, self._port, self._path = host, port, path
        self._db, self._username, self._password = db, username, password
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def execute(self, *args: str | bytes | int) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.lost is not None:
            protocol = await self._connect()
        if len(protocol.waiting) >= MAX_PENDING:
            raise RedisTimeoutError(f"{MAX_PENDING} redis calls already waiting")
        return await self._send(protocol, _pack(args), self._timeout)

    async def _send(self, protocol: _Protocol, packed: bytes, within: float) -> Any:
        # A timer, not `asyncio.timeout`: the call must not be cancelled mid-queue,
        # only its waiter failed (the reply still arrives and is consumed in order).
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        protocol.enqueue(packed, future)
        timer = loop.call_later(within, _expire, future, within)
        try:
            reply = await future
        finally:
            timer.cancel()
        if isinstance(reply, hiredis.ReplyError):
            raise _reply_error(str(reply))
        if isinstance(reply, list):
            for item in reply:  # errors nested in a script's table come back as values
                if isinstance(item, hiredis.ReplyError):
                    raise _reply_error(str(item))
        return reply

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is not None and self._protocol.lost is None:
                return self._protocol  # another caller connected while we waited
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self._connect_timeout):
                    if self._path is not None:
                        _, protocol = await loop.create_unix_connection(_Protocol, self._path)
                    else:
                        _, protocol = await loop.create_connection(
                            _Protocol, self._host, self._port)
                    try:
                        await self._handshake(protocol)
                    except BaseException:
                        protocol.close(RedisConnectionError("redis handshake failed"))
                        raise
            except TimeoutError:
                raise RedisTimeoutError("timed out connecting to redis") from None
            except OSError as exc:
                raise RedisConnectionError(f"cannot connect to redis: {exc}") from exc
            self._protocol = protocol
            return protocol

    async def _handshake(self, protocol: _Protocol) -> None:
        if self._password is not None:
            auth: tuple[str, ...] = (
                ("AUTH", self._username, self._password) if self._username
                else ("AUTH", self._password))
            await self._send(protocol, _pack(auth), self._connect_timeout)
        if self._db:
            await self._send(protocol, _pack(("SELECT", self._db)),
                             self._connect_timeout)

    async def aclose(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()


def _pack(args: tuple[str | bytes | int, ...]) -> bytes:
    # hiredis's stub types the tuple as one element long; any length is fine.
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]
    return packed


def _expire(future: asyncio.Future[Any], timeout: float) -> None:
    if not future.done():
        future.set_exception(RedisTimeoutError(f"redis did not answer within {timeout:g} s"))


def _reply_error(message: str) -> ResponseError:
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return ResponseError(message)
