"""The policy chain: rules in file order, at each stage of a request.

The chain owns what every kind shares:
- `match`: a rule only sees requests it matches (decided once, at request time);
- one counter round trip for all matched rules (`admit`), one after (`settle`);
- `shadow`: the rule's decision is counted, never enforced; its counters are
  taken in a group of their own so they never block an enforced rule;
- `on_storage_error`: when shared storage fails, `deny` refuses with 503 and
  `allow` keeps the rule roughly enforced on a local in-process fallback, each
  limit divided by the rule's `fallback_replicas` (or skips it without one).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from gateway import metrics
from gateway.errors import GatewayError
from gateway.pipeline.context import RequestContext
from gateway.pipeline.decision import Action, Decision
from gateway.pipeline.match import Predicate, compile_match
from gateway.policies.base import Handler, RuleInfo
from gateway.policies.registry import kinds
from gateway.policies.shared import Shared
from gateway.storage.base import (
    Admission,
    AdmitOp,
    CircuitOpen,
    CounterBackend,
    Observe,
    ObserveResult,
    OpResult,
    SettleOp,
    StorageError,
)
from gateway.storage.fallback import scale_op
from gateway.streaming.sse import SSEEvent

log = logging.getLogger("distill_guard.chain")

ENFORCED_GROUP = 0


@dataclass(frozen=True, slots=True)
class CompiledRule:
    info: RuleInfo
    matches: Predicate
    handler: Handler[Any]


@dataclass(slots=True)
class RequestOutcome:
    """What the request stage decided; the proxy acts on it."""

    delay: float = 0.0
    active: list[CompiledRule] = field(default_factory=list)
    # Shadow rules whose whole work waits for the complete stage (with their group).
    deferred: list[tuple[CompiledRule, int]] = field(default_factory=list)
    # Where this request's counters were taken, so they are settled there too.
    storage: CounterBackend | None = None

    # Shadow rules see the response too (they count what they would have
    # charged); their handlers must not change what the client gets beyond
    # undoing their own request-side changes (e.g. an added usage chunk).
    def stream_rules(self, ctx: RequestContext) -> list[CompiledRule]:
        return [r for r in self.active
                if r.handler.reads_stream and r.handler.reads_response(ctx)]

    def body_rules(self, ctx: RequestContext) -> list[CompiledRule]:
        return [r for r in self.active
                if r.handler.reads_body and r.handler.reads_response(ctx)]


class Chain:
    def __init__(self, rules: Sequence[CompiledRule], policy: BaseModel) -> None:
        self.rules = tuple(rules)
        self.policy = policy

    @classmethod
    def from_policy(cls, policy: BaseModel, shared: Shared | None = None) -> Chain:
        registry = kinds()
        compiled = []
        for rule in getattr(policy, "rules", []):
            info = RuleInfo(rule.name, rule.kind, rule.shadow, rule.on_storage_error)
            handler = registry[rule.kind].handler(info, rule.config, shared)
            compiled.append(CompiledRule(info, compile_match(rule.match), handler))
        return cls(compiled, policy)

    async def run_request(
        self, ctx: RequestContext, storage: CounterBackend,
        fallback: CounterBackend | None = None,
    ) -> RequestOutcome:
        """Match, take counters in one round trip, decide; raise GatewayError to refuse."""
        outcome = RequestOutcome(storage=storage)
        matched = []
        for index, rule in enumerate(rule for rule in self.rules if rule.matches(ctx)):
            if rule.info.shadow and rule.handler.defer_in_shadow:
                outcome.deferred.append((rule, self._group(index, rule)))
                outcome.active.append(rule)
            else:
                matched.append(rule)
        if not matched:
            return outcome
        ops: list[AdmitOp] = []
        spans: list[tuple[int, int]] = []
        for index, rule in enumerate(matched):
            group = self._group(index, rule)
            start = len(ops)
            ops.extend(rule.handler.plan(ctx, group))
            spans.append((start, len(ops)))
        results: Sequence[OpResult | ObserveResult] = ()
        groups: dict[int, bool] = {}
        storage_failed = False
        if ops:
            try:
                admission = await storage.admit(ops)
            except StorageError as exc:
                storage_failed = True
                metrics.STORAGE_ERRORS.labels(operation="admit").inc()
                if not isinstance(exc, CircuitOpen):  # the breaker logs its own opening
                    log.warning("counter storage failed: %s", exc)
                if fallback is not None:
                    admission = await fallback.admit(self._scaled(matched, spans, ops))
                    outcome.storage = fallback
                    metrics.FALLBACK_ADMITS.inc()
            if not storage_failed or outcome.storage is fallback:
                results, groups = admission.results, admission.groups_allowed
                ctx.storage_now = admission.now
        first_refusal: GatewayError | None = None
        for index, (rule, (start, end)) in enumerate(zip(matched, spans, strict=True)):
            if storage_failed and end > start and (
                    not results or rule.info.on_storage_error == "deny"):
                decision = self._storage_failure(rule)
            else:
                group = self._group(index, rule)
                decision = rule.handler.decide(ctx, results[start:end], groups.get(group, True))
            self._count(rule, decision, ctx)
            if rule.info.shadow:
                outcome.active.append(rule)
                continue
            ctx.response_headers.extend(decision.headers)
            if decision.action is Action.REJECT and first_refusal is None:
                first_refusal = decision.error or GatewayError(403, "Refused by policy.")
                ctx.decision = f"reject:{rule.info.name}"
            elif decision.action is Action.DELAY:
                outcome.delay = max(outcome.delay, decision.delay)
                if ctx.decision == "allow":
                    ctx.decision = f"delay:{rule.info.name}"
            elif decision.action is Action.MODIFY and decision.mutate is not None:
                decision.mutate(ctx.json)
                ctx.mark_json_changed()
                if ctx.decision == "allow":
                    ctx.decision = f"modify:{rule.info.name}"
            outcome.active.append(rule)
        if first_refusal is not None:
            ctx.rule_state["_outcome"] = outcome
            first_refusal.headers = {
                **{k.decode("latin-1"): v.decode("latin-1") for k, v in ctx.response_headers},
                **first_refusal.headers,
            }
            raise first_refusal
        return outcome

    @staticmethod
    def _count(rule: CompiledRule, decision: Decision, ctx: RequestContext) -> None:
        metrics.child(metrics.DECISIONS, rule.info.name, rule.info.kind,
                      decision.action.value, "true" if rule.info.shadow else "false").inc()
        if rule.info.shadow and decision.action is not Action.ALLOW:
            ctx.rule_state.setdefault("_shadow", []).append(
                (rule.info.name, decision.action.value))

    @staticmethod
    def _group(index: int, rule: CompiledRule) -> int:
        """Enforced rules are all-or-nothing together; shadow and isolated ones alone."""
        return index + 1 if rule.info.shadow or rule.handler.isolated else ENFORCED_GROUP

    @staticmethod
    def _scaled(
        matched: Sequence[CompiledRule], spans: Sequence[tuple[int, int]], ops: list[AdmitOp]
    ) -> list[AdmitOp]:
        out: list[AdmitOp] = []
        for rule, (start, end) in zip(matched, spans, strict=True):
            out.extend(scale_op(op, rule.handler.fallback_replicas) for op in ops[start:end])
        return out

    @staticmethod
    def _storage_failure(rule: CompiledRule) -> Decision:
        if rule.info.on_storage_error == "deny" and not rule.info.shadow:
            return Decision(Action.REJECT, error=GatewayError(
                503, "The gateway cannot check limits right now; try again shortly.",
                code="storage_unavailable", headers={"retry-after": "1"},
            ))
        return Decision(Action.ALLOW)

    # -- response side -------------------------------------------------------
    @staticmethod
    def response_start(
        outcome: RequestOutcome, ctx: RequestContext, status: int,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        for rule in outcome.active:
            if not rule.info.shadow:
                rule.handler.on_response_start(ctx, status, headers)

    @staticmethod
    def stream_event(
        rules: Sequence[CompiledRule], ctx: RequestContext, event: SSEEvent
    ) -> list[SSEEvent]:
        events = [event]
        for rule in rules:
            out: list[SSEEvent] = []
            for current in events:
                replaced = rule.handler.on_stream_event(ctx, current)
                out.extend([current] if replaced is None else replaced)
            events = out
        return events

    @staticmethod
    def response_body(rules: Sequence[CompiledRule], ctx: RequestContext, body: bytes) -> bytes:
        for rule in rules:
            replaced = rule.handler.on_response_body(ctx, body)
            if replaced is not None:
                body = replaced
        return body

    @staticmethod
    async def complete(outcome: RequestOutcome, ctx: RequestContext) -> None:
        """The complete stage of one request (see `complete_many`)."""
        await Chain.complete_many([(outcome, ctx)])

    @staticmethod
    async def complete_many(items: Sequence[tuple[RequestOutcome, RequestContext]]) -> None:
        """Run deferred shadow rules and cross-identity counters, reconcile counters and
        let rules record each exchange: for requests that share a storage, one admit
        and one settle call in all. Only observe ops (which never refuse) are merged
        across requests; a request planning anything else gets calls of its own."""
        batches: dict[int, list[_Finishing]] = {}
        alone: list[_Finishing] = []
        for outcome, ctx in items:
            finishing = _Finishing.start(outcome, ctx)
            if finishing is None:
                continue
            if all(isinstance(op, Observe) for op in finishing.ops):
                batches.setdefault(id(outcome.storage), []).append(finishing)
            else:
                alone.append(finishing)
        for batch in [*batches.values(), *([f] for f in alone)]:
            await Chain._finish(batch[0].outcome.storage, batch)

    @staticmethod
    async def _finish(storage: CounterBackend | None, batch: Sequence[_Finishing]) -> None:
        ops = [op for finishing in batch for op in finishing.ops]
        admission: Admission | None = None
        if ops and storage is not None:
            try:
                admission = await storage.admit(ops)
            except StorageError as exc:
                metrics.STORAGE_ERRORS.labels(operation="cross").inc()
                if not isinstance(exc, CircuitOpen):
                    log.warning("cross-identity counters failed: %s", exc)
        settle: list[SettleOp] = []
        start = 0
        for finishing in batch:
            end = start + len(finishing.ops)
            part = None if admission is None else Admission(
                admission.results[start:end], admission.groups_allowed, admission.now)
            start = end
            try:  # one request's failing hook must not cost the others their settle
                settle.extend(finishing.record(part))
            except Exception:
                log.exception("complete stage failed for request %s", finishing.ctx.request_id)
        if settle and storage is not None:
            try:
                await storage.settle(settle)
            except StorageError as exc:
                metrics.STORAGE_ERRORS.labels(operation="settle").inc()
                if not isinstance(exc, CircuitOpen):
                    log.warning("counter settle failed: %s", exc)

    @staticmethod
    def _decide_deferred(
        outcome: RequestOutcome, ctx: RequestContext, admission: Admission | None,
        spans: Sequence[tuple[int, int]],
    ) -> None:
        """Decisions of deferred shadow rules: recorded, never acted on. Without their
        counters (storage failed) a shadow rule would have let the request through."""
        if admission is not None:
            ctx.storage_now = admission.now
        for (rule, group), (start, end) in zip(outcome.deferred, spans, strict=True):
            if admission is None and end > start:
                decision = Decision(Action.ALLOW)
            else:
                results = admission.results[start:end] if admission is not None else ()
                groups = admission.groups_allowed if admission is not None else {}
                decision = rule.handler.decide(ctx, results, groups.get(group, True))
            Chain._count(rule, decision, ctx)



@dataclass(slots=True)
class _Finishing:
    """One request in the complete stage: its deferred and cross-identity ops."""

    outcome: RequestOutcome
    ctx: RequestContext
    ops: list[AdmitOp]
    spans: list[tuple[int, int]]  # per deferred rule, its ops
    cross: list[tuple[CompiledRule, Sequence[AdmitOp]]]

    @classmethod
    def start(cls, outcome: RequestOutcome, ctx: RequestContext) -> _Finishing | None:
        try:
            ops: list[AdmitOp] = []
            spans: list[tuple[int, int]] = []
            for rule, group in outcome.deferred:
                begin = len(ops)
                ops.extend(rule.handler.plan(ctx, group))
                spans.append((begin, len(ops)))
            cross = [(rule, rule.handler.cross_ops(ctx)) for rule in outcome.active]
        except Exception:
            log.exception("complete stage failed for request %s", ctx.request_id)
            return None
        ops.extend(op for _, rule_ops in cross for op in rule_ops)
        return cls(outcome, ctx, ops, spans, cross)

    def record(self, admission: Admission | None) -> list[SettleOp]:
        """Decide deferred rules, hand out cross results; return the settle ops."""
        outcome, ctx = self.outcome, self.ctx
        Chain._decide_deferred(outcome, ctx, admission, self.spans)
        if admission is not None:
            results = admission.results[self.spans[-1][1] if self.spans else 0:]
            start = 0
            for rule, rule_ops in self.cross:
                if rule_ops:
                    end = start + len(rule_ops)
                    rule.handler.on_cross_results(ctx, results[start:end])
                    start = end
        ops: list[SettleOp] = []
        fallback = outcome.storage is not None and outcome.storage.name == "memory-fallback"
        for rule in outcome.active:
            settle = rule.handler.settle(ctx)
            if fallback:
                settle = [scale_op(op, rule.handler.fallback_replicas) for op in settle]
            ops.extend(settle)
            rule.handler.on_complete(ctx)
        return ops
