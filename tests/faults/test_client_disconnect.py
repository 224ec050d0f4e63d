"""A client that hangs up mid-stream: the upstream call is cancelled at once, and the
token counters charge what was relayed (README, rate_shaping "Token accounting": a
stream cut short is charged the prompt plus ceil(characters sent / 4)).

The upstream is the raw fault server streaming a long answer slowly; it records
when the gateway closed its connection and how much answer text it wrote. The
counters run on a frozen clock (as in tests/integration/test_rate_shaping_tokens.py),
so a bucket's fill level read afterwards is exactly what the request was charged.
Both backends: memory, and a real Redis.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.clock import FakeClock
from gateway.identity import IdentityHasher
from gateway.storage.base import Acquire, CounterBackend, identity_key
from gateway.storage.memory import MemoryBackend
from gateway.storage.redis import RedisBackend
from gateway.tokens import estimate_input_tokens, tokens_from_chars
from tests.faults.conftest import write_policy
from tests.faults.harness import Gateway, eventually, in_process_gateway
from tests.faults.load import CHAT, MESSAGES, chat_body
from tests.faults.upstream import FaultUpstream
from tests.support.redis_server import RedisServer

API_KEY = "sk-hangs-up"
IDENTITY = IdentityHasher(b"distill-guard-dev-secret").hash_key(API_KEY)
QUOTA, DAY = 1_000_000.0, 86_400.0
RULE = "cut-short"
POLICY = f"""version: 1
rules:
  - name: {RULE}
    kind: rate_shaping
    config:
      limits:
        - total_tokens: 1000000/day
        - concurrent: 1
"""
EVENTS_READ = 6  # content events the client reads before it hangs up
PROMPTLY = 1.0  # seconds from the client's hang-up to the upstream seeing its connection closed


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, Any]]:
    """(name, factory): the factory gives the gateway's backend on a frozen clock."""
    clock = FakeClock()
    if request.param == "memory":
        yield "memory", lambda: MemoryBackend(clock)
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    yield "redis", lambda: RedisBackend.from_url(server.url, timeout=1.0, clock=clock)


def consumed(gw: Gateway, storage: CounterBackend) -> float:
    """Tokens taken from the daily bucket: a cost-0 acquire peeks at it."""
    op = Acquire(identity_key(IDENTITY, "rs", RULE, "0", ""), QUOTA, DAY, QUOTA, cost=0)
    result = gw.call(storage.admit([op]))  # on the gateway's loop: its backend lives there
    [peek] = result.results
    return QUOTA - float(peek.remaining)


async def hang_up_mid_stream(url: str, path: str, body: dict[str, Any]) -> tuple[int, float]:
    """Read EVENTS_READ content events, drop the connection; (answer chars seen, when)."""
    text = ""
    events = 0
    async with aiohttp.ClientSession() as session:
        resp = await session.post(url + path, json=body, headers={
            "authorization": f"Bearer {API_KEY}", "x-fault-events": "400",
            "x-fault-delay": "0.02"})
        assert resp.status == 200
        while events < EVENTS_READ:
            line = await resp.content.readline()
            assert line, "stream ended early"
            if not line.startswith(b"data:"):
                continue
            obj = json.loads(line[5:])
            if path == CHAT:
                text += obj["choices"][0]["delta"].get("content") or ""
                events += 1
            elif obj.get("type") == "content_block_delta":
                text += obj["delta"]["text"]
                events += 1
        resp.close()  # drops the connection: the response is not read to its end
        return len(text), time.monotonic()


@pytest.mark.parametrize("path", [CHAT, MESSAGES])
async def test_hang_up_cancels_upstream_and_charges_what_was_relayed(
    tmp_path: Path, fault_upstream: FaultUpstream, backend: tuple[str, Any], path: str,
) -> None:
    _, make_storage = backend
    storage = make_storage()
    policy = write_policy(tmp_path, POLICY)
    body = chat_body(stream=True, max_tokens=2000)
    reserved = estimate_input_tokens(body) + 2000
    with in_process_gateway(policy, fault_upstream.url, storage=storage) as gw:
        seen_chars, hung_up_at = await hang_up_mid_stream(gw.url, path, body)
        # The upstream saw its connection closed promptly: the call was cancelled.
        conn = fault_upstream.conns[-1]
        await eventually(lambda: conn.closed_by_peer_at is not None, within=5)
        assert conn.closed_by_peer_at is not None
        assert conn.closed_by_peer_at - hung_up_at < PROMPTLY
        assert conn.text_sent < 400 * 5  # far from the whole answer

        # The counters reconcile what was relayed, once the background settle ran.
        gw.drain()
        assert gw.app.state is not None
        charged = consumed(gw, gw.app.state.storage)
        assert charged != reserved, "the reservation was never settled"
        input_tokens = estimate_input_tokens(body) if path == CHAT else 12  # message_start's
        output = charged - input_tokens
        # At least what the client read; at most what the upstream wrote before it
        # saw the hang-up (the gateway may have relayed a little more than was read).
        assert tokens_from_chars(seen_chars) <= output <= tokens_from_chars(conn.text_sent)

        # The in-flight slot (`concurrent: 1`) was released: the next request passes.
        async with aiohttp.ClientSession() as session, session.post(
            gw.url + path, json=chat_body(), headers={"authorization": f"Bearer {API_KEY}"}
        ) as resp:
            assert resp.status == 200, await resp.text()
