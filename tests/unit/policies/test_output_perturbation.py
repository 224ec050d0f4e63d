"""`output_perturbation`: config, request guards, and response rewrites.

Requests go through the real chain; responses come from the demo upstream (in
process) and are passed through the same stages the proxy runs: the body
hooks, or the SSE decoder plus the stream hooks. Every rewritten response is
then parsed with the official SDKs' own models (strict `model_validate`) and
streams are accumulated with the SDKs' own stream accumulators.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic.types as at
import httpx
import openai.types as ot
import openai.types.chat as oc
import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.completion_choice import Logprobs as LegacyLogprobs
from prometheus_client import REGISTRY
from pydantic import TypeAdapter

from gateway.demo_upstream import create_demo_app
from gateway.errors import Dialect, GatewayError, dialect_for_path, error_body
from gateway.identity import Identity
from gateway.pipeline.chain import Chain, RequestOutcome
from gateway.pipeline.context import RequestContext
from gateway.pipeline.loader import PolicyError, load_policy, parse_policy
from gateway.policies.output_perturbation import handler as handler_module
from gateway.policies.output_perturbation.logprobs import (
    LogprobPerturber,
    TokenChain,
    derive_key,
    gaussian,
    rank_noise,
)
from gateway.policies.output_perturbation.schema import Config, LogprobsConfig
from gateway.policies.shared import Shared
from gateway.storage.memory import MemoryBackend
from gateway.streaming.sse import SSEDecoder, SSEEvent
from gateway.watermark import Watermarker

FIXTURES = Path(__file__).parents[2] / "fixtures" / "policies"
CHAT = "/v1/chat/completions"
LEGACY = "/v1/completions"
MESSAGES = "/v1/messages"
SECRET = b"unit-test-watermark-secret"
ASK = [{"role": "user", "content": "Explain how rivers shape valleys."}]
THINKING = {"type": "enabled", "budget_tokens": 1024}
STREAM_EVENT = TypeAdapter(at.RawMessageStreamEvent)


# -- a stand-in for gateway.watermark (its own tests live with it) ---------------------

class FakeStream:
    """Marks whole words; holds back a trailing partial word, like the real one."""

    def __init__(self, mark: Callable[[str], str]) -> None:
        self._mark = mark
        self._held = ""

    def feed(self, delta: str) -> str:
        text = self._held + delta
        cut = max(text.rfind(" "), text.rfind("\n")) + 1
        self._held = text[cut:]
        return self._mark(text[:cut])

    def flush(self) -> str:
        rest, self._held = self._held, ""
        return self._mark(rest)


class FakeWatermarker:
    """Upper-cases `the`/`and` (and tags the identity on `of`): easy to see and count."""

    def __init__(self, secret: bytes, identity: str) -> None:
        assert secret, "the handler must never mark without a secret"
        self.identity = identity

    def mark(self, text: str) -> str:
        def word(m: re.Match[str]) -> str:
            w = m.group(0)
            return w.upper() if w in ("the", "and") else w

        return re.sub(r"[A-Za-z]+", word, text)

    def stream(self) -> FakeStream:
        return FakeStream(self.mark)


@pytest.fixture
def fake_watermark(monkeypatch: pytest.MonkeyPatch) -> type[FakeWatermarker]:
    monkeypatch.setattr(handler_module, "watermarker", lambda: FakeWatermarker)
    return FakeWatermarker


# -- harness ------------------------------------------------------------------------------

def policy(config: str = "{}", *, shadow: bool = False, name: str = "perturb") -> str:
    return (f"version: 1\nrules:\n  - name: {name}\n    kind: output_perturbation\n"
            f"    shadow: {str(shadow).lower()}\n    config: {config}\n")


def chain(config: str = "{}", *, shadow: bool = False, name: str = "perturb",
          secret: bytes | None = SECRET) -> Chain:
    shared = Shared(watermark_secret=secret) if secret is not None else None
    return Chain.from_policy(parse_policy(policy(config, shadow=shadow, name=name)), shared)


def context(path: str, body: dict[str, Any], identity: str = "id-alice",
            level: int = 0) -> RequestContext:
    ctx = RequestContext(
        request_id="r", method="POST", path=path, query=b"",
        headers=[(b"content-type", b"application/json")], client_ip="127.0.0.1",
        dialect=dialect_for_path(path), identity=Identity(identity, True),
        body=orjson.dumps(body), started=0.0, is_model_route=True,
    )
    ctx.perturb_level = level
    return ctx


DEMO = create_demo_app()


async def upstream(path: str, body: bytes) -> tuple[int, bytes, bool]:
    transport = httpx.ASGITransport(app=DEMO)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        resp = await client.post(path, content=body,
                                 headers={"content-type": "application/json"})
    sse = resp.headers.get("content-type", "").startswith("text/event-stream")
    return resp.status_code, resp.content, sse


@dataclass
class Exchange:
    ctx: RequestContext
    sent: dict[str, Any]  # the body the upstream got
    raw: bytes  # what the upstream answered
    out: bytes  # what the client gets

    @property
    def body(self) -> Any:
        return orjson.loads(self.out)

    @property
    def events(self) -> list[SSEEvent]:
        decoder = SSEDecoder()
        return decoder.feed(self.out) + decoder.flush()

    def chunks(self) -> list[dict[str, Any]]:
        return [orjson.loads(e.data) for e in self.events if e.data and not e.is_done]


def relay(outcome: RequestOutcome, ctx: RequestContext, raw: bytes, sse: bool,
          cuts: list[int] | None = None) -> bytes:
    """What the proxy sends the client for an upstream answer `raw` (cut at `cuts`)."""
    if not sse:
        return Chain.response_body(outcome.body_rules(ctx), ctx, raw)
    rules = outcome.stream_rules(ctx)
    decoder = SSEDecoder()
    out: list[bytes] = []
    edges = [0, *sorted(set(cuts or [])), len(raw)]
    for start, end in itertools.pairwise(edges):
        for ev in decoder.feed(raw[start:end]):
            out.extend(e.raw for e in Chain.stream_event(rules, ctx, ev))
    for ev in decoder.flush():
        out.extend(e.raw for e in Chain.stream_event(rules, ctx, ev))
    return b"".join(out)


async def exchange(rules: Chain, path: str, body: dict[str, Any], *, identity: str = "id-alice",
                   level: int = 0, cuts: list[int] | None = None) -> Exchange:
    ctx = context(path, body, identity, level)
    outcome = await rules.run_request(ctx, MemoryBackend())
    sent = orjson.loads(ctx.outgoing_body())
    status, raw, sse = await upstream(path, ctx.outgoing_body())
    ctx.status = status
    return Exchange(ctx, sent, raw, relay(outcome, ctx, raw, sse, cuts))


async def refused(rules: Chain, path: str, body: dict[str, Any]) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await rules.run_request(context(path, body), MemoryBackend())
    return caught.value


def counted(rule: str, kind: str, shadow: bool = False) -> float:
    value = REGISTRY.get_sample_value(
        "distill_guard_perturbations_total",
        {"rule": rule, "kind": kind, "shadow": str(shadow).lower()})
    return value or 0.0


# -- SDK parsing --------------------------------------------------------------------------

def sdk_chat(obj: dict[str, Any]) -> oc.ChatCompletion:
    return oc.ChatCompletion.model_validate(obj)


def accumulate_chat(ex: Exchange) -> Any:
    """Validate every chunk and accumulate them as the SDK's `.stream()` helper does."""
    assert ex.events[-1].is_done, "an OpenAI stream ends with [DONE]"
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in ex.chunks():
        list(state.handle_chunk(oc.ChatCompletionChunk.model_validate(chunk)))
    return state.current_completion_snapshot


