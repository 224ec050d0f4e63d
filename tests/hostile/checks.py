"""What every answer to hostile input must look like."""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from tests.hostile.conftest import ADMIN_TOKEN, IDENTITY_SECRET, WATERMARK_SECRET
from tests.hostile.strategies import ANTHROPIC

SECRETS = (IDENTITY_SECRET, WATERMARK_SECRET, ADMIN_TOKEN)


def assert_dialect_error(dialect: str, body: bytes, content_type: str | None) -> None:
    """An error body in the dialect of the route that was called."""
    assert content_type is not None and content_type.startswith("application/json"), (
        content_type, body[:300])
    error = orjson.loads(body)
    assert isinstance(error, dict), body[:300]
    if dialect == ANTHROPIC:
        assert error.get("type") == "error", body[:300]
        assert set(error) <= {"type", "error", "request_id"}, body[:300]
        inner = error["error"]
        assert isinstance(inner, dict) and isinstance(inner.get("type"), str), body[:300]
        assert isinstance(inner.get("message"), str), body[:300]
    else:
        assert set(error) == {"error"}, body[:300]
        inner = error["error"]
        assert isinstance(inner, dict) and isinstance(inner.get("message"), str), body[:300]
        assert isinstance(inner.get("type"), str), body[:300]
        assert {"message", "type", "param", "code"} <= set(inner), body[:300]


def assert_proxied_answer(dialect: str, status: int, headers: Iterable[tuple[str, str]],
                          body: bytes, *, method: str = "POST") -> None:
    """Never a 5xx, always an X-Request-ID, errors in the route's dialect, no secret."""
    header_list = [(k.lower(), v) for k, v in headers]
    assert status < 500, (status, body[:500])
    names = {k for k, _ in header_list}
    assert "x-request-id" in names, (status, header_list)
    if status >= 400 and method != "HEAD":
        assert_dialect_error(dialect, body, dict(header_list).get("content-type"))
    assert_no_secret(body, header_list)


def assert_no_secret(body: bytes, headers: Iterable[tuple[str, str]] = ()) -> None:
    text = body.decode("latin-1") + "\n" + "\n".join(f"{k}: {v}" for k, v in headers)
    for secret in SECRETS:
        assert secret not in text, f"a secret leaked: {secret[:12]}..."
