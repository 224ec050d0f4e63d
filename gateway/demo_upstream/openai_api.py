"""OpenAI dialect: `POST /v1/chat/completions` and `GET /v1/models`.

Prompt tokens are the words in all message text; completion tokens are the
words generated (reasoning included) plus the JSON fragments of tool calls.
`max_tokens` / `max_completion_tokens` bound reasoning + answer words; tool
call arguments are never cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from starlette.requests import Request
from starlette.responses import Response

from . import logprobs as lp
from . import prose, tools
from .common import (
    DONE,
    BoundedCache,
    Conversation,
    JSONObj,
    RequestError,
    bad_type,
    body_response,
    json_response,
    new_id,
    now,
    openai_error,
    opt_bool,
    opt_dict,
    opt_int,
    opt_list,
    opt_number,
    opt_str,
    read_object,
    req_str,
    sse_data,
    sse_response,
)
from .config import DemoConfig

FINGERPRINT = "fp_demo"
MODELS = ("demo-model", "demo-reasoner", "demo-embed")
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_MAX_TOKENS = 1 << 20


def content_text(content: object, where: str) -> str:
    """Text of a message `content`: a string or a list of parts (non-text parts skipped)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad_type(where, "a string or an array of content parts", content)
    texts: list[str] = []
    for i, part in enumerate(content):
        if not isinstance(part, dict):
            raise bad_type(f"{where}[{i}]", "an object", part)
        if part.get("type") == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise bad_type(f"{where}[{i}].text", "a string", text)
            texts.append(text)
    return "\n".join(texts)


