"""Token usage read from upstream responses, streamed or not.

Pure functions over bytes and :class:`SSEEvent` objects: nothing here raises on
malformed upstream output, because accounting must never break a relay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from gateway.streaming.sse import SSEEvent

__all__ = [
    "Dialect",
    "StreamUsageTracker",
    "UsageCounts",
    "is_openai_usage_only_chunk",
    "usage_from_body",
]

Dialect = Literal["openai", "anthropic"]

# Anthropic bills cache writes and reads as input tokens next to input_tokens.
_ANTHROPIC_INPUT_KEYS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
# Assistant output in an OpenAI delta: text, reasoning (DeepSeek / vLLM spell
# it two ways) and refusals.
_OPENAI_TEXT_KEYS = ("content", "reasoning_content", "reasoning", "refusal")
_ANTHROPIC_DELTA_TEXT_KEYS = ("text", "thinking", "partial_json")
# Responses API (/v1/responses) events whose "delta" is model output text;
# audio deltas are base64 and are left out.
_RESPONSES_TEXT_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
    }
)
_RESPONSES_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_EMPTY_CHOICES = re.compile(rb'"choices"\s*:\s*\[\s*\]')


@dataclass(frozen=True, slots=True)
class UsageCounts:
    input_tokens: int | None
    output_tokens: int | None


def _int(value: object) -> int | None:
    # bool is an int subclass; a count of True is not a count.
    return value if type(value) is int and value >= 0 else None


def _sum_input(usage: dict[str, Any]) -> int | None:
    """Anthropic input tokens including cache tokens, None if none are given."""
    total: int | None = None
    for key in _ANTHROPIC_INPUT_KEYS:
        n = _int(usage.get(key))
        if n is not None:
            total = n if total is None else total + n
    return total


def _loads_dict(data: bytes) -> dict[str, Any] | None:
    try:
        obj = orjson.loads(data)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _openai_usage(usage: dict[str, Any]) -> UsageCounts:
    # Chat / completions / embeddings use prompt_/completion_tokens; the
    # Responses API uses input_/output_tokens.
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    return UsageCounts(_int(prompt), _int(completion))


def usage_from_body(dialect: Dialect, body: bytes) -> UsageCounts | None:
    """Usage of a non-streamed JSON response, or None if it reports none."""
    obj = _loads_dict(body)
    if obj is None:
        return None
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        return None
    if dialect == "openai":
        counts = _openai_usage(usage)
    else:
        counts = UsageCounts(_sum_input(usage), _int(usage.get("output_tokens")))
    if counts.input_tokens is None and counts.output_tokens is None:
        return None
    return counts


def is_openai_usage_only_chunk(event: SSEEvent) -> bool:
    """True for the chunk ``stream_options.include_usage`` adds: ``choices: []``
    and a non-null ``usage``. A regex pre-check spares a JSON parse of every
    ordinary chunk."""
    if not _EMPTY_CHOICES.search(event.data):
        return False
    obj = _loads_dict(event.data)
    return obj is not None and obj.get("choices") == [] and isinstance(obj.get("usage"), dict)


def _str_len(value: object) -> int:
    return len(value) if isinstance(value, str) else 0


class StreamUsageTracker:
    """Follows a streamed response event by event and keeps its token usage.

    ``usage`` holds what the upstream reported (None where it reported nothing,
    e.g. a stream cut short); ``output_text_chars`` counts the characters of
    assistant output seen, so the caller can estimate the tokens of such a
    stream; ``finished`` tells whether the end-of-stream marker arrived.
    """

    __slots__ = ("_dialect", "_input", "_output", "finished", "output_text_chars")

    def __init__(self, dialect: Dialect) -> None:
        if dialect not in ("openai", "anthropic"):
            raise ValueError(f"unknown dialect {dialect!r}")
        self._dialect = dialect
        self._input: int | None = None
        self._output: int | None = None
        self.output_text_chars = 0
        self.finished = False

    @property
    def usage(self) -> UsageCounts:
        return UsageCounts(self._input, self._output)

    def observe(self, event: SSEEvent) -> None:
        if not event.data:
            return  # comments, keep-alives
        if self._dialect == "openai":
            if event.is_done:
                self.finished = True
                return
            obj = _loads_dict(event.data)
            if obj is not None:
                self._observe_openai(obj)
        else:
            obj = _loads_dict(event.data)
            if obj is not None:
                self._observe_anthropic(obj)

    def _observe_openai(self, obj: dict[str, Any]) -> None:
        usage = obj.get("usage")
        if isinstance(usage, dict):
            # Some servers repeat running usage on every chunk: last one wins.
            counts = _openai_usage(usage)
            if counts.input_tokens is not None:
                self._input = counts.input_tokens
            if counts.output_tokens is not None:
                self._output = counts.output_tokens
        choices = obj.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict):
                    self.output_text_chars += _openai_choice_chars(choice)
            return
        # Responses API events carry a "type" instead of "choices".
        kind = obj.get("type")
        if not isinstance(kind, str):  # also keeps unhashable JSON out of the set lookups
            return
        if kind in _RESPONSES_TEXT_DELTAS:
            self.output_text_chars += _str_len(obj.get("delta"))
        elif kind in _RESPONSES_TERMINAL:
            self.finished = True
            response = obj.get("response")
            if isinstance(response, dict) and isinstance(response.get("usage"), dict):
                self._observe_openai({"usage": response["usage"]})

    def _observe_anthropic(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind == "content_block_delta":
            delta = obj.get("delta")
            if isinstance(delta, dict):
                for key in _ANTHROPIC_DELTA_TEXT_KEYS:
                    self.output_text_chars += _str_len(delta.get(key))
        elif kind == "message_start":
            message = obj.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            if isinstance(usage, dict):
                # Its output_tokens is a placeholder (about 1), not a count of
                # the output; only message_delta reports that.
                self._input = _sum_input(usage)
        elif kind == "message_delta":
            usage = obj.get("usage")
            if isinstance(usage, dict):
                # Cumulative counts: the latest wins. Newer API versions repeat
                # the input counts here, and server tools can make them grow.
                total_input = _sum_input(usage)
                if total_input is not None:
                    self._input = total_input
                output = _int(usage.get("output_tokens"))
                if output is not None:
                    self._output = output
        elif kind == "message_stop":
            self.finished = True


def _openai_choice_chars(choice: dict[str, Any]) -> int:
    n = _str_len(choice.get("text"))  # legacy /v1/completions
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return n
    for key in _OPENAI_TEXT_KEYS:
        n += _str_len(delta.get(key))
    tool_calls = delta.get("tool_calls")
    if isinstance(tool_calls, list):
        for call in tool_calls:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                n += _str_len(function.get("arguments"))
    function_call = delta.get("function_call")  # deprecated single-call form
    if isinstance(function_call, dict):
        n += _str_len(function_call.get("arguments"))
    return n
