"""`rate_shaping` handler: GCRA buckets and in-flight leases, reconciled with usage.

Request stage: estimate input tokens, reserve the expected output, and take
every limit's bucket in the chain's single round trip. Response stages: read
the real `usage` (non-streamed body, OpenAI stream with include_usage,
Anthropic message_start/message_delta). Complete stage: charge or refund the
difference, release the in-flight lease — one more round trip, off the
client's path.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import Dialect, GatewayError
from gateway.pipeline.context import RequestContext
from gateway.pipeline.decision import ALLOW, Action, Decision
from gateway.policies.base import Handler as BaseHandler
from gateway.policies.base import RuleInfo
from gateway.policies.rate_shaping.headers import LimitView, rate_limit_headers
from gateway.policies.rate_shaping.schema import Config, Limit
from gateway.storage.base import (
    Acquire,
    Adjust,
    AdmitOp,
    Lease,
    OpResult,
    Release,
    SettleOp,
    identity_key,
)
from gateway.streaming.sse import SSEEvent
from gateway.streaming.usage import (
    StreamUsageTracker,
    UsageCounts,
    is_openai_usage_only_chunk,
    usage_from_body,
)
from gateway.tokens import estimate_input_tokens, requested_output_tokens, tokens_from_chars

LEASE_TTL = 3600.0  # a crashed gateway's in-flight slots free themselves after this
_TOKEN_DIMENSIONS = ("input_tokens", "output_tokens", "total_tokens")
_USAGE_ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/embeddings")


@dataclass(slots=True)
class _Request:
    """This rule's view of one request, from plan to settle."""

    ops: list[Acquire | Lease]
    input_estimate: int
    output_reserved: int
    written: bool = False  # our buckets were taken (group admitted)
    degraded: bool = False
    delayed: bool = False
    strip_usage_chunk: bool = False
    tracker: StreamUsageTracker | None = None
    usage: UsageCounts | None = None
    charged: dict[int, float] = field(default_factory=dict)  # op index -> units taken
    scale: float = 1.0  # units charged per unit used (throttled identities pay more)


