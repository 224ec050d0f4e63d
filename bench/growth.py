"""How the gateway's cost grows with rules, prompt size and identities tracked in Redis.

    .venv/bin/python bench/growth.py [--duration 10] [--concurrency 32] [--quick]
        [--identities 1000,100000,1000000] [--json out.json]

One gateway worker (`distill-guard serve`, uvicorn), a throwaway redis-server and the upstream
(bench/fixed_upstream.py, else the demo model). Every sweep point gets a fresh gateway and an
emptied Redis, then a saturation phase (closed loop, `--concurrency` workers, 2 s warm-up +
`--duration` s): gateway req/s, gateway and Redis CPU µs per request, Redis commands per
request, Redis used_memory. The direct baseline is measured once (1 KB prompt).

(a) rules: 1 (the default policy's `per-key-rate` alone), 10 and 50 (the default policy's 4
    rules plus generated `rate_shaping` rules, each with its own limit and a `match` that
    holds, so every rule is evaluated and charges its counters; `headers: false`, since every
    rate_shaping rule otherwise adds its own x-ratelimit-*/RateLimit headers, and past ~25
    rules a response has more than 128 header lines, which aiohttp refuses); each generated
    file passes `distill-guard policy check`, and /metrics shows a decision for every rule.
(b) prompt size: a user message of 1 KB, 10 KB, 100 KB (the default policy's shadow
    `prompt_diversity` rule fingerprints every prompt).
(c) identities: Redis pre-filled with the keys of 1k, 100k, 1M identities, then load whose API
    keys rotate over (up to 100k of) them. 1k are filled by real requests, one per key; the
    bigger sets copy the keys real requests left for 20 identities (DUMP once, RESTORE under
    each new identity id with the same TTL, in a Lua script fed 1,000 ids per call). The ids
    are the gateway's keyed hash of each API key, with DISTILL_GUARD_IDENTITY_SECRET set, so
    the load lands on filled identities. The gateway is restarted after filling, so its own
    per-process state starts equal at every point.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import harness
import redis as redis_py
import servers
from harness import Service
from servers import Result, format_table, num, progress

from gateway.identity import IdentityHasher

SECRET = "growth-bench-secret"  # DISTILL_GUARD_IDENTITY_SECRET of every gateway here
KEY_PREFIX = "grow"
RULE_COUNTS = (1, 10, 50)
PROMPT_SIZES = (1_000, 10_000, 100_000)
IDENTITIES = (1_000, 100_000, 1_000_000)
QUICK_IDENTITIES = (1_000, 10_000, 100_000)  # filling 1M takes ~30-50 s on a 2-core VM
MAX_LOAD_KEYS = 100_000  # the load rotates over at most this many of the filled identities
REAL_FILL_LIMIT = 1_000  # up to this many identities are filled by real requests
TEMPLATES = 20  # identities whose keys are copied for the bigger sets
BATCH = 1_000  # identity ids per Lua call

# Copies one identity's keys under many ids. ARGV: n, then n key suffixes (what follows the
# `{id}` hash tag), n PTTLs (0: none), n DUMP payloads, then the new ids. The prefix before
# the hash tag is KEYS-free on purpose: this runs on a standalone bench Redis only.
CLONE_LUA = """
local n = tonumber(ARGV[1])
local head = ARGV[2]
for i = 3 + 3 * n, #ARGV do
  local base = head .. '{' .. ARGV[i] .. '}'
  for k = 1, n do
    redis.call('RESTORE', base .. ARGV[2 + k], ARGV[2 + n + k], ARGV[2 + 2 * n + k], 'REPLACE')
  end
