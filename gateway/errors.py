"""Errors in the dialect of the API the client called.

OpenAI clients expect `{"error": {"message", "type", "param", "code"}}`;
Anthropic clients expect `{"type": "error", "error": {"type", "message"}}`.
The official SDKs map the HTTP status to their exception classes (429 is a
rate limit they retry, 5xx an API error), so the status matters as much as
the body.
"""

from __future__ import annotations

from enum import StrEnum

import orjson


class Dialect(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


def dialect_for_path(path: str) -> Dialect:
    """Anthropic's Messages API lives under /v1/messages; everything else is OpenAI-style."""
    if path.startswith("/v1/messages") or path.startswith("/v1/complete"):
        return Dialect.ANTHROPIC
    return Dialect.OPENAI


# HTTP status -> (OpenAI error type, Anthropic error type)
_TYPES: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_request_error"),
    401: ("authentication_error", "authentication_error"),
    403: ("permission_error", "permission_error"),
    404: ("not_found_error", "not_found_error"),
    405: ("invalid_request_error", "invalid_request_error"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "invalid_request_error"),
    429: ("rate_limit_error", "rate_limit_error"),
    431: ("invalid_request_error", "invalid_request_error"),
    500: ("api_error", "api_error"),
    502: ("api_error", "api_error"),
    503: ("api_error", "overloaded_error"),
    504: ("timeout_error", "api_error"),
}


class GatewayError(Exception):
    """An error the gateway answers itself, rendered in the caller's dialect."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}


def error_body(dialect: Dialect, status: int, message: str, *, code: str | None = None,
               param: str | None = None) -> bytes:
    openai_type, anthropic_type = _TYPES.get(status, ("api_error", "api_error"))
    if dialect is Dialect.ANTHROPIC:
        error = {"type": anthropic_type, "message": message}
        return orjson.dumps({"type": "error", "error": error})
    return orjson.dumps(
        {"error": {"message": message, "type": openai_type, "param": param, "code": code}}
    )


def render(dialect: Dialect, error: GatewayError) -> bytes:
    return error_body(dialect, error.status, error.message, code=error.code, param=error.param)
