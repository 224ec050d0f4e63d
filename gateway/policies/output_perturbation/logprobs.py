"""Keyed noise, rounding and top-k for returned log-probabilities.

The noise is Gaussian, drawn from keyed hashes (BLAKE2b, key derived from the
deployment secret and the caller's identity) of the choice's *preceding
tokens*, which also fix the token position:

- the alternatives of one position (`top_logprobs`) get the noise of their
  rank, one hash per position for all of them;
- the chosen token gets the noise of its rank when it is among the
  alternatives (so its `logprob` and its `top_logprobs` entry agree), and
  otherwise a noise keyed by the token itself.

So the same identity asking the same thing gets exactly the same values back:
repeating a query, asking for `n` samples, or re-sampling until the same
prefix comes up again cannot average the noise away, because every sample
that shares a prefix shares its noise, whichever token it then picks. A
different identity gets independent noise, so pooling accounts does not help
either. The prompt is deliberately not part of the key: trivially varied
prompts (that leave the answer alike) would otherwise each bring fresh noise.

After the noise, values are shifted so the returned candidates' probabilities
sum to at most 1, clamped to <= 0, rounded, and the alternatives re-sorted in
descending order (what SDK users expect of `top_logprobs`).
"""

from __future__ import annotations

import hashlib
import math
import struct
from array import array
from dataclasses import dataclass, field
from operator import itemgetter
from statistics import NormalDist
from typing import Any

from gateway.policies.output_perturbation.schema import LogprobsConfig

_PERSON = b"dg-logprob-v1"
_blake2b = hashlib.blake2b
_log, _exp, _floor = math.log, math.exp, math.floor
_first = itemgetter(0)


def derive_key(secret: bytes, identity: str) -> bytes:
    """Per-identity noise key; the deployment secret itself is never used directly."""
    base = _blake2b(secret, digest_size=32, person=_PERSON).digest()
    return _blake2b(identity.encode("utf-8", "surrogatepass"), key=base,
                    digest_size=32).digest()


_table: array[float] | None = None


def _normal_table() -> array[float]:
    """Standard normal quantiles at the midpoints of 65,536 equal-probability bins
    (|z| <= 4.3): a 16-bit hash slice becomes a normal variate with one lookup.
    Built on first use (~30 ms)."""
    global _table
    if _table is None:
        quantile = NormalDist().inv_cdf
        _table = array("d", (quantile((i + 0.5) / 65536) for i in range(65536)))
    return _table


_UNPACK = tuple(struct.Struct(f"<{n}H").unpack_from for n in range(33))


def rank_noise(key: bytes, prefix: bytes, count: int) -> list[float]:
    """`count` standard normal variates for the ranks of one position: 32 per
    64-byte keyed hash (always 64 bytes, so rank r's noise is the same whatever
    the number of alternatives asked for)."""
    table = _table if _table is not None else _normal_table()
    words = _UNPACK[min(count, 32)](_blake2b(b"R" + prefix, key=key, digest_size=64).digest())
    out = [table[w] for w in words]
    block = 1
    while len(out) < count:
        more = _blake2b(b"R" + prefix + bytes((block,)), key=key, digest_size=64).digest()
        out.extend(table[w] for w in _UNPACK[32](more))
        block += 1
    return out


def gaussian(key: bytes, prefix: bytes, token: str) -> float:
    """A standard normal variate fixed by (key, prefix, token)."""
    digest = _blake2b(b"T" + prefix + b"\x1f" + token.encode("utf-8", "surrogatepass"),
                      key=key, digest_size=2).digest()
    return _normal_table()[int.from_bytes(digest, "little")]


@dataclass(slots=True)
class TokenChain:
    """Position state of one choice (one per logprob list: content, refusal)."""

    prefix: bytes = b""
    position: int = 0

    def advance(self, token: str) -> None:
        self.prefix = _blake2b(self.prefix + token.encode("utf-8", "surrogatepass"),
                               digest_size=16).digest()
        self.position += 1


def _number(value: object) -> bool:
    # JSON numbers only (orjson never yields NaN or infinities); bool is no number
    kind = type(value)
    return kind is float or kind is int


