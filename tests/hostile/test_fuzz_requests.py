"""Fuzzed bodies, headers and ops/admin requests against a running gateway.

The gateway runs in this process (policies/default.yaml: access, rate shaping
with delay, logprob guards, prompt diversity in shadow) on a real redis-server,
in front of the demo model. Whatever arrives, the client gets an answer that
is not a 5xx, errors come in the dialect of the route called, no secret is in
any answer, and the gateway logs no error or traceback (`logwatch`).
"""

from __future__ import annotations

import string
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.hostile import rawhttp, tally
from tests.hostile.checks import assert_dialect_error, assert_no_secret, assert_proxied_answer
from tests.hostile.conftest import (
    ADMIN_TOKEN,
    PROFILE,
    Gateway,
    LogWatch,
    examples,
    start_gateway,
)
from tests.hostile.recorder import raw_upstream
from tests.hostile.strategies import (
    BASE_BODIES,
    GET_ROUTES,
    POST_ROUTES,
    FuzzRequest,
    dialect_of,
    dumps,
    requests,
)
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis

KEYS = ("sk-fuzz-alpha-0001", "sk-fuzz-beta-0002", "sk-fuzz-gamma-0003", "sk-fuzz-delta-0004")


@pytest.fixture
def gateway(redis: RedisServer, demo_url: str, logwatch: LogWatch) -> Iterator[Gateway]:
    with start_gateway(redis, upstream=demo_url, watch=logwatch) as gw:
        yield gw


def _headers(request: FuzzRequest, two_keys: bool) -> dict[str, str]:
    headers: dict[str, str] = {}
    if request.content_type is not None:
        headers["content-type"] = request.content_type.decode("latin-1")
    if request.key is not None:
        if two_keys:
            headers["authorization"] = f"Bearer {request.key}"
            headers["x-api-key"] = request.key + "-other"
        elif request.dialect == "anthropic":
            headers["x-api-key"] = request.key
        else:
            headers["authorization"] = f"Bearer {request.key}"
    return headers


def test_fuzzed_bodies_every_model_route(gateway: Gateway) -> None:
    row = tally.row("bodies: fuzzed JSON/bytes on every model route")
    with httpx.Client(base_url=gateway.url, timeout=30) as client:

        @settings(PROFILE, max_examples=examples(400))
        @given(request=requests(KEYS), two_keys=st.integers(0, 7).map(lambda n: n == 0))
        def one(request: FuzzRequest, two_keys: bool) -> None:
            resp = client.request(request.method, request.path, content=request.body,
                                  headers=_headers(request, two_keys and request.key is not None))
            row.add(resp.status_code)
            assert_proxied_answer(request.dialect, resp.status_code, resp.headers.items(),
                                  resp.content, method=request.method)
            if two_keys and request.key is not None:
                # two different keys: refused before the body is parsed (only a
                # wrong content type on a model route is refused earlier)
                assert resp.status_code in (401, 415), resp.status_code

        one()


# -- headers over a raw socket -----------------------------------------------------------

SERVER_REFUSAL = b"Invalid HTTP request received."
TCHAR = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
KNOWN_NAMES = ("authorization", "x-api-key", "content-type", "x-request-id", "x-forwarded-for",
               "connection", "te", "upgrade", "expect", "host", "accept-encoding", "user-agent",
               "cookie", "forwarded", "x-real-ip", "proxy-authorization", "keep-alive",
               "x-forwarded-host", "trailer", "anthropic-version", "openai-organization")


def _casing(name: str, how: int) -> str:
    return (name, name.upper(), name.title(), name.swapcase(),
            "".join(c.upper() if i % 2 else c for i, c in enumerate(name)))[how]


header_names = st.one_of(
    st.builds(_casing, st.sampled_from(KNOWN_NAMES), st.integers(0, 4)),
    st.text(alphabet=TCHAR, min_size=1, max_size=24),
).map(lambda s: s.encode("latin-1"))
# Field values: visible ASCII, obs-text (latin-1 bytes, so invalid UTF-8), spaces and
# tabs inside; now and then a control byte, which the HTTP server must refuse itself.
value_bytes = st.sampled_from([*range(0x21, 0x7F), *range(0x80, 0x100), 0x20, 0x09])
_control_bytes = st.builds(lambda v, c: v + bytes([c]) + v, st.sampled_from((b"x", b"Bearer k")),
                          st.sampled_from((0x00, 0x01, 0x0B, 0x0C, 0x1F, 0x7F)))
