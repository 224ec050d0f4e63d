"""Anthropic dialect rewrites: `thinking` blocks and `text` blocks, whole or streamed.

- drop: thinking blocks are removed; in a stream, every event of a dropped
  block is swallowed and later blocks' `index` renumbered so the client sees
  0..k contiguous.
- truncate / replace: the block stays, with its text cut (or the notice as
  its only delta, sent right after `content_block_start`). A thinking block
  whose text was changed loses its signature (`""`; a stream's
  `signature_delta` is swallowed): it no longer verifies, so it cannot be
  sent back upstream. Unchanged blocks keep theirs.
- `redacted_thinking` blocks carry only encrypted data and pass untouched.
- watermark: each `text` block is marked; a stream's held-back rest goes out
  as one more `text_delta` right before that block's `content_block_stop`.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.policies.output_perturbation.events import json_event
from gateway.policies.output_perturbation.state import (
    REASONING,
    WATERMARKED,
    BlockState,
    RequestState,
)
from gateway.streaming.sse import SSEEvent

_BLOCK_EVENTS = frozenset({"content_block_start", "content_block_delta", "content_block_stop"})


def body(state: RequestState, obj: dict[str, Any]) -> bool:
    """Rewrite a non-streamed message in place; True if changed."""
    content = obj.get("content")
    if not isinstance(content, list):
        return False
    config = state.reasoning
    changed = False
    kept: list[Any] = []
    for block in content:
        if not isinstance(block, dict):
            kept.append(block)
            continue
        kind = block.get("type")
        if kind == "thinking" and config is not None:
            text = block.get("thinking")
            text = text if isinstance(text, str) else ""
            if config.mode == "drop":
                state.note(REASONING["drop"])
                changed = True
                continue
            if config.mode == "replace" or len(text) > config.max_chars:
                block["thinking"] = (config.notice if config.mode == "replace"
                                     else text[: config.max_chars])
                block["signature"] = ""
                state.note(REASONING[config.mode])
                changed = True
        elif kind == "text" and state.watermark:
            text = block.get("text")
            if isinstance(text, str) and text:
                state.note(WATERMARKED)
                if state.marker is not None:
                    block["text"] = state.marker.mark(text)
                    changed = True
        kept.append(block)
    obj["content"] = kept
    return changed


def event(state: RequestState, ev: SSEEvent) -> list[SSEEvent] | None:
    """Rewrite one Messages stream event; None keeps it, [] drops it."""
    if ev.event not in _BLOCK_EVENTS:
        return None
    try:
        obj = orjson.loads(ev.data)
    except ValueError:
        return None
    if not isinstance(obj, dict) or type(obj.get("index")) is not int:
        return None
    out = _block_event(state, ev, obj)
    return None if state.shadow else out


def _block_event(state: RequestState, ev: SSEEvent, obj: dict[str, Any]) -> list[SSEEvent] | None:
    index: int = obj["index"]
    name = ev.event
    if name == "content_block_start":
        return _start(state, ev, obj, index)
    block = state.blocks.get(index)
    if block is None:
        return None
    if block.client_index is None:
        return []  # a dropped block
    changed = block.client_index != index
    obj["index"] = block.client_index
    extra: list[SSEEvent] = []
    if name == "content_block_delta":
        delta = obj.get("delta")
        if not isinstance(delta, dict):
            return _keep(obj, ev, changed)
        kind = delta.get("type")
        if block.kind == "thinking" and state.reasoning is not None:
            if kind == "thinking_delta":
                text = delta.get("thinking")
                if not isinstance(text, str):
                    return _keep(obj, ev, changed)
                if state.reasoning.mode == "replace":
                    return []  # the notice went out with the block's start
                room = state.reasoning.max_chars - block.sent
                if len(text) <= room:
                    block.sent += len(text)
                    return _keep(obj, ev, changed)
                block.modified = True
                state.note(REASONING["truncate"])
                if room <= 0:
                    return []
                delta["thinking"] = text[:room]
                block.sent = state.reasoning.max_chars
                changed = True
            elif kind == "signature_delta" and block.modified:
                return []  # the text it signed was changed
        elif kind == "text_delta" and state.watermark:
            text = delta.get("text")
            if isinstance(text, str) and text:
                state.note(WATERMARKED)
                if block.marker is not None:
                    marked = block.marker.feed(text)
                    if not marked:
                        return []  # held back (a partial word); it follows later
                    delta["text"] = marked
                    changed = True
    elif name == "content_block_stop" and block.marker is not None:
        rest = block.marker.flush()
        block.marker = None
        if rest:
            extra = _text_delta(block.client_index, rest)
    kept = _keep(obj, ev, changed)
    return [*extra, *(kept if kept is not None else [ev])] if extra else kept


def _start(state: RequestState, ev: SSEEvent, obj: dict[str, Any],
           index: int) -> list[SSEEvent] | None:
    content = obj.get("content_block")
    kind = content.get("type") if isinstance(content, dict) else None
    config = state.reasoning
    block = BlockState(kind if isinstance(kind, str) else "", None)
    state.blocks[index] = block
    if kind == "thinking" and config is not None and config.mode == "drop":
        state.note(REASONING["drop"])
        return []
    block.client_index = state.next_index
    state.next_index += 1
    changed = block.client_index != index
    obj["index"] = block.client_index
    extra: list[SSEEvent] = []
    if kind == "thinking" and config is not None and isinstance(content, dict):
        first = content.get("thinking")
        first = first if isinstance(first, str) else ""
        if config.mode == "replace":
            state.note(REASONING["replace"])
            block.modified = True
            content["thinking"] = ""
            content["signature"] = ""
            changed = True
            extra = _thinking_delta(block.client_index, config.notice)
        elif len(first) > config.max_chars:  # truncate, text given up front (unusual)
            state.note(REASONING["truncate"])
            block.modified = True
            content["thinking"] = first[: config.max_chars]
            content["signature"] = ""
            block.sent = config.max_chars
            changed = True
        else:
            block.sent = len(first)
    elif kind == "text" and state.watermark:
        if state.marker is not None:
            block.marker = state.marker.stream()
        first = content.get("text") if isinstance(content, dict) else None
        if isinstance(first, str) and first and isinstance(content, dict):
            state.note(WATERMARKED)
            if block.marker is not None:
                content["text"] = block.marker.feed(first)
                changed = True
    kept = _keep(obj, ev, changed)
    if not extra:
        return kept
    return [*(kept if kept is not None else [ev]), *extra]


def _keep(obj: dict[str, Any], ev: SSEEvent, changed: bool) -> list[SSEEvent] | None:
    if not changed:
        return None
    data = orjson.dumps(obj)
    return [json_event(data, ev.event)]


def _delta_event(index: int, delta: dict[str, str]) -> list[SSEEvent]:
    data = orjson.dumps({"type": "content_block_delta", "index": index, "delta": delta})
    return [json_event(data, "content_block_delta")]


def _text_delta(index: int, text: str) -> list[SSEEvent]:
    return _delta_event(index, {"type": "text_delta", "text": text})


def _thinking_delta(index: int, text: str) -> list[SSEEvent]:
    return _delta_event(index, {"type": "thinking_delta", "thinking": text})
