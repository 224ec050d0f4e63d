"""The prompt-bearing text of a request body, for fingerprinting.

`prompt_text(body, dialect)` reads what the *client* wrote and never raises: a
field of the wrong type is skipped, not an error (the proxy forwards the body
as it is; validation is the upstream's job). What it reads:

OpenAI
- chat (`messages`): `system` and `developer` messages are the system text;
  `user` messages are user turns; `tool`/`function` messages are tool results;
  `assistant` messages are skipped (they are the model's own words).
- Responses API: `instructions` is system text; `input` is a string (one user
  turn) or a list of items (messages as above, `function_call_output` items as
  tool results).
- legacy completions (`prompt`) and embeddings (`input`): a string or a list
  of strings, each one a user turn; token-id arrays are skipped.
- tools: `tools[].function` (chat), flat `tools[]` (Responses), legacy
  `functions[]`; built-in tools (`{"type": "web_search"}`) by their type.

Anthropic
- `system` is a string or a list of `{"type": "text"}` blocks.
- `messages`: `user` turns are strings or block lists; `text` blocks and
  plain-text `document` blocks are user text, `tool_result` blocks are tool
  results; `assistant` turns (text, `tool_use`, `thinking`) are skipped.
- legacy `/v1/complete` `prompt` is one user turn; `tools[]` by name,
  description and `input_schema` property names.

Content parts may be strings or `{"type": "text" | "input_text", "text": ...}`
dicts. Images, audio, files and non-text documents are not text: they are
counted in `media` so that a caller can tell a text-only prompt from one that
carried attachments.

`last_user` is the last user turn with text in it. A user message holding only
`tool_result` blocks (an agent loop's step) does not replace it, so each step
of one agent task keeps the task's instruction as its last turn, in both
dialects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from gateway.errors import Dialect

DialectName = Literal["openai", "anthropic"]

_TEXT_PART_TYPES = frozenset({"text", "input_text"})
_MEDIA_PART_TYPES = frozenset(
    {
        "image",
        "image_url",
        "input_image",
        "input_audio",
        "audio",
        "file",
        "input_file",
        "document",
        "video",
        "video_url",
    }
)
_SYSTEM_ROLES = frozenset({"system", "developer"})
_TOOL_ROLES = frozenset({"tool", "function"})
_MAX_PARAMETERS = 64  # parameter names read per tool


@dataclass(frozen=True, slots=True)
class ToolDef:
    """A tool the client declared: what the model is told about it."""

    name: str
    description: str = ""
    parameters: tuple[str, ...] = ()

    def text(self) -> str:
        params = f" ({', '.join(self.parameters)})" if self.parameters else ""
        desc = f": {self.description}" if self.description else ""
        return f"{self.name}{params}{desc}"


@dataclass(frozen=True, slots=True)
class PromptParts:
    """The client-written text of one request, split by where it came from."""

    system: str = ""
    user_turns: tuple[str, ...] = ()
    last_user: str = ""
    tools: tuple[ToolDef, ...] = ()
    tool_results: tuple[str, ...] = ()
    media: int = 0  # non-text parts seen: images, audio, files, non-text documents

    @property
    def tool_names(self) -> tuple[str, ...]:
        return tuple(tool.name for tool in self.tools)

    def full_text(self) -> str:
        """Everything the client wrote: system, tool definitions, user turns, tool results."""
        pieces = [self.system, *(tool.text() for tool in self.tools)]
        pieces.extend(self.user_turns)
        pieces.extend(self.tool_results)
        return "\n".join(piece for piece in pieces if piece)

    def template_text(self) -> str:
        """What the template skeleton is computed on: tool names, system, last user turn."""
        pieces = (" ".join(self.tool_names), self.system, self.last_user)
        return "\n".join(piece for piece in pieces if piece)


class _Collector:
    """Mutable accumulator used while walking one body."""

    __slots__ = ("last_user", "media", "system", "tool_results", "tools", "users")

    def __init__(self) -> None:
        self.system: list[str] = []
        self.users: list[str] = []
        self.last_user = ""
        self.tools: list[ToolDef] = []
        self.tool_results: list[str] = []
        self.media = 0

    def user(self, text: str) -> None:
        if text:
            self.users.append(text)
            self.last_user = text

    def parts(self) -> PromptParts:
        return PromptParts(
            system="\n".join(s for s in self.system if s),
            user_turns=tuple(self.users),
            last_user=self.last_user,
            tools=tuple(self.tools),
            tool_results=tuple(r for r in self.tool_results if r),
            media=self.media,
        )


def prompt_text(body: Any, dialect: DialectName | Dialect) -> PromptParts:
    """Extract the prompt text of an OpenAI- or Anthropic-style request body."""
    if not isinstance(body, dict):
        return PromptParts()
    out = _Collector()
    if dialect == "anthropic":
        _anthropic(body, out)
    else:
        _openai(body, out)
    return out.parts()


# --- OpenAI ------------------------------------------------------------------


def _openai(body: dict[str, Any], out: _Collector) -> None:
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        out.system.append(instructions)
    messages = body.get("messages")
    if isinstance(messages, list):
        _openai_items(messages, out)
    _string_or_list(body.get("prompt"), out)
    inputs = body.get("input")
    if isinstance(inputs, list) and any(isinstance(item, dict) for item in inputs):
        _openai_items(inputs, out)  # Responses API items
    else:
        _string_or_list(inputs, out)  # embeddings, or Responses with a string input
    _openai_tools(body.get("tools"), out)
    _openai_tools(body.get("functions"), out)


def _openai_items(items: list[Any], out: _Collector) -> None:
    for item in items:
        if not isinstance(item, dict):
            continue
        role = item.get("role")
        if role is None and item.get("type") == "function_call_output":
            output = item.get("output")
            out.tool_results.append(_content_text(output, out))
            continue
        if not isinstance(role, str) or role == "assistant":
            continue
        text = _content_text(item.get("content"), out)
        if role in _SYSTEM_ROLES:
            out.system.append(text)
        elif role == "user":
            out.user(text)
        elif role in _TOOL_ROLES:
            out.tool_results.append(text)


def _openai_tools(tools: Any, out: _Collector) -> None:
    if not isinstance(tools, list):
        return
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        spec = tool.get("function")
        if not isinstance(spec, dict):
            spec = tool  # Responses API and legacy `functions[]` are flat
        name = spec.get("name")
        if not isinstance(name, str):
            kind = tool.get("type")
            if not isinstance(kind, str) or kind == "function":
                continue
            name = kind  # a built-in tool, e.g. {"type": "web_search"}
        out.tools.append(_tool_def(name, spec.get("description"), spec.get("parameters")))


# --- Anthropic ---------------------------------------------------------------


def _anthropic(body: dict[str, Any], out: _Collector) -> None:
    out.system.append(_content_text(body.get("system"), out))
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, dict) or message.get("role") != "user":
                continue
            out.user(_anthropic_user_content(message.get("content"), out))
    _string_or_list(body.get("prompt"), out)  # legacy /v1/complete
    tools = body.get("tools")
    if isinstance(tools, list):
        for tool in tools:
            if not isinstance(tool, dict):
                continue
            name = tool.get("name")
            if not isinstance(name, str):
                name = tool.get("type")
                if not isinstance(name, str):
                    continue
            out.tools.append(_tool_def(name, tool.get("description"), tool.get("input_schema")))


def _anthropic_user_content(content: Any, out: _Collector) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts: list[str] = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "tool_result":
            out.tool_results.append(_content_text(block.get("content"), out))
        else:
            text = _part_text(block, out)
            if text:
                texts.append(text)
    return "\n".join(texts)


# --- shared ------------------------------------------------------------------


def _string_or_list(value: Any, out: _Collector) -> None:
    """`prompt` / `input`: a string, or a list of strings (token-id arrays are skipped)."""
    if isinstance(value, str):
        out.user(value)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                out.user(item)


def _content_text(content: Any, out: _Collector) -> str:
    """A message's content: a string, or a list of parts whose text is joined."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = [text for text in (_part_text(part, out) for part in content) if text]
    return "\n".join(texts)


def _part_text(part: Any, out: _Collector) -> str:
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        return ""
    kind = part.get("type")
    if not isinstance(kind, str):
        return ""
    if kind in _TEXT_PART_TYPES:
        text = part.get("text")
        return text if isinstance(text, str) else ""
    if kind == "document":
        source = part.get("source")
        if isinstance(source, dict) and source.get("type") == "text":
            data = source.get("data")
            if isinstance(data, str):
                return data
    if kind in _MEDIA_PART_TYPES:
        out.media += 1
    return ""


def _tool_def(name: str, description: Any, schema: Any) -> ToolDef:
    params: tuple[str, ...] = ()
    if isinstance(schema, dict):
        properties = schema.get("properties")
        if isinstance(properties, dict):
            params = tuple(key for key in properties if isinstance(key, str))[:_MAX_PARAMETERS]
    return ToolDef(
        name=name,
        description=description if isinstance(description, str) else "",
        parameters=params,
    )
