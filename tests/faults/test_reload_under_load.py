"""Broken and valid policy reloads while streams are in flight, counters in Redis.

tests/integration/test_policy_reload.py already shows that a broken file under
load (8 concurrent clients, plain requests, memory counters) fails no request
and keeps the old policy, through the watcher and the admin API. What it does
not cover, and this adds: streams that start under one policy and end under
another, and the token counters of a rule that is swapped while its requests
are in flight. Every stream must end cleanly, and the bucket must hold exactly
the usage the upstream reported, request by request: nothing lost, nothing
charged twice, whatever policy object settled it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway import metrics
from gateway.clock import FakeClock
from gateway.identity import IdentityHasher
from gateway.storage.base import Acquire, identity_key
from gateway.storage.redis import RedisBackend
from tests.faults.conftest import write_policy
from tests.faults.harness import eventually, in_process_gateway
from tests.faults.load import CHAT, MESSAGES, Load, Pick, chat_body, summary
from tests.faults.upstream import FaultUpstream
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis

API_KEY = "sk-reloads"
IDENTITY = IdentityHasher(b"distill-guard-dev-secret").hash_key(API_KEY)
QUOTA, DAY = 1_000_000.0, 86_400.0
EVENTS = 10


def policy(requests_per_min: int) -> str:
    return f"""version: 1
rules:
  - name: tokens
    kind: rate_shaping
    config:
      limits:
        - total_tokens: 1000000/day
        - requests: {requests_per_min}/min
"""


BROKEN = """version: 1
rules:
  - name: tokens
    kind: rate_shaping
    config:
      limits:
        - total_tokens: 1000000/day
        - requests: 100000/minn
"""
# What the fault upstream reports per answer: 12 prompt tokens, one output token per
# streamed word (EVENTS), 3 output tokens for a JSON answer.
USAGE = {True: 12 + EVENTS, False: 12 + 3}


def pick(n: int) -> Pick:
    path = CHAT if n % 2 == 0 else MESSAGES
    stream = n % 3 != 0
    return Pick(path, chat_body(stream),
                {"authorization": f"Bearer {API_KEY}", "x-fault-events": str(EVENTS),
                 "x-fault-delay": "0.01"}, label=f"{path} stream={stream}")


def loads(result: str) -> float:
    value: float = metrics.POLICY_LOADS.labels(result=result)._value.get()
    return value


async def test_streams_and_token_counts_survive_reloads(
    tmp_path: Path, redis_server: RedisServer, fault_upstream: FaultUpstream,
) -> None:
    clock = FakeClock()  # frozen: the bucket's fill level is the sum of what was charged
    # A generous timeout: an admit that failed over to local counters would be missing
    # from Redis, and this test is about reloads, not about a slow box.
    storage = RedisBackend.from_url(redis_server.url, timeout=5.0, clock=clock)
    path = write_policy(tmp_path, policy(100000))
    ok_before, errors_before = loads("ok"), loads("error")
    with in_process_gateway(path, fault_upstream.url, redis=redis_server.url, storage=storage,
                            policy_watch_interval=0.05) as gw:
        reloader, state = gw.app.reloader, gw.app.state
        assert reloader is not None and state is not None
        async with Load(gw.url, pick, workers=6) as load:
            await asyncio.sleep(0.3)
            for i in range(4):
                running = state.chain
                path.write_text(BROKEN)
                await eventually(lambda: reloader.last_error != "", within=10)
                assert state.chain is running  # refused: the running policy stays
                await asyncio.sleep(0.1)
                path.write_text(policy(100000 + i + 1))  # a real swap of the rule
                await eventually(lambda: state.chain is not running, within=10)  # noqa: B023
                await asyncio.sleep(0.1)
        gw.drain()
        peek = RedisBackend.from_url(redis_server.url, timeout=5.0, clock=clock)
        try:
            op = Acquire(identity_key(IDENTITY, "rs", "tokens", "0", ""), QUOTA, DAY, QUOTA,
                         cost=0)
            [result] = (await peek.admit([op])).results
        finally:
            await peek.aclose()
    seen = load.seen
    assert len(seen) > 50
    assert {(s.status, s.verdict) for s in seen} == {(200, "ok")}, summary(seen)
    assert loads("error") - errors_before >= 4  # the broken file was refused each time...
    assert loads("ok") - ok_before >= 1 + 4  # startup, then every fix swapped in under load
    streamed = sum(1 for s in seen if "stream=True" in s.label)
    expected = streamed * USAGE[True] + (len(seen) - streamed) * USAGE[False]
    assert QUOTA - result.remaining == expected, (len(seen), streamed)


async def test_a_reload_that_catches_a_write_half_done_keeps_the_policy(
    tmp_path: Path, fault_upstream: FaultUpstream,
) -> None:
    """Writing a file in place truncates it first: a poll in between reads an empty
    file. An empty file parses as a policy with no rules, so it used to be swapped
    in, and every rule was off until the next poll (the load test above caught it)."""
    path = write_policy(tmp_path, policy(100000))
    with in_process_gateway(path, fault_upstream.url, policy_watch_interval=0) as gw:
        reloader, state = gw.app.reloader, gw.app.state
        assert reloader is not None and state is not None
        running = state.chain
        for half_done in ("", "\n", "  \n\n"):
            path.write_text(half_done)
            result = gw.call(reloader.reload("test"))
            assert not result.ok and "empty" in result.error
            assert state.chain is running and len(running.rules) == 1
        path.write_text("version: 1\nrules: []\n")  # no rules, on purpose: that loads
        assert gw.call(reloader.reload("test")).ok
        assert state.chain.rules == ()