header_values = st.one_of(
    st.lists(value_bytes, max_size=80).map(bytes),
    st.lists(value_bytes, max_size=80).map(bytes),
    st.sampled_from((b"Bearer sk-fuzz-alpha-0001", b"bearer  sk-fuzz-alpha-0001 ",
                     b"Bearer\tsk-fuzz-beta-0002", b"BEARER sk-fuzz-gamma-0003", b"Basic Zm9v",
                     b"Bearer", b"Bearer ", b"sk-fuzz-delta-0004", b"\xff\xfe\xfd",
                     b"caf\xe9", b"\xe2\x80\xae", b"1.2.3.4, 5.6.7.8", b"unknown, ::1",
                     b"close", b"keep-alive, x-api-key", b"100-continue", b"h2c",
                     b"websocket", b"trailers", b"gzip, br", b"application/json")),
    st.builds(lambda n, c: c * n, st.sampled_from((4_000, 20_000, 60_000)),
              st.sampled_from((b"k", b"\xe9", b"a,"))),
    st.integers(0, 15).flatmap(  # one value in ~16 holds a control byte
        lambda n: _control_bytes if n == 0 else st.lists(value_bytes, max_size=40).map(bytes)),
)


def _routes() -> st.SearchStrategy[tuple[bytes, bytes]]:
    posts = [(b"POST", p.encode()) for p in POST_ROUTES]
    gets = [(b"GET", p.encode()) for p in GET_ROUTES[:2]] + [(b"GET", b"/healthz"),
                                                              (b"GET", b"/admin/policy")]
    return st.sampled_from(posts + gets)


def test_fuzzed_headers_raw_socket(gateway: Gateway) -> None:
    row = tally.row("headers: duplicates, odd case, latin-1/invalid UTF-8, 60 KB values")

    @settings(PROFILE, max_examples=examples(150))
    @given(route=_routes(), headers=st.lists(st.tuples(header_names, header_values),
                                             max_size=12))
    def one(route: tuple[bytes, bytes], headers: list[tuple[bytes, bytes]]) -> None:
        method, path = route
        headers = [(n, v.strip(b" \t")) for n, v in headers
                   if n.lower() not in (b"content-length", b"transfer-encoding", b"host")]
        body = b""
        if method == b"POST":
            body = dumps(BASE_BODIES[path.decode()])
            headers.append((b"Content-Type", b"application/json"))
        data = rawhttp.build(method, path, headers, body)
        responses, raw = rawhttp.exchange(gateway.port, data, timeout=15)
        assert len(responses) == 1, raw[:500]
        resp = responses[0]
        if resp.body == SERVER_REFUSAL:
            # the HTTP server refused the bytes itself (invalid header characters)
            row.add("400 (HTTP server)")
            assert resp.status == 400, raw[:500]
            return
        row.add(resp.status)
        assert resp.status < 500, raw[:1000]
        text_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in resp.headers]
        if path.startswith(b"/v1/"):
            assert resp.header(b"x-request-id") is not None, raw[:500]
            if resp.status >= 400:
                assert_dialect_error(dialect_of(path.decode()), resp.body,
                                     dict(text_headers).get("content-type"))
        assert_no_secret(resp.body, text_headers)

    one()


# -- ops and admin routes -----------------------------------------------------------------

ADMIN_PATHS = ("/admin/policy", "/admin/reload", "/admin/rules", "/admin/identities",
               "/admin/ui", "/admin/timeline", "/admin/identities/x", "/admin/", "/admin/nope",
               "/admin", "/healthz", "/readyz", "/metrics")
QUERY_VALUES = ("", "true", "false", "nan", "inf", "-inf", "-1", "0", "1e308", "1e999",
                "9" * 40, "abc", "%00", "1.5", "6")
