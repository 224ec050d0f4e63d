"""Fault soak: the long versions of tests/faults, with what the client saw and what was lost.

Everything runs in this process on loopback: a gateway (uvicorn in a thread, as in the
tests, so its descriptors and asyncio tasks can be counted), the raw fault upstream of
tests/faults/upstream.py, throwaway redis-servers, and an aiohttp load in the main
thread. Scenarios:

    redis-kill       Redis SIGKILLed under steady load for --outage s (30), then restarted,
                     with on_storage_error allow and deny
    redis-stall      Redis busy in a Lua script for --stall s (4): alive, answering nobody
    redis-pause      Redis SIGSTOPped for --stall s: connections accepted, never answered
    upstream-faults  --requests (10,000) through an upstream that refuses, hangs, closes
                     mid-stream, sends malformed SSE or invalid JSON; descriptors, sockets,
                     tasks and memory before and after
    disconnects      --hangups (500) clients that hang up mid-stream: how fast the upstream
                     call is cancelled, and whether the token counters match what was relayed
    reload           --seconds (20) of streams while the policy file is broken and fixed
                     every 0.4 s; token counters in Redis must hold exactly the usage
    all              each of the above with its defaults, then the summary table

    .venv/bin/python bench/soak.py all                 # ~5 min on a shared 2-core box
    .venv/bin/python bench/soak.py redis-kill --outage 30 --mode allow
    .venv/bin/python bench/soak.py all --quick         # short versions, ~1 min

The summary table (markdown) is what docs/faults.md shows. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway import metrics  # noqa: E402
from gateway.clock import FakeClock  # noqa: E402
from gateway.identity import IdentityHasher  # noqa: E402
from gateway.storage.base import Acquire, identity_key  # noqa: E402
from gateway.storage.memory import MemoryBackend  # noqa: E402
from gateway.storage.redis import RedisBackend  # noqa: E402
from gateway.tokens import estimate_input_tokens, tokens_from_chars  # noqa: E402
from tests.faults.harness import (  # noqa: E402
    Gateway,
    eventually,
    gateway_sockets,
    install_timer,
    open_fds,
)
from tests.faults.harness import in_process_gateway as _in_process_gateway  # noqa: E402
from tests.faults.load import CHAT, MESSAGES, Load, Pick, Seen, chat_body, percentile  # noqa: E402
from tests.faults.upstream import FaultUpstream  # noqa: E402
from tests.support.redis_server import start_redis_server  # noqa: E402
from tests.support.server import free_port  # noqa: E402

KEY = "sk-soak"
IDENTITY = IdentityHasher(b"distill-guard-dev-secret").hash_key(KEY)
AUTH = {"authorization": f"Bearer {KEY}"}
QUOTA, DAY = 1_000_000_000.0, 86_400.0
UPSTREAM_TIMEOUT = 0.3

RATE_POLICY = """version: 1
rules:
  - name: per-key
    kind: rate_shaping
    on_storage_error: {mode}
    config:
      limits:
        - requests: 1000000/min
        - total_tokens: 100000000/min
"""
READING_POLICY = """version: 1
rules:
  - name: tokens
    kind: rate_shaping
    config:
      limits:
        - requests: 100000000/min
        - total_tokens: 1000000000/day
        - concurrent: 10000
  - name: marks
    kind: output_perturbation
    config:
      watermark: {enabled: true}
"""
RELAY_POLICY = """version: 1
rules:
  - name: requests
    kind: rate_shaping
    config:
      limits:
        - requests: 100000000/min
"""


@dataclass
class Row:
    fault: str
    tried: str
    requests: int
    client_saw: str
    lost: str

    def markdown(self) -> str:
        return (f"| {self.fault} | {self.tried} | {self.requests:,} | {self.client_saw} | "
                f"{self.lost} |")


class LogCount(logging.Handler):
    """Counts log records by (logger, first line of the message) instead of printing them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage().splitlines()[0][:90]
        self.counts[f"{record.levelname} {record.name}: {message}"] += 1


LOGS = LogCount()


def metric(counter: Any, **labels: str) -> float:
    child = counter.labels(**labels) if labels else counter
    value: float = child._value.get()
    return value


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def statuses(seen: list[Seen]) -> str:
    counts = Counter(s.status for s in seen)
    return ", ".join(f"{n:,}x{status or 'no answer'}" for status, n in sorted(counts.items()))


