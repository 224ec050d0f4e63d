"""`distill-guard replay`: recorded traffic through a policy, offline, and what each rule did.

Requests are played in timestamp order through `gateway.offline.OfflineChain`
(the proxy's request and complete stages, in-memory counters, a fake clock
moved to each request's `ts`), with every rule traced. Per rule the report
counts requests matched, allowed, delayed (and the total delay), refused (by
status), modified (request body rewritten before the upstream) and perturbed
(output_perturbation: request or response rewritten), and for
`prompt_diversity` rules lists the identities they would have flagged. Shadow
rules are reported with what they would have done.

Memory stays bounded for big files: lines are streamed, sorted within a
window of `window` lines (a late line is played at the current time and
counted), counters expire as in the gateway, and per identity the report keeps
its id, and counts only for identities a rule flagged, delayed or refused.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from gateway.authoring.traffic import ReadStats, TrafficEntry
from gateway.offline import OfflineChain, OfflineRequest, Played, RuleTrace
from gateway.pipeline.decision import Action

PD_KIND = "prompt_diversity"
OP_KIND = "output_perturbation"
# Lets output_perturbation rules plan the watermark as a gateway with a secret would;
# nothing is marked offline (there is no answer), so any value does.
OFFLINE_WATERMARK_SECRET = b"distill-guard-offline"
MAX_DIFFERENCES = 20  # examples of requests whose replayed decision differs from the recorded


def unshadowed(policy: BaseModel) -> BaseModel:
    """`policy` with every rule enforced (`--enforce-shadow`: what enabling them would do)."""
    rules = [rule.model_copy(update={"shadow": False}) for rule in getattr(policy, "rules", [])]
    return policy.model_copy(update={"rules": rules})


def steps_reached(config: Any, suspicion: float) -> list[str]:
    """The actions of a prompt_diversity rule's steps at or below `suspicion`."""
    steps = sorted(getattr(config, "steps", ()), key=lambda step: step.at)
    return [step.action for step in steps if suspicion >= step.at]


def response_perturbations(state: Any) -> list[str]:
    """What an output_perturbation rule's request state says it would do to the answer."""
    possible = getattr(state, "possible", None)
    return sorted(possible) if isinstance(possible, set) else []


@dataclass(slots=True)
class Flagged:
    """An identity a prompt_diversity rule would have flagged."""

    identity: str
    first_flagged: float
    peak_suspicion: float = 0.0
    peak_at: float = 0.0
    requests: int = 0  # requests of the identity the rule saw from its first flag on
    signals: dict[str, float] = field(default_factory=dict)  # at the peak
    actions: list[str] = field(default_factory=list)  # at the peak

    def to_json(self) -> dict[str, Any]:
        top = sorted(((v, k) for k, v in self.signals.items() if v > 0), reverse=True)[:3]
        return {
            "identity": self.identity, "first_flagged": _ts(self.first_flagged),
            "peak_suspicion": round(self.peak_suspicion, 4), "peak_at": _ts(self.peak_at),
            "requests_after_flag": self.requests, "actions": self.actions,
            "top_signals": {k: round(v, 4) for v, k in top},
        }


@dataclass(slots=True)
class Tally:
    """Requests allowed (of them delayed, modified) and refused by status."""

    allowed: int = 0
    delayed: int = 0
    delay_seconds: float = 0.0
    modified: int = 0
    refused: Counter[int] = field(default_factory=Counter)

    def count(self, refused: int | None, delay: float = 0.0, modified: bool = False) -> None:
        """One request: `refused` is the refusal's status, None when allowed."""
        if refused is not None:
            self.refused[refused] += 1
            return
        self.allowed += 1
        self.delayed += delay > 0
        self.delay_seconds += delay
        self.modified += modified

    def to_json(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "delayed": self.delayed,
                "delay_seconds": round(self.delay_seconds, 3), "modified": self.modified,
                "refused": {str(s): n for s, n in sorted(self.refused.items())}}