def sdk_chat_stream(ex: Exchange) -> oc.ChatCompletion:
    """The accumulated stream, validated as a whole completion."""
    return oc.ChatCompletion.model_validate(accumulate_chat(ex).to_dict())


def sdk_message(obj: dict[str, Any]) -> at.Message:
    return at.Message.model_validate(obj)


def sdk_message_stream(ex: Exchange) -> Any:
    """Validate every event, check block order and contiguous indexes, accumulate."""
    snapshot: Any = None
    json_bufs: dict[int, bytes] = {}
    open_index: int | None = None
    next_index = 0
    for ev in ex.events:
        obj = orjson.loads(ev.data)
        assert obj["type"] == ev.event
        if ev.event == "ping":
            continue
        parsed = STREAM_EVENT.validate_python(obj)
        if ev.event == "content_block_start":
            assert open_index is None and obj["index"] == next_index
            open_index, next_index = obj["index"], next_index + 1
        elif ev.event == "content_block_delta":
            assert obj["index"] == open_index
        elif ev.event == "content_block_stop":
            assert obj["index"] == open_index
            open_index = None
        snapshot = accumulate_event(event=parsed, current_snapshot=snapshot,
                                    json_bufs=json_bufs)
    assert open_index is None
    return snapshot


def chat_reasoning(obj: Any) -> str | None:
    extra = obj.model_extra or {}
    value = extra.get("reasoning_content")
    return value if isinstance(value, str) else None


# == config ================================================================================

def problems(name: str) -> list[str]:
    path = FIXTURES / "invalid" / name
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    return [str(p).removeprefix(f"{path}:") for p in caught.value.problems]


def test_defaults_cap_logprobs_and_change_nothing_else() -> None:
    config = Config()
    assert config.logprobs == LogprobsConfig(mode="cap", max_top_logprobs=5, decimals=2,
                                             noise=0.0)
    assert config.reasoning.mode == "pass" and not config.watermark.enabled
    assert config.max_n is None and config.temperature is None
    assert all(config.at_level(level) == config.at_level(0) for level in range(4))


@pytest.mark.parametrize(("fixture", "expected"), [
    ("perturbation_bad_mode.yaml",
     ["7: rules[0].config.reasoning.mode: Input should be 'pass', 'drop', 'truncate' or "
      "'replace'"]),
    ("perturbation_unknown_key.yaml",
     ["7: rules[0].config.logprobs.nois: Extra inputs are not permitted"]),
    ("perturbation_bad_numbers.yaml",
     ["7: rules[0].config.logprobs.max_top_logprobs: Input should be less than or equal to 20",
      "8: rules[0].config.logprobs.noise: Input should be greater than or equal to 0",
      "9: rules[0].config.max_n: Input should be greater than or equal to 1"]),
    ("perturbation_temperature_range.yaml",
     ["6: rules[0].config.temperature: Value error, need 0 <= low <= high <= 2, got [1.5, 0.5]"]),
    ("perturbation_escalate_order.yaml",
     ["6: rules[0].config.escalate: Value error, levels must be strictly increasing, "
      "got [2, 1]"]),
    ("perturbation_escalate_empty.yaml",
     ["7: rules[0].config.escalate[0]: Value error, escalation to level 1 changes nothing: "
      "set one of logprobs, max_n, temperature, reasoning, watermark"]),
    ("perturbation_escalate_level.yaml",
     ["7: rules[0].config.escalate[0].level: Input should be less than or equal to 3"]),
])
def test_invalid_configs_name_line_and_field(fixture: str, expected: list[str]) -> None:
    assert problems(fixture) == expected


def test_escalation_merges_field_by_field_and_accumulates() -> None:
    config = Config.model_validate({
        "logprobs": {"mode": "cap", "max_top_logprobs": 3, "noise": 0.05},
        "reasoning": {"mode": "truncate", "max_chars": 300},
        "escalate": [
            {"level": 1, "reasoning": {"max_chars": 100}, "logprobs": {"noise": 0.2}},
            {"level": 3, "reasoning": {"mode": "drop"}, "max_n": 1},
        ],
    })
    zero, one, two, three = (config.at_level(n) for n in range(4))
    assert (zero.reasoning.mode, zero.reasoning.max_chars, zero.logprobs.noise) == (
        "truncate", 300, 0.05)
    assert (one.reasoning.mode, one.reasoning.max_chars, one.logprobs.noise) == (
        "truncate", 100, 0.2)
    assert one.logprobs.max_top_logprobs == 3  # not reset to the default
    assert two == one
    assert three.reasoning.mode == "drop" and three.max_n == 1 and three.logprobs.noise == 0.2
    assert config.at_level(9) == three


