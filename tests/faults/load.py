"""Closed-loop load through the gateway, and a verdict on every answer the client saw.

`Load` runs `workers` aiohttp clients in a loop until stopped, each request
picked by a `Pick` (path, body, headers), and keeps one `Seen` per request:
when it started, how long it took, its status, the phase it started in, and
`verdict(...)`:

- `ok`: a 200 whose JSON parses, or a stream ending in its end marker
  (`data: [DONE]`, `event: message_stop`);
- `error`: a well-formed error in the route's dialect, as a JSON answer
  (non-200) or as the last event of a stream;
- `passthrough`: a 200 JSON answer that does not parse and that the gateway
  relayed byte for byte (the upstream's own invalid JSON; see docs/faults.md);
- `truncated`: a 200 JSON answer whose body the connection cut short, so the
  client's HTTP layer reports it incomplete (the upstream broke a body whose
  headers were already relayed: the only honest signal left);
- `bad: ...`: anything else (a transport error, a plain-text 500, an error in
  the wrong shape, a stream cut off without an end or error event).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


@dataclass(frozen=True)
class Pick:
    path: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    label: str = ""


def chat_body(stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {"model": "demo-model", "max_tokens": 20, "stream": stream,
            "messages": [{"role": "user", "content": "Tell me about rivers"}], **extra}


@dataclass
class Seen:
    label: str
    phase: str
    started: float
    elapsed: float
    status: int
    verdict: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def openai_error_ok(obj: Any) -> bool:
    return (isinstance(obj, dict) and set(obj) == {"error"} and isinstance(obj["error"], dict)
            and set(obj["error"]) == {"message", "type", "param", "code"}
            and isinstance(obj["error"]["message"], str) and bool(obj["error"]["message"]))


def anthropic_error_ok(obj: Any) -> bool:
    return (isinstance(obj, dict) and obj.get("type") == "error"
            and isinstance(obj.get("error"), dict)
            and set(obj["error"]) == {"type", "message"}
            and isinstance(obj["error"]["message"], str) and bool(obj["error"]["message"]))


def _events(body: bytes) -> list[tuple[str | None, bytes]]:
    """(event name, data) of each SSE block, blocks without data left out."""
    out = []
    for block in body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n\n"):
        name: str | None = None
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode("utf-8", "replace")
            elif line.startswith(b"data:"):
                data.append(line[5:].removeprefix(b" "))
        if data:
            out.append((name, b"\n".join(data)))
    return out


def verdict(path: str, status: int, content_type: str, body: bytes,
            upstream_body: bytes | None = None) -> str:
    anthropic = path.startswith(MESSAGES)
    error_ok = anthropic_error_ok if anthropic else openai_error_ok
    if content_type.startswith("text/event-stream"):
        if status != 200:
            return f"bad: stream with status {status}"
        events = _events(body)
        if not events:
            return "bad: empty stream"
        name, data = events[-1]
        if anthropic and name == "message_stop":
            return "ok"
        if not anthropic and data == b"[DONE]":
            return "ok"
        try:
            last = json.loads(data)
        except ValueError:
            return f"bad: stream ends with {data[:60]!r}"
        if error_ok(last) and (not anthropic or name == "error"):
            return "error"
        return f"bad: stream ends with {data[:60]!r}"
    try:
        obj = json.loads(body)
    except ValueError:
        if status == 200 and upstream_body is not None and body == upstream_body:
            return "passthrough"
        return f"bad: {status} {content_type} {body[:60]!r}"
    if status == 200:
        return "ok"
    if not content_type.startswith("application/json"):
        return f"bad: {status} {content_type}"
    return "error" if error_ok(obj) else f"bad: {status} error shape {body[:80]!r}"


class Load:
    """See the module docstring. `phase` may be changed while the load runs."""

    def __init__(self, url: str, pick: Callable[[int], Pick], *, workers: int = 8,
                 timeout: float = 30.0, upstream_body: Callable[[Pick], bytes | None] | None = None,
                 keep_bodies: bool = False, limit: int | None = None) -> None:
        self.url = url
        self.pick = pick
        self.workers = workers
        self.timeout = timeout
        self.upstream_body = upstream_body
        self.keep_bodies = keep_bodies
        self.limit = limit  # stop after this many requests
        self.phase = "start"
        self.seen: list[Seen] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._issued = 0

    async def __aenter__(self) -> Load:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
        assert self._task is not None
        await self._task

    def stop(self) -> None:
        self._stop.set()

    async def done(self) -> None:
        """Wait until `limit` requests have been answered."""
        assert self._task is not None
        await self._task

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.workers, force_close=False)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(*(self._worker(session) for _ in range(self.workers)))

    async def _worker(self, session: aiohttp.ClientSession) -> None:
        while not self._stop.is_set():
            if self.limit is not None and self._issued >= self.limit:
                return
            n = self._issued
            self._issued += 1
            self.seen.append(await self.one(session, self.pick(n)))

    async def one(self, session: aiohttp.ClientSession, pick: Pick) -> Seen:
        phase = self.phase
        started = time.monotonic()
        status, content_type, headers = 0, "", {}
        try:
            async with session.post(self.url + pick.path, json=pick.body,
                                    headers=pick.headers) as resp:
                status = resp.status
                headers = {k.lower(): v for k, v in resp.headers.items()}
                content_type = headers.get("content-type", "")
                body = await resp.read()
        except aiohttp.ClientPayloadError as exc:
            # aiohttp raises it from read(), or from post() when the connection was
            # already gone by the time the headers were parsed.
            return Seen(pick.label, phase, started, time.monotonic() - started, status,
                        f"bad: {type(exc).__name__}: {exc}"
                        if content_type.startswith("text/event-stream") else "truncated",
                        headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Seen(pick.label, phase, started, time.monotonic() - started, 0,
                        f"bad: {type(exc).__name__}: {exc}")
        elapsed = time.monotonic() - started
        expected = self.upstream_body(pick) if self.upstream_body is not None else None
        seen = verdict(pick.path, status, content_type, body, expected)
        keep = self.keep_bodies or seen.startswith("bad")
        return Seen(pick.label, phase, started, elapsed, status, seen, headers,
                    body if keep else b"")


def summary(seen: list[Seen]) -> Counter[tuple[str, int, str]]:
    """(label, status, verdict) -> count."""
    return Counter((s.label, s.status, s.verdict) for s in seen)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]
