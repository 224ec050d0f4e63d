"""Cheap token estimates, no tokenizer download at run time.

Input estimate: every string in the prompt-bearing fields (messages, system,
prompt, input, tools, functions) counts ceil(chars / 4) tokens — the usual
rule of thumb for English BPE vocabularies — plus 4 tokens of framing per
message, plus one token per token id when `prompt` or `input` is given as
token ids. It is reconciled with the upstream's real `usage` afterwards, so it
only has to be cheap and in the right range.

Output reservation: `max_completion_tokens`, else `max_tokens`, else the
rule's default, times `n` (each sample is paid for).
"""

from __future__ import annotations

from typing import Any

CHARS_PER_TOKEN = 4
PER_MESSAGE_TOKENS = 4
_PROMPT_FIELDS = ("messages", "system", "prompt", "input", "tools", "functions")
_TOKEN_ID_FIELDS = ("prompt", "input")  # legacy completions and embeddings take token ids


def _count(value: Any) -> tuple[int, int]:
    """(characters of text, integers) inside `value`."""
    # An explicit stack, not recursion: JSON nested a few hundred levels deep
    # (orjson accepts 1024) would hit Python's recursion limit, and the
    # RecursionError was a 500 for any client who sent it (tests/hostile).
    chars = ints = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            chars += len(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            ints += 1
    return chars, ints


def estimate_input_tokens(body: dict[str, Any]) -> int:
    chars = 0
    token_ids = 0
    messages = 0
    for field in _PROMPT_FIELDS:
        value = body.get(field)
        if value is None:
            continue
        text, ints = _count(value)
        chars += text
        if field in _TOKEN_ID_FIELDS:
            # A prompt given as token ids has no text: it was estimated at 0 and so
            # passed any per-request token limit up front (tests/hostile).
            token_ids += ints
        if field == "messages" and isinstance(value, list):
            messages = len(value)
    return -(-chars // CHARS_PER_TOKEN) + PER_MESSAGE_TOKENS * messages + token_ids


def tokens_from_chars(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


def requested_output_tokens(body: dict[str, Any], default: int) -> int:
    limit = body.get("max_completion_tokens")
    if not isinstance(limit, int) or isinstance(limit, bool):
        limit = body.get("max_tokens")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        limit = default
    n = body.get("n")
    samples = n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1
    return int(limit) * samples
