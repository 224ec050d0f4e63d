"""`explain_match`: which condition of a rule's `match` a request fails, and nothing else."""

from __future__ import annotations

import pytest

from gateway.errors import Dialect
from gateway.identity import Identity
from gateway.pipeline.context import RequestContext
from gateway.pipeline.match import Match, compile_match, conditions, explain_match


def ctx(path: str = "/v1/chat/completions", *, tier: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None, suspicion: float = 0.0,
        authenticated: bool = True) -> RequestContext:
    context = RequestContext(
        request_id="r", method="POST", path=path, query=b"", headers=headers or [],
        client_ip="127.0.0.1", dialect=Dialect.OPENAI,
        identity=Identity("abc", authenticated, tier, None),
        body=b'{"model": "gpt-4o", "messages": []}', started=0.0,
        is_model_route=path == "/v1/chat/completions",
    )
    context.suspicion = suspicion
    return context


def test_a_matching_request_has_no_reasons() -> None:
    match = Match(paths=["/v1/chat/*"], methods=["post"], models=["gpt-4*"],
                  headers={"X-Team": ["a*"]}, authenticated=True, suspicion=">= 0.5")
    request = ctx(headers=[(b"x-team", b"alpha")], suspicion=0.7)
    assert explain_match(match, request) == []
    assert compile_match(match)(request)


def test_each_failing_condition_is_named_with_what_the_request_had() -> None:
    match = Match(paths=["/v1/messages"], tiers=["pro"], headers={"X-Team": ["a*"]},
                  suspicion="> 0.6", authenticated=False)
    reasons = explain_match(match, ctx(tier="free", suspicion=0.25))
    assert reasons == [
        "paths: wants one of ['/v1/messages'], the request has '/v1/chat/completions'",
        "tiers: wants one of ['pro'], the request has 'free'",
        "headers.x-team: wants one of ['a*'], the request has None",
        "authenticated: wants false, the request has True",
        "suspicion: wants > 0.6, the request has 0.25",
    ]
    assert not compile_match(match)(ctx(tier="free", suspicion=0.25))


def test_only_the_failing_ones_are_listed() -> None:
    match = Match(paths=["/v1/*"], models=["claude-*"])
    assert explain_match(match, ctx()) == [
        "models: wants one of ['claude-*'], the request has 'gpt-4o'"]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings", "/other"])
@pytest.mark.parametrize("suspicion", [0.0, 0.6, 0.9])
def test_compile_match_agrees_with_the_conditions(path: str, suspicion: float) -> None:
    match = Match(paths=["/v1/*"], suspicion=">= 0.6", headers={"user-agent": ["sdk/*"]})
    request = ctx(path, suspicion=suspicion, headers=[(b"user-agent", b"sdk/1")])
    holds = all(condition.holds(request) for condition in conditions(match))
    assert compile_match(match)(request) is holds
    assert (explain_match(match, request) == []) is holds


def test_empty_match_holds_for_everything() -> None:
    assert compile_match(Match())(ctx("/x")) and explain_match(Match(), ctx("/x")) == []
