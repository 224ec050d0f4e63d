"""OpenAI dialect rewrites: chat completions and legacy completions, whole or streamed.

Touched: `logprobs` (chat `content`/`refusal` lists, legacy parallel lists),
reasoning strings (`reasoning_content`, `reasoning`) in messages and deltas,
assistant text (`message.content`, `delta.content`, legacy `text`) for the
watermark. Never touched: tool calls, `usage`, ids, anything else. Held-back
watermark text goes out with the choice's `finish_reason` chunk, or at the
latest in an extra chunk before `[DONE]`.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.policies.output_perturbation.events import json_event
from gateway.policies.output_perturbation.state import (
    LOGPROBS_PERTURBED,
    REASONING,
    WATERMARKED,
    ChoiceState,
    RequestState,
)
from gateway.streaming.sse import SSEEvent

REASONING_KEYS = ("reasoning_content", "reasoning")
_REASONING_BYTES = b'"reasoning'
_BLANK_KEYS = frozenset({"content", *REASONING_KEYS})
_CHOICE_KEYS = frozenset({"index", "delta", "text", "logprobs", "finish_reason"})


def _index(choice: dict[str, Any]) -> int:
    index = choice.get("index", 0)
    return index if type(index) is int else 0


# -- whole bodies ---------------------------------------------------------------------

def body(state: RequestState, obj: dict[str, Any]) -> bool:
    """Rewrite a non-streamed chat or legacy completion in place; True if changed."""
    choices = obj.get("choices")
    if not isinstance(choices, list):
        return False
    chat = state.route == "chat"
    changed = False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        index = _index(choice)
        if chat:
            message = choice.get("message")
            if isinstance(message, dict):
                if state.reasoning is not None:
                    changed |= _reasoning_whole(state, message)
                content = message.get("content")
                if state.watermark and isinstance(content, str) and content:
                    changed |= _mark_whole(state, message, "content", content, "")
        else:
            text = choice.get("text")
            if state.watermark and isinstance(text, str) and text:
                changed |= _mark_whole(state, choice, "text", text, _echoed(state, index))
        changed |= _logprobs(state, index, choice, chat)
    return changed


def _logprobs(state: RequestState, index: int, choice: dict[str, Any], chat: bool) -> bool:
    """Noise, rounding and top-k on one choice's logprobs; True when they changed."""
    probs = choice.get("logprobs")
    if state.logprobs is None or not isinstance(probs, dict):
        return False
    done = state.logprobs.chat(index, probs) if chat else state.logprobs.legacy(index, probs)
    if done:
        state.note(LOGPROBS_PERTURBED)
    return done


def _echoed(state: RequestState, index: int) -> str:
    if not state.echo:
        return ""
    prompt = index // max(state.n, 1)
    return state.echo[prompt] if prompt < len(state.echo) else ""


def _reasoning_whole(state: RequestState, holder: dict[str, Any]) -> bool:
    config = state.reasoning
    assert config is not None
    changed = False
    for key in REASONING_KEYS:
        text = holder.get(key)
        if not isinstance(text, str) or not text:
            continue
        if config.mode == "drop":
            del holder[key]
        elif config.mode == "truncate":
            if len(text) <= config.max_chars:
                continue
            holder[key] = text[: config.max_chars]
        else:
            holder[key] = config.notice
        state.note(REASONING[config.mode])
        changed = True
    return changed


def _mark_whole(state: RequestState, holder: dict[str, Any], key: str, text: str,
                prompt: str) -> bool:
    state.note(WATERMARKED)
    if state.marker is None:
        return False
    head = prompt if prompt and text.startswith(prompt) else ""
    holder[key] = head + state.marker.mark(text[len(head):])
    return True


# -- streams --------------------------------------------------------------------------

def event(state: RequestState, ev: SSEEvent) -> list[SSEEvent] | None:
    """Rewrite one chat / legacy stream event; None keeps it, [] drops it."""
    if ev.is_done:
        return _flush_all(state, ev)
    data = ev.data
    if not data.startswith(b"{"):
        return None
    if (state.logprobs is None and not state.watermark
            and _REASONING_BYTES not in data):
        return None  # only reasoning to look for, and there is none
    try:
        obj = orjson.loads(data)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices:
        return None
    if state.marker is not None:
        state.envelope = obj
    chat = state.route == "chat"
    changed = emptied = False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        index = _index(choice)
        cs = state.choice(index)
        if chat:
            delta = choice.get("delta")
            if isinstance(delta, dict):
                if state.reasoning is not None and _reasoning_delta(state, cs, delta):
                    changed = emptied = True
                content = delta.get("content")
                if state.watermark and isinstance(content, str) and content:
                    state.note(WATERMARKED)
                    if state.marker is not None:
                        if cs.marker is None:
                            cs.marker = state.marker.stream()
                        marked = cs.marker.feed(content)
                        delta["content"] = marked
                        changed = True
                        emptied |= not marked
        else:
            text = choice.get("text")
            if state.watermark and isinstance(text, str) and text:
                state.note(WATERMARKED)
                if state.marker is not None:
                    marked = _feed_legacy(state, cs, text)
                    choice["text"] = marked
                    changed = True
                    emptied |= not marked
        changed |= _logprobs(state, index, choice, chat)
        if choice.get("finish_reason") is not None and cs.marker is not None:
            rest = cs.marker.flush()
            cs.marker = None
            if rest:
                _append_text(choice, chat, rest)
                changed = True
    if not changed or state.shadow:
        return None
    if emptied and _blank(obj):
        return []  # nothing left for the client in this chunk
    return _encoded(obj, ev)


