"""Summaries of a simulation: per persona, per identity, and overall detection rates."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway.simulate.personas import PERSONA_NAMES, Label
from gateway.simulate.runner import Outcome, SimulationResult


@dataclass(slots=True)
class IdentityStats:
    key: str
    identity: str
    persona: str
    label: Label
    requests: int = 0
    first_flagged: int | None = None  # 1-based: the request after which it was first flagged
    max_suspicion: float = 0.0
    signals_at_max: dict[str, float] = field(default_factory=dict)
    throttled: int = 0
    refused: int = 0
    perturbed: int = 0
    delayed: int = 0
    harvested: int = 0
    shadow_flagged: bool = False  # a shadow rule flagged it at some point

    @property
    def flagged(self) -> bool:
        return self.first_flagged is not None


@dataclass(slots=True)
class PersonaRow:
    persona: str
    label: Label
    identities: int
    flagged: int
    requests: int
    first_flagged_median: float | None  # None: never (for at least half of its identities)
    throttled: float  # shares of its requests
    refused: float
    perturbed: float
    delayed: float
    harvested: int
    why: str  # the strongest signals of its flagged identities, at their peak

    @property
    def harvest_share(self) -> float:
        return self.harvested / self.requests if self.requests else 0.0


@dataclass(slots=True)
class Summary:
    rows: list[PersonaRow]
    identities: list[IdentityStats]
    tpr: float  # campaign identities flagged
    fpr: float  # benign identities flagged
    hydra_flagged: float  # share of hydra keys flagged
    shadow_tpr: float  # the same, as shadow rules recorded it
    shadow_fpr: float
    campaign_harvest: float  # share of campaign requests answered at full quality
    benign_clean: float  # share of benign requests answered at full quality
    requests: int
    elapsed: float
    simulated_seconds: float
    mode: str
    outcomes: list[Outcome] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "requests": self.requests, "elapsed_seconds": self.elapsed,
            "simulated_hours": self.simulated_seconds / 3600, "tpr": self.tpr, "fpr": self.fpr,
            "hydra_flagged": self.hydra_flagged, "shadow_tpr": self.shadow_tpr,
            "shadow_fpr": self.shadow_fpr, "campaign_harvest": self.campaign_harvest,
            "benign_clean": self.benign_clean,
            "personas": [{**asdict(r), "harvest_share": r.harvest_share} for r in self.rows],
            "identities": [{**asdict(i), "flagged": i.flagged} for i in self.identities],
        }


def identity_stats(outcomes: Iterable[Outcome]) -> list[IdentityStats]:
    stats: dict[str, IdentityStats] = {}
    for o in outcomes:
        s = stats.get(o.key)
        if s is None:
            s = stats[o.key] = IdentityStats(o.key, o.identity, o.persona, o.label)
        s.requests += 1
        if o.flagged and s.first_flagged is None:
            s.first_flagged = s.requests
        if o.suspicion > s.max_suspicion:
            s.max_suspicion, s.signals_at_max = o.suspicion, dict(o.signals)
        s.throttled += o.throttled and not o.refused
        s.perturbed += o.perturbed and not o.refused
        s.refused += o.refused
        s.delayed += o.delayed
        s.harvested += o.harvested
        s.shadow_flagged = s.shadow_flagged or o.shadow_flagged
    return list(stats.values())


def _median_first_flag(ids: Sequence[IdentityStats]) -> float | None:
    values = [float(i.first_flagged) if i.first_flagged is not None else math.inf for i in ids]
    median = statistics.median_low(values)
    return None if math.isinf(median) else median


def _why(ids: Sequence[IdentityStats]) -> str:
    totals: dict[str, float] = defaultdict(float)
    flagged = [i for i in ids if i.flagged]
    for i in flagged:
        for name, score in i.signals_at_max.items():
            totals[name] += score
    top = sorted(((v / len(flagged), k) for k, v in totals.items() if v > 0), reverse=True)
    return ", ".join(f"{name} {mean:.2f}" for mean, name in top[:3])


def summarize(result: SimulationResult) -> Summary:
    identities = identity_stats(result.outcomes)
    by_persona: dict[str, list[IdentityStats]] = defaultdict(list)
    for i in identities:
        by_persona[i.persona].append(i)
    order = {name: n for n, name in enumerate(PERSONA_NAMES)}
    rows = []
    for name in sorted(by_persona, key=lambda n: order.get(n, len(order))):
        ids = by_persona[name]
        total = sum(i.requests for i in ids)
        rows.append(PersonaRow(
            persona=name, label=ids[0].label, identities=len(ids),
            flagged=sum(i.flagged for i in ids), requests=total,
            first_flagged_median=_median_first_flag(ids),
            throttled=sum(i.throttled for i in ids) / total,
            refused=sum(i.refused for i in ids) / total,
            perturbed=sum(i.perturbed for i in ids) / total,
            delayed=sum(i.delayed for i in ids) / total,
            harvested=sum(i.harvested for i in ids), why=_why(ids),
        ))

    def share(items: Sequence[IdentityStats], shadow: bool = False) -> float:
        hits = sum(i.shadow_flagged if shadow else i.flagged for i in items)
        return hits / len(items) if items else 0.0

    campaign = [i for i in identities if i.label is Label.CAMPAIGN]
    benign = [i for i in identities if i.label is Label.BENIGN]

    def clean(label: Label) -> float:
        chosen = [i for i in identities if i.label is label]
        total = sum(i.requests for i in chosen)
        return sum(i.harvested for i in chosen) / total if total else 0.0

    return Summary(
        rows=rows, identities=identities,
        tpr=share(campaign), fpr=share(benign),
        hydra_flagged=share(by_persona.get("hydra", [])),
        shadow_tpr=share(campaign, shadow=True), shadow_fpr=share(benign, shadow=True),
        campaign_harvest=clean(Label.CAMPAIGN), benign_clean=clean(Label.BENIGN),
        requests=len(result.outcomes), elapsed=result.elapsed,
        simulated_seconds=result.simulated_seconds, mode=result.mode,
        outcomes=result.outcomes,
    )


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def markdown(summary: Summary) -> str:
    """The per-persona table and the overall rates, as Markdown."""
    if summary.mode == "http":
        return http_markdown(summary)
    lines = [
        "| persona | label | identities | flagged | requests | requests to first flag "
        "(median) | throttled | refused | perturbed | delayed | harvest (vs 100% ungated) "
        "| signals when flagged |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in summary.rows:
        first = "never" if r.first_flagged_median is None else f"{r.first_flagged_median:g}"
        lines.append(
            f"| {r.persona} | {r.label.value} | {r.identities} | {r.flagged}/{r.identities} "
            f"| {r.requests} | {first} | {_pct(r.throttled)} | {_pct(r.refused)} "
            f"| {_pct(r.perturbed)} | {_pct(r.delayed)} "
            f"| {r.harvested} ({_pct(r.harvest_share)}) | {r.why or '-'} |")
    hydra = [r for r in summary.rows if r.persona == "hydra"]
    lines += [
        "",
        f"- campaign identities flagged (TPR): **{_pct(summary.tpr)}**",
        f"- benign identities flagged (FPR): **{_pct(summary.fpr)}**",
    ]
    if hydra:
        lines.append(f"- hydra keys flagged (as a group): **{_pct(summary.hydra_flagged)}** "
                     f"({hydra[0].flagged}/{hydra[0].identities})")
    if any(i.shadow_flagged for i in summary.identities):
        lines.append(f"- shadow rules would have flagged {_pct(summary.shadow_tpr)} of campaign "
                     f"and {_pct(summary.shadow_fpr)} of benign identities (not enforced)")
    lines += [
        f"- campaign requests answered at full quality: {_pct(summary.campaign_harvest)} "
        "(100% without the gateway)",
        f"- benign requests answered at full quality: {_pct(summary.benign_clean)}",
        f"- {summary.requests} requests, {summary.simulated_seconds / 3600:.1f} simulated hours, "
        f"{summary.elapsed:.1f} s wall clock",
    ]
    return "\n".join(lines)


def http_markdown(summary: Summary) -> str:
    """HTTP mode sees what a client sees: statuses and latency, not standings."""
    by_persona: dict[str, list[Outcome]] = defaultdict(list)
    for o in summary.outcomes:
        by_persona[o.persona].append(o)
    standings = any(o.flagged or o.suspicion > 0 for o in summary.outcomes)
    flags = {i.key: i.flagged for i in summary.identities}
    lines = ["| persona | label | identities | flagged at the end | requests | refused | errors "
             "| p50 latency | p95 latency |", "|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    for name in PERSONA_NAMES:
        items = by_persona.get(name)
        if not items:
            continue
        latencies = sorted(o.latency for o in items)
        p50 = latencies[len(latencies) // 2]
        p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
        refused = sum(o.refused for o in items) / len(items)
        errors = sum(1 for o in items if o.error or o.status >= 500 or o.status == 0)
        keys = {o.key for o in items}
        flagged = f"{sum(flags[k] for k in keys)}/{len(keys)}" if standings else "n/a"
        lines.append(f"| {name} | {items[0].label.value} | {len(keys)} | {flagged} "
                     f"| {len(items)} | {_pct(refused)} | {errors} | {1000 * p50:.1f} ms "
                     f"| {1000 * p95:.1f} ms |")
    lines.append(f"\n{summary.requests} requests in {summary.elapsed:.1f} s (timestamps "
                 "compressed: sent in order, as fast as the concurrency allows).")
    if standings:
        lines.append(f"Flagged at the end, from the admin API: campaign {_pct(summary.tpr)}, "
                     f"benign {_pct(summary.fpr)} of identities.")
    else:
        lines.append("Standings are not visible over HTTP; pass --admin-token to read them "
                     "from the gateway's admin API.")
    return "\n".join(lines)