def bad(seen: list[Seen]) -> list[Seen]:
    return [s for s in seen if s.verdict.startswith("bad")]


@contextmanager
def in_process_gateway(policy: Path, upstream: str, **settings: Any) -> Iterator[Gateway]:
    """tests/faults' gateway, its uvicorn log lines counted instead of printed (uvicorn
    configures its loggers when it starts, so the counter is attached after that)."""
    with _in_process_gateway(policy, upstream, **settings) as gw:
        server_log = logging.getLogger("uvicorn.error")
        server_log.addHandler(LOGS)
        server_log.propagate = False
        try:
            yield gw
        finally:
            server_log.removeHandler(LOGS)


@contextmanager
def policy_file(text: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dg-soak-") as tmp:
        path = Path(tmp) / "policy.yaml"
        path.write_text(text)
        yield path


def both_dialects(n: int) -> Pick:
    path = CHAT if n % 2 == 0 else MESSAGES
    stream = n % 4 >= 2
    return Pick(path, chat_body(stream), AUTH, label=f"{path} stream={stream}")


# -- Redis killed -----------------------------------------------------------------------------

async def redis_kill(args: argparse.Namespace, mode: str) -> Row:
    print(f"\n## Redis killed for {args.outage:g} s under load, on_storage_error: {mode}")
    upstream = FaultUpstream().start()
    server = start_redis_server()
    settle_errors = metric(metrics.STORAGE_ERRORS, operation="settle")
    fallback_admits = metric(metrics.FALLBACK_ADMITS)
    try:
        with policy_file(RATE_POLICY.format(mode=mode)) as policy, in_process_gateway(
                policy, upstream.url, redis=server.url) as gw:
            timed = install_timer(gw)
            async with Load(gw.url, both_dialects, workers=args.workers) as load:
                load.phase = "before"
                await asyncio.sleep(args.before)
                killed_at = time.monotonic()
                await asyncio.to_thread(server.kill)
                load.phase = "outage"
                await eventually(lambda: timed.breaker.is_open, within=5)
                opened_at = time.monotonic()
                await asyncio.sleep(max(0.0, args.outage - (opened_at - killed_at)))
                await asyncio.to_thread(server.start)
                restarted_at = time.monotonic()
                load.phase = "after"
                resumed = await eventually(
                    lambda: any(w.outcome == "ok" and w.started >= restarted_at
                                for w in timed.waits), within=10)
                await asyncio.sleep(args.after)
            gw.drain()
    finally:
        server.close()
        upstream.stop()
    seen = load.seen
    phases = {p: [s for s in seen if s.phase == p] for p in ("before", "outage", "after")}
    waits_open = [w for w in timed.waits if opened_at <= w.started < restarted_at]
    waits_all = [w for w in timed.waits if killed_at <= w.started < restarted_at]
    print("| phase | requests | statuses | bad | p50 | p99 | max |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in phases.items():
        lat = [s.elapsed for s in rows]
        print(f"| {name} | {len(rows):,} | {statuses(rows)} | {len(bad(rows))} | "
              f"{ms(percentile(lat, 0.5))} | {ms(percentile(lat, 0.99))} | "
              f"{ms(max(lat, default=0))} |")
    calls = Counter(w.outcome for w in waits_all)
    longest = max(w.elapsed for w in waits_all)
    print(f"storage waits during the outage: {dict(calls)}; max {ms(longest)}"
          f" (all), {ms(max(w.elapsed for w in waits_open))} once the breaker was open "
          f"(median {ms(percentile([w.elapsed for w in waits_open], 0.5))}); breaker opened "
          f"{ms(opened_at - killed_at)} after the kill; counting resumed {resumed:.2f} s after "
          "the restart")
    outage = phases["outage"]
    lost_settles = metric(metrics.STORAGE_ERRORS, operation="settle") - settle_errors
    local = metric(metrics.FALLBACK_ADMITS) - fallback_admits
    lat = [s.elapsed for s in outage]
    probes = [w for w in waits_open if w.outcome != "open"]
    refusals = [w.elapsed for w in waits_open if w.outcome == "open"]
    storage = (f"while the breaker was open only its probes reached Redis ({len(probes)} calls,"
               f" each failed within {ms(max(w.elapsed for w in probes))}); "
               f"{len(refusals):,} admits were refused without I/O (median "
               f"{ms(percentile(refusals, 0.5))})")
    if mode == "allow":
        saw = (f"{statuses(seen)}; {len(bad(seen))} malformed; outage p99 "
               f"{ms(percentile(lat, 0.99))}, max {ms(max(lat))} (before: p99 "
               f"{ms(percentile([s.elapsed for s in phases['before']], 0.99))}); {storage}; "
               f"shared counting back {resumed:.2f} s after the restart")
        lost = (f"shared counting for {args.outage:g} s ({local:,.0f} admits decided on local "
                f"counters); {lost_settles:.0f} settles of requests in flight at the kill")
    else:
        refused = [s for s in outage if s.status == 503]
        dialects = Counter(s.label.split()[0] for s in refused if s.verdict == "error")
        done_before = [s for s in seen if s.started + s.elapsed < killed_at]
        back = [s for s in seen if s.started >= restarted_at + resumed + 0.05]
        saw = (f"{len(refused):,}x503 during the outage ({dialects[CHAT]:,} OpenAI-shaped, "
               f"{dialects[MESSAGES]:,} Anthropic-shaped, all with Retry-After: 1), p99 "
               f"{ms(percentile(lat, 0.99))}; {len(bad(seen))} malformed; before the kill "
               f"{statuses(done_before)}; 503 until the first probe {resumed:.2f} s after the "
               f"restart, then {statuses(back)}; {storage}")
        lost = (f"the {len(refused):,} refused requests (fail-closed by design); "
                f"{lost_settles:.0f} settles")
    return Row(f"Redis killed (SIGKILL), {mode}", f"{args.outage:g} s outage under "
               f"{args.workers} closed-loop clients, then restart on the same port",
               len(seen), saw, lost)


# -- Redis stalled ----------------------------------------------------------------------------



async def redis_stall(args: argparse.Namespace, how: str) -> Row:
    label = "busy Lua script" if how == "busy" else "SIGSTOP"
    print(f"\n## Redis stalled ({label}) for {args.stall:g} s under load")
    upstream = FaultUpstream().start()
    server = start_redis_server()
    timeout = 0.05
    try:
        with policy_file(RATE_POLICY.format(mode="allow")) as policy, in_process_gateway(
                policy, upstream.url, redis=server.url, redis_timeout_ms=timeout * 1000) as gw:
            timed = install_timer(gw)
            async with Load(gw.url, both_dialects, workers=args.workers) as load:
                load.phase = "before"
                await asyncio.sleep(1.0)
                stalled_at = time.monotonic()
                load.phase = "stalled"
                if how == "busy":
                    await asyncio.to_thread(server.busy, args.stall)
                else:
                    server.pause()
                    await asyncio.sleep(args.stall)
                    server.resume()
                freed_at = time.monotonic()
                load.phase = "after"
                resumed = await eventually(
                    lambda: any(w.outcome == "ok" and w.started >= freed_at
                                for w in timed.waits), within=10)
                await asyncio.sleep(2.0)
            gw.drain()
    finally:
        server.close()
        upstream.stop()
    seen = load.seen
    during = [w for w in timed.waits if stalled_at <= w.started < freed_at]
    outcomes = Counter(w.outcome for w in during)
    lat = [s.elapsed for s in seen if s.phase == "stalled"]
    before = [s.elapsed for s in seen if s.phase == "before"]
    longest = max(w.elapsed for w in during)
    print(f"statuses {statuses(seen)}, {len(bad(seen))} malformed; latency before p99 "
          f"{ms(percentile(before, 0.99))}, stalled p99 {ms(percentile(lat, 0.99))} max "
          f"{ms(max(lat))}; storage waits while stalled: {dict(outcomes)}, longest "
          f"{ms(longest)}; counting resumed {resumed:.2f} s after Redis answered")
    spin = " (Redis spinning one of the 2 cores)" if how == "busy" else ""
    saw = (f"{statuses(seen)}; {len(bad(seen))} malformed; longest wait on Redis "
           f"{ms(longest)} (timeout 50 ms); {outcomes['failed']} calls paid the timeout, "
           f"{outcomes['open']:,} were decided locally at once; p99 {ms(percentile(lat, 0.99))}"
           f"{spin} (before: {ms(percentile(before, 0.99))})")
    return Row(f"Redis stalled ({label})", f"{args.stall:g} s without a Redis answer under "
               f"{args.workers} clients, on_storage_error: allow", len(seen), saw,
               f"shared counting for {args.stall:g} s + {resumed:.1f} s until the next probe")


# -- upstream faults ---------------------------------------------------------------------------

FAULTS = ["ok", "hang", "close", "reset", "bad-status", "invalid-json", "short-body",
          "short-chunked", "hang-mid-stream", "close-mid-stream", "malformed-sse",
          "oversized-event"]
INVALID_JSON = b'{"id": "chatcmpl-x", "choices": [{"message": {"content": "trunc'


def fault_pick(n: int) -> Pick:
    fault = FAULTS[n % len(FAULTS)]
    variant = (n // len(FAULTS)) % 4
    path = CHAT if variant < 2 else MESSAGES
    stream = variant % 2 == 1
    return Pick(path, chat_body(stream), {**AUTH, "x-fault": fault},
                label=f"{fault} {path} stream={stream}")


def upstream_body(pick: Pick) -> bytes | None:
    return INVALID_JSON if pick.headers.get("x-fault") == "invalid-json" else None


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class Census:
    fds: int
    sockets: int
    tasks: int
    upstream: int
    rss_kib: int

    @classmethod
    def of(cls, gw: Gateway, upstream: FaultUpstream) -> Census:
        gw.drain()
        gc.collect()
        return cls(open_fds(), gateway_sockets(gw.port, upstream.port), len(gw.tasks()),
                   upstream.open_connections(), rss_kib())

    def __str__(self) -> str:
        return (f"{self.fds} fds, {self.sockets} gateway sockets, {self.tasks} tasks, "
                f"{self.upstream} upstream connections, RSS {self.rss_kib / 1024:.0f} MiB")


async def quiet(gw: Gateway, upstream: FaultUpstream, seconds: float = 3.0) -> Census:
    """The census after up to `seconds` of quiet (idle keep-alives time out, tasks end)."""
    deadline = time.monotonic() + seconds
    census = Census.of(gw, upstream)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        census = Census.of(gw, upstream)
    return census


async def upstream_faults(args: argparse.Namespace, policy_name: str) -> Row:
    text = READING_POLICY if policy_name == "reading" else RELAY_POLICY
    print(f"\n## {args.requests:,} requests through a faulty upstream, {policy_name} policy")
    upstream = FaultUpstream().start()
    errors_before = dict(LOGS.counts)
    try:
        with policy_file(text) as policy, in_process_gateway(
                policy, upstream.url, upstream_timeout=UPSTREAM_TIMEOUT) as gw:
            warm = Load(gw.url, fault_pick, workers=args.workers, limit=len(FAULTS) * 8,
                        upstream_body=upstream_body)
            async with warm:
                await warm.done()
            baseline = await quiet(gw, upstream)
            load = Load(gw.url, fault_pick, workers=args.workers, limit=args.requests,
                        upstream_body=upstream_body)
            started = time.monotonic()
            async with load:
                await load.done()
            took = time.monotonic() - started
            after = await quiet(gw, upstream)
        # the refused-connection case needs a gateway of its own (nothing listens)
        refused = Load("", fault_pick, workers=args.workers, limit=args.requests // 20)
        with policy_file(text) as policy, in_process_gateway(
                policy, f"http://127.0.0.1:{free_port()}") as gw_refused:
            refused.url = gw_refused.url
            base_refused = Census.of(gw_refused, upstream)
            async with refused:
                await refused.done()
            after_refused = await quiet(gw_refused, upstream, 1.0)
    finally:
        upstream.stop()
    seen = load.seen
    print(f"{len(seen):,} requests in {took:.0f} s; census before: {baseline}; after: {after}")
    print("| fault | requests | what the client saw |")
    print("|---|---|---|")
    by_fault: dict[str, Counter[str]] = {}
    for s in seen:
        by_fault.setdefault(s.label.split()[0], Counter())[f"{s.status} {s.verdict}"] += 1
    for fault in FAULTS:
        counts = by_fault.get(fault, Counter())
        print(f"| {fault} | {sum(counts.values()):,} | "
              f"{', '.join(f'{n:,}x {k}' for k, n in counts.most_common())} |")
    refused_counts = Counter(f"{s.status} {s.verdict}" for s in refused.seen)
    print(f"| refused (nothing listening) | {len(refused.seen):,} | "
          f"{', '.join(f'{n:,}x {k}' for k, n in refused_counts.most_common())} |")
    print(f"refused-connection gateway: before {base_refused}; after {after_refused}")
    logged = {k: v - errors_before.get(k, 0) for k, v in LOGS.counts.items()
              if v - errors_before.get(k, 0)}
    for line, n in sorted(logged.items(), key=lambda kv: -kv[1]):
        print(f"  logged {n:,}x {line}")
    malformed = bad(seen) + bad(refused.seen)
    kinds = Counter(s.label.split()[0] + ": " + s.verdict[:60] for s in malformed)
    classes: Counter[str] = Counter()
    for s in seen + refused.seen:
        if s.verdict.startswith("bad"):
            continue
        classes[{("ok", True): "complete 200s", ("error", False): "502/504 errors in the "
                 "route's dialect", ("error", True): "streams ended by an error event",
                 ("passthrough", True): "invalid JSON relayed as sent",
                 ("truncated", True): "JSON bodies dropped as incomplete after their headers",
                 }[(s.verdict, s.status == 200)]] += 1
    saw = (f"{'; '.join(f'{n:,} {k}' for k, n in classes.most_common())}; "
           f"{len(malformed):,} malformed"
           f"{': ' if kinds else ''}{'; '.join(f'{n}x {k}' for k, n in kinds.most_common(3))}")
    lost = (f"no leak: fds {baseline.fds}→{after.fds}, gateway sockets {baseline.sockets}→"
            f"{after.sockets}, tasks {baseline.tasks}→{after.tasks}, RSS "
            f"{baseline.rss_kib / 1024:.0f}→{after.rss_kib / 1024:.0f} MiB")
    if (after.tasks != baseline.tasks or after.sockets > baseline.sockets + args.workers
            or after_refused.tasks != base_refused.tasks):
        lost = lost.replace("no leak", "LEAK")
    return Row(f"Upstream faults, {policy_name} policy",
               f"{len(FAULTS)} faults in turn (refuse, hang, close, reset, bad status, invalid "
               f"JSON, short bodies, mid-stream hang/close, malformed SSE, 1 MiB event), both "
               f"dialects, streamed and not, {args.workers} clients",
               len(seen) + len(refused.seen), saw, lost)


# -- client disconnects ------------------------------------------------------------------------

DISCONNECT_POLICY = """version: 1
rules:
  - name: cut-short
    kind: rate_shaping
    config:
      limits:
        - total_tokens: 1000000000/day
        - concurrent: {slots}
"""


async def hang_up(session: aiohttp.ClientSession, url: str, path: str, n: int,
                  events_read: int) -> tuple[int, float]:
    body = chat_body(stream=True, max_tokens=2000)
    resp = await session.post(url + path, json=body, headers={
        **AUTH, "x-fault-events": "400", "x-fault-delay": "0.02", "x-request-id": f"hup-{n}"})
    assert resp.status == 200, resp.status
    text, events = 0, 0
    while events < events_read:
        line = await resp.content.readline()
        if not line:
            break
        if line.startswith(b"data:") and (b'"delta": {"content"' in line
                                          or b'"text_delta"' in line):
            events += 1
            text += len(line.split(b'"content": "' if path == CHAT else b'"text": "')[1]
                        .split(b'"')[0])
    resp.close()
    return text, time.monotonic()


async def disconnects(args: argparse.Namespace) -> Row:
    print(f"\n## {args.hangups:,} clients hang up mid-stream")
    upstream = FaultUpstream().start()
    clock = FakeClock()
    storage = MemoryBackend(clock)
    results: list[tuple[str, int, float, int]] = []  # path, chars seen, hung up at, n
    try:
        with policy_file(DISCONNECT_POLICY.format(slots=4 * args.workers)) as policy, \
                in_process_gateway(policy, upstream.url, storage=storage) as gw:
            semaphore = asyncio.Semaphore(args.workers)

            async def one(n: int, session: aiohttp.ClientSession) -> None:
                path = CHAT if n % 2 == 0 else MESSAGES
                async with semaphore:
                    chars, at = await hang_up(session, gw.url, path, n, 3 + n % 10)
                results.append((path, chars, at, n))

            connector = aiohttp.TCPConnector(limit=args.workers)
            async with aiohttp.ClientSession(connector=connector) as session:
                await asyncio.gather(*(one(n, session) for n in range(args.hangups)))
            await eventually(lambda: upstream.open_connections() == 0, within=10)
            gw.drain()
            op = Acquire(identity_key(IDENTITY, "rs", "cut-short", "0", ""), QUOTA, DAY, QUOTA,
                         cost=0)
            charged = QUOTA - gw.call(storage.admit([op])).results[0].remaining
            # Every in-flight slot was released: as many overlapping streams as there are
            # slots all pass. (A client that hangs up and calls again at once can hold
            # two slots for a moment: its first is released in the background.)
            body = chat_body(stream=True)
            slow = {**AUTH, "x-fault-delay": "0.05"}
            async with aiohttp.ClientSession() as session:
                async def full() -> int:
                    async with session.post(gw.url + CHAT, json=body, headers=slow) as resp:
                        await resp.read()
                        return resp.status
                after = Counter(await asyncio.gather(*(full() for _ in range(4 * args.workers))))
    finally:
        upstream.stop()
    conns = {c.request_ids[0]: c for c in upstream.conns if c.request_ids}
    delays, low, high = [], 0, 0
    for path, chars, at, n in results:
        conn = conns[f"hup-{n}"]
        assert conn.closed_by_peer_at is not None
        delays.append(conn.closed_by_peer_at - at)
        prompt = (estimate_input_tokens(chat_body(stream=True, max_tokens=2000))
                  if path == CHAT else 12)
        low += prompt + tokens_from_chars(chars)
        high += prompt + tokens_from_chars(conn.text_sent)
    print(f"upstream saw the hang-up after: p50 {ms(percentile(delays, 0.5))}, p99 "
          f"{ms(percentile(delays, 0.99))}, max {ms(max(delays))}; tokens charged {charged:,.0f}"
          f" (client read => >= {low:,}, upstream wrote => <= {high:,}); {4 * args.workers} "
          f"overlapping streams afterwards: {dict(after)}")
    within = "within" if low <= charged <= high else "OUTSIDE"
    return Row("Client hangs up mid-stream",
               f"clients read 3-12 events of a 400-event stream, then drop the connection, "
               f"{args.workers} at a time; memory counters on a frozen clock",
               len(results) + 4 * args.workers,
               f"upstream call cancelled after p50 {ms(percentile(delays, 0.5))}, max "
               f"{ms(max(delays))}; in-flight slots all released ({dict(after)} for "
               f"{4 * args.workers} concurrent streams after, as many as the limit)",
               f"nothing: {charged:,.0f} tokens charged, {within} [{low:,}, {high:,}] = "
               "sum of prompt + ceil(chars read / 4) ... prompt + ceil(chars the upstream "
               "wrote / 4)")


# -- reload under load -------------------------------------------------------------------------

# The clock is frozen but Redis expires keys in real time (PX = the bucket's fill time),
# so the quota is small enough for the key to outlive the run (86 ms per token).
RELOAD_QUOTA = 1_000_000.0


def reload_policy(n: int) -> str:
    return f"""version: 1
rules:
  - name: tokens
    kind: rate_shaping
    config:
      limits:
        - total_tokens: {RELOAD_QUOTA:.0f}/day
        - requests: {100000 + n}/min
"""


BROKEN = reload_policy(0).replace("/min", "/minn")
EVENTS = 10
USAGE = {True: 12 + EVENTS, False: 12 + 3}


def reload_pick(n: int) -> Pick:
    path = CHAT if n % 2 == 0 else MESSAGES
    stream = n % 3 != 0
    return Pick(path, chat_body(stream), {**AUTH, "x-fault-events": str(EVENTS),
                                          "x-fault-delay": "0.01"},
                label=f"{path} stream={stream}")


async def reload_soak(args: argparse.Namespace) -> Row:
    print(f"\n## {args.seconds:g} s of streams while the policy is broken and fixed")
    upstream = FaultUpstream().start()
    server = start_redis_server()
    clock = FakeClock()
    storage = RedisBackend.from_url(server.url, timeout=1.0, clock=clock)
    loads_error = metric(metrics.POLICY_LOADS, result="error")
    loads_ok = metric(metrics.POLICY_LOADS, result="ok")
    try:
        with policy_file(reload_policy(1)) as path, in_process_gateway(
                path, upstream.url, redis=server.url, storage=storage,
                policy_watch_interval=0.05) as gw:
            async with Load(gw.url, reload_pick, workers=args.workers) as load:
                deadline = time.monotonic() + args.seconds
                n = 1
                while time.monotonic() < deadline:
                    path.write_text(BROKEN)
                    await asyncio.sleep(0.2)
                    n += 1
                    path.write_text(reload_policy(n))
                    await asyncio.sleep(0.2)
            gw.drain()
            peek = RedisBackend.from_url(server.url, timeout=1.0, clock=clock)
            op = Acquire(identity_key(IDENTITY, "rs", "tokens", "0", ""), RELOAD_QUOTA, DAY,
                         RELOAD_QUOTA, cost=0)
            charged = RELOAD_QUOTA - (await peek.admit([op])).results[0].remaining
            await peek.aclose()
    finally:
        server.close()
        upstream.stop()
    seen = load.seen
    streamed = sum(1 for s in seen if "stream=True" in s.label)
    expected = streamed * USAGE[True] + (len(seen) - streamed) * USAGE[False]
    refused = metric(metrics.POLICY_LOADS, result="error") - loads_error
    swapped = metric(metrics.POLICY_LOADS, result="ok") - loads_ok - 1
    print(f"{len(seen):,} requests ({streamed:,} streamed): {statuses(seen)}, "
          f"{len(bad(seen))} malformed; {refused:.0f} broken loads refused, {swapped:.0f} "
          f"fixes swapped in; tokens charged {charged:,.0f}, usage reported {expected:,}")
    return Row("Broken policy reloads under load",
               f"{args.seconds:g} s: file broken then fixed every 0.4 s ({refused:.0f} refused, "
               f"{swapped:.0f} swapped in), {args.workers} clients, 2/3 streamed, counters "
               "in Redis",
               len(seen), f"{statuses(seen)}; {len(bad(seen))} failed or malformed; every "
               "stream ended with its end marker",
               "nothing: tokens charged = usage reported" if charged == expected
               else f"MISMATCH: charged {charged:,.0f}, usage {expected:,}")


# -- main ---------------------------------------------------------------------------------------

def machine() -> str:
    load = os.getloadavg()
    return (f"{platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs; load "
            f"{load[0]:.1f} at the start), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


async def run(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    scenario = args.scenario
    if scenario in ("redis-kill", "all"):
        for mode in (["allow", "deny"] if scenario == "all" else [args.mode]):
            rows.append(await redis_kill(args, mode))
    if scenario in ("redis-stall", "all"):
        rows.append(await redis_stall(args, "busy"))
    if scenario in ("redis-pause", "all"):
        rows.append(await redis_stall(args, "pause"))
    if scenario in ("upstream-faults", "all"):
        for name in (["reading", "relay"] if args.policy == "both" else [args.policy]):
            rows.append(await upstream_faults(args, name))
    if scenario in ("disconnects", "all"):
        rows.append(await disconnects(args))
    if scenario in ("reload", "all"):
        rows.append(await reload_soak(args))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("scenario", choices=["redis-kill", "redis-stall", "redis-pause",
                                             "upstream-faults", "disconnects", "reload", "all"])
    parser.add_argument("--outage", type=float, default=30.0, help="seconds Redis stays dead")
    parser.add_argument("--before", type=float, default=5.0)
    parser.add_argument("--after", type=float, default=5.0)
    parser.add_argument("--mode", choices=("allow", "deny"), default="allow")
    parser.add_argument("--stall", type=float, default=4.0, help="seconds Redis answers nobody")
    parser.add_argument("--requests", type=int, default=10_000,
                        help="requests through the faulty upstream (per policy)")
    parser.add_argument("--policy", choices=("reading", "relay", "both"), default="both")
    parser.add_argument("--hangups", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20.0, help="reload soak length")
    parser.add_argument("--workers", type=int, default=8, help="concurrent clients")
    parser.add_argument("--quick", action="store_true",
                        help="short versions: 5 s outage, 1,000 requests, 100 hang-ups, 5 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.outage, args.before, args.after = 5.0, 2.0, 2.0
        args.requests, args.hangups, args.seconds, args.stall = 1000, 100, 5.0, 2.0
    # Count warnings and errors instead of printing thousands of them ("uvicorn" does
    # not propagate to the root logger).
    for name in ("", "uvicorn"):
        logging.getLogger(name).addHandler(LOGS)
    logging.getLogger().setLevel(logging.WARNING)
    print(f"# bench/soak.py {' '.join(sys.argv[1:])}")
    print(f"# {machine()}")
    started = time.monotonic()
    rows = asyncio.run(run(args))
    print(f"\n## Summary ({time.monotonic() - started:.0f} s)\n")
    print("| fault | what was tried | requests | what the client saw | what was lost |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(row.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
