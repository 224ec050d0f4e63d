"""The official openai SDK works through the gateway unchanged."""

from __future__ import annotations

import json

import openai
import pytest


@pytest.fixture
def client(gateway_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway_url + "/v1", api_key="sk-test-1", max_retries=0)


MESSAGES = [{"role": "user", "content": "Describe how rivers shape valleys."}]


def test_chat_completion(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="demo-model", messages=MESSAGES)
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_chat_stream_matches_non_streamed_text(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="demo-model", messages=MESSAGES)
    stream = client.chat.completions.create(
        model="demo-model", messages=MESSAGES, stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage is not None:
            usage = chunk.usage
    assert text == whole.choices[0].message.content
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens


def test_tool_calls_streamed_and_not(client: openai.OpenAI) -> None:
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}]
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    reply = client.chat.completions.create(model="demo-model", messages=messages, tools=tools,
                                           tool_choice="required")
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert "city" in json.loads(call.function.arguments)
    stream = client.chat.completions.create(model="demo-model", messages=messages, tools=tools,
                                            tool_choice="required", stream=True)
    args = ""
    name = None
    for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            name = name or (delta.function.name if delta.function else None)
            args += (delta.function.arguments or "") if delta.function else ""
    assert name == "get_weather" and "city" in json.loads(args)


def test_completions_embeddings_models(client: openai.OpenAI) -> None:
    legacy = client.completions.create(model="demo-model", prompt="Once upon a time")
    assert legacy.choices[0].text
    emb = client.embeddings.create(model="demo-embed", input=["a", "b"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) > 0
    models = client.models.list()
    assert any(m.id == "demo-model" for m in models)


async def test_async_client_streams(gateway_url: str) -> None:
    client = openai.AsyncOpenAI(base_url=gateway_url + "/v1", api_key="sk-test-2", max_retries=0)
    stream = await client.chat.completions.create(model="demo-model", messages=MESSAGES,
                                                  stream=True)
    pieces = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    assert len(pieces) > 10 and "".join(pieces).strip()
    await client.close()


def test_bad_json_is_openai_400(gateway_url: str) -> None:
    client = openai.OpenAI(base_url=gateway_url + "/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/chat/completions", cast_to=object, content=b"{not json",
                    options={"headers": {"content-type": "application/json"}})
    assert caught.value.status_code == 400
