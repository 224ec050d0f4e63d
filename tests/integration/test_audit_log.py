"""The gateway writes the audit log over a real socket, and `replay` reads that file back."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from gateway.cli import main
from gateway.identity import IdentityHasher
from tests.integration.conftest import GatewayFactory

POLICY = """\
version: 1
rules:
  - name: per-key
    kind: rate_shaping
    match: {paths: ["/v1/chat/completions", "/v1/messages"]}
    config:
      key: identity
      on_exceed: reject
      limits: [{requests: 3/min}]
  - name: watch
    kind: prompt_diversity
    shadow: true
    config: {thresholds: {min_requests: 2}}
"""
KEY_1 = "sk-audit-0123456789-first"
KEY_2 = "sk-audit-0123456789-second"
DEV_SECRET = b"distill-guard-dev-secret"  # the gateway's default identity secret


def chat(n: int) -> dict[str, object]:
    return {"model": "demo-model", "messages": [{"role": "user", "content": f"Question {n}?"}]}


def test_audit_log_round_trip(make_gateway: GatewayFactory, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    audit = tmp_path / "audit.jsonl"
    statuses: list[int] = []
    with make_gateway(policy_text=POLICY, audit_log=audit) as url, \
            httpx.Client(base_url=url, trust_env=False) as client:
        for n in range(5):
            statuses.append(client.post("/v1/chat/completions", json=chat(n), headers={
                "authorization": f"Bearer {KEY_1}", "user-agent": "audit-test/1"}).status_code)
        for n, stream in ((5, True), (6, False)):
            body = {"model": "demo-model", "max_tokens": 50, "stream": stream,
                    "messages": [{"role": "user", "content": f"Question {n}?"}]}
            statuses.append(client.post("/v1/messages", json=body, headers={
                "x-api-key": KEY_2, "anthropic-version": "2023-06-01"}).status_code)
        statuses.append(client.get("/v1/models").status_code)
        # refused before the policy chain (malformed JSON): not in the audit log
        assert client.post("/v1/chat/completions", content=b"{", headers={
            "content-type": "application/json"}).status_code == 400
    assert statuses == [200, 200, 200, 429, 429, 200, 200, 200]

    raw = audit.read_bytes()  # the gateway has shut down: every line is written
    assert KEY_1.encode() not in raw and KEY_2.encode() not in raw
    assert b"authorization" not in raw.lower() and b"x-api-key" not in raw.lower()
    records = [json.loads(line) for line in raw.splitlines()]
    assert len(records) == 8
    hasher = IdentityHasher(DEV_SECRET)
    assert [r["identity"] for r in records[:7]] == [hasher.hash_key(KEY_1)] * 5 + [
        hasher.hash_key(KEY_2)] * 2
    assert records[7]["identity"].startswith("anon-") and not records[7]["authenticated"]
    assert [r["status"] for r in records] == statuses
    assert [r["decision"] for r in records][:5] == ["allow"] * 3 + ["reject:per-key"] * 2
    assert records[0]["headers"] == {"user-agent": "audit-test/1"}
    assert records[5]["body"]["stream"] is True and records[5]["path"] == "/v1/messages"
    assert [r["ts"] for r in records] == sorted(r["ts"] for r in records)

    policy_file = tmp_path / "policy.yaml"
    monkeypatch.delenv("DISTILL_GUARD_IDENTITY_SECRET", raising=False)
    assert main(["replay", "--policy", str(policy_file), str(audit), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["requests"] == 8 and report["identities"] == 3
    assert report["recorded"] == {"compared": 8, "same": 8, "different": 0, "examples": []}
    assert report["outcome"]["refused"] == {"429": 2} and report["outcome"]["allowed"] == 6
    rules = {rule["name"]: rule for rule in report["rules"]}
    assert rules["per-key"]["matched"] == 7 and rules["per-key"]["refused"] == {"429": 2}
    assert rules["per-key"]["most_delayed_or_refused"] == [
        {"identity": hasher.hash_key(KEY_1), "requests": 2}]
    assert rules["watch"]["shadow"] and rules["watch"]["matched"] == 8  # no match: all