def test_every_field_is_documented_in_the_json_schema() -> None:
    from gateway.pipeline.policy_file import json_schema

    defs = json_schema()["$defs"]
    mine = ["LogprobsConfig", "ReasoningConfig", "WatermarkConfig", "Escalation"]
    config = next(d for d in defs.values() if "escalate" in d.get("properties", {}))
    for schema in [config, *(defs[name] for name in mine)]:
        for field, spec in schema["properties"].items():
            assert spec.get("description"), field


def test_example_policy_fixture_loads() -> None:
    loaded = load_policy(FIXTURES / "output_perturbation" / "graduated.yaml")
    assert [rule.kind for rule in loaded.rules] == ["output_perturbation", "output_perturbation"]


# == request guards ========================================================================

async def test_logit_bias_with_logprobs_is_refused_in_every_mode() -> None:
    for mode in ("pass", "cap"):
        rules = chain(f"{{logprobs: {{mode: {mode}}}}}")
        error = await refused(rules, CHAT, {"model": "demo-model", "messages": ASK,
                                            "logprobs": True, "logit_bias": {"50256": -100}})
        assert error.status == 400 and error.param == "logit_bias"
        assert error.code == "logit_bias_with_logprobs"
        assert "'logit_bias' cannot be combined with 'logprobs'" in error.message
    legacy = await refused(chain(), LEGACY, {"model": "demo-model", "prompt": "x",
                                             "logprobs": 0, "logit_bias": {"1": 5}})
    assert legacy.status == 400 and legacy.param == "logit_bias"
    body = orjson.loads(error_body(Dialect.OPENAI, 400, legacy.message, code=legacy.code,
                                   param=legacy.param))
    assert body["error"]["type"] == "invalid_request_error"


async def test_logit_bias_alone_and_logprobs_alone_pass() -> None:
    rules = chain()
    for body in ({"logit_bias": {"1": 5}}, {"logprobs": True}, {"logit_bias": {},
                                                                 "logprobs": True}):
        ctx = context(CHAT, {"model": "demo-model", "messages": ASK, **body})
        await rules.run_request(ctx, MemoryBackend())


async def test_refuse_mode_refuses_any_logprobs_with_400() -> None:
    rules = chain("{logprobs: {mode: refuse}}", name="no-logprobs")
    before = counted("no-logprobs", "logprobs_refused")
    chat = await refused(rules, CHAT, {"model": "demo-model", "messages": ASK,
                                       "logprobs": True, "top_logprobs": 2})
    assert (chat.status, chat.param, chat.code) == (400, "logprobs", "logprobs_not_allowed")
    assert "remove 'logprobs' and 'top_logprobs'" in chat.message
    legacy = await refused(rules, LEGACY, {"model": "demo-model", "prompt": "x", "logprobs": 0})
    assert legacy.status == 400 and "remove 'logprobs'" in legacy.message
    assert counted("no-logprobs", "logprobs_refused") == before + 2
    # no logprobs asked (or explicitly off): allowed
    await rules.run_request(context(CHAT, {"model": "demo-model", "messages": ASK,
                                           "logprobs": False}), MemoryBackend())
    await rules.run_request(context(LEGACY, {"model": "demo-model", "prompt": "x",
                                             "logprobs": None}), MemoryBackend())


async def test_cap_lowers_top_logprobs_silently() -> None:
    rules = chain("{logprobs: {mode: cap, max_top_logprobs: 2}}")
    ex = await exchange(rules, CHAT, {"model": "demo-model", "messages": ASK,
                                      "logprobs": True, "top_logprobs": 7})
    assert ex.sent["top_logprobs"] == 2
    reply = sdk_chat(ex.body)
    assert reply.choices[0].logprobs is not None
    assert all(len(t.top_logprobs) == 2 for t in reply.choices[0].logprobs.content or [])
    legacy = await exchange(rules, LEGACY, {"model": "demo-model", "prompt": "Rivers",
                                            "logprobs": 5, "max_tokens": 5})
    assert legacy.sent["logprobs"] == 2
    tops = legacy.body["choices"][0]["logprobs"]["top_logprobs"]
    assert all(len(top) <= 2 for top in tops)


async def test_pass_mode_forwards_top_logprobs() -> None:
    rules = chain("{logprobs: {mode: pass, decimals: null}}")
    ex = await exchange(rules, CHAT, {"model": "demo-model", "messages": ASK, "max_tokens": 5,
                                      "logprobs": True, "top_logprobs": 7})
    assert ex.sent["top_logprobs"] == 7 and ex.out == ex.raw  # nothing to round or cap


async def test_n_is_capped_silently_in_both_openai_routes() -> None:
    rules = chain("{max_n: 2}")
    ex = await exchange(rules, CHAT, {"model": "demo-model", "messages": ASK, "n": 5,
                                      "max_tokens": 3})
    assert ex.sent["n"] == 2 and len(sdk_chat(ex.body).choices) == 2
    legacy = await exchange(rules, LEGACY, {"model": "demo-model", "prompt": "x", "n": 4,
                                            "max_tokens": 3})
    assert legacy.sent["n"] == 2
    small = await exchange(rules, CHAT, {"model": "demo-model", "messages": ASK, "n": 1,
                                         "max_tokens": 3})
    assert small.sent["n"] == 1 and small.out == small.raw


async def test_temperature_is_clamped_where_set() -> None:
    rules = chain("{temperature: [0.2, 1.0]}")
    high = await exchange(rules, CHAT, {"model": "demo-model", "messages": ASK,
                                        "temperature": 1.9, "max_tokens": 3})
    assert high.sent["temperature"] == 1.0
    low = await exchange(rules, MESSAGES, {"model": "demo-model", "messages": ASK,
                                           "temperature": 0, "max_tokens": 3})
    assert low.sent["temperature"] == 0.2
    unset = await exchange(rules, CHAT, {"model": "demo-model", "messages": ASK,
                                         "max_tokens": 3})
    assert "temperature" not in unset.sent
    # Anthropic thinking only accepts the default temperature: leave it alone
    thinking = await exchange(rules, MESSAGES, {"model": "demo-model", "messages": ASK,
                                                "temperature": 1.5, "thinking": THINKING})
    assert thinking.sent["temperature"] == 1.5


async def test_anthropic_requests_ignore_openai_only_guards() -> None:
    rules = chain("{logprobs: {mode: refuse}, max_n: 1}")
    ex = await exchange(rules, MESSAGES, {"model": "demo-model", "messages": ASK,
                                          "max_tokens": 5})
    assert ex.out == ex.raw