def _reasoning_delta(state: RequestState, cs: ChoiceState, delta: dict[str, Any]) -> bool:
    config = state.reasoning
    assert config is not None
    changed = False
    for key in REASONING_KEYS:
        text = delta.get(key)
        if not isinstance(text, str):
            continue
        mode = config.mode
        if mode == "drop":
            del delta[key]
        elif mode == "truncate":
            sent = cs.reasoning_sent.get(key, 0)
            room = config.max_chars - sent
            if len(text) <= room:
                cs.reasoning_sent[key] = sent + len(text)
                continue
            if room > 0:
                delta[key] = text[:room]
                cs.reasoning_sent[key] = config.max_chars
            else:
                del delta[key]
        elif key not in cs.notice_sent:
            cs.notice_sent.add(key)
            delta[key] = config.notice
        else:
            del delta[key]
        state.note(REASONING[mode])
        changed = True
    return changed


def _feed_legacy(state: RequestState, cs: ChoiceState, text: str) -> str:
    """Mark streamed legacy text, passing an echoed prompt through unmarked."""
    head = ""
    if cs.echo_left:
        left = cs.echo_left
        if left.startswith(text):
            head, cs.echo_left = text, left[len(text):]
        elif text.startswith(left):
            head, cs.echo_left = left, ""
        else:
            cs.echo_left = ""  # not the prompt after all: mark from here on
    rest = text[len(head):]
    if not rest:
        return head
    if cs.marker is None:
        assert state.marker is not None
        cs.marker = state.marker.stream()
    return head + cs.marker.feed(rest)


def _append_text(choice: dict[str, Any], chat: bool, rest: str) -> None:
    if chat:
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = choice["delta"] = {}
        current = delta.get("content")
        delta["content"] = (current if isinstance(current, str) else "") + rest
    else:
        current = choice.get("text")
        choice["text"] = (current if isinstance(current, str) else "") + rest


def _blank(obj: dict[str, Any]) -> bool:
    """A chunk with no text, role, tool call, logprobs, finish reason or usage."""
    if obj.get("usage") is not None:
        return False
    for choice in obj["choices"]:
        if not isinstance(choice, dict):
            return False
        if choice.get("finish_reason") is not None or choice.get("logprobs") is not None:
            return False
        if any(key not in _CHOICE_KEYS for key in choice):
            return False
        if "delta" in choice:
            delta = choice["delta"]
            if not isinstance(delta, dict) or any(
                    key not in _BLANK_KEYS or value not in ("", None)
                    for key, value in delta.items()):
                return False
        elif choice.get("text") not in ("", None):
            return False
    return True


def _flush_all(state: RequestState, done: SSEEvent) -> list[SSEEvent] | None:
    """Before `[DONE]`: text still held back for choices that never finished."""
    if state.marker is None:
        return None
    extra: list[dict[str, Any]] = []
    for index, cs in sorted(state.choices.items()):
        if cs.marker is None:
            continue
        rest = cs.marker.flush()
        cs.marker = None
        if not rest:
            continue
        if state.route == "chat":
            extra.append({"index": index, "delta": {"content": rest}, "logprobs": None,
                          "finish_reason": None})
        else:
            extra.append({"text": rest, "index": index, "logprobs": None,
                          "finish_reason": None})
    if not extra or state.shadow:
        return None
    envelope = {k: v for k, v in (state.envelope or {}).items() if k != "choices"}
    if "usage" in envelope:
        envelope["usage"] = None
    envelope["choices"] = extra
    out = _encoded(envelope, done)
    return None if out is None else [*out, done]


def _encoded(obj: dict[str, Any], ev: SSEEvent) -> list[SSEEvent] | None:
    try:
        data = orjson.dumps(obj)
    except TypeError:  # e.g. an integer beyond 64 bits: relay the event unchanged
        return None
    return [json_event(data, ev.event)]
