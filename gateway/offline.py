"""The policy chain offline: what the proxy does to a request, without an upstream.

For each request: build the `RequestContext` the proxy would build, copy the
identity's standing (suspicion, throttle, perturbation level) into it, run the
chain's request stage, then its complete stage. Counters are a `MemoryBackend`
on a `FakeClock` moved forward to each request's timestamp (never back), so
hours of traffic take seconds and every window, decay and bucket sees the
traffic's own time. Each request finishes before the next one starts: nothing
overlaps, so `concurrent` limits never bind here.

Used by `distill-guard simulate` (labelled synthetic traffic), `replay`
(recorded traffic) and `policy explain` (one request). With `trace=True`
every rule's handler is wrapped so that what it planned, what the counters
answered and what it decided is kept in `ctx.rule_state[TRACE]`.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from gateway.clock import FakeClock
from gateway.errors import GatewayError, dialect_for_path
from gateway.identity import Identity
from gateway.pipeline.chain import Chain, CompiledRule, RequestOutcome
from gateway.pipeline.context import RequestContext
from gateway.pipeline.decision import Decision
from gateway.policies.base import Handler, Result
from gateway.policies.shared import Shared
from gateway.proxy.handler import MODEL_ROUTES
from gateway.signals.suspicion import Standings
from gateway.storage.base import AdmitOp, SettleOp
from gateway.storage.memory import MemoryBackend
from gateway.streaming.sse import SSEEvent

TRACE = "_trace"  # ctx.rule_state key (rule names cannot start with "_")


@dataclass(slots=True)
class OfflineRequest:
    """One request as the proxy would have received it."""

    at: float  # unix seconds
    identity: Identity
    path: str
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    client_ip: str = "127.0.0.1"
    method: str = "POST"
    query: bytes = b""


def build_context(request: OfflineRequest, standings: Standings, now: float) -> RequestContext:
    """The request context the proxy would build, standing included."""
    ctx = RequestContext(
        request_id=uuid.uuid4().hex, method=request.method, path=request.path,
        query=request.query, headers=request.headers, client_ip=request.client_ip,
        dialect=dialect_for_path(request.path), identity=request.identity, body=request.body,
        started=time.perf_counter(),
        is_model_route=request.method == "POST" and request.path in MODEL_ROUTES,
    )
    standing = standings.get(request.identity.id)
    if standing is not None:
        ctx.suspicion = standing.current(now)
        ctx.throttle = standing.throttle
        ctx.perturb_level = standing.perturb_level
    return ctx


@dataclass(slots=True)
class RuleTrace:
    """What one matched rule did with one request."""

    ops: list[AdmitOp] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    admitted: bool = True
    decision: Decision | None = None
    # body fields the decision's rewrite changes: name -> (before, after); None = removed
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)


class TracingHandler(Handler[Any]):
    """Delegates every hook to `inner`, keeping a `RuleTrace` of the request stage."""

    def __init__(self, inner: Handler[Any]) -> None:
        super().__init__(inner.rule, inner.config, inner.shared)
        self.inner = inner
        self.reads_stream = inner.reads_stream
        self.reads_body = inner.reads_body
        self.fallback_replicas = inner.fallback_replicas
        self.isolated = inner.isolated
        self.defer_in_shadow = inner.defer_in_shadow

    def _trace(self, ctx: RequestContext) -> RuleTrace:
        traces: dict[str, RuleTrace] = ctx.rule_state.setdefault(TRACE, {})
        return traces.setdefault(self.rule.name, RuleTrace())

    def plan(self, ctx: RequestContext, group: int) -> Sequence[AdmitOp]:
        ops = self.inner.plan(ctx, group)
        self._trace(ctx).ops = list(ops)
        return ops

    def decide(self, ctx: RequestContext, results: Sequence[Result], admitted: bool) -> Decision:
        decision = self.inner.decide(ctx, results, admitted)
        trace = self._trace(ctx)
        trace.results, trace.admitted, trace.decision = list(results), admitted, decision
        if decision.mutate is not None and ctx.is_model_route:
            after = copy.deepcopy(ctx.json)
            decision.mutate(after)
            trace.changes = body_changes(ctx.json, after)
        return decision

    def on_response_start(
        self, ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.inner.on_response_start(ctx, status, headers)

    def on_stream_event(self, ctx: RequestContext, event: SSEEvent) -> list[SSEEvent] | None:
        return self.inner.on_stream_event(ctx, event)

    def on_response_body(self, ctx: RequestContext, body: bytes) -> bytes | None:
        return self.inner.on_response_body(ctx, body)

    def cross_ops(self, ctx: RequestContext) -> Sequence[AdmitOp]:
        return self.inner.cross_ops(ctx)

    def on_cross_results(self, ctx: RequestContext, results: Sequence[Result]) -> None:
        self.inner.on_cross_results(ctx, results)

    def settle(self, ctx: RequestContext) -> Sequence[SettleOp]:
        return self.inner.settle(ctx)

    def on_complete(self, ctx: RequestContext) -> None:
        self.inner.on_complete(ctx)


def body_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Top-level fields that differ: name -> (before, after), None for a missing one."""
    return {name: (before.get(name), after.get(name))
            for name in sorted(before.keys() | after.keys())
            if before.get(name) != after.get(name) or (name in before) != (name in after)}


