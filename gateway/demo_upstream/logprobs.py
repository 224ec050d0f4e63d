"""Deterministic, plausible token log-probabilities in OpenAI's two formats.

The chosen token always has the highest probability and the alternatives
share the remaining mass in decreasing amounts, so each top list is sorted
descending and its probabilities sum to at most 1.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from . import prose
from .common import JSONObj

_ALTERNATIVES = tuple(sorted(set(prose.ADJECTIVES + prose.NOUNS + prose.ADVERBS)))


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    logprob: float
    top: tuple[tuple[str, float], ...]  # (token, logprob), chosen token first


def compute(tokens: Sequence[str], seed: int, top_k: int) -> list[TokenLogprob]:
    # Two generators, so a token's own logprob does not depend on top_k.
    rng = random.Random(seed ^ 0x10C9)
    alt_rng = random.Random(seed ^ 0xA17)
    out: list[TokenLogprob] = []
    for token in tokens:
        chosen = 0.35 + 0.64 * math.sqrt(rng.random())
        logprob = round(math.log(chosen), 6)
        top = [(token, logprob)]
        if top_k > 1:
            prefix = token[: len(token) - len(token.lstrip())]
            rest = 1.0 - chosen
            word = token.strip()
            for alt in alt_rng.sample(_ALTERNATIVES, top_k):
                if alt == word or len(top) == top_k:
                    continue
                rest *= 0.5
                top.append((prefix + alt, round(math.log(max(rest, 1e-12)), 6)))
        out.append(TokenLogprob(token, logprob, tuple(top[:top_k])))
    return out


def chat_entry(item: TokenLogprob) -> JSONObj:
    """One element of `choices[].logprobs.content` (chat completions)."""
    return {
        "token": item.token,
        "logprob": item.logprob,
        "bytes": list(item.token.encode()),
        "top_logprobs": [
            {"token": tok, "logprob": lp, "bytes": list(tok.encode())} for tok, lp in item.top
        ],
    }


def legacy_block(items: Sequence[TokenLogprob], offset: int) -> JSONObj:
    """`choices[].logprobs` of legacy completions; offsets count from `offset`."""
    offsets: list[int] = []
    for item in items:
        offsets.append(offset)
        offset += len(item.token)
    return {
        "tokens": [item.token for item in items],
        "token_logprobs": [item.logprob for item in items],
        "top_logprobs": [dict(item.top) for item in items],
        "text_offset": offsets,
    }
