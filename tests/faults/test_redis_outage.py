"""Redis killed under steady load, then restarted; Redis too slow to answer.

What the client saw, request by request, and what the gateway waited on
storage, admit by admit (`TimedStorage`). The soak version (a 30 s outage)
is `bench/soak.py redis-kill`; figures in docs/faults.md.

The bound stated and asserted: a request waits on Redis at most one Redis
timeout (`redis_timeout_ms`, one call, never retried), plus the scheduling
lag of a shared 2-core box (`LAG`); once the breaker is open it does not
wait at all (a refused admit never yields to the loop: its median is well
under a millisecond, its maximum is GIL and scheduling lag). While Redis is away
or stalled, only the calls in flight when it went, and one probe per
`redis_breaker_reset_seconds`, pay the timeout.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gateway import metrics
from tests.faults.conftest import write_policy
from tests.faults.harness import eventually, in_process_gateway, install_timer
from tests.faults.load import CHAT, MESSAGES, Load, Pick, chat_body, percentile
from tests.faults.upstream import FaultUpstream
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.usefixtures("no_gc_pauses")]

TIMEOUT_MS = 50.0  # the default DISTILL_GUARD_REDIS_TIMEOUT_MS
LAG = 0.15  # event-loop and GIL lag on a shared 2-core box (gateway and client share a process)


@pytest.fixture
def no_gc_pauses() -> Iterator[None]:
    """The gateway shares the test process: a full collection of the whole suite's heap
    (seen: 260 ms, late in a full run) would be timed as a wait on Redis. Collect once
    before, then not while the waits are timed."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
OUTAGE = 3.0  # seconds Redis stays dead (bench/soak.py: 30)
KEY = "sk-fault-load"

POLICY = """version: 1
rules:
  - name: per-key
    kind: rate_shaping
    on_storage_error: {mode}
    config:
      limits:
        - requests: 1000000/min
        - total_tokens: 100000000/min
"""


def both_dialects(n: int) -> Pick:
    """Alternate OpenAI and Anthropic routes, plain and streamed."""
    path = CHAT if n % 2 == 0 else MESSAGES
    stream = n % 4 >= 2
    return Pick(path, chat_body(stream), {"authorization": f"Bearer {KEY}"},
                label=f"{path} stream={stream}")


def shared() -> float:
    value: float = metrics.STORAGE_SHARED._value.get()
    return value


def redis_has_counters(server: RedisServer) -> bool:
    """Whether this Redis (process) has run the gateway's counter scripts."""
    client = redis.Redis(port=server.port, socket_timeout=1)
    try:
        stats = client.info("commandstats").get("cmdstat_evalsha", {})
        return int(stats.get("calls", 0)) - int(stats.get("failed_calls", 0)) > 0
    finally:
        client.close()


@pytest.mark.parametrize("mode", ["allow", "deny"])
async def test_redis_killed_under_load_then_restarted(
    tmp_path: Path, redis_server: RedisServer, fault_upstream: FaultUpstream, mode: str,
) -> None:
    # deny turns any one failed call into a 503, so a 50 ms call that a loaded box makes
    # late would fail a request before the kill or after the restart: a wider timeout.
    timeout_ms = TIMEOUT_MS if mode == "allow" else 250.0
    policy = write_policy(tmp_path, POLICY.format(mode=mode))
    with in_process_gateway(policy, fault_upstream.url, redis=redis_server.url,
                            redis_timeout_ms=timeout_ms) as gateway:
        timed = install_timer(gateway)
        async with Load(gateway.url, both_dialects, workers=6) as load:
            load.phase = "before"
            await asyncio.sleep(1.0)
            assert redis_has_counters(redis_server)
            killed_at = time.monotonic()
            await asyncio.to_thread(redis_server.kill)  # SIGKILL: dies mid-command if need be
            load.phase = "outage"
            await eventually(lambda: timed.breaker.is_open, within=2)
            opened_at = time.monotonic()
            await asyncio.sleep(OUTAGE)
            await asyncio.to_thread(redis_server.start)  # same port, empty: no scripts
            restarted_at = time.monotonic()
            load.phase = "after"
            resumed = await eventually(
                lambda: any(w.outcome == "ok" and w.started >= restarted_at
                            for w in timed.waits), within=5)
            await asyncio.sleep(0.5)
        gateway.drain()
        assert redis_has_counters(redis_server)  # shared counting really resumed
    seen = load.seen
    by_phase = {p: [s for s in seen if s.phase == p] for p in ("before", "outage", "after")}
    assert all(len(v) >= 20 for v in by_phase.values()), {k: len(v) for k, v in by_phase.items()}
    assert shared() == 1

    # The timeout and the breaker bound every wait on storage (see the module docstring).
    during = [w for w in timed.waits if killed_at <= w.started < restarted_at]
    assert during
    assert max(w.elapsed for w in during) < timeout_ms / 1000 + LAG, max(
        w.elapsed for w in during)
    refused = [w for w in during if w.outcome == "open"]
    assert refused and all(w.breaker_open_at_start for w in refused)
    # No call, no wait: a refusal never yields to the loop. What it costs in wall time is
    # the GIL (three event loops share this process) and the box: tiny at the median.
    assert percentile([w.elapsed for w in refused], 0.5) < 0.001
    assert max(w.elapsed for w in refused) < LAG, max(w.elapsed for w in refused)
    # Once open, the breaker lets one probe a second through: few calls reach dead Redis.
    tried = [w for w in during if w.outcome == "failed" and w.started >= opened_at]
    assert len(tried) <= (restarted_at - opened_at) / 1.0 + 2, len(tried)

    # What the clients saw.
    bad = [s for s in seen if s.verdict.startswith("bad")]
    assert not bad, bad[:3]
    latency = max(s.elapsed for s in by_phase["outage"])
    assert latency < 2.0, latency  # not a hang (typically tens of ms; see docs/faults.md)
    outage = [s for s in by_phase["outage"] if s.started >= opened_at]
    if mode == "allow":
        # Fail-open: not one request failed, before, during or after.
        assert {s.status for s in seen} == {200}
    else:
        # Fail-closed: every request while the breaker is open is refused with a 503
        # in its route's dialect (Retry-After: 1), at once; before and after: 200.
        assert {s.status for s in outage} == {503}, Counter(s.status for s in outage)
        assert {s.verdict for s in outage} == {"error"}
        assert {s.label.split()[0] for s in outage} == {CHAT, MESSAGES}
        assert all(s.headers.get("retry-after") == "1" for s in outage)
        assert percentile([s.elapsed for s in outage], 0.99) < 0.5
        done_before = [s for s in seen if s.started + s.elapsed < killed_at]
        assert len(done_before) > 20, len(done_before)
        assert {s.status for s in done_before} == {200}, Counter(s.status for s in done_before)
    late = [s for s in by_phase["after"] if s.started >= restarted_at + resumed + 0.1]
    assert late and {s.status for s in late} == {200}, Counter(s.status for s in late)


