"""CPU per relayed SSE event: what reading and rewriting streams costs the gateway.

    .venv/bin/python bench/sse_cost.py [--repeat 40] [--e2e-streams 200] [--no-e2e]
        [--json out.json]

1. In process (the number the budget is about): the proxy's stream path for one rule set —
   `SSEDecoder.feed` per network chunk + `Chain.stream_event` over the rules that read the
   stream — timed with `time.process_time_ns` around the relay loop only (the request stage,
   once per request, is left out). The upstream streams are recorded once from the demo
   model (word by word, one event per chunk as a token-by-token upstream sends them); every
   repetition replays them through a fresh request context.
2. End to end (unless `--no-e2e`): the fast demo upstream and one gateway worker per rule
   set, each in its own process group on a free loopback port; `--e2e-streams` streamed
   chat requests one after another over a keep-alive connection; the gateway process's CPU
   (/proc) over them divided by the upstream's events, and the difference to a gateway
   without rules (bytes relayed as they come, nothing decoded).

Budget (issue 8): <= 10 us per event for a rule that reads the stream, <= 25 us with the
watermark. Prints one table; the whole run takes well under 2 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness
import httpx
import orjson

from gateway.demo_upstream import create_demo_app
from gateway.errors import dialect_for_path
from gateway.identity import Identity
from gateway.pipeline.chain import Chain
from gateway.pipeline.context import RequestContext
from gateway.pipeline.loader import parse_policy
from gateway.policies.shared import Shared
from gateway.storage.memory import MemoryBackend
from gateway.streaming.sse import SSEDecoder

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
ASK = [{"role": "user", "content": "Explain how rivers shape valleys."}]
SECRET = b"bench-watermark-secret"


def rule(kind: str, config: str) -> str:
    return f"  - name: r-{kind}\n    kind: {kind}\n    config: {config}\n"


RATE = rule("rate_shaping", "{limits: [{output_tokens: 100000000/min}], headers: false}")
PERTURB_DEFAULT = rule("output_perturbation", "{}")
DROP = rule("output_perturbation", "{reasoning: {mode: drop}}")
TRUNCATE = rule("output_perturbation", "{reasoning: {mode: truncate, max_chars: 200}}")
NOISE = rule("output_perturbation",
             "{logprobs: {mode: cap, max_top_logprobs: 5, decimals: 2, noise: 0.05}}")
MARK = rule("output_perturbation", "{watermark: {enabled: true}}")
ALL = rule("output_perturbation",
           "{logprobs: {mode: cap, max_top_logprobs: 5, decimals: 2, noise: 0.05}, "
           "reasoning: {mode: truncate, max_chars: 200}, watermark: {enabled: true}}")

PLAIN_CHAT: dict[str, Any] = {"model": "demo-model", "messages": ASK, "stream": True}
REASONING_CHAT = {**PLAIN_CHAT, "model": "demo-reasoner"}
LOGPROB_CHAT = {**PLAIN_CHAT, "logprobs": True, "top_logprobs": 5}
PLAIN_MESSAGE: dict[str, Any] = {"model": "demo-model", "messages": ASK, "stream": True,
                                 "max_tokens": 4096}
THINKING_MESSAGE = {**PLAIN_MESSAGE, "thinking": {"type": "enabled", "budget_tokens": 1024}}


@dataclass(frozen=True)
class Case:
    label: str
    rules: str  # policy rules (YAML), "" for none
    path: str
    body: dict[str, Any]
    watermark: bool = False


CASES = (
    Case("decoder + chain, no rule (floor)", "", CHAT, PLAIN_CHAT),
    Case("rate_shaping output_tokens", RATE, CHAT, PLAIN_CHAT),
    Case("perturbation defaults, no logprobs asked", PERTURB_DEFAULT, CHAT, PLAIN_CHAT),
    Case("perturbation reasoning drop", DROP, CHAT, REASONING_CHAT),
    Case("perturbation reasoning truncate", TRUNCATE, CHAT, REASONING_CHAT),
    Case("perturbation logprobs top-5 noise", NOISE, CHAT, LOGPROB_CHAT),
    Case("perturbation watermark", MARK, CHAT, PLAIN_CHAT, watermark=True),
    Case("perturbation all (logprobs+reasoning+mark)", ALL, CHAT,
         {**REASONING_CHAT, "logprobs": True, "top_logprobs": 5}, watermark=True),
    Case("anthropic: thinking drop", DROP, MESSAGES, THINKING_MESSAGE),
    Case("anthropic: watermark", MARK, MESSAGES, PLAIN_MESSAGE, watermark=True),
)


def chain_for(case: Case) -> Chain:
    text = "version: 1\nrules:\n" + case.rules if case.rules else "version: 1\nrules: []\n"
    return Chain.from_policy(parse_policy(text, "bench.yaml"), Shared(watermark_secret=SECRET))


def context(case: Case, n: int) -> RequestContext:
    return RequestContext(
        request_id=f"r{n}", method="POST", path=case.path, query=b"",
        headers=[(b"content-type", b"application/json")], client_ip="127.0.0.1",
        dialect=dialect_for_path(case.path), identity=Identity(f"{n % 97:016x}", True),
        body=orjson.dumps(case.body), started=0.0, is_model_route=True,
    )


async def record(case: Case, chain: Chain) -> list[bytes]:
    """The upstream's answer to the request as the chain rewrites it, one event per chunk."""
    ctx = context(case, 0)
    await chain.run_request(ctx, MemoryBackend())
    transport = httpx.ASGITransport(app=create_demo_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        resp = await client.post(case.path, content=ctx.outgoing_body(),
                                 headers={"content-type": "application/json"})
    decoder = SSEDecoder()
    return [event.raw for event in decoder.feed(resp.content) + decoder.flush()]


async def in_process(case: Case, repeat: int) -> tuple[float, float, int, int]:
    """(median and best CPU microseconds per upstream event over the replays, events per
    stream, events the client gets per stream)."""
    chain = chain_for(case)
    chunks = await record(case, chain)
    backend = MemoryBackend()
    per_event: list[float] = []
    sent = 0
    for n in range(repeat + 2):  # the first two warm caches up and are not counted
        ctx = context(case, n)
        ctx.status = 200
        outcome = await chain.run_request(ctx, backend)
        rules = outcome.stream_rules(ctx)
        stream_event = Chain.stream_event
        out = 0
        started = time.process_time_ns()
        decoder = SSEDecoder()
        for chunk in chunks:
            for event in decoder.feed(chunk):
                out += len(stream_event(rules, ctx, event))
        for event in decoder.flush():
            out += len(stream_event(rules, ctx, event))
        elapsed = time.process_time_ns() - started
        if n >= 2:
            per_event.append(elapsed / 1000 / len(chunks))
            sent = out
    return statistics.median(per_event), min(per_event), len(chunks), sent


# -- end to end ---------------------------------------------------------------------------------

E2E_CASES = (
    Case("no rules: bytes relayed (floor)", "", CHAT, PLAIN_CHAT),
    Case("rate_shaping output_tokens", RATE, CHAT, PLAIN_CHAT),
    Case("perturbation reasoning drop", DROP, CHAT, REASONING_CHAT),
    Case("perturbation watermark", MARK, CHAT, PLAIN_CHAT, watermark=True),
    Case("anthropic: watermark", MARK, MESSAGES, PLAIN_MESSAGE, watermark=True),
)


# harness.DEMO_UPSTREAM_CODE asks for uvloop + httptools; take what is installed instead
UPSTREAM_CODE = """
import sys, uvicorn
from gateway.demo_upstream import DemoConfig, create_demo_app
uvicorn.run(create_demo_app(DemoConfig(fast=True)), host=sys.argv[1], port=int(sys.argv[2]),
            log_level="warning", access_log=False)
"""


def start_upstream(log_dir: Path) -> harness.Service:
    port = harness.free_port()
    argv = [sys.executable, "-c", UPSTREAM_CODE, harness.LOOPBACK, str(port)]
    service = harness.start_service("upstream", f"http://{harness.LOOPBACK}:{port}", argv,
                                    log_dir)
    harness.wait_until_ok(service, "/healthz")
    return service


def stream_once(conn: http.client.HTTPConnection, case: Case) -> int:
    conn.request("POST", case.path, body=orjson.dumps(case.body), headers={
        "content-type": "application/json", "authorization": "Bearer bench-key"})
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise harness.BenchError(f"{case.label}: HTTP {resp.status}: {body[:200]!r}")
    return body.count(b"\n\n")


def end_to_end(cases: Sequence[Case], streams: int, log_dir: Path) -> list[tuple[Case, float]]:
    started: list[harness.Service] = []
    out: list[tuple[Case, float]] = []
    try:
        upstream = start_upstream(log_dir)
        started.append(upstream)
        host, port = upstream.url.removeprefix("http://").split(":")
        for index, case in enumerate(cases):
            direct = http.client.HTTPConnection(host, int(port))
            events = stream_once(direct, case)  # upstream events per stream
            direct.close()
            policy = log_dir / f"policy{index}.yaml"
            policy.write_text("version: 1\nrules:\n" + case.rules if case.rules
                              else "version: 1\nrules: []\n")
            gateway = harness.start_gateway(upstream.url, "memory", str(policy), log_dir,
                                            access_log=False)
            started.append(gateway)
            ghost, gport = gateway.url.removeprefix("http://").split(":")
            conn = http.client.HTTPConnection(ghost, int(gport))
            for _ in range(20):
                stream_once(conn, case)
            before = gateway.cpu_seconds()
            for _ in range(streams):
                stream_once(conn, case)
            cpu = gateway.cpu_seconds() - before
            conn.close()
            gateway.stop()
            started.remove(gateway)
            out.append((case, cpu * 1e6 / (streams * events)))
    finally:
        for service in reversed(started):
            service.stop()
    return out


# -- report ---------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=40,
                        help="streams replayed per rule set in process (default 40)")
    parser.add_argument("--e2e-streams", type=int, default=200,
                        help="streams per rule set end to end (default 200)")
    parser.add_argument("--no-e2e", action="store_true", help="in-process figures only")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    run_started = time.monotonic()
    lines = [
        "distill-guard SSE cost: CPU per relayed SSE event",
        f"date:     {datetime.now(UTC):%Y-%m-%d %H:%M UTC}",
        f"machine:  {harness.machine_line()}",
        f"command:  {' '.join([Path(sys.executable).name, *sys.argv])}",
        "",
        f"in process: SSEDecoder.feed per chunk (one event per chunk) + Chain.stream_event, "
        f"{args.repeat} streams per row",
        f"{'rule set':<44}{'events':>7}{'sent':>6}{'median':>8}{'best':>7}{'- floor':>9}",
        "-" * 81,
    ]
    results: dict[str, Any] = {"in_process": {}, "end_to_end": {}}
    floor = None
    for case in CASES:
        median, best, events, sent = asyncio.run(in_process(case, args.repeat))
        floor = median if floor is None else floor
        budget = 25.0 if case.watermark else 10.0
        flag = "" if median <= budget else f"  !! over {budget:g} us"
        lines.append(f"{case.label:<44}{events:>7}{sent:>6}{median:>8.2f}{best:>7.2f}"
                     f"{median - floor:>+9.2f}{flag}")
        results["in_process"][case.label] = {"us_per_event_median": median,
                                             "us_per_event_best": best, "events": events}
    if not args.no_e2e:
        with tempfile.TemporaryDirectory(prefix="sse-cost-") as tmp:
            measured = end_to_end(E2E_CASES, args.e2e_streams, Path(tmp))
        lines += [
            "",
            f"end to end: fast demo upstream + 1 gateway worker (memory counters, access log "
            f"off), {args.e2e_streams} streams per row, gateway process CPU / upstream events",
            f"{'rule set':<46}{'gateway us/event':>18}{'vs no rules':>13}",
            "-" * 77,
        ]
        base = measured[0][1]
        for case, per_event in measured:
            lines.append(f"{case.label:<46}{per_event:>18.2f}{per_event - base:>+13.2f}")
            results["end_to_end"][case.label] = {"us_per_event": per_event}
    lines += [
        "",
        "in process: us of CPU per upstream event, median and best of the replays; '- floor':",
        "median minus the decoder-only row. 'events': upstream events per stream; 'sent':",
        "events the client got. Budget (issue 8): <= 10 us per event for a rule reading the",
        "stream, <= 25 us with the watermark (the '!!' flags compare the median with it).",
        f"(whole run: {time.monotonic() - run_started:.0f} s)",
    ]
    print("\n".join(lines))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