@dataclass(slots=True)
class RuleReport:
    name: str
    kind: str
    shadow: bool
    config: Any = None  # the rule's config (prompt_diversity: its steps)
    matched: int = 0
    tally: Tally = field(default_factory=Tally)
    perturbed: int = 0
    changes: Counter[str] = field(default_factory=Counter)  # body fields rewritten
    response: Counter[str] = field(default_factory=Counter)  # answer rewrites planned
    actions: Counter[str] = field(default_factory=Counter)  # prompt_diversity steps reached
    affected: Counter[str] = field(default_factory=Counter)  # identity -> delayed or refused
    flagged: dict[str, Flagged] = field(default_factory=dict)

    def add(self, played: Played, trace: RuleTrace) -> None:
        self.matched += 1
        decision = trace.decision
        ctx = played.ctx
        action = decision.action if decision is not None else Action.ALLOW
        refused = None
        if action is Action.REJECT:
            assert decision is not None
            refused = decision.error.status if decision.error is not None else 403
        delay = decision.delay if decision is not None and action is Action.DELAY else 0.0
        self.tally.count(refused, delay, action is Action.MODIFY)
        if refused is not None or delay > 0:
            self.affected[ctx.identity.id] += 1
        self.changes.update(trace.changes.keys())
        state = ctx.rule_state.get(self.name)
        # an answer is only rewritten when the chain lets the request through
        answer = response_perturbations(state) if played.error is None else []
        self.response.update(answer)
        if answer or (self.kind == OP_KIND and action is Action.MODIFY):
            self.perturbed += 1
        if self.kind == PD_KIND and state is not None:
            self._score(played, state)

    def _score(self, played: Played, state: Any) -> None:
        suspicion = float(getattr(state, "suspicion", 0.0))
        reached = steps_reached(self.config, suspicion)
        self.actions.update(reached)
        identity = played.ctx.identity.id
        flagged = self.flagged.get(identity)
        if flagged is None:
            if not reached:
                return
            flagged = self.flagged[identity] = Flagged(identity, played.ctx.storage_now)
        flagged.requests += 1
        if suspicion > flagged.peak_suspicion:
            flagged.peak_suspicion, flagged.peak_at = suspicion, played.ctx.storage_now
            flagged.signals = dict(getattr(state, "signals", {}))
            flagged.actions = reached

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name, "kind": self.kind, "shadow": self.shadow,
            "matched": self.matched, **self.tally.to_json(), "perturbed": self.perturbed,
            "identities_delayed_or_refused": len(self.affected),
            "most_delayed_or_refused": [
                {"identity": i, "requests": n}
                for i, n in sorted(self.affected.items(), key=lambda item: (-item[1], item[0]))
            ][:10],
        }
        if self.changes:
            data["changes"] = dict(sorted(self.changes.items()))
        if self.response:
            data["response"] = dict(sorted(self.response.items()))
        if self.kind == PD_KIND:
            data["actions"] = dict(sorted(self.actions.items()))
            data["flagged"] = [f.to_json() for f in sorted(
                self.flagged.values(), key=lambda f: (-f.peak_suspicion, f.identity))]
        return data


@dataclass(slots=True)
class ReplayReport:
    policy: str
    rules: list[RuleReport]
    enforce_shadow: bool = False
    requests: int = 0
    late: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    identities: set[str] = field(default_factory=set)
    tally: Tally = field(default_factory=Tally)
    compared: int = 0
    differences: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)
    stats: ReadStats = field(default_factory=ReadStats)

    def add(self, entry: TrafficEntry, played: Played, late: bool) -> None:
        at = entry.request.at
        self.requests += 1
        self.late += late
        self.first_ts = at if self.first_ts is None else min(self.first_ts, at)
        self.last_ts = at if self.last_ts is None else max(self.last_ts, at)
        self.identities.add(entry.request.identity.id)
        ctx = played.ctx
        self.tally.count(played.error.status if played.error is not None else None,
                         played.outcome.delay, ctx.json_dirty)
        traces = played.traces
        for rule in self.rules:
            trace = traces.get(rule.name)
            if trace is not None:
                rule.add(played, trace)
        recorded = entry.recorded.decision
        if recorded is not None:
            self.compared += 1
            if recorded != ctx.decision:
                self.differences += 1
                if len(self.examples) < MAX_DIFFERENCES:
                    self.examples.append({"line": entry.source, "recorded": recorded,
                                          "replayed": ctx.decision})

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy, "enforce_shadow": self.enforce_shadow,
            "requests": self.requests, "identities": len(self.identities),
            "first_ts": _ts(self.first_ts), "last_ts": _ts(self.last_ts),
            "lines_skipped": self.stats.skipped, "late": self.late,
            "outcome": self.tally.to_json(),
            "recorded": {"compared": self.compared, "same": self.compared - self.differences,
                         "different": self.differences, "examples": self.examples},
            "rules": [rule.to_json() for rule in self.rules],
        }