async def test_counting_resumes_at_the_first_probe_after_redis_restarts(
    tmp_path: Path, redis_server: RedisServer, fault_upstream: FaultUpstream,
) -> None:
    """Counting resumes within 2 s of Redis coming back: the breaker probes once a
    second, and the first probe that meets the restarted Redis must succeed. (It did
    not: the scripts were reloaded over a stale redis-py pool connection, the probe
    failed and counting resumed one breaker period late; now they are loaded over
    the connection that got NOSCRIPT.)"""
    timeout_ms = 250.0  # generous, so a loaded box cannot fail the probe by a timeout
    policy = write_policy(tmp_path, POLICY.format(mode="allow"))
    with in_process_gateway(policy, fault_upstream.url, redis=redis_server.url,
                            redis_timeout_ms=timeout_ms) as gateway:
        timed = install_timer(gateway)
        async with Load(gateway.url, both_dialects, workers=2) as load:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(redis_server.kill)
            await eventually(lambda: timed.breaker.is_open, within=2)
            await asyncio.sleep(1.5)
            await asyncio.to_thread(redis_server.start)
            restarted_at = time.monotonic()
            resumed = await eventually(
                lambda: any(w.outcome == "ok" and w.started >= restarted_at
                            for w in timed.waits), within=5)
        gateway.drain()
    assert {s.status for s in load.seen} == {200}
    failed_probes = [w for w in timed.waits if w.started >= restarted_at and w.outcome == "failed"]
    assert failed_probes == []
    assert resumed < 1.0 + 2 * timeout_ms / 1000 + LAG  # within 2 s of Redis coming back


STALL = 2.5  # seconds Redis spends in a busy script (under busy-reply-threshold, 5 s)


async def test_redis_stalled_by_a_busy_script_bounds_every_wait(
    tmp_path: Path, redis_server: RedisServer, fault_upstream: FaultUpstream,
) -> None:
    """Redis alive but answering nobody (a Lua script busy for 2.5 s): every admit
    gives up after one timeout, the breaker opens after 3 of them, and from then on
    requests are decided locally without waiting; no client request fails."""
    policy = write_policy(tmp_path, POLICY.format(mode="allow"))
    with in_process_gateway(policy, fault_upstream.url, redis=redis_server.url,
                            redis_timeout_ms=TIMEOUT_MS) as gateway:
        timed = install_timer(gateway)
        async with Load(gateway.url, both_dialects, workers=6) as load:
            load.phase = "before"
            await asyncio.sleep(0.5)
            busy = threading.Thread(target=redis_server.busy, args=(STALL,))
            stalled_at = time.monotonic()
            busy.start()
            load.phase = "stalled"
            await asyncio.to_thread(busy.join, 30)
            freed_at = time.monotonic()
            load.phase = "after"
            resumed = await eventually(
                lambda: any(w.outcome == "ok" and w.started >= freed_at for w in timed.waits),
                within=5)
            await asyncio.sleep(0.3)
        gateway.drain()
    assert freed_at - stalled_at >= STALL
    during = [w for w in timed.waits if stalled_at + 0.05 <= w.started < freed_at]
    assert len(during) > 20
    # Every wait on Redis is bounded by the timeout; the stall never reaches a client.
    assert max(w.elapsed for w in during) < TIMEOUT_MS / 1000 + LAG
    timed_out = [w for w in during if w.outcome == "failed"]
    refused = [w for w in during if w.outcome == "open"]
    assert timed_out and refused
    assert all(w.elapsed >= TIMEOUT_MS / 1000 * 0.9 for w in timed_out)  # it waited, once
    # Only the calls in flight when it stalled, and one probe a second, paid the timeout.
    assert len(timed_out) <= 6 + STALL / 1.0 + 2, len(timed_out)
    assert percentile([w.elapsed for w in refused], 0.5) < 0.001
    assert max(w.elapsed for w in refused) < LAG
    assert {s.status for s in load.seen} == {200}
    assert not [s for s in load.seen if s.verdict.startswith("bad")]
    assert resumed < 2.0


