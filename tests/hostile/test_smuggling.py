"""Request smuggling basics, over a raw socket, with a raw upstream recording bytes.

Each case is one write of bytes to the gateway: a POST whose framing is
ambiguous (Content-Length and Transfer-Encoding, two Content-Lengths,
`chunked, identity`, obs-fold, ...) followed by a second request,
`GET /smuggled`, hidden where one reading of the framing would find it.

What must hold, with both HTTP parsers uvicorn can run (h11, the only one in
the container image, and httptools, picked when installed):
- no 5xx; the HTTP server refuses the ambiguous framing (400), or the gateway
  answers once;
- the upstream receives only well-formed requests: one Content-Length that
  matches the body, no Transfer-Encoding, the body exactly the client's JSON;
- one upstream request per answered client request;
- after an ambiguous request, `GET /smuggled` never reaches the upstream.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from gateway.app import create_app
from gateway.settings import Settings
from tests.hostile import rawhttp, tally
from tests.hostile.conftest import DEFAULT_POLICY, LogWatch
from tests.hostile.recorder import RawUpstream, raw_upstream
from tests.support.redis_server import RedisServer
from tests.support.server import serve_in_thread

pytestmark = pytest.mark.redis

PARSERS = ["h11", pytest.param("httptools", marks=pytest.mark.skipif(
    importlib.util.find_spec("httptools") is None, reason="httptools is not installed"))]

JSON = b'{"model":"demo-model","messages":[{"role":"user","content":"hi"}]}'
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
HEAD = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer sk-smuggler\r\n")


def _chunked(body: bytes) -> bytes:
    return f"{len(body):x}".encode() + b"\r\n" + body + b"\r\n0\r\n\r\n"


def _cl(n: int) -> bytes:
    return b"Content-Length: " + str(n).encode() + b"\r\n"


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    ambiguous: bool  # a reading of the framing exists in which SMUGGLED is a request


CASES = [
    Case("CL then TE", HEAD + _cl(len(JSON)) + b"Transfer-Encoding: chunked\r\n\r\n"
         + _chunked(JSON) + SMUGGLED, True),
    Case("TE then CL", HEAD + b"Transfer-Encoding: chunked\r\n" + _cl(4) + b"\r\n"
         + _chunked(JSON) + SMUGGLED, True),
    Case("two different CL", HEAD + _cl(len(JSON)) + _cl(len(JSON) + len(SMUGGLED)) + b"\r\n"
         + JSON + SMUGGLED, True),
    Case("two equal CL", HEAD + _cl(len(JSON)) + _cl(len(JSON)) + b"\r\n" + JSON, False),
    Case("CL list '5, 5'", HEAD + b"Content-Length: %d, %d\r\n\r\n" % (len(JSON), len(JSON))
         + JSON, False),
    Case("TE chunked, identity", HEAD + b"Transfer-Encoding: chunked, identity\r\n\r\n"
         + _chunked(JSON) + SMUGGLED, True),
    Case("TE identity, chunked", HEAD + b"Transfer-Encoding: identity, chunked\r\n\r\n"
         + _chunked(JSON) + SMUGGLED, False),
    Case("two TE headers", HEAD + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity"
         b"\r\n\r\n" + _chunked(JSON) + SMUGGLED, True),
    Case("TE xchunked with CL", HEAD + b"Transfer-Encoding: xchunked\r\n" + _cl(len(JSON))
         + b"\r\n" + JSON + SMUGGLED, True),
    Case("obs-fold TE", HEAD + b"Transfer-Encoding:\r\n chunked\r\n\r\n" + _chunked(JSON)
         + SMUGGLED, False),
    Case("obs-fold TE with CL", HEAD + _cl(len(JSON)) + b"Transfer-Encoding:\r\n chunked\r\n\r\n"
         + _chunked(JSON) + SMUGGLED, True),
    Case("obs-fold other header", HEAD + b"X-Foo: a\r\n b\r\n" + _cl(len(JSON)) + b"\r\n" + JSON,
         False),
    Case("space before colon", HEAD + b"Transfer-Encoding : chunked\r\n" + _cl(len(JSON))
         + b"\r\n" + JSON + SMUGGLED, True),
    Case("CL +N", HEAD + b"Content-Length: +%d\r\n\r\n" % len(JSON) + JSON, True),
    Case("CL -1", HEAD + b"Content-Length: -1\r\n\r\n" + JSON + SMUGGLED, True),
    Case("chunk size overflow", HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
         b"ffffffffffffffffffff1\r\n" + JSON + b"\r\n0\r\n\r\n" + SMUGGLED, True),
    Case("bare LF", HEAD.replace(b"\r\n", b"\n") + b"Content-Length: %d\n\n" % len(JSON)
         + JSON, False),
    Case("pipelined, well framed", HEAD + _cl(len(JSON)) + b"\r\n" + JSON + SMUGGLED, False),
]
# h11 reads a request with both Content-Length and Transfer-Encoding by the
# Transfer-Encoding (as RFC 9112 6.3 allows) but kept the connection open, so the
# bytes after the chunked body were parsed as the next request and the gateway
# forwarded GET /smuggled: a proxy in front that framed by Content-Length saw one
# request, the gateway two. The gateway now refuses such a request itself (400,
# Connection: close); httptools refuses it in the parser.


@contextmanager
def _serve(app: Any, http: str) -> Iterator[int]:
    """tests.support.server.serve_in_thread with the HTTP parser chosen; yields the port."""
    with serve_in_thread(app, http=http) as url:
        yield int(url.rsplit(":", 1)[1])


@contextmanager
def _gateway(redis: RedisServer, http: str, logwatch: LogWatch) -> Iterator[
        tuple[int, RawUpstream]]:
    with raw_upstream() as upstream:
        settings = Settings(policy=DEFAULT_POLICY, upstream=upstream.url, redis=redis.url,
                            redis_timeout_ms=2000, policy_watch_interval=0)
        with _serve(create_app(settings), http) as port:
            logwatch.attach()
            yield port, upstream


def _check(case: Case, port: int, upstream: RawUpstream, row: tally.Row) -> list[str]:
    """Send one case; the broken promises (empty: all held)."""
    upstream.clear()
    responses, _ = rawhttp.exchange(port, case.data, expect=None, idle=0.3)
    time.sleep(0.05)  # let the upstream finish recording
    statuses = [r.status for r in responses]
    row.add(",".join(map(str, statuses)) or "no answer", 1)
    problems = []
    if not responses:
        problems.append("no answer at all")
    if any(s >= 500 for s in statuses):
        problems.append(f"5xx: {statuses}")
    if upstream.malformed:
        problems.append(f"upstream saw malformed framing: {upstream.malformed}")
    for request in upstream.requests:
        lengths = request.header_values("content-length")
        if request.header_values("transfer-encoding") or len(lengths) > 1 or (
                lengths and int(lengths[0]) != len(request.body)):
            problems.append(f"ambiguous upstream framing: {request.headers}")
        if request.method == "POST" and request.body != JSON:
            problems.append(f"upstream body is not the client's JSON: {request.body[:200]!r}")
    answered = sum(1 for s in statuses if s == 200)
    if len(upstream.requests) != answered:
        problems.append(f"{len(upstream.requests)} upstream requests for {answered} answers")
    if case.ambiguous and any(r.target == "/smuggled" for r in upstream.requests):
        problems.append("GET /smuggled reached the upstream")
    if case.ambiguous and len(responses) != 1:
        problems.append("an ambiguous request was not answered exactly once")
    return [f"{case.name}: {p} (client saw {statuses})" for p in problems]


@pytest.mark.parametrize("http", PARSERS)
def test_smuggling_attempts_are_refused_or_answered_once(
        redis: RedisServer, http: str, logwatch: LogWatch) -> None:
    row = tally.row(f"smuggling over a raw socket ({http})")
    with _gateway(redis, http, logwatch) as (port, upstream):
        problems = [p for case in CASES for p in _check(case, port, upstream, row)]
    assert not problems, "\n".join(problems)
