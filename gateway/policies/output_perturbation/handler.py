"""`output_perturbation`: guard what callers may ask for, perturb what they get back.

Request stage (`decide`, no counters):
- logprobs with `logit_bias` is refused (400) in every mode: together they
  let a caller recover the model's output projection;
- `logprobs.mode: refuse` refuses any request for logprobs (400); `cap`
  silently lowers `top_logprobs` (chat) / `logprobs` (legacy completions);
- `max_n` silently lowers `n`; `temperature` clamps a given temperature.

Response stages (`on_response_body`, `on_stream_event`): keyed logprob noise,
rounding and top-k; reasoning pass/drop/truncate/replace; the lexical
watermark on assistant text. The settings are those of the identity's
perturbation level (`escalate`), fixed when the request arrives.

A shadow rule never changes the request or the response: it counts what it
would have done in `distill_guard_perturbations_total{shadow="true"}`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from gateway.errors import Dialect, GatewayError
from gateway.pipeline.context import RequestContext
from gateway.pipeline.decision import ALLOW, Action, Decision, reject
from gateway.policies.base import Handler as BaseHandler
from gateway.policies.base import Result, RuleInfo
from gateway.policies.output_perturbation import anthropic_rewrite, openai_rewrite
from gateway.policies.output_perturbation.logprobs import LogprobPerturber, derive_key
from gateway.policies.output_perturbation.marks import watermarker
from gateway.policies.output_perturbation.schema import Config, Perturbation
from gateway.policies.output_perturbation.state import (
    LOGIT_BIAS_REFUSED,
    LOGPROBS_PERTURBED,
    LOGPROBS_REFUSED,
    N_CAPPED,
    REASONING,
    TEMPERATURE_CLAMPED,
    TOP_LOGPROBS_CAPPED,
    WATERMARKED,
    RequestState,
    Route,
    count,
)
from gateway.streaming.sse import SSEEvent

log = logging.getLogger("distill_guard.output_perturbation")

ROUTES: dict[str, Route] = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "legacy",
    "/v1/messages": "messages",
}
_JSON_FORMATS = frozenset({"json_object", "json_schema"})


class Handler(BaseHandler[Config]):
    def __init__(self, rule: RuleInfo, config: Config, shared: Any = None) -> None:
        super().__init__(rule, config, shared)
        secret = getattr(shared, "watermark_secret", b"")
        self._secret: bytes = secret if isinstance(secret, bytes) else b""
        # Without a deployment secret (bare chains in tests and tools) the noise
        # is keyed by a per-process random key: deterministic within the process.
        self._noise_secret = self._secret or os.urandom(32)
        self._factory = watermarker() if self._secret else None
        wants_mark = any(level.watermark.enabled for level in config.levels)
        if wants_mark and self._factory is None:
            log.warning("rule %s: watermark enabled but no watermark secret is configured; "
                        "text is not marked", rule.name)
        self.reads_body = self.reads_stream = any(
            self._touches_response(level) for level in config.levels)

    def reads_response(self, ctx: RequestContext) -> bool:
        # Only requests that asked for something this rule rewrites (its state
        # exists): the rest are relayed byte for byte, not decoded.
        return self.rule.name in ctx.rule_state

    def _touches_response(self, level: Perturbation) -> bool:
        logprobs = level.logprobs
        return (
            (logprobs.mode != "refuse" and _perturbs_logprobs(level))
            or level.reasoning.mode != "pass"
            or (level.watermark.enabled and self._factory is not None)
        )

    # -- request stage -----------------------------------------------------------------
    def decide(
        self, ctx: RequestContext, results: Sequence[Result], admitted: bool
    ) -> Decision:
        route = ROUTES.get(ctx.path) if ctx.is_model_route else None
        if route is None:
            return ALLOW
        body = ctx.json
        settings = self.config.at_level(ctx.perturb_level)
        refusal = _refusal(route, body, settings)
        if refusal is not None:
            kind, error = refusal
            count(self.rule.name, kind, self.rule.shadow)
            return reject(error)
        changes = _request_changes(route, body, settings)
        for kind in changes:
            count(self.rule.name, kind, self.rule.shadow)
        state = self._state(ctx, route, body, settings)
        if state is not None:
            ctx.rule_state[self.rule.name] = state
        if not changes:
            return ALLOW
        return Decision(Action.MODIFY, mutate=_updater(dict(changes.values())))

    def _state(self, ctx: RequestContext, route: Route, body: dict[str, Any],
               settings: Perturbation) -> RequestState | None:
        perturber = None
        if route != "messages" and _wants_logprobs(route, body) and _perturbs_logprobs(settings):
            config = settings.logprobs
            perturber = LogprobPerturber(
                config, derive_key(self._noise_secret, ctx.identity.id),
                config.max_top_logprobs if config.mode == "cap" else None)
        reasoning = settings.reasoning if settings.reasoning.mode != "pass" else None
        if route == "legacy":
            reasoning = None
        watermark = (settings.watermark.enabled and self._factory is not None
                     and not _json_answer(route, body))
        if perturber is None and reasoning is None and not watermark:
            return None
        marker = None
        if watermark and not self.rule.shadow:
            assert self._factory is not None
            marker = self._factory(self._secret, ctx.identity.id)
        state = RequestState(
            rule=self.rule.name, shadow=self.rule.shadow, route=route, logprobs=perturber,
            reasoning=reasoning, watermark=watermark, marker=marker,
        )
        if perturber is not None:
            state.possible.add(LOGPROBS_PERTURBED)
        if reasoning is not None:
            state.possible.add(REASONING[reasoning.mode])
        if watermark:
            state.possible.add(WATERMARKED)
            if route == "legacy" and body.get("echo") is True:
                state.echo = _prompts(body.get("prompt"))
                n = body.get("n")
                state.n = n if type(n) is int and n > 0 else 1
        return state

    # -- response stages ---------------------------------------------------------------
    def on_response_body(self, ctx: RequestContext, body: bytes) -> bytes | None:
        state: RequestState | None = ctx.rule_state.get(self.rule.name)
        if state is None or not 200 <= ctx.status < 300:
            return None
        try:
            obj = orjson.loads(body)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        if state.route == "messages":
            changed = anthropic_rewrite.body(state, obj)
        else:
            changed = openai_rewrite.body(state, obj)
        if not changed or state.shadow:
            return None
        try:
            return orjson.dumps(obj)
        except TypeError:  # e.g. an integer beyond 64 bits: keep the upstream's body
            return None

    def on_stream_event(self, ctx: RequestContext, event: SSEEvent) -> list[SSEEvent] | None:
        state: RequestState | None = ctx.rule_state.get(self.rule.name)
        if state is None or (state.shadow and state.settled):
            return None
        if ctx.dialect is Dialect.ANTHROPIC:
            return anthropic_rewrite.event(state, event)
        return openai_rewrite.event(state, event)


# -- request guards -------------------------------------------------------------------

def _perturbs_logprobs(settings: Perturbation) -> bool:
    config = settings.logprobs
    return config.mode == "cap" or config.noise > 0 or config.decimals is not None


def _wants_logprobs(route: Route, body: dict[str, Any]) -> bool:
    if route == "chat":
        return bool(body.get("logprobs")) or bool(body.get("top_logprobs"))
    if route == "legacy":
        value = body.get("logprobs")
        return value is not None and value is not False
    return False


def _refusal(route: Route, body: dict[str, Any],
             settings: Perturbation) -> tuple[str, GatewayError] | None:
    if not _wants_logprobs(route, body):
        return None
    names = "'logprobs' and 'top_logprobs'" if route == "chat" else "'logprobs'"
    if body.get("logit_bias"):
        return LOGIT_BIAS_REFUSED, GatewayError(
            400,
            f"'logit_bias' cannot be combined with {names}: together they let a caller "
            "reconstruct the model's output layer. Send the request with one or the other.",
            code="logit_bias_with_logprobs", param="logit_bias")
    if settings.logprobs.mode == "refuse":
        return LOGPROBS_REFUSED, GatewayError(
            400, f"Log probabilities are not available through this gateway: remove {names}.",
            code="logprobs_not_allowed", param="logprobs")
    return None


def _request_changes(route: Route, body: dict[str, Any],
                     settings: Perturbation) -> dict[str, tuple[str, object]]:
    """metric kind -> (body field, new value), for every field to rewrite."""
    changes: dict[str, tuple[str, object]] = {}
    logprobs = settings.logprobs
    if logprobs.mode == "cap" and route != "messages":
        name = "top_logprobs" if route == "chat" else "logprobs"
        value = body.get(name)
        if type(value) is int and value > logprobs.max_top_logprobs:
            changes[TOP_LOGPROBS_CAPPED] = (name, logprobs.max_top_logprobs)
    n = body.get("n")
    if settings.max_n is not None and route != "messages" and type(n) is int and n > settings.max_n:
        changes[N_CAPPED] = ("n", settings.max_n)
    temperature = body.get("temperature")
    if (settings.temperature is not None and isinstance(temperature, int | float)
            and not isinstance(temperature, bool)
            and not (route == "messages" and _thinking_on(body))):
        low, high = settings.temperature
        clamped = min(max(temperature, low), high)
        if clamped != temperature:
            changes[TEMPERATURE_CLAMPED] = ("temperature", clamped)
    return changes


def _updater(updates: dict[str, object]) -> Callable[[dict[str, Any]], None]:
    def apply(body: dict[str, Any]) -> None:
        body.update(updates)

    return apply


def _thinking_on(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def _json_answer(route: Route, body: dict[str, Any]) -> bool:
    """The answer is JSON (structured output or JSON prefill): never watermark it."""
    if route == "chat":
        fmt = body.get("response_format")
        return isinstance(fmt, dict) and fmt.get("type") in _JSON_FORMATS
    if route == "messages":
        fmt = body.get("output_format")
        if isinstance(fmt, dict) and fmt.get("type") in _JSON_FORMATS:
            return True
        messages = body.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
            last = messages[-1]
            if last.get("role") == "assistant":  # a prefill the answer continues
                prefill = last.get("content")
                if isinstance(prefill, list):
                    prefill = "".join(b.get("text", "") for b in prefill
                                      if isinstance(b, dict) and b.get("type") == "text")
                return isinstance(prefill, str) and prefill.lstrip()[:1] in ("{", "[")
    return False


def _prompts(prompt: object) -> list[str] | None:
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    return None

