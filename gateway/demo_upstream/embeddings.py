"""`POST /v1/embeddings`: deterministic bag-of-words vectors.

Each word maps to a fixed pseudo-random vector and a text is the normalized
sum of its words, so texts sharing words get similar vectors — enough for
diversity detectors in tests to see structure, at almost no CPU cost.
"""

from __future__ import annotations

import base64
import math
import random
import struct
from functools import lru_cache

from starlette.requests import Request
from starlette.responses import Response

from . import prose
from .common import (
    RequestError,
    bad_type,
    json_response,
    openai_error,
    opt_int,
    opt_str,
    read_object,
    req_str,
)

DEFAULT_DIMENSIONS = 64
_PUNCTUATION = ".,;:!?\"'()[]{}"


def _fresh_vector(word: str, dims: int) -> tuple[float, ...]:
    rng = random.Random(prose.seed_of(word))
    return tuple(rng.gauss(0.0, 1.0) for _ in range(dims))


_cached_vector = lru_cache(maxsize=4096)(_fresh_vector)


def _word_vector(word: str, dims: int) -> tuple[float, ...]:
    # Only small vectors are cached, so a client asking for 4096 dimensions cannot
    # make the cache grow large.
    return _cached_vector(word, dims) if dims <= 256 else _fresh_vector(word, dims)


def embed(text: str, dims: int = DEFAULT_DIMENSIONS) -> list[float]:
    """A unit vector for `text`; the same text always gives the same vector."""
    acc = [0.0] * dims
    for word in text.lower().split() or [""]:
        for i, x in enumerate(_word_vector(word.strip(_PUNCTUATION), dims)):
            acc[i] += x
    norm = math.sqrt(sum(x * x for x in acc)) or 1.0
    return [x / norm for x in acc]


def to_base64(vector: list[float]) -> str:
    """Little-endian float32, the layout OpenAI's `encoding_format: base64` uses."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _inputs(value: object) -> list[tuple[str, int]]:
    """(text, token count) per input; token-id arrays are embedded as their digits."""
    if isinstance(value, str):
        return [(value, prose.count_words(value))]
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            return [(v, prose.count_words(v)) for v in value]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [(" ".join(map(str, value)), len(value))]
        if all(isinstance(v, list) and all(isinstance(t, int) for t in v) for v in value):
            return [(" ".join(map(str, v)), len(v)) for v in value]
    if isinstance(value, list) and not value:
        raise RequestError("'input' must not be empty.", param="input", code="invalid_value")
    raise bad_type("input", "a string or an array of strings", value)


async def create(request: Request) -> Response:
    try:
        body = await read_object(request)
        model = req_str(body, "model")
        if "input" not in body:
            raise RequestError(
                "Missing required parameter: 'input'.",
                param="input",
                code="missing_required_parameter",
            )
        inputs = _inputs(body["input"])
        dims = opt_int(body, "dimensions", 1, 4096) or DEFAULT_DIMENSIONS
        encoding = opt_str(body, "encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise RequestError(
                f"Invalid 'encoding_format': expected 'float' or 'base64', got {encoding!r}.",
                param="encoding_format",
                code="invalid_value",
            )
    except RequestError as exc:
        return openai_error(exc.message, param=exc.param, code=exc.code)
    data = []
    for index, (text, _) in enumerate(inputs):
        vector = embed(text, dims)
        value: list[float] | str = to_base64(vector) if encoding == "base64" else vector
        data.append({"object": "embedding", "index": index, "embedding": value})
    used = sum(count for _, count in inputs)
    return json_response(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": used, "total_tokens": used},
        }
    )
