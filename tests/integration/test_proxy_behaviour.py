"""Bad input, upstream failures, headers and ops routes, over real sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.integration.conftest import FIXTURES, GatewayFactory
from tests.support.server import free_port, serve_in_thread

CHAT = "/v1/chat/completions"
BODY = {"model": "demo-model", "messages": [{"role": "user", "content": "hello"}]}


def openai_error(resp: httpx.Response) -> dict[str, object]:
    body = resp.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]  # type: ignore[no-any-return]


def test_malformed_json(gateway_url: str) -> None:
    resp = httpx.post(gateway_url + CHAT, content=b'{"model": ', headers={
        "content-type": "application/json", "authorization": "Bearer k"})
    assert resp.status_code == 400
    assert "not valid JSON" in openai_error(resp)["message"]


def test_json_that_is_not_an_object(gateway_url: str) -> None:
    resp = httpx.post(gateway_url + CHAT, json=[1, 2])
    assert resp.status_code == 400 and openai_error(resp)["type"] == "invalid_request_error"


def test_wrong_content_type(gateway_url: str) -> None:
    resp = httpx.post(gateway_url + CHAT, content=b"model=x",
                      headers={"content-type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 415
    openai_error(resp)
    resp = httpx.post(gateway_url + "/v1/messages", content=b"x",
                      headers={"content-type": "text/plain"})
    assert resp.status_code == 415 and resp.json()["type"] == "error"


def test_body_over_limit_declared_and_chunked(make_gateway: GatewayFactory) -> None:
    with make_gateway(max_body_bytes=1000) as url:
        big = {**BODY, "messages": [{"role": "user", "content": "x" * 2000}]}
        resp = httpx.post(url + CHAT, json=big)
        assert resp.status_code == 413
        openai_error(resp)

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
            yield b'{"model": "demo-model", "messages": [{"role": "user", "content": "'
            for _ in range(30):
                yield b"y" * 100
            yield b'"}]}'

        resp = httpx.post(url + "/v1/messages", content=chunks(),
                          headers={"content-type": "application/json"})
        assert resp.status_code == 413
        assert resp.json()["error"]["type"] == "request_too_large"


def test_too_many_headers(make_gateway: GatewayFactory) -> None:
    with make_gateway(max_headers=20) as url:
        headers = {f"x-h-{i}": "v" for i in range(30)}
        resp = httpx.post(url + CHAT, json=BODY, headers=headers)
        assert resp.status_code == 431
        openai_error(resp)


def test_two_different_keys_refused(gateway_url: str) -> None:
    resp = httpx.post(gateway_url + "/v1/messages", json=BODY,
                      headers={"authorization": "Bearer a", "x-api-key": "b"})
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"


def test_upstream_refusing_connections_is_502(make_gateway: GatewayFactory) -> None:
    with make_gateway(upstream=f"http://127.0.0.1:{free_port()}") as url:
        resp = httpx.post(url + CHAT, json=BODY)
        assert resp.status_code == 502
        assert openai_error(resp)["code"] == "upstream_error"
        resp = httpx.post(url + "/v1/messages", json=BODY)
        assert resp.status_code == 502 and resp.json()["error"]["type"] == "api_error"


@pytest.fixture
def hanging_upstream() -> Iterator[tuple[str, dict[str, float]]]:
    seen: dict[str, float] = {}

    async def hang(request: Request) -> Response:
        await asyncio.sleep(30)
        return JSONResponse({})

    async def slow_stream(request: Request) -> Response:
        async def events() -> object:
            try:
                for i in range(1000):
                    yield f"data: {json.dumps({'i': i})}\n\n".encode()
                    await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                seen["cancelled_at"] = time.monotonic()
                raise

        return StreamingResponse(events(), media_type="text/event-stream")  # type: ignore[arg-type]

    app = Starlette(routes=[Route("/v1/chat/completions", hang, methods=["POST"]),
                            Route("/v1/stream", slow_stream, methods=["POST", "GET"])])
    with serve_in_thread(app) as url:
        yield url, seen


def test_upstream_timeout_is_504(make_gateway: GatewayFactory,
                                 hanging_upstream: tuple[str, dict[str, float]]) -> None:
    upstream, _ = hanging_upstream
    with make_gateway(upstream=upstream, upstream_timeout=0.5) as url:
        started = time.monotonic()
        resp = httpx.post(url + CHAT, json=BODY, timeout=10)
        assert resp.status_code == 504
        assert openai_error(resp)["type"] == "timeout_error"
        assert time.monotonic() - started < 5


def test_client_disconnect_cancels_upstream(make_gateway: GatewayFactory,
                                            hanging_upstream: tuple[str, dict[str, float]]) -> None:
    upstream, seen = hanging_upstream
    with make_gateway(upstream=upstream) as url:
        with httpx.stream("GET", url + "/v1/stream", timeout=10) as resp:
            first = next(resp.iter_raw())
            assert first.startswith(b"data:")
            closed_at = time.monotonic()
        deadline = time.monotonic() + 5
        while "cancelled_at" not in seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "cancelled_at" in seen, "upstream stream was not cancelled"
        assert seen["cancelled_at"] - closed_at < 2


ODD_STREAM = [
    b": keep-alive comment\r\n\r\n",
    b'data: {"choices": [{"delta": {"content": "Hel"}}]}\r\n\r',
    b'\ndata: {"choices": [{"delta": {"content": "lo"}}]}\n\nevent: x\ndata: a\ndata: b\n\n',
    b"data: [DONE]\n\n",
]


def test_stream_is_relayed_byte_for_byte(make_gateway: GatewayFactory) -> None:
    async def odd(request: Request) -> Response:
        async def chunks() -> object:
            for chunk in ODD_STREAM:
                yield chunk
                await asyncio.sleep(0.01)

        return StreamingResponse(chunks(), media_type="text/event-stream")  # type: ignore[arg-type]

    app = Starlette(routes=[Route(CHAT, odd, methods=["POST"])])
    with serve_in_thread(app) as upstream, make_gateway(upstream=upstream) as url:
        via = httpx.post(url + CHAT, json={**BODY, "stream": True})
    assert via.headers["content-type"].startswith("text/event-stream")
    assert via.content == b"".join(ODD_STREAM)


def test_hop_by_hop_dropped_and_request_id_set(gateway_url: str) -> None:
    resp = httpx.post(gateway_url + CHAT, json=BODY,
                      headers={"x-request-id": "abc-123", "connection": "keep-alive"})
    assert resp.headers["x-request-id"] == "abc-123"
    assert "keep-alive" not in resp.headers
    resp = httpx.post(gateway_url + CHAT, json=BODY, headers={"x-request-id": "bad id/../"})
    assert len(resp.headers["x-request-id"]) == 32


def test_upstream_sees_forwarding_headers(make_gateway: GatewayFactory) -> None:
    seen: list[dict[str, str]] = []

    async def echo(request: Request) -> Response:
        seen.append(dict(request.headers))
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "POST"])])
    with serve_in_thread(app) as upstream, make_gateway(upstream=upstream) as url:
        resp = httpx.get(url + "/v1/files?limit=2", headers={
            "x-forwarded-for": "6.6.6.6", "authorization": "Bearer k"})
        assert resp.status_code == 200 and resp.json() == {"ok": True}
    headers = seen[0]
    assert headers["x-forwarded-for"] == "127.0.0.1"  # an untrusted client's XFF is dropped
    assert len(headers["x-request-id"]) == 32
    assert headers["authorization"] == "Bearer k"
    assert headers["host"].startswith("127.0.0.1")


def test_policy_refusal_in_each_dialect(make_gateway: GatewayFactory) -> None:
    policy = (FIXTURES / "policies" / "deny_models.yaml").read_text()
    with make_gateway(policy_text=policy) as url:
        ok = httpx.post(url + CHAT, json=BODY)
        assert ok.status_code == 200  # the shadow rule that denies everything is not enforced
        resp = httpx.post(url + CHAT, json={**BODY, "model": "gpt-secret"})
        assert resp.status_code == 403
        assert openai_error(resp)["code"] == "model_not_allowed"
        resp = httpx.post(url + "/v1/messages", json={**BODY, "model": "demo-secret-1"})
        assert resp.status_code == 403
        assert resp.json()["error"]["type"] == "permission_error"
        metrics = httpx.get(url + "/metrics").text
        assert ('distill_guard_rule_decisions_total{decision="reject",kind="access",'
                'rule="shadow-deny-all",shadow="true"}') in metrics


def test_unknown_paths_forwarded_unless_policy_says_no(make_gateway: GatewayFactory) -> None:
    with make_gateway() as url:
        assert httpx.get(url + "/v1/models").status_code == 200
        assert httpx.get(url + "/v1/unknown-thing").status_code == 404  # demo's own 404
    policy = (FIXTURES / "policies" / "no_unknown_paths.yaml").read_text()
    with make_gateway(policy_text=policy) as url:
        resp = httpx.get(url + "/v1/unknown-thing")
        assert resp.status_code == 404 and openai_error(resp)["code"] == "not_found"
        assert httpx.get(url + "/v1/models").status_code == 200


def test_ops_routes(gateway_url: str) -> None:
    assert httpx.get(gateway_url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gateway_url + "/readyz")
    assert ready.status_code == 200, ready.text
    httpx.post(gateway_url + CHAT, json=BODY, headers={"authorization": "Bearer sk-secret-xyz"})
    metrics = httpx.get(gateway_url + "/metrics").text
    assert "distill_guard_requests_total" in metrics
    assert "distill_guard_overhead_seconds" in metrics
    assert "sk-secret-xyz" not in metrics and "identity" not in metrics


def test_readyz_fails_when_upstream_down(make_gateway: GatewayFactory) -> None:
    with make_gateway(upstream=f"http://127.0.0.1:{free_port()}") as url:
        resp = httpx.get(url + "/readyz")
        assert resp.status_code == 503
        assert resp.json()["checks"]["upstream"].startswith("unreachable")


def test_admin_api_needs_token(make_gateway: GatewayFactory) -> None:
    with make_gateway() as url:
        assert httpx.get(url + "/admin/policy").status_code == 404  # off without a token
    with make_gateway(admin_token="s3cret") as url:
        assert httpx.get(url + "/admin/policy").status_code == 401
        wrong = httpx.get(url + "/admin/policy", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = httpx.get(url + "/admin/policy", headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["rules"][0]["name"] == "block-admin-paths"


def test_access_log_has_identity_not_key(gateway_url: str,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="distill_guard.access")
    httpx.post(gateway_url + CHAT, json=BODY, headers={"authorization": "Bearer sk-raw-key-1"})
    time.sleep(0.1)
    records = [r for r in caplog.records if r.name == "distill_guard.access"]
    assert records
    fields = records[-1].fields  # type: ignore[attr-defined]
    assert set(fields) >= {"request_id", "identity", "route", "status", "decision",
                           "overhead_ms"}
    assert fields["status"] == 200 and fields["route"] == CHAT
    assert "sk-raw-key-1" not in repr(fields)


def test_raw_socket_garbage_never_500(gateway_url: str) -> None:
    host, port = gateway_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        data = sock.recv(4096)
    assert not data.startswith(b"HTTP/1.1 500")


def test_threads_left_clean() -> None:
    # serve_in_thread joins its threads; nothing from these tests keeps running.
    assert not [t for t in threading.enumerate() if t.name.startswith("uvicorn")]


@pytest.mark.parametrize("fallback", [True, False])
def test_readyz_with_redis_down(make_gateway: GatewayFactory, fallback: bool) -> None:
    """With the local fallback a replica keeps serving, so it stays in the Service."""
    with make_gateway(redis=f"redis://127.0.0.1:{free_port()}",
                      storage_fallback=fallback) as url:
        resp = httpx.get(url + "/readyz")
        assert resp.json()["checks"]["storage"].startswith("unreachable")
        if fallback:
            assert resp.status_code == 200 and resp.json()["status"] == "degraded"
        else:
            assert resp.status_code == 503 and resp.json()["status"] == "not ready"