@dataclass(slots=True)
class LogprobPerturber:
    """Applies one request's logprob settings; holds the per-choice positions."""

    config: LogprobsConfig
    key: bytes
    top_k: int | None  # None: keep every alternative (mode pass)
    chains: dict[tuple[int, str], TokenChain] = field(default_factory=dict)

    def chain(self, choice: int, part: str) -> TokenChain:
        found = self.chains.get((choice, part))
        if found is None:
            found = self.chains[(choice, part)] = TokenChain()
        return found

    # -- one position ------------------------------------------------------------
    def position(
        self, chain: TokenChain, token: str | None, own: object,
        alternatives: list[tuple[str, object]] | None,
    ) -> tuple[object, list[tuple[int, float]] | None]:
        """New own logprob, and the alternatives to keep as (index into
        `alternatives`, new logprob) sorted by descending logprob, for one position."""
        sigma = self.config.noise
        scored: list[tuple[float, int]] = []
        own_noise: float | None = None
        own_rank = -1
        if alternatives:
            if sigma > 0:
                noise = rank_noise(self.key, chain.prefix, len(alternatives))
                for i, (tok, raw) in enumerate(alternatives):
                    kind = type(raw)
                    if kind is float or kind is int:
                        z = noise[i]
                        scored.append((raw + sigma * z, i))  # type: ignore[operator]
                        if own_rank < 0 and tok == token:
                            own_noise, own_rank = z, i
            else:
                scored = [(float(raw), i)  # type: ignore[arg-type]
                          for i, (_, raw) in enumerate(alternatives) if _number(raw)]
            scored.sort(key=_first, reverse=True)  # stable: ties keep upstream order
            if self.top_k is not None:
                del scored[self.top_k:]
        own_value: float | None = None
        if token is not None and _number(own):
            own_value = float(own)  # type: ignore[arg-type]
            if sigma > 0:
                if own_noise is None:
                    own_noise = gaussian(self.key, chain.prefix, token)
                own_value += sigma * own_noise
        shift = 0.0
        if sigma > 0:
            # keep the returned candidates a (sub-)distribution: sum of probs <= 1
            mass = sum([_exp(v) for v, _ in scored])
            if own_value is not None and not any([i == own_rank for _, i in scored]):
                mass += _exp(own_value)
            if mass > 1.0:
                shift = -_log(mass)
        if token is not None:
            chain.advance(token)
        decimals = self.config.decimals
        scale = None if decimals is None else 10.0 ** decimals
        if own_value is not None:
            own_value = _finish(own_value + shift, scale)
        if alternatives is None:
            return (own if own_value is None else own_value), None
        if scale is None:
            kept = [(i, v + shift if v + shift < 0.0 else 0.0) for v, i in scored]
        else:
            kept = [(i, _floor((v + shift) * scale + 0.5) / scale if v + shift < 0.0 else 0.0)
                    for v, i in scored]
        return (own if own_value is None else own_value), kept

    # -- OpenAI formats ----------------------------------------------------------
    def chat(self, choice: int, logprobs: dict[str, Any]) -> bool:
        """Chat `choices[].logprobs` (`content` and `refusal` lists), in place."""
        changed = False
        for part in ("content", "refusal"):
            entries = logprobs.get(part)
            if not isinstance(entries, list):
                continue
            chain = self.chain(choice, part)
            for entry in entries:
                if isinstance(entry, dict):
                    changed |= self._chat_entry(chain, entry)
        return changed

    def _chat_entry(self, chain: TokenChain, entry: dict[str, Any]) -> bool:
        token = entry.get("token")
        if not isinstance(token, str):
            return False
        tops = entry.get("top_logprobs")
        alternatives: list[tuple[str, object]] | None = None
        items: list[dict[str, Any]] = []
        if isinstance(tops, list):
            alternatives = []
            for top in tops:
                if type(top) is dict:
                    tok = top.get("token")
                    if type(tok) is str:
                        items.append(top)
                        alternatives.append((tok, top.get("logprob")))
        own, kept = self.position(chain, token, entry.get("logprob"), alternatives)
        entry["logprob"] = own
        if kept is not None:
            rebuilt = []
            for i, value in kept:
                item = items[i]  # parsed from this very event: ours to change
                item["logprob"] = value
                rebuilt.append(item)
            entry["top_logprobs"] = rebuilt
        return True

    def legacy(self, choice: int, block: dict[str, Any]) -> bool:
        """Legacy completions `choices[].logprobs` (parallel lists), in place."""
        tokens = block.get("tokens")
        values = block.get("token_logprobs")
        if not isinstance(tokens, list) or not isinstance(values, list):
            return False
        tops = block.get("top_logprobs")
        chain = self.chain(choice, "text")
        new_values: list[object] = []
        new_tops: list[object] = []
        for i, token in enumerate(tokens):
            own = values[i] if i < len(values) else None
            top = tops[i] if isinstance(tops, list) and i < len(tops) else None
            alternatives = list(top.items()) if isinstance(top, dict) else None
            if not isinstance(token, str):
                new_values.append(own)
                new_tops.append(top)
                continue
            value, kept = self.position(chain, token, own, alternatives)
            new_values.append(value)
            if kept is not None and alternatives is not None:
                new_tops.append({alternatives[j][0]: lp for j, lp in kept})
            else:
                new_tops.append(top)
        block["token_logprobs"] = new_values + values[len(tokens):]
        if isinstance(tops, list):
            block["top_logprobs"] = new_tops[: len(tops)]
        return True


def _finish(value: float, scale: float | None) -> float:
    """Clamp to <= 0 and round half up to 1/scale: the quotient of two integers-valued
    doubles is the double nearest the decimal, as round() gives, at a fraction of the
    cost (and never -0.0)."""
    if value >= 0.0:
        return 0.0
    if scale is not None:
        return _floor(value * scale + 0.5) / scale
    return value
