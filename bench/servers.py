"""Which ASGI server the gateway should ship with, and the server plumbing the other benches share.

    .venv/bin/python bench/servers.py [--duration 10] [--concurrency 32] [--rate 500]
        [--keys 10000] [--servers uvicorn,uvicorn-h11,granian] [--quick] [--json out.json]

One gateway worker under each ASGI server, same policy (policies/default.yaml), same
throwaway redis-server, same upstream (bench/fixed_upstream.py, else the demo model):

- `uvicorn`: what ships, `distill-guard serve` (uvicorn.run, loop and http `auto`, which pick
  uvloop and httptools when the `bench` extra is installed);
- `uvicorn-h11`: the same uvicorn.run with `loop="asyncio", http="h11"` (pure-Python reference);
- `granian`: `granian --interface asgi --factory gateway.app:create_app_from_env`, 1 worker,
  1 runtime thread, uvloop, HTTP/1; settings from the same DISTILL_GUARD_* environment.

First a functional check of every server (lifespan startup and shutdown, /readyz, an SSE
stream relayed event by event, client disconnect, SIGTERM in the middle of a stream with a
drain delay). Then two passes (the second in reverse order, so drift on a shared machine does
not favour one server): per server a fresh gateway, saturation (closed loop) and paced
latency (open loop), each 2 s warm-up + `--duration` s, CPU per request of the gateway's
whole process tree (granian's supervisor included). Both passes are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
import harness
from harness import LOOPBACK, Service
from overhead import run_loadgen

BENCH = Path(__file__).resolve().parent
FIXED_UPSTREAM = BENCH / "fixed_upstream.py"
DEFAULT_POLICY = harness.REPO / "policies" / "default.yaml"
CHAT_PATH = "/v1/chat/completions"
MODEL = "demo-model"
PROMPT = [{"role": "user", "content": "Tell me about rivers"}]
WARMUP_S = 2.0
BUSY_MACHINE_CORES = 0.1  # other processes' CPU above which a phase is flagged as disturbed
LIFESPAN_LOG_ENV = "DG_BENCH_LIFESPAN_LOG"

Result = dict[str, Any]


# -- upstream ----------------------------------------------------------------------------------
def start_upstream(log_dir: Path, event_delay: float = 0.0, name: str = "upstream") -> Service:
    """The benches' upstream: bench/fixed_upstream.py when it exists, else the demo model.

    The fixed upstream answers from pre-built bytes, so it costs far less CPU per request
    than the gateway and does not hide the gateway's cost; `event_delay` paces stream writes.
    """
    if not FIXED_UPSTREAM.exists():
        service = harness.start_demo_upstream(log_dir, event_delay)
        service.name = name
        return service
    port = harness.free_port()
    argv = [sys.executable, str(FIXED_UPSTREAM), LOOPBACK, str(port),
            "--event-delay", str(event_delay)]
    service = harness.start_service(name, f"http://{LOOPBACK}:{port}", argv, log_dir)
    return wait_or_stop(service, ("/healthz", 30.0))


def wait_or_stop(service: Service, *checks: tuple[str, float]) -> Service:
    """Wait for each (path, timeout) to answer 200; a server that does not is stopped here,
    since the caller never gets it to stop."""
    try:
        for path, timeout in checks:
            harness.wait_until_ok(service, path, timeout=timeout)
    except BaseException:
        service.stop()
        raise
    return service


def upstream_description() -> str:
    if FIXED_UPSTREAM.exists():
        return ("bench/fixed_upstream.py (raw asyncio + uvloop + httptools): "
                "1,024-byte chat completion")
    return "demo model, fast mode (uvicorn + uvloop + httptools): 1,024-byte chat completion"


# -- CPU of a process tree ---------------------------------------------------------------------
def _proc_stats() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, user+system CPU seconds) for every process we can read."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    return stats


def tree_cpu_seconds(service: Service) -> float:
    """CPU seconds of a server and all its live descendants (granian and LiteLLM may fork)."""
    stats = _proc_stats()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [service.proc.pid]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, (0, 0.0))[1]
        todo += children.get(pid, [])
    return total


def _own_and_children_cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


# -- the gateway under a given ASGI server -------------------------------------------------------
SERVERS = ("uvicorn", "uvicorn-h11", "granian")
EXTRA_SERVERS = ("granian-rust-tasks",)  # on request (--servers): granian's own task runner
FACTORY = "gateway.app:create_app_from_env"
PROBE_FACTORY = "servers:probe_app_from_env"  # the factory above, recording its lifespan

# Mirrors gateway/cli.py `_run` (one worker) with the loop and HTTP parser made explicit.
UVICORN_CODE = """
import sys, uvicorn
uvicorn.run(sys.argv[1], factory=True, host=sys.argv[2], port=int(sys.argv[3]), workers=1,
            log_config=None, access_log=False, timeout_graceful_shutdown=int(sys.argv[6]),
            proxy_headers=False, loop=sys.argv[4], http=sys.argv[5])