async def test_other_routes_are_untouched() -> None:
    rules = chain("{logprobs: {mode: refuse}, reasoning: {mode: drop}}")
    ctx = context("/v1/embeddings", {"model": "demo-embed", "input": "x", "logprobs": True})
    outcome = await rules.run_request(ctx, MemoryBackend())
    assert ctx.rule_state == {} and not ctx.json_dirty
    assert Chain.response_body(outcome.body_rules(ctx), ctx, b'{"data": []}') == b'{"data": []}'


# == logprobs ==============================================================================

def test_gaussian_is_keyed_deterministic_and_standard() -> None:
    key = derive_key(b"secret", "id-a")
    assert gaussian(key, b"p", "tok") == gaussian(key, b"p", "tok")
    assert gaussian(key, b"p", "tok") != gaussian(derive_key(b"secret", "id-b"), b"p", "tok")
    assert gaussian(key, b"p", "tok") != gaussian(derive_key(b"other", "id-a"), b"p", "tok")
    assert gaussian(key, b"p", "tok") != gaussian(key, b"q", "tok")
    draws = [gaussian(key, i.to_bytes(4, "little"), "x") for i in range(20000)]
    mean = sum(draws) / len(draws)
    std = math.sqrt(sum((d - mean) ** 2 for d in draws) / len(draws))
    assert abs(mean) < 0.03 and abs(std - 1) < 0.03


def test_position_noise_is_shared_by_a_token_and_its_top_entry() -> None:
    config = LogprobsConfig(mode="pass", decimals=None, noise=0.3)
    perturber = LogprobPerturber(config, derive_key(b"s", "id"), None)
    own, alts = perturber.position(
        TokenChain(), "cat", -0.5, [("dog", -1.0), ("cat", -0.5), ("eel", -3.0)])
    assert alts is not None
    assert dict((["dog", "cat", "eel"][i], v) for i, v in alts)["cat"] == own
    assert [v for _, v in alts] == sorted((v for _, v in alts), reverse=True)
    assert sum(math.exp(v) for _, v in alts) <= 1 + 1e-9
    assert all(v <= 0 for _, v in alts)


def test_samples_that_share_a_prefix_share_the_noise() -> None:
    """Whichever token a sample then picks, and however many alternatives it asked
    for, the alternatives of a position get the same noise: n samples, retries and
    different top_logprobs values cannot average it away."""
    config = LogprobsConfig(mode="pass", decimals=None, noise=0.3)
    key = derive_key(b"s", "id")
    alternatives: list[tuple[str, object]] = [("a", -0.5), ("b", -1.5), ("c", -2.5)]
    first = LogprobPerturber(config, key, None).position(TokenChain(), "a", -0.5, alternatives)
    second = LogprobPerturber(config, key, None).position(TokenChain(), "b", -1.5, alternatives)
    assert first[1] == second[1]
    assert rank_noise(key, b"p" * 16, 2) == rank_noise(key, b"p" * 16, 5)[:2]
    assert rank_noise(key, b"p" * 16, 40)[:32] == rank_noise(key, b"p" * 16, 32)
    assert rank_noise(key, b"p" * 16, 3) != rank_noise(key, b"q" * 16, 3)
    chain_a, chain_b = TokenChain(), TokenChain()
    chain_a.advance("x")
    chain_b.advance("y")
    assert chain_a.prefix != chain_b.prefix and chain_a.position == 1


async def test_without_a_secret_the_noise_key_is_per_process() -> None:
    body = {**LOGPROB_CHAT, "max_tokens": 10}
    one, other = chain(NOISY, secret=None), chain(NOISY, secret=None)
    first = chat_logprobs(sdk_chat((await exchange(one, CHAT, body)).body))
    again = chat_logprobs(sdk_chat((await exchange(one, CHAT, body)).body))
    elsewhere = chat_logprobs(sdk_chat((await exchange(other, CHAT, body)).body))
    assert first == again and first != elsewhere


def chat_logprobs(reply: oc.ChatCompletion, choice: int = 0) -> list[Any]:
    probs = reply.choices[choice].logprobs
    assert probs is not None and probs.content
    return probs.content


def check_positions(tokens: list[Any], k: int, decimals: int) -> None:
    for item in tokens:
        assert item.logprob <= 0 and round(item.logprob, decimals) == item.logprob
        values = [t.logprob for t in item.top_logprobs]
        assert len(values) <= k and values == sorted(values, reverse=True)
        assert all(v <= 0 and round(v, decimals) == v for v in values)
        for top in item.top_logprobs:
            if top.token == item.token:
                assert top.logprob == item.logprob and top.bytes == item.bytes


NOISY = "{logprobs: {mode: cap, max_top_logprobs: 3, decimals: 3, noise: 0.2}}"
LOGPROB_CHAT = {"model": "demo-model", "messages": ASK, "logprobs": True, "top_logprobs": 5,
                "max_tokens": 40}


async def test_chat_logprobs_noise_is_per_identity_and_repeatable() -> None:
    rules = chain(NOISY)
    first = await exchange(rules, CHAT, LOGPROB_CHAT)
    again = await exchange(rules, CHAT, LOGPROB_CHAT)
    other = await exchange(rules, CHAT, LOGPROB_CHAT, identity="id-bob")
    mine, theirs = chat_logprobs(sdk_chat(first.body)), chat_logprobs(sdk_chat(other.body))
    original = chat_logprobs(sdk_chat(orjson.loads(first.raw)))
    # same identity, same positions: the same noise
    assert chat_logprobs(sdk_chat(again.body)) == mine
    assert [t.token for t in mine] == [t.token for t in original]  # text untouched
    assert sum(a.logprob != b.logprob for a, b in zip(mine, theirs, strict=True)) > len(mine) / 2
    assert sum(a.logprob != round(b.logprob, 3) for a, b in zip(mine, original, strict=True)) > 5
    check_positions(mine, 3, 3)
    # usage is never rewritten
    assert first.body["usage"] == orjson.loads(first.raw)["usage"]


