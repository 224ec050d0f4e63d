"""The demo upstream as one Starlette app: both dialects plus health and 404s."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import embeddings, openai_api
from .anthropic_api import AnthropicMessages
from .common import anthropic_error, body_response, openai_error
from .config import DemoConfig
from .openai_legacy import OpenAICompletions

log = logging.getLogger(__name__)

_HEALTHY = b'{"status":"ok"}'
_ANTHROPIC_KINDS = {404: "not_found_error", 405: "invalid_request_error"}


async def healthz(request: Request) -> Response:
    return body_response(_HEALTHY)


async def http_error(request: Request, exc: Exception) -> Response:
    """404/405 in the dialect of the path, like the real APIs."""
    status = exc.status_code if isinstance(exc, HTTPException) else 400
    path = request.url.path
    if path.startswith("/v1/messages"):
        kind = _ANTHROPIC_KINDS.get(status, "invalid_request_error")
        return anthropic_error(f"{request.method} {path}: {exc}", status, kind)
    return openai_error(f"Invalid URL ({request.method} {path})", status)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    # Input validation should catch everything; if it missed a shape, still answer
    # as a client error (never a 500) and leave a trace in the log.
    log.exception("demo upstream failed on %s %s", request.method, request.url.path)
    if request.url.path.startswith("/v1/messages"):
        return anthropic_error(f"Could not process the request: {exc!r}")
    return openai_error(f"Could not process the request: {exc!r}")


def create_demo_app(config: DemoConfig | None = None) -> Starlette:
    """An OpenAI- and Anthropic-compatible fake model server."""
    config = config or DemoConfig()
    messages = AnthropicMessages(config)
    routes = [
        Route("/v1/chat/completions", openai_api.OpenAIChat(config).handle, methods=["POST"]),
        Route("/v1/completions", OpenAICompletions(config).handle, methods=["POST"]),
        Route("/v1/embeddings", embeddings.create, methods=["POST"]),
        Route("/v1/models", openai_api.list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", openai_api.get_model, methods=["GET"]),
        Route("/v1/messages", messages.handle, methods=["POST"]),
        Route("/v1/messages/count_tokens", messages.count_tokens, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: unexpected_error},
    )
