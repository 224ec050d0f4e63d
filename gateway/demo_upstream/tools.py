"""Fake tool calls: when to call a tool, and plausible arguments from its JSON schema.

The trigger is the same in both dialects: the client offered tools and did not
forbid them, and either forced a call (a named tool, "required" / "any") or the
last user message says "weather" or "call" or names a tool. A turn that answers
a tool result gets prose instead, so agent loops terminate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from .common import JSONObj

_TRIGGER_RE = re.compile(r"\b(weather|call)\b", re.IGNORECASE)
_PLACE_RE = re.compile(r"\b(?:in|at|for|near) ([A-Z][\w-]+(?:,? [A-Z][\w-]+)*)")
_FRAGMENT_RE = re.compile(r"\s*\w+|\s*[^\w\s]+|\s+")


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    schema: JSONObj


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: JSONObj
    arguments_json: str  # compact JSON, as OpenAI sends it
    fragments: tuple[str, ...]  # the JSON text in token-sized pieces, for streaming


@dataclass(frozen=True, slots=True)
class ToolRequest:
    tools: tuple[Tool, ...]
    forced: str | None = None  # a tool the client named in tool_choice
    required: bool = False  # "required" (OpenAI) / "any" (Anthropic)
    disabled: bool = False  # tool_choice "none"


def choose(request: ToolRequest, last_user_text: str, after_tool_result: bool) -> Tool | None:
    if not request.tools or request.disabled or after_tool_result:
        return None
    by_name = {tool.name: tool for tool in request.tools}
    if request.forced is not None:
        return by_name[request.forced]
    lowered = last_user_text.lower()
    for tool in request.tools:
        if tool.name.lower() in lowered:
            return tool
    trigger = _TRIGGER_RE.search(last_user_text)
    if trigger is None and not request.required:
        return None
    if trigger is not None and trigger.group(1).lower() == "weather":
        for tool in request.tools:
            if "weather" in tool.name.lower():
                return tool
    return request.tools[0]


def make_call(tool: Tool, call_id: str, last_user_text: str) -> ToolCall:
    args = _value(tool.schema, "", last_user_text, 0)
    arguments = args if isinstance(args, dict) else {}
    text = orjson.dumps(arguments).decode()
    return ToolCall(call_id, tool.name, arguments, text, fragments(text))


def fragments(text: str) -> tuple[str, ...]:
    """Split JSON text roughly the way a tokenizer would; pieces join back to `text`."""
    return tuple(_FRAGMENT_RE.findall(text))


def _string_for(name: str, schema: JSONObj, hint: str) -> str:
    fmt = schema.get("format")
    if fmt == "date-time":
        return "2025-06-01T09:30:00Z"
    if fmt == "date":
        return "2025-06-01"
    key = name.lower()
    if any(part in key for part in ("location", "city", "place", "address", "destination")):
        match = _PLACE_RE.search(hint)
        return match.group(1) if match else "San Francisco, CA"
    table = (
        ("unit", "celsius"),
        ("email", "alex@example.com"),
        ("url", "https://example.com"),
        ("date", "2025-06-01"),
        ("time", "09:30"),
        ("country", "US"),
        ("lang", "en"),
        ("currency", "USD"),
        ("name", "Alex Morgan"),
        ("id", "item_1234"),
        ("path", "/tmp/example.txt"),
        ("code", "print('hello')"),
    )
    for part, value in table:
        if part in key:
            return value
    if any(part in key for part in ("query", "search", "text", "prompt", "question", "topic")):
        return hint.strip()[:80] or "example query"
    return "example"


def _value(schema: object, name: str, hint: str, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > 8:
        return "example"
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            usable = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return _value((usable or options)[0], name, hint, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None and isinstance(schema.get("properties"), dict):
        kind = "object"
    if kind == "object":
        props = schema.get("properties")
        if not isinstance(props, dict):
            return {}
        return {str(k): _value(v, str(k), hint, depth + 1) for k, v in props.items()}
    if kind == "array":
        return [_value(schema.get("items", {"type": "string"}), name, hint, depth + 1)]
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string_for(name, schema, hint)


def _number(schema: JSONObj, integer: bool) -> int | float:
    value: float = 3 if integer else 1.5
    low, high = schema.get("minimum"), schema.get("maximum")
    if isinstance(low, int | float) and value < low:
        value = low
    if isinstance(high, int | float) and value > high:
        value = high
    return int(value) if integer else float(value)
