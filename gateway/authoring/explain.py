"""`distill-guard policy explain`: one request through a policy, rule by rule, offline.

For every rule: whether it matched (and which `match` condition failed), the
counter ops it planned and what the counters read (rate_shaping: limit,
remaining, reset, retry-after, delay; prompt_diversity: the window, each
signal's score and the suspicion), what output_perturbation would change, and
the decision. Then what the chain concluded. Nothing is sent anywhere: the
chain runs on in-memory counters (`gateway.offline`), optionally warmed by
replaying a traffic file first (`history`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from gateway.authoring.replay import Player, response_perturbations, steps_reached
from gateway.authoring.traffic import TrafficEntry
from gateway.errors import GatewayError
from gateway.offline import OfflineRequest, RuleTrace, body_changes
from gateway.pipeline.context import RequestContext, parse_json_object
from gateway.pipeline.decision import Decision
from gateway.pipeline.match import explain_match
from gateway.storage.base import Acquire, AdmitOp, Lease, Observe, ObserveResult, OpResult

# prompt_diversity's names for its window sets and counters (storage keys stay short)
WINDOW_NAMES = {"n": "requests", "r": "reasoning", "tok": "input_tokens", "p": "distinct_prompts",
                "t": "distinct_templates", "b": "topic_buckets"}


def _num(value: float) -> float:
    """Rounded for stable output (counters on a fake clock are exact anyway)."""
    return round(value, 4) + 0.0  # + 0.0: no "-0.0"


@dataclass(slots=True)
class Explained:
    data: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, sort_keys=True) + "\n"


async def explain(
    request: OfflineRequest, policy: BaseModel, *, policy_name: str,
    history: Iterable[TrafficEntry] = (), at: float | None = None,
) -> Explained:
    """Explain `request` at time `at` (default: after `history`, else now).

    `history` (timestamp order) is played first, up to `at`, to warm counters
    and standings.
    """
    player = Player(policy)
    played_before = 0
    for entry in history:
        if at is not None and entry.request.at > at:
            break  # the request comes at `at`: later history has not happened yet
        await player.play(entry.request)
        played_before += 1
    if at is None:
        at = player.offline.clock.now() if player.offline is not None else time.time()
    offline = player.chain(at)
    offline.advance_to(at)
    at = request.at = offline.clock.now()
    ctx = offline.context(request)
    standing = {"suspicion": _num(ctx.suspicion), "throttle": _num(ctx.throttle),
                "perturb_level": ctx.perturb_level}
    _, shadow_standing = offline.standings.lookup(ctx.identity.id)
    if shadow_standing is not None:  # what shadow rules hold (it steers nothing)
        standing["shadow_suspicion"] = _num(shadow_standing.current(at))
    original = _body(ctx)
    # why not, judged as the chain judges: before any rule rewrote the body
    try:
        reasons = {rule.name: explain_match(rule.match, ctx)
                   for rule in getattr(policy, "rules", [])}
    except GatewayError:  # a body that is not a JSON object: refused before any rule
        reasons = {}
    played = await offline.run(ctx)
    rules = []
    for index, rule in enumerate(getattr(policy, "rules", []), 1):
        trace = played.traces.get(rule.name)
        item: dict[str, Any] = {
            "n": index, "name": rule.name, "kind": rule.kind, "shadow": rule.shadow,
            "matched": trace is not None,
        }
        if trace is None:
            item["not_matched_because"] = reasons.get(rule.name) or [
                "the request stopped before this rule (see the result)"]
        else:
            item.update(_rule(rule, trace, ctx))
        rules.append(item)
    result: dict[str, Any] = {"decision": ctx.decision, "status": played.status,
                              "delay": _num(played.outcome.delay)}
    if played.error is not None:
        error = played.error
        result.update(message=error.message, code=error.code,
                      headers=dict(sorted(error.headers.items())))
    shadow = ctx.rule_state.get("_shadow")
    if shadow:
        result["shadow_would"] = {name: action for name, action in shadow}
    if ctx.json_dirty and original is not None:
        result["upstream_body_changes"] = _changes(body_changes(original, ctx.json))
    return Explained({
        "policy": policy_name, "history_requests": played_before, "ts": _num(at),
        "request": {
            "method": ctx.method, "path": ctx.path, "dialect": ctx.dialect.value,
            "model": (original or {}).get("model"),
            "stream": (original or {}).get("stream") is True, "client_ip": ctx.client_ip,
            "identity": ctx.identity.id, "authenticated": ctx.identity.authenticated,
            "tier": ctx.identity.tier, "tenant": ctx.identity.tenant,
        },
        "standing_before": standing,
        "rules": rules,
        "result": result,
        "sent_upstream": False,
    })


def _body(ctx: RequestContext) -> dict[str, Any] | None:
    if not ctx.is_model_route:
        return None
    try:
        return parse_json_object(ctx.body)
    except GatewayError:
        return None


def _changes(changes: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    return {name: {"from": before, "to": after} for name, (before, after) in changes.items()}


def _rule(rule: Any, trace: RuleTrace, ctx: RequestContext) -> dict[str, Any]:
    out: dict[str, Any] = {"decision": _decision(trace.decision, rule.shadow)}
    counters = [_counter(op, result, rule, index)
                for index, (op, result) in enumerate(zip(trace.ops, trace.results, strict=False))]
    if counters:
        out["counters"] = counters
        out["admitted"] = trace.admitted
    state = ctx.rule_state.get(rule.name)
    if rule.kind == "prompt_diversity" and state is not None:
        suspicion = float(getattr(state, "suspicion", 0.0))
        fp = getattr(state, "fp", None)
        out["signals"] = {k: _num(v) for k, v in getattr(state, "signals", {}).items()}
        out["suspicion"] = _num(suspicion)
        out["steps_reached"] = steps_reached(rule.config, suspicion)
        if fp is not None:
            out["prompt"] = {"template": fp.template, "elicits_reasoning": fp.elicits_reasoning,
                             "chars": fp.chars, "skeleton": fp.skeleton[:200]}
    if rule.kind == "output_perturbation":
        out["level"] = ctx.perturb_level
        out["response"] = response_perturbations(state)
    if trace.changes:
        out["changes"] = _changes(trace.changes)
    return out


def _decision(decision: Decision | None, shadow: bool) -> dict[str, Any]:
    if decision is None:
        return {"action": "none"}
    out: dict[str, Any] = {"action": decision.action.value, "enforced": not shadow}
    if decision.delay:
        out["delay"] = _num(decision.delay)
    if decision.error is not None:
        out.update(status=decision.error.status, code=decision.error.code,
                   message=decision.error.message)
        retry = decision.error.headers.get("retry-after")
        if retry is not None:
            out["retry_after"] = retry
    return out


def _counter(op: AdmitOp, result: OpResult, rule: Any, index: int) -> dict[str, Any]:
    out: dict[str, Any] = {"key": op.key}
    limits = getattr(rule.config, "limits", None)
    if isinstance(op, Acquire | Lease) and limits is not None and index < len(limits):
        limit = limits[index]
        rate = limit.rate
        out["limit"] = (f"concurrent {limit.concurrent}" if rate is None
                        else f"{limit.dimension} {rate.amount:g} per {rate.period:g}s")
    if isinstance(op, Acquire):
        out.update(op="bucket", cost=_num(op.cost), burst=_num(op.burst),
                   max_delay=_num(op.max_delay))
    elif isinstance(op, Lease):
        out.update(op="in_flight", slots=op.limit)
    elif isinstance(op, Observe):
        out.update(op="window", window=_num(op.window), slots=op.slots)
    if isinstance(result, ObserveResult):
        out["read"] = {
            "distinct": {WINDOW_NAMES.get(k, k): _num(v) for k, v in result.distinct.items()},
            "totals": {WINDOW_NAMES.get(k, k): _num(v) for k, v in result.totals.items()},
            "tally": _num(result.tally),
            "state": dict(sorted(result.state.items())),
        }
    else:
        out["read"] = {"allowed": result.allowed, "limit": _num(result.limit),
                       "remaining": _num(result.remaining),
                       "reset_after": _num(result.reset_after),
                       "retry_after": _num(result.retry_after), "delay": _num(result.delay)}
    return out


# -- text -----------------------------------------------------------------------------


def render(data: dict[str, Any]) -> str:
    """The explanation (as `Explained.data`) as text."""
    req = data["request"]
    who = "authenticated" if req["authenticated"] else "anonymous"
    lines = [
        f"request: {req['method']} {req['path']} ({req['dialect']}), model {req['model'] or '-'}, "
        f"identity {req['identity']} ({who}, tier {req['tier'] or '-'}, "
        f"tenant {req['tenant'] or '-'})",
        f"at {data['ts']:.3f} after {data['history_requests']} history requests; standing "
        f"before: suspicion {data['standing_before']['suspicion']:g}, throttle "
        f"{data['standing_before']['throttle']:g}, perturb level "
        f"{data['standing_before']['perturb_level']}" + (
            f" (shadow rules: suspicion {data['standing_before']['shadow_suspicion']:g})"
            if "shadow_suspicion" in data["standing_before"] else ""),
        "",
    ]
    for rule in data["rules"]:
        mode = "shadow" if rule["shadow"] else "enforced"
        lines.append(f"{rule['n']}. {rule['name']} ({rule['kind']}, {mode})")
        if not rule["matched"]:
            lines.extend(f"   not matched: {reason}" for reason in rule["not_matched_because"])
            continue
        lines.append("   matched")
        for counter in rule.get("counters", []):
            lines.append("   " + _counter_text(counter))
        if "signals" in rule:
            lines.append("   signals: " + ", ".join(f"{k} {v:g}" for k, v in
                                                   rule["signals"].items()))
            steps = ", ".join(rule["steps_reached"]) or "none"
            lines.append(f"   suspicion {rule['suspicion']:g}; steps reached: {steps}")
        if rule.get("changes"):
            lines.append("   rewrites: " + ", ".join(
                f"{k} {json.dumps(v['from'])} -> {json.dumps(v['to'])}"
                for k, v in rule["changes"].items()))
        if "response" in rule:
            lines.append(f"   perturbation level {rule['level']}; answer: "
                         + (", ".join(rule["response"]) or "unchanged"))
        lines.append("   decision: " + _decision_text(rule["decision"]))
    result = data["result"]
    lines.append("")
    text = f"result: {result['decision']}, status {result['status']}"
    if result["delay"]:
        text += f", held {result['delay']:g}s"
    if "message" in result:
        text += f": {result['message']}"
    lines.append(text)
    if result.get("shadow_would"):
        lines.append("shadow rules would have: " + ", ".join(
            f"{k} {v}" for k, v in result["shadow_would"].items()))
    if result.get("upstream_body_changes"):
        lines.append("body sent upstream differs: " + ", ".join(
            f"{k} {json.dumps(v['from'])} -> {json.dumps(v['to'])}"
            for k, v in result["upstream_body_changes"].items()))
    lines.append("(nothing was sent upstream)")
    return "\n".join(lines) + "\n"


def _counter_text(counter: dict[str, Any]) -> str:
    read = counter["read"]
    if counter["op"] == "window":
        parts = [f"{k} {v:g}" for k, v in {**read["totals"], **read["distinct"]}.items()]
        return (f"window {counter['window']:g}s: " + ", ".join(parts)
                + f", this template {read['tally']:g}")
    label = counter.get("limit", counter["op"])
    verdict = "ok" if read["allowed"] else "over"
    text = (f"{label}: cost {counter.get('cost', 1):g}, remaining {read['remaining']:g} "
            f"of {read['limit']:g}, reset {read['reset_after']:g}s")
    if read["delay"]:
        text += f", wait {read['delay']:g}s"
    if not read["allowed"]:
        text += f", retry after {read['retry_after']:g}s"
    return f"{text} -> {verdict}"


def _decision_text(decision: dict[str, Any]) -> str:
    text = str(decision["action"])
    if "delay" in decision:
        text += f" {decision['delay']:g}s"
    if "status" in decision:
        text += f" {decision['status']} {decision['code']}: {decision['message']}"
    if not decision.get("enforced", True):
        text += " (shadow: not enforced)"
    return text
