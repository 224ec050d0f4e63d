"""distill-guard vs LiteLLM proxy, in front of the same upstream, in one run.

    .venv/bin/python bench/litellm_compare.py [--duration 10] [--concurrency 32]
        [--rates 100,250,500] [--keys 10000] [--quick] [--json out.json]

LiteLLM is installed, pinned, into its own virtualenv (bench/.venvs/litellm, gitignored) on
first use. The run starts one redis-server, the upstream (bench/fixed_upstream.py, else the
demo model), one gateway worker (`distill-guard serve`, policies/default.yaml, counters in
that Redis) and one LiteLLM proxy worker (`litellm --config … --num_workers 1`), then:

1. checks LiteLLM's limit is real: a key with a 5 rpm limit gets 429 from its 6th request
   on, another key is still served, and the counters are in Redis;
2. saturation: closed loop, `--concurrency` workers, direct / gateway / LiteLLM;
3. paced latency at each of `--rates` req/s (open loop), p50/p99, same three targets;

with the CPU µs per request of each proxy's process tree, of the upstream and of Redis, and
Redis commands per request. Each phase: 2 s warm-up + `--duration` s.

The equivalent limit. The gateway's default policy limits each API key (its identity id, a
keyed hash) to 600 requests/min as a token bucket (burst 600), 2,000,000 total tokens/hour and
64 requests in flight, with counters in Redis (Lua, one round trip to admit, one to settle).
LiteLLM, without a database (no virtual keys), gets the same per-key limits from a
`custom_auth` function that accepts any bearer key and returns it with `rpm_limit=600`,
`tpm_limit=33,333` (2M/hour spread over minutes: LiteLLM's key windows are one minute) and
`max_parallel_requests=64`; its default rate limiter (parallel_request_limiter_v3) enforces
them per key with counters in Redis (`general_settings.coordination_redis`). What differs:
LiteLLM counts a fixed 60 s window (up to 2x the rate across a window edge), rejects at once
(the gateway's policy first delays up to 2 s), and keys are compared raw, not hashed.
With 10,000 keys in turn no limit is reached in the bench (a few requests per key a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness
import servers
from harness import LOOPBACK, Service
from servers import Result, format_table, num, progress

LITELLM_VERSION = "1.108.7"  # newest whose [proxy] extra resolves on PyPI here (Nov 2026)
# httptools: LiteLLM's uvicorn would otherwise parse HTTP with h11 (pure Python); the
# gateway's has httptools, so both get the same parser.
HTTPTOOLS_VERSION = "0.9.0"
LITELLM_PACKAGES = (f"litellm[proxy]=={LITELLM_VERSION}", f"httptools=={HTTPTOOLS_VERSION}")
LITELLM_VENV = servers.BENCH / ".venvs" / "litellm"
INSTALL_TIMEOUT_S = 900
START_TIMEOUT_S = 120.0  # LiteLLM imports for ~15 s on an idle 2-core VM

# What the plot helper needs to send to LiteLLM: any bearer key is accepted.
LITELLM_MODEL = servers.MODEL
REQUEST_HEADERS = {"Content-Type": "application/json"}

# Per-key limits equal to the gateway's default policy (see the module doc).
KEY_RPM = 600
KEY_TPM = 2_000_000 // 60
KEY_PARALLEL = 64
CHECK_PREFIX = "limit-check-"  # keys with this prefix get CHECK_RPM, for the 429 check
CHECK_RPM = 5

CUSTOM_AUTH = f'''\
"""Per-key limits without a database: any bearer key is a key with these limits."""
from fastapi import Request
from litellm.proxy._types import UserAPIKeyAuth


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    if api_key.startswith({CHECK_PREFIX!r}):
        return UserAPIKeyAuth(api_key=api_key, rpm_limit={CHECK_RPM})
    return UserAPIKeyAuth(api_key=api_key, rpm_limit={KEY_RPM}, tpm_limit={KEY_TPM},
                          max_parallel_requests={KEY_PARALLEL})
'''

CONFIG = """\
model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: {upstream}/v1
      api_key: dummy
general_settings:
  master_key: sk-bench-{master}
  custom_auth: custom_auth.user_api_key_auth
  coordination_redis:
    host: {redis_host}
    port: {redis_port}
