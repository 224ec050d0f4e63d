"""A raw upstream that records exactly what bytes reach it, request by request.

It speaks just enough HTTP/1.1 to be an upstream for the gateway: it reads a
request head, then a body framed by Content-Length or chunked encoding, and
answers every request with one small OpenAI-style chat completion (or an SSE
stream for `"stream": true`). Everything it cannot frame unambiguously is
recorded as `malformed` and the connection is closed, so a smuggling test can
assert on it instead of guessing.

    with RawUpstream() as upstream:          # upstream.url, upstream.requests
        ...
        upstream.requests                    # [Recorded(method, target, headers, body, raw)]
        upstream.malformed                   # framing problems it saw (should stay empty)
        upstream.raw                         # every byte received, per connection
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import orjson

_COMPLETION = orjson.dumps({
    "id": "chatcmpl-raw", "object": "chat.completion", "created": 0, "model": "demo-model",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "ok"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
})
_MAX_HEAD = 64 * 1024


@dataclass
class Recorded:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes

    def header_values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name]


@dataclass
class RawUpstream:
    requests: list[Recorded] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    raw: dict[int, bytes] = field(default_factory=dict)  # connection number -> bytes
    url: str = ""
    _connections: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.malformed.clear()
            self.raw.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen = bytearray()
        with self._lock:
            self._connections += 1
            slot = self._connections
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as exc:
                    if exc.partial:
                        seen += exc.partial
                        self._bad(f"truncated head: {bytes(exc.partial[:200])!r}")
                    return
                except asyncio.LimitOverrunError:
                    self._bad("request head too long")
                    return
                seen += head
                request = self._parse_head(head)
                if request is None:
                    return
                method, target, headers = request
                body = await self._read_body(reader, headers, seen)
                if body is None:
                    return
                record = Recorded(method, target, headers, body, head + body)
                with self._lock:
                    self.requests.append(record)
                    self.raw[slot] = bytes(seen)
                writer.write(self._answer(body))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            with self._lock:
                self.raw[slot] = bytes(seen)
            writer.close()

    def _bad(self, what: str) -> None:
        with self._lock:
            self.malformed.append(what)

    def _parse_head(self, head: bytes) -> tuple[str, str, list[tuple[str, str]]] | None:
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or parts[2] != b"HTTP/1.1":
            self._bad(f"bad request line {lines[0][:200]!r}")
            return None
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip() or line[:1] in b" \t":
                self._bad(f"bad header line {line[:200]!r}")  # incl. obs-fold
                return None
            headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        return parts[0].decode("latin-1"), parts[1].decode("latin-1"), headers

    async def _read_body(
        self, reader: asyncio.StreamReader, headers: list[tuple[str, str]], seen: bytearray,
    ) -> bytes | None:
        lengths = [v for k, v in headers if k.lower() == "content-length"]
        codings = [v for k, v in headers if k.lower() == "transfer-encoding"]
        if codings and lengths:
            self._bad("both Content-Length and Transfer-Encoding")
            return None
        if len(lengths) > 1:
            self._bad(f"several Content-Length headers {lengths}")
            return None
        if codings:
            if [c.strip().lower() for c in ",".join(codings).split(",")] != ["chunked"]:
                self._bad(f"Transfer-Encoding {codings}")
                return None
            body = bytearray()
            while True:
                size_line = await reader.readuntil(b"\r\n")
                seen += size_line
                try:
                    size = int(size_line.strip(), 16)
                except ValueError:
                    self._bad(f"bad chunk size {size_line[:50]!r}")
                    return None
                chunk = await reader.readexactly(size + 2)
                seen += chunk
                if size == 0:
                    return bytes(body)
                body += chunk[:-2]
        if lengths:
            if not lengths[0].isdigit():
                self._bad(f"bad Content-Length {lengths[0]!r}")
                return None
            body = await reader.readexactly(int(lengths[0]))
            seen += body
            return body
        return b""

    @staticmethod
    def _answer(body: bytes) -> bytes:
        try:
            streaming = orjson.loads(body).get("stream") is True if body else False
        except (orjson.JSONDecodeError, AttributeError):
            streaming = False
        if streaming:
            chunk = orjson.dumps({"id": "c", "object": "chat.completion.chunk", "created": 0,
                                  "model": "demo-model", "choices": [
                                      {"index": 0, "delta": {"content": "ok"},
                                       "finish_reason": None}]})
            payload = b"data: " + chunk + b"\n\ndata: [DONE]\n\n"
            return (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"content-length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
        return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                + str(len(_COMPLETION)).encode() + b"\r\n\r\n" + _COMPLETION)


@contextmanager
def raw_upstream() -> Iterator[RawUpstream]:
    """Run a RawUpstream on a loopback port in a thread of its own."""
    upstream = RawUpstream()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    server: asyncio.base_events.Server | None = None

    async def start() -> None:
        nonlocal server
        server = await asyncio.start_server(upstream._serve, "127.0.0.1", 0, limit=_MAX_HEAD)
        port = server.sockets[0].getsockname()[1]
        upstream.url = f"http://127.0.0.1:{port}"
        started.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True, name="raw-upstream")
    thread.start()
    if not started.wait(10):
        raise RuntimeError("raw upstream did not start")
    try:
        yield upstream
    finally:
        async def stop() -> None:
            if server is not None:
                server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
