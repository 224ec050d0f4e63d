"""Cheap token estimates, no tokenizer download at run time.

Input estimate: every string in the prompt-bearing fields (messages, system,
prompt, input, tools, functions) counts ceil(chars / 4) tokens — the usual
rule of thumb for English BPE vocabularies — plus 4 tokens of framing per
message. It is reconciled with the upstream's real `usage` afterwards, so it
only has to be cheap and in the right range.

Output reservation: `max_completion_tokens`, else `max_tokens`, else the
rule's default, times `n` (each sample is paid for).
"""

from __future__ import annotations

from typing import Any

CHARS_PER_TOKEN = 4
PER_MESSAGE_TOKENS = 4
_PROMPT_FIELDS = ("messages", "system", "prompt", "input", "tools", "functions")


def _chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_chars(v) for v in value.values())
    if isinstance(value, list):
        return sum(_chars(v) for v in value)
    return 0


def estimate_input_tokens(body: dict[str, Any]) -> int:
    chars = 0
    messages = 0
    for field in _PROMPT_FIELDS:
        value = body.get(field)
        if value is None:
            continue
        chars += _chars(value)
        if field == "messages" and isinstance(value, list):
            messages = len(value)
    return -(-chars // CHARS_PER_TOKEN) + PER_MESSAGE_TOKENS * messages


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