async def test_streamed_chat_logprobs_match_the_non_streamed_ones() -> None:
    """Positions are counted across chunks: stream and body get the same noise."""
    rules = chain(NOISY)
    whole = sdk_chat((await exchange(rules, CHAT, LOGPROB_CHAT)).body)
    streamed = await exchange(rules, CHAT, {**LOGPROB_CHAT, "stream": True})
    final = sdk_chat_stream(streamed)
    assert [(t.token, t.logprob, [(x.token, x.logprob) for x in t.top_logprobs])
            for t in chat_logprobs(final)] == [
        (t.token, t.logprob, [(x.token, x.logprob) for x in t.top_logprobs])
        for t in chat_logprobs(whole)]
    assert final.choices[0].message.content == whole.choices[0].message.content


async def test_legacy_logprobs_streamed_and_not() -> None:
    rules = chain(NOISY)
    body = {"model": "demo-model", "prompt": "Rivers and valleys", "logprobs": 5,
            "max_tokens": 30}
    whole = await exchange(rules, LEGACY, body)
    reply = ot.Completion.model_validate(whole.body)
    probs = reply.choices[0].logprobs
    assert probs is not None and probs.token_logprobs and probs.top_logprobs
    assert all(v is not None and v <= 0 and round(v, 3) == v for v in probs.token_logprobs)
    for top, token, own in zip(probs.top_logprobs, probs.tokens or [], probs.token_logprobs,
                               strict=True):
        assert len(top) <= 3 and list(top.values()) == sorted(top.values(), reverse=True)
        if token in top:
            assert top[token] == own
    assert probs.text_offset == orjson.loads(whole.raw)["choices"][0]["logprobs"]["text_offset"]
    streamed = await exchange(rules, LEGACY, {**body, "stream": True})
    values: list[float | None] = []
    for chunk in streamed.chunks():  # chunks lack a finish_reason: validate the logprobs
        for choice in chunk["choices"]:
            if choice["logprobs"] is not None:
                parsed = LegacyLogprobs.model_validate(choice["logprobs"])
                values.extend(parsed.token_logprobs or [])
    assert values == probs.token_logprobs


async def test_several_choices_count_positions_per_choice() -> None:
    rules = chain(NOISY)
    body = {**LOGPROB_CHAT, "n": 2}
    whole = sdk_chat((await exchange(rules, CHAT, body)).body)
    final = sdk_chat_stream(await exchange(rules, CHAT, {**body, "stream": True}))
    for index in (0, 1):
        assert [t.logprob for t in chat_logprobs(final, index)] == [
            t.logprob for t in chat_logprobs(whole, index)]


async def test_rounding_alone_is_plain_rounding() -> None:
    rules = chain("{logprobs: {mode: cap, max_top_logprobs: 5, decimals: 1}}")
    ex = await exchange(rules, CHAT, LOGPROB_CHAT)
    got = chat_logprobs(sdk_chat(ex.body))
    original = chat_logprobs(sdk_chat(orjson.loads(ex.raw)))
    assert [t.logprob for t in got] == [round(t.logprob, 1) + 0.0 for t in original]


# == reasoning: OpenAI =====================================================================

REASONER = {"model": "demo-reasoner", "messages": ASK, "max_tokens": 300}


async def reasoning_pair(config: str) -> tuple[Exchange, Exchange]:
    rules = chain(config)
    return (await exchange(rules, CHAT, REASONER),
            await exchange(rules, CHAT, {**REASONER, "stream": True}))


def original_reasoning(ex: Exchange) -> str:
    text = orjson.loads(ex.raw)["choices"][0]["message"]["reasoning_content"]
    assert isinstance(text, str) and len(text) > 60
    return text


async def test_openai_reasoning_drop() -> None:
    whole, streamed = await reasoning_pair("{reasoning: {mode: drop}}")
    assert "reasoning_content" not in whole.body["choices"][0]["message"]
    final = sdk_chat_stream(streamed)
    assert chat_reasoning(final.choices[0].message) is None
    assert not any(b"reasoning" in e.data for e in streamed.events)
    assert final.choices[0].message.content == sdk_chat(whole.body).choices[0].message.content
    # the emptied reasoning chunks are gone, the role chunk and the rest are not
    raw_chunks = [e for e in SSEDecoder().feed(streamed.raw) if b"reasoning_content" in e.data]
    assert len(streamed.events) == len(SSEDecoder().feed(streamed.raw)) - len(raw_chunks)
    assert streamed.chunks()[0]["choices"][0]["delta"]["role"] == "assistant"


async def test_openai_reasoning_truncate() -> None:
    whole, streamed = await reasoning_pair("{reasoning: {mode: truncate, max_chars: 40}}")
    full = original_reasoning(whole)
    assert whole.body["choices"][0]["message"]["reasoning_content"] == full[:40]
    pieces = [c["choices"][0]["delta"].get("reasoning_content") for c in streamed.chunks()]
    assert "".join(p for p in pieces if p) == full[:40]
    final = sdk_chat_stream(streamed)
    assert final.choices[0].message.content == sdk_chat(whole.body).choices[0].message.content


async def test_openai_reasoning_replace() -> None:
    whole, streamed = await reasoning_pair(
        "{reasoning: {mode: replace, notice: '[hidden]'}}")
    assert whole.body["choices"][0]["message"]["reasoning_content"] == "[hidden]"
    pieces = [c["choices"][0]["delta"].get("reasoning_content") for c in streamed.chunks()]
    assert [p for p in pieces if p is not None] == ["[hidden]"]
    sdk_chat(whole.body)
    sdk_chat_stream(streamed)


async def test_reasoning_field_spelled_reasoning_is_handled_too() -> None:
    rules = chain("{reasoning: {mode: truncate, max_chars: 5}}")
    ctx = context(CHAT, {"model": "m", "messages": ASK, "stream": True})
    outcome = await rules.run_request(ctx, MemoryBackend())
    ctx.status = 200
    raw = b"".join(
        b"data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1,
                                  "model": "m", "choices": [{"index": 0, "delta": delta,
                                                             "finish_reason": None}]}) + b"\n\n"
        for delta in ({"role": "assistant", "content": ""}, {"reasoning": "abc"},
                      {"reasoning": "defgh"}, {"content": "Hi"}))
    out = relay(outcome, ctx, raw + b"data: [DONE]\n\n", True)
    decoder = SSEDecoder()
    deltas = [orjson.loads(e.data)["choices"][0]["delta"] for e in decoder.feed(out)
              if not e.is_done]
    assert "".join(d.get("reasoning", "") for d in deltas) == "abcde"


