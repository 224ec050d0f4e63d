"""Secrets: raw API keys never reach Redis, logs, the audit log or /metrics; the
identity secret, watermark secret and admin token never reach any response.

policies/strict.yaml (prompt diversity enforced, watermark on, per-key rates)
plus a rule that matches on the key headers themselves; real Redis, access log
on, audit log on. Traffic with known keys on every route, streamed and not,
refused and not, then the admin API read with the token. Afterwards every
Redis key is SCANned and every value read back, every log record formatted
the way production writes it, and every response body and header grepped."""

from __future__ import annotations

import ast
import inspect
import logging
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_sync

from gateway.app import GatewayApp
from gateway.identity import IdentityHasher
from gateway.logs import JSONFormatter
from tests.hostile import tally
from tests.hostile.conftest import (
    ADMIN_TOKEN,
    IDENTITY_SECRET,
    REPO,
    WATERMARK_SECRET,
    LogWatch,
    start_gateway,
)
from tests.hostile.rawhttp import build, exchange
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis

KEYS = ["sk-live-RAWKEY-aaaa1111bbbb2222", "sk-ant-RAWKEY-cccc3333dddd4444",
        "sk-proj-RAWKEY-eeee5555ffff6666"]
REFUSED_KEYS = ["sk-first-RAWKEY-gggg7777", "sk-second-RAWKEY-hhhh8888"]
LATIN1_KEY = b"sk-\xe9\xe9-RAWKEY-iiii9999jjjj"  # not UTF-8: sent over a raw socket
SECRETS = [IDENTITY_SECRET, WATERMARK_SECRET, ADMIN_TOKEN]
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
# policies/strict.yaml plus rules that read the key headers: the audit log keeps the
# headers rules read, and must still leave these out.
KEY_READING_RULE = """
  - name: key-prefix-watch
    kind: access
    shadow: true
    match: {headers: {authorization: ["Bearer sk-*"], x-api-key: ["sk-*"]}}
    config:
      deny_headers: {x-api-key: ["blocked-*"], authorization: ["Bearer blocked-*"]}
"""


def _needles() -> list[bytes]:
    """Each raw key, whole and as a distinctive fragment, in the encodings it could take."""
    out: list[bytes] = []
    for key in [*KEYS, *REFUSED_KEYS]:
        out += [key.encode(), key.split("RAWKEY-")[1].encode()]
    latin = LATIN1_KEY.decode("latin-1")
    out += [LATIN1_KEY, latin.encode("utf-8"), LATIN1_KEY.split(b"RAWKEY-")[1]]
    return out


def _secrets() -> list[bytes]:
    return [s.encode() for s in SECRETS]


