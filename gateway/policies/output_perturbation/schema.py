"""Config of `output_perturbation`: request guards and response rewrites.

The settings that can grow stronger with an identity's perturbation level
(`logprobs`, `max_n`, `temperature`, `reasoning`, `watermark`) live in
:class:`Perturbation`; `escalate` lists overrides per level. The effective
settings of every level 0..3 are merged once, at load time, and validated
again, so a bad combination is reported against the policy file.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

MAX_LEVEL = 3
_ESCALATING = ("logprobs", "max_n", "temperature", "reasoning", "watermark")


class LogprobsConfig(BaseModel):
    """What callers may ask for in log-probabilities, and what they get back."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["pass", "cap", "refuse"] = Field(
        "cap",
        description="`pass` forwards the request's `logprobs`/`top_logprobs` as sent; `cap` "
        "silently lowers `top_logprobs` (chat) or `logprobs` (legacy completions) to "
        "`max_top_logprobs` and keeps at most that many alternatives per token in the "
        "response; `refuse` answers 400 to any request for logprobs. `logit_bias` together "
        "with logprobs is refused in every mode.",
    )
    max_top_logprobs: int = Field(
        5, ge=0, le=20,
        description="cap: most alternatives per token position (0 = only the chosen token's "
        "own logprob).",
    )
    decimals: int | None = Field(
        2, ge=0, le=6,
        description="Round every returned logprob to this many decimals (after the noise); "
        "null keeps full precision. Applies in `pass` and `cap`.",
    )
    noise: float = Field(
        0.0, ge=0, le=2,
        description="Standard deviation, in nats, of keyed Gaussian noise added to every "
        "returned logprob (0 = off). Deterministic per deployment secret, identity, token "
        "position and preceding tokens, so repeating a query cannot average it away.",
    )


class ReasoningConfig(BaseModel):
    """What happens to reasoning traces: OpenAI-style `reasoning_content`/`reasoning`
    fields and Anthropic `thinking` blocks, streamed or not."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["pass", "drop", "truncate", "replace"] = Field(
        "pass",
        description="`pass` leaves reasoning alone; `drop` removes it (fields, deltas and "
        "thinking blocks); `truncate` keeps the first `max_chars` characters; `replace` "
        "puts `notice` in its place.",
    )
    max_chars: int = Field(
        400, ge=0, le=1_000_000,
        description="truncate: characters of reasoning kept per choice (OpenAI) or per "
        "thinking block (Anthropic).",
    )
    notice: str = Field(
        "[reasoning omitted]", min_length=1, max_length=1000,
        description="replace: the text the client sees instead of the reasoning.",
    )


class WatermarkConfig(BaseModel):
    """The keyed lexical watermark on assistant text (gateway/watermark)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        False,
        description="Mark assistant text (OpenAI `content`/legacy `text`, Anthropic `text` "
        "blocks), keyed by the deployment secret and the caller's identity. Tool calls, "
        "reasoning and JSON-mode answers are never marked. Off when no watermark secret "
        "is configured.",
    )


class Perturbation(BaseModel):
    """The settings that apply at one perturbation level."""

    model_config = ConfigDict(extra="forbid")

    logprobs: LogprobsConfig = Field(
        default_factory=LogprobsConfig,
        description="Request guard and response rounding/noise/top-k for log-probabilities.",
    )
    max_n: int | None = Field(
        None, ge=1, le=128,
        description="Silently lower `n` (samples per prompt, OpenAI chat and legacy "
        "completions) to this; null leaves `n` alone.",
    )
    temperature: tuple[float, float] | None = Field(
        None,
        description="[low, high]: clamp a `temperature` the request sets into this range "
        "(a request that sets none keeps the upstream default). Not applied to Anthropic "
        "requests with thinking enabled, which only accept the default.",
    )
    reasoning: ReasoningConfig = Field(
        default_factory=ReasoningConfig, description="Reasoning traces: pass, drop, "
        "truncate or replace.",
    )
    watermark: WatermarkConfig = Field(
        default_factory=WatermarkConfig, description="Keyed lexical watermark on "
        "assistant text.",
    )

    @field_validator("temperature")
    @classmethod
    def _range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not 0 <= value[0] <= value[1] <= 2:
            raise ValueError(f"need 0 <= low <= high <= 2, got [{value[0]:g}, {value[1]:g}]")
        return value


class Escalation(BaseModel):
    """Overrides for identities at `level` or above (set by prompt_diversity's `perturb`
    step). Only the fields written here change; nested blocks merge field by field."""

    model_config = ConfigDict(extra="forbid")

    level: int = Field(ge=1, le=MAX_LEVEL, description="Perturbation level (1..3) from "
                       "which these overrides apply.")
    logprobs: LogprobsConfig | None = Field(None, description="Overrides of `logprobs`.")
    max_n: int | None = Field(None, ge=1, le=128, description="Override of `max_n`.")
    temperature: tuple[float, float] | None = Field(
        None, description="Override of `temperature`.")
    reasoning: ReasoningConfig | None = Field(None, description="Overrides of `reasoning`.")
    watermark: WatermarkConfig | None = Field(None, description="Overrides of `watermark`.")

    @model_validator(mode="after")
    def _something(self) -> Escalation:
        if not self.model_fields_set & set(_ESCALATING):
            raise ValueError(
                f"escalation to level {self.level} changes nothing: set one of "
                + ", ".join(_ESCALATING))
        return self


class Config(Perturbation):
    """Guards on what a caller may ask for (logprobs, logit_bias, n, temperature) and
    rewrites of what the model returns (logprob noise and rounding, reasoning
    redaction, watermark), stronger as the caller's perturbation level rises."""

    escalate: list[Escalation] = Field(
        default_factory=list,
        description="Stronger settings by perturbation level (ctx level 1..3, raised by "
        "prompt_diversity's `perturb` step). Each entry applies to its level and above, on "
        "top of the entries before it; levels must increase.",
    )
    _levels: tuple[Perturbation, ...] = PrivateAttr(default=())

    @field_validator("escalate")
    @classmethod
    def _increasing(cls, steps: list[Escalation]) -> list[Escalation]:
        levels = [step.level for step in steps]
        if levels != sorted(set(levels)):
            raise ValueError(f"levels must be strictly increasing, got {levels}")
        return steps

    @model_validator(mode="after")
    def _merge_levels(self) -> Config:
        current = Perturbation.model_validate(
            {name: getattr(self, name) for name in _ESCALATING})
        out = [current]
        steps = iter(self.escalate)
        step = next(steps, None)
        for level in range(1, MAX_LEVEL + 1):
            if step is not None and step.level == level:
                try:
                    current = _apply(current, step)
                except ValueError as exc:
                    raise ValueError(f"escalate level {level}: {exc}") from exc
                step = next(steps, None)
            out.append(current)
        self._levels = tuple(out)
        return self

    def at_level(self, level: int) -> Perturbation:
        """Effective settings for a perturbation level (clamped to 0..3)."""
        return self._levels[max(0, min(level, MAX_LEVEL))]

    @property
    def levels(self) -> tuple[Perturbation, ...]:
        return self._levels


def _apply(base: Perturbation, step: Escalation) -> Perturbation:
    merged: dict[str, object] = base.model_dump()
    for name in _ESCALATING:
        if name not in step.model_fields_set:
            continue
        value = getattr(step, name)
        if isinstance(value, BaseModel):
            block = merged[name]
            assert isinstance(block, dict)
            block.update({f: getattr(value, f) for f in value.model_fields_set})
        else:
            merged[name] = value
    return Perturbation.model_validate(merged)
