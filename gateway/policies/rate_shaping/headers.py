"""Rate-limit headers clients already know.

- OpenAI: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, resets
  written like `1s`, `6m0s`, `20ms`.
- IETF draft-ietf-httpapi-ratelimit-headers: `RateLimit-Policy` lists each
  limit as `"name";q=QUOTA;w=WINDOW`, `RateLimit` the state of the tightest
  as `"name";r=REMAINING;t=SECONDS`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.storage.base import OpResult


@dataclass(frozen=True, slots=True)
class LimitView:
    """A limit and what storage said about it, ready to render."""

    name: str  # requests, input_tokens, output_tokens, total_tokens, concurrent
    quota: float
    window: float  # seconds; 0 for concurrent
    result: OpResult


def format_reset(seconds: float) -> str:
    """OpenAI's duration style: 20ms, 1s, 1.5s, 6m0s, 1h2m3s."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + f"{minutes}m{secs}s"


def _openai(views: Sequence[LimitView], suffix: str) -> list[tuple[bytes, bytes]]:
    if not views:
        return []
    tightest = min(views, key=lambda v: v.result.remaining / max(v.quota, 1))
    r = tightest.result
    return [
        (b"x-ratelimit-limit-" + suffix.encode(), str(int(tightest.quota)).encode()),
        (b"x-ratelimit-remaining-" + suffix.encode(), str(int(r.remaining)).encode()),
        (b"x-ratelimit-reset-" + suffix.encode(), format_reset(r.reset_after).encode()),
    ]


def rate_limit_headers(views: Sequence[LimitView]) -> list[tuple[bytes, bytes]]:
    rated = [v for v in views if v.window > 0]
    headers = _openai([v for v in rated if v.name == "requests"], "requests")
    headers += _openai([v for v in rated if v.name.endswith("tokens")], "tokens")
    if rated:
        policy = ", ".join(f'"{v.name}";q={int(v.quota)};w={math.ceil(v.window)}'
                           for v in rated)
        tightest = min(rated, key=lambda v: v.result.remaining / max(v.quota, 1))
        state = (f'"{tightest.name}";r={int(tightest.result.remaining)};'
                 f"t={math.ceil(tightest.result.reset_after)}")
        headers += [(b"ratelimit-policy", policy.encode()), (b"ratelimit", state.encode())]
    return headers
