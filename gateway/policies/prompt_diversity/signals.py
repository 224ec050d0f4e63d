"""From window counts to signal scores in [0, 1] and an instant suspicion.

Two-sided by design: a window is suspicious when it is too templated
(one scaffold repeated) OR too broad (many topics, nearly every prompt new),
at volume; and cross-account when other identities use the same template.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.policies.prompt_diversity.schema import Thresholds, Weights


def ramp(value: float, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return min(1.0, max(0.0, (value - low) / (high - low)))


@dataclass(frozen=True, slots=True)
class Window:
    """What storage said about the identity's window, this request included."""

    requests: float
    distinct_prompts: float
    distinct_templates: float
    topic_buckets: float
    reasoning: float
    template_uses: float
    peers: float  # other identities on the identity's most coordinated recent template
    fills: float = 0.0  # distinct prompts (all identities) seen on that template
    group_peers: float = 0.0  # other identities sharing a group_by value
    input_tokens: float = 0.0  # estimated prompt tokens in the window (volume evidence)

    @property
    def novelty(self) -> float:
        return min(1.0, self.distinct_prompts / self.requests) if self.requests else 0.0

    @property
    def template_share(self) -> float:
        return min(1.0, self.template_uses / self.requests) if self.requests else 0.0

    @property
    def reasoning_share(self) -> float:
        return min(1.0, self.reasoning / self.requests) if self.requests else 0.0


def scores(window: Window, th: Thresholds) -> dict[str, float]:
    at_volume = window.requests >= th.min_requests
    return {
        "templated": ramp(window.template_share, th.template_share) if at_volume else 0.0,
        "broad": min(ramp(window.topic_buckets, th.topic_buckets),
                     ramp(window.novelty, th.novelty)) if at_volume else 0.0,
        "reasoning": ramp(window.reasoning_share, th.reasoning_share) if at_volume else 0.0,
        "coordination": coordination(window.peers, window.fills, th),
        "volume": ramp(window.requests, th.volume),
        "grouping": ramp(window.group_peers, th.group_peers),
    }


def coordination(peers: float, fills: float, th: Thresholds) -> float:
    """Many other identities on one template, AND the template really has slots.

    A template whose every use is the same prompt ("Say this is a test") is
    popular, not coordinated: harvesting fills a scaffold with new content.
    """
    return ramp(peers, th.template_peers) * ramp(fills, th.template_fills)


def instant_suspicion(signal_scores: dict[str, float], weights: Weights) -> float:
    remaining = 1.0
    for name, score in signal_scores.items():
        remaining *= 1.0 - getattr(weights, name) * score
    return 1.0 - remaining
