"""Gateway replicas under load against one shared Redis (a server or a cluster).

    run = gateways_under_load(policy_path, upstream, redis_url, ports, total=500)
    run.statuses            # Counter of HTTP statuses
    run.metrics             # each gateway's /metrics text, read before it stopped
    run.evalsha             # EVALSHA calls per Redis port during the load

Used by the replica tests of one server (test_rate_shaping_replicas.py) and of
Redis Cluster (test_redis_cluster.py), which assert on the same numbers.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import redis

from gateway.demo_upstream import DemoConfig, create_demo_app
from tests.support.gateway_process import GatewayProcess
from tests.support.server import serve_in_thread

BODY = {"model": "demo-model", "max_tokens": 5,
        "messages": [{"role": "user", "content": "hello"}]}
HEADERS = {"authorization": "Bearer sk-one-identity"}
# One identity, 100 requests an hour: the limit the exactness tests hold to.
PER_KEY_100_AN_HOUR = """
version: 1
rules:
  - name: per-key
    kind: rate_shaping
    config:
      limits:
        - requests: 100/hour
"""


@contextmanager
def fast_upstream() -> Iterator[str]:
    """The demo model, answering at once, on a loopback port."""
    with serve_in_thread(create_demo_app(DemoConfig(fast=True))) as url:
        yield url


def write_policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def evalsha_calls(port: int) -> int:
    """EVALSHA calls one Redis has answered (INFO commandstats), failed ones left out."""
    client = redis.Redis(port=port)
    try:
        stats: dict[str, Any] = client.info("commandstats").get("cmdstat_evalsha", {})
    finally:
        client.close()
    # NOSCRIPT replies (scripts not yet loaded) are failed calls, not round trips we keep
    return int(stats.get("calls", 0)) - int(stats.get("failed_calls", 0))


class ScriptCalls:
    """EVALSHA calls one Redis runs from now on, by script: the slow log set to keep every
    command (its entries carry the first arguments, so the script's SHA1)."""

    def __init__(self, port: int) -> None:
        self._client = redis.Redis(port=port)
        self._client.config_set("slowlog-log-slower-than", 0)
        self._client.config_set("slowlog-max-len", 100_000)
        self._client.slowlog_reset()

    def by_script(self) -> Counter[str]:
        """{script file name: calls} for admit.lua and settle.lua."""
        names = {_script_sha(name): name for name in ("admit.lua", "settle.lua")}
        counts: Counter[str] = Counter()
        for entry in self._client.slowlog_get(100_000):
            command = entry["command"]
            words = (command.decode() if isinstance(command, bytes) else command).split()
            if words and words[0].upper() == "EVALSHA" and words[1] in names:
                counts[names[words[1]]] += 1
        self._client.config_set("slowlog-log-slower-than", 10_000)
        self._client.close()
        return counts


def _script_sha(name: str) -> str:
    source = files("gateway.storage").joinpath("scripts").joinpath(name).read_text("utf-8")
    return hashlib.sha1(source.encode("utf-8")).hexdigest()


async def fire(
    urls: Sequence[str], total: int, concurrency: int = 100,
    headers: Sequence[dict[str, str]] = (HEADERS,),
) -> Counter[int]:
    """`total` requests spread over `urls` (and over `headers`), `concurrency` at a time."""
    statuses: Counter[int] = Counter()
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        semaphore = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with semaphore:
                resp = await client.post(urls[i % len(urls)] + "/v1/chat/completions",
                                         json=BODY, headers=headers[i % len(headers)])
                statuses[resp.status_code] += 1

        await asyncio.gather(*(one(i) for i in range(total)))
    return statuses


@dataclass
class LoadRun:
    statuses: Counter[int]
    metrics: list[str]
    evalsha: dict[int, int]

    @property
    def fallback_admits(self) -> list[bool]:
        """Per gateway: whether any decision came from local counters."""
        return ["distill_guard_storage_fallback_admits_total 0.0" not in m for m in self.metrics]


def gateways_under_load(
    policy: Path, upstream: str, redis_url: str, ports: Sequence[int], *, total: int,
    replicas: int = 2, headers: Sequence[dict[str, str]] = (HEADERS,), **env: str,
) -> LoadRun:
    """Start `replicas` `distill-guard serve` processes (in parallel) on `redis_url`,
    send `total` requests spread over them, and stop them.

    The Redis timeout is 1 s unless `redis_timeout_ms` says otherwise: these runs
    are about shared counting, and with the 50 ms default a call that times out
    under the load of a small test box (two gateways, the client, the upstream
    and Redis on two CPUs) is decided by the local fallback instead, which is
    what the fault tests are about.
    """
    env.setdefault("redis_timeout_ms", "1000")
    gateways: list[GatewayProcess] = []
    try:
        with ThreadPoolExecutor(replicas) as pool:
            starting = [pool.submit(GatewayProcess, policy=policy, upstream=upstream,
                                    redis=redis_url, **env) for _ in range(replicas)]
            failures = [f.exception() for f in starting]
            gateways = [f.result() for f, failed in zip(starting, failures, strict=True)
                        if failed is None]
        for failed in failures:
            if failed is not None:
                raise failed
        before = {port: evalsha_calls(port) for port in ports}
        statuses = asyncio.run(fire([g.url for g in gateways], total, headers=headers))
        after = {port: evalsha_calls(port) for port in ports}
        metrics = [httpx.get(g.url + "/metrics").text for g in gateways]
    finally:
        for gateway in gateways:
            gateway.stop()
    return LoadRun(statuses, metrics, {port: after[port] - before[port] for port in ports})
