"""The issue 8 performance suite: every budget, measured in one run, printed as one table.

    .venv/bin/python bench/suite.py [--quick] [--duration 30] [--policy policies/default.yaml]
        [--redis redis-server] [--rate 500] [--stream-rate 100] [--event-delay 0.002]
        [--connections 32] [--keys 10000] [--no-pin] [--json out.json]

Starts, each in its own process group on a free 127.0.0.1 port: bench/fixed_upstream.py (canned
answers, far cheaper than the gateway), a throwaway redis-server and ONE gateway worker
(`distill-guard serve --workers 1`). With two or more cores the gateway is pinned to the
second one and everything else (this script, wrk, the load generator, upstream, Redis) to the
first, so "per worker process" means one worker owning a core. Then, direct to the upstream
and through the gateway where both make sense:

1. Redis memory per idle identity: FLUSHALL, K new API keys one request each, wait for the
   background settles and short-lived buckets, (used_memory delta - client buffers delta) / K.
2. Redis round trips: sequential requests with MONITOR on; each command is placed against
   the request's arrival at the upstream (the upstream records it): commands before it were
   on the request path. EVALSHAs are told apart by the scripts' SHA1 as the gateway computes it.
3. Saturation: wrk, closed loop, `--connections` connections, keys rotated (bench/wrk/chat.lua);
   gateway CPU us per request from /proc and the capacity it implies.
4. Paced latency: bench/loadgen.py open loop at `--rate` req/s (latency from scheduled start).
5. Streams: loadgen open loop at `--stream-rate` streams/s: added time to first token.
6. CPU per relayed SSE event (bench/sse_cost.py, in process) and fingerprinting a 100 KB prompt
   (bench/fingerprint.py).

`--quick` is a ~1 minute smoke run. Every server is stopped at the end, also on Ctrl-C, SIGTERM
or an error. Exit code 1 when a phase had errors, 2 when the suite could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import hashlib
import http.client
import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import fingerprint as fingerprint_bench
import harness
import redis
import sse_cost
from harness import Service

CHAT_PATH = "/v1/chat/completions"
PROMPT = [{"role": "user", "content": "Tell me about rivers"}]
CHAT_BODY = json.dumps({"model": "bench-model", "messages": PROMPT})
STREAM_BODY = json.dumps({"model": "bench-model", "messages": PROMPT, "stream": True})
JSON_HEADERS = {"Content-Type": "application/json"}
WRK_SCRIPT = harness.BENCH / "wrk" / "chat.lua"
SCRIPTS = harness.REPO / "gateway" / "storage" / "scripts"
WRK_INSTALL = ("wrk not found: install it (Debian/Ubuntu: `apt-get install -y wrk`; macOS: "
               "`brew install wrk`); saturation falls back to bench/loadgen.py's closed loop")

Result = dict[str, Any]


def script_sha(name: str) -> str:
    """SHA1 of a counter script as gateway/storage/redis.py computes it (EVALSHA's first arg)."""
    return hashlib.sha1((SCRIPTS / name).read_text(encoding="utf-8").encode()).hexdigest()


# -- command line --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sizes:
    """How much each phase does: the defaults (~4 min) or --quick (~1 min)."""

    duration: float  # seconds measured per load phase and target
    warmup: float
    identities: int  # memory phase
    sequential: int  # round-trip phase
    sse_repeat: int
    fp_repeat: int


FULL = Sizes(duration=30.0, warmup=2.0, identities=5_000, sequential=500, sse_repeat=40,
             fp_repeat=7)
QUICK = Sizes(duration=5.0, warmup=1.0, identities=1_000, sequential=200, sse_repeat=10,
              fp_repeat=3)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="~1 minute smoke run")
    parser.add_argument("--duration", type=float,
                        help="seconds measured per load phase and target (default 30, quick 5)")
    parser.add_argument("--policy", default="policies/default.yaml")
    parser.add_argument("--redis", default="redis-server",
                        help="the redis-server executable to start a throwaway server with "
                             "(never an existing server: the suite runs FLUSHALL)")
    parser.add_argument("--rate", type=float, default=500.0, help="paced phase, req/s")
    parser.add_argument("--stream-rate", type=float, default=100.0, help="streams/s")
    parser.add_argument("--event-delay", type=float, default=0.002,
                        help="upstream pause between stream events, s (default 0.002)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--keys", type=int, default=10_000, help="API keys used in turn")
    parser.add_argument("--identity-rate", type=float, default=500.0,
                        help="memory phase: new identities per second")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    args.sizes = Sizes(args.duration or base.duration, base.warmup, base.identities,
                       base.sequential, base.sse_repeat, base.fp_repeat)
    args.policy = str(policy_path(args.policy))
    if min(args.sizes.duration, args.rate, args.stream_rate, args.connections, args.keys,
           args.wrk_threads, args.identity_rate) <= 0 or args.event_delay < 0:
        parser.error("durations, rates, counts must be positive, --event-delay >= 0")
    return args