litellm_settings:
  set_verbose: false
  turn_off_message_logging: true
"""

# No network at start-up (the bundled cost map), telemetry vetoed, log level ERROR (no
# per-request lines), no docs or admin UI routes.
LITELLM_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY_DISABLED": "true",
               "LITELLM_LOG": "ERROR", "NO_DOCS": "True", "DISABLE_ADMIN_UI": "True"}


# -- LiteLLM ---------------------------------------------------------------------------------
def _installed_version() -> str | None:
    python = LITELLM_VENV / "bin" / "python"
    if not (LITELLM_VENV / "bin" / "litellm").exists():
        return None
    code = ("import importlib.metadata as m; "
            "print(m.version('litellm'), m.version('httptools'))")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                          check=False, timeout=60)
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_litellm() -> Path:
    """LiteLLM's virtualenv with the pinned packages; created or completed only if needed."""
    if _installed_version() == f"{LITELLM_VERSION} {HTTPTOOLS_VERSION}":
        return LITELLM_VENV
    progress(f"installing {', '.join(LITELLM_PACKAGES)} into {LITELLM_VENV} (once) ...")
    if not (LITELLM_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    pip = [str(LITELLM_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, *LITELLM_PACKAGES], check=True, timeout=INSTALL_TIMEOUT_S)
    return LITELLM_VENV


def write_config(directory: Path, upstream_url: str, redis_url: str) -> Path:
    host_port = redis_url.removeprefix("redis://").split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    (directory / "custom_auth.py").write_text(CUSTOM_AUTH)
    config = directory / "config.yaml"
    config.write_text(CONFIG.format(model=LITELLM_MODEL, upstream=upstream_url,
                                    master=os.urandom(16).hex(), redis_host=host,
                                    redis_port=port))
    return config


def start_litellm(upstream_url: str, redis_url: str, log_dir: Path, *,
                  warm: bool = True) -> Service:
    """One LiteLLM proxy worker in front of `upstream_url`, per-key limits in `redis_url`.

    Its base URL is the returned service's `url`; send `REQUEST_HEADERS` plus any
    `Authorization: Bearer <key>` and `"model": LITELLM_MODEL` to `/v1/chat/completions`.
    `warm`: 3 s of unmeasured traffic first, since LiteLLM imports modules for seconds on
    its first requests.
    """
    venv = ensure_litellm()
    config_dir = log_dir / "litellm"
    config_dir.mkdir(exist_ok=True)
    config = write_config(config_dir, upstream_url, redis_url)
    port = harness.free_port()
    argv = [str(venv / "bin" / "litellm"), "--config", str(config), "--host", LOOPBACK,
            "--port", str(port), "--num_workers", "1"]
    service = harness.start_service("litellm", f"http://{LOOPBACK}:{port}", argv, log_dir,
                                    LITELLM_ENV)
    servers.wait_or_stop(service, ("/health/liveliness", START_TIMEOUT_S))
    if warm:
        servers.prime(service.url)
    return service


def _post_status(url: str, key: str) -> int:
    request = urllib.request.Request(
        url + servers.CHAT_PATH, data=servers.chat_body().encode(), method="POST",
        headers={**REQUEST_HEADERS, "Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            resp.read()
            status: int = resp.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def check_limit(litellm: Service, redis_url: str) -> Result:
    """A key limited to CHECK_RPM gets 429 after that many requests; another key does not;
    the counter lives in Redis."""
    key = f"{CHECK_PREFIX}{os.getpid()}"
    statuses = [_post_status(litellm.url, key) for _ in range(CHECK_RPM + 3)]
    other = _post_status(litellm.url, key + "-other")
    import redis as redis_py

    with redis_py.Redis.from_url(redis_url) as client:
        in_redis = sorted(k.decode() for k in client.scan_iter(f"*{key}*"))
    expected = [200] * CHECK_RPM + [429] * 3
    return {"statuses": statuses, "other_key_status": other, "redis_keys": in_redis,
            "ok": statuses == expected and other == 200 and bool(in_redis)}


# -- the run ---------------------------------------------------------------------------------
TARGETS = ("direct", "distill-guard", "litellm")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="distill-guard vs LiteLLM proxy, one run.")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds measured per phase and target, after 2 s of warm-up")
    parser.add_argument("--concurrency", type=int, default=32, help="saturation workers")
    parser.add_argument("--rates", default="100,250,500", help="paced phases, req/s")
    parser.add_argument("--keys", type=int, default=10_000, help="distinct API keys in turn")
    parser.add_argument("--quick", action="store_true", help="3 s phases (a smoke run)")
    parser.add_argument("--json", type=Path, help="also write all results to this JSON file")
    args = parser.parse_args(argv)
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    if args.quick:
        args.duration = min(args.duration, 3.0)
    if min(args.duration, args.concurrency, args.keys, *args.rates) <= 0:
        parser.error("--duration, --concurrency, --keys and --rates must be positive")
    return args


def run_phases(args: argparse.Namespace, stack: Mapping[str, Service],
               redis: Service) -> dict[str, dict[str, Result]]:
    """phase name -> target -> loadgen result with CPU and Redis accounting."""
    bases = {"direct": stack["upstream"].url, "distill-guard": stack["gateway"].url,
             "litellm": stack["litellm"].url}
    procs = {**stack, "redis": redis}
    for target in TARGETS:
        servers.prime(bases[target])
    phases: dict[str, dict[str, Result]] = {"saturation": {}}
    for target in TARGETS:
        progress(f"  saturation {target} ...")
        spec = servers.load_spec("closed", bases[target], duration=args.duration,
                                 concurrency=args.concurrency, keys=args.keys)
        phases["saturation"][target] = servers.measure(spec, procs, redis.url)
        servers.settle(list(procs.values()))
    for rate in args.rates:
        name = f"paced {rate:g}"
        phases[name] = {}
        for target in TARGETS:
            progress(f"  {name} {target} ...")
            spec = servers.load_spec("open", bases[target], duration=args.duration,
                                     rate=rate, keys=args.keys)
            phases[name][target] = servers.measure(spec, procs, redis.url)
            servers.settle(list(procs.values()))
    return phases


def _cpu(result: Result, name: str) -> float | None:
    value: float | None = result["cpu_us_per_request"].get(name)
    return value


PROXY_PROCESS = {"direct": None, "distill-guard": "gateway", "litellm": "litellm"}


def _over_capacity(result: Result) -> bool:
    return bool(result["errors"]) or result["throughput_rps"] < 0.95 * result["spec"]["rate"]


def _proxy_cpu(result: Result, target: str) -> float | None:
    process = PROXY_PROCESS[target]
    return None if process is None else _cpu(result, process)


def _paced_cpu(result: Result, target: str) -> float | None:
    """CPU per request sent means nothing once requests time out: shown only below capacity."""
    return None if _over_capacity(result) else _proxy_cpu(result, target)


def table(phases: dict[str, dict[str, Result]]) -> str:
    def row(label: str, phase: str, get: Any, digits: int = 0) -> list[str]:
        values = [get(phases[phase][t], t) for t in TARGETS]
        gw, ll = values[1], values[2]
        ratio = f"{ll / gw:.2f}x" if gw and ll is not None else ""
        return [label, *(num(v, digits) for v in values), ratio]

    def errors(phase: str) -> list[str]:
        counts = [phases[phase][t]["errors"] for t in TARGETS]
        flag = "  !!" if any(counts) else ""
        return ["  errors", *(f"{c:,}" for c in counts), flag]

    sat = "saturation"
    rows = [
        row("saturation: req/s", sat, lambda r, t: r["throughput_rps"], 1),
        row("  latency p50 ms", sat, lambda r, t: r["latency_ms"]["p50"], 2),
        row("  proxy CPU us/req", sat, _proxy_cpu),
        row("  upstream CPU us/req", sat, lambda r, t: _cpu(r, "upstream")),
        row("  redis CPU us/req", sat, lambda r, t: _cpu(r, "redis")),
        row("  redis commands/req", sat, lambda r, t: r["redis_commands_per_request"], 1),
        row("  redis script calls/req", sat, lambda r, t: r["redis_scripts_per_request"], 1),
        errors(sat),
    ]
    for phase in phases:
        if phase == sat:
            continue
        rows += [
            row(f"{phase} req/s: p50 ms", phase, lambda r, t: r["latency_ms"]["p50"], 2),
            row("  p99 ms", phase, lambda r, t: r["latency_ms"]["p99"], 2),
            row("  achieved req/s", phase, lambda r, t: r["throughput_rps"], 1),
            row("  proxy CPU us/req (- over capacity)", phase, _paced_cpu),
            errors(phase),
        ]
    rows.append(["other processes' CPU, max cores",
                 *(f"{max(phases[p][t]['other_processes_cores'] for p in phases):.2f}"
                   for t in TARGETS), ""])
    return format_table(["", *TARGETS, "litellm/dg"], rows)


def report(args: argparse.Namespace, limit: Result,
           phases: dict[str, dict[str, Result]]) -> str:
    lines = servers.header_lines("distill-guard vs LiteLLM proxy: same upstream, one run")
    lines += [
        f"redis:    one throwaway redis-server {harness_redis_version()}, shared by both proxies",
        "distill-guard: `distill-guard serve`, 1 worker (uvicorn, uvloop, httptools), "
        "policies/default.yaml; access log off, log level warning",
        f"litellm:  {LITELLM_VERSION} (+ httptools {HTTPTOOLS_VERSION}), `litellm "
        "--num_workers 1` (uvicorn, uvloop, httptools); custom_auth per-key limits rpm "
        f"{KEY_RPM}, tpm {KEY_TPM:,}, parallel {KEY_PARALLEL}, counters in Redis "
        "(coordination_redis); LITELLM_LOG=ERROR",
        f"load:     aiohttp client in its own process, {args.keys:,} API keys in turn; "
        f"{servers.WARMUP_S:g} s warm-up + {args.duration:g} s per phase and target",
        "",
        f"limit check (litellm, key limited to {CHECK_RPM} rpm, {CHECK_RPM + 3} requests): "
        f"statuses {limit['statuses']}, another key {limit['other_key_status']}, "
        f"Redis keys {limit['redis_keys']} -> {'OK' if limit['ok'] else '!! FAILED'}",
        "",
        table(phases), ""]
    for phase, pair in phases.items():
        for target, r in pair.items():
            if r["errors"]:
                lines.append(f"!! {phase} {target}: {r['errors']} errors {r['error_kinds']}")
            elif phase != "saturation" and _over_capacity(r):
                lines.append(f"!! {phase} {target}: over capacity (achieved "
                             f"{r['throughput_rps']:g} req/s)")
    lines += servers.disturbance_note([r for pair in phases.values() for r in pair.values()])
    lines += [
        "note: CPU us/req is each process tree's CPU over the phase (warm-up included) divided",
        "      by the requests sent; redis commands count those run inside Lua scripts too.",
        "      All processes share this machine's cores: compare ratios, not absolutes."]
    return "\n".join(lines)


def harness_redis_version() -> str:
    done = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                          check=False)
    parts = done.stdout.split()
    return next((p.removeprefix("v=") for p in parts if p.startswith("v=")), "")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    ensure_litellm()  # before any server starts: a first install takes minutes
    with servers.bench_run("dg-litellm-") as (log_dir, started):
        try:
            progress("starting servers ...")
            redis = harness.start_redis(log_dir)
            started.append(redis)
            upstream = servers.start_upstream(log_dir)
            started.append(upstream)
            env = servers.gateway_env(upstream.url, redis.url, servers.DEFAULT_POLICY)
            gateway = servers.start_gateway("uvicorn", env, log_dir)  # `distill-guard serve`
            started.append(gateway)
            litellm = start_litellm(upstream.url, redis.url, log_dir, warm=False)
            started.append(litellm)
            limit = check_limit(litellm, redis.url)
            stack = {"upstream": upstream, "gateway": gateway, "litellm": litellm}
            phases = run_phases(args, stack, redis)
        except harness.BenchError as exc:
            progress(f"litellm bench failed: {exc}")
            return 2
        except KeyboardInterrupt:
            progress("\ninterrupted; stopping the servers")
            return 130
    print(report(args, limit, phases))
    print(f"(whole run: {time.monotonic() - began:.0f} s)")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "machine": harness.machine_line(), "command": shlex.join(sys.orig_argv),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "litellm_version": LITELLM_VERSION, "limit_check": limit, "phases": phases},
            indent=2) + "\n")
    errors = any(r["errors"] for pair in phases.values() for r in pair.values())
    return 1 if errors or not limit["ok"] else 0


if __name__ == "__main__":
    sys.exit(main())
