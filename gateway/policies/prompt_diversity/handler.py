"""`prompt_diversity` handler.

Request stage (inside the request's single round trip): fingerprint the
prompt, count it into the identity's sliding window (distinct prompts,
templates and topic buckets as HyperLogLogs; requests, reasoning elicitation
and this template's uses as counters) and read back the window and the
identity's stored state (suspicion, when, its coordination evidence). Score
the window, decay and raise the suspicion, apply the graduated steps.

Complete stage (off the client's path): count the identity and the exact
prompt into its template's cross-account sets (keys on other Cluster slots,
so a separate call) and keep, in the identity's state, the most coordinated
template it used in the window: coordination then scores every request of a
hydra key, cover traffic included, not just the ones repeating a template.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import GatewayError
from gateway.pipeline.context import RequestContext
from gateway.pipeline.decision import ALLOW, Action, Decision
from gateway.policies.base import Handler as BaseHandler
from gateway.policies.base import RuleInfo
from gateway.policies.prompt_diversity.schema import Config
from gateway.policies.prompt_diversity.signals import (
    Window,
    coordination,
    instant_suspicion,
    scores,
)
from gateway.policies.shared import Shared
from gateway.signals import Fingerprint, ReasoningPatterns, fingerprint, prompt_text
from gateway.signals.suspicion import Standing, Standings, decayed
from gateway.storage.base import (
    AdmitOp,
    MergeState,
    Observe,
    ObserveResult,
    OpResult,
    SettleOp,
    identity_key,
)
from gateway.tokens import estimate_input_tokens

_PROMPT_ROUTES = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/embeddings"})


@dataclass(slots=True)
class _Request:
    fp: Fingerprint
    key: str
    suspicion: float = 0.0
    now: float = 0.0
    tally: float = 0.0  # this template's uses in the identity's window
    peers: float = 0.0  # of the identity's most coordinated recent template
    fills: float = 0.0  # distinct prompts seen (all identities) on that template
    coordinated_at: float = 0.0
    group_peers: float = 0.0
    groups: tuple[str, ...] = ()
    signals: dict[str, float] = field(default_factory=dict)


class Handler(BaseHandler[Config]):
    defer_in_shadow = True  # it only records, and reads no response
    def __init__(self, rule: RuleInfo, config: Config, shared: Any = None) -> None:
        super().__init__(rule, config, shared)
        self.patterns = ReasoningPatterns.default().extended(config.reasoning_patterns)
        self.standings: Standings = (
            shared.standings if isinstance(shared, Shared) else Standings())
        self._steps = sorted(config.steps, key=lambda step: step.at)
        self._ttl = max(config.window, 4 * config.half_life)

    def plan(self, ctx: RequestContext, group: int) -> Sequence[AdmitOp]:
        if not ctx.is_model_route or ctx.path not in _PROMPT_ROUTES:
            return ()
        fp = fingerprint(prompt_text(ctx.json, ctx.dialect.value), patterns=self.patterns)
        key = identity_key(ctx.identity.id, "pd", self.rule.name)
        members = [("p", fp.exact), ("t", fp.template)]
        members.extend(("b", str(topic)) for topic in fp.topics)
        ctx.rule_state[self.rule.name] = _Request(fp, key, groups=self._groups(ctx))
        return (Observe(
            key, self.config.window, self.config.slots, members=tuple(members),
            counters=(("n", 1.0), ("r", 1.0 if fp.elicits_reasoning else 0.0),
                      ("tok", float(estimate_input_tokens(ctx.json)))),
            tally_member=fp.template, read_state=True, group=group,
        ),)

    def decide(
        self, ctx: RequestContext, results: Sequence[OpResult | ObserveResult], admitted: bool
    ) -> Decision:
        state: _Request | None = ctx.rule_state.get(self.rule.name)
        if state is None or not results or not isinstance(results[0], ObserveResult):
            return ALLOW
        result = results[0]
        stored = result.state
        now = ctx.storage_now or time.time()
        state.now = now
        state.tally = result.tally
        # coordination evidence (counted off-path) holds for a window after it was seen
        coordinated_at = _float(stored.get("cat"), 0.0)
        if now - coordinated_at <= self.config.window:
            state.peers = _float(stored.get("peers"), 0.0)
            state.fills = _float(stored.get("fills"), 0.0)
            state.coordinated_at = coordinated_at
        state.group_peers = _float(stored.get("gpeers"), 0.0) if state.groups else 0.0
        window = Window(
            requests=result.totals.get("n", 0.0),
            distinct_prompts=result.distinct.get("p", 0.0),
            distinct_templates=result.distinct.get("t", 0.0),
            topic_buckets=result.distinct.get("b", 0.0),
            reasoning=result.totals.get("r", 0.0),
            template_uses=result.tally,
            peers=state.peers,
            fills=state.fills,
            group_peers=state.group_peers,
            input_tokens=result.totals.get("tok", 0.0),
        )
        state.signals = scores(window, self.config.thresholds)
        instant = instant_suspicion(state.signals, self.config.weights)
        previous = decayed(_float(stored.get("s"), 0.0), now - _float(stored.get("at"), now),
                           self.config.half_life)
        state.suspicion = max(previous, instant)
        standing = self._standing(ctx, state, window)
        if standing.reject:
            return Decision(Action.REJECT, error=GatewayError(
                429, "Rate limit reached for requests. Please retry later.",
                code="rate_limit_exceeded", headers={"retry-after": "60"}))
        return ALLOW

    def _groups(self, ctx: RequestContext) -> tuple[str, ...]:
        """Hashed group_by values of this request (raw values never reach Redis)."""
        values = []
        for key in self.config.group_by:
            if key == "client_ip_24":
                value = _network(ctx.client_ip)
            elif key == "user_agent":
                raw = ctx.header(b"user-agent")
                value = raw.decode("latin-1") if raw is not None else None
            else:
                raw = ctx.header(key.removeprefix("header:").lower().encode("latin-1"))
                value = raw.decode("latin-1") if raw is not None else None
            if value:
                digest = hashlib.blake2b(f"{key}={value}".encode(), digest_size=8).hexdigest()
                values.append(digest)
        return tuple(values)

    def _standing(self, ctx: RequestContext, state: _Request, window: Window) -> Standing:
        standing = Standing(suspicion=state.suspicion, at=state.now,
                            half_life=self.config.half_life, signals=dict(state.signals))
        for step in self._steps:
            if state.suspicion < step.at:
                break
            standing.actions.append(step.action)
            if step.action == "flag":
                standing.flagged = True
            elif step.action == "throttle":
                standing.throttle = min(standing.throttle, step.factor)
            elif step.action == "perturb":
                standing.perturb_level = max(standing.perturb_level, step.level)
            else:
                standing.reject = True
        standing.flagged = standing.flagged or bool(standing.actions)
        standing.evidence = {
            "requests": window.requests, "distinct_prompts": window.distinct_prompts,
            "distinct_templates": window.distinct_templates,
            "novelty": round(window.novelty, 4),
            "template": state.fp.template, "template_share": round(window.template_share, 4),
            "template_skeleton": state.fp.skeleton, "topic_buckets": window.topic_buckets,
            "reasoning_share": round(window.reasoning_share, 4),
            "template_uses": window.template_uses,
            "template_peers": window.peers, "template_fills": window.fills,
            "group_peers": window.group_peers,
            "input_tokens": window.input_tokens,
        }
        # a shadow rule records for investigators, it never steers other rules
        self.standings.put(ctx.identity.id, standing, shadow=self.rule.shadow)
        return standing

    # -- complete stage ------------------------------------------------------
    def cross_ops(self, ctx: RequestContext) -> Sequence[AdmitOp]:
        state: _Request | None = ctx.rule_state.get(self.rule.name)
        if state is None:
            return ()
        ops = [identity_key("tpl-" + state.fp.template, "pd", self.rule.name)]
        ops.extend(identity_key("grp-" + group, "pd", self.rule.name) for group in state.groups)
        members = (("ids", ctx.identity.id),)
        template_members = (*members, ("f", state.fp.exact))
        return tuple(Observe(key, self.config.window, self.config.slots,
                             members=template_members if index == 0 else members)
                     for index, key in enumerate(ops))

    def on_cross_results(
        self, ctx: RequestContext, results: Sequence[OpResult | ObserveResult]
    ) -> None:
        state: _Request | None = ctx.rule_state.get(self.rule.name)
        if state is None or not results:
            return
        observed = [r for r in results if isinstance(r, ObserveResult)]
        if not observed:
            return
        peers = [max(0.0, r.distinct.get("ids", 1.0) - 1.0) for r in observed]
        state.group_peers = max(peers[1:], default=0.0)
        fills = observed[0].distinct.get("f", 0.0)
        th = self.config.thresholds
        # only a template this identity repeats counts, and only if it is the
        # identity's most coordinated one in the window (ties refresh the time)
        if state.tally >= th.min_template_uses and coordination(
                peers[0], fills, th) >= coordination(state.peers, state.fills, th):
            state.peers, state.fills = peers[0], fills
            state.coordinated_at = state.now

    def settle(self, ctx: RequestContext) -> Sequence[SettleOp]:
        state: _Request | None = ctx.rule_state.get(self.rule.name)
        if state is None or not state.now:
            return ()
        fields = (("s", repr(state.suspicion)), ("at", repr(state.now)),
                  ("peers", repr(state.peers)), ("fills", repr(state.fills)),
                  ("cat", repr(state.coordinated_at)), ("gpeers", repr(state.group_peers)))
        return (MergeState(state.key, fields, self._ttl),)


def _network(address: str) -> str | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def _float(value: str | None, default: float) -> float:
    try:
        number = float(value) if value is not None else default
    except ValueError:
        return default
    return number if math.isfinite(number) else default