WRONG_SAME_LENGTH = "x" * len(ADMIN_TOKEN)
AUTHS: dict[str, dict[str, str | bytes]] = {
    "none": {},
    "right": {"authorization": f"Bearer {ADMIN_TOKEN}"},
    "wrong-same-length": {"authorization": f"Bearer {WRONG_SAME_LENGTH}"},
    "wrong-length": {"authorization": "Bearer short"},
    "prefix": {"authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
    "longer": {"authorization": f"Bearer {ADMIN_TOKEN}x"},
    "lowercase-scheme": {"authorization": f"bearer {ADMIN_TOKEN}"},
    "x-api-key": {"x-api-key": ADMIN_TOKEN},
    "latin-1": {"authorization": b"Bearer caf\xe9"},
}


def test_fuzzed_ops_and_admin_routes(gateway: Gateway) -> None:
    row = tally.row("ops/admin routes: fuzzed paths, params, tokens, methods")
    with httpx.Client(base_url=gateway.url, timeout=30) as client:

        @settings(PROFILE, max_examples=examples(150))
        @given(path=st.one_of(st.sampled_from(ADMIN_PATHS),
                              st.text(alphabet=TCHAR + "/%", max_size=20).map(
                                  lambda s: "/admin/identities/" + s)),
               params=st.dictionaries(st.sampled_from(("hours", "limit", "shadow", "flagged",
                                                       "x")),
                                      st.sampled_from(QUERY_VALUES), max_size=3),
               auth=st.sampled_from(sorted(AUTHS)),
               method=st.sampled_from(("GET", "GET", "POST", "PUT", "DELETE")),
               body=st.sampled_from((b"", b"{}", b"\xff", b"[" * 2000)))
        def one(path: str, params: dict[str, str], auth: str, method: str, body: bytes) -> None:
            resp = client.request(method, path, params=params, headers=AUTHS[auth],
                                  content=body)
            row.add(resp.status_code)
            assert_no_secret(resp.content, resp.headers.items())
            if path == "/readyz" and method == "GET":
                assert resp.status_code in (200, 503)  # 503 only says "not ready"
                return
            assert resp.status_code < 500, (resp.status_code, resp.text[:500])
            if not path.startswith("/admin/"):
                return  # "/admin" itself is no gateway route: it is proxied like any path
            # Starlette's own 404/405 and its trailing-slash 307 come before any route
            known = resp.status_code not in (307, 404, 405)
            if auth != "right" and path != "/admin/ui" and known:
                # no token, no data: every admin route refuses the same way
                assert resp.status_code == 401, (path, auth, resp.status_code, resp.text)
                assert resp.json() == {"error": "unauthorized"}
            if resp.status_code >= 400 and resp.headers.get("content-type", "").startswith(
                    "application/json"):
                error = resp.json()
                assert isinstance(error, dict) and isinstance(error.get("error"), str), error

        one()


# -- request targets -----------------------------------------------------------------------

TARGETS = [b"/v1/models?a=%ZZ", b"/v1/models?a=\xff\xfe", b"/v1/models?" + b"a" * 70_000,
           b"/v1/models#frag", b"/v1/models?a=1%00", b"/v1/mod%00els",
           b"/v1/models?x=%0d%0aInjected:%20yes", b"/v1/%0d%0aInjected:%20yes",
           b"http://evil.example/v1/models", b"*", b"/v1/models/\xff", b"/v1/models?a=b c",
           b"/v1/chat/completions%3Fx=1", b"/v1/models/%2e%2e%2fadmin", b"/v1/models/..%2f..",
           b"/v1/models?" + b"&".join(b"k%d=v" % i for i in range(2000))]


def test_odd_request_targets_reach_the_upstream_verbatim_or_not_at_all(
        redis: RedisServer, logwatch: LogWatch) -> None:
    """Encoded CR/LF stays encoded, an absolute URI cannot pick another host, and what
    the server refuses never reaches the upstream."""
    row = tally.row("request targets: encodings, CR/LF, absolute URIs, 70 KB queries")
    with raw_upstream() as upstream, start_gateway(redis, upstream=upstream.url,
                                                   watch=logwatch) as gw:
        for target in TARGETS:
            upstream.clear()
            data = rawhttp.build(b"GET", target, [(b"Authorization", b"Bearer sk-targets")])
            responses, raw = rawhttp.exchange(gw.port, data)
            assert len(responses) == 1, raw[:300]
            row.add(responses[0].status)
            assert responses[0].status < 500, raw[:300]
            assert not upstream.malformed, upstream.malformed
            for request in upstream.requests:
                assert request.header_values("host") == [upstream.url.removeprefix("http://")]
                assert not request.header_values("injected"), request.headers
                assert "\r" not in request.target and "\n" not in request.target
