"""Per-request state of one `output_perturbation` rule (kept in `ctx.rule_state`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gateway import metrics
from gateway.policies.output_perturbation.logprobs import LogprobPerturber
from gateway.policies.output_perturbation.marks import Marker, StreamMarker
from gateway.policies.output_perturbation.schema import ReasoningConfig

Route = Literal["chat", "legacy", "messages"]

# Metric `kind` labels, one count per request each.
TOP_LOGPROBS_CAPPED = "top_logprobs_capped"
N_CAPPED = "n_capped"
TEMPERATURE_CLAMPED = "temperature_clamped"
LOGPROBS_REFUSED = "logprobs_refused"
LOGIT_BIAS_REFUSED = "logit_bias_refused"
LOGPROBS_PERTURBED = "logprobs_perturbed"
REASONING = {"drop": "reasoning_dropped", "truncate": "reasoning_truncated",
             "replace": "reasoning_replaced"}
WATERMARKED = "watermarked"


def count(rule: str, kind: str, shadow: bool) -> None:
    metrics.PERTURBATIONS.labels(rule=rule, kind=kind, shadow=str(shadow).lower()).inc()


@dataclass(slots=True)
class ChoiceState:
    """One OpenAI choice of a stream."""

    reasoning_sent: dict[str, int] = field(default_factory=dict)  # per field name
    notice_sent: set[str] = field(default_factory=set)
    marker: StreamMarker | None = None
    # legacy completions with echo: prompt characters still to pass unmarked
    echo_left: str = ""


@dataclass(slots=True)
class BlockState:
    """One Anthropic content block of a stream."""

    kind: str
    client_index: int | None  # None: dropped
    sent: int = 0  # thinking characters passed on
    modified: bool = False  # thinking text changed: its signature no longer holds
    marker: StreamMarker | None = None


@dataclass(slots=True)
class RequestState:
    rule: str
    shadow: bool
    route: Route
    logprobs: LogprobPerturber | None  # None: no logprob rewriting
    reasoning: ReasoningConfig | None  # None: reasoning passes
    watermark: bool  # assistant text would be marked (counted even in shadow)
    marker: Marker | None  # the marker, when marking for real
    echo: list[str] | None = None  # legacy completions: echoed prompts
    n: int = 1
    actions: set[str] = field(default_factory=set)
    possible: set[str] = field(default_factory=set)  # kinds a response could still add
    choices: dict[int, ChoiceState] = field(default_factory=dict)
    envelope: dict[str, Any] | None = None  # last OpenAI chunk, for extra chunks
    blocks: dict[int, BlockState] = field(default_factory=dict)
    next_index: int = 0

    def note(self, kind: str) -> None:
        if kind not in self.actions:
            self.actions.add(kind)
            count(self.rule, kind, self.shadow)

    @property
    def settled(self) -> bool:
        """Shadow only: everything this response could show has been counted."""
        return self.possible <= self.actions

    def choice(self, index: int) -> ChoiceState:
        found = self.choices.get(index)
        if found is None:
            found = self.choices[index] = ChoiceState()
            if self.echo:
                prompt = index // max(self.n, 1)
                if prompt < len(self.echo):
                    found.echo_left = self.echo[prompt]
        return found
