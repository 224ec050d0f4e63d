"""Bad input always gets a 400 in the route's dialect; fast mode and word delay."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.demo_upstream import DemoConfig, create_demo_app, prose
from tests.support.server import serve_in_thread

WEIRD: list[Any] = [None, 0, -1, 1.5, "x", "", True, [], [1], [{}], {}, {"type": "x"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
VALID: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "call it"}]}],
        "max_tokens": 5,
        "stream": True,
        "stream_options": {"include_usage": True},
        "logprobs": True,
        "top_logprobs": 2,
        "n": 2,
        "tools": [TOOL],
        "tool_choice": "auto",
        "reasoning_effort": "low",
        "temperature": 0.5,
    },
    "/v1/completions": {"model": "m", "prompt": "hi", "max_tokens": 5, "logprobs": 2, "n": 2},
    "/v1/embeddings": {"model": "m", "input": ["a", "b"], "dimensions": 4},
    "/v1/messages": {
        "model": "c",
        "max_tokens": 50,
        "system": [{"type": "text", "text": "be brief"}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "weather"}]}],
        "stream": True,
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "auto"},
        "thinking": {"type": "enabled", "budget_tokens": 10},
    },
}


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_in_thread(create_demo_app()) as base:
        yield base


def check(client: httpx.Client, path: str, body: Any) -> int:
    r = client.post(path, content=json.dumps(body))
    assert r.status_code in (200, 400), (path, body, r.text)
    if r.status_code == 400:
        error = r.json()
        if path.startswith("/v1/messages"):
            assert error["type"] == "error"
            assert error["error"]["type"] == "invalid_request_error"
        else:
            assert set(error["error"]) == {"message", "type", "param", "code"}
        assert "Could not process" not in r.text, r.text  # the safety net must stay unused
    return r.status_code


@pytest.mark.parametrize("path", sorted(VALID))
def test_every_field_mutation_is_200_or_dialect_400(url: str, path: str) -> None:
    valid = VALID[path]
    with httpx.Client(base_url=url) as client:
        assert check(client, path, valid) == 200
        statuses = set()
        for key in valid:
            for value in WEIRD:
                statuses.add(check(client, path, {**valid, key: value}))
                del_key = {k: v for k, v in valid.items() if k != key}
                statuses.add(check(client, path, del_key))
        for value in WEIRD:
            if "messages" in valid:
                msg = valid["messages"][0]
                for field in ("role", "content"):
                    statuses.add(
                        check(client, path, {**valid, "messages": [{**msg, field: value}]})
                    )
                block = msg["content"][0]
                for field in ("type", "text"):
                    content = [{**block, field: value}]
                    statuses.add(
                        check(client, path, {**valid, "messages": [{**msg, "content": content}]})
                    )
                statuses.add(check(client, path, {**valid, "messages": [value]}))
            statuses.add(check(client, path, value))
        assert statuses == {200, 400}


def test_nested_tool_shapes(url: str) -> None:
    with httpx.Client(base_url=url) as client:
        chat = VALID["/v1/chat/completions"]
        for value in WEIRD:
            check(client, "/v1/chat/completions", {**chat, "tools": [value]})
            check(client, "/v1/chat/completions", {**chat, "tools": [{**TOOL, "function": value}]})
            check(
                client,
                "/v1/chat/completions",
                {**chat, "tool_choice": {"type": "function", "function": value}},
            )
            check(
                client, "/v1/chat/completions", {**chat, "stream_options": {"include_usage": value}}
            )
            params = {
                **TOOL,
                "function": {
                    "name": "f",
                    "parameters": {
                        "type": "object",
                        "properties": {"a": value, "b": {"type": value}},
                    },
                },
            }
            assert check(client, "/v1/chat/completions", {**chat, "tools": [params]}) == 200
        messages = VALID["/v1/messages"]
        for value in WEIRD:
            for key in ("tools", "tool_choice", "thinking"):
                inner = messages[key]
                mutated = (
                    [{**inner[0], "name": value}] if key == "tools" else {**inner, "type": value}
                )
                check(client, "/v1/messages", {**messages, key: mutated})
            result = {"type": "tool_result", "tool_use_id": "t", "content": value}
            check(
                client,
                "/v1/messages",
                {**messages, "messages": [{"role": "user", "content": [result]}]},
            )


def test_fast_mode_serves_fixed_small_answers() -> None:
    with serve_in_thread(create_demo_app(DemoConfig(fast=True))) as url:
        messages: Any = [{"role": "user", "content": "anything at all"}]
        body = {"model": "bench", "messages": messages}
        first = httpx.post(url + "/v1/chat/completions", json=body)
        second = httpx.post(url + "/v1/chat/completions", json=body)
        assert first.content == second.content  # pre-rendered bytes
        assert 700 <= len(first.content) <= 1400
        assert first.json()["choices"][0]["message"]["content"] == prose.FAST_TEXT
        other = httpx.post(url + "/v1/chat/completions", json={**body, "model": "b2"}).json()
        assert other["model"] == "b2"
        client = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
        stream = client.chat.completions.create(
            model="bench",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
            prose.FAST_TEXT
        )
        assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 3
        cut = client.chat.completions.create(model="m", messages=messages, max_tokens=3)
        assert cut.choices[0].finish_reason == "length"
        message = httpx.post(
            url + "/v1/messages",
            json={"model": "c", "max_tokens": 999, "messages": body["messages"]},
        ).json()
        assert message["content"][0]["text"] == prose.FAST_TEXT


def test_word_delay_spaces_out_stream() -> None:
    with serve_in_thread(create_demo_app(DemoConfig(word_delay=0.05))) as url:
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "max_tokens": 4,
        }
        start = time.monotonic()
        arrivals = []
        with httpx.stream("POST", url + "/v1/chat/completions", json=body) as r:
            for _ in r.iter_raw():
                arrivals.append(time.monotonic() - start)
        # 7 ticks (role, 4 words, finish, [DONE]) with 6 sleeps between them.
        assert arrivals[-1] >= 0.29
        assert arrivals[0] < arrivals[-1] - 0.2  # the first token is not held back
