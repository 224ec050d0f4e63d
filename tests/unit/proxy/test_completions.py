"""The complete stage in batches (gateway/proxy/completions.py) on real memory counters."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest

from gateway.clock import FakeClock
from gateway.errors import Dialect
from gateway.identity import Identity
from gateway.pipeline.chain import Chain, CompiledRule
from gateway.pipeline.context import RequestContext
from gateway.pipeline.loader import parse_policy
from gateway.policies.base import Handler, RuleInfo
from gateway.policies.shared import Shared
from gateway.proxy.completions import CompletionQueue
from gateway.signals.suspicion import Standings
from gateway.storage.base import Admission, AdmitOp, SettleOp
from gateway.storage.memory import MemoryBackend

POLICY = """
version: 1
rules:
  - name: rate
    kind: rate_shaping
    config:
      limits:
        - requests: 1000/min
        - concurrent: 2
  - name: diversity
    kind: prompt_diversity
    shadow: true
    config:
      steps:
        - {at: 0.0, action: flag}
"""


class RecordingMemory(MemoryBackend):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.admits: list[int] = []
        self.settles: list[int] = []

    async def admit(self, ops: Sequence[AdmitOp]) -> Admission:
        self.admits.append(len(ops))
        return await super().admit(ops)

    async def settle(self, ops: Sequence[SettleOp]) -> None:
        self.settles.append(len(ops))
        await super().settle(ops)


def context(n: int) -> RequestContext:
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": f"hi {n}"}]})
    return RequestContext(
        request_id=str(n), method="POST", path="/v1/chat/completions", query=b"", headers=[],
        client_ip="127.0.0.1", dialect=Dialect.OPENAI, identity=Identity(f"id{n % 3}", True),
        body=body, started=0.0, is_model_route=True)


async def test_requests_finishing_together_share_two_calls() -> None:
    standings = Standings()
    chain = Chain.from_policy(parse_policy(POLICY), Shared(standings=standings))
    storage = RecordingMemory(FakeClock())
    done: list[tuple[str, int]] = []
    queue = CompletionQueue(lambda ctx, status: done.append((ctx.request_id, status)))
    contexts = [context(n) for n in range(6)]
    outcomes = []
    for ctx in contexts:  # two per identity: the concurrency limit of 2 is reached
        outcomes.append(await chain.run_request(ctx, storage))
        ctx.sent_upstream, ctx.status = True, 200
    request_path_calls = len(storage.admits)
    for outcome, ctx in zip(outcomes, contexts, strict=True):
        queue.submit(outcome, ctx, 200)
    await queue.drain()
    # one admit (every deferred and cross-identity op) and one settle for all six
    assert len(storage.admits) - request_path_calls == 1
    assert len(storage.settles) == 1
    assert sorted(done) == sorted((str(n), 200) for n in range(6))
    # settled: each identity's two concurrency slots are free again
    for n in range(3):
        assert (await chain.run_request(context(n), storage)).active
    # and the shadow rule recorded every identity
    assert all(standings.lookup(f"id{n}")[1] is not None for n in range(3))


class BrokenSettle(Handler[None]):
    def settle(self, ctx: RequestContext) -> Sequence[SettleOp]:
        raise RuntimeError("a bug in one rule")


async def test_one_request_failing_does_not_cost_the_others_their_settle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    chain = Chain.from_policy(parse_policy(POLICY), Shared(standings=Standings()))
    storage = RecordingMemory(FakeClock())
    done: list[str] = []
    queue = CompletionQueue(lambda ctx, status: done.append(ctx.request_id))
    good, bad = context(1), context(2)
    good_outcome = await chain.run_request(good, storage)
    bad_outcome = await chain.run_request(bad, storage)
    bad_outcome.active.append(CompiledRule(
        RuleInfo("broken", "test", False, "allow"), lambda ctx: True, BrokenSettle(None, None)))
    queue.submit(good_outcome, good, 200)
    queue.submit(bad_outcome, bad, 200)
    await queue.drain()
    assert sorted(done) == ["1", "2"]
    assert storage.settles == [3]  # the good request's: rate's slot and tokens, its state
    assert any("failed for request 2" in r.getMessage() for r in caplog.records)
