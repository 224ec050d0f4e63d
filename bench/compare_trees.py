"""Before/after: gateway CPU per request of two source trees, interleaved in one run.

    git worktree add ../base <commit>
    .venv/bin/python bench/compare_trees.py ../base [--policy policies/default.yaml]
        [--rounds 3] [--duration 8]

Each round starts a throwaway redis-server and the fast demo upstream, then one gateway
worker from each tree in turn (the other tree's `gateway` package first on PYTHONPATH,
the same venv), and drives it with bench/loadgen.py's closed loop (32 workers, 10,000
keys). Trees alternate within every round, so a drift of the machine touches both alike.
Prints per run and the medians: req/s, gateway and Redis CPU µs per request. Unpinned:
compare the two trees, not the absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import harness
import overhead

CLOSED = {"mode": "closed", "concurrency": 32, "warmup": 2.0, "api_keys": 10_000}


def one_run(tree: str | None, policy: str, duration: float, log_dir: Path) -> dict[str, float]:
    started: list[harness.Service] = []
    try:
        redis = harness.start_redis(log_dir)
        started.append(redis)
        upstream = harness.start_demo_upstream(log_dir)
        started.append(upstream)
        saved = os.environ.pop("PYTHONPATH", None)
        if tree is not None:
            os.environ["PYTHONPATH"] = tree  # the gateway process imports this tree's package
        try:
            gateway = harness.start_gateway(upstream.url, redis.url, policy, log_dir,
                                            access_log=False)
        finally:
            os.environ.pop("PYTHONPATH", None)
            if saved is not None:
                os.environ["PYTHONPATH"] = saved
        started.append(gateway)
        body = json.dumps({"model": "demo-model", "messages": overhead.PROMPT})
        spec = {**CLOSED, "url": gateway.url + overhead.CHAT_PATH, "body": body,
                "headers": overhead.HEADERS, "duration": duration}
        gateway_cpu, redis_cpu = gateway.cpu_seconds(), redis.cpu_seconds()
        result = overhead.run_loadgen(spec)
        time.sleep(0.5)  # the complete stage of the last requests
        sent = result["issued_incl_warmup"]
        return {"rps": result["throughput_rps"], "errors": result["errors"],
                "gateway_us": (gateway.cpu_seconds() - gateway_cpu) / sent * 1e6,
                "redis_us": (redis.cpu_seconds() - redis_cpu) / sent * 1e6}
    finally:
        for service in reversed(started):
            service.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("base", help="the other source tree (a git worktree)")
    parser.add_argument("--policy", default="policies/default.yaml")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args()
    trees = {"base": str(Path(args.base).resolve()), "this tree": None}
    policy = str((harness.REPO / args.policy).resolve())
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="dg-compare-") as log_dir:
        for _ in range(args.rounds):
            for name, tree in trees.items():
                run = one_run(tree, policy, args.duration, Path(log_dir))
                runs[name].append(run)
                print(f"{name:>10}: {run['rps']:7.0f} req/s, gateway {run['gateway_us']:6.0f} "
                      f"us/req, redis {run['redis_us']:5.0f} us/req, {run['errors']:.0f} errors",
                      flush=True)
    for name, done in runs.items():
        print(f"{name:>10} median: "
              f"{statistics.median(r['rps'] for r in done):7.0f} req/s, gateway "
              f"{statistics.median(r['gateway_us'] for r in done):6.0f} us/req "
              f"({min(r['gateway_us'] for r in done):.0f}-"
              f"{max(r['gateway_us'] for r in done):.0f}), redis "
              f"{statistics.median(r['redis_us'] for r in done):5.0f} us/req")
    return 0


if __name__ == "__main__":
    sys.exit(main())