class Everything(logging.Handler):
    """Every log record at INFO and above (the production default), formatted as
    production writes it; the test's own HTTP client's records left out."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.setFormatter(JSONFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(("httpx", "httpcore")):
            self.lines.append(self.format(record))


@pytest.fixture
def all_logs() -> Iterator[Everything]:
    handler = Everything()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # the access log writes at INFO
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _dump_redis(url: str) -> tuple[int, bytes]:
    """Every key name and every value in Redis, as one blob of bytes."""
    client = redis_sync.Redis.from_url(url)
    blob = bytearray()
    count = 0
    try:
        for key in client.scan_iter(count=1000):
            count += 1
            blob += key + b"\n"
            kind = client.type(key)
            if kind == b"string":
                blob += client.get(key) or b""
            elif kind == b"hash":
                for field, value in client.hgetall(key).items():
                    blob += field + b"=" + value + b"\n"
            elif kind == b"zset":
                for member, score in client.zrange(key, 0, -1, withscores=True):
                    blob += member + b"=" + str(score).encode() + b"\n"
            elif kind == b"set":
                blob += b"\n".join(client.smembers(key))
            elif kind == b"list":
                blob += b"\n".join(client.lrange(key, 0, -1))
            elif kind == b"stream":
                blob += repr(client.xrange(key)).encode()
            else:
                raise AssertionError(f"unexpected Redis type {kind!r} for {key!r}")
            blob += b"\n"
    finally:
        client.close()
    return count, bytes(blob)


def _traffic(url: str, port: int, responses: list[bytes]) -> int:
    """Send the traffic; keep every response's status line, headers and body."""
    sent = 0

    def keep(resp: httpx.Response) -> None:
        nonlocal sent
        sent += 1
        head = "\n".join(f"{k}: {v}" for k, v in resp.headers.multi_items())
        responses.append(f"{resp.status_code}\n{head}\n\n".encode() + resp.content)

    chat = {"model": "demo-model", "max_tokens": 20,
            "messages": [{"role": "user", "content": "Tell me about rivers and valleys"}]}
    with httpx.Client(base_url=url, timeout=30) as client:
        for key in KEYS:
            bearer = {"authorization": f"Bearer {key}"}
            for body, path, headers in [
                (chat, "/v1/chat/completions", bearer),
                ({**chat, "stream": True}, "/v1/chat/completions", bearer),
                ({**chat, "logprobs": True, "top_logprobs": 9}, "/v1/chat/completions", bearer),
                ({"model": "demo-model", "prompt": "Once", "max_tokens": 9}, "/v1/completions",
                 bearer),
                ({"model": "demo-model", "input": "hello"}, "/v1/embeddings", bearer),
                (chat, "/v1/messages", {"x-api-key": key}),
                ({**chat, "stream": True}, "/v1/messages", {"x-api-key": key, **bearer}),
                (chat, "/v1/messages/count_tokens", {"x-api-key": key}),
            ]:
                keep(client.post(path, json=body, headers=headers))
            keep(client.get("/v1/models", headers=bearer))
            keep(client.post("/v1/chat/completions", content=b'{"model": ', headers={
                **bearer, "content-type": "application/json"}))
            keep(client.post("/v1/chat/completions", content=b"x", headers={
                **bearer, "content-type": "text/plain"}))
        keep(client.post("/v1/chat/completions", json=chat, headers={
            "authorization": f"Bearer {REFUSED_KEYS[0]}", "x-api-key": REFUSED_KEYS[1]}))
        # a key that is not UTF-8 (the server hands header bytes through as latin-1)
        for path in (b"/v1/chat/completions", b"/v1/messages"):
            raw = build(b"POST", path, [(b"Content-Type", b"application/json"),
                                        (b"Authorization", b"Bearer " + LATIN1_KEY)],
                        b'{"model": "demo-model", "max_tokens": 5, "messages": '
                        b'[{"role": "user", "content": "hi"}]}')
            _, received = exchange(port, raw)
            responses.append(received)
            sent += 1
        time.sleep(0.5)  # the complete stages (settle, signals) run after the responses
        hasher = IdentityHasher(IDENTITY_SECRET.encode())
        for path in ["/admin/policy", "/admin/rules", "/admin/identities",
                     "/admin/identities?shadow=true", "/admin/timeline", "/admin/ui",
                     *(f"/admin/identities/{hasher.hash_key(k)}" for k in KEYS)]:
            keep(client.get(path, headers=ADMIN))
        keep(client.post("/admin/reload", headers=ADMIN))
        for headers in ({}, {"authorization": "Bearer " + "x" * len(ADMIN_TOKEN)}):
            keep(client.get("/admin/identities", headers=headers))
        for path in ("/metrics", "/healthz", "/readyz"):
            keep(client.get(path))
    return sent


