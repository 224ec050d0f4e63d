"""Plumbing shared by both dialects: JSON bodies, typed field access, SSE, ids."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

JSONObj = dict[str, Any]

DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"cache-control": "no-cache"}

_RUN = secrets.token_hex(4)
_COUNTER = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Conversation:
    """What a dialect extracted from the request's messages.

    prompt_text: all message text (system, user, assistant, tool results) joined by
        newlines; it seeds the answer and its word count is the prompt token count.
    last_user_text: text of the latest user turn, which decides tools and topic.
    after_tool_result: the latest turn carries a tool result, so answer in prose.
    """

    prompt_text: str
    last_user_text: str
    after_tool_result: bool


class RequestError(Exception):
    """Bad client input, answered with a 400 in the dialect of the route."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def new_id(prefix: str) -> str:
    """Unique within the process and cheap: no syscall per request."""
    return f"{prefix}{_RUN}{next(_COUNTER):012x}"


def now() -> int:
    return int(time.time())


def json_response(payload: object, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def body_response(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def openai_error(
    message: str,
    status: int = 400,
    param: str | None = None,
    code: str | None = None,
    kind: str = "invalid_request_error",
) -> Response:
    error = {"message": message, "type": kind, "param": param, "code": code}
    return json_response({"error": error}, status)


def anthropic_error(
    message: str, status: int = 400, kind: str = "invalid_request_error"
) -> Response:
    return json_response({"type": "error", "error": {"type": kind, "message": message}}, status)


def sse_data(payload: object) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def sse_event(name: str, payload: object) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


async def _drip(ticks: Sequence[bytes], delay: float) -> AsyncIterator[bytes]:
    for i, tick in enumerate(ticks):
        if delay > 0 and i:
            await asyncio.sleep(delay)
        yield tick


def sse_response(ticks: Sequence[bytes], delay: float) -> StreamingResponse:
    """Stream pre-encoded ticks (one write each), sleeping `delay` between them."""
    return StreamingResponse(
        _drip(ticks, delay), media_type="text/event-stream", headers=SSE_HEADERS
    )


async def read_object(request: Request) -> JSONObj:
    raw = await request.body()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise RequestError(
            "We could not parse the JSON body of your request. The body must be valid JSON.",
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise RequestError("The request body must be a JSON object.", code="invalid_json")
    return data


def type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def bad_type(key: str, expected: str, value: object) -> RequestError:
    return RequestError(
        f"Invalid type for '{key}': expected {expected}, but got {type_name(value)} instead.",
        param=key,
        code="invalid_type",
    )


def missing(key: str) -> RequestError:
    return RequestError(
        f"Missing required parameter: '{key}'.", param=key, code="missing_required_parameter"
    )


def req_str(body: JSONObj, key: str) -> str:
    if key not in body:
        raise missing(key)
    value = body[key]
    if not isinstance(value, str):
        raise bad_type(key, "a string", value)
    return value


def opt_str(body: JSONObj, key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise bad_type(key, "a string", value)
    return value


def opt_bool(body: JSONObj, key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_type(key, "a boolean", value)
    return value


def opt_int(body: JSONObj, key: str, low: int, high: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_type(key, "an integer", value)
    if not low <= value <= high:
        raise RequestError(
            f"Invalid '{key}': expected a value between {low} and {high}, but got {value}.",
            param=key,
            code="invalid_value",
        )
    return value


def opt_number(body: JSONObj, key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_type(key, "a number", value)
    return float(value)


def opt_list(body: JSONObj, key: str) -> list[Any] | None:
    value = body.get(key)
    if value is not None and not isinstance(value, list):
        raise bad_type(key, "an array", value)
    return value


def opt_dict(body: JSONObj, key: str) -> JSONObj | None:
    value = body.get(key)
    if value is not None and not isinstance(value, dict):
        raise bad_type(key, "an object", value)
    return value


class BoundedCache:
    """A tiny dict cache for pre-rendered fast-mode responses; cleared when full."""

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._data: dict[tuple[object, ...], bytes | tuple[bytes, ...]] = {}

    def get(self, key: tuple[object, ...]) -> bytes | tuple[bytes, ...] | None:
        return self._data.get(key)

    def put(self, key: tuple[object, ...], value: bytes | tuple[bytes, ...]) -> None:
        if len(self._data) >= self._size:
            self._data.clear()
        self._data[key] = value
