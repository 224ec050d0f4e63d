"""A short simulation through the real chain: detection exists and leans the right way."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import pytest

from gateway.identity import Identity
from gateway.pipeline.loader import parse_policy
from gateway.signals.suspicion import Standing, Standings
from gateway.simulate import cli
from gateway.simulate.personas import Label, Span, generate
from gateway.simulate.report import PersonaRow, Summary, markdown, summarize
from gateway.simulate.runner import (
    SimulationResult,
    build_context,
    check_loopback,
    simulate,
)

SHORT = Span(hours=3, scale=0.25)  # ~4,700 requests, a few seconds


@pytest.fixture(scope="module")
def short_run() -> SimulationResult:
    return asyncio.run(simulate(generate(1, SHORT), cli.load(None)))


@pytest.fixture(scope="module")
def summary(short_run: SimulationResult) -> Summary:
    return summarize(short_run)


def _row(summary: Summary, persona: str) -> PersonaRow:
    return next(r for r in summary.rows if r.persona == persona)


def test_detection_is_not_absent(summary: Summary) -> None:
    flagged = [i for i in summary.identities if i.flagged]
    assert flagged, "no identity was ever flagged: prompt_diversity detects nothing"
    assert summary.tpr > 0, "no campaign identity was flagged"


def test_campaigns_flagged_more_than_benign(summary: Summary) -> None:
    assert summary.tpr >= 0.6
    assert summary.fpr <= 0.2
    assert summary.tpr > 3 * summary.fpr


def test_chain_of_thought_harvesting_is_throttled(summary: Summary) -> None:
    for name in ("cot-harvest", "rubric-harvest"):
        row = _row(summary, name)
        assert row.flagged == row.identities, name
        assert row.first_flagged_median is not None and row.first_flagged_median <= 40
        # after the first 30 requests (min_requests), answers come throttled and
        # perturbed, or are refused
        assert row.harvested <= 32 * row.identities, name
        assert row.throttled > 0.3 and row.perturbed > 0.3


def test_hydra_caught_as_a_group(summary: Summary) -> None:
    assert summary.hydra_flagged >= 0.9
    assert "coordination" in _row(summary, "hydra").why


def test_quiet_benign_personas_untouched(summary: Summary) -> None:
    for name in ("small-keys", "coding-agent", "support-bot"):
        row = _row(summary, name)
        assert row.flagged == 0, name
        assert row.harvest_share == 1.0
    assert summary.benign_clean >= 0.95


def test_busy_benign_apps_not_flagged(summary: Summary) -> None:
    # Before topic masking, the fills gate and the new defaults, the chat apps,
    # the RAG app and the eval job were flagged on "broad" (docs/detection.md).
    for name in ("chat-assistant", "rag-app", "nightly-eval", "sdk-quickstart"):
        assert _row(summary, name).flagged == 0, name
    assert summary.fpr == 0.0


def test_report_table(summary: Summary, short_run: SimulationResult) -> None:
    text = markdown(summary)
    for row in summary.rows:
        assert f"| {row.persona} | {row.label.value} |" in text
    assert "(TPR)" in text and "(FPR)" in text and "hydra keys flagged" in text
    data = summary.to_json()
    assert data["requests"] == len(short_run.outcomes)
    assert {p["persona"] for p in data["personas"]} == {r.persona for r in summary.rows}
    json.dumps(data)  # serialisable


SHADOW = """
version: 1
rules:
  - name: diversity-shadow
    kind: prompt_diversity
    shadow: {shadow}
    config:
      steps:
        - {{at: 0.3, action: flag}}
        - {{at: 0.4, action: throttle, factor: 0.25}}
        - {{at: 0.5, action: reject}}
"""


async def test_shadow_rule_records_but_never_steers() -> None:
    requests = generate(2, Span(hours=1.5, scale=0.3), ["cot-harvest", "small-keys"])
    standings = Standings()
    shadow = await simulate(requests, parse_policy(SHADOW.format(shadow="true")),
                            standings=standings)
    assert not any(o.refused or o.throttled or o.perturbed for o in shadow.outcomes)
    assert not any(o.flagged for o in shadow.outcomes)
    assert standings.items() == []  # nothing other rules would read
    recorded = dict(standings.items(shadow=True))
    cot = {o.identity for o in shadow.outcomes if o.persona == "cot-harvest"}
    assert cot and all(recorded[i].flagged for i in cot)  # investigators still see it
    assert summarize(shadow).shadow_tpr == 1.0
    enforced = await simulate(requests, parse_policy(SHADOW.format(shadow="false")))
    assert any(o.refused for o in enforced.outcomes if o.persona == "cot-harvest")


def test_context_carries_the_standing() -> None:
    request = generate(1, Span(hours=1), ["rubric-harvest"])[0]
    identity = Identity("abc", True)
    standings = Standings()
    ctx = build_context(request, identity, standings, now=1000.0)
    assert (ctx.suspicion, ctx.throttle, ctx.perturb_level) == (0.0, 1.0, 0)
    assert ctx.path == "/v1/messages" and ctx.dialect.value == "anthropic"
    assert ctx.header(b"x-api-key") == request.key.encode()
    standings.put("abc", Standing(suspicion=0.8, at=1000.0, half_life=100.0, throttle=0.5,
                                  perturb_level=1))
    ctx = build_context(request, identity, standings, now=1100.0)
    assert ctx.suspicion == pytest.approx(0.4)
    assert (ctx.throttle, ctx.perturb_level) == (0.5, 1)
    assert ctx.json == request.body


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost:1/",
                                 "https://[::1]:8443", "http://127.1.2.3"])
def test_loopback_accepted(url: str) -> None:
    assert not check_loopback(url).endswith("/")


@pytest.mark.parametrize("url", ["http://10.0.0.1:8080", "http://example.com",
                                 "ftp://127.0.0.1", "127.0.0.1:8080", "http://0.0.0.0"])
def test_non_loopback_refused(url: str) -> None:
    with pytest.raises(ValueError):
        check_loopback(url)


def test_cli_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="distill-guard")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.add_parser(sub)
    out = tmp_path / "sim.json"
    args = parser.parse_args(["simulate", "--seed", "3", "--hours", "1", "--scale", "0.2",
                              "--personas", "template-harvest,support-bot",
                              "--json", str(out)])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "| template-harvest | campaign |" in printed and "| support-bot |" in printed
    data = json.loads(out.read_text())
    assert data["seed"] == 3 and data["policy"] == "built-in"
    assert {i["label"] for i in data["identities"]} == {Label.CAMPAIGN, Label.BENIGN}


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--personas", "nope"]) == 2
    assert cli.main(["--gateway", "http://192.0.2.1:8080"]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - name: x\n    kind: prompt_diversity\n"
                   "    config: {window: -1}\n")
    assert cli.main(["--policy", str(bad), "--hours", "0.5", "--personas", "hydra"]) == 2
    assert "bad.yaml:5" in capsys.readouterr().err


def test_default_policy_parses() -> None:
    policy = cli.load(None)
    kinds = [rule.kind for rule in policy.rules]  # type: ignore[attr-defined]
    assert kinds == ["prompt_diversity", "rate_shaping", "rate_shaping"]