def policy_path(given: str) -> Path:
    path = Path(given)
    return path.resolve() if path.exists() else (harness.REPO / path).resolve()


# -- servers -------------------------------------------------------------------------------------
@dataclass
class Stack:
    upstream: Service
    gateway: Service
    redis: Service
    load_cpus: set[int] | None = None  # everything but the gateway
    gateway_cpus: set[int] | None = None

    @property
    def servers(self) -> list[Service]:
        return [self.upstream, self.gateway, self.redis]


def start_stack(args: argparse.Namespace, log_dir: Path, started: list[Service]) -> Stack:
    """Start Redis, the upstream and the gateway, pinned; each goes into `started` at once."""
    plan = harness.cpu_plan(not args.no_pin)
    load_cpus, gateway_cpus = plan if plan else (None, None)
    if load_cpus:
        os.sched_setaffinity(0, load_cpus)  # this script and all it starts; the gateway moves
    redis_server = harness.start_redis(log_dir, args.redis)
    started.append(redis_server)
    upstream = harness.start_fixed_upstream(log_dir, args.event_delay, record_arrivals=True)
    started.append(upstream)
    gateway = harness.start_gateway(upstream.url, redis_server.url, args.policy, log_dir,
                                    access_log=False)
    started.append(gateway)
    if gateway_cpus:
        harness.pin(gateway, gateway_cpus)
    return Stack(upstream, gateway, redis_server, load_cpus, gateway_cpus)


