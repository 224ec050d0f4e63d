"""Redis killed under steady load, then restarted: what did the clients see?

Starts the fast demo upstream, a throwaway redis-server and one gateway (all on
loopback), runs a closed-loop load through the gateway, SIGKILLs Redis for
`--outage` seconds, starts it again on the same port, and reports per phase:
requests (by the phase they started in), failures, latency (p50/p99/max),
and how long after Redis came back the gateway's counting was shared again
(first EVALSHA seen by the new Redis).

    .venv/bin/python bench/redis_fault.py [--outage 10] [--mode allow|deny]

With `--mode allow` (on_storage_error: allow) no request may fail; with
`deny` requests during the outage get 503 in the API's dialect, promptly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    LOOPBACK,
    Service,
    free_port,
    machine_line,
    start_demo_upstream,
    start_gateway,
    start_service,
)

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
BODY = {"model": "demo-model", "max_tokens": 20,
        "messages": [{"role": "user", "content": "hello there"}]}


@dataclass
class Phase:
    name: str
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    def row(self) -> str:
        lat = sorted(self.latencies) or [0.0]

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000

        failed = sum(n for s, n in self.statuses.items() if s != 200)
        return (f"| {self.name} | {len(self.latencies)} | {failed} | "
                f"{dict(sorted(self.statuses.items()))} | {pct(0.5):.1f} | {pct(0.99):.1f} | "
                f"{lat[-1] * 1000:.1f} |")


def start_redis_on(port: int, log_dir: Path) -> Service:
    argv = ["redis-server", "--bind", LOOPBACK, "--port", str(port), "--save", "",
            "--appendonly", "no"]
    service = start_service(f"redis-{time.monotonic_ns()}", f"redis://{LOOPBACK}:{port}/0",
                            argv, log_dir)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if redis_evalsha_calls(port) >= 0:
                return service
        time.sleep(0.02)
    raise RuntimeError("redis-server did not start")


def redis_evalsha_calls(port: int) -> int:
    import redis

    client = redis.Redis(host=LOOPBACK, port=port, socket_timeout=1)
    try:
        stats = client.info("commandstats").get("cmdstat_evalsha", {})
        return int(stats.get("calls", 0))
    except redis.RedisError as exc:
        raise OSError(str(exc)) from exc
    finally:
        client.close()


async def load(url: str, phase_of: list[Phase], stop: asyncio.Event, workers: int) -> None:
    async with aiohttp.ClientSession(headers={"authorization": "Bearer sk-fault"}) as session:
        async def worker() -> None:
            while not stop.is_set():
                phase = phase_of[0]
                started = time.monotonic()
                try:
                    async with session.post(url + "/v1/chat/completions", json=BODY,
                                            timeout=aiohttp.ClientTimeout(total=30)) as resp:
                        await resp.read()
                        status = resp.status
                except (TimeoutError, aiohttp.ClientError):
                    status = 0
                phase.latencies.append(time.monotonic() - started)
                phase.statuses[status] += 1

        await asyncio.gather(*(worker() for _ in range(workers)))


async def run(args: argparse.Namespace, gateway: Service, redis: list[Service], port: int,
              log_dir: Path) -> tuple[list[Phase], float | None]:
    phases = [Phase("before (Redis up)"), Phase(f"outage ({args.outage:g} s)"),
              Phase("after restart")]
    current = [phases[0]]
    stop = asyncio.Event()
    task = asyncio.create_task(load(gateway.url, current, stop, args.workers))
    await asyncio.sleep(args.before)
    os.killpg(redis[0].proc.pid, signal.SIGKILL)  # dies at once, mid-command if need be
    redis[0].stop()
    current[0] = phases[1]
    await asyncio.sleep(args.outage)
    redis[0] = start_redis_on(port, log_dir)
    restarted = time.monotonic()
    current[0] = phases[2]
    resumed: float | None = None
    while time.monotonic() - restarted < args.after:
        if resumed is None and redis_evalsha_calls(port) > 0:
            resumed = time.monotonic() - restarted
        await asyncio.sleep(0.02)
    stop.set()
    await task
    return phases, resumed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=10.0, help="seconds Redis is down")
    parser.add_argument("--before", type=float, default=3.0)
    parser.add_argument("--after", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=16, help="concurrent clients")
    parser.add_argument("--mode", choices=("allow", "deny"), default="allow")
    parser.add_argument("--timeout-ms", default="50", help="DISTILL_GUARD_REDIS_TIMEOUT_MS")
    args = parser.parse_args(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="dg-fault-"))
    policy = log_dir / "policy.yaml"
    policy.write_text(POLICY.format(mode=args.mode))
    port = free_port()
    started: list[Service] = []
    redis: list[Service] = []
    try:
        upstream = start_demo_upstream(log_dir)
        started.append(upstream)
        redis.append(start_redis_on(port, log_dir))
        os.environ["DISTILL_GUARD_REDIS_TIMEOUT_MS"] = args.timeout_ms
        gateway = start_gateway(upstream.url, redis[0].url, str(policy), log_dir,
                                access_log=False)
        started.append(gateway)
        phases, resumed = asyncio.run(run(args, gateway, redis, port, log_dir))
    finally:
        for service in [*started, *redis]:
            service.stop()
    print(f"# Redis killed under load: on_storage_error={args.mode}, "
          f"Redis timeout {args.timeout_ms} ms, {args.workers} concurrent clients")
    print(f"# {machine_line()}")
    print(f"# command: {' '.join(sys.argv)}")
    print("| phase | requests | failed | statuses | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|")
    for phase in phases:
        print(phase.row())
    shown = "never" if resumed is None else f"{resumed:.2f} s"
    print(f"shared counting resumed {shown} after Redis restarted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
