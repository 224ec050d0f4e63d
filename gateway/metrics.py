"""Prometheus metrics. No identity labels: ids are unbounded and would leak."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
FALLBACK_ADMITS = Counter(
    "distill_guard_storage_fallback_admits_total",
    "Requests whose counters were taken locally because shared storage failed.",
)
STORAGE_SHARED = Gauge(
    "distill_guard_storage_shared",
    "1 while counters are shared (Redis reachable, breaker closed), 0 in local fallback.",
)
IN_FLIGHT = Gauge("distill_guard_in_flight_requests", "Requests being proxied now.")
