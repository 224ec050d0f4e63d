"""An upstream that refuses, hangs, closes mid-stream, sends malformed SSE or invalid
JSON: the client gets a well-formed error or a cleanly terminated stream, and the
gateway keeps no socket, descriptor or task of it afterwards.

Two policies: `relay` (rate shaping on requests only: bodies stream through
byte for byte) and `reading` (token counting and the watermark: every body
and SSE event is decoded), since the two take different paths through the
proxy. The soak version (10,000 requests) is `bench/soak.py upstream-faults`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.faults.conftest import write_policy
from tests.faults.harness import Gateway, gateway_sockets, in_process_gateway, open_fds
from tests.faults.load import CHAT, MESSAGES, Load, Pick, Seen, chat_body, summary
from tests.faults.upstream import FaultUpstream
from tests.support.server import free_port

UPSTREAM_TIMEOUT = 0.3  # seconds of upstream silence before 504 / a stream's error event

POLICIES = {
    "relay": """version: 1
rules:
  - name: requests
    kind: rate_shaping
    config:
      limits:
        - requests: 1000000/min
""",
    "reading": """version: 1
rules:
  - name: tokens
    kind: rate_shaping
    config:
      limits:
        - requests: 1000000/min
        - total_tokens: 100000000/min
        - concurrent: 1000
  - name: marks
    kind: output_perturbation
    config:
      watermark: {enabled: true}
""",
}

# fault -> what the client must see, as (status, verdict), for a non-streamed
# request (JSON answers) and a streamed one (SSE answers).
ERROR_502 = (502, "error")
EXPECTED: dict[str, tuple[tuple[int, str], tuple[int, str]]] = {
    "ok": ((200, "ok"), (200, "ok")),
    "hang": ((504, "error"), (504, "error")),
    "close": (ERROR_502, ERROR_502),
    "reset": (ERROR_502, ERROR_502),
    "bad-status": (ERROR_502, ERROR_502),
    # The upstream's own invalid JSON, relayed as it came (see docs/faults.md).
    "invalid-json": ((200, "passthrough"), (200, "passthrough")),
    # Stream faults: whatever the request asked, the upstream answers SSE. A stream
    # it breaks ends with an error event; junk in it is relayed and it ends cleanly.
    "hang-mid-stream": ((200, "error"), (200, "error")),
    "close-mid-stream": ((200, "error"), (200, "error")),
    "malformed-sse": ((200, "ok"), (200, "ok")),
}
# An event over the decoder's 1 MiB limit: relayed as bytes when no rule decodes
# the stream, refused (error event) when one does.
OVERSIZED = {"relay": (200, "ok"), "reading": (200, "error")}
# A JSON body broken after its headers: when nothing reads it, the headers are
# already relayed and the connection is dropped (the client sees it incomplete).
SHORT_RELAYED = (200, "truncated")


def picks(fault: str) -> list[Pick]:
    return [Pick(path, chat_body(stream), {"x-fault": fault, "authorization": "Bearer sk-f"},
                 label=f"{fault} {path} stream={stream}")
            for path in (CHAT, MESSAGES) for stream in (False, True)]


def upstream_body(pick: Pick) -> bytes | None:
    if pick.headers.get("x-fault") == "invalid-json":
        return b'{"id": "chatcmpl-x", "choices": [{"message": {"content": "trunc'
    return None


async def send_all(url: str, requests: list[Pick]) -> list[Seen]:
    load = Load(url, lambda n: requests[n], upstream_body=upstream_body)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        return list(await asyncio.gather(*(load.one(session, pick) for pick in requests)))


@pytest.fixture(params=sorted(POLICIES))
def gateway(request: pytest.FixtureRequest, tmp_path: Path,
            fault_upstream: FaultUpstream) -> Iterator[tuple[str, Gateway]]:
    policy = write_policy(tmp_path, POLICIES[request.param])
    with in_process_gateway(policy, fault_upstream.url,
                            upstream_timeout=UPSTREAM_TIMEOUT) as gw:
        yield request.param, gw


async def test_every_fault_gets_a_well_formed_answer(gateway: tuple[str, Gateway]) -> None:
    name, gw = gateway
    for fault, (plain, streamed) in EXPECTED.items():
        for pick, seen in zip(picks(fault), await send_all(gw.url, picks(fault)), strict=True):
            expected = streamed if pick.body["stream"] else plain
            assert (seen.status, seen.verdict) == expected, (pick.label, seen.body[-200:])
            if fault == "hang":
                assert seen.elapsed < UPSTREAM_TIMEOUT + 2  # the timeout, not a hang
    for seen in await send_all(gw.url, picks("oversized-event")):
        assert (seen.status, seen.verdict) == OVERSIZED[name], seen.label


async def test_relayed_json_body_cut_short_is_dropped_not_corrupted(
    tmp_path: Path, fault_upstream: FaultUpstream,
) -> None:
    """A JSON body the upstream breaks after its headers went out: never a
    complete-looking corrupt body (reading policies: the 502 test below)."""
    policy = write_policy(tmp_path, POLICIES["relay"])
    with in_process_gateway(policy, fault_upstream.url,
                            upstream_timeout=UPSTREAM_TIMEOUT) as gw:
        for seen in await send_all(gw.url, picks("short-body")):  # short-chunked: below
            assert (seen.status, seen.verdict) == SHORT_RELAYED, (seen.label, seen.body[-200:])


async def test_read_json_body_cut_short_is_a_502(
    tmp_path: Path, fault_upstream: FaultUpstream,
) -> None:
    """When a policy reads the body, nothing is sent before it is whole: a body the
    upstream breaks is a 502 in the route's dialect. When nothing reads it, a chunked
    JSON body cut short must not come out as a complete 200 with an SSE event inside.
    (Both did: a plain-text 500 from the server, and an SSE error event glued onto the
    JSON, terminated cleanly.)"""
    results: Counter[tuple[str, int, str]] = Counter()
    for name in ("reading", "relay"):
        policy = write_policy(tmp_path, POLICIES[name], f"{name}.yaml")
        with in_process_gateway(policy, fault_upstream.url,
                                upstream_timeout=UPSTREAM_TIMEOUT) as gw:
            for fault in ("short-body", "short-chunked"):
                for seen in await send_all(gw.url, picks(fault)):
                    results[(name, seen.status, seen.verdict)] += 1
    assert results == {("reading", 502, "error"): 8, ("relay", 200, "truncated"): 8}


async def test_refused_connections_are_a_502_in_each_dialect(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, POLICIES["reading"])
    with in_process_gateway(policy, f"http://127.0.0.1:{free_port()}") as gw:
        for seen in await send_all(gw.url, picks("ok")):
            assert (seen.status, seen.verdict) == ERROR_502, seen.label


# -- leaks ----------------------------------------------------------------------------------

LEAK_FAULTS = [*EXPECTED, "oversized-event", "short-body", "short-chunked"]
ROUNDS = 8  # x 12 faults x 4 requests = 384 requests through the faulty upstream
WORKERS = 8


def mixed(n: int) -> Pick:
    fault = LEAK_FAULTS[n % len(LEAK_FAULTS)]
    return picks(fault)[(n // len(LEAK_FAULTS)) % 4]


class Census:
    """What the gateway holds: descriptors, its own sockets, its tasks, and the
    upstream's connections still open."""

    def __init__(self, gw: Gateway, upstream: FaultUpstream) -> None:
        self.fds = open_fds()
        self.sockets = gateway_sockets(gw.port, upstream.port)
        self.tasks = gw.tasks()
        self.upstream = upstream.open_connections()

    def __repr__(self) -> str:
        return (f"fds={self.fds} gateway sockets={self.sockets} tasks={len(self.tasks)} "
                f"upstream connections={self.upstream}")