end
return #ARGV - 2 - 3 * n
"""

VOCABULARY = ("river delta basin current flood bank stream valley water source mouth tide "
              "channel estuary meander rapids canyon glacier lake marsh spring creek brook ford "
              "bridge sediment erosion harbour dam lock canal barge salmon heron willow reed "
              "silt clay gravel rain storm season drought north south east west mountain plain "
              "forest village city trade history map journey explain describe compare why how "
              "what")
WORDS = VOCABULARY.split()


# -- generated inputs ----------------------------------------------------------------------------
MATCHES = (  # every one holds for the bench's requests, each exercising another condition
    '{paths: ["/v1/chat/completions"]}',
    '{methods: [POST], paths: ["/v1/*"]}',
    '{models: ["demo-*"]}',
    '{headers: {content-type: ["application/json*"]}}',
    "{authenticated: true}",
)


def rules_policy(count: int, directory: Path) -> Path:
    """A policy with `count` rules: see the module doc; validated by the gateway's CLI."""
    default = servers.DEFAULT_POLICY.read_text()
    if count == 1:
        head, rules = default.split("\nrules:\n", 1)
        start = rules.index("  - name: per-key-rate")
        end = rules.index("  - name:", start + 1)
        text = f"{head}\nrules:\n{rules[start:end]}"
    else:
        text = default.rstrip() + "\n"
        for index in range(count - default.count("\n  - name: ")):
            text += (f"\n  - name: extra-{index:02d}\n    kind: rate_shaping\n"
                     f"    description: Generated by bench/growth.py; never reached.\n"
                     f"    match: {MATCHES[index % len(MATCHES)]}\n"
                     f"    config:\n      key: identity\n      headers: false\n      limits:\n"
                     f"        - requests: {100_000 + index}/min\n")
    path = directory / f"rules-{count}.yaml"
    path.write_text(text)
    check = subprocess.run([*harness.gateway_command(), "policy", "check", str(path)],
                           capture_output=True, text=True, check=False)
    if check.returncode != 0 or f"({count} rules)" not in check.stdout:
        raise harness.BenchError(f"generated policy {path} failed the check:\n"
                                 f"{check.stdout}{check.stderr}")
    return path


def prompt_body(size: int) -> str:
    """A chat request whose user message is `size` bytes of varied English words."""
    rng = random.Random(size)
    words: list[str] = []
    length = -1
    while length < size:
        words.append(rng.choice(WORDS))
        length += len(words[-1]) + 1
    return servers.chat_body(" ".join(words)[:size])


def key_names(count: int, prefix: str = KEY_PREFIX) -> list[str]:
    """The API keys bench/loadgen.py sends for `api_keys=count` (its naming, exactly)."""
    width = len(str(count - 1))
    return [f"{prefix}-{i:0{width}d}" for i in range(count)]


# -- filling Redis -------------------------------------------------------------------------------
async def _send_once(url: str, keys: Sequence[str], concurrency: int = 32) -> int:
    """One real request per key; returns how many were not 2xx."""
    queue = list(keys)
    failed = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failed
        while queue:
            key = queue.pop()
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
            async with session.post(url + servers.CHAT_PATH, data=servers.chat_body(),
                                    headers=headers) as resp:
                await resp.read()
                failed += not 200 <= resp.status < 300

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return failed


def _snapshot(client: redis_py.Redis, identity: str) -> tuple[str, list[tuple[str, int, bytes]]]:
    """(prefix before the hash tag, [(suffix after it, PTTL or 0, DUMP)]) of one identity."""
    tag = "{" + identity + "}"
    entries: list[tuple[str, int, bytes]] = []
    head = ""
    for raw in client.scan_iter(match=f"*{tag}*", count=1000):
        name = raw.decode()
        head, _, suffix = name.partition(tag)
        pttl, dump = int(client.pttl(name)), client.dump(name)
        if pttl != -2 and dump is not None:  # -2, None: expired meanwhile (rate buckets do)
            entries.append((suffix, max(0, pttl), dump))  # -1 (no expiry) -> RESTORE's 0
    return head, entries


def clone_identities(redis_url: str, templates: Sequence[str], ids: Sequence[str]) -> int:
    """Copy the templates' keys to every id in `ids`, templates in turn; keys written."""
    with redis_py.Redis.from_url(redis_url) as client:
        script = client.register_script(CLONE_LUA)
        shapes = [_snapshot(client, t) for t in templates]
        written = 0
        for index, start in enumerate(range(0, len(ids), BATCH)):
            head, entries = shapes[index % len(shapes)]
            batch = ids[start:start + BATCH]
            args: list[Any] = [len(entries), head, *(e[0] for e in entries),
                               *(e[1] for e in entries), *(e[2] for e in entries), *batch]
            script(args=args)
            written += len(entries) * len(batch)
    return written


def fill(redis_url: str, gateway: Service, total: int, load_keys: list[str]) -> Result:
    """Leave `total` identities' keys in Redis, `load_keys` among them."""
    began = time.monotonic()
    hasher = IdentityHasher(SECRET.encode())
    real = load_keys if total <= REAL_FILL_LIMIT else load_keys[:TEMPLATES]
    failed = asyncio.run(_send_once(gateway.url, real))
    written = 0
    if total > len(real):
        fillers = [f"{KEY_PREFIX}-filler-{i}" for i in range(total - len(load_keys))]
        ids = [hasher.hash_key(k) for k in [*load_keys[len(real):], *fillers]]
        written = clone_identities(redis_url, [hasher.hash_key(k) for k in real], ids)
    stats = servers.redis_stats(redis_url)
    return {"seconds": round(time.monotonic() - began, 1), "real_requests": len(real),
            "failed_requests": failed, "keys_restored": written, "redis_keys": stats["keys"],
            "used_memory": stats["used_memory"]}


