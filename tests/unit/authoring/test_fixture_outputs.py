"""`replay` and `policy explain` on fixture files, compared with their expected outputs exactly.

The outputs are deterministic: the clock is the traffic's own timestamps, counters
are in memory, JSON keys are sorted. After an intended change of behaviour,
regenerate them with `DISTILL_GUARD_UPDATE_GOLDEN=1 pytest tests/unit/authoring`
and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gateway.cli import main

ROOT = Path(__file__).parents[3]
REPLAY = "tests/fixtures/replay"
EXPLAIN = "tests/fixtures/explain"
POLICY = f"{REPLAY}/policy.yaml"
TRAFFIC = f"{REPLAY}/traffic.jsonl"
UPDATE = os.environ.get("DISTILL_GUARD_UPDATE_GOLDEN") == "1"


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # file names in the outputs are relative to the repository
    monkeypatch.delenv("DISTILL_GUARD_IDENTITY_SECRET", raising=False)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def check(expected: str, actual: str) -> None:
    path = ROOT / expected
    if UPDATE:
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8")


REPLAY_CASES = {
    "expected.json": ["--json"],
    "expected.txt": [],
    "expected-enforce-shadow.json": ["--json", "--enforce-shadow"],
}


@pytest.mark.parametrize("expected", REPLAY_CASES)
def test_replay(expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = run(["replay", "--policy", POLICY, TRAFFIC, *REPLAY_CASES[expected]], capsys)
    check(f"{REPLAY}/{expected}", out)


EXPLAIN_CASES = {
    # bob's ninth request inside a minute: refused by the per-key limit
    "bob_messages": ["--identity", "sk-bob", "--history", TRAFFIC],
    # the harvester after its traffic: shadow prompt_diversity would flag and throttle
    "harvester_chat": ["--identity-id", "c0ffee0000000001", "--history", TRAFFIC,
                       "--at", "1767262280"],
    # no history: the access rule refuses; rules that do not match say why
    "fine_tuning": [],
}


@pytest.mark.parametrize("case", EXPLAIN_CASES)
@pytest.mark.parametrize("form", ["json", "txt"])
def test_explain(case: str, form: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["policy", "explain", "--policy", POLICY, "--request", f"{EXPLAIN}/{case}.json",
            *EXPLAIN_CASES[case], *(["--json"] if form == "json" else [])]
    check(f"{EXPLAIN}/{case}.expected.{form}", run(argv, capsys))


def test_expected_outputs_agree_with_each_other() -> None:
    """The replay's counts and the explanations tell the same story about the fixture."""
    report = json.loads((ROOT / REPLAY / "expected.json").read_text())
    rules = {rule["name"]: rule for rule in report["rules"]}
    assert report["requests"] == sum(
        1 for line in (ROOT / TRAFFIC).read_text().splitlines() if line.strip())
    assert rules["per-key"]["refused"] == {"429": 2} and rules["per-key"]["delayed"] == 1
    assert rules["free-tier-cap"]["shadow"] and rules["free-tier-cap"]["refused"] == {"429": 1}
    flagged = rules["diversity-watch"]["flagged"]
    assert [f["identity"] for f in flagged] == ["c0ffee0000000001"]
    bob = json.loads((ROOT / EXPLAIN / "bob_messages.expected.json").read_text())
    assert bob["result"]["status"] == 429 and bob["result"]["decision"] == "reject:per-key"
    harvester = json.loads((ROOT / EXPLAIN / "harvester_chat.expected.json").read_text())
    watch = next(r for r in harvester["rules"] if r["name"] == "diversity-watch")
    assert watch["steps_reached"] == ["flag", "throttle"]
    assert watch["suspicion"] == flagged[0]["peak_suspicion"]
    assert harvester["sent_upstream"] is False