async def settled(gw: Gateway, upstream: FaultUpstream, baseline: Census,
                  within: float = 5.0) -> Census:
    """The census once the gateway is back within slack of `baseline` (or at the deadline).

    Slack: the aiohttp pool may keep up to WORKERS idle keep-alive connections to
    the upstream (answers that end with their body, e.g. `ok` JSON): each is two
    descriptors here (the gateway's end and the upstream's) and one gateway socket.
    Tasks have no slack: the same ones as before, by name."""
    deadline = time.monotonic() + within
    while True:
        gw.drain()
        now = Census(gw, upstream)
        if ((now.fds <= baseline.fds + 2 * WORKERS and now.sockets <= 1 + WORKERS
             and now.tasks == baseline.tasks and now.upstream <= WORKERS)
                or time.monotonic() > deadline):
            return now
        await asyncio.sleep(0.1)


async def test_no_socket_fd_or_task_leaks_after_hundreds_of_faults(
    gateway: tuple[str, Gateway], fault_upstream: FaultUpstream,
) -> None:
    _, gw = gateway
    await send_all(gw.url, [p for fault in LEAK_FAULTS for p in picks(fault)])  # warm up
    baseline = await settled(gw, fault_upstream, Census(gw, fault_upstream))
    total = ROUNDS * len(LEAK_FAULTS) * 4
    load = Load(gw.url, mixed, workers=WORKERS, limit=total, upstream_body=upstream_body)
    async with load:
        await load.done()
    assert len(load.seen) == total
    assert not [s for s in load.seen if s.verdict.startswith("bad")], summary(load.seen)
    after = await settled(gw, fault_upstream, baseline)
    assert after.tasks == baseline.tasks, (baseline.tasks, after.tasks)
    assert after.sockets <= 1 + WORKERS, (baseline, after)  # the listener + the idle pool
    assert after.fds <= baseline.fds + 2 * WORKERS, (baseline, after)
    assert after.upstream <= WORKERS, (baseline, after)


# -- what the official SDKs make of it ------------------------------------------------------

@pytest.mark.parametrize("fault", ["close-mid-stream", "hang-mid-stream", "close"])
async def test_the_sdks_raise_their_own_errors(
    tmp_path: Path, fault_upstream: FaultUpstream, fault: str,
) -> None:
    """A broken stream ends with an error event the SDKs raise on, and a refused call
    is an APIStatusError: no hang, no JSON decode error, no silently short answer."""
    import anthropic
    import openai

    policy = write_policy(tmp_path, POLICIES["reading"])
    headers = {"x-fault": fault}
    with in_process_gateway(policy, fault_upstream.url,
                            upstream_timeout=UPSTREAM_TIMEOUT) as gw:
        oai = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="sk-f", max_retries=0,
                                 default_headers=headers, timeout=10)
        with pytest.raises(openai.APIError) as raised:
            stream = await oai.chat.completions.create(
                model="demo-model", stream=True,
                messages=[{"role": "user", "content": "Tell me about rivers"}])
            async for _ in stream:
                pass
        assert "upstream" in str(raised.value)
        await oai.close()
        ant = anthropic.AsyncAnthropic(base_url=gw.url, api_key="sk-f", max_retries=0,
                                       default_headers=headers, timeout=10)
        with pytest.raises(anthropic.APIError) as raised_a:
            async with ant.messages.stream(
                model="demo-model", max_tokens=20,
                messages=[{"role": "user", "content": "Tell me about rivers"}],
            ) as events:
                async for _ in events:
                    pass
        assert "upstream" in str(raised_a.value)
        await ant.close()
