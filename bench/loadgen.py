"""HTTP load generator for the benches: one phase per process, a JSON summary on stdout.

Run by the bench drivers as `python bench/loadgen.py '<phase spec as JSON>'`, in a process of
its own so the client never shares a GIL with the servers it measures. Three modes:

- `closed`: N workers, each sending its next request when the last one is done (saturation).
- `open`: requests scheduled at fixed intervals whatever the completions (open loop); latency
  counts from the *scheduled* start, so a stalled server cannot hide its queue (no coordinated
  omission).
- `stream`: `open`, for streamed (SSE) responses: time to first byte and to the first event
  that carries content, and the whole stream.

Every mode warms up for `warmup` seconds (results dropped) and then measures for `duration`.
Non-2xx answers, exceptions and truncated streams count as errors, by kind.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import orjson
import uvloop

REQUEST_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 10.0
STREAM_END = b"data: [DONE]"


@dataclass(frozen=True, slots=True)
class PhaseSpec:
    mode: str  # closed | open | stream
    url: str
    body: str
    headers: dict[str, str]
    duration: float
    warmup: float = 2.0
    concurrency: int = 32
    rate: float = 500.0
    max_connections: int = 1024
    api_keys: int = 1  # distinct `Authorization: Bearer` keys, used in turn
    key_prefix: str = "bench-key"

    def header_sets(self) -> list[dict[str, str]]:
        """One header dict per API key: requests cycle through them."""
        width = len(str(self.api_keys - 1))
        return [{**self.headers, "Authorization": f"Bearer {self.key_prefix}-{i:0{width}d}"}
                for i in range(self.api_keys)]


@dataclass(slots=True)
class Sample:
    """One request: seconds from its (scheduled) start to each point; None if not reached."""

    ok: bool
    total: float
    first_byte: float | None = None
    first_token: float | None = None
    error: str | None = None


@dataclass(slots=True)
class Recorder:
    measure_from: float
    measure_to: float
    samples: list[Sample] = field(default_factory=list)
    issued: int = 0  # requests sent, warm-up included (to share out server CPU time)
    send_lag: list[float] = field(default_factory=list)


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of `values` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]


def _ms_summary(seconds: list[float]) -> dict[str, float | None]:
    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 3)

    mean = sum(seconds) / len(seconds) if seconds else None
    return {
        "p50": ms(percentile(seconds, 50)),
        "p90": ms(percentile(seconds, 90)),
        "p99": ms(percentile(seconds, 99)),
        "max": ms(max(seconds) if seconds else None),
        "mean": ms(mean),
    }


# -- one request ---------------------------------------------------------------------------
Sender = Callable[[aiohttp.ClientSession, PhaseSpec, dict[str, str], float], Awaitable[Sample]]


async def _plain(
    session: aiohttp.ClientSession, spec: PhaseSpec, headers: dict[str, str], started: float,
) -> Sample:
    async with session.post(spec.url, data=spec.body, headers=headers) as resp:
        await resp.read()
        elapsed = time.perf_counter() - started
        if not 200 <= resp.status < 300:
            return Sample(False, elapsed, error=f"HTTP {resp.status}")
        return Sample(True, elapsed)


def _first_content_event(buffer: bytes) -> bool:
    """Whether `buffer` holds a complete SSE event with a non-empty content delta."""
    for event in buffer.split(b"\n\n")[:-1]:
        for line in event.split(b"\n"):
            if not line.startswith(b"data: ") or line == STREAM_END:
                continue
            choices = orjson.loads(line[6:]).get("choices") or [{}]
            if (choices[0].get("delta") or {}).get("content"):
                return True
    return False


async def _streamed(
    session: aiohttp.ClientSession, spec: PhaseSpec, headers: dict[str, str], started: float,
) -> Sample:
    first_byte: float | None = None
    first_token: float | None = None
    head = b""  # bytes kept until the first content event is seen
    tail = b""
    async with session.post(spec.url, data=spec.body, headers=headers) as resp:
        async for chunk in resp.content.iter_any():
            now = time.perf_counter() - started
            if first_byte is None:
                first_byte = now
            if first_token is None:
                head += chunk
                if _first_content_event(head):
                    first_token, head = now, b""
            tail = (tail + chunk)[-64:]
        elapsed = time.perf_counter() - started
        if not 200 <= resp.status < 300:
            return Sample(False, elapsed, error=f"HTTP {resp.status}")
    if STREAM_END not in tail or first_token is None:
        return Sample(False, elapsed, first_byte, first_token, error="truncated stream")
    return Sample(True, elapsed, first_byte, first_token)


async def _one(
    send: Sender, session: aiohttp.ClientSession, spec: PhaseSpec, headers: dict[str, str],
    started: float,
) -> Sample:
    try:
        return await send(session, spec, headers, started)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return Sample(False, time.perf_counter() - started, error=type(exc).__name__)


# -- load patterns ---------------------------------------------------------------------------
async def _closed_loop(session: aiohttp.ClientSession, spec: PhaseSpec, rec: Recorder) -> None:
    keys = itertools.cycle(spec.header_sets())

    async def worker() -> None:
        while time.perf_counter() < rec.measure_to:
            started = time.perf_counter()
            rec.issued += 1
            sample = await _one(_plain, session, spec, next(keys), started)
            if rec.measure_from <= time.perf_counter() < rec.measure_to:
                rec.samples.append(sample)

    await asyncio.gather(*(worker() for _ in range(spec.concurrency)))


async def _open_loop(session: aiohttp.ClientSession, spec: PhaseSpec, rec: Recorder) -> None:
    send = _streamed if spec.mode == "stream" else _plain
    interval = 1.0 / spec.rate
    start = time.perf_counter()
    tasks: set[asyncio.Task[None]] = set()
    keys = itertools.cycle(spec.header_sets())

    async def fire(scheduled: float, keep: bool) -> None:
        sample = await _one(send, session, spec, next(keys), scheduled)
        if keep:
            rec.samples.append(sample)

    index = 0
    while (scheduled := start + index * interval) < rec.measure_to:
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        keep = scheduled >= rec.measure_from
        if keep:
            rec.send_lag.append(time.perf_counter() - scheduled)
        rec.issued += 1
        task = asyncio.create_task(fire(scheduled, keep))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        index += 1
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT_S)
        for task in pending:
            task.cancel()
            rec.samples.append(Sample(False, DRAIN_TIMEOUT_S, error="unfinished at phase end"))


# -- a phase -----------------------------------------------------------------------------------
def summarize(spec: PhaseSpec, rec: Recorder, cpu_seconds: float) -> dict[str, Any]:
    ok = [s for s in rec.samples if s.ok]
    errors = Counter(s.error or "error" for s in rec.samples if not s.ok)
    first_bytes = [s.first_byte for s in ok if s.first_byte is not None]
    first_tokens = [s.first_token for s in ok if s.first_token is not None]
    return {
        "spec": {k: v for k, v in asdict(spec).items() if k not in ("body", "headers")},
        "requests": len(rec.samples),
        "ok": len(ok),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "throughput_rps": round(len(ok) / spec.duration, 1),
        "issued_incl_warmup": rec.issued,
        "latency_ms": _ms_summary([s.total for s in ok]),
        "first_byte_ms": _ms_summary(first_bytes),
        "first_token_ms": _ms_summary(first_tokens),
        "send_lag_ms": _ms_summary(rec.send_lag),
        "client_cpu_s": round(cpu_seconds, 3),
    }


async def run_phase(spec: PhaseSpec) -> dict[str, Any]:
    limit = spec.concurrency if spec.mode == "closed" else spec.max_connections
    connector = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    cpu_start = time.process_time()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        rec = Recorder(start + spec.warmup, start + spec.warmup + spec.duration)
        if spec.mode == "closed":
            await _closed_loop(session, spec, rec)
        elif spec.mode in ("open", "stream"):
            await _open_loop(session, spec, rec)
        else:
            raise ValueError(f"unknown mode {spec.mode!r}")
    return summarize(spec, rec, time.process_time() - cpu_start)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: loadgen.py '<phase spec as JSON>'", file=sys.stderr)
        return 2
    spec = PhaseSpec(**json.loads(argv[0]))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(run_phase(spec))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