# == reasoning: Anthropic ==================================================================

THINK = {"model": "demo-model", "messages": ASK, "max_tokens": 80, "thinking": THINKING}


async def thinking_pair(config: str, body: dict[str, Any] | None = None
                        ) -> tuple[Exchange, Exchange]:
    rules = chain(config)
    body = body or THINK
    return (await exchange(rules, MESSAGES, body),
            await exchange(rules, MESSAGES, {**body, "stream": True}))


def same_content(streamed: Any, whole: at.Message) -> None:
    def blocks(message: Any) -> list[dict[str, Any]]:
        out = [b.to_dict() for b in message.content]
        for block in out:
            block.pop("id", None)  # tool_use ids are new per request
        return out

    assert blocks(streamed) == blocks(whole)


async def test_anthropic_thinking_drop() -> None:
    whole, streamed = await thinking_pair("{reasoning: {mode: drop}}")
    message = sdk_message(whole.body)
    assert [b.type for b in message.content] == ["text"]
    final = sdk_message_stream(streamed)
    same_content(final, message)
    assert not any(b"thinking" in e.data for e in streamed.events)
    assert message.usage.output_tokens == orjson.loads(whole.raw)["usage"]["output_tokens"]


async def test_anthropic_thinking_drop_renumbers_later_blocks() -> None:
    tools = [{"name": "get_weather", "description": "Weather",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    body = {**THINK, "tools": tools,
            "messages": [{"role": "user", "content": "What is the weather in Oslo?"}]}
    whole, streamed = await thinking_pair("{reasoning: {mode: drop}}", body)
    message = sdk_message(whole.body)
    assert [b.type for b in message.content] == ["text", "tool_use"]
    final = sdk_message_stream(streamed)  # checks indexes run 0, 1
    same_content(final, message)
    assert final.content[1].input == message.content[1].input


async def test_anthropic_thinking_truncate() -> None:
    whole, streamed = await thinking_pair("{reasoning: {mode: truncate, max_chars: 50}}")
    original = orjson.loads(whole.raw)["content"][0]["thinking"]
    message = sdk_message(whole.body)
    block = message.content[0]
    assert block.type == "thinking" and block.thinking == original[:50]
    assert block.signature == ""  # changed text: the signature would not verify
    final = sdk_message_stream(streamed)
    same_content(final, message)
    assert not any(b"signature_delta" in e.data for e in streamed.events)


async def test_anthropic_short_thinking_keeps_its_signature() -> None:
    whole, streamed = await thinking_pair("{reasoning: {mode: truncate, max_chars: 100000}}")
    assert whole.out == whole.raw and streamed.out == streamed.raw


async def test_anthropic_thinking_replace() -> None:
    whole, streamed = await thinking_pair("{reasoning: {mode: replace, notice: 'no peeking'}}")
    message = sdk_message(whole.body)
    block = message.content[0]
    assert block.type == "thinking" and (block.thinking, block.signature) == ("no peeking", "")
    final = sdk_message_stream(streamed)
    same_content(final, message)
    deltas = [orjson.loads(e.data)["delta"] for e in streamed.events
              if e.event == "content_block_delta"]
    assert [d["thinking"] for d in deltas if d["type"] == "thinking_delta"] == ["no peeking"]


async def test_redacted_thinking_passes() -> None:
    rules = chain("{reasoning: {mode: drop}}")
    ctx = context(MESSAGES, {"model": "m", "messages": ASK})
    outcome = await rules.run_request(ctx, MemoryBackend())
    ctx.status = 200
    body = orjson.dumps({"id": "m", "type": "message", "role": "assistant", "model": "m",
                         "content": [{"type": "redacted_thinking", "data": "xyz"},
                                     {"type": "thinking", "thinking": "t", "signature": "s"},
                                     {"type": "text", "text": "hi"}],
                         "stop_reason": "end_turn", "stop_sequence": None,
                         "usage": {"input_tokens": 1, "output_tokens": 1}})
    out = orjson.loads(relay(outcome, ctx, body, False))
    assert [b["type"] for b in out["content"]] == ["redacted_thinking", "text"]


# == escalation and shadow =================================================================

async def test_settings_escalate_with_the_perturbation_level() -> None:
    rules = chain("{reasoning: {mode: pass}, escalate: [{level: 1, reasoning: {mode: truncate, "
                  "max_chars: 20}}, {level: 2, reasoning: {mode: drop}, max_n: 1}]}")
    normal = await exchange(rules, CHAT, {**REASONER, "n": 2}, level=0)
    assert normal.out == normal.raw and normal.sent["n"] == 2
    one = await exchange(rules, CHAT, {**REASONER, "n": 2}, level=1)
    assert [len(c["message"]["reasoning_content"]) for c in one.body["choices"]] == [20, 20]
    three = await exchange(rules, CHAT, {**REASONER, "n": 2}, level=3)
    assert three.sent["n"] == 1
    assert "reasoning_content" not in three.body["choices"][0]["message"]


ALL_ON = ("{logprobs: {mode: cap, max_top_logprobs: 1, decimals: 1, noise: 0.5}, max_n: 1, "
          "temperature: [0.5, 0.6], reasoning: {mode: drop}, watermark: {enabled: true}}")


@pytest.mark.usefixtures("fake_watermark")
async def test_shadow_changes_nothing_and_counts_what_it_would_do() -> None:
    rules = chain(ALL_ON, shadow=True, name="shadow-perturb")
    before = {kind: counted("shadow-perturb", kind, True) for kind in (
        "top_logprobs_capped", "n_capped", "temperature_clamped", "logprobs_perturbed",
        "reasoning_dropped", "watermarked", "logit_bias_refused")}
    body = {**LOGPROB_CHAT, "model": "demo-reasoner", "n": 2, "temperature": 1.5,
            "max_tokens": 300}
    for stream in (False, True):
        ex = await exchange(rules, CHAT, {**body, "stream": stream})
        assert ex.sent == {**body, "stream": stream}
        assert ex.out == ex.raw
    for stream in (False, True):
        ex = await exchange(rules, MESSAGES, {**THINK, "stream": stream})
        assert ex.out == ex.raw
    ctx = context(CHAT, {**body, "logit_bias": {"1": 2}})
    await rules.run_request(ctx, MemoryBackend())  # not refused
    assert ctx.rule_state["_shadow"] == [("shadow-perturb", "reject")]
    after = {kind: counted("shadow-perturb", kind, True) for kind in before}
    assert after["logit_bias_refused"] == before["logit_bias_refused"] + 1
    for kind in ("top_logprobs_capped", "n_capped", "temperature_clamped"):
        assert after[kind] == before[kind] + 2  # the two chat requests
    assert after["logprobs_perturbed"] == before["logprobs_perturbed"] + 2
    assert after["reasoning_dropped"] == before["reasoning_dropped"] + 4  # chat and messages
    assert after["watermarked"] == before["watermarked"] + 4


async def test_error_responses_are_left_alone() -> None:
    rules = chain("{reasoning: {mode: drop}}")
    ctx = context(CHAT, {"model": "demo-reasoner", "messages": ASK})
    outcome = await rules.run_request(ctx, MemoryBackend())
    ctx.status = 429
    body = b'{"error": {"message": "slow down", "reasoning_content": "x"}}'
    assert Chain.response_body(outcome.body_rules(ctx), ctx, body) == body


async def test_enforced_counts_once_per_request() -> None:
    rules = chain("{reasoning: {mode: truncate, max_chars: 3}}", name="count-once")
    before = counted("count-once", "reasoning_truncated")
    await exchange(rules, CHAT, {**REASONER, "stream": True})
    assert counted("count-once", "reasoning_truncated") == before + 1


# == watermark wiring (with a stand-in marker) =============================================

@pytest.mark.usefixtures("fake_watermark")
async def test_watermark_marks_assistant_text_only() -> None:
    rules = chain("{watermark: {enabled: true}}")
    ex = await exchange(rules, CHAT, REASONER)
    message = ex.body["choices"][0]["message"]
    original = orjson.loads(ex.raw)["choices"][0]["message"]
    assert message["content"] == FakeWatermarker(b"s", "x").mark(original["content"])
    assert message["content"] != original["content"]
    assert message["reasoning_content"] == original["reasoning_content"]  # never marked
    whole = await exchange(rules, MESSAGES, THINK)
    blocks = sdk_message(whole.body).content
    raw_blocks = orjson.loads(whole.raw)["content"]
    assert blocks[0].type == "thinking" and blocks[0].thinking == raw_blocks[0]["thinking"]
    assert blocks[1].type == "text" and blocks[1].text == FakeWatermarker(b"s", "x").mark(
        raw_blocks[1]["text"])


@pytest.mark.usefixtures("fake_watermark")
async def test_watermark_skips_tools_and_json_answers() -> None:
    rules = chain("{watermark: {enabled: true}}")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    call = await exchange(rules, CHAT, {"model": "demo-model", "tool_choice": "required",
                                        "tools": tools, "messages": [
                                            {"role": "user", "content": "the weather in Rome"}]})
    assert call.out == call.raw
    json_mode = await exchange(rules, CHAT, {**REASONER, "model": "demo-model",
                                             "response_format": {"type": "json_object"}})
    assert json_mode.out == json_mode.raw
    prefill = await exchange(rules, MESSAGES, {"model": "demo-model", "max_tokens": 30,
                                               "messages": [*ASK, {"role": "assistant",
                                                                   "content": "{"}]})
    assert prefill.out == prefill.raw


async def test_no_watermark_without_a_secret(fake_watermark: type[FakeWatermarker]) -> None:
    rules = chain("{watermark: {enabled: true}}", secret=None)
    ex = await exchange(rules, CHAT, REASONER)
    assert ex.out == ex.raw


@pytest.mark.usefixtures("fake_watermark")
async def test_streamed_watermark_equals_the_whole_text() -> None:
    rules = chain("{watermark: {enabled: true}}")
    whole = sdk_chat((await exchange(rules, CHAT, {**REASONER, "model": "demo-model"})).body)
    streamed = await exchange(rules, CHAT, {**REASONER, "model": "demo-model", "stream": True})
    final = sdk_chat_stream(streamed)
    assert final.choices[0].message.content == whole.choices[0].message.content
    # the held-back rest rides on the finish_reason chunk, before [DONE]
    last = [c for c in streamed.chunks() if c["choices"]][-1]["choices"][0]
    assert last["finish_reason"] is not None
    message = sdk_message((await exchange(rules, MESSAGES, THINK)).body)
    anthropic_stream = await exchange(rules, MESSAGES, {**THINK, "stream": True})
    same_content(sdk_message_stream(anthropic_stream), message)


@pytest.mark.usefixtures("fake_watermark")
async def test_legacy_echo_keeps_the_prompt_unmarked() -> None:
    rules = chain("{watermark: {enabled: true}}")
    prompt = "the river and the sea "
    body = {"model": "demo-model", "prompt": prompt, "echo": True, "max_tokens": 30}
    whole = await exchange(rules, LEGACY, body)
    text = ot.Completion.model_validate(whole.body).choices[0].text
    assert text.startswith(prompt) and "THE" in text[len(prompt):]
    streamed = await exchange(rules, LEGACY, {**body, "stream": True})
    pieces = [c["choices"][0]["text"] for c in streamed.chunks() if c["choices"]]
    assert "".join(pieces) == text


async def test_real_watermark_streamed_and_not() -> None:
    """With gateway.watermark itself: the text changes, the identity matters, and a
    stream carries exactly the marked whole text (held-back text included)."""
    rules = chain("{watermark: {enabled: true}}")
    body = {"model": "demo-model", "messages": ASK}
    whole = await exchange(rules, CHAT, body)
    text = sdk_chat(whole.body).choices[0].message.content
    original = orjson.loads(whole.raw)["choices"][0]["message"]["content"]
    assert text is not None and text != original
    assert text == Watermarker(SECRET, "id-alice").mark(original)
    bob = await exchange(rules, CHAT, body, identity="id-bob")
    assert sdk_chat(bob.body).choices[0].message.content != text
    streamed = sdk_chat_stream(await exchange(rules, CHAT, {**body, "stream": True}))
    assert streamed.choices[0].message.content == text
    anthropic_whole = await exchange(rules, MESSAGES, THINK)
    message = sdk_message(anthropic_whole.body)
    raw_text = orjson.loads(anthropic_whole.raw)["content"][1]["text"]
    assert message.content[1].type == "text"
    assert message.content[1].text == Watermarker(SECRET, "id-alice").mark(raw_text)
    same_content(sdk_message_stream(await exchange(rules, MESSAGES, {**THINK, "stream": True})),
                 message)


def synthetic_chat_stream(deltas: list[str], finish: bool) -> bytes:
    def chunk(delta: dict[str, Any], reason: str | None = None) -> bytes:
        return b"data: " + orjson.dumps({
            "id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "logprobs": None,
                         "finish_reason": reason}]}) + b"\n\n"

    out = chunk({"role": "assistant", "content": ""})
    out += b"".join(chunk({"content": d}) for d in deltas)
    if finish:
        out += chunk({}, "stop")
    return out + b"data: [DONE]\n\n"


