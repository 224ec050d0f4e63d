"""The Messages API driven by the official anthropic SDK over a real socket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from gateway.demo_upstream import create_demo_app
from tests.support.server import serve_in_thread

WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {
            "location": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location"],
    },
}
THINKING: Any = {"type": "enabled", "budget_tokens": 1024}


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_in_thread(create_demo_app()) as base:
        yield base


@pytest.fixture(scope="module")
def client(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)


def ask(text: str) -> Any:
    return [{"role": "user", "content": text}]


def sse_events(body: str) -> list[tuple[str, Any]]:
    out = []
    for block in filter(None, body.split("\n\n")):
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        data = json.loads(data_line[6:])
        assert data["type"] == name_line[7:]
        out.append((name_line[7:], data))
    return out


def test_plain_message_with_usage(client: anthropic.Anthropic) -> None:
    m = client.messages.create(model="claude-x", max_tokens=1024, messages=ask("Explain tides"))
    assert m.type == "message" and m.role == "assistant" and m.model == "claude-x"
    assert m.id.startswith("msg_") and m.stop_reason == "end_turn"
    assert len(m.content) == 1 and m.content[0].type == "text"
    text = m.content[0].text
    assert 150 <= len(text.split()) <= 320
    assert m.usage.input_tokens == 2 and m.usage.output_tokens == len(text.split())


def test_max_tokens_and_system_prompt(client: anthropic.Anthropic) -> None:
    m = client.messages.create(
        model="c", max_tokens=6, system="You are terse.", messages=ask("Explain tides")
    )
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 6
    assert m.usage.input_tokens == 5
    blocks: Any = [{"type": "text", "text": "Be brief."}]
    listed = client.messages.create(model="c", max_tokens=6, system=blocks, messages=ask("Hi"))
    assert listed.usage.input_tokens == 3


def test_same_prompt_same_answer_as_openai_dialect(client: anthropic.Anthropic, url: str) -> None:
    m = client.messages.create(model="c", max_tokens=500, messages=ask("Tell me about owls"))
    chat = httpx.post(
        url + "/v1/chat/completions", json={"model": "m", "messages": ask("Tell me about owls")}
    ).json()
    assert m.content[0].type == "text"
    assert m.content[0].text == chat["choices"][0]["message"]["content"]


def test_stream_wire_format(url: str) -> None:
    body = {"model": "c", "max_tokens": 3, "stream": True, "messages": ask("Hello there")}
    r = httpx.post(url + "/v1/messages", json=body)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == 2 and start["usage"]["output_tokens"] == 1
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert [d["type"] for d in deltas] == ["text_delta"] * 3
    assert deltas[1]["text"].startswith(" ")
    assert events[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
        "usage": {"output_tokens": 3},
    }


def test_sdk_stream_helper(client: anthropic.Anthropic) -> None:
    full = client.messages.create(model="c", max_tokens=800, messages=ask("Describe snow"))
    with client.messages.stream(model="c", max_tokens=800, messages=ask("Describe snow")) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    assert len(pieces) == full.usage.output_tokens
    assert final.content[0].type == "text" and full.content[0].type == "text"
    assert "".join(pieces) == final.content[0].text == full.content[0].text
    assert final.usage.output_tokens == full.usage.output_tokens
    assert final.stop_reason == "end_turn"


async def test_async_client(url: str) -> None:
    client = anthropic.AsyncAnthropic(base_url=url, api_key="k", max_retries=0)
    m = await client.messages.create(model="c", max_tokens=50, messages=ask("Hi"))
    stream = await client.messages.create(model="c", max_tokens=50, messages=ask("Hi"), stream=True)
    text = ""
    async for event in stream:
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            text += event.delta.text
    assert m.content[0].type == "text" and text == m.content[0].text
    async with client.messages.stream(model="c", max_tokens=50, messages=ask("Hi")) as s:
        final = await s.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == text
    await client.close()


def test_thinking_block(client: anthropic.Anthropic) -> None:
    m = client.messages.create(
        model="c", max_tokens=2000, thinking=THINKING, messages=ask("Is 91 prime?")
    )
    assert [b.type for b in m.content] == ["thinking", "text"]
    thinking: Any = m.content[0]
    assert thinking.thinking.startswith("Let me think about this step by step.")
    assert thinking.signature
    text: Any = m.content[1]
    assert m.usage.output_tokens == len(thinking.thinking.split()) + len(text.text.split())
    with client.messages.stream(
        model="c", max_tokens=2000, thinking=THINKING, messages=ask("Is 91 prime?")
    ) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_message()
    assert [b.model_dump(exclude={"parsed_output"}) for b in final.content] == [
        b.model_dump() for b in m.content
    ]
    assert "thinking" in kinds and "signature" in kinds
    assert kinds.index("signature") < kinds.index("text")


def test_thinking_stream_events(url: str) -> None:
    body = {
        "model": "c",
        "max_tokens": 2000,
        "stream": True,
        "thinking": THINKING,
        "messages": ask("Hi"),
    }
    events = sse_events(httpx.post(url + "/v1/messages", json=body).text)
    starts = [d for n, d in events if n == "content_block_start"]
    assert [s["index"] for s in starts] == [0, 1]
    assert starts[0]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert starts[1]["content_block"] == {"type": "text", "text": ""}
    kinds = [(d["index"], d["delta"]["type"]) for n, d in events if n == "content_block_delta"]
    first_text = kinds.index((1, "text_delta"))
    assert kinds[first_text - 1] == (0, "signature_delta")
    assert {k for k in kinds[: first_text - 1]} == {(0, "thinking_delta")}


def test_tool_use_auto(client: anthropic.Anthropic) -> None:
    m = client.messages.create(
        model="c", max_tokens=500, tools=[WEATHER_TOOL], messages=ask("Weather in Lisbon?")
    )
    assert m.stop_reason == "tool_use"
    assert [b.type for b in m.content] == ["text", "tool_use"]
    call: Any = m.content[1]
    assert call.id.startswith("toolu_") and call.name == "get_weather"
    assert call.input == {"location": "Lisbon", "unit": "celsius"}


def test_tool_choice_forced(client: anthropic.Anthropic) -> None:
    tools: Any = [
        {
            "name": "lookup",
            "input_schema": {
                "type": "object",
                "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
            },
        },
        WEATHER_TOOL,
    ]
    forced = client.messages.create(
        model="c",
        max_tokens=500,
        tools=tools,
        tool_choice={"type": "tool", "name": "lookup"},
        messages=ask("hello"),
    )
    assert [b.type for b in forced.content] == ["tool_use"]
    assert forced.content[0].type == "tool_use"
    assert forced.content[0].input == {"query": "hello", "limit": 3}
    anyone = client.messages.create(
        model="c", max_tokens=500, tools=tools, tool_choice={"type": "any"}, messages=ask("hi")
    )
    assert anyone.stop_reason == "tool_use"
    none = client.messages.create(
        model="c",
        max_tokens=500,
        tools=tools,
        tool_choice={"type": "none"},
        messages=ask("weather please"),
    )
    assert none.stop_reason == "end_turn"
    plain = client.messages.create(model="c", max_tokens=500, tools=tools, messages=ask("hi"))
    assert plain.stop_reason == "end_turn"


def test_tool_use_streamed(client: anthropic.Anthropic, url: str) -> None:
    with client.messages.stream(
        model="c", max_tokens=500, tools=[WEATHER_TOOL], messages=ask("weather in Nice")
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    call: Any = final.content[-1]
    assert call.type == "tool_use" and call.input == {"location": "Nice", "unit": "celsius"}
    body = {
        "model": "c",
        "max_tokens": 500,
        "stream": True,
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "any"},
        "messages": ask("hi"),
    }
    events = sse_events(httpx.post(url + "/v1/messages", json=body).text)
    start = next(d for n, d in events if n == "content_block_start")
    assert start["content_block"]["type"] == "tool_use" and start["content_block"]["input"] == {}
    partial = [d["delta"] for n, d in events if n == "content_block_delta"]
    assert all(p["type"] == "input_json_delta" for p in partial)
    assert partial[0]["partial_json"] == "" and len(partial) > 3
    assert json.loads("".join(p["partial_json"] for p in partial))["location"]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_tool_result_turn_gets_prose(client: anthropic.Anthropic) -> None:
    first = client.messages.create(
        model="c", max_tokens=500, tools=[WEATHER_TOOL], messages=ask("Weather in Oslo?")
    )
    call: Any = first.content[-1]
    follow = client.messages.create(
        model="c",
        max_tokens=500,
        tools=[WEATHER_TOOL],
        messages=[
            *ask("Weather in Oslo?"),
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21 C"}
                ],
            },
        ],
    )
    assert follow.stop_reason == "end_turn"
    assert [b.type for b in follow.content] == ["text"]


def test_count_tokens(client: anthropic.Anthropic) -> None:
    counted = client.messages.count_tokens(
        model="c", system="Be kind.", messages=ask("one two three")
    )
    assert counted.input_tokens == 5


def test_bad_requests(client: anthropic.Anthropic, url: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model="c", max_tokens=10, messages=[])
    assert info.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "messages: at least one message is required",
        },
    }
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(
            model="c", max_tokens=10, messages=ask("x"), extra_body={"max_tokens": "ten"}
        )
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(
            model="c",
            max_tokens=10,
            messages=[{"role": "robot", "content": "x"}],  # type: ignore[misc,list-item]
        )
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(
            model="c",
            max_tokens=10,
            messages=ask("x"),
            tools=[WEATHER_TOOL],
            tool_choice={"type": "tool", "name": "missing"},
        )
    r = httpx.post(url + "/v1/messages", content=b"nope")
    assert r.status_code == 400 and r.json()["type"] == "error"
    r = httpx.post(url + "/v1/messages", json={"model": "c", "max_tokens": 5})
    assert r.json()["error"]["message"] == "messages: Field required"
    r = httpx.get(url + "/v1/messages")
    assert r.status_code == 405 and r.json()["type"] == "error"
