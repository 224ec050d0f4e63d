"""Chat completions driven by the official openai SDK over a real socket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.demo_upstream import create_demo_app
from tests.support.server import serve_in_thread

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["location"],
        },
    },
}
SEARCH_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "search_docs",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_in_thread(create_demo_app()) as base:
        yield base


@pytest.fixture(scope="module")
def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)


def ask(text: str) -> Any:
    return [{"role": "user", "content": text}]


def sse_payloads(body: str) -> list[Any]:
    """Parse a raw SSE body into its data payloads (JSON, or the [DONE] marker)."""
    events = [e for e in body.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    return [e[6:] if e == "data: [DONE]" else json.loads(e[6:]) for e in events]


def test_plain_answer_with_usage(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="my-model", messages=ask("Explain rainbows"))
    choice = r.choices[0]
    text = choice.message.content or ""
    assert r.object == "chat.completion" and r.model == "my-model"
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert 150 <= len(text.split()) <= 320 and "\n\n" in text
    assert r.usage is not None
    assert r.usage.prompt_tokens == 2
    assert r.usage.completion_tokens == len(text.split())
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_same_prompt_same_answer(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model="a", messages=ask("Tell me about bees"))
    again = client.chat.completions.create(model="b", messages=ask("Tell me about bees"))
    other = client.chat.completions.create(model="a", messages=ask("Tell me about ants"))
    assert first.choices[0].message.content == again.choices[0].message.content
    assert first.choices[0].message.content != other.choices[0].message.content


def test_max_tokens_cuts_with_length(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="m", messages=ask("hello"), max_tokens=7)
    assert len((r.choices[0].message.content or "").split()) == 7
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 7
    r = client.chat.completions.create(model="m", messages=ask("hello"), max_completion_tokens=3)
    assert r.usage is not None and r.usage.completion_tokens == 3


def test_stream_word_by_word_matches_non_streamed(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(model="m", messages=ask("Describe the sea"))
    chunks = list(
        client.chat.completions.create(model="m", messages=ask("Describe the sea"), stream=True)
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    words = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert all(w and (i == 0 or w[0].isspace()) for i, w in enumerate(words))
    assert "".join(w or "" for w in words) == full.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].choices[0].delta.content is None
    assert all(c.usage is None for c in chunks)
    assert len({c.id for c in chunks}) == 1


def test_stream_include_usage_wire_format(url: str) -> None:
    body = {
        "model": "m",
        "messages": ask("Name three rivers"),
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 4,
    }
    r = httpx.post(url + "/v1/chat/completions", json=body)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(r.text)
    assert payloads[-1] == "[DONE]"
    *chunks, usage_chunk, _ = payloads
    assert all("usage" in c and c["usage"] is None for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": "",
        "refusal": None,
    }
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:5]] == [
        "There",
        " are",
        " a",
        " few",
    ]
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "length",
    }
    assert usage_chunk["choices"] == []
    assert usage_chunk["object"] == "chat.completion.chunk"
    assert usage_chunk["usage"]["completion_tokens"] == 4
    assert usage_chunk["usage"]["prompt_tokens"] == 3
    without = httpx.post(url + "/v1/chat/completions", json={**body, "stream_options": None})
    assert all("usage" not in c for c in sse_payloads(without.text)[:-1])


def test_sdk_stream_include_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="m",
        messages=ask("hello there"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 2
    assert chunks[-1].usage.completion_tokens == len(chunks) - 3


async def test_async_client_stream_and_create(url: str) -> None:
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
    full = await client.chat.completions.create(model="m", messages=ask("Why do cats purr?"))
    stream = await client.chat.completions.create(
        model="m", messages=ask("Why do cats purr?"), stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == full.choices[0].message.content
    await client.close()


def test_n_choices_vary(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="m", messages=ask("Tell me a story"), n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert len({c.message.content for c in r.choices}) == 3
    assert r.usage is not None
    assert r.usage.completion_tokens == sum(
        len((c.message.content or "").split()) for c in r.choices
    )
    chunks = list(
        client.chat.completions.create(model="m", messages=ask("Tell me a story"), n=3, stream=True)
    )
    for choice in r.choices:
        streamed = "".join(
            c.choices[0].delta.content or "" for c in chunks if c.choices[0].index == choice.index
        )
        assert streamed == choice.message.content


def test_logprobs(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="m", messages=ask("Hello"), logprobs=True, top_logprobs=5, max_tokens=12
    )
    assert r.choices[0].logprobs is not None
    content = r.choices[0].logprobs.content
    assert content is not None and len(content) == 12
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for item in content:
        assert item.logprob < 0
        assert item.bytes == list(item.token.encode())
        assert len(item.top_logprobs) == 5
        assert item.top_logprobs[0].token == item.token
        values = [t.logprob for t in item.top_logprobs]
        assert values == sorted(values, reverse=True)
        assert len({t.token for t in item.top_logprobs}) == 5
    again = client.chat.completions.create(
        model="m", messages=ask("Hello"), logprobs=True, top_logprobs=5, max_tokens=12
    )
    assert again.choices[0].logprobs == r.choices[0].logprobs
    bare = client.chat.completions.create(
        model="m", messages=ask("Hello"), logprobs=True, max_tokens=2
    )
    assert bare.choices[0].logprobs is not None
    assert [t.top_logprobs for t in bare.choices[0].logprobs.content or []] == [[], []]


def test_logprobs_streamed(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="m", messages=ask("Hi"), logprobs=True, top_logprobs=2, max_tokens=5, stream=True
        )
    )
    words = chunks[1:-1]
    assert len(words) == 5
    for chunk in words:
        logprobs = chunk.choices[0].logprobs
        assert logprobs is not None and logprobs.content is not None
        assert logprobs.content[0].token == chunk.choices[0].delta.content
        assert len(logprobs.content[0].top_logprobs) == 2


def test_reasoning_content(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="m", messages=ask("Is 17 prime?"), reasoning_effort="high"
    )
    message: Any = r.choices[0].message
    assert message.reasoning_content.startswith("Let me think about this step by step.")
    assert message.content and message.content != message.reasoning_content
    assert r.usage is not None and r.usage.completion_tokens_details is not None
    reasoning = r.usage.completion_tokens_details.reasoning_tokens
    assert reasoning == len(message.reasoning_content.split())
    assert r.usage.completion_tokens == reasoning + len(message.content.split())
    by_name: Any = client.chat.completions.create(model="demo-reasoner", messages=ask("Hi"))
    assert by_name.choices[0].message.reasoning_content
    plain: Any = client.chat.completions.create(model="demo-model", messages=ask("Hi"))
    assert getattr(plain.choices[0].message, "reasoning_content", None) is None


def test_reasoning_streams_before_content(client: openai.OpenAI) -> None:
    chunks: list[Any] = list(
        client.chat.completions.create(model="demo-reasoner", messages=ask("Hi"), stream=True)
    )
    kinds = []
    for chunk in chunks[1:-1]:
        delta = chunk.choices[0].delta
        kinds.append("r" if getattr(delta, "reasoning_content", None) else "c")
    assert kinds == sorted(kinds, reverse=True)  # every "r" before every "c"
    assert "r" in kinds and "c" in kinds


def test_tool_call_non_streamed(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="m",
        messages=ask("What's the weather in Paris?"),
        tools=[SEARCH_TOOL, WEATHER_TOOL],
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls: Any = choice.message.tool_calls
    assert len(calls) == 1 and calls[0].type == "function"
    assert calls[0].id.startswith("call_")
    assert calls[0].function.name == "get_weather"
    args = json.loads(calls[0].function.arguments)
    assert args == {"location": "Paris", "unit": "celsius", "days": 3}


def test_tool_choice_rules(client: openai.OpenAI) -> None:
    tools = [SEARCH_TOOL, WEATHER_TOOL]
    named: Any = client.chat.completions.create(
        model="m",
        messages=ask("hello"),
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "search_docs"}},
    )
    assert named.choices[0].message.tool_calls[0].function.name == "search_docs"
    assert json.loads(named.choices[0].message.tool_calls[0].function.arguments) == {
        "query": "hello"
    }
    required: Any = client.chat.completions.create(
        model="m", messages=ask("hello"), tools=tools, tool_choice="required"
    )
    assert required.choices[0].finish_reason == "tool_calls"
    mentioned: Any = client.chat.completions.create(
        model="m", messages=ask("please use search_docs"), tools=tools
    )
    assert mentioned.choices[0].message.tool_calls[0].function.name == "search_docs"
    for choice in ("none", "auto"):
        r = client.chat.completions.create(
            model="m",
            messages=ask("weather" if choice == "none" else "hello"),
            tools=tools,
            tool_choice=choice,
        )
        assert r.choices[0].finish_reason == "stop" and r.choices[0].message.tool_calls is None


def test_tool_result_turn_gets_prose(client: openai.OpenAI) -> None:
    first: Any = client.chat.completions.create(
        model="m", messages=ask("What's the weather in Oslo?"), tools=[WEATHER_TOOL]
    )
    call = first.choices[0].message.tool_calls[0]
    follow = client.chat.completions.create(
        model="m",
        tools=[WEATHER_TOOL],
        messages=[
            *ask("What's the weather in Oslo?"),
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"},
        ],
    )
    assert follow.choices[0].finish_reason == "stop"
    assert follow.choices[0].message.tool_calls is None
    assert len((follow.choices[0].message.content or "").split()) > 50


def test_tool_call_streamed_deltas(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="m", messages=ask("call the tool"), tools=[WEATHER_TOOL], stream=True
        )
    )
    first: Any = chunks[0].choices[0].delta
    assert first.role == "assistant"
    head = first.tool_calls[0]
    assert head.index == 0 and head.id.startswith("call_") and head.type == "function"
    assert head.function.name == "get_weather" and head.function.arguments == ""
    pieces: Any = [c.choices[0].delta.tool_calls for c in chunks[1:-1]]
    assert all(p[0].id is None and p[0].function.name is None for p in pieces)
    arguments = "".join(p[0].function.arguments for p in pieces)
    assert json.loads(arguments)["location"] == "San Francisco, CA"
    assert len(pieces) > 3
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_sdk_stream_helper_accumulates_tool_call(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model="m", messages=ask("What's the weather in Rome?"), tools=[WEATHER_TOOL]
    ) as stream:
        final = stream.get_final_completion()
    calls: Any = final.choices[0].message.tool_calls
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments)["location"] == "Rome"
    assert final.choices[0].finish_reason == "tool_calls"


def test_sdk_stream_helper_text(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(model="m", messages=ask("Say something")) as stream:
        final = stream.get_final_completion()
    plain = client.chat.completions.create(model="m", messages=ask("Say something"))
    assert final.choices[0].message.content == plain.choices[0].message.content
