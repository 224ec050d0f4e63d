"""Config of `rate_shaping`: several limits per rule, one action on exceeding.

Rates are written `AMOUNT/PERIOD`: `100/min`, `10/s`, `2000000/day`,
`500/5min`. Periods: s, sec, second, m, min, minute, h, hour, d, day
(plural forms too), optionally prefixed by a count.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}
# Units are matched whole (no stripping of a plural "s"), so `10/ms` is an
# error rather than 10 per minute.
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")


class Rate(BaseModel):
    """A parsed rate: `amount` units per `period` seconds."""

    model_config = ConfigDict(frozen=True)

    amount: float = Field(description="Units allowed per period.")
    period: float = Field(description="Length of the period in seconds.")

    def __str__(self) -> str:
        return f"{self.amount:g}/{self.period:g}s"

    @model_validator(mode="after")
    def _finite_positive(self) -> Rate:
        # written as a mapping, `.inf`/`.nan` got through and made every request a 500
        # (the counters refuse non-finite numbers) (tests/hostile)
        if not all(math.isfinite(v) and v > 0 for v in (self.amount, self.period)):
            raise ValueError("amount and period must be finite and positive")
        return self


def parse_rate(value: object) -> object:
    if not isinstance(value, str):
        return value
    found = _RATE.match(value.lower())
    if found is None:
        raise ValueError(f"{value!r} is not a rate; write it like 100/min or 10/s")
    amount, count, unit = found.groups()
    if unit not in _UNITS:
        raise ValueError(
            f"unknown unit {unit!r} in {value!r}; use s, min, h or day (e.g. 100/min)")
    period = float(count or 1) * _UNITS[unit]
    if float(amount) <= 0 or period <= 0:
        raise ValueError(f"{value!r}: amount and period must be positive")
    if not (math.isfinite(float(amount)) and math.isfinite(period)):
        # 400 digits parse as infinity; the counters cannot take it (tests/hostile)
        raise ValueError(f"{value!r}: amount and period must be finite")
    return {"amount": float(amount), "period": period}


RateField = Annotated[Rate, BeforeValidator(parse_rate)]
MAX_REFILL_SECONDS = 10 * 366 * 86400.0
Dimension = Literal["requests", "input_tokens", "output_tokens", "total_tokens"]
_DIMENSIONS: tuple[Dimension, ...] = ("requests", "input_tokens", "output_tokens", "total_tokens")


class Limit(BaseModel):
    """One limit: exactly one of the rate fields, or `concurrent`."""

    model_config = ConfigDict(extra="forbid")

    requests: RateField | None = Field(None, description="Requests per period, e.g. `100/min`.")
    input_tokens: RateField | None = Field(
        None, description="Input (prompt) tokens per period, e.g. `200000/min`.")
    output_tokens: RateField | None = Field(
        None, description="Output (completion) tokens per period, e.g. `50000/min`.")
    total_tokens: RateField | None = Field(
        None, description="Input + output tokens per period; `N/day` is a daily quota.")
    concurrent: int | None = Field(
        None, ge=1, le=100_000, description="Requests in flight at once.")
    burst: float | None = Field(
        None, gt=0,
        description="Most units usable at once (bucket size). Default: the rate's amount, "
        "i.e. a whole period's worth; smaller values spread traffic more evenly.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Limit:
        given = [d for d in (*_DIMENSIONS, "concurrent") if getattr(self, d) is not None]
        if len(given) != 1:
            raise ValueError(
                "a limit sets exactly one of requests, input_tokens, output_tokens, "
                f"total_tokens, concurrent (got {', '.join(given) or 'none'})")
        if self.concurrent is not None and self.burst is not None:
            raise ValueError("burst does not apply to a concurrent limit")
        if self.burst is not None and not math.isfinite(self.burst):
            # `burst: .inf` passed gt=0 and made every request a 500 (tests/hostile)
            raise ValueError("burst must be finite")
        rate = self.rate
        if rate is not None:
            # A bucket's key lives as long as the bucket takes to refill; past Redis's
            # expiry range every admit script failed, and the circuit breaker opened
            # for every rule and identity (tests/hostile).
            refill = (self.burst or rate.amount) * rate.period / rate.amount
            if refill > MAX_REFILL_SECONDS:
                raise ValueError(
                    f"this bucket takes {refill:.3g} s to refill (burst x period / amount); "
                    f"at most {MAX_REFILL_SECONDS:.0f} s (10 years) is supported")
        return self

    @property
    def dimension(self) -> Dimension | Literal["concurrent"]:
        for name in _DIMENSIONS:
            if getattr(self, name) is not None:
                return name
        return "concurrent"

    @property
    def rate(self) -> Rate | None:
        dimension = self.dimension
        return None if dimension == "concurrent" else getattr(self, dimension)


class Degrade(BaseModel):
    """How to cheapen a request instead of refusing it."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = Field(
        None, ge=1, description="Clamp max_tokens / max_completion_tokens to this.")
    model: str | None = Field(None, description="Rewrite `model` to this cheaper one.")

    @model_validator(mode="after")
    def _something(self) -> Degrade:
        if self.max_tokens is None and self.model is None:
            raise ValueError("degrade needs max_tokens, model or both")
        return self


class Config(BaseModel):
    """Limits on what one identity (or tier, tenant, model) may draw, and how to shape it."""

    model_config = ConfigDict(extra="forbid")

    key: Literal["identity", "identity_model", "tier", "tenant", "global"] = Field(
        "identity",
        description="Who shares the limits: each identity, each identity per model, each "
        "tier, each tenant, or everyone together.",
    )
    limits: list[Limit] = Field(min_length=1, description="Every limit must hold to admit.")
    on_exceed: Literal["reject", "delay", "degrade"] = Field(
        "reject",
        description="`reject` with 429; `delay` until it fits (up to max_delay, then 429); "
        "`degrade` lets the request through cheapened (see `degrade`).",
    )
    max_delay: float = Field(
        5.0, ge=0, le=300, description="Longest a `delay` may hold a request, in seconds.")
    max_queue: int = Field(
        1000, ge=0,
        description="Most requests held by `delay` at once in one gateway process; beyond "
        "it requests are refused with Retry-After.",
    )
    degrade: Degrade | None = Field(None, description="What `degrade` does to a request.")
    default_output_tokens: int = Field(
        1024, ge=0, description="Output tokens reserved when a request sets no max_tokens.")
    fallback_replicas: int = Field(
        1, ge=1,
        description="Gateway replicas sharing the limits; when Redis is away each process "
        "enforces limit / replicas locally.",
    )
    headers: bool = Field(True, description="Send x-ratelimit-* and RateLimit headers.")

    @model_validator(mode="after")
    def _degrade_given(self) -> Config:
        if self.on_exceed == "degrade" and self.degrade is None:
            raise ValueError("on_exceed: degrade needs a `degrade:` block")
        return self
