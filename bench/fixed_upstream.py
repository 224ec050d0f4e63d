"""A fixed-response model upstream for the benches: raw asyncio Protocol + uvloop + httptools.

    .venv/bin/python bench/fixed_upstream.py HOST PORT [--event-delay S] [--group N]
        [--record-arrivals]

Why not the demo model: under saturation the gateway's overhead is a ratio against the
upstream, and an upstream that costs as much CPU per request as the gateway (a Starlette app
does) hides half of it. This one answers from bytes built once at start-up: parse with
httptools, pick the canned answer, `transport.write`. HTTP/1.1 keep-alive and pipelining
(answers go out in request order), request bodies of any size (200 KB prompts included).

Routes:
- POST /v1/chat/completions: a 1,024-byte `chat.completion` with a usage block, or, when
  the request asks for `"stream": true`, ~100 `chat.completion.chunk` events, a usage chunk
  and `data: [DONE]` (chunked transfer-encoding). Streaming is decided by a substring check
  on the raw body (`"stream":true` or `"stream": true`), not by parsing the JSON: that is the
  point of this server, and no bench prompt contains that text.
- POST /v1/messages: the same, Anthropic-shaped (a message, or the event sequence).
- GET / and GET /healthz: 200. Anything else: 404.
- With --record-arrivals, GET /_bench/arrivals: the time.time() at which each POST so far was
  read, as a JSON list (then forgotten); bench/suite.py lines them up with Redis MONITOR.

Streams are written one event per `transport.write` (`--group N`: N events per write), so the
gateway reads them in network-sized pieces like a token-by-token model; `--event-delay S`
pauses between writes (default 0: back to back).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import httptools
import uvloop

RESPONSE_SIZE = 1024  # bytes of the non-streamed chat.completion body
STREAM_WORDS = 100  # content events per stream
WORD = "river "
MODEL = "bench-model"
STREAM_MARKERS = (b'"stream":true', b'"stream": true')


# -- the canned answers (built once) ------------------------------------------------------------
def _response(status: str, content_type: str, body: bytes) -> bytes:
    head = (f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\n\r\n")
    return head.encode() + body


def _padded(render: Callable[[str], dict[str, object]]) -> bytes:
    """The compact JSON of `render(text)`, its text padded so the body is RESPONSE_SIZE."""
    short = len(_compact(render("")))
    return _compact(render("x" * max(0, RESPONSE_SIZE - short)))


def _compact(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def openai_completion() -> bytes:
    def render(text: str) -> dict[str, object]:
        return {
            "id": "chatcmpl-bench", "object": "chat.completion", "created": 1767225600,
            "model": MODEL, "system_fingerprint": "fp_bench",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 180, "total_tokens": 192},
        }

    return _response("200 OK", "application/json", _padded(render))


def anthropic_message() -> bytes:
    def render(text: str) -> dict[str, object]:
        return {
            "id": "msg_bench", "type": "message", "role": "assistant", "model": MODEL,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 180},
        }

    return _response("200 OK", "application/json", _padded(render))


def _chunk(event: bytes) -> bytes:
    return f"{len(event):x}\r\n".encode() + event + b"\r\n"


def _data(payload: object, event: str | None = None) -> bytes:
    line = b"data: " + _compact(payload) + b"\n\n"
    return (f"event: {event}\n".encode() + line) if event else line


SSE_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n\r\n")
LAST_CHUNK = b"0\r\n\r\n"


def openai_stream() -> list[bytes]:
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1767225600,
            "model": MODEL, "system_fingerprint": "fp_bench"}

    def choice(delta: dict[str, str], finish: str | None = None) -> dict[str, object]:
        return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                     "finish_reason": finish}]}

    events = [_data(choice({"role": "assistant", "content": ""}))]
    events += [_data(choice({"content": WORD})) for _ in range(STREAM_WORDS)]
    events.append(_data(choice({}, "stop")))
    events.append(_data({**base, "choices": [], "usage": {
        "prompt_tokens": 12, "completion_tokens": STREAM_WORDS,
        "total_tokens": 12 + STREAM_WORDS}}))
    events.append(b"data: [DONE]\n\n")
    return [_chunk(e) for e in events]


def anthropic_stream() -> list[bytes]:
    message: dict[str, object] = {
        "id": "msg_bench", "type": "message", "role": "assistant", "model": MODEL,
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 1}}
    events = [_data({"type": "message_start", "message": message}, "message_start"),
              _data({"type": "content_block_start", "index": 0,
                     "content_block": {"type": "text", "text": ""}}, "content_block_start")]
    events += [_data({"type": "content_block_delta", "index": 0,
                      "delta": {"type": "text_delta", "text": WORD}}, "content_block_delta")
               for _ in range(STREAM_WORDS)]
    events += [_data({"type": "content_block_stop", "index": 0}, "content_block_stop"),
               _data({"type": "message_delta",
                      "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                      "usage": {"output_tokens": STREAM_WORDS}}, "message_delta"),
               _data({"type": "message_stop"}, "message_stop")]
    return [_chunk(e) for e in events]


OK = _response("200 OK", "application/json", b'{"status":"ok"}')
NOT_FOUND = _response("404 Not Found", "application/json",
                      b'{"error":{"message":"not found","type":"invalid_request_error"}}')


def writes(pieces: list[bytes], group: int) -> list[bytes]:
    """A stream as the byte strings to write: the first carries the headers, the role event
    and the first `group` words (so the first token is never held back by --event-delay),
    then `group` events per write, the last one with the chunked-encoding terminator."""
    out = [SSE_HEAD + b"".join(pieces[:1 + group])]
    out += [b"".join(pieces[i:i + group]) for i in range(1 + group, len(pieces), group)]
    out[-1] += LAST_CHUNK
    return out


@dataclass(slots=True)
class Answers:
    """Every answer, pre-rendered; a stream is its list of writes."""

    chat: bytes
    message: bytes
    chat_stream: list[bytes]
    message_stream: list[bytes]
    event_delay: float
    # time.time() of each POST, when --record-arrivals (suite.py lines them up with the
    # Redis MONITOR log: which commands ran before the gateway forwarded the request)
    arrivals: list[float] | None = None

    def pick(self, method: bytes, path: bytes, body: bytes) -> bytes | list[bytes]:
        if method == b"POST":
            if self.arrivals is not None:
                self.arrivals.append(time.time())
            stream = any(marker in body for marker in STREAM_MARKERS)
            if path == b"/v1/chat/completions":
                return self.chat_stream if stream else self.chat
            if path == b"/v1/messages":
                return self.message_stream if stream else self.message
        elif method == b"GET":
            if path in (b"/", b"/healthz"):
                return OK
            if path == ARRIVALS_PATH and self.arrivals is not None:
                taken, self.arrivals[:] = _compact(self.arrivals), []
                return _response("200 OK", "application/json", taken)
        return NOT_FOUND


ARRIVALS_PATH = b"/_bench/arrivals"  # GET: the recorded arrival times (then forgotten)


def build_answers(group: int = 1, event_delay: float = 0.0,
                  record_arrivals: bool = False) -> Answers:
    return Answers(openai_completion(), anthropic_message(), writes(openai_stream(), group),
                   writes(anthropic_stream(), group), event_delay,
                   [] if record_arrivals else None)


# -- the server ---------------------------------------------------------------------------------
class Connection(asyncio.Protocol):
    """One client connection: httptools parses, answers are written in request order."""

    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.path = b""
        self.body: list[bytes] = []
        # answers still to write behind a delayed stream (pipelined requests): (answer, close)
        self.queue: deque[tuple[bytes | list[bytes], bool]] = deque()
        self.streaming = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(_response("400 Bad Request", "text/plain", b"bad request"))
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.path, self.body = b"", []

    def on_url(self, url: bytes) -> None:
        self.path += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        path = self.path.split(b"?", 1)[0]
        answer = self.answers.pick(self.parser.get_method(), path, b"".join(self.body))
        close = not self.parser.should_keep_alive()
        if self.streaming:
            self.queue.append((answer, close))
        else:
            self.write(answer, close)

    # writing
    def write(self, answer: bytes | list[bytes], close: bool) -> None:
        if self.transport is None:
            return
        if isinstance(answer, bytes):
            self.transport.write(answer)
        elif self.answers.event_delay > 0:
            self.streaming = True
            asyncio.get_running_loop().create_task(self.drip(answer, close))
            return
        else:
            for piece in answer:  # one write (send) per piece, as a token-by-token server
                self.transport.write(piece)
        if close:
            self.transport.close()

    async def drip(self, pieces: list[bytes], close: bool) -> None:
        """A stream with a pause between writes; pipelined answers wait in `queue`."""
        for index, piece in enumerate(pieces):
            if index:
                await asyncio.sleep(self.answers.event_delay)
            if self.transport is None:
                return
            self.transport.write(piece)
        if close and self.transport is not None:
            self.transport.close()
            return
        self.streaming = False
        while self.queue and not self.streaming:
            answer, close = self.queue.popleft()
            self.write(answer, close)


async def serve(host: str, port: int, answers: Answers) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(answers), host, port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fixed-response model upstream for benches.")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--event-delay", type=float, default=0.0,
                        help="seconds between stream writes (default 0: back to back)")
    parser.add_argument("--group", type=int, default=1, help="stream events per write")
    parser.add_argument("--record-arrivals", action="store_true",
                        help="record each POST's arrival time; GET /_bench/arrivals reads them")
    args = parser.parse_args(argv)
    if args.group < 1 or args.event_delay < 0:
        parser.error("--group must be >= 1 and --event-delay >= 0")
    answers = build_answers(args.group, args.event_delay, args.record_arrivals)
    uvloop.run(serve(args.host, args.port, answers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
