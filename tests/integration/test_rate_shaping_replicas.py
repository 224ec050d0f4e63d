"""Limits hold exactly across gateway processes sharing one real Redis."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway_process import GatewayProcess
from tests.support.redis_server import RedisServer, start_redis_server
from tests.support.replicas import (
    BODY,
    HEADERS,
    PER_KEY_100_AN_HOUR,
    ScriptCalls,
    evalsha_calls,
    fast_upstream,
    fire,
    gateways_under_load,
)
from tests.support.replicas import write_policy as policy


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with fast_upstream() as url:
        yield url


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with start_redis_server() as server:
        yield server


def test_exactly_the_limit_across_two_processes(
    tmp_path: Path, upstream: str, redis_server: RedisServer
) -> None:
    path = policy(tmp_path, PER_KEY_100_AN_HOUR)
    run = gateways_under_load(path, upstream, redis_server.url, [redis_server.port], total=500)
    assert run.statuses == Counter({200: 100, 429: 400})
    assert run.fallback_admits == [False, False]  # every decision came from the shared counters
    # requests-only limits settle nothing: one EVALSHA per request, admitted or not
    assert run.evalsha == {redis_server.port: 500}


def test_one_round_trip_on_the_request_path(
    tmp_path: Path, upstream: str, redis_server: RedisServer
) -> None:
    """Token limits add one settle call per request, after the response."""
    path = policy(tmp_path, """
version: 1
rules:
  - name: per-key
    kind: rate_shaping
    config:
      limits:
        - requests: 1000/min
        - total_tokens: 1000000/min
        - concurrent: 50
  - name: per-model
    kind: rate_shaping
    config:
      key: identity_model
      limits:
        - output_tokens: 100000/min
""")
    gateway = GatewayProcess(policy=path, upstream=upstream, redis=redis_server.url)
    try:
        calls = ScriptCalls(redis_server.port)
        statuses = asyncio.run(fire([gateway.url], 50, concurrency=10))
        time.sleep(0.5)  # settles run after the response
        scripts = calls.by_script()
    finally:
        gateway.stop()
    assert statuses == Counter({200: 50})
    # 50 admits: the request path, both rules in one script...
    assert scripts["admit.lua"] == 50
    # ...and settles after the responses, several requests' in one call when they finish
    # together (gateway/proxy/completions.py), so at most one per request
    assert 1 <= scripts["settle.lua"] <= 50


def test_redis_stopped_under_load_then_restarted(
    tmp_path: Path, upstream: str, redis_server: RedisServer
) -> None:
    path = policy(tmp_path, """
version: 1
rules:
  - name: per-key
    kind: rate_shaping
    on_storage_error: allow
    config:
      fallback_replicas: 2
      limits:
        - requests: 100000/min
""")
    gateway = GatewayProcess(policy=path, upstream=upstream, redis=redis_server.url,
                             redis_timeout_ms="50")

    async def load(seconds: float) -> tuple[Counter[int], float]:
        statuses: Counter[int] = Counter()
        slowest = 0.0
        deadline = time.monotonic() + seconds
        async with httpx.AsyncClient(timeout=10) as client:
            async def worker() -> None:
                nonlocal slowest
                while time.monotonic() < deadline:
                    started = time.monotonic()
                    resp = await client.post(gateway.url + "/v1/chat/completions",
                                             json=BODY, headers=HEADERS)
                    statuses[resp.status_code] += 1
                    slowest = max(slowest, time.monotonic() - started)

            await asyncio.gather(*(worker() for _ in range(8)))
        return statuses, slowest

    try:
        warm, _ = asyncio.run(load(1.0))
        redis_server.kill()
        # the first calls pay the connect timeout; then the breaker is open
        first, _ = asyncio.run(load(0.5))
        down, slowest_down = asyncio.run(load(2.0))
        metrics = httpx.get(gateway.url + "/metrics").text
        assert "distill_guard_storage_shared 0.0" in metrics
        redis_server.start()
        calls_at_restart = evalsha_calls(redis_server.port)
        time.sleep(1.5)  # the breaker probes again after 1 s
        back, _ = asyncio.run(load(1.0))
        calls_after = evalsha_calls(redis_server.port)
        metrics = httpx.get(gateway.url + "/metrics").text
    finally:
        gateway.stop()
    for phase in (warm, first, down, back):
        assert set(phase) == {200}, phase
    assert slowest_down < 0.5, f"a request waited {slowest_down:.3f}s with the breaker open"
    assert calls_after - calls_at_restart >= sum(back.values()) * 0.9  # shared counting again
    assert "distill_guard_storage_shared 1.0" in metrics
    assert "distill_guard_storage_fallback_admits_total" in metrics
