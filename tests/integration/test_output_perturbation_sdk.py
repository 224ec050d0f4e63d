"""The official SDKs parse every response `output_perturbation` rewrites.

One gateway on a real socket in front of the demo model; the request header
`x-test-mode` picks the rule (reasoning drop / truncate / replace, logprobs
refused). Every rule also caps and noises logprobs and watermarks text.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from gateway.watermark import Watermarker
from tests.support.server import serve_in_thread

CAP = "logprobs: {mode: cap, max_top_logprobs: 2, decimals: 2, noise: 0.1}"
RULES = "".join(
    f"""
  - name: perturb-{mode}
    kind: output_perturbation
    match: {{headers: {{x-test-mode: ["{mode}"]}}}}
    config: {{max_n: 2, watermark: {{enabled: true}}, {extra}}}
"""
    for mode, extra in (
        ("drop", f"{CAP}, reasoning: {{mode: drop}}"),
        ("truncate", f"{CAP}, reasoning: {{mode: truncate, max_chars: 25}}"),
        ("replace", f"{CAP}, reasoning: {{mode: replace, notice: '[withheld]'}}"),
        ("refuse", "logprobs: {mode: refuse}"),
    )
)
POLICY = "version: 1\nrules:" + RULES
SECRET = "integration-watermark-secret"
KEY = "sk-perturb-1"
ASK = [{"role": "user", "content": "Explain how rivers shape valleys."}]
THINKING: Any = {"type": "enabled", "budget_tokens": 1024}


@pytest.fixture(scope="module")
def gateway(demo_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    policy = Path(tmp_path_factory.mktemp("perturb")) / "policy.yaml"
    policy.write_text(POLICY)
    settings = Settings(upstream=demo_url, redis="memory", policy=policy,
                        watermark_secret=SECRET)
    with serve_in_thread(create_app(settings)) as url:
        yield url


def oai(url: str, mode: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0,
                         default_headers={"x-test-mode": mode})


def claude(url: str, mode: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0,
                               default_headers={"x-test-mode": mode})


def _identity() -> str:
    from gateway.identity import IdentityHasher

    return IdentityHasher(Settings().identity_secret.get_secret_value().encode()).hash_key(KEY)


def check_logprobs(content: list[Any]) -> None:
    assert content
    for item in content:
        assert item.logprob <= 0 and round(item.logprob, 2) == item.logprob
        values = [top.logprob for top in item.top_logprobs]
        assert len(values) <= 2 and values == sorted(values, reverse=True)


# -- OpenAI -------------------------------------------------------------------------------

def test_chat_with_logprobs_and_reasoning(gateway: str, demo_url: str) -> None:
    client = oai(gateway, "truncate")
    reply = client.chat.completions.create(
        model="demo-reasoner", messages=ASK, logprobs=True, top_logprobs=5, n=3,
        max_tokens=300)
    assert len(reply.choices) == 2  # n capped
    choice = reply.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    check_logprobs(choice.logprobs.content)
    assert (choice.message.model_extra or {})["reasoning_content"] == (
        "Let me think about this step by step.")[:25]
    direct = openai.OpenAI(base_url=demo_url + "/v1", api_key="k", max_retries=0)
    original = direct.chat.completions.create(model="demo-reasoner", messages=ASK,
                                              max_tokens=300)
    marked = Watermarker(SECRET.encode(), _identity()).mark(
        original.choices[0].message.content or "")
    assert choice.message.content == marked != original.choices[0].message.content


@pytest.mark.parametrize("mode", ["drop", "truncate", "replace"])
def test_chat_stream_with_logprobs_and_reasoning(gateway: str, mode: str) -> None:
    client = oai(gateway, mode)
    whole = client.chat.completions.create(model="demo-reasoner", messages=ASK, logprobs=True,
                                           top_logprobs=5, max_tokens=300)
    stream = client.chat.completions.create(
        model="demo-reasoner", messages=ASK, logprobs=True, top_logprobs=5, max_tokens=300,
        stream=True, stream_options={"include_usage": True})
    reasoning, text, tokens, usage = "", "", [], None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
        text += delta.content or ""
        if chunk.choices[0].logprobs is not None:
            tokens.extend(chunk.choices[0].logprobs.content or [])
    expected = {"drop": "", "truncate": "Let me think about this step by step."[:25],
                "replace": "[withheld]"}[mode]
    assert reasoning == expected
    assert text == whole.choices[0].message.content  # watermarked the same way
    assert whole.choices[0].logprobs is not None
    assert [(t.token, t.logprob) for t in tokens] == [
        (t.token, t.logprob) for t in whole.choices[0].logprobs.content or []]
    check_logprobs(tokens)
    assert usage is not None and whole.usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens  # usage untouched


def test_chat_stream_helper_accumulates(gateway: str) -> None:
    client = oai(gateway, "drop")
    with client.chat.completions.stream(model="demo-reasoner", messages=ASK, logprobs=True,
                                        top_logprobs=3) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.message.content and "reasoning_content" not in (choice.message.model_extra
                                                                   or {})
    assert choice.logprobs is not None and choice.logprobs.content is not None
    check_logprobs(choice.logprobs.content)


def test_legacy_completions_logprobs_streamed_and_not(gateway: str) -> None:
    client = oai(gateway, "drop")
    whole = client.completions.create(model="demo-model", prompt="Rivers and valleys",
                                      logprobs=5, max_tokens=30)
    probs = whole.choices[0].logprobs
    assert probs is not None and probs.top_logprobs and probs.token_logprobs
    assert all(len(top) <= 2 for top in probs.top_logprobs)
    stream = client.completions.create(model="demo-model", prompt="Rivers and valleys",
                                       logprobs=5, max_tokens=30, stream=True)
    text, values = "", []
    for chunk in stream:
        text += chunk.choices[0].text
        if chunk.choices[0].logprobs is not None:
            values.extend(chunk.choices[0].logprobs.token_logprobs or [])
    assert text == whole.choices[0].text and values == probs.token_logprobs


def test_logprob_guards_are_clear_400s(gateway: str) -> None:
    client = oai(gateway, "drop")
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="demo-model", messages=ASK, logprobs=True,
                                       logit_bias={"1734": -100})
    assert caught.value.status_code == 400
    assert "'logit_bias' cannot be combined with 'logprobs'" in caught.value.message
    assert caught.value.param == "logit_bias"
    with pytest.raises(openai.BadRequestError) as refused:
        oai(gateway, "refuse").chat.completions.create(model="demo-model", messages=ASK,
                                                       logprobs=True)
    assert refused.value.code == "logprobs_not_allowed"
    ok = client.chat.completions.create(model="demo-model", messages=ASK, max_tokens=5,
                                        logit_bias={"1734": -100})
    assert ok.choices[0].message.content


async def test_async_client_streams(gateway: str) -> None:
    client = openai.AsyncOpenAI(base_url=gateway + "/v1", api_key=KEY, max_retries=0,
                                default_headers={"x-test-mode": "replace"})
    stream = await client.chat.completions.create(model="demo-model", messages=ASK,
                                                  stream=True, reasoning_effort="low")
    pieces = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    assert "".join(pieces).strip()
    await client.close()


# -- Anthropic ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["drop", "truncate", "replace"])
def test_thinking_streamed_and_not(gateway: str, mode: str) -> None:
    client = claude(gateway, mode)
    whole = client.messages.create(model="demo-model", max_tokens=300, thinking=THINKING,
                                   messages=ASK)
    with client.messages.stream(model="demo-model", max_tokens=300, thinking=THINKING,
                                messages=ASK) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    kinds = {"drop": ["text"], "truncate": ["thinking", "text"],
             "replace": ["thinking", "text"]}[mode]
    assert [b.type for b in whole.content] == kinds == [b.type for b in final.content]
    if mode != "drop":
        thinking = whole.content[0]
        assert thinking.type == "thinking" and thinking.signature == ""
        assert thinking.thinking == ("[withheld]" if mode == "replace"
                                     else "Let me think about this step by step."[:25])
        assert final.content[0].to_dict() == thinking.to_dict()
    last, whole_last = final.content[-1], whole.content[-1]
    assert last.type == whole_last.type == "text"
    assert last.text == whole_last.text  # the same watermarked text
    assert "text" in events and final.usage.output_tokens == whole.usage.output_tokens


def test_thinking_dropped_before_a_tool_call(gateway: str) -> None:
    tools: Any = [{"name": "get_weather", "description": "Weather for a city",
                   "input_schema": {"type": "object", "properties": {
                       "city": {"type": "string"}}, "required": ["city"]}}]
    with claude(gateway, "drop").messages.stream(
        model="demo-model", max_tokens=300, thinking=THINKING, tools=tools,
        messages=[{"role": "user", "content": "What is the weather in Oslo?"}],
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"]
    tool = final.content[1]
    assert tool.type == "tool_use" and tool.input == {"city": "Oslo"}


def test_plain_message_is_watermarked_streamed_and_not(gateway: str, demo_url: str) -> None:
    client = claude(gateway, "drop")
    whole = client.messages.create(model="demo-model", max_tokens=300, messages=ASK)
    with client.messages.stream(model="demo-model", max_tokens=300, messages=ASK) as stream:
        text = "".join(stream.text_stream)
    direct = anthropic.Anthropic(base_url=demo_url, api_key="k", max_retries=0)
    original = direct.messages.create(model="demo-model", max_tokens=300, messages=ASK)
    assert whole.content[0].type == original.content[0].type == "text"
    assert text == whole.content[0].text == Watermarker(SECRET.encode(), _identity()).mark(
        original.content[0].text)