class Handler(BaseHandler[Config]):
    def __init__(self, rule: RuleInfo, config: Config, shared: Any = None) -> None:
        super().__init__(rule, config, shared)
        self.fallback_replicas = config.fallback_replicas
        self._counts_tokens = any(limit.dimension in _TOKEN_DIMENSIONS
                                  for limit in config.limits)
        self.reads_body = self.reads_stream = self._counts_tokens
        # degrade lets refused requests through: its refusal must not undo other rules
        self.isolated = config.on_exceed == "degrade"
        self._waiting = 0  # requests this process holds in `delay` right now

    # -- request stage -------------------------------------------------------
    def _scope(self, ctx: RequestContext) -> tuple[str, str]:
        """(hash-tag id, key suffix) for who shares the limits."""
        key = self.config.key
        if key == "identity_model":
            return ctx.identity.id, "m=" + (ctx.model or "")
        if key == "tier":
            return "tier=" + (ctx.identity.tier or "none"), ""
        if key == "tenant":
            return "tenant=" + (ctx.identity.tenant or "none"), ""
        if key == "global":
            return "global", ""
        return ctx.identity.id, ""

    def plan(self, ctx: RequestContext, group: int) -> Sequence[AdmitOp]:
        config = self.config
        body = ctx.json if ctx.is_model_route else {}
        counts = self._counts_tokens and ctx.path in _USAGE_ROUTES
        input_estimate = estimate_input_tokens(body) if counts else 0
        output = 0
        if counts and ctx.path != "/v1/embeddings":
            output = requested_output_tokens(body, config.default_output_tokens)
        # A throttled identity (prompt_diversity) pays 1/throttle units per unit.
        scale = 1.0 / ctx.throttle if ctx.throttle > 0 else 1.0
        costs = {"requests": scale, "input_tokens": scale * input_estimate,
                 "output_tokens": scale * output, "total_tokens": scale * (input_estimate + output)}
        delay_ok = (config.on_exceed == "delay" and not self.rule.shadow
                    and self._waiting < config.max_queue)
        max_delay = config.max_delay if delay_ok else 0.0
        tag, suffix = self._scope(ctx)
        # Our own id, never the client's X-Request-ID: a reused lease id would
        # be admitted as "already held" and dodge the concurrency limit.
        lease_id = uuid.uuid4().hex
        ops: list[Acquire | Lease] = []
        for index, limit in enumerate(config.limits):
            key = identity_key(tag, "rs", self.rule.name, str(index), suffix)
            if limit.concurrent is not None:
                ops.append(Lease(key, limit.concurrent, lease_id, LEASE_TTL, group))
                continue
            rate = limit.rate
            assert rate is not None
            ops.append(Acquire(key, rate.amount, rate.period, limit.burst or rate.amount,
                               costs[limit.dimension], max_delay, group))
        state = _Request(ops, input_estimate, output, scale=scale)
        if counts and ctx.streaming:
            state.tracker = StreamUsageTracker(ctx.dialect.value)
            if ctx.dialect is Dialect.OPENAI and ctx.path != "/v1/embeddings":
                state.strip_usage_chunk = _ask_for_stream_usage(ctx)
        ctx.rule_state[self.rule.name] = state
        return ops

    def decide(
        self, ctx: RequestContext, results: Sequence[OpResult], admitted: bool
    ) -> Decision:
        state: _Request = ctx.rule_state[self.rule.name]
        headers = self._headers(results) if self.config.headers else []
        refused = [i for i, r in enumerate(results) if not r.allowed]
        if admitted and not refused:
            state.written = True
            state.charged = {i: op.cost for i, op in enumerate(state.ops)
                             if isinstance(op, Acquire)}
            delay = max((r.delay for r in results), default=0.0)
            if delay > 0:
                state.delayed = True
                self._waiting += 1
                return Decision(Action.DELAY, delay=delay, headers=headers)
            return Decision(Action.ALLOW, headers=headers)
        if not refused:
            return ALLOW  # another rule refused the shared group; it speaks for it
        over_concurrency = any(isinstance(state.ops[i], Lease) for i in refused)
        if (self.config.on_exceed == "degrade" and self.config.degrade is not None
                and not over_concurrency):  # in-flight slots cannot be cheapened
            state.degraded = True
            return Decision(Action.MODIFY, mutate=self._degrader(ctx), headers=headers)
        return Decision(Action.REJECT, error=self._refusal(state, results, refused),
                        headers=headers)

    def _refusal(
        self, state: _Request, results: Sequence[OpResult], refused: list[int]
    ) -> GatewayError:
        waits = []
        for i in refused:
            limit = self.config.limits[i]
            # A lease's retry_after is the oldest lease's expiry, not a useful hint.
            waits.append(1.0 if limit.concurrent is not None else results[i].retry_after)
        wait = max(max(waits), 0.001)
        worst = self.config.limits[refused[waits.index(max(waits))]]
        op = state.ops[refused[waits.index(max(waits))]]
        if isinstance(op, Acquire) and op.cost > op.burst:
            message = (f"This request needs {op.cost:g} {worst.dimension.replace('_', ' ')}, "
                       f"more than the limit allows at once ({op.burst:g}). "
                       "Lower max_tokens or shorten the prompt.")
        else:
            message = (f"Rate limit reached for {worst.dimension.replace('_', ' ')} "
                       f"({_describe(worst)}). Please retry after {math.ceil(wait)}s.")
        return GatewayError(429, message, code="rate_limit_exceeded", headers={
            "retry-after": str(math.ceil(wait)),
            "retry-after-ms": str(math.ceil(wait * 1000)),
        })

    def _degrader(self, ctx: RequestContext) -> Callable[[dict[str, Any]], None]:
        degrade = self.config.degrade
        assert degrade is not None
        # Clamp the field the client used; reasoning models refuse `max_tokens`,
        # so a chat request that set neither gets `max_completion_tokens`.
        default_field: str = ("max_completion_tokens" if ctx.path == "/v1/chat/completions"
                              else "max_tokens")

        def cheapen(body: dict[str, Any]) -> None:
            if degrade.model is not None:
                body["model"] = degrade.model
            if degrade.max_tokens is not None:
                used: list[str] = [
                    f for f in ("max_completion_tokens", "max_tokens") if f in body]
                for name in used or [default_field]:
                    value = body.get(name)
                    current = value if isinstance(value, int) else degrade.max_tokens
                    body[name] = min(current, degrade.max_tokens)

        return cheapen

    def _headers(self, results: Sequence[OpResult]) -> list[tuple[bytes, bytes]]:
        views = []
        for limit, result in zip(self.config.limits, results, strict=True):
            rate = limit.rate
            views.append(LimitView(limit.dimension, result.limit,
                                   rate.period if rate is not None else 0.0, result))
        return rate_limit_headers(views)

    # -- response stages -----------------------------------------------------
    def on_response_body(self, ctx: RequestContext, body: bytes) -> bytes | None:
        state: _Request | None = ctx.rule_state.get(self.rule.name)
        if state is not None and 200 <= ctx.status < 300:
            state.usage = usage_from_body(ctx.dialect.value, body)
        return None

    def on_stream_event(self, ctx: RequestContext, event: SSEEvent) -> list[SSEEvent] | None:
        state: _Request | None = ctx.rule_state.get(self.rule.name)
        if state is None or state.tracker is None:
            return None
        state.tracker.observe(event)
        if state.strip_usage_chunk and is_openai_usage_only_chunk(event):
            return []  # the client did not ask for it; we did, to count tokens
        return None

    # -- complete stage ------------------------------------------------------
    def settle(self, ctx: RequestContext) -> Sequence[SettleOp]:
        state: _Request | None = ctx.rule_state.get(self.rule.name)
        if state is None:
            return ()
        if state.delayed:
            self._waiting -= 1
        if not (state.written or state.degraded) or (self.rule.shadow and not state.written):
            return ()
        actual = self._actual_costs(ctx, state)
        ops: list[SettleOp] = []
        for index, op in enumerate(state.ops):
            if isinstance(op, Lease):
                if state.written:
                    ops.append(Release(op.key, op.lease_id))
                continue
            limit = self.config.limits[index]
            delta = actual[limit.dimension] * state.scale - state.charged.get(index, 0.0)
            if delta:
                ops.append(Adjust(op.key, op.rate, op.period, op.burst, delta))
        return ops

    def _actual_costs(self, ctx: RequestContext, state: _Request) -> dict[str, float]:
        """What the request really cost, by dimension (see README: token accounting)."""
        if not ctx.sent_upstream:  # refused, or the client left while delayed
            return {"requests": 0.0, "input_tokens": 0.0, "output_tokens": 0.0,
                    "total_tokens": 0.0}
        usage = state.tracker.usage if state.tracker is not None else state.usage
        input_tokens = float(state.input_estimate)
        output_tokens = 0.0
        if usage is not None and usage.input_tokens is not None:
            input_tokens = float(usage.input_tokens)
        if usage is not None and usage.output_tokens is not None:
            output_tokens = float(usage.output_tokens)
        elif state.tracker is not None:
            # cut short, or no usage reported: charge what was sent
            output_tokens = float(tokens_from_chars(state.tracker.output_text_chars))
        elif not 200 <= ctx.status < 300:
            output_tokens = 0.0
        else:
            output_tokens = float(state.output_reserved)  # no usage in body: keep reservation
        return {"requests": 1.0, "input_tokens": input_tokens, "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens}


def _ask_for_stream_usage(ctx: RequestContext) -> bool:
    """Make an OpenAI stream report usage; True when the client had not asked for it."""
    options = ctx.json.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return False
    ctx.json["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                  "include_usage": True}
    ctx.mark_json_changed()
    return True


def _describe(limit: Limit) -> str:
    if limit.concurrent is not None:
        return f"{limit.concurrent} in flight"
    rate = limit.rate
    assert rate is not None
    return f"{rate.amount:g} per {rate.period:g}s"