@dataclass(slots=True)
class Played:
    """One request after the request and complete stages."""

    ctx: RequestContext
    outcome: RequestOutcome
    error: GatewayError | None  # the refusal, if refused

    @property
    def status(self) -> int:
        """The refusal's status, or 200 for a request that would have gone upstream."""
        return self.error.status if self.error is not None else 200

    @property
    def traces(self) -> dict[str, RuleTrace]:
        """Rule name -> trace, for matched rules (only with `trace=True`)."""
        traces: dict[str, RuleTrace] = self.ctx.rule_state.get(TRACE, {})
        return traces


class OfflineChain:
    """A policy's chain with in-memory counters on a fake clock starting at `start`.

    `watermark_secret`: without one, output_perturbation rules do not plan the
    watermark (as in a gateway without a secret); any value makes them plan it.
    """

    def __init__(
        self, policy: BaseModel, *, start: float, standings: Standings | None = None,
        trace: bool = False, watermark_secret: bytes = b"",
    ) -> None:
        self.clock = FakeClock(start)
        self.storage = MemoryBackend(clock=self.clock)
        self.standings = standings if standings is not None else Standings()
        shared = Shared(standings=self.standings, watermark_secret=watermark_secret)
        chain = Chain.from_policy(policy, shared)
        if trace:
            chain = Chain([CompiledRule(r.info, r.matches, TracingHandler(r.handler))
                           for r in chain.rules], policy)
        self.chain = chain

    def advance_to(self, at: float) -> bool:
        """Move the clock to `at`; False (clock kept) when `at` is already past."""
        now = self.clock.now()
        if at < now:
            return False
        self.clock.advance(at - now)
        return True

    def context(self, request: OfflineRequest) -> RequestContext:
        return build_context(request, self.standings, self.clock.now())

    async def play(self, request: OfflineRequest) -> Played:
        """Advance the clock to the request and run it through both stages."""
        self.advance_to(request.at)
        return await self.run(self.context(request))

    async def run(self, ctx: RequestContext) -> Played:
        error: GatewayError | None = None
        try:
            if ctx.is_model_route:
                _ = ctx.json  # the proxy refuses malformed JSON (400) before any policy
            outcome = await self.chain.run_request(ctx, self.storage)
        except GatewayError as refusal:
            error = refusal
            ctx.refused, ctx.status = True, refusal.status
            if ctx.decision == "allow":  # refused before any rule decided (as the proxy)
                ctx.decision = "error"
            outcome = ctx.rule_state.pop("_outcome", RequestOutcome())
        else:
            ctx.sent_upstream, ctx.status = True, 200
        if outcome.active:
            await Chain.complete(outcome, ctx)
        return Played(ctx, outcome, error)
