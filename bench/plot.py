"""Paced latency vs offered load, direct and through the gateway (and any extra target): a PNG.

    .venv/bin/python bench/plot.py [--rates 100,250,500,1000,1500,2000] [--duration 4]
        [--warmup 1] [--policy policies/default.yaml] [--redis redis-server] [--no-pin]
        [--litellm] [--extra NAME=URL ...] [--out docs/img/latency-vs-load.png] [--json F]

Starts the same stack as bench/suite.py (fixed upstream, throwaway Redis, one gateway worker,
pinned the same way) and, for every rate, runs bench/loadgen.py's open loop against each
target in turn: latency counts from each request's scheduled start, so a target that cannot
keep up shows its queue instead of hiding it. Draws p50 and p99 against the offered rate, one
line per target; a hollow marker is a point where the target fell behind (achieved < 95% of
offered) or answered with errors. Once a target has fallen behind, its higher rates are
skipped (they would only time out).

More targets: `--extra NAME=URL` (a base URL serving /v1/chat/completions, driven with the same
rotating `Bearer bench-key-NNNN` keys), or, from Python, a `TargetFactory` passed to `run()`:
it gets the running stack once it is up (e.g. to start a LiteLLM proxy in front of
`stack.upstream.url`), appends any server it starts to `started` so it is stopped at the end,
and returns a `Target` (its own headers, model name, and keys: `api_keys=1,
key_prefix="sk-bench"` sends `Bearer sk-bench-0` on every request).
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness
import suite
from harness import Service

DEFAULT_RATES = (100, 250, 500, 1000, 1500, 2000)
DEFAULT_OUT = harness.REPO / "docs" / "img" / "latency-vs-load.png"
BEHIND = 0.95  # achieved / offered below this: the target did not keep up


@dataclass(frozen=True)
class Target:
    name: str
    base_url: str  # the load goes to base_url + /v1/chat/completions
    headers: dict[str, str] = field(default_factory=dict)
    model: str = "bench-model"
    api_keys: int = 10_000  # loadgen sends `Authorization: Bearer <key_prefix>-NNNN` in turn
    key_prefix: str = "bench-key"


TargetFactory = Callable[[suite.Stack, Path, list[Service]], Target]
Point = dict[str, Any]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rates", default=",".join(map(str, DEFAULT_RATES)),
                        help="offered loads, req/s, comma-separated")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds measured per point")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each point")
    parser.add_argument("--policy", default="policies/default.yaml")
    parser.add_argument("--redis", default="redis-server", help="redis-server executable")
    parser.add_argument("--keys", type=int, default=10_000, help="API keys used in turn")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=URL",
                        help="another target (base URL), e.g. litellm=http://127.0.0.1:4000")
    parser.add_argument("--litellm", action="store_true",
                        help="add LiteLLM proxy (bench/litellm_compare.py: its own venv, "
                             "same upstream, per-key limits in the same Redis)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the PNG to write")
    parser.add_argument("--json", type=Path, help="also write the points to this JSON file")
    args = parser.parse_args(argv)
    try:
        args.rate_list = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        parser.error("--rates: numbers separated by commas")
    if not args.rate_list or min(args.rate_list) <= 0 or args.duration <= 0 or args.warmup < 0:
        parser.error("--rates and --duration must be positive, --warmup >= 0")
    for extra in args.extra:
        name, _, url = extra.partition("=")
        if not name or not url.startswith(("http://", "https://")):
            parser.error(f"--extra {extra!r}: expected NAME=http://HOST:PORT")
    args.policy = str(suite.policy_path(args.policy))
    args.event_delay = 0.0  # the stack's upstream: only non-streamed requests are sent here
    return args


def extra_factory(spec: str, keys: int) -> TargetFactory:
    name, url = spec.split("=", 1)
    return lambda stack, log_dir, started: Target(name, url.rstrip("/"), api_keys=keys)


# -- measuring -------------------------------------------------------------------------------------
def point(target: Target, rate: float, args: argparse.Namespace,
          cpus: set[int] | None) -> Point:
    body = json.dumps({"model": target.model, "messages": suite.PROMPT})
    spec = {"mode": "open", "url": target.base_url + suite.CHAT_PATH, "body": body,
            "headers": {**suite.JSON_HEADERS, **target.headers}, "duration": args.duration,
            "warmup": args.warmup, "rate": rate, "api_keys": target.api_keys,
            "key_prefix": target.key_prefix}
    result = harness.run_loadgen(spec, cpus)
    latency = result["latency_ms"]
    return {"offered": rate, "achieved": result["throughput_rps"], "p50": latency["p50"],
            "p90": latency["p90"], "p99": latency["p99"], "errors": result["errors"],
            "error_kinds": result["error_kinds"], "send_lag_p99": result["send_lag_ms"]["p99"]}


def behind(p: Point) -> bool:
    return bool(p["errors"]) or p["achieved"] < BEHIND * p["offered"] or p["p50"] is None


def sweep(targets: Sequence[Target], args: argparse.Namespace,
          cpus: set[int] | None) -> dict[str, list[Point]]:
    """Rates in the outer loop, so a drift of the machine touches every target alike."""
    points: dict[str, list[Point]] = {t.name: [] for t in targets}
    for rate in args.rate_list:
        for target in targets:
            done = points[target.name]
            if done and behind(done[-1]):
                continue  # fell behind at a lower rate already
            print(f"  {target.name:<10} {rate:>6g} req/s ...", end="", flush=True,
                  file=sys.stderr)
            done.append(point(target, rate, args, cpus))
            p = done[-1]
            print(f" p50 {p['p50']} ms, p99 {p['p99']} ms, {p['errors']} errors",
                  file=sys.stderr, flush=True)
    return points


# -- drawing ---------------------------------------------------------------------------------------
def draw(points: dict[str, list[Point]], out: Path, subtitle: str) -> None:
    import matplotlib  # the bench extra; imported here so --help works without it

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharex=True)
    for ax, pct in zip(axes, ("p50", "p99"), strict=True):
        for name, series in points.items():
            shown = [p for p in series if p[pct] is not None]
            (line,) = ax.plot([p["offered"] for p in shown], [p[pct] for p in shown],
                              marker="o", label=name)
            late = [p for p in shown if behind(p)]
            ax.plot([p["offered"] for p in late], [p[pct] for p in late], linestyle="none",
                    marker="o", markersize=9, markerfacecolor="white",
                    markeredgecolor=line.get_color())
        ax.set_yscale("log")
        ax.set_title(f"{pct} latency")
        ax.set_xlabel("offered load, req/s (open loop)")
        ax.set_ylabel("ms from scheduled start")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("distill-guard: latency vs offered load, ~1 KB chat completions")
    fig.text(0.5, 0.01, subtitle, ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


# -- main ----------------------------------------------------------------------------------------
def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def litellm_target(stack: suite.Stack, log_dir: Path, started: list[Service]) -> Target:
    """LiteLLM in front of the stack's upstream, on the gateway's core when pinned (each
    proxy owns that core while it is measured; they are measured one after the other)."""
    import litellm_compare

    service = litellm_compare.start_litellm(stack.upstream.url, stack.redis.url, log_dir)
    started.append(service)
    if stack.gateway_cpus:
        harness.pin(service, stack.gateway_cpus)
    return Target("litellm", service.url, dict(litellm_compare.REQUEST_HEADERS),
                  model=litellm_compare.LITELLM_MODEL)


def run(args: argparse.Namespace, factories: Sequence[TargetFactory] = ()) -> int:
    machine = harness.machine_line()  # before pinning narrows this process's CPUs
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started: list[Service] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dg-plot-") as log_dir:
        try:
            print("starting servers ...", file=sys.stderr, flush=True)
            stack = suite.start_stack(args, Path(log_dir), started)
            targets = [
                Target("direct", stack.upstream.url, api_keys=args.keys),
                Target("gateway", stack.gateway.url, api_keys=args.keys),
                *(make(stack, Path(log_dir), started) for make in
                  [*factories, *(extra_factory(e, args.keys) for e in args.extra)]),
            ]
            points = sweep(targets, args, stack.load_cpus)
        except (harness.BenchError, OSError) as exc:
            print(f"plot failed: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("\ninterrupted; stopping the servers", file=sys.stderr)
            return 130
        finally:
            for service in reversed(started):
                service.stop()
    pin = "gateway pinned to its own core" if stack.gateway_cpus else "no pinning"
    subtitle = (f"{machine}; {datetime.now(UTC):%Y-%m-%d}; 1 gateway worker, "
                f"{Path(args.policy).name}, Redis counters; {pin}; "
                f"{args.warmup:g} s + {args.duration:g} s per point")
    draw(points, args.out, subtitle)
    print(f"wrote {args.out} ({time.monotonic() - began:.0f} s)")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "machine": machine, "command": shlex.join(sys.orig_argv), "subtitle": subtitle,
            "date": datetime.now(UTC).isoformat(timespec="seconds"), "points": points},
            indent=2) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run(args, [litellm_target] if args.litellm else [])


if __name__ == "__main__":
    sys.exit(main())
