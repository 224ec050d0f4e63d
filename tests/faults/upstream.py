"""A misbehaving model server on a raw asyncio socket, for fault tests and bench/soak.py.

Starlette or uvicorn would tidy up exactly the faults under test (a truncated
chunked body, a stalled stream, a reset), so this server speaks HTTP/1.1 by
hand. The fault is chosen per request by the `x-fault` header, which the
gateway forwards unchanged:

| x-fault           | what the server does                                                    |
|-------------------|-------------------------------------------------------------------------|
| (none), `ok`      | a complete answer: JSON with usage, or an SSE stream ending in [DONE]     |
| `hang`            | reads the request, never answers                                         |
| `close`           | reads the request, closes the socket without a byte                      |
| `reset`           | reads the request, resets the connection (RST)                           |
| `bad-status`      | answers a status line that is not HTTP                                   |
| `invalid-json`    | 200 application/json whose body is not JSON (length correct)             |
| `short-body`      | 200 application/json declaring more bytes than it sends, then closes     |
| `short-chunked`   | 200 application/json, chunked, half the JSON, then closes (no last chunk)|
| `hang-mid-stream` | 200 SSE, a few events, then silence                                      |
| `close-mid-stream`| 200 SSE (chunked), a few events, then closes without the last chunk      |
| `malformed-sse`   | 200 SSE: binary junk, non-JSON data, a NUL, bad UTF-8, then [DONE]       |
| `oversized-event` | 200 SSE: one event over the gateway's 1 MiB event limit                  |

`x-fault-events` (default 5) and `x-fault-delay` (seconds between events,
default 0) shape streams. Every connection is recorded (`Conn`): when it was
accepted and when the server saw it closed by the peer, so a test can assert
that a client disconnect reached the upstream promptly.

Runs its own event loop in a daemon thread: `with FaultUpstream() as up: up.url`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

WORDS = ("rivers", "carve", "valleys", "slowly", "over", "many", "years", "of", "rain")


@dataclass
class Conn:
    """One accepted connection, as the upstream saw it."""

    opened_at: float
    requests: int = 0
    faults: list[str] = field(default_factory=list)
    text_sent: int = 0  # characters of answer text written in stream events
    request_ids: list[str] = field(default_factory=list)  # x-request-id as forwarded
    closed_by_peer_at: float | None = None  # EOF or a failed write: the gateway hung up
    closed_by_us_at: float | None = None


@dataclass
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def fault(self) -> str:
        return self.headers.get("x-fault", "ok")

    def number(self, name: str, default: float) -> float:
        try:
            return float(self.headers.get(name, default))
        except ValueError:
            return default

    @property
    def json(self) -> dict[str, object]:
        try:
            obj = json.loads(self.body or b"{}")
        except ValueError:
            return {}
        return obj if isinstance(obj, dict) else {}


class _PeerClosed(Exception):
    pass


class FaultUpstream:
    """See the module docstring."""

    def __init__(self) -> None:
        self.conns: list[Conn] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FaultUpstream:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=512))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="fault-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fault upstream did not start")
        return self

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> FaultUpstream:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def open_connections(self) -> int:
        """Connections accepted and not yet closed by either side."""
        with self._lock:
            return sum(1 for c in self.conns
                       if c.closed_by_peer_at is None and c.closed_by_us_at is None)

    def reset_log(self) -> None:
        with self._lock:
            self.conns = [c for c in self.conns
                          if c.closed_by_peer_at is None and c.closed_by_us_at is None]

    # -- one connection --------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        conn = Conn(opened_at=time.monotonic())
        with self._lock:
            self.conns.append(conn)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    conn.closed_by_peer_at = time.monotonic()
                    return
                conn.requests += 1
                conn.faults.append(request.fault)
                conn.request_ids.append(request.headers.get("x-request-id", ""))
                keep_open = await self._answer(request, reader, writer, conn)
                if not keep_open:
                    return
        except (ConnectionError, _PeerClosed):
            if conn.closed_by_peer_at is None:
                conn.closed_by_peer_at = time.monotonic()
        except asyncio.CancelledError:
            pass
        finally:
            if conn.closed_by_peer_at is None and conn.closed_by_us_at is None:
                conn.closed_by_us_at = time.monotonic()
            with contextlib.suppress(Exception):
                writer.close()
            self._handlers.discard(task)

    async def _answer(self, request: _Request, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter, conn: Conn) -> bool:
        """Answer one request; False when the connection must not be reused."""
        fault = request.fault
        anthropic = request.path.startswith("/v1/messages")
        stream = request.json.get("stream") is True
        if fault == "hang":
            await _until_peer_closes(reader)
            raise _PeerClosed
        if fault == "close":
            conn.closed_by_us_at = time.monotonic()
            writer.close()
            return False
        if fault == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:  # SO_LINGER 0: close() sends RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.closed_by_us_at = time.monotonic()
            writer.transport.abort()
            return False
        if fault == "bad-status":
            writer.write(b"HTP/9 what\r\n\r\n")
            await writer.drain()
            conn.closed_by_us_at = time.monotonic()
            writer.close()
            return False
        if fault == "invalid-json":
            body = b'{"id": "chatcmpl-x", "choices": [{"message": {"content": "trunc'
            writer.write(_head(200, "application/json", len(body)) + body)
            await writer.drain()
            return True
        if fault == "short-body":
            body = _json_answer(anthropic)
            writer.write(_head(200, "application/json", len(body) + 500) + body)
            await writer.drain()
            conn.closed_by_us_at = time.monotonic()
            writer.close()
            return False
        if fault == "short-chunked":
            body = _json_answer(anthropic)
            writer.write(_head(200, "application/json", None))
            await _chunk(writer, body[: len(body) // 2])
            conn.closed_by_us_at = time.monotonic()
            writer.transport.abort()
            return False
        if fault == "ok" and not stream:
            body = _json_answer(anthropic)
            writer.write(_head(200, "application/json", len(body)) + body)
            await writer.drain()
            return True
        return await self._stream(request, fault, anthropic, reader, writer, conn)

    async def _stream(self, request: _Request, fault: str, anthropic: bool,
                      reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      conn: Conn) -> bool:
        events = int(request.number("x-fault-events", 5))
        delay = request.number("x-fault-delay", 0.0)
        include_usage = isinstance(request.json.get("stream_options"), dict)
        writer.write(_head(200, "text/event-stream", None))
        peer_closed = asyncio.ensure_future(_until_peer_closes(reader))
        try:
            if anthropic:
                await _chunk(writer, _anthropic_event("message_start", {
                    "type": "message_start", "message": {
                        "id": "msg_x", "type": "message", "role": "assistant", "content": [],
                        "model": "fault-model", "usage": {"input_tokens": 12,
                                                          "output_tokens": 1}}}))
                await _chunk(writer, _anthropic_event("content_block_start", {
                    "type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}))
            if fault == "malformed-sse":
                for junk in (b"\x00\x01\x02 not a field\n\n", b"data: {not json\n\n",
                             b"data: \xff\xfe\xfd\n\n", b"event\n\n", b":\n\n",
                             b"data: " + b"{" * 1000 + b"\n\n", b"retry: x\nid: \x00\n\n"):
                    await _chunk(writer, junk)
            if fault == "oversized-event":
                await _chunk(writer, b"data: " + b"x" * (1024 * 1024 + 10))
                await _chunk(writer, b"\n\n")
            for i in range(events):
                if peer_closed.done():
                    raise _PeerClosed
                word = WORDS[i % len(WORDS)] + " "
                conn.text_sent += len(word)
                if anthropic:
                    await _chunk(writer, _anthropic_event("content_block_delta", {
                        "type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": word}}))
                else:
                    await _chunk(writer, _sse({"id": "c", "object": "chat.completion.chunk",
                                               "choices": [{"index": 0,
                                                            "delta": {"content": word}}]}))
                if fault in ("hang-mid-stream", "close-mid-stream") and i == 1:
                    break
                if delay:
                    await asyncio.wait([peer_closed], timeout=delay)
            if fault == "hang-mid-stream":
                await peer_closed
                raise _PeerClosed
            if fault == "close-mid-stream":
                conn.closed_by_us_at = time.monotonic()
                writer.transport.abort()  # no terminating chunk: a broken body
                return False
            if anthropic:
                await _chunk(writer, _anthropic_event("content_block_stop", {
                    "type": "content_block_stop", "index": 0}))
                await _chunk(writer, _anthropic_event("message_delta", {
                    "type": "message_delta", "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": events}}))
                await _chunk(writer, _anthropic_event("message_stop", {"type": "message_stop"}))
            else:
                if include_usage:
                    await _chunk(writer, _sse({"id": "c", "choices": [], "usage": {
                        "prompt_tokens": 12, "completion_tokens": events,
                        "total_tokens": 12 + events}}))
                await _chunk(writer, b"data: [DONE]\n\n")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            conn.closed_by_us_at = time.monotonic()
            return False
        finally:
            if not peer_closed.done():
                peer_closed.cancel()
            elif not peer_closed.cancelled() and peer_closed.exception() is None:
                conn.closed_by_peer_at = conn.closed_by_peer_at or time.monotonic()


async def _until_peer_closes(reader: asyncio.StreamReader) -> None:
    """Return when the peer closes (EOF or reset); bytes it sends meanwhile are dropped."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += data[:-2]
    return _Request(method, path, headers, body)


def _head(status: int, content_type: str, length: int | None) -> bytes:
    # A stream (chunked) is its connection's last answer: while it runs the server
    # also reads the socket to see the peer hang up, which must not eat a next request.
    framing = (f"content-length: {length}" if length is not None
               else "transfer-encoding: chunked\r\nconnection: close")
    return (f"HTTP/1.1 {status} OK\r\ncontent-type: {content_type}\r\n{framing}\r\n"
            "\r\n").encode()


async def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    if writer.is_closing():
        raise _PeerClosed
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await writer.drain()


def _sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _anthropic_event(name: str, obj: object) -> bytes:
    return f"event: {name}\n".encode() + _sse(obj)


def _json_answer(anthropic: bool) -> bytes:
    if anthropic:
        return json.dumps({
            "id": "msg_x", "type": "message", "role": "assistant", "model": "fault-model",
            "content": [{"type": "text", "text": "rivers carve valleys"}],
            "stop_reason": "end_turn", "usage": {"input_tokens": 12, "output_tokens": 3},
        }).encode()
    return json.dumps({
        "id": "chatcmpl-x", "object": "chat.completion", "model": "fault-model",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "rivers carve valleys"}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }).encode()
