"""Config of `prompt_diversity`: windows, signal thresholds, weights, graduated actions."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.pipeline.match import header_name


class Weights(BaseModel):
    """How much each signal can contribute: suspicion = 1 - prod(1 - weight * score).

    One signal alone reaches at most its weight; signals that agree compound.
    With the defaults, one template (a RAG app), volume alone or a broad window
    alone stay at or under 0.65, while chain-of-thought elicitation at volume
    (0.8) or a slotted template shared across many keys (0.8) pass a 0.75
    throttle step by themselves, and templated + volume passes a 0.6 flag step.
    See docs/detection.md for the measured effect of each.
    """

    model_config = ConfigDict(extra="forbid")

    templated: float = Field(0.5, ge=0, le=1, description="Requests repeating one template.")
    broad: float = Field(0.65, ge=0, le=1,
                         description="Requests sweeping many topics, nearly all novel.")
    reasoning: float = Field(0.8, ge=0, le=1, description="Chain-of-thought elicitation share.")
    coordination: float = Field(0.8, ge=0, le=1,
                                description="Other identities using the same template.")
    volume: float = Field(0.3, ge=0, le=1, description="Requests in the window.")
    grouping: float = Field(
        0.5, ge=0, le=1, description="Other identities sharing a `group_by` value (same "
        "client /24, user agent, header); only counts when `group_by` is set.")


class Thresholds(BaseModel):
    """Where each signal starts to count (score 0) and where it is certain (score 1)."""

    model_config = ConfigDict(extra="forbid")

    min_requests: int = Field(
        30, ge=1, description="Requests in the window before window signals count at all.")
    template_share: tuple[float, float] = Field(
        (0.3, 0.8), description="Share of the window's requests using this request's "
        "template: [starts counting, certain].")
    topic_buckets: tuple[float, float] = Field(
        (150, 230), description="Distinct topic buckets (of 256) in the window. Buckets "
        "saturate fast (8 per request), so only a really wide window counts.")
    novelty: tuple[float, float] = Field(
        (0.97, 1.0), description="Distinct prompts / requests: the broad signal needs both "
        "topics and novelty. Real users repeat themselves (~0.95); sweeps do not.")
    reasoning_share: tuple[float, float] = Field(
        (0.2, 0.6), description="Share of requests eliciting chain-of-thought.")
    template_peers: tuple[float, float] = Field(
        (2, 10), description="Other identities that used one of this identity's templates "
        "in the window (its most coordinated one).")
    template_fills: tuple[float, float] = Field(
        (2, 8), description="Distinct prompts seen on that template, over all identities: a "
        "template every key sends verbatim (a docs example) is popular, not coordinated.")
    min_template_uses: int = Field(
        2, ge=1, description="Uses of a template in the identity's own window before other "
        "identities on it count as its peers.")
    volume: tuple[float, float] = Field(
        (200, 2000), description="Requests in the window.")
    group_peers: tuple[float, float] = Field(
        (5, 50), description="Other identities seen with the same `group_by` value in the "
        "window.")

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        for name in ("template_share", "topic_buckets", "novelty", "reasoning_share",
                     "template_peers", "template_fills", "volume", "group_peers"):
            low, high = getattr(self, name)
            if not 0 <= low < high:
                raise ValueError(f"{name}: need 0 <= start < certain, got [{low}, {high}]")
        for name in ("template_share", "novelty", "reasoning_share"):
            if getattr(self, name)[1] > 1:
                raise ValueError(f"{name} is a share: values must be within [0, 1]")
        return self


class Step(BaseModel):
    """One rung of the graduated response."""

    model_config = ConfigDict(extra="forbid")

    at: float = Field(ge=0, le=1, description="Suspicion at which this step applies.")
    action: Literal["flag", "throttle", "perturb", "reject"] = Field(
        description="`flag` records only; `throttle` makes rate shaping charge 1/factor per "
        "unit; `perturb` raises the output-perturbation level; `reject` refuses (429).")
    factor: float = Field(
        0.5, gt=0, le=1, description="throttle: share of the normal rate left (0.25 = 4x "
        "tighter).")
    level: int = Field(1, ge=1, le=3, description="perturb: perturbation level to apply.")


class Config(BaseModel):
    """Signals over a sliding window per identity, a decaying suspicion score, actions."""

    model_config = ConfigDict(extra="forbid")

    window: float = Field(3600, gt=0, le=7 * 86400, description="Window length, seconds.")
    slots: int = Field(6, ge=1, le=60, description="Sub-windows the window slides by.")
    half_life: float = Field(
        6 * 3600, gt=0, description="Seconds for the suspicion score to halve once the "
        "behaviour stops.")
    thresholds: Thresholds = Field(default_factory=Thresholds,
                                   description="Where each signal starts and saturates.")
    weights: Weights = Field(default_factory=Weights, description="Signal weights.")
    reasoning_patterns: list[str] = Field(
        default_factory=list, description="Extra regexes (case-insensitive) that mark "
        "chain-of-thought elicitation, added to the built-in list.")
    group_by: list[str] = Field(
        default_factory=list,
        description="Extra cross-account grouping keys: `client_ip_24` (IPv4 /24, IPv6 /48), "
        "`user_agent`, or `header:NAME`. Identities sharing a value count as peers.",
    )
    steps: list[Step] = Field(
        default_factory=lambda: [Step(at=0.6, action="flag")],
        description="Graduated actions; every step at or below the suspicion applies.")

    @field_validator("group_by")
    @classmethod
    def _known_groups(cls, keys: list[str]) -> list[str]:
        for key in keys:
            if key not in ("client_ip_24", "user_agent") and not (
                    key.startswith("header:") and len(key) > len("header:")):
                raise ValueError(f"unknown group_by key {key!r}: use client_ip_24, "
                                 "user_agent or header:NAME")
            if key.startswith("header:"):
                # read per request: not latin-1 was a 500 on every request; a key
                # header would store (hashed, unkeyed) raw keys in Redis (tests/hostile)
                header_name(key.removeprefix("header:"), credentials=False)
        return keys

    @field_validator("reasoning_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        from gateway.signals import ReasoningPatterns

        ReasoningPatterns.default().extended(patterns)  # raises naming the bad pattern
        return patterns