def parse_messages(body: JSONObj) -> Conversation:
    messages = body.get("messages")
    if messages is None:
        raise RequestError(
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(messages, list):
        raise bad_type("messages", "an array", messages)
    if not messages:
        raise RequestError(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            param="messages",
            code="empty_array",
        )
    texts: list[str] = []
    last_user, after_tool = "", False
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad_type(where, "an object", message)
        role = message.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise RequestError(
                f"Invalid value for '{where}.role': expected one of {sorted(_ROLES)}.",
                param=f"{where}.role",
                code="invalid_value",
            )
        text = content_text(message.get("content"), f"{where}.content")
        texts.append(text)
        if role == "user":
            last_user, after_tool = text, False
        elif role in ("tool", "function"):
            after_tool = True
    return Conversation("\n".join(texts), last_user, after_tool)


def parse_tools(body: JSONObj) -> tools.ToolRequest:
    listed: list[tools.Tool] = []
    for i, item in enumerate(opt_list(body, "tools") or []):
        if not isinstance(item, dict):
            raise bad_type(f"tools[{i}]", "an object", item)
        if item.get("type", "function") != "function":
            continue  # custom / hosted tools: accepted, never called
        function = item.get("function")
        if not isinstance(function, dict):
            raise bad_type(f"tools[{i}].function", "an object", function)
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise bad_type(f"tools[{i}].function.name", "a non-empty string", name)
        params = function.get("parameters")
        listed.append(tools.Tool(name, params if isinstance(params, dict) else {}))
    choice = body.get("tool_choice")
    if choice is None or choice in ("auto", "none", "required"):
        return tools.ToolRequest(
            tuple(listed), required=choice == "required", disabled=choice == "none"
        )
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not any(tool.name == name for tool in listed):
            raise RequestError(
                f"Invalid value for 'tool_choice': function {name!r} is not in 'tools'.",
                param="tool_choice",
                code="invalid_value",
            )
        return tools.ToolRequest(tuple(listed), forced=name)
    if isinstance(choice, dict):
        return tools.ToolRequest(tuple(listed))  # e.g. allowed_tools: treat as auto
    raise RequestError(
        "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or a named function.",
        param="tool_choice",
        code="invalid_value",
    )


def stream_flags(body: JSONObj) -> tuple[bool, bool]:
    """(stream, include_usage); stream_options without stream is an error, as upstream."""
    stream = opt_bool(body, "stream")
    options = opt_dict(body, "stream_options")
    if options is None:
        return stream, False
    if not stream:
        raise RequestError(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )
    return stream, opt_bool(options, "include_usage")


def max_tokens(body: JSONObj) -> int | None:
    newer = opt_int(body, "max_completion_tokens", 1, _MAX_TOKENS)
    return newer if newer is not None else opt_int(body, "max_tokens", 1, _MAX_TOKENS)


def usage(prompt: int, completion: int, reasoning: int = 0) -> JSONObj:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def chunk_frame(
    chunk_id: str, created: int, model: str, obj: str, include_usage: bool
) -> tuple[bytes, bytes]:
    """Encoded envelope around a chunk's `choices`, built once per stream."""
    head = orjson.dumps(
        {
            "id": chunk_id,
            "object": obj,
            "created": created,
            "model": model,
            "system_fingerprint": FINGERPRINT,
        }
    )
    tail = b'],"usage":null}\n\n' if include_usage else b"]}\n\n"
    return b"data: " + head[:-1] + b',"choices":[', tail


def interleave(per_choice: Sequence[Sequence[bytes]]) -> list[bytes]:
    """One tick per position; with n > 1 the choices advance together, as upstream."""
    width = max(len(seq) for seq in per_choice)
    return [b"".join(seq[i] for seq in per_choice if i < len(seq)) for i in range(width)]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    conversation: Conversation
    max_tokens: int | None
    n: int
    stream: bool
    include_usage: bool
    logprobs: bool
    top_logprobs: int
    tools: tools.ToolRequest
    reasoning: bool


def parse_chat(body: JSONObj) -> ChatRequest:
    model = req_str(body, "model")
    conversation = parse_messages(body)
    stream, include_usage = stream_flags(body)
    want_logprobs = opt_bool(body, "logprobs")
    top = opt_int(body, "top_logprobs", 0, 20)
    if top is not None and not want_logprobs:
        raise RequestError(
            "'logprobs' must be set to true when 'top_logprobs' is used.",
            param="top_logprobs",
            code="invalid_value",
        )
    for key in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        opt_number(body, key)
    effort = opt_str(body, "reasoning_effort")
    return ChatRequest(
        model=model,
        conversation=conversation,
        max_tokens=max_tokens(body),
        n=opt_int(body, "n", 1, 128) or 1,
        stream=stream,
        include_usage=include_usage,
        logprobs=want_logprobs,
        top_logprobs=top or 0,
        tools=parse_tools(body),
        reasoning=effort is not None or "reason" in model.lower(),
    )


@dataclass(frozen=True, slots=True)
class ChatChoice:
    index: int
    reasoning: tuple[str, ...]
    content: tuple[str, ...]
    call: tools.ToolCall | None
    finish_reason: str
    logprobs: list[lp.TokenLogprob] | None

    @property
    def completion_tokens(self) -> int:
        calls = len(self.call.fragments) if self.call else 0
        return len(self.reasoning) + len(self.content) + calls


class OpenAIChat:
    """Handler for chat completions; holds the config and the fast-mode cache."""

    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self._cache = BoundedCache()
        self._created = now()

    async def handle(self, request: Request) -> Response:
        try:
            req = parse_chat(await read_object(request))
        except RequestError as exc:
            return openai_error(exc.message, param=exc.param, code=exc.code)
        conv = req.conversation
        tool = tools.choose(req.tools, conv.last_user_text, conv.after_tool_result)
        plain = (
            self.config.fast
            and tool is None
            and req.n == 1
            and not req.logprobs
            and not req.reasoning
            and (req.max_tokens is None or req.max_tokens >= len(prose.FAST_TOKENS))
        )
        if not plain:
            return self._respond(self._render(req, tool, new_id("chatcmpl-"), now()))
        key = (req.model, req.stream, req.include_usage, prose.count_words(conv.prompt_text))
        rendered = self._cache.get(key)
        if rendered is None:
            rendered = self._render(req, None, "chatcmpl-demo-fast", self._created)
            self._cache.put(key, rendered)
        return self._respond(rendered)

    def _respond(self, rendered: bytes | tuple[bytes, ...]) -> Response:
        if isinstance(rendered, bytes):
            return body_response(rendered)
        return sse_response(rendered, self.config.word_delay)

    def _choice(self, req: ChatRequest, index: int, tool: tools.Tool | None) -> ChatChoice:
        conv = req.conversation
        seed = (prose.seed_of(conv.prompt_text) + index) & (2**64 - 1)
        topic = prose.topic_of(conv.last_user_text)
        budget = req.max_tokens
        reasoning: tuple[str, ...] = ()
        cut = False
        if req.reasoning:
            reasoning, budget, cut = prose.take(prose.tokens(prose.reasoning(seed, topic)), budget)
        if tool is not None:
            call = tools.make_call(tool, new_id("call_"), conv.last_user_text)
            return ChatChoice(index, reasoning, (), call, "tool_calls", None)
        source = (
            prose.FAST_TOKENS
            if self.config.fast
            else prose.answer_tokens(seed, self.config.paragraphs, topic)
        )
        content, _, content_cut = prose.take(source, budget)
        probs = lp.compute(content, seed, req.top_logprobs) if req.logprobs else None
        finish = "length" if cut or content_cut else "stop"
        return ChatChoice(index, reasoning, content, None, finish, probs)

    def _render(
        self, req: ChatRequest, tool: tools.Tool | None, chat_id: str, created: int
    ) -> bytes | tuple[bytes, ...]:
        choices = [self._choice(req, i, tool) for i in range(req.n)]
        prompt = prose.count_words(req.conversation.prompt_text)
        used = usage(
            prompt,
            sum(c.completion_tokens for c in choices),
            sum(len(c.reasoning) for c in choices),
        )
        if not req.stream:
            return orjson.dumps(
                {
                    "id": chat_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": req.model,
                    "choices": [_message_choice(c) for c in choices],
                    "usage": used,
                    "service_tier": "default",
                    "system_fingerprint": FINGERPRINT,
                }
            )
        head, tail = chunk_frame(
            chat_id, created, req.model, "chat.completion.chunk", req.include_usage
        )
        ticks = interleave(
            [[head + orjson.dumps(d) + tail for d in _chunk_choices(c)] for c in choices]
        )
        if req.include_usage:
            ticks.append(
                sse_data(
                    {
                        "id": chat_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": req.model,
                        "system_fingerprint": FINGERPRINT,
                        "choices": [],
                        "usage": used,
                    }
                )
            )
        ticks.append(DONE)
        return tuple(ticks)


def _tool_call(call: tools.ToolCall) -> JSONObj:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments_json},
    }


