"""Gateway overhead: the same requests direct to the upstream and through the gateway, one run.

    .venv/bin/python bench/overhead.py [--duration 10] [--concurrency 32] [--rate 500]
        [--stream-rate 100] [--keys 10000] [--word-delay 0] [--policy policies/default.yaml]
        [--redis memory|redis-server|URL] [--access-log] [--json out.json]

Starts the fast demo upstream and one gateway worker in front of it (and, with
`--redis redis-server`, a throwaway Redis), each in its own process group on a free loopback
port, and drives both with the load generator (bench/loadgen.py, its own process):

1. saturation: closed loop, `--concurrency` workers, ~1 KB non-streamed chat completions;
2. paced latency: open loop at `--rate` req/s, latency from each request's scheduled start;
3. streaming: open loop at `--stream-rate` req/s, `"stream": true`, time to first byte/token.

Each phase warms up for 2 s and then measures for `--duration` s, direct first, then through
the gateway. Prints one table; exits 1 when any phase had errors.
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import harness
from harness import Service

LOADGEN = Path(__file__).resolve().parent / "loadgen.py"
WARMUP_S = 2.0
CHAT_PATH = "/v1/chat/completions"
HEADERS = {"Content-Type": "application/json"}
PROMPT = [{"role": "user", "content": "Tell me about rivers"}]
OVERHEAD_METRIC = "distill_guard_overhead_seconds"

Result = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Phase:
    name: str  # saturation | paced | stream
    mode: str  # loadgen mode
    stream: bool


PHASES = (
    Phase("saturation", "closed", stream=False),
    Phase("paced", "open", stream=False),
    Phase("stream", "stream", stream=True),
)
TARGETS = ("direct", "gateway")


@dataclass
class Stack:
    upstream: Service
    gateway: Service
    redis: Service | None
    redis_url: str


# -- command line --------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Gateway vs direct-to-upstream overhead, measured in one run.")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds measured per phase and target, after 2 s of warm-up")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="closed-loop workers for the saturation phase")
    parser.add_argument("--rate", type=float, default=500.0,
                        help="requests/s of the paced (open-loop) latency phase")
    parser.add_argument("--stream-rate", type=float, default=100.0,
                        help="streamed requests/s of the time-to-first-token phase")
    parser.add_argument("--keys", type=int, default=10_000,
                        help="distinct API keys the requests take in turn, so that per-key "
                             "limits of the policy are exercised but not hit")
    parser.add_argument("--word-delay", type=float, default=0.0,
                        help="seconds between the demo upstream's streamed words (default 0: "
                             "back to back, the fast mode as is)")
    parser.add_argument("--policy", default="policies/default.yaml",
                        help="policy file the gateway enforces")
    parser.add_argument("--redis", default="memory",
                        help="`memory`, `redis-server` (start a throwaway one) or a redis:// URL")
    parser.add_argument("--access-log", action="store_true",
                        help="run the gateway with its JSON access log on (log level info, "
                             "to a file); off by default")
    parser.add_argument("--json", type=Path, help="also write all results to this JSON file")
    args = parser.parse_args(argv)
    args.policy = str(_policy_path(args.policy))
    if min(args.duration, args.concurrency, args.rate, args.stream_rate, args.keys) <= 0:
        parser.error("--duration, --concurrency, --rate, --stream-rate, --keys must be positive")
    if args.word_delay < 0:
        parser.error("--word-delay must be >= 0")
    return args


def _policy_path(given: str) -> Path:
    """The policy file as an absolute path: as given, else relative to the repository."""
    path = Path(given)
    return path.resolve() if path.exists() else (harness.REPO / path).resolve()


# -- servers -------------------------------------------------------------------------------------
def start_stack(args: argparse.Namespace, log_dir: Path, started: list[Service]) -> Stack:
    """Start the servers; each is appended to `started` at once so the caller can stop it."""
    redis: Service | None = None
    redis_url = args.redis
    if args.redis == "redis-server":
        redis = harness.start_redis(log_dir)
        started.append(redis)
        redis_url = redis.url
    upstream = harness.start_demo_upstream(log_dir, args.word_delay)
    started.append(upstream)
    gateway = harness.start_gateway(upstream.url, redis_url, args.policy, log_dir,
                                    access_log=args.access_log)
    started.append(gateway)
    return Stack(upstream, gateway, redis, redis_url)


def stop_all(services: list[Service]) -> None:
    for service in reversed(services):
        service.stop()


# -- measuring -----------------------------------------------------------------------------------
def phase_spec(args: argparse.Namespace, phase: Phase, base_url: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "demo-model", "messages": PROMPT}
    if phase.stream:
        body["stream"] = True
    return {
        "mode": phase.mode, "url": base_url + CHAT_PATH, "body": json.dumps(body),
        "headers": HEADERS, "duration": args.duration, "warmup": WARMUP_S,
        "concurrency": args.concurrency, "api_keys": args.keys,
        "rate": args.stream_rate if phase.stream else args.rate,
    }


def run_loadgen(spec: dict[str, Any]) -> Result:
    timeout = spec["warmup"] + spec["duration"] + 60
    done = subprocess.run([sys.executable, str(LOADGEN), json.dumps(spec)], capture_output=True,
                          text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise harness.BenchError(f"load generator failed ({done.returncode}):\n{done.stderr}")
    result: Result = json.loads(done.stdout)
    return result


def overhead_totals(gateway: Service) -> tuple[float, float]:
    """(sum of seconds, count) of the gateway's own overhead histogram, all routes."""
    total = count = 0.0
    for line in harness.http_get_text(gateway.url + "/metrics").splitlines():
        if line.startswith(OVERHEAD_METRIC + "_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith(OVERHEAD_METRIC + "_count"):
            count += float(line.rsplit(" ", 1)[1])
    return total, count


def _own_and_children_cpu() -> float:
    """CPU seconds of this process and of its children already waited for (load generators)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(stack: Stack, args: argparse.Namespace, phase: Phase, target: str) -> Result:
    """One phase against one target, with CPU accounting and the gateway's own view."""
    base = stack.gateway.url if target == "gateway" else stack.upstream.url
    servers = [s for s in (stack.upstream, stack.gateway, stack.redis) if s is not None]
    cpu_before = {s.name: s.cpu_seconds() for s in servers}
    ours_before, machine_before = _own_and_children_cpu(), harness.machine_cpu_seconds()
    metrics_before = overhead_totals(stack.gateway)
    wall = time.monotonic()
    result = run_loadgen(phase_spec(args, phase, base))
    wall = time.monotonic() - wall
    metrics_after = overhead_totals(stack.gateway)
    server_cpu = {s.name: s.cpu_seconds() - cpu_before[s.name] for s in servers}
    ours = _own_and_children_cpu() - ours_before + sum(server_cpu.values())
    issued = max(1, result["issued_incl_warmup"])
    result["server_cpu_us_per_request"] = {
        name: round(cpu / issued * 1e6, 1) for name, cpu in server_cpu.items()}
    result["client_cpu_us_per_request"] = round(result["client_cpu_s"] / issued * 1e6, 1)
    other = harness.machine_cpu_seconds() - machine_before - ours
    result["other_processes_cores"] = round(max(0.0, other) / wall, 3)
    seen = metrics_after[1] - metrics_before[1]
    result["gateway_reported_overhead_ms_mean"] = (
        round((metrics_after[0] - metrics_before[0]) / seen * 1000, 3) if seen else None)
    return result


def run_all(stack: Stack, args: argparse.Namespace) -> dict[str, dict[str, Result]]:
    results: dict[str, dict[str, Result]] = {}
    for phase in PHASES:
        results[phase.name] = {}
        for target in TARGETS:
            print(f"  {phase.name:<10} {target:<8} ...", end="", flush=True, file=sys.stderr)
            result = measure(stack, args, phase, target)
            results[phase.name][target] = result
            print(f" {result['ok']} ok, {result['errors']} errors", flush=True, file=sys.stderr)
    return results


# -- the table -----------------------------------------------------------------------------------
Getter = Callable[[Result], float | None]


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _delta(direct: float | None, gateway: float | None, digits: int) -> str:
    if direct is None or gateway is None:
        return "-"
    return f"{gateway - direct:+,.{digits}f}"


def _ratio(direct: float | None, gateway: float | None) -> str:
    if not direct or gateway is None:
        return "-"
    return f"{gateway / direct:.2f}x"


def _errors(pair: dict[str, Result]) -> str:
    direct, gateway = pair["direct"]["errors"], pair["gateway"]["errors"]
    flag = "  !! ERRORS" if direct or gateway else ""
    return f"{direct}/{gateway}{flag}"


def _row(label: str, pair: dict[str, Result], get: Getter, digits: int,
         *, ratio: bool = False, errors: bool = False) -> list[str]:
    direct, gateway = get(pair["direct"]), get(pair["gateway"])
    return [label, _num(direct, digits), _num(gateway, digits), _delta(direct, gateway, digits),
            _ratio(direct, gateway) if ratio else "", _errors(pair) if errors else ""]


def _ms(key: str, pct: str) -> Getter:
    return lambda r: r[key][pct]


def _cpu(name: str) -> Getter:
    return lambda r: r["server_cpu_us_per_request"].get(name)


def _other(result: Result) -> float | None:
    value: float | None = result["other_processes_cores"]
    return value


def table_rows(results: dict[str, dict[str, Result]], args: argparse.Namespace) -> list[list[str]]:
    sat, paced, stream = results["saturation"], results["paced"], results["stream"]
    rate, srate = f"{args.rate:g}", f"{args.stream_rate:g}"
    rows = [
        _row(f"saturation, {args.concurrency} workers: req/s", sat,
             lambda r: r["throughput_rps"], 1, ratio=True, errors=True),
        _row("  latency p50 ms", sat, _ms("latency_ms", "p50"), 2),
        _row("  upstream CPU us/req", sat, _cpu("upstream"), 0),
        _row("  gateway CPU us/req", sat, _cpu("gateway"), 0),
        _row("  load generator CPU us/req", sat, lambda r: r["client_cpu_us_per_request"], 0),
        _row("  other processes' CPU, cores", sat, _other, 2),
        _row(f"paced {rate} req/s (open loop): p50 ms", paced, _ms("latency_ms", "p50"), 2,
             errors=True),
        _row("  p90 ms", paced, _ms("latency_ms", "p90"), 2),
        _row("  p99 ms", paced, _ms("latency_ms", "p99"), 2),
        _row("  achieved req/s", paced, lambda r: r["throughput_rps"], 1),
        _row("  load generator send lag p99 ms", paced, _ms("send_lag_ms", "p99"), 2),
        _row("  gateway's own overhead (mean) ms", paced,
             lambda r: r["gateway_reported_overhead_ms_mean"], 3),
        _row("  other processes' CPU, cores", paced, _other, 2),
    ]
    if "redis" in sat["gateway"]["server_cpu_us_per_request"]:  # a redis-server we started
        rows.insert(4, _row("  redis CPU us/req", sat, _cpu("redis"), 0))
    rows += [
        _row(f"stream {srate} req/s: first byte p50 ms", stream, _ms("first_byte_ms", "p50"), 2,
             errors=True),
        _row("  first token p50 ms", stream, _ms("first_token_ms", "p50"), 2),
        _row("  first token p99 ms", stream, _ms("first_token_ms", "p99"), 2),
        _row("  whole stream p50 ms", stream, _ms("latency_ms", "p50"), 2),
        _row("  other processes' CPU, cores", stream, _other, 2),
    ]
    return rows


def format_table(rows: list[list[str]]) -> str:
    header = ["", "direct", "gateway", "gw - direct", "gw/direct", "errors d/g"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]

    def line(cells: list[str]) -> str:
        left = cells[0].ljust(widths[0])
        right = "  ".join(c.rjust(w) for c, w in zip(cells[1:-1], widths[1:], strict=True))
        return f"{left}  {right}  {cells[-1]}".rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1) + 2 + len(header[-1]))
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def describe(args: argparse.Namespace, stack: Stack) -> list[str]:
    access = ("ON (DISTILL_GUARD_ACCESS_LOG=true, log level info, JSON lines to a file)"
              if args.access_log else
              "off (DISTILL_GUARD_ACCESS_LOG=false, log level warning)")
    pacing = (f"{args.word_delay * 1000:g} ms between words" if args.word_delay
              else "events back to back")
    redis = args.redis if args.redis != "redis-server" else f"redis-server ({stack.redis_url})"
    return [
        f"date:     {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"machine:  {harness.machine_line()}",
        f"command:  {shlex.join(sys.orig_argv)}",
        "upstream: demo model, fast mode (uvicorn + uvloop + httptools, 1 process); "
        f"1,024-byte chat completion; ~22 KB / ~100-event stream, {pacing}",
        f"gateway:  1 worker, policy {args.policy}, counters {redis}; access log {access}",
        f"load:     aiohttp client in its own process, {args.keys:,} API keys in turn; "
        f"{WARMUP_S:g} s warm-up + {args.duration:g} s per phase and target; direct first, "
        "then via the gateway",
    ]


