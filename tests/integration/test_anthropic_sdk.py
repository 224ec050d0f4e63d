"""The official anthropic SDK works through the gateway unchanged."""

from __future__ import annotations

import anthropic
import pytest


@pytest.fixture
def client(gateway_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway_url, api_key="sk-ant-test", max_retries=0)


MESSAGES = [{"role": "user", "content": "Explain how tides work."}]


def test_message(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model="demo-model", max_tokens=200, messages=MESSAGES)
    assert message.content[0].type == "text" and message.content[0].text
    assert message.usage.output_tokens > 0


def test_stream_helper_final_message(client: anthropic.Anthropic) -> None:
    whole = client.messages.create(model="demo-model", max_tokens=200, messages=MESSAGES)
    with client.messages.stream(model="demo-model", max_tokens=200, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == whole.content[0].text
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_tool_use_streamed(client: anthropic.Anthropic) -> None:
    tools = [{"name": "get_weather", "description": "Weather for a city",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"]}}]
    with client.messages.stream(
        model="demo-model", max_tokens=200, tools=tools,
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
    ) as stream:
        final = stream.get_final_message()
    blocks = [b for b in final.content if b.type == "tool_use"]
    assert blocks and blocks[0].name == "get_weather" and "city" in blocks[0].input
    assert final.stop_reason == "tool_use"


async def test_async_client(gateway_url: str) -> None:
    client = anthropic.AsyncAnthropic(base_url=gateway_url, api_key="k", max_retries=0)
    message = await client.messages.create(model="demo-model", max_tokens=50, messages=MESSAGES)
    assert message.stop_reason in ("end_turn", "max_tokens")
    await client.close()


def test_bad_json_is_anthropic_400(gateway_url: str) -> None:
    import httpx

    resp = httpx.post(gateway_url + "/v1/messages", content=b"[1, 2",
                      headers={"content-type": "application/json", "x-api-key": "k"})
    assert resp.status_code == 400
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