"""


def gateway_env(upstream: str, redis: str, policy: Path | str,
                **overrides: Any) -> dict[str, str]:
    """The DISTILL_GUARD_* environment `distill-guard serve` hands its workers.

    Built with the gateway's own Settings and `worker_environment`, so every server gets
    exactly the settings `serve` would give it: access log off, log level warning, unless
    `overrides` say otherwise.
    """
    from gateway.cli import worker_environment
    from gateway.settings import Settings

    fields: dict[str, Any] = {"upstream": upstream, "redis": redis, "policy": Path(policy),
                              "host": LOOPBACK, "workers": 1, "log_level": "warning",
                              "access_log": False, **overrides}
    env: dict[str, str] = worker_environment(Settings(**fields))
    return env


def server_argv(server: str, port: int, factory: str = FACTORY,
                grace_s: float = 30.0) -> list[str]:
    if server == "uvicorn" and factory == FACTORY:
        return [*harness.gateway_command(), "serve"]  # exactly what ships
    if server in ("uvicorn", "uvicorn-h11"):
        loop, http = ("auto", "auto") if server == "uvicorn" else ("asyncio", "h11")
        return [sys.executable, "-c", UVICORN_CODE, factory, LOOPBACK, str(port), loop, http,
                str(int(grace_s))]
    if server in ("granian", "granian-rust-tasks"):
        granian = Path(sys.executable).parent / "granian"
        tasks = ["--task-impl", "rust"] if server == "granian-rust-tasks" else []
        return [str(granian), "--interface", "asgi", "--factory", "--host", LOOPBACK,
                "--port", str(port), "--workers", "1", "--runtime-threads", "1",
                "--loop", "uvloop", "--http", "1", "--no-ws", "--log-level", "warning",
                "--no-access-log", *tasks, factory]
    raise ValueError(f"unknown server {server!r}")


def start_gateway(server: str, env: Mapping[str, str], log_dir: Path, *,
                  factory: str = FACTORY, name: str = "gateway") -> Service:
    """One gateway worker under `server`, on a free port; waits for /healthz and /readyz."""
    port = harness.free_port()
    env = {**env, "DISTILL_GUARD_PORT": str(port)}
    if factory != FACTORY:  # the probe factory lives in this directory
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), env.get("PYTHONPATH")]))
    grace = float(env.get("DISTILL_GUARD_SHUTDOWN_GRACE_SECONDS", "30"))
    argv = server_argv(server, port, factory, grace)
    service = harness.start_service(name, f"http://{LOOPBACK}:{port}", argv, log_dir, env)
    return wait_or_stop(service, ("/healthz", 60.0), ("/readyz", 30.0))


def _append_line(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text + "\n")


def probe_app_from_env() -> Callable[..., Any]:
    """`create_app_from_env`, writing each lifespan message the app sends its server (startup
    complete, shutdown complete) to $DG_BENCH_LIFESPAN_LOG: proof that both ran."""
    from gateway.app import create_app_from_env
    from gateway.proxy.handler import Receive, Scope, Send

    app = create_app_from_env()
    record = Path(os.environ[LIFESPAN_LOG_ENV])

    async def probe(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def recording_send(message: Mapping[str, Any]) -> None:
            _append_line(record, message["type"])  # twice per process: blocking is fine
            await send(message)

        await app(scope, receive, recording_send)

    return probe


# -- measuring -----------------------------------------------------------------------------------
def chat_body(content: str | None = None, *, stream: bool = False) -> str:
    messages = PROMPT if content is None else [{"role": "user", "content": content}]
    body: dict[str, Any] = {"model": MODEL, "messages": messages}
    if stream:
        body["stream"] = True
    return json.dumps(body)


def load_spec(mode: str, base_url: str, *, duration: float, concurrency: int = 32,
              rate: float = 500.0, keys: int = 10_000, body: str | None = None,
              headers: Mapping[str, str] | None = None, key_prefix: str = "bench-key",
              warmup: float = WARMUP_S) -> dict[str, Any]:
    """A bench/loadgen.py phase spec (mode closed = saturation, open = paced)."""
    return {"mode": mode, "url": base_url + CHAT_PATH, "body": body or chat_body(),
            "headers": {"Content-Type": "application/json", **(headers or {})},
            "duration": duration, "warmup": warmup, "concurrency": concurrency,
            "rate": rate, "api_keys": keys, "key_prefix": key_prefix}


def measure(spec: Mapping[str, Any], servers: Mapping[str, Service],
            redis_url: str | None = None) -> Result:
    """Run one load phase; add each server tree's CPU µs per request, the disturbance and,
    given `redis_url`, Redis commands and script calls per request."""
    redis_before = redis_stats(redis_url) if redis_url else None
    before = {name: tree_cpu_seconds(s) for name, s in servers.items()}
    ours, machine = _own_and_children_cpu(), harness.machine_cpu_seconds()
    wall = time.monotonic()
    result = run_loadgen(dict(spec))
    wall = time.monotonic() - wall
    used = {name: tree_cpu_seconds(s) - before[name] for name, s in servers.items()}
    issued = max(1, result["issued_incl_warmup"])
    result["cpu_us_per_request"] = {n: round(c / issued * 1e6, 1) for n, c in used.items()}
    other = harness.machine_cpu_seconds() - machine - (_own_and_children_cpu() - ours)
    result["other_processes_cores"] = round(max(0.0, other - sum(used.values())) / wall, 3)
    if redis_url and redis_before:
        after = redis_stats(redis_url)
        for key in ("commands", "scripts"):
            result[f"redis_{key}_per_request"] = round(
                (after[key] - redis_before[key]) / issued, 2)
    return result


def prime(base_url: str, seconds: float = 3.0) -> None:
    """Unmeasured traffic right after a server starts: lazy imports and first-use caches
    (LiteLLM imports for seconds on its first requests) stay out of every phase."""
    run_loadgen(load_spec("closed", base_url, duration=seconds, concurrency=8, keys=1000,
                          warmup=0.0, key_prefix="prime-key"))


def settle(services: Sequence[Service], timeout: float = 20.0) -> None:
    """Wait until the servers are idle (< 5% of a core over 0.5 s): an overloaded proxy goes
    on working through its backlog after the client has left, and would disturb the next
    phase."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = sum(tree_cpu_seconds(s) for s in services)
        time.sleep(0.5)
        if sum(tree_cpu_seconds(s) for s in services) - before < 0.025:
            return


