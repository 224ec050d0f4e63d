"""`replay` and `policy explain` command lines: inputs, identities, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.authoring.cli import is_envelope
from gateway.cli import main
from gateway.identity import IdentityHasher

ROOT = Path(__file__).parents[3]
POLICY = str(ROOT / "tests/fixtures/replay/policy.yaml")


def explain(tmp_path: Path, request: object, *args: str,
            capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    assert main(["policy", "explain", "--policy", POLICY, "--request", str(path), "--at", "100",
                 "--json", *args]) == 0
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    return result


@pytest.mark.parametrize(("data", "envelope"), [
    ({"model": "m", "messages": []}, False),
    ({"model": "m"}, False),
    ({"body": {"model": "m"}}, True),
    ({"method": "GET", "path": "/v1/models"}, True),
    ({"ts": 1, "identity": "abc", "path": "/v1/messages", "body": {}, "status": 200}, True),
    ([1], False),
])
def test_envelope_or_bare_body(data: object, envelope: bool) -> None:
    assert is_envelope(data) is envelope


def test_a_bare_body_on_the_anthropic_route_with_a_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILL_GUARD_IDENTITY_SECRET", "another-secret")
    body = {"model": "demo-model", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}]}
    data = explain(tmp_path, body, "--path", "/v1/messages", "--identity", "sk-x",
                   capsys=capsys)
    request = data["request"]
    assert isinstance(request, dict)
    assert request["dialect"] == "anthropic" and request["path"] == "/v1/messages"
    assert request["identity"] == IdentityHasher(b"another-secret").hash_key("sk-x")
    assert data["ts"] == 100 and data["history_requests"] == 0
    assert data["result"] == {"decision": "allow", "delay": 0.0, "status": 200}


def test_an_anonymous_request_and_a_body_that_is_not_an_object(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = explain(tmp_path, [1, 2], capsys=capsys)
    request, result = data["request"], data["result"]
    assert isinstance(request, dict) and isinstance(result, dict)
    assert request["identity"].startswith("anon-") and not request["authenticated"]
    assert (result["decision"], result["status"]) == ("error", 400)


def test_missing_files_and_bad_policies_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--policy", POLICY, str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - name: x\n    kind: nope\n")
    assert main(["replay", "--policy", str(bad), str(tmp_path / "t.jsonl")]) == 2
    assert f"{bad}:4" in capsys.readouterr().err
    assert main(["policy", "explain", "--policy", POLICY, "--request",
                 str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err


def test_skipped_lines_are_reported_on_stderr(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    traffic = tmp_path / "t.jsonl"
    traffic.write_text('{"ts": 1, "identity": "abc"}\nnot json\n{"ts": 2, "api_key": 7}\n')
    assert main(["replay", "--policy", POLICY, str(traffic), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["lines_skipped"] == 2 and json.loads(out)["requests"] == 1
    assert f"skipped {traffic}:2: " in err and f"skipped {traffic}:3: `api_key`" in err
