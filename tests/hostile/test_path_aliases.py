"""Path aliases: another spelling of a route must not skip the rules for that route.

The gateway matches rules on the path as the client wrote it (percent-decoded)
and forwards the path as written. An upstream whose router cleans paths (dot
segments, `//`, a trailing slash, letter case: Express's default routing, a
path-normalising proxy, Spring's `;` parameters) would serve
`/v1/chat/./completions` as the chat route, which no `match: {paths: ...}` of
the policy matched, and which is no model route to the gateway (no JSON
check, no token counting).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.demo_upstream import DemoConfig, create_demo_app
from tests.hostile import rawhttp, tally
from tests.hostile.conftest import DEFAULT_POLICY, LogWatch, start_gateway, write_policy
from tests.hostile.recorder import raw_upstream
from tests.support.redis_server import RedisServer
from tests.support.server import serve_in_thread

pytestmark = pytest.mark.redis

TIGHT = """
version: 1
rules:
  - name: tight-chat
    kind: rate_shaping
    match:
      paths: ["/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/embeddings"]
    config:
      limits:
        - requests: 3/hour
"""
BODY = b'{"model": "demo-model", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}'
ALIASES = [b"/v1/chat/./completions", b"/v1//chat/completions", b"/v1/x/../chat/completions",
           b"/v1/chat/completions/", b"/V1/Chat/Completions", b"//v1/chat/completions",
           b"/v1/chat/%2e/completions", b"/v1/chat/completions/."]
# Percent-encoded spellings are decoded by the server before the gateway matches: limited.
ENCODED = [b"/v1/%63hat/completions", b"/v1/chat%2Fcompletions"]


def _clean(path: str) -> str:
    return posixpath.normpath("/" + path.lstrip("/")).lower().rstrip("/") or "/"


class Lenient:
    """ASGI middleware: route on the cleaned path, as a lenient upstream router does."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = _clean(scope["path"])
            scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def lenient_upstream() -> Iterator[str]:
    with serve_in_thread(Lenient(create_demo_app(DemoConfig(fast=True)))) as url:
        yield url


def _post(port: int, path: bytes, key: bytes) -> int:
    data = rawhttp.build(b"POST", path, [(b"Content-Type", b"application/json"),
                                         (b"Authorization", b"Bearer " + key)], BODY)
    responses, raw = rawhttp.exchange(port, data)
    assert len(responses) == 1, raw[:300]
    return responses[0].status


def test_encoded_spellings_of_a_route_share_its_limit(
        redis: RedisServer, lenient_upstream: str, tmp_path: Path, logwatch: LogWatch) -> None:
    row = tally.row("paths: percent-encoded spellings of a limited route")
    with start_gateway(redis, upstream=lenient_upstream, policy=write_policy(tmp_path, TIGHT),
                       watch=logwatch) as gw:
        assert [_post(gw.port, b"/v1/chat/completions", b"sk-enc") for _ in range(3)] == [200] * 3
        statuses = [_post(gw.port, path, b"sk-enc") for path in ENCODED]
    for status in statuses:
        row.add(status)
    assert statuses == [429] * len(ENCODED)


def test_aliases_of_a_route_do_not_skip_its_limit(
        redis: RedisServer, lenient_upstream: str, tmp_path: Path, logwatch: LogWatch) -> None:
    """They did: all eight were served past the limit. The gateway now refuses paths
    with dot or empty segments and other spellings of its routes (400)."""
    row = tally.row("paths: dot-segment / '//' / case aliases of a limited route")
    with start_gateway(redis, upstream=lenient_upstream, policy=write_policy(tmp_path, TIGHT),
                       watch=logwatch) as gw:
        assert [_post(gw.port, b"/v1/chat/completions", b"sk-alias") for _ in range(3)] == (
            [200] * 3)
        statuses = {path: _post(gw.port, path, b"sk-alias") for path in ALIASES}
    for status in statuses.values():
        row.add(status)
    dodged = {path: status for path, status in statuses.items() if status == 200}
    assert not dodged, f"served past the limit: {dodged}"
    assert set(statuses.values()) <= {400, 429}, statuses


def test_aliases_do_not_walk_past_deny_paths(redis: RedisServer, logwatch: LogWatch) -> None:
    """policies/default.yaml refuses /v1/fine_tuning* and /v1/organization*; dot
    segments walked past that to the upstream (now 400), other letter case too (path
    globs now compare case-insensitively, gateway/pipeline/match.py)."""
    row = tally.row("paths: aliases of access-denied paths")
    denied = [b"/v1/x/../fine_tuning/jobs", b"/v1/./fine_tuning/jobs", b"//v1/fine_tuning/jobs",
              b"/v1/%2e%2e/v1/organization/users", b"/V1/Fine_Tuning/jobs"]
    with raw_upstream() as upstream, start_gateway(
            redis, upstream=upstream.url, policy=DEFAULT_POLICY, watch=logwatch) as gw:
        for path in denied:
            data = rawhttp.build(b"GET", path, [(b"Authorization", b"Bearer sk-walker")])
            responses, _ = rawhttp.exchange(gw.port, data)
            row.add(responses[0].status)
        reached = [r.target for r in upstream.requests
                   if _clean(r.target.split("?")[0]).startswith(("/v1/fine_tuning",
                                                                 "/v1/organization"))]
    assert not reached, f"denied paths reached the upstream: {reached}"