def test_no_raw_key_in_redis_logs_audit_or_metrics_no_secret_in_any_response(
        redis: RedisServer, demo_url: str, tmp_path: Path, all_logs: Everything,
        logwatch: LogWatch) -> None:
    row = tally.row("secrets: known keys on every route, then Redis/logs/audit/metrics/"
                    "responses grepped")
    audit = tmp_path / "audit.jsonl"
    responses: list[bytes] = []
    policy = tmp_path / "policy.yaml"
    policy.write_text((REPO / "policies" / "strict.yaml").read_text() + KEY_READING_RULE)
    with start_gateway(redis, upstream=demo_url, policy=policy,
                       audit_log=audit, access_log=True, watch=logwatch) as gw:
        sent = _traffic(gw.url, gw.port, responses)
        metrics = httpx.get(gw.url + "/metrics").content
    row.add("requests", sent)
    keys, in_redis = _dump_redis(redis.url)
    logs = "\n".join(all_logs.lines).encode()
    audit_text = audit.read_bytes()
    everything_sent_back = b"\n".join(responses)
    # the places looked in are not empty: the traffic got there
    assert keys > 20, keys
    access_lines = [line for line in all_logs.lines if '"distill_guard.access"' in line]
    assert len(access_lines) >= 36  # one per model-route request
    assert audit_text.count(b"\n") >= 20
    assert b"distill_guard_requests_total" in metrics
    assert any(b"\n200\n" in r or r.startswith(b"200\n") for r in responses)
    for needle in _needles():
        assert needle not in in_redis, f"raw key in Redis: {needle!r}"
        assert needle not in logs, f"raw key in the logs: {needle!r}"
        assert needle not in audit_text, f"raw key in the audit log: {needle!r}"
        assert needle not in metrics, f"raw key in /metrics: {needle!r}"
        assert needle not in everything_sent_back, f"raw key in a response: {needle!r}"
    for secret in _secrets():
        for where, blob in [("Redis", in_redis), ("logs", logs), ("audit log", audit_text),
                            ("metrics", metrics), ("a response", everything_sent_back)]:
            assert secret not in blob, f"a secret is in {where}: {secret[:10]!r}..."
    row.add("raw keys or secrets found", 0)
    audit_lines = audit_text.count(b"\n")
    print(f"{sent} requests; {keys} Redis keys, {len(all_logs.lines)} log lines, "
          f"{audit_lines} audit lines grepped")


# -- the admin token -------------------------------------------------------------------

def test_admin_token_is_compared_in_constant_time() -> None:
    """Code-level: the one place that checks the token uses hmac.compare_digest, and no
    == / != touches the token."""
    source = textwrap.dedent(inspect.getsource(GatewayApp._admin_refusal))
    tree = ast.parse(source)
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    names = {ast.unparse(call.func) for call in calls}
    assert names & {"hmac.compare_digest", "secrets.compare_digest", "compare_digest"}, names
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(
                isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
            raise AssertionError(f"token compared with ==/!=: {ast.unparse(node)}")
    # every admin route goes through that one check
    app_source = inspect.getsource(GatewayApp)
    for route in ("admin_policy", "admin_reload", "admin_rules", "admin_identities",
                  "admin_identity"):
        body = inspect.getsource(getattr(GatewayApp, route))
        assert "_admin_refusal(request)" in body, route
    assert app_source.count("_admin_refusal(request)") >= 5


WRONG_TOKENS = {
    "none": None,
    "empty": "",
    "same length": "Bearer " + "y" * len(ADMIN_TOKEN),
    "same length, one char off": "Bearer " + ADMIN_TOKEN[:-1] + "_",
    "shorter": "Bearer " + ADMIN_TOKEN[:8],
    "longer": "Bearer " + ADMIN_TOKEN + "0",
    "no scheme": ADMIN_TOKEN,
    "lower-case scheme": "bearer " + ADMIN_TOKEN,
    "two spaces": "Bearer  " + ADMIN_TOKEN,
    "basic": "Basic " + ADMIN_TOKEN,
}


def test_admin_api_refuses_without_the_token(redis: RedisServer, demo_url: str,
                                             logwatch: LogWatch) -> None:
    row = tally.row("admin API: wrong/absent token (same and other lengths)")
    routes = [("GET", "/admin/policy"), ("POST", "/admin/reload"), ("GET", "/admin/rules"),
              ("GET", "/admin/identities"), ("GET", "/admin/identities/abc"),
              ("GET", "/admin/timeline")]
    with start_gateway(redis, upstream=demo_url, watch=logwatch) as gw, \
            httpx.Client(base_url=gw.url, timeout=10) as client:
        for name, value in WRONG_TOKENS.items():
            headers = {} if value is None else {"authorization": value}
            for method, path in routes:
                resp = client.request(method, path, headers=headers)
                row.add(resp.status_code)
                assert resp.status_code == 401, (name, path, resp.status_code)
                assert resp.json() == {"error": "unauthorized"}
                assert resp.headers["www-authenticate"] == "Bearer"
        # nor as a query parameter or in another header
        for resp in (client.get("/admin/policy", params={"token": ADMIN_TOKEN}),
                     client.get("/admin/policy", headers={"x-api-key": ADMIN_TOKEN}),
                     client.get("/admin/policy", headers={"x-admin-token": ADMIN_TOKEN})):
            row.add(resp.status_code)
            assert resp.status_code == 401
        ok = client.get("/admin/policy", headers=ADMIN)
        assert ok.status_code == 200