@pytest.mark.usefixtures("fake_watermark")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(alphabet="the and of rivers\n", min_size=1, max_size=80),
       splits=st.lists(st.integers(min_value=0, max_value=80), max_size=12),
       finish=st.booleans(), cuts=st.lists(st.integers(min_value=0, max_value=4000),
                                           max_size=8))
async def test_any_delta_split_and_byte_chunking_gives_the_whole_marked_text(
        text: str, splits: list[int], finish: bool, cuts: list[int]) -> None:
    """However the upstream splits its deltas (and the network its bytes), the client
    gets a valid stream whose text is the marked whole text, the rest before [DONE]."""
    edges = sorted({0, len(text), *(s for s in splits if s < len(text))})
    deltas = [text[a:b] for a, b in itertools.pairwise(edges)]
    rules = chain("{watermark: {enabled: true}}")
    ctx = context(CHAT, {"model": "m", "messages": ASK, "stream": True})
    outcome = await rules.run_request(ctx, MemoryBackend())
    ctx.status = 200
    raw = synthetic_chat_stream(deltas, finish)
    out = relay(outcome, ctx, raw, True, [c for c in cuts if c < len(raw)])
    ex = Exchange(ctx, {}, raw, out)
    final = accumulate_chat(ex)  # a stream cut before its finish_reason is no completion
    assert final.choices[0].message.content == FakeWatermarker(b"s", "x").mark(text)