def _message_choice(choice: ChatChoice) -> JSONObj:
    message: JSONObj = {
        "role": "assistant",
        "content": "".join(choice.content) if choice.call is None else None,
        "refusal": None,
        "annotations": [],
    }
    if choice.reasoning:
        message["reasoning_content"] = "".join(choice.reasoning)
    if choice.call is not None:
        message["tool_calls"] = [_tool_call(choice.call)]
    probs = None
    if choice.logprobs is not None:
        probs = {"content": [lp.chat_entry(t) for t in choice.logprobs], "refusal": None}
    return {
        "index": choice.index,
        "message": message,
        "logprobs": probs,
        "finish_reason": choice.finish_reason,
    }


def _chunk_choices(choice: ChatChoice) -> list[JSONObj]:
    """The `choices[0]` object of every chunk for one choice, in order."""
    index = choice.index

    def event(delta: JSONObj, probs: JSONObj | None = None) -> JSONObj:
        return {"index": index, "delta": delta, "logprobs": probs, "finish_reason": None}

    call = choice.call
    header = None
    if call is not None:
        header = {
            "index": 0,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
    if header is not None and not choice.reasoning:
        first = {"role": "assistant", "content": None, "tool_calls": [header], "refusal": None}
        out = [event(first)]
    else:
        out = [event({"role": "assistant", "content": "", "refusal": None})]
    out.extend(event({"reasoning_content": word}) for word in choice.reasoning)
    if call is not None:
        if choice.reasoning:
            out.append(event({"tool_calls": [header]}))
        out.extend(
            event({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            for piece in call.fragments
        )
    if choice.logprobs is None:
        out.extend(event({"content": word}) for word in choice.content)
    else:
        out.extend(
            event({"content": word}, {"content": [lp.chat_entry(item)], "refusal": None})
            for word, item in zip(choice.content, choice.logprobs, strict=True)
        )
    out.append(
        {"index": index, "delta": {}, "logprobs": None, "finish_reason": choice.finish_reason}
    )
    return out


_MODEL_OBJECTS = {
    name: {"id": name, "object": "model", "created": 1700000000, "owned_by": "distill-guard"}
    for name in MODELS
}
_MODEL_LIST = orjson.dumps({"object": "list", "data": list(_MODEL_OBJECTS.values())})


async def list_models(request: Request) -> Response:
    return body_response(_MODEL_LIST)


async def get_model(request: Request) -> Response:
    name = request.path_params["model_id"]
    if name not in _MODEL_OBJECTS:
        return openai_error(
            f"The model '{name}' does not exist or you do not have access to it.",
            status=404,
            code="model_not_found",
        )
    return json_response(_MODEL_OBJECTS[name])
