"""Prometheus metrics. No identity labels: ids are unbounded and would leak."""

from __future__ import annotations

from typing import TypeVar

from prometheus_client import Counter, Gauge, Histogram

M = TypeVar("M", Counter, Gauge, Histogram)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                    10, 30, 60)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.05, 0.1, 1)

REQUESTS = Counter(
    "distill_guard_requests_total", "Requests handled, by route, status and decision.",
    ["route", "status", "decision"],
)
DECISIONS = Counter(
    "distill_guard_rule_decisions_total",
    "Decisions per rule; shadow=true ones were counted but not enforced.",
    ["rule", "kind", "decision", "shadow"],
)
UPSTREAM_LATENCY = Histogram(
    "distill_guard_upstream_latency_seconds",
    "Time from sending a request upstream to its response headers.",
    ["route"], buckets=_LATENCY_BUCKETS,
)
OVERHEAD = Histogram(
    "distill_guard_overhead_seconds",
    "Time the gateway itself adds to a request (all but waiting on the upstream).",
    ["route"], buckets=_OVERHEAD_BUCKETS,
)
UPSTREAM_ERRORS = Counter(
    "distill_guard_upstream_errors_total", "Upstream failures by kind.", ["kind"]
)
STORAGE_ERRORS = Counter(
    "distill_guard_storage_errors_total", "Counter storage failures by operation.",
    ["operation"],
)
POLICY_LOADS = Counter(
    "distill_guard_policy_loads_total", "Policy (re)loads by result.", ["result"]
)
POLICY_VALID = Gauge(
    "distill_guard_policy_last_load_valid",
    "1 when the last policy file read was valid; 0 when it was refused and an older "
    "policy still runs.",
)
FALLBACK_ADMITS = Counter(
    "distill_guard_storage_fallback_admits_total",
    "Requests whose counters were taken locally because shared storage failed.",
)
STORAGE_SHARED = Gauge(
    "distill_guard_storage_shared",
    "1 while counters are shared (Redis reachable, breaker closed), 0 in local fallback.",
)
IN_FLIGHT = Gauge("distill_guard_in_flight_requests", "Requests being proxied now.")
PERTURBATIONS = Counter(
    "distill_guard_perturbations_total",
    "Requests an output_perturbation rule changed (or, shadow=true, would have), by what "
    "it did: top_logprobs_capped, n_capped, temperature_clamped, logprobs_refused, "
    "logit_bias_refused, logprobs_perturbed, reasoning_dropped/truncated/replaced, "
    "watermarked.",
    ["rule", "kind", "shadow"],
)


def rule_tallies() -> dict[str, dict[str, dict[str, float]]]:
    """{rule: {"decisions": {decision: n}, "perturbations": {what: n}}} since start,
    read back from the counters above (so the admin API and /metrics agree)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    sources = ((DECISIONS, "decisions", "decision"), (PERTURBATIONS, "perturbations", "kind"))
    for counter, section, label in sources:
        for family in counter.collect():
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue
                rule = out.setdefault(sample.labels["rule"],
                                      {"decisions": {}, "perturbations": {}})
                key = sample.labels[label]
                rule[section][key] = rule[section].get(key, 0.0) + sample.value
    return out


_children: dict[tuple[int, tuple[str, ...]], object] = {}


def child(metric: M, *values: str) -> M:
    """`metric.labels(*values)`, memoized: `labels()` validates and locks on every call
    (a few us), and the hot path asks for the same few children every request. Label
    values here are bounded (routes, statuses, rule names), so the cache is too."""
    key = (id(metric), values)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*values)
    return found  # type: ignore[return-value]