BUSY_MACHINE_CORES = 0.1  # other processes' CPU above which a run is flagged as disturbed
SEND_LAG_FLAG_MS = 2.0  # paced requests sent this late (p99) mean the client itself stalled

NOTES = [
    "note: the load generator, the upstream and the gateway share this machine's {cores} cores,",
    "      so absolute numbers are a lower bound; the ratios and differences are what matter.",
    "      Saturation via the gateway has one more process competing for the same cores.",
    "      Latency counts from each request's scheduled start (open loop: no coordinated",
    "      omission). 'gateway's own overhead' is the gateway's /metrics histogram",
    "      (distill_guard_overhead_seconds) over the phase including its warm-up.",
    "      'other processes' CPU' is the machine's CPU time (/proc/stat) minus that of the",
    "      bench's own processes, per second of the phase: ~0 on a quiet machine.",
]


def report(args: argparse.Namespace, stack: Stack, results: dict[str, dict[str, Result]]) -> str:
    notes = [n.format(cores=harness.usable_cores()) for n in NOTES]
    flagged = [f"!! {name} {target}: {r['errors']} errors {r['error_kinds']}"
               for name, pair in results.items() for target, r in pair.items() if r["errors"]]
    for target, r in results["paced"].items():
        lag = r["send_lag_ms"]["p99"] or 0.0
        if lag > SEND_LAG_FLAG_MS:
            flagged.append(f"!! paced {target}: the load generator fell behind its schedule "
                           f"(send lag p99 {lag:.1f} ms); that phase's latencies include it")
    busiest = max(r["other_processes_cores"] for pair in results.values() for r in pair.values())
    if busiest > BUSY_MACHINE_CORES:
        flagged.append(f"!! other processes used up to {busiest:.2f} cores during a phase: "
                       "the numbers may be disturbed; rerun on a quiet machine")
    return "\n".join(["distill-guard overhead: gateway vs direct to the same upstream, one run",
                      *describe(args, stack), "", format_table(table_rows(results, args)), "",
                      *flagged, *notes])


def write_json(path: Path, args: argparse.Namespace, stack: Stack,
               results: dict[str, dict[str, Result]]) -> None:
    document = {
        "machine": {"cores": harness.usable_cores(), "cpu": harness.cpu_model(),
                    "summary": harness.machine_line()},
        "command": shlex.join(sys.orig_argv),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {**{k: str(v) for k, v in vars(args).items()}, "redis_url": stack.redis_url,
                     "warmup_s": WARMUP_S},
        "results": results,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


# -- main ----------------------------------------------------------------------------------------
def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally that stops the servers


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started: list[Service] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dg-bench-") as log_dir:
        try:
            print("starting servers ...", file=sys.stderr, flush=True)
            stack = start_stack(args, Path(log_dir), started)
            results = run_all(stack, args)
        except harness.BenchError as exc:
            print(f"overhead bench failed: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("\ninterrupted; stopping the servers", file=sys.stderr)
            return 130
        finally:
            stop_all(started)
    print(report(args, stack, results))
    print(f"(whole run: {time.monotonic() - began:.0f} s)")
    if args.json is not None:
        write_json(args.json, args, stack, results)
    failed = any(r["errors"] for pair in results.values() for r in pair.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
