"""OpenAI legacy dialect: `POST /v1/completions` (`text_completion` objects).

Unlike the real endpoint (default max_tokens 16) the default is the full prose
answer, bounded by `max_tokens`. A list of prompts gives `n` choices per prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from starlette.requests import Request
from starlette.responses import Response

from . import logprobs as lp
from . import prose
from .common import (
    DONE,
    JSONObj,
    RequestError,
    bad_type,
    body_response,
    new_id,
    now,
    openai_error,
    opt_bool,
    opt_int,
    read_object,
    req_str,
    sse_data,
    sse_response,
)
from .config import DemoConfig
from .openai_api import FINGERPRINT, chunk_frame, interleave, max_tokens, stream_flags, usage


def _prompts(body: JSONObj) -> list[str]:
    if "prompt" not in body:
        raise RequestError(
            "Missing required parameter: 'prompt'.",
            param="prompt",
            code="missing_required_parameter",
        )
    value = body["prompt"]
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            return list(value)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [" ".join(map(str, value))]
        if all(isinstance(v, list) and all(isinstance(t, int) for t in v) for v in value):
            return [" ".join(map(str, v)) for v in value]
    raise bad_type("prompt", "a string or an array of strings", value)


@dataclass(frozen=True, slots=True)
class _Choice:
    index: int
    prompt: str
    tokens: tuple[str, ...]
    finish_reason: str
    logprobs: list[lp.TokenLogprob] | None


class OpenAICompletions:
    def __init__(self, config: DemoConfig) -> None:
        self.config = config

    async def handle(self, request: Request) -> Response:
        try:
            body = await read_object(request)
            model = req_str(body, "model")
            prompts = _prompts(body)
            limit = max_tokens(body)
            n = opt_int(body, "n", 1, 128) or 1
            stream, include_usage = stream_flags(body)
            top = opt_int(body, "logprobs", 0, 5)
            echo = opt_bool(body, "echo")
        except RequestError as exc:
            return openai_error(exc.message, param=exc.param, code=exc.code)
        choices = [
            self._choice(p * n + j, prompt, j, limit, top)
            for p, prompt in enumerate(prompts)
            for j in range(n)
        ]
        prompt_tokens = sum(prose.count_words(p) for p in prompts)
        completion = sum(len(c.tokens) for c in choices)
        used = usage(prompt_tokens, completion)
        del used["completion_tokens_details"], used["prompt_tokens_details"]
        cmpl_id, created = new_id("cmpl-"), now()
        if not stream:
            return body_response(
                orjson.dumps(
                    {
                        "id": cmpl_id,
                        "object": "text_completion",
                        "created": created,
                        "model": model,
                        "system_fingerprint": FINGERPRINT,
                        "choices": [_full_choice(c, echo) for c in choices],
                        "usage": used,
                    }
                )
            )
        head, tail = chunk_frame(cmpl_id, created, model, "text_completion", include_usage)
        ticks = interleave(
            [[head + orjson.dumps(d) + tail for d in _chunks(c, echo)] for c in choices]
        )
        if include_usage:
            ticks.append(
                sse_data(
                    {
                        "id": cmpl_id,
                        "object": "text_completion",
                        "created": created,
                        "model": model,
                        "system_fingerprint": FINGERPRINT,
                        "choices": [],
                        "usage": used,
                    }
                )
            )
        ticks.append(DONE)
        return sse_response(ticks, self.config.word_delay)

    def _choice(
        self, index: int, prompt: str, variant: int, limit: int | None, top: int | None
    ) -> _Choice:
        seed = (prose.seed_of(prompt) + variant) & (2**64 - 1)
        source = (
            prose.FAST_TOKENS
            if self.config.fast
            else prose.answer_tokens(seed, self.config.paragraphs, prose.topic_of(prompt))
        )
        kept, _, cut = prose.take(source, limit)
        probs = lp.compute(kept, seed, top) if top is not None else None
        return _Choice(index, prompt, kept, "length" if cut else "stop", probs)


def _full_choice(choice: _Choice, echo: bool) -> JSONObj:
    prefix = choice.prompt if echo else ""
    probs = None
    if choice.logprobs is not None:
        probs = lp.legacy_block(choice.logprobs, len(prefix))
    return {
        "text": prefix + "".join(choice.tokens),
        "index": choice.index,
        "logprobs": probs,
        "finish_reason": choice.finish_reason,
    }


def _chunks(choice: _Choice, echo: bool) -> list[JSONObj]:
    out: list[JSONObj] = []
    offset = 0
    if echo:
        out.append(
            {"text": choice.prompt, "index": choice.index, "logprobs": None, "finish_reason": None}
        )
        offset = len(choice.prompt)
    for i, token in enumerate(choice.tokens):
        probs = None
        if choice.logprobs is not None:
            probs = lp.legacy_block([choice.logprobs[i]], offset)
        offset += len(token)
        out.append({"text": token, "index": choice.index, "logprobs": probs, "finish_reason": None})
    out.append(
        {"text": "", "index": choice.index, "logprobs": None, "finish_reason": choice.finish_reason}
    )
    return out
