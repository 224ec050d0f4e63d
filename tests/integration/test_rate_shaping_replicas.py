"""Limits hold exactly across gateway processes sharing one real Redis."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.demo_upstream import DemoConfig, create_demo_app
from tests.support.gateway_process import GatewayProcess
from tests.support.redis_server import RedisServer, start_redis_server
from tests.support.server import serve_in_thread

BODY = {"model": "demo-model", "max_tokens": 5,
        "messages": [{"role": "user", "content": "hello"}]}
HEADERS = {"authorization": "Bearer sk-one-identity"}


def policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with serve_in_thread(create_demo_app(DemoConfig(fast=True))) as url:
        yield url


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with start_redis_server() as server:
        yield server


def evalsha_calls(server: RedisServer) -> int:
    import redis

    client = redis.Redis(port=server.port)
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    client.close()
    # NOSCRIPT replies (scripts not yet loaded) are failed calls, not round trips we keep
    return int(stats.get("calls", 0)) - int(stats.get("failed_calls", 0))


async def fire(urls: list[str], total: int, concurrency: int = 100) -> Counter[int]:
    """`total` requests spread over `urls`, `concurrency` at a time."""
    statuses: Counter[int] = Counter()
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        semaphore = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with semaphore:
                resp = await client.post(urls[i % len(urls)] + "/v1/chat/completions",
                                         json=BODY, headers=HEADERS)
                statuses[resp.status_code] += 1

        await asyncio.gather(*(one(i) for i in range(total)))
    return statuses


def test_exactly_the_limit_across_two_processes(
    tmp_path: Path, upstream: str, redis_server: RedisServer
) -> None:
    path = policy(tmp_path, """
version: 1
rules:
  - name: per-key
    kind: rate_shaping
    config:
      limits:
        - requests: 100/hour
""")
    gateways = [GatewayProcess(policy=path, upstream=upstream, redis=redis_server.url)
                for _ in range(2)]
    try:
        before = evalsha_calls(redis_server)
        statuses = asyncio.run(fire([g.url for g in gateways], 500))
        after = evalsha_calls(redis_server)
        fallbacks = [httpx.get(g.url + "/metrics").text for g in gateways]
    finally:
        for gateway in gateways:
            gateway.stop()
    assert statuses == Counter({200: 100, 429: 400})
    for metrics in fallbacks:  # every decision came from the shared counters
        assert "distill_guard_storage_fallback_admits_total 0.0" in metrics
    # requests-only limits settle nothing: one EVALSHA per request, admitted or not
    assert after - before == 500


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
        before = evalsha_calls(redis_server)
        statuses = asyncio.run(fire([gateway.url], 50, concurrency=10))
        time.sleep(0.5)  # settles run after the response
        after = evalsha_calls(redis_server)
    finally:
        gateway.stop()
    assert statuses == Counter({200: 50})
    # 50 admits (request path, both rules in one script) + 50 settles (off path)
    assert after - before == 100


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
        calls_at_restart = evalsha_calls(redis_server)
        time.sleep(1.5)  # the breaker probes again after 1 s
        back, _ = asyncio.run(load(1.0))
        calls_after = evalsha_calls(redis_server)
        metrics = httpx.get(gateway.url + "/metrics").text
    finally:
        gateway.stop()
    for phase in (warm, first, down, back):
        assert set(phase) == {200}, phase
    assert slowest_down < 0.5, f"a request waited {slowest_down:.3f}s with the breaker open"
    assert calls_after - calls_at_restart >= sum(back.values()) * 0.9  # shared counting again
    assert "distill_guard_storage_shared 1.0" in metrics
    assert "distill_guard_storage_fallback_admits_total" in metrics