SCRIPT_COMMANDS = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_evalsha_ro", "cmdstat_fcall")


def redis_stats(url: str) -> dict[str, int]:
    """From INFO: `commands` so far (those run inside Lua scripts included, INFO left out),
    `scripts` (EVAL/EVALSHA/FCALL calls: one round trip each, unless pipelined),
    `used_memory` and `keys`."""
    import redis as redis_py

    with redis_py.Redis.from_url(url) as client:
        stats: dict[str, dict[str, int]] = client.info("commandstats")
        memory: int = client.info("memory")["used_memory"]
        keys: int = client.dbsize()
    return {"commands": sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info"),
            "scripts": sum(stats.get(k, {}).get("calls", 0) for k in SCRIPT_COMMANDS),
            "used_memory": memory, "keys": keys}


def flush_redis(url: str) -> None:
    import redis as redis_py

    with redis_py.Redis.from_url(url) as client:
        client.flushall()


# -- shared plumbing for the bench scripts ------------------------------------------------------
def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that stops the servers


@contextlib.contextmanager
def bench_run(prefix: str) -> Iterator[tuple[Path, list[Service]]]:
    """A temporary log directory and a list of started servers, all stopped on the way out
    (normal end, error, Ctrl-C or SIGTERM)."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started: list[Service] = []
    with tempfile.TemporaryDirectory(prefix=prefix) as log_dir:
        try:
            yield Path(log_dir), started
        finally:
            for service in reversed(started):
                service.stop()


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """First column left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        rest = "  ".join(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return f"{cells[0].ljust(widths[0])}  {rest}".rstrip()

    return "\n".join([line(header), "-" * len(line(header)), *(line(r) for r in rows)])


def num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def progress(text: str, end: str = "\n") -> None:
    print(text, end=end, file=sys.stderr, flush=True)


def header_lines(title: str) -> list[str]:
    return [title,
            f"date:     {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            f"machine:  {harness.machine_line()}",
            f"command:  {shlex.join(sys.orig_argv)}",
            f"upstream: {upstream_description()}"]


def disturbance_note(results: Sequence[Result]) -> list[str]:
    busiest = max((r["other_processes_cores"] for r in results), default=0.0)
    if busiest <= BUSY_MACHINE_CORES:
        return []
    return [f"!! other processes used up to {busiest:.2f} cores during a phase: the numbers "
            "may be disturbed; rerun on a quiet machine"]


# -- functional checks ---------------------------------------------------------------------------
@dataclass
class StreamRead:
    status: int
    content_events: int
    done: bool
    first_content_s: float | None
    total_s: float


async def read_stream(url: str, *, stop_after_first: bool = False,
                      key: str = "check-key") -> StreamRead:
    """POST a streamed chat completion; count content events (or hang up after the first)."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    started = time.perf_counter()
    first: float | None = None
    events, done, buffer = 0, False, b""
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.post(
            url + CHAT_PATH, data=chat_body(stream=True), headers=headers) as resp:
        async for chunk in resp.content.iter_any():
            buffer += chunk
            *complete, buffer = buffer.split(b"\n\n")
            for event in complete:
                data = event.removeprefix(b"data: ")
                if data == b"[DONE]":
                    done = True
                elif b'"content":"' in data and b'"content":""' not in data:
                    events += 1
                    first = first or time.perf_counter() - started
            if stop_after_first and events:
                break  # leaving the block closes the connection mid-stream
        return StreamRead(resp.status, events, done, first, time.perf_counter() - started)


def _metric(base: str, name: str, label: str = "") -> float:
    total = 0.0
    for line in harness.http_get_text(base + "/metrics").splitlines():
        if line.startswith(name) and label in line and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


async def _sigterm_mid_stream(gateway: Service) -> tuple[StreamRead, int, float]:
    """Start a stream, SIGTERM the server's main process (as Kubernetes does to PID 1), ask
    /readyz during the drain delay; the stream should still finish."""
    stream = asyncio.create_task(read_stream(gateway.url))
    await asyncio.sleep(0.3)
    os.kill(gateway.proc.pid, signal.SIGTERM)
    await asyncio.sleep(0.3)
    try:
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
                gateway.url + "/readyz") as resp:
            readyz = resp.status
    except (aiohttp.ClientError, TimeoutError):
        readyz = 0  # refused: the server stopped accepting at once
    sent = time.monotonic()
    return await stream, readyz, sent


def check_server(server: str, redis_url: str, log_dir: Path, started: list[Service]) -> Result:
    """Functional checks of one server; every check is a (passed, detail) pair. Its own slow
    upstream and gateway are stopped when done (or by the caller, on an error)."""
    upstream = start_upstream(log_dir, event_delay=0.01, name=f"slow-upstream-{server}")
    started.append(upstream)
    lifespan_log = log_dir / f"lifespan-{server}.log"
    env = {**gateway_env(upstream.url, redis_url, DEFAULT_POLICY, shutdown_drain_seconds=1.0,
                         shutdown_grace_seconds=10.0),
           LIFESPAN_LOG_ENV: str(lifespan_log)}
    gateway = start_gateway(server, env, log_dir, factory=PROBE_FACTORY, name=f"check-{server}")
    started.append(gateway)
    checks = _run_checks(gateway, upstream, lifespan_log)
    for service in (gateway, upstream):
        service.stop()
        started.remove(service)
    return checks


def _run_checks(gateway: Service, upstream: Service, lifespan_log: Path) -> Result:
    checks: Result = {}
    events = lifespan_log.read_text().split() if lifespan_log.exists() else []
    checks["lifespan startup, /readyz 200"] = (
        "lifespan.startup.complete" in events, f"lifespan messages: {events}")

    direct = asyncio.run(read_stream(upstream.url))
    relayed = asyncio.run(read_stream(gateway.url))
    first_ms = None if relayed.first_content_s is None else relayed.first_content_s * 1e3
    streamed = (relayed.status == 200 and relayed.done
                and relayed.content_events == direct.content_events
                and relayed.first_content_s is not None
                and relayed.first_content_s < relayed.total_s / 2)
    checks["SSE relayed event by event"] = (streamed, (
        f"{relayed.content_events}/{direct.content_events} content events, [DONE] "
        f"{relayed.done}, first after {num(first_ms)} ms of {relayed.total_s * 1e3:,.0f} ms"))

    closed_before = _metric(gateway.url, "distill_guard_requests_total", 'status="499"')
    asyncio.run(read_stream(gateway.url, stop_after_first=True))
    seen = _wait_for(lambda: _metric(gateway.url, "distill_guard_requests_total",
                                     'status="499"') > closed_before, 3.0)
    idle = _wait_for(lambda: _metric(gateway.url, "distill_guard_in_flight_requests") == 0, 3.0)
    checks["client disconnect seen (499), in-flight back to 0"] = (
        seen and idle, f"499 counted: {seen}; in-flight 0: {idle}")

    stream, readyz, sent = asyncio.run(_sigterm_mid_stream(gateway))
    try:
        code: int | None = gateway.proc.wait(15)
    except subprocess.TimeoutExpired:  # still running: reported, stopped by the caller
        code = None
    exit_s = time.monotonic() - sent
    events = lifespan_log.read_text().split() if lifespan_log.exists() else []
    checks["SIGTERM mid-stream: stream completes"] = (
        stream.done and stream.content_events == direct.content_events,
        f"{stream.content_events} events, [DONE] {stream.done}")
    checks["SIGTERM: /readyz 503 while draining"] = (
        readyz == 503, f"/readyz 0.3 s after SIGTERM: {readyz or 'connection refused'}")
    # uvicorn re-raises the SIGTERM it caught once it has shut down: -15 is its clean exit
    checks["SIGTERM: lifespan shutdown ran, clean exit"] = (
        "lifespan.shutdown.complete" in events and code in (0, -signal.SIGTERM),
        f"exit code {code} {exit_s:.1f} s after /readyz was asked; lifespan messages: {events}")
    return checks


# -- the comparison ------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The gateway under uvicorn and granian.")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds measured per phase, after 2 s of warm-up")
    parser.add_argument("--concurrency", type=int, default=32, help="saturation workers")
    parser.add_argument("--rate", type=float, default=500.0, help="paced phase, req/s")
    parser.add_argument("--keys", type=int, default=10_000, help="distinct API keys in turn")
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help=f"comma-separated, of {', '.join(SERVERS + EXTRA_SERVERS)}")
    parser.add_argument("--quick", action="store_true",
                        help="3 s phases and no second pass (a smoke run)")
    parser.add_argument("--no-checks", action="store_true", help="skip the functional checks")
    parser.add_argument("--json", type=Path, help="also write all results to this JSON file")
    args = parser.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if unknown := set(args.servers) - set(SERVERS) - set(EXTRA_SERVERS):
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    if args.quick:
        args.duration = min(args.duration, 3.0)
    return args


def run_server(server: str, args: argparse.Namespace, upstream: Service, redis: Service,
               log_dir: Path) -> Result:
    """A fresh gateway under `server`, measured at saturation then paced; stopped after."""
    flush_redis(redis.url)  # every server starts from the same empty Redis
    gateway = start_gateway(server, gateway_env(upstream.url, redis.url, DEFAULT_POLICY),
                            log_dir, name=f"gateway-{server}")
    try:
        procs = {"gateway": gateway, "redis": redis, "upstream": upstream}
        prime(gateway.url)
        sat = measure(load_spec("closed", gateway.url, duration=args.duration,
                                concurrency=args.concurrency, keys=args.keys), procs, redis.url)
        settle(list(procs.values()))
        paced = measure(load_spec("open", gateway.url, duration=args.duration, rate=args.rate,
                                  keys=args.keys), procs, redis.url)
    finally:
        gateway.stop()
    return {"saturation": sat, "paced": paced}


def server_rows(results: Mapping[str, Result], args: argparse.Namespace) -> list[list[str]]:
    rows = []
    for label, result in results.items():
        sat, paced = result["saturation"], result["paced"]
        cpu = sat["cpu_us_per_request"]
        rows.append([
            label, num(sat["throughput_rps"], 1), num(cpu.get("gateway")),
            num(cpu.get("redis")), num(sat["latency_ms"]["p50"], 2),
            num(paced["latency_ms"]["p50"], 2), num(paced["latency_ms"]["p99"], 2),
            num(paced["throughput_rps"], 1), f"{sat['errors']}/{paced['errors']}",
            f"{max(sat['other_processes_cores'], paced['other_processes_cores']):.2f}"])
    return rows


ROW_HEADER = ["", "sat req/s", "gw CPU us/req", "redis us/req", "sat p50 ms",
              "paced p50 ms", "paced p99 ms", "paced req/s", "errors s/p", "other cores"]


def report(args: argparse.Namespace, checks: Mapping[str, Result],
           passes: list[dict[str, Result]], direct: Result) -> str:
    lines = header_lines("distill-guard under ASGI servers: one gateway worker each, one run")
    lines += [
        f"gateway:  1 worker, policy {DEFAULT_POLICY.relative_to(harness.REPO)}, counters in a "
        "throwaway redis-server; access log off, log level warning (the `serve` defaults "
        "for benches)",
        f"load:     aiohttp client in its own process, {args.keys:,} API keys in turn; "
        f"saturation {args.concurrency} workers closed loop, paced {args.rate:g} req/s open "
        f"loop; {WARMUP_S:g} s warm-up + {args.duration:g} s each",
        "servers:  uvicorn = `distill-guard serve` (uvloop + httptools); uvicorn-h11 = "
        "loop asyncio, http h11; granian = --interface asgi --workers 1 --runtime-threads 1 "
        "--loop uvloop --http 1",
        ""]
    if checks:
        names = list(next(iter(checks.values())))
        rows = [[name, *("ok" if checks[s][name][0] else "FAIL" for s in checks)]
                for name in names]
        lines += ["functional checks (slow upstream: 100 events 10 ms apart; drain delay 1 s)",
                  format_table(["", *checks], rows), ""]
        lines += [f"  {server}: {name}: {detail}" for server, result in checks.items()
                  for name, (ok, detail) in result.items() if not ok]
        lines.append("")
    direct_row = server_rows({"direct (no gateway)": direct}, args)
    header = [h.replace("paced", f"{args.rate:g}/s") for h in ROW_HEADER]
    for index, results in enumerate(passes, 1):
        order = " -> ".join(results)
        lines += [f"pass {index} (order {order})",
                  format_table(header, [*(direct_row if index == 1 else []),
                                        *server_rows(results, args)]), ""]
    every = [r for p in [*passes, {"direct": direct}] for res in p.values() for r in res.values()]
    lines += disturbance_note(every)
    lines += ["note: CPU us/req is the whole process tree's CPU (warm-up included) over the "
              "requests sent;", "      the load generator, upstream, Redis and gateway share "
              f"the machine's {harness.usable_cores()} cores."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    checks: dict[str, Result] = {}
    passes: list[dict[str, Result]] = []
    with bench_run("dg-servers-") as (log_dir, started):
        try:
            redis = harness.start_redis(log_dir)
            started.append(redis)
            if not args.no_checks:
                for server in args.servers:
                    progress(f"checking {server} ...")
                    checks[server] = check_server(server, redis.url, log_dir, started)
            upstream = start_upstream(log_dir)
            started.append(upstream)
            progress("direct ...")
            procs = {"upstream": upstream}
            direct = {"saturation": measure(load_spec("closed", upstream.url,
                                                      duration=args.duration), procs),
                      "paced": measure(load_spec("open", upstream.url, duration=args.duration,
                                                 rate=args.rate), procs)}
            orders = [args.servers, args.servers[::-1]][: 1 if args.quick else 2]
            for index, order in enumerate(orders, 1):
                passes.append({})
                for server in order:
                    progress(f"pass {index}: {server} ...")
                    passes[-1][server] = run_server(server, args, upstream, redis, log_dir)
        except harness.BenchError as exc:
            progress(f"servers bench failed: {exc}")
            return 2
        except KeyboardInterrupt:
            progress("\ninterrupted; stopping the servers")
            return 130
    print(report(args, checks, passes, direct))
    print(f"(whole run: {time.monotonic() - began:.0f} s)")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "machine": harness.machine_line(), "command": shlex.join(sys.orig_argv),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "checks": checks, "direct": direct, "passes": passes}, indent=2) + "\n")
    failed = any(not ok for result in checks.values() for ok, _ in result.values())
    errors = any(r["errors"] for p in passes for res in p.values() for r in res.values())
    return 1 if failed or errors else 0


if __name__ == "__main__":
    sys.exit(main())
