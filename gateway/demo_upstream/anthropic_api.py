"""Anthropic dialect: `POST /v1/messages` and `POST /v1/messages/count_tokens`.

Input tokens are the words in `system` and all message text (tool results
included); output tokens are the words generated (thinking included) plus the
JSON fragments of a tool call. `max_tokens` is optional here (the real API
requires it) and bounds thinking + text; thinking is also bounded by
`thinking.budget_tokens`.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import orjson
from starlette.requests import Request
from starlette.responses import Response

from . import prose, tools
from .common import (
    BoundedCache,
    Conversation,
    JSONObj,
    RequestError,
    anthropic_error,
    bad_type,
    body_response,
    json_response,
    new_id,
    opt_bool,
    opt_dict,
    opt_int,
    opt_list,
    opt_number,
    read_object,
    req_str,
    sse_event,
    sse_response,
)
from .config import DemoConfig

_MAX_TOKENS = 1 << 20
_PING = sse_event("ping", {"type": "ping"})
_STOP = sse_event("message_stop", {"type": "message_stop"})


def _text(content: object, where: str, allow_results: bool = True) -> tuple[str, bool]:
    """(text, has_tool_result) of a content string or block list."""
    if isinstance(content, str):
        return content, False
    if not isinstance(content, list):
        raise bad_type(where, "a string or an array of content blocks", content)
    texts: list[str] = []
    has_result = False
    for i, block in enumerate(content):
        spot = f"{where}.{i}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise bad_type(spot, "a content block object with a 'type'", block)
        kind = block["type"]
        if kind == "text":
            if not isinstance(block.get("text"), str):
                raise bad_type(f"{spot}.text", "a string", block.get("text"))
            texts.append(block["text"])
        elif kind == "tool_result" and allow_results:
            has_result = True
            inner = block.get("content")
            if inner is not None:
                texts.append(_text(inner, f"{spot}.content", allow_results=False)[0])
    return "\n".join(texts), has_result


def parse_conversation(body: JSONObj) -> Conversation:
    system = body.get("system")
    texts = [] if system is None else [_text(system, "system", allow_results=False)[0]]
    messages = body.get("messages")
    if messages is None:
        raise RequestError("messages: Field required")
    if not isinstance(messages, list):
        raise bad_type("messages", "an array", messages)
    if not messages:
        raise RequestError("messages: at least one message is required")
    last_user, after_tool = "", False
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise bad_type(where, "an object", message)
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise RequestError(f"{where}.role: Input should be 'user' or 'assistant'")
        if "content" not in message:
            raise RequestError(f"{where}.content: Field required")
        text, has_result = _text(message["content"], f"{where}.content")
        texts.append(text)
        if role == "user":
            after_tool = has_result
            if text and not has_result:
                last_user = text
    return Conversation("\n".join(texts), last_user, after_tool)


def parse_tools(body: JSONObj) -> tools.ToolRequest:
    listed: list[tools.Tool] = []
    for i, item in enumerate(opt_list(body, "tools") or []):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise bad_type(f"tools.{i}", "a tool object with a 'name'", item)
        if item.get("type", "custom") == "custom":  # server tools run upstream, never here
            schema = item.get("input_schema")
            listed.append(tools.Tool(item["name"], schema if isinstance(schema, dict) else {}))
    choice = opt_dict(body, "tool_choice") or {"type": "auto"}
    kind = choice.get("type")
    if kind == "tool":
        name = choice.get("name")
        if not any(tool.name == name for tool in listed):
            raise RequestError(f"tool_choice.name: tool {name!r} is not in 'tools'")
        return tools.ToolRequest(tuple(listed), forced=str(name))
    if kind not in ("auto", "any", "none"):
        raise RequestError("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    return tools.ToolRequest(tuple(listed), required=kind == "any", disabled=kind == "none")


def parse_thinking(body: JSONObj) -> int | None:
    """Thinking budget in words, or None when thinking is off."""
    thinking = opt_dict(body, "thinking")
    if thinking is None or thinking.get("type") == "disabled":
        return None
    if thinking.get("type") == "adaptive":
        return _MAX_TOKENS
    if thinking.get("type") != "enabled":
        raise RequestError("thinking.type: Input should be 'enabled', 'adaptive' or 'disabled'")
    budget = opt_int(thinking, "budget_tokens", 1, _MAX_TOKENS)
    if budget is None:
        raise RequestError("thinking.enabled.budget_tokens: Field required")
    return budget


@dataclass(frozen=True, slots=True)
class Block:
    kind: str  # "thinking" | "text" | "tool_use"
    tokens: tuple[str, ...] = ()
    call: tools.ToolCall | None = None

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def signature(self) -> str:
        digest = hashlib.blake2b(self.text.encode(), digest_size=48).digest()
        return base64.b64encode(digest).decode()

    @property
    def size(self) -> int:
        return len(self.call.fragments) if self.call else len(self.tokens)


@dataclass(frozen=True, slots=True)
class MessagesRequest:
    model: str
    conversation: Conversation
    max_tokens: int | None
    stream: bool
    tools: tools.ToolRequest
    thinking: int | None


def parse_request(body: JSONObj) -> MessagesRequest:
    model = req_str(body, "model")
    conversation = parse_conversation(body)
    for key in ("temperature", "top_p", "top_k"):
        opt_number(body, key)
    opt_list(body, "stop_sequences")
    return MessagesRequest(
        model=model,
        conversation=conversation,
        max_tokens=opt_int(body, "max_tokens", 1, _MAX_TOKENS),
        stream=opt_bool(body, "stream"),
        tools=parse_tools(body),
        thinking=parse_thinking(body),
    )


class AnthropicMessages:
    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self._cache = BoundedCache()

    async def handle(self, request: Request) -> Response:
        try:
            req = parse_request(await read_object(request))
        except RequestError as exc:
            return anthropic_error(exc.message)
        conv = req.conversation
        tool = tools.choose(req.tools, conv.last_user_text, conv.after_tool_result)
        plain = (
            self.config.fast
            and tool is None
            and req.thinking is None
            and (req.max_tokens is None or req.max_tokens >= len(prose.FAST_TOKENS))
        )
        if not plain:
            return self._respond(self._render(req, tool, new_id("msg_")))
        key = (req.model, req.stream, prose.count_words(conv.prompt_text))
        rendered = self._cache.get(key)
        if rendered is None:
            rendered = self._render(req, None, "msg_demo_fast")
            self._cache.put(key, rendered)
        return self._respond(rendered)

    async def count_tokens(self, request: Request) -> Response:
        try:
            body = await read_object(request)
            req_str(body, "model")
            conv = parse_conversation(body)
            parse_tools(body)
        except RequestError as exc:
            return anthropic_error(exc.message)
        return json_response({"input_tokens": prose.count_words(conv.prompt_text)})

    def _respond(self, rendered: bytes | tuple[bytes, ...]) -> Response:
        if isinstance(rendered, bytes):
            return body_response(rendered)
        return sse_response(rendered, self.config.word_delay)

    def _blocks(self, req: MessagesRequest, tool: tools.Tool | None) -> tuple[list[Block], str]:
        conv = req.conversation
        seed = prose.seed_of(conv.prompt_text)
        topic = prose.topic_of(conv.last_user_text)
        blocks: list[Block] = []
        budget = req.max_tokens
        if req.thinking is not None:
            thought = prose.tokens(prose.reasoning(seed, topic))[: req.thinking]
            thought, budget, cut = prose.take(thought, budget)
            blocks.append(Block("thinking", thought))
            if cut:
                return blocks, "max_tokens"
        if tool is not None:
            if not req.tools.forced and not req.tools.required:
                # With tool_choice auto, Claude usually says what it is about to do.
                intro = prose.tokens(f"I'll use the {tool.name} tool to help with this.")
                blocks.append(Block("text", intro))
            call = tools.make_call(tool, new_id("toolu_"), conv.last_user_text)
            blocks.append(Block("tool_use", call=call))
            return blocks, "tool_use"
        source = (
            prose.FAST_TOKENS
            if self.config.fast
            else prose.answer_tokens(seed, self.config.paragraphs, topic)
        )
        text, _, cut = prose.take(source, budget)
        blocks.append(Block("text", text))
        return blocks, "max_tokens" if cut else "end_turn"

    def _render(
        self, req: MessagesRequest, tool: tools.Tool | None, msg_id: str
    ) -> bytes | tuple[bytes, ...]:
        blocks, stop_reason = self._blocks(req, tool)
        input_tokens = prose.count_words(req.conversation.prompt_text)
        output_tokens = sum(block.size for block in blocks)
        message: JSONObj = {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": req.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": 1,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        if not req.stream:
            message["content"] = [_full_block(block) for block in blocks]
            message["stop_reason"] = stop_reason
            message["usage"]["output_tokens"] = output_tokens
            return orjson.dumps(message)
        # Structural events ride along with the next delta, so delays fall between words.
        ticks: list[bytes] = []
        pending = sse_event("message_start", {"type": "message_start", "message": message})
        for index, block in enumerate(blocks):
            pending += sse_event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": _empty_block(block),
                },
            )
            if index == 0:
                pending += _PING
            for delta in _deltas(index, block):
                ticks.append(pending + delta)
                pending = b""
            pending += sse_event(
                "content_block_stop", {"type": "content_block_stop", "index": index}
            )
        pending += sse_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        )
        ticks.append(pending + _STOP)
        return tuple(ticks)


def _full_block(block: Block) -> JSONObj:
    if block.kind == "thinking":
        return {"type": "thinking", "thinking": block.text, "signature": block.signature}
    if block.call is not None:
        call = block.call
        return {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
    return {"type": "text", "text": block.text}


def _empty_block(block: Block) -> JSONObj:
    if block.kind == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    if block.call is not None:
        return {"type": "tool_use", "id": block.call.id, "name": block.call.name, "input": {}}
    return {"type": "text", "text": ""}


def _deltas(index: int, block: Block) -> list[bytes]:
    """content_block_delta events, pre-framed so each word costs one small encode."""
    head = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,' % index
    if block.kind == "thinking":
        frame = head + b'"delta":{"type":"thinking_delta","thinking":'
        out = [frame + orjson.dumps(word) + b"}}\n\n" for word in block.tokens]
        sig = orjson.dumps({"type": "signature_delta", "signature": block.signature})
        return [*out, head + b'"delta":' + sig + b"}\n\n"]
    if block.call is not None:
        frame = head + b'"delta":{"type":"input_json_delta","partial_json":'
        pieces = ("", *block.call.fragments)  # the API opens with an empty fragment
        return [frame + orjson.dumps(piece) + b"}}\n\n" for piece in pieces]
    frame = head + b'"delta":{"type":"text_delta","text":'
    return [frame + orjson.dumps(word) + b"}}\n\n" for word in block.tokens]