# -- measuring -----------------------------------------------------------------------------------
def rss_mb(service: Service) -> float:
    for line in Path(f"/proc/{service.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rules_deciding(gateway: Service) -> int:
    """Rules with at least one decision in /metrics: proof that they were evaluated."""
    names = set()
    for line in harness.http_get_text(gateway.url + "/metrics").splitlines():
        if line.startswith("distill_guard_rule_decisions_total{") and float(
                line.rsplit(" ", 1)[1]) > 0:
            names.add(line.split('rule="', 1)[1].split('"', 1)[0])
    return len(names)


class Bench:
    def __init__(self, args: argparse.Namespace, log_dir: Path, started: list[Service]) -> None:
        self.args, self.log_dir, self.started = args, log_dir, started
        self.redis = harness.start_redis(log_dir)
        started.append(self.redis)
        self.upstream = servers.start_upstream(log_dir)
        started.append(self.upstream)

    def gateway(self, policy: Path) -> Service:
        env = servers.gateway_env(self.upstream.url, self.redis.url, policy,
                                  identity_secret=SECRET)
        gateway = servers.start_gateway("uvicorn", env, self.log_dir)
        self.started.append(gateway)
        return gateway

    def stop(self, gateway: Service) -> None:
        gateway.stop()
        self.started.remove(gateway)

    def saturate(self, base_url: str, procs: dict[str, Service], *, keys: int = 10_000,
                 body: str | None = None) -> Result:
        spec = servers.load_spec("closed", base_url, duration=self.args.duration,
                                 concurrency=self.args.concurrency, keys=keys, body=body,
                                 key_prefix=KEY_PREFIX)
        result = servers.measure(spec, procs, self.redis.url)
        result["redis_used_memory"] = servers.redis_stats(self.redis.url)["used_memory"]
        return result

    def point(self, policy: Path, *, body: str | None = None) -> Result:
        """A fresh gateway on an empty Redis, saturated; then stopped."""
        servers.flush_redis(self.redis.url)
        gateway = self.gateway(policy)
        try:
            result = self.saturate(gateway.url, self.procs(gateway), body=body)
            result["rules_deciding"] = rules_deciding(gateway)
            result["gateway_rss_mb"] = round(rss_mb(gateway), 1)
        finally:
            self.stop(gateway)
        return result

    def identities_point(self, total: int) -> Result:
        servers.flush_redis(self.redis.url)
        load_keys = key_names(min(total, MAX_LOAD_KEYS))
        gateway = self.gateway(servers.DEFAULT_POLICY)
        try:
            filled = fill(self.redis.url, gateway, total, load_keys)
        finally:
            self.stop(gateway)
        gateway = self.gateway(servers.DEFAULT_POLICY)  # fresh process state
        try:
            result = self.saturate(gateway.url, self.procs(gateway), keys=len(load_keys))
            result["gateway_rss_mb"] = round(rss_mb(gateway), 1)
        finally:
            self.stop(gateway)
        result["fill"] = filled
        result["load_keys"] = len(load_keys)
        return result

    def procs(self, gateway: Service) -> dict[str, Service]:
        return {"gateway": gateway, "redis": self.redis, "upstream": self.upstream}


def run(bench: Bench, args: argparse.Namespace) -> dict[str, dict[str, Result]]:
    results: dict[str, dict[str, Result]] = {"direct": {}, "rules": {}, "prompt": {},
                                             "identities": {}}
    progress("direct ...")
    results["direct"]["1 KB prompt"] = bench.saturate(
        bench.upstream.url, {"upstream": bench.upstream}, body=prompt_body(1_000))
    for count in RULE_COUNTS:
        progress(f"rules {count} ...")
        results["rules"][f"{count} rules"] = bench.point(rules_policy(count, bench.log_dir))
    for size in PROMPT_SIZES:
        progress(f"prompt {size // 1000} KB ...")
        results["prompt"][f"{size // 1000} KB prompt"] = bench.point(
            servers.DEFAULT_POLICY, body=prompt_body(size))
    for total in args.identities:
        progress(f"identities {total:,} ...")
        results["identities"][f"{total:,} identities"] = bench.identities_point(total)
    return results


# -- the report ----------------------------------------------------------------------------------
def table(results: dict[str, dict[str, Result]]) -> str:
    rows = []
    for sweep, points in results.items():
        for label, r in points.items():
            cpu = r["cpu_us_per_request"]
            fill_info = r.get("fill")
            note = ""
            if "rules_deciding" in r and sweep == "rules":
                note = f"{r['rules_deciding']} rules decided"
            if fill_info:
                note = (f"filled in {fill_info['seconds']:g} s, {fill_info['redis_keys']:,} "
                        f"keys, load over {r['load_keys']:,}")
            rows.append([
                sweep, label, num(r["throughput_rps"], 1), num(cpu.get("gateway")),
                num(cpu.get("redis")), num(r["redis_commands_per_request"], 1),
                num(fill_info["used_memory"] / 2**20, 1) if fill_info else "-",
                num(r["redis_used_memory"] / 2**20, 1), num(r.get("gateway_rss_mb"), 0),
                f"{r['errors']}", f"{r['other_processes_cores']:.2f}", note])
    header = ["sweep", "point", "req/s", "gw CPU us/req", "redis us/req", "redis cmds/req",
              "redis MB filled", "redis MB after", "gw RSS MB", "errors", "other cores",
              "notes"]
    return format_table(header, rows)


def report(args: argparse.Namespace, results: dict[str, dict[str, Result]]) -> str:
    lines = servers.header_lines("distill-guard cost growth: rules, prompt size, identities")
    lines += [
        "gateway:  `distill-guard serve`, 1 worker (uvicorn, uvloop, httptools), counters in a "
        "throwaway redis-server, access log off; fresh gateway and empty Redis per point; "
        f"DISTILL_GUARD_IDENTITY_SECRET={SECRET}",
        f"load:     closed loop, {args.concurrency} workers, {servers.WARMUP_S:g} s warm-up + "
        f"{args.duration:g} s per point; 10,000 API keys in turn (identities: the filled "
        "ones, at most 100,000)",
        "", table(results), ""]
    every = [r for points in results.values() for r in points.values()]
    lines += [f"!! {sweep} {label}: {r['errors']} errors {r['error_kinds']}"
              for sweep, points in results.items() for label, r in points.items()
              if r["errors"]]
    lines += servers.disturbance_note(every)
    lines += [
        "note: 'redis MB filled' is used_memory after filling, before the load; 'after' once "
        "the load is done.",
        "      CPU us/req counts the warm-up; all processes share the machine's "
        f"{harness.usable_cores()} cores."]
    return "\n".join(lines)


def _counts(values: Sequence[int]) -> str:
    return ",".join(str(v) for v in values)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Gateway cost vs rules, prompt, identities.")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds measured per point, after 2 s of warm-up")
    parser.add_argument("--concurrency", type=int, default=32, help="saturation workers")
    parser.add_argument("--identities",
                        help=f"identity counts of sweep (c); default {_counts(IDENTITIES)}, "
                             f"with --quick {_counts(QUICK_IDENTITIES)}")
    parser.add_argument("--quick", action="store_true",
                        help="3 s points and at most 100k identities (a smoke run, ~1.5 min)")
    parser.add_argument("--json", type=Path, help="also write all results to this JSON file")
    args = parser.parse_args(argv)
    given = args.identities or _counts(QUICK_IDENTITIES if args.quick else IDENTITIES)
    args.identities = [int(n) for n in given.split(",") if n.strip()]
    if args.quick:
        args.duration = min(args.duration, 3.0)
    if min(args.duration, args.concurrency, *args.identities) <= 0:
        parser.error("--duration, --concurrency and --identities must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    with servers.bench_run("dg-growth-") as (log_dir, started):
        try:
            results = run(Bench(args, log_dir, started), args)
        except harness.BenchError as exc:
            progress(f"growth bench failed: {exc}")
            return 2
        except KeyboardInterrupt:
            progress("\ninterrupted; stopping the servers")
            return 130
    print(report(args, results))
    print(f"(whole run: {time.monotonic() - began:.0f} s)")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "machine": harness.machine_line(), "command": shlex.join(sys.orig_argv),
            "date": datetime.now(UTC).isoformat(timespec="seconds"), "results": results},
            indent=2) + "\n")
    return 1 if any(r["errors"] for p in results.values() for r in p.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