# == stream robustness =====================================================================

def cut_points(raw: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(min_value=1, max_value=max(len(raw) - 1, 1)), max_size=20)


@pytest.fixture(scope="module")
def recorded() -> Iterator[dict[str, bytes]]:
    """Upstream streams recorded once (the property tests replay them)."""
    import asyncio

    async def record() -> dict[str, bytes]:
        out = {}
        for name, path, body in (
            ("chat", CHAT, {**LOGPROB_CHAT, "model": "demo-reasoner", "n": 2, "stream": True,
                            "max_tokens": 110}),
            ("messages", MESSAGES, {**THINK, "max_tokens": 40, "stream": True}),
        ):
            out[name] = (await upstream(path, orjson.dumps(body)))[1]
        return out

    yield asyncio.run(record())


async def replay(config: str, path: str, raw: bytes, cuts: list[int]) -> bytes:
    rules = chain(config)
    ctx = context(path, {"model": "m", "messages": ASK, "stream": True, "logprobs": True})
    outcome = await rules.run_request(ctx, MemoryBackend())
    ctx.status = 200
    return relay(outcome, ctx, raw, True, cuts)


STRONG = ("{logprobs: {mode: cap, max_top_logprobs: 2, noise: 0.3}, "
          "reasoning: {mode: truncate, max_chars: 30}, watermark: {enabled: true}}")


@pytest.mark.usefixtures("fake_watermark")
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
async def test_random_chunkings_give_the_same_valid_stream(
        recorded: dict[str, bytes], data: st.DataObject) -> None:
    for name, path, config in (("chat", CHAT, STRONG), ("messages", MESSAGES, STRONG),
                               ("messages", MESSAGES, "{reasoning: {mode: drop}, "
                                                      "watermark: {enabled: true}}")):
        raw = recorded[name]
        whole = await replay(config, path, raw, [])
        cuts = data.draw(cut_points(raw))
        assert await replay(config, path, raw, cuts) == whole
        ex = Exchange(context(path, {}), {}, raw, whole)
        if name == "chat":
            final = sdk_chat_stream(ex)
            assert len(final.choices) == 2
        else:
            sdk_message_stream(ex)


def test_perturber_handles_odd_upstream_values() -> None:
    perturber = LogprobPerturber(LogprobsConfig(noise=0.1), derive_key(b"s", "i"), 2)
    entry: dict[str, Any] = {"token": "a", "logprob": None, "top_logprobs": [
        {"token": "b", "logprob": "x"}, {"token": "a", "logprob": -1}, "junk"]}
    assert perturber.chat(0, {"content": [entry, "junk", {"token": 3}], "refusal": None})
    assert entry["logprob"] is None and [t["token"] for t in entry["top_logprobs"]] == ["a"]
    block: dict[str, Any] = {"tokens": ["a", 1, "b"], "token_logprobs": [None, -1, -2.0],
                             "top_logprobs": [None, None, {"b": -2.0, "c": -3.0}]}
    assert perturber.legacy(0, block)
    assert block["token_logprobs"][:2] == [None, -1]
    assert isinstance(block["token_logprobs"][2], float)


async def test_requests_without_anything_to_rewrite_are_not_decoded() -> None:
    """A logprob guard must not make the proxy buffer or decode every answer."""
    rules = chain("{logprobs: {mode: cap, max_top_logprobs: 5, decimals: 2}}")
    plain = context(CHAT, {"model": "m", "messages": ASK, "stream": True})
    outcome = await rules.run_request(plain, MemoryBackend())
    assert outcome.stream_rules(plain) == [] and outcome.body_rules(plain) == []
    asks = context(CHAT, {"model": "m", "messages": ASK, "logprobs": True, "top_logprobs": 9})
    outcome = await rules.run_request(asks, MemoryBackend())
    assert [r.info.kind for r in outcome.body_rules(asks)] == ["output_perturbation"]