def _ts(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


class Player:
    """Plays traffic through one traced `OfflineChain`, created at the first request's time."""

    def __init__(self, policy: BaseModel) -> None:
        self.policy = policy
        self.offline: OfflineChain | None = None

    def chain(self, start: float) -> OfflineChain:
        if self.offline is None:
            self.offline = OfflineChain(self.policy, start=start, trace=True,
                                        watermark_secret=OFFLINE_WATERMARK_SECRET)
        return self.offline

    async def play(self, request: OfflineRequest) -> tuple[Played, bool]:
        """The request played at its time; True when it was late (played at the clock's)."""
        offline = self.chain(request.at)
        late = not offline.advance_to(request.at)
        return await offline.run(offline.context(request)), late


async def replay(
    entries: Iterable[TrafficEntry], policy: BaseModel, *, policy_name: str,
    stats: ReadStats | None = None, enforce_shadow: bool = False,
) -> ReplayReport:
    """Play `entries` (timestamp order) through `policy`; what each rule would have done."""
    if enforce_shadow:
        policy = unshadowed(policy)
    rules = [RuleReport(r.name, r.kind, r.shadow, r.config) for r in getattr(policy, "rules", [])]
    report = ReplayReport(policy_name, rules, enforce_shadow,
                          stats=stats if stats is not None else ReadStats())
    player = Player(policy)
    for entry in entries:
        played, late = await player.play(entry.request)
        report.add(entry, played, late)
    return report


# -- the table ------------------------------------------------------------------------


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _refusals(refused: dict[str, int]) -> str:
    return " ".join(f"{status}:{n}" for status, n in refused.items()) or "0"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]]


def render(data: dict[str, Any], *, top: int = 10) -> str:
    """The report (as `ReplayReport.to_json` gives it) as text tables."""
    outcome = data["outcome"]
    span = 0.0 if data["first_ts"] is None else data["last_ts"] - data["first_ts"]
    lines = [
        f"replay of {data['requests']} requests from {data['identities']} identities, "
        f"{_when(data['first_ts'])} to {_when(data['last_ts'])} UTC ({span:g} s), "
        f"policy {data['policy']}" + (" (shadow rules enforced)" if data["enforce_shadow"]
                                      else ""),
        f"outcome: {outcome['allowed']} allowed ({outcome['delayed']} delayed "
        f"{outcome['delay_seconds']:g} s, {outcome['modified']} modified), "
        f"refused {_refusals(outcome['refused'])}; "
        f"{data['lines_skipped']} lines skipped, {data['late']} played late (beyond --window)",
    ]
    recorded = data["recorded"]
    if recorded["compared"]:
        lines.append(f"against the recorded decisions: {recorded['same']} same, "
                     f"{recorded['different']} different")
        lines.extend(f"  {e['line']}: recorded {e['recorded']}, replayed {e['replayed']}"
                     for e in recorded["examples"][:top])
    lines.append("")
    rows = [[r["name"], r["kind"], "shadow" if r["shadow"] else "enforced", str(r["matched"]),
             str(r["allowed"]), str(r["delayed"]), f"{r['delay_seconds']:g}",
             _refusals(r["refused"]), str(r["modified"]), str(r["perturbed"]),
             str(len(r.get("flagged", ()))) if r["kind"] == PD_KIND else "-"]
            for r in data["rules"]]
    lines.extend(_table(["rule", "kind", "mode", "matched", "allowed", "delayed", "delay s",
                         "refused", "modified", "perturbed", "flagged"], rows))
    for rule in data["rules"]:
        details = _details(rule, top)
        lines.extend(["", *details] if details else [])
    return "\n".join(lines) + "\n"


def _details(rule: dict[str, Any], top: int) -> list[str]:
    out: list[str] = []
    for key, label in (("changes", "request fields rewritten"),
                       ("response", "answers it would rewrite"),
                       ("actions", "requests at each step")):
        if rule.get(key):
            out.append(f"  {label}: " + ", ".join(f"{k} {v}" for k, v in rule[key].items()))
    worst = rule["most_delayed_or_refused"]
    if worst:
        out.append(f"  identities delayed or refused: {rule['identities_delayed_or_refused']}; "
                   "most: " + ", ".join(f"{w['identity']} ({w['requests']})"
                                        for w in worst[:top]))
    flagged = rule.get("flagged", [])
    if flagged:
        out.append(f"  identities it would flag: {len(flagged)}")
        rows = [[f["identity"], f"{f['peak_suspicion']:.4f}", _when(f["first_flagged"]),
                 str(f["requests_after_flag"]), ",".join(f["actions"]),
                 ", ".join(f"{k} {v:.2f}" for k, v in f["top_signals"].items())]
                for f in flagged[:top]]
        out.extend("    " + line for line in _table(
            ["identity", "peak", "first flagged (UTC)", "requests", "actions", "top signals"],
            rows))
        if len(flagged) > top:
            out.append(f"    ... and {len(flagged) - top} more (--json has them all)")
    return [f"{rule['name']}:", *out] if out else []