def host_port(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return host, int(port)


# -- CPU accounting ----------------------------------------------------------------------------
def _own_and_children_cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class CpuWatch:
    """Server CPU seconds over a phase, and how busy the rest of the machine was."""

    servers: list[Service]
    before: dict[str, float] = field(default_factory=dict)
    ours: float = 0.0
    machine: float = 0.0
    wall: float = 0.0

    def start(self) -> None:
        self.before = {s.name: s.cpu_seconds() for s in self.servers}
        self.ours, self.machine = _own_and_children_cpu(), harness.machine_cpu_seconds()
        self.wall = time.monotonic()

    def stop(self) -> dict[str, float]:
        """{server: CPU s, ..., "other_cores": other processes' CPU per second of wall time}."""
        used = {s.name: s.cpu_seconds() - self.before[s.name] for s in self.servers}
        ours = _own_and_children_cpu() - self.ours + sum(used.values())
        other = harness.machine_cpu_seconds() - self.machine - ours
        used["other_cores"] = round(max(0.0, other) / (time.monotonic() - self.wall), 3)
        return used


# -- 1. Redis memory per idle identity -----------------------------------------------------------
SETTLE_WAIT_S = 3.0  # background settles done; 0.1-2 s rate buckets expired


def open_loop(args: argparse.Namespace, url: str, **spec: Any) -> dict[str, Any]:
    base = {"mode": "open", "url": url + CHAT_PATH, "body": CHAT_BODY, "headers": JSON_HEADERS,
            "duration": args.sizes.duration, "warmup": args.sizes.warmup,
            "api_keys": args.keys, "rate": args.rate}
    return {**base, **spec}


def settled_dbsize(client: redis.Redis) -> int:
    """DBSIZE once the background settles are done and short-lived buckets have expired:
    SETTLE_WAIT_S, then until two SCAN passes 0.5 s apart (SCAN drops keys whose TTL is over)
    find the same number of keys, for at most 10 s more."""
    time.sleep(SETTLE_WAIT_S)
    last, deadline = -1, time.monotonic() + 10.0
    while time.monotonic() < deadline:
        count = sum(1 for _ in client.scan_iter(count=1000))
        if count == last:
            break
        last = count
        time.sleep(0.5)
    size: int = client.dbsize()
    return size


def memory_phase(stack: Stack, args: argparse.Namespace) -> Result:
    client = redis.Redis.from_url(stack.redis.url)
    rate, count = args.identity_rate, args.sizes.identities
    # the gateway's Redis connections exist before the baseline (their buffers are memory too)
    harness.run_loadgen(open_loop(args, stack.gateway.url, rate=rate, duration=1.0, warmup=0.0,
                                  api_keys=200, key_prefix="warm-key"), stack.load_cpus)
    time.sleep(SETTLE_WAIT_S)
    client.flushall(asynchronous=False)
    before, keys_before = client.info("memory"), client.dbsize()
    load = harness.run_loadgen(open_loop(args, stack.gateway.url, rate=rate,
                                         duration=count / rate, warmup=0.0, api_keys=count,
                                         key_prefix="idle-key"), stack.load_cpus)
    keys_after = settled_dbsize(client)
    after = client.info("memory")
    client.close()
    used = after["used_memory"] - before["used_memory"]
    buffers = after.get("mem_clients_normal", 0) - before.get("mem_clients_normal", 0)
    identities = max(1, load["ok"])
    return {"identities": load["ok"], "errors": load["errors"],
            "error_kinds": load["error_kinds"], "used_memory_delta": used,
            "client_buffers_delta": buffers, "keys_delta": keys_after - keys_before,
            "bytes_per_identity": (used - buffers) / identities,
            "keys_per_identity": (keys_after - keys_before) / identities}


# -- 2. Redis round trips on the request path ---------------------------------------------------
QUOTED = re.compile(rb'"((?:[^"\\]|\\.)*)"')
SEQUENTIAL_GAP_S = 0.001  # after a request's settle, before the next request
SETTLE_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Command:
    at: float  # Redis's clock, the same as time.time() on one machine
    name: str
    sha: str


class Monitor:
    """Redis MONITOR on a connection of its own, read by a thread, which also counts the
    commands clients (not scripts) sent that contain `watch`."""

    def __init__(self, url: str, watch: bytes) -> None:
        self.sock = socket.create_connection(host_port(url), timeout=5.0)
        self.sock.sendall(b"MONITOR\r\n")
        if not self.sock.recv(64).startswith(b"+OK"):
            raise harness.BenchError("redis refused MONITOR")
        self.sock.settimeout(None)
        self.lines: list[bytes] = []
        self.watch, self.seen = watch, 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        buffer = b""
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(1 << 16):
                buffer += chunk
                *done, buffer = buffer.split(b"\r\n")
                self.lines += done
                self.seen += sum(self.watch in ln and b" lua]" not in ln for ln in done)

    def wait_for(self, count: int, timeout: float) -> bool:
        """Wait until `count` watched commands have been seen."""
        deadline = time.monotonic() + timeout
        while self.seen < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0005)
        return True

    def stop(self) -> list[Command]:
        """Commands clients sent (those scripts ran inside Redis are left out)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5.0)
        commands = []
        for line in self.lines:
            head, _, rest = line.partition(b"] ")
            if not head.startswith(b"+") or head.endswith(b" lua"):
                continue
            argv = QUOTED.findall(rest, 0)[:2]
            if argv:
                commands.append(Command(float(head[1:].split(b" ", 1)[0]),
                                        argv[0].decode().upper(),
                                        argv[1].decode() if len(argv) > 1 else ""))
        return commands


def round_trips_phase(stack: Stack, args: argparse.Namespace) -> Result:
    shas = {script_sha("admit.lua"): "admit", script_sha("settle.lua"): "settle"}
    settle_sha = script_sha("settle.lua").encode()
    harness.http_get_text(stack.upstream.url + "/_bench/arrivals")  # forget earlier arrivals
    conn = http.client.HTTPConnection(*host_port(stack.gateway.url), timeout=10)
    windows: list[tuple[float, float]] = []
    errors: Counter[str] = Counter()
    monitor = Monitor(stack.redis.url, settle_sha)
    try:
        for index in range(args.sizes.sequential):
            headers = {**JSON_HEADERS, "Authorization": f"Bearer seq-key-{index}"}
            sent = time.time()
            conn.request("POST", CHAT_PATH, body=CHAT_BODY, headers=headers)
            resp = conn.getresponse()
            resp.read()
            windows.append((sent, time.time()))
            if resp.status != 200:
                errors[f"HTTP {resp.status}"] += 1
            # the next request waits for this one's background settle (its last command), so
            # each command falls in the window of the request that caused it
            if not monitor.wait_for(index + 1, SETTLE_TIMEOUT_S):
                errors["no settle within 2 s"] += 1
            time.sleep(SEQUENTIAL_GAP_S)
    finally:
        commands = monitor.stop()
        conn.close()
    arrivals = json.loads(harness.http_get_text(stack.upstream.url + "/_bench/arrivals"))
    if len(arrivals) != len(windows):
        raise harness.BenchError(f"round trips: {len(windows)} requests sent, "
                                 f"{len(arrivals)} reached the upstream")
    starts = [sent for sent, _ in windows]
    stages: Counter[str] = Counter()
    per_request = [0] * len(windows)
    for cmd in commands:
        index = bisect.bisect_right(starts, cmd.at) - 1
        if index < 0:
            continue  # before the first request (the gateway's own start-up or probes)
        kind = shas.get(cmd.sha, "other script") if cmd.name == "EVALSHA" else cmd.name.lower()
        if cmd.at < arrivals[index]:
            stage = "before forwarding"
            per_request[index] += 1
        elif cmd.at <= windows[index][1]:
            stage = "before the client had the response"
        else:
            stage = "after the response"
        stages[f"{stage}: {kind}"] += 1
    n = len(windows)
    return {"requests": n, "errors": sum(errors.values()), "error_kinds": dict(errors),
            "request_path_per_request": sum(per_request) / n,
            "request_path_min": min(per_request), "request_path_max": max(per_request),
            "settle_per_request": sum(v for k, v in stages.items() if k.endswith(": settle")) / n,
            "after_upstream_per_request": sum(
                v for k, v in stages.items() if not k.startswith("before forwarding")) / n,
            "by_stage_and_kind": dict(stages)}


# -- 3. saturation -----------------------------------------------------------------------------
def wrk_version() -> str | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10, check=False)
    words = (out.stdout + out.stderr).split()
    return " ".join(words[:2]) if words else "wrk"


def run_wrk(url: str, args: argparse.Namespace, duration: float, body_file: Path,
            cpus: set[int] | None) -> Result:
    threads = args.wrk_threads
    argv = ["wrk", f"-t{threads}", f"-c{max(args.connections, threads)}",
            f"-d{max(1, round(duration))}s", "--timeout", "5s", "-s", str(WRK_SCRIPT),
            url + CHAT_PATH, "--", str(args.keys), str(threads), str(body_file)]
    done = subprocess.run(harness.pinned(argv, cpus), capture_output=True, text=True,
                          timeout=duration + 60, check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise harness.BenchError(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    raw: Result = json.loads(line.split(" ", 1)[1])
    seconds = raw["duration_us"] / 1e6
    errors = raw["errors"]
    failed = sum(errors.values())
    return {"requests": raw["requests"], "seconds": seconds,
            "throughput_rps": (raw["requests"] - errors["status"]) / seconds,
            "errors": failed, "error_kinds": {k: v for k, v in errors.items() if v},
            "latency_ms": {k: v / 1000 for k, v in raw["latency_us"].items()}}


def run_closed_loadgen(url: str, args: argparse.Namespace, duration: float,
                       cpus: set[int] | None) -> Result:
    """The fallback without wrk: loadgen's closed loop (its own CPU is ~3x wrk's)."""
    result = harness.run_loadgen({"mode": "closed", "url": url + CHAT_PATH, "body": CHAT_BODY,
                                  "headers": JSON_HEADERS, "duration": duration, "warmup": 0.0,
                                  "concurrency": args.connections, "api_keys": args.keys}, cpus)
    result["requests"] = result["issued_incl_warmup"]
    return result


def saturation(stack: Stack, args: argparse.Namespace, target: str, body_file: Path) -> Result:
    url = stack.gateway.url if target == "gateway" else stack.upstream.url
    sizes = args.sizes

    def drive(duration: float) -> Result:
        if args.wrk:
            return run_wrk(url, args, duration, body_file, stack.load_cpus)
        return run_closed_loadgen(url, args, duration, stack.load_cpus)

    drive(sizes.warmup)  # connections open, caches warm; not counted
    watch = CpuWatch(stack.servers)
    watch.start()
    result = drive(sizes.duration)
    cpu = watch.stop()
    served = max(1, result["requests"])
    result["cpu_us_per_request"] = {name: cpu[name] / served * 1e6
                                    for name in ("upstream", "gateway", "redis")}
    result["other_cores"] = cpu["other_cores"]
    return result


# -- 4./5. paced latency and time to first token ------------------------------------------------
def paced(stack: Stack, args: argparse.Namespace, target: str, stream: bool) -> Result:
    url = stack.gateway.url if target == "gateway" else stack.upstream.url
    spec = open_loop(args, url)
    if stream:
        spec.update(mode="stream", body=STREAM_BODY, rate=args.stream_rate)
    watch = CpuWatch(stack.servers)
    watch.start()
    result = harness.run_loadgen(spec, stack.load_cpus)
    cpu = watch.stop()
    served = max(1, result["issued_incl_warmup"])
    result["cpu_us_per_request"] = {name: cpu[name] / served * 1e6
                                    for name in ("upstream", "gateway", "redis")}
    result["other_cores"] = cpu["other_cores"]
    return result


# -- 6. in process -----------------------------------------------------------------------------
SSE_CASES = {"floor": "decoder + chain, no rule (floor)", "plain": "rate_shaping output_tokens",
             "watermark": "perturbation watermark"}


def sse_phase(args: argparse.Namespace) -> Result:
    by_label = {case.label: case for case in sse_cost.CASES}
    out: Result = {}
    for name, label in SSE_CASES.items():
        if label not in by_label:
            raise harness.BenchError(f"bench/sse_cost.py has no case {label!r}")
        median, best, events, _ = asyncio.run(sse_cost.in_process(by_label[label],
                                                                  args.sizes.sse_repeat))
        out[name] = {"case": label, "us_per_event_median": median, "us_per_event_best": best,
                     "events": events}
    return out


def fingerprint_phase(args: argparse.Namespace) -> Result:
    t_parts, t_fp, sampled = fingerprint_bench.cost(100_000, args.sizes.fp_repeat)
    return {"prompt_text_ms": t_parts * 1e3, "fingerprint_ms": t_fp * 1e3,
            "total_ms": (t_parts + t_fp) * 1e3, "sampled": sampled}


STORAGE_METRICS = ("distill_guard_storage_errors_total",
                   "distill_guard_storage_fallback_admits_total")


def storage_trouble(gateway: Service) -> dict[str, float]:
    """The gateway's own count of failed Redis calls and of admits decided locally instead,
    by metric and labels: above 0, Redis answered late (the gateway's timeout) or not at all,
    and the Redis figures are partly local."""
    totals: dict[str, float] = {}
    for line in harness.http_get_text(gateway.url + "/metrics").splitlines():
        series, _, value = line.rpartition(" ")
        if series.split("{", 1)[0] in STORAGE_METRICS and float(value):
            totals[series.removeprefix("distill_guard_")] = float(value)
    return totals


# -- running it all --------------------------------------------------------------------------------
def step(label: str, run: Callable[..., Result], *params: Any) -> Result:
    print(f"  {label} ...", end="", flush=True, file=sys.stderr)
    began = time.monotonic()
    result = run(*params)
    print(f" {time.monotonic() - began:.0f} s", flush=True, file=sys.stderr)
    return result


def run_all(stack: Stack, args: argparse.Namespace, log_dir: Path) -> Result:
    body_file = log_dir / "chat.json"
    body_file.write_text(CHAT_BODY)
    results: Result = {
        "memory": step("redis memory per identity", memory_phase, stack, args),
        "round_trips": step("redis round trips", round_trips_phase, stack, args),
        # before any load: trouble here would make the two Redis rows partly local
        "storage_trouble_redis_phases": storage_trouble(stack.gateway),
        "saturation": {}, "paced": {}, "stream": {},
    }
    for target in ("direct", "gateway"):
        results["saturation"][target] = step(f"saturation {target}", saturation, stack, args,
                                             target, body_file)
    for phase in ("paced", "stream"):
        for target in ("direct", "gateway"):
            results[phase][target] = step(f"{phase} {target}", paced, stack, args, target,
                                          phase == "stream")
    results["sse"] = step("sse cpu per event (in process)", sse_phase, args)
    results["fingerprint"] = step("fingerprint 100 KB", fingerprint_phase, args)
    results["storage_trouble"] = storage_trouble(stack.gateway)
    return results


# -- the table -----------------------------------------------------------------------------------
@dataclass
class Row:
    measure: str
    direct: str = ""
    gateway: str = ""
    versus: str = ""  # ratio or added
    budget: str = ""
    verdict: str = ""


def verdict(ok: bool, errors: int = 0) -> str:
    if errors:
        return "ERRORS"
    return "PASS" if ok else "MISS"


def num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def latency_rows(pair: dict[str, Result], key: str, label: str,
                 budgets: Sequence[tuple[str, float]]) -> list[Row]:
    errors = pair["direct"]["errors"] + pair["gateway"]["errors"]
    rows: list[Row] = []
    for pct, budget in budgets:
        direct, gateway = pair["direct"][key][pct], pair["gateway"][key][pct]
        added = gateway - direct if direct is not None and gateway is not None else None
        rows.append(Row(f"{label} {pct} ms" if not rows else f"  {pct} ms", num(direct),
                        num(gateway), "-" if added is None else f"{added:+,.2f} ms",
                        f"<= {budget:g} ms added",
                        verdict(added is not None and added <= budget, errors)))
    return rows


def table_rows(results: Result, args: argparse.Namespace) -> list[Row]:
    sat, mem, rt = results["saturation"], results["memory"], results["round_trips"]
    sat_errors = sat["direct"]["errors"] + sat["gateway"]["errors"]
    gw_rps, direct_rps = sat["gateway"]["throughput_rps"], sat["direct"]["throughput_rps"]
    gw_cpu = sat["gateway"]["cpu_us_per_request"]["gateway"]
    capacity = 1e6 / gw_cpu if gw_cpu else None
    sse, fp = results["sse"], results["fingerprint"]
    floor = sse["floor"]["us_per_event_median"]
    plain, marked = sse["plain"]["us_per_event_median"], sse["watermark"]["us_per_event_median"]
    rows = [
        Row("saturation, ~1 KB completion: req/s", num(direct_rps, 0), num(gw_rps, 0),
            f"{gw_rps / direct_rps:.2f}x" if direct_rps else "-", ">= 2,500 req/s",
            verdict(gw_rps >= 2500, sat_errors)),
        Row("  gateway CPU us/request", "", num(gw_cpu, 0)),
        Row("  implied capacity, 1e6 / CPU us", "", num(capacity, 0), "", ">= 2,500 req/s",
            verdict(capacity is not None and capacity >= 2500)),
        Row("  upstream CPU us/request", num(sat["direct"]["cpu_us_per_request"]["upstream"], 0),
            num(sat["gateway"]["cpu_us_per_request"]["upstream"], 0)),
        Row("  redis CPU us/request", "", num(sat["gateway"]["cpu_us_per_request"]["redis"], 0)),
        Row("  latency p50 ms (closed loop)", num(sat["direct"]["latency_ms"]["p50"]),
            num(sat["gateway"]["latency_ms"]["p50"])),
        *latency_rows(results["paced"], "latency_ms", f"paced {args.rate:g} req/s:",
                      [("p50", 1.0), ("p99", 4.0)]),
        Row("  load generator send lag p99 ms",
            num(results["paced"]["direct"]["send_lag_ms"]["p99"]),
            num(results["paced"]["gateway"]["send_lag_ms"]["p99"])),
        Row("  gateway CPU us/request", "",
            num(results["paced"]["gateway"]["cpu_us_per_request"]["gateway"], 0)),
        Row("redis round trips on the request path", "-",
            num(rt["request_path_per_request"]), "", "exactly 1",
            verdict(rt["request_path_min"] == rt["request_path_max"] == 1, rt["errors"])),
        Row("  settle calls/request (after response)", "", num(rt["settle_per_request"])),
        Row("  commands/request after upstream answered", "",
            num(rt["after_upstream_per_request"])),
        *latency_rows(results["stream"], "first_token_ms",
                      f"stream {args.stream_rate:g}/s: first token", [("p50", 1.0)]),
        Row("  first token p99 ms", num(results["stream"]["direct"]["first_token_ms"]["p99"]),
            num(results["stream"]["gateway"]["first_token_ms"]["p99"])),
        Row("  gateway CPU us/stream", "",
            num(results["stream"]["gateway"]["cpu_us_per_request"]["gateway"], 0)),
        Row("CPU per relayed SSE event, plain us", num(floor), num(plain),
            f"{plain - floor:+.2f} us", "<= 10 us", verdict(plain <= 10)),
        Row("  with the watermark us", num(floor), num(marked), f"{marked - floor:+.2f} us",
            "<= 25 us", verdict(marked <= 25)),
        Row("fingerprint a 100 KB prompt ms", "-", num(fp["total_ms"], 3), "", "<= 1 ms",
            verdict(fp["total_ms"] <= 1.0)),
        Row("redis memory per idle identity bytes", "-", num(mem["bytes_per_identity"], 0), "",
            "<= 2,048 B", verdict(mem["bytes_per_identity"] <= 2048, mem["errors"])),
        Row("  keys per identity", "", num(mem["keys_per_identity"])),
    ]
    return rows


def format_table(rows: list[Row]) -> str:
    header = Row("measure", "direct", "gateway", "ratio/added", "budget", "verdict")
    cells = [[r.measure, r.direct, r.gateway, r.versus, r.budget, r.verdict]
             for r in [header, *rows]]
    widths = [max(len(c[i]) for c in cells) for i in range(6)]

    def line(c: list[str]) -> str:
        return "  ".join([c[0].ljust(widths[0]), *(v.rjust(w) for v, w in
                                                   zip(c[1:4], widths[1:4], strict=True)),
                          c[4].ljust(widths[4]), c[5]]).rstrip()

    return "\n".join([line(cells[0]), "-" * (sum(widths) + 10), *map(line, cells[1:])])


def describe(args: argparse.Namespace, stack: Stack, wrk: str | None) -> list[str]:
    s = args.sizes
    pin = (f"gateway on CPU {min(stack.gateway_cpus)}; wrk, load generator, upstream, redis "
           f"and this script on CPU {min(stack.load_cpus)}"
           if stack.gateway_cpus and stack.load_cpus else "none (--no-pin or one core)")
    sat_load = (f"{wrk}, {args.wrk_threads} thread(s), {args.connections} connections "
                "(bench/wrk/chat.lua)" if wrk else
                f"bench/loadgen.py closed loop, {args.connections} workers (wrk not installed)")
    return [
        f"date:      {datetime.now(UTC):%Y-%m-%d %H:%M UTC}",
        f"machine:   {args.machine}",
        f"command:   {shlex.join(sys.orig_argv)}",
        f"redis:     {harness.redis_version(args.redis)} (throwaway: --save '' "
        "--appendonly no)",
        f"policy:    {args.policy}",
        "gateway:   1 worker (distill-guard serve --workers 1), counters in that redis, "
        "access log off",
        "upstream:  bench/fixed_upstream.py (asyncio + uvloop + httptools): 1,024-byte "
        f"completion; 100-word stream, one event per write, {args.event_delay * 1000:g} ms apart",
        f"pinning:   {pin}",
        f"load:      saturation: {sat_load}, {args.keys:,} keys in turn, "
        f"{s.warmup:g} s warm-up + {s.duration:g} s per target",
        f"           paced, stream: bench/loadgen.py open loop (aiohttp; latency from each "
        f"request's scheduled start), {s.warmup:g} s warm-up + {s.duration:g} s per target",
        f"           round trips: {s.sequential} sequential requests (http.client), "
        "Redis MONITOR on",
        f"           memory: bench/loadgen.py open loop, {s.identities:,} new keys at "
        f"{args.identity_rate:g}/s, one request each",
        f"           SSE CPU (bench/sse_cost.py, {s.sse_repeat} streams) and fingerprint "
        f"(bench/fingerprint.py, best of {s.fp_repeat}): in process",
    ]


NOTES = """\
notes: direct = straight to the same upstream in the same run. 'gateway CPU us/request' is the
  worker's /proc CPU time over the measured wrk run divided by the requests it answered; its
  inverse is what one worker owning a core can serve. Round trips: commands Redis received
  between the client sending a request and that request reaching the upstream (MONITOR clock
  vs the upstream's); 'after upstream answered' are the background settle and cross-identity
  counters (Chain.complete). SSE 'direct' is the decoder-only floor (in process), the
  budgets apply to the gateway figure. Memory: (used_memory - client buffers) delta / keys,
  after {wait:g} s idle and a SCAN (expired buckets gone). Figures on a shared machine are smoke
  tests: rerun on a quiet one."""


def had_errors(results: Result) -> bool:
    """Whether any request of any phase failed (non-2xx, socket error, truncated stream)."""
    return any(r["errors"] for phase in ("saturation", "paced", "stream")
               for r in results[phase].values()) or any(
        results[phase]["errors"] for phase in ("memory", "round_trips"))


def flags(results: Result) -> list[str]:
    out = []
    for phase in ("saturation", "paced", "stream"):
        for target, r in results[phase].items():
            if r["errors"]:
                out.append(f"!! {phase} {target}: {r['errors']} errors {r['error_kinds']}")
    for phase in ("memory", "round_trips"):
        if results[phase]["errors"]:
            out.append(f"!! {phase}: {results[phase]['errors']} errors "
                       f"{results[phase]['error_kinds']}")
    for key, when in (("storage_trouble_redis_phases", "in the memory and round-trip phases"),
                      ("storage_trouble", "over the whole run")):
        if results[key]:
            listed = ", ".join(f"{k} {v:g}" for k, v in results[key].items())
            out.append(f"!! the gateway counted Redis trouble {when} ({listed}): Redis answered "
                       "late or not at all, so some counters were local")
    busiest = max(r["other_cores"] for phase in ("saturation", "paced", "stream")
                  for r in results[phase].values())
    if busiest > 0.1:
        out.append(f"!! other processes used up to {busiest:.2f} cores during a load phase: "
                   "the numbers are disturbed; rerun on a quiet machine")
    return out


def report(args: argparse.Namespace, stack: Stack, results: Result, wrk: str | None) -> str:
    return "\n".join([
        "distill-guard performance suite (issue 8): one gateway worker vs direct, one run",
        *describe(args, stack, wrk), "", format_table(table_rows(results, args)), "",
        *flags(results), NOTES.format(wait=SETTLE_WAIT_S)])


# -- main ----------------------------------------------------------------------------------------
def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that stops the servers


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.machine = harness.machine_line()  # before pinning narrows this process's CPUs
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    wrk = wrk_version()
    args.wrk = wrk is not None
    if wrk is None:
        print(WRK_INSTALL, file=sys.stderr)
    started: list[Service] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dg-suite-") as log_dir:
        try:
            print("starting servers ...", file=sys.stderr, flush=True)
            stack = start_stack(args, Path(log_dir), started)
            results = run_all(stack, args, Path(log_dir))
        except (harness.BenchError, subprocess.TimeoutExpired, redis.RedisError) as exc:
            print(f"suite failed: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("\ninterrupted; stopping the servers", file=sys.stderr)
            return 130
        finally:
            for service in reversed(started):
                service.stop()
    print(report(args, stack, results, wrk))
    print(f"(whole run: {time.monotonic() - began:.0f} s)")
    if args.json is not None:
        document = {"machine": args.machine, "command": shlex.join(sys.orig_argv),
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "redis": harness.redis_version(args.redis), "wrk": wrk,
                    "settings": {k: str(v) for k, v in vars(args).items()},
                    "rows": [vars(r) for r in table_rows(results, args)],
                    "results": results}
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 1 if had_errors(results) else 0


if __name__ == "__main__":
    sys.exit(main())
