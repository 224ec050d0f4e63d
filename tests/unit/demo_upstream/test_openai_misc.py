"""Legacy completions, embeddings, models, health and 404s, through the openai SDK."""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Iterator

import httpx
import openai
import pytest

from gateway.demo_upstream import create_demo_app
from gateway.demo_upstream.embeddings import embed
from tests.support.server import serve_in_thread


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_in_thread(create_demo_app()) as base:
        yield base


@pytest.fixture(scope="module")
def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)


def test_legacy_completion(client: openai.OpenAI) -> None:
    r = client.completions.create(model="demo-model", prompt="Once upon a time", max_tokens=9)
    assert r.object == "text_completion" and r.model == "demo-model"
    assert len(r.choices[0].text.split()) == 9
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (4, 9)
    full = client.completions.create(model="m", prompt="Once upon a time")
    assert full.choices[0].finish_reason == "stop"
    assert full.choices[0].text.startswith(r.choices[0].text)


def test_legacy_completion_stream_and_batch(client: openai.OpenAI) -> None:
    full = client.completions.create(model="m", prompt="Write about tea")
    chunks = list(
        client.completions.create(
            model="m",
            prompt="Write about tea",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks[:-1]) == full.choices[0].text
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    batch = client.completions.create(model="m", prompt=["a b", "c d e"], n=2, max_tokens=3)
    assert [c.index for c in batch.choices] == [0, 1, 2, 3]
    assert batch.usage is not None and batch.usage.prompt_tokens == 5


def test_legacy_logprobs(client: openai.OpenAI) -> None:
    r = client.completions.create(model="m", prompt="Hello", max_tokens=4, logprobs=3)
    logprobs = r.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.tokens is not None and "".join(logprobs.tokens) == r.choices[0].text
    assert logprobs.text_offset == [0, *[len("".join(logprobs.tokens[:i])) for i in (1, 2, 3)]]
    assert all(lp < 0 for lp in logprobs.token_logprobs or [])
    for token, top in zip(logprobs.tokens, logprobs.top_logprobs or [], strict=True):
        assert len(top) == 3 and next(iter(top)) == token
    chunks = list(
        client.completions.create(model="m", prompt="Hello", max_tokens=4, logprobs=1, stream=True)
    )
    streamed = [c.choices[0].logprobs for c in chunks[:-1]]
    assert [s.tokens for s in streamed if s] == [[t] for t in logprobs.tokens]


def test_embeddings_float_and_base64(client: openai.OpenAI, url: str) -> None:
    floats = client.embeddings.create(
        model="demo-embed",
        input=["a red apple", "a red car", "quantum chromodynamics"],
        encoding_format="float",
    )
    vectors = [d.embedding for d in floats.data]
    assert [d.index for d in floats.data] == [0, 1, 2]
    assert all(len(v) == 64 for v in vectors)
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-6) for v in vectors)

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    assert floats.usage.prompt_tokens == 8 and floats.model == "demo-embed"
    # The SDK asks for base64 by default and decodes it itself.
    decoded = client.embeddings.create(model="demo-embed", input="a red apple")
    assert decoded.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)
    raw = httpx.post(
        url + "/v1/embeddings",
        json={"model": "e", "input": "a red apple", "encoding_format": "base64"},
    ).json()
    packed = base64.b64decode(raw["data"][0]["embedding"])
    assert list(struct.unpack("<64f", packed)) == pytest.approx(vectors[0], abs=1e-6)


def test_embeddings_dimensions_and_determinism(client: openai.OpenAI) -> None:
    r = client.embeddings.create(model="e", input="hello", dimensions=8, encoding_format="float")
    assert len(r.data[0].embedding) == 8
    assert r.data[0].embedding == pytest.approx(embed("hello", 8))
    tokens = client.embeddings.create(model="e", input=[[1, 2, 3]], encoding_format="float")
    assert tokens.usage.prompt_tokens == 3


def test_models(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert {"demo-model", "demo-reasoner", "demo-embed"} <= set(ids)
    assert client.models.retrieve("demo-model").owned_by == "distill-guard"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_healthz_and_unknown_path(url: str) -> None:
    assert httpx.get(url + "/healthz").json() == {"status": "ok"}
    missing = httpx.post(url + "/v1/nothing", json={})
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {
            "message": "Invalid URL (POST /v1/nothing)",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    wrong_method = httpx.get(url + "/v1/chat/completions")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


def test_bad_requests_raise_sdk_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=[])
    assert info.value.body == {
        "message": "Invalid 'messages': empty array. Expected an array with minimum length 1.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "empty_array",
    }
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages="hi")  # type: ignore[arg-type]
    assert info.value.param == "messages" and info.value.code == "invalid_type"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], n=0)
    assert info.value.param == "n"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], top_logprobs=3
        )
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="m", prompt={"a": 1})  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="m", input=[], encoding_format="float")


def test_missing_messages_and_non_json(url: str) -> None:
    r = httpx.post(url + "/v1/chat/completions", json={"model": "m"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "messages"
    assert r.json()["error"]["code"] == "missing_required_parameter"
    r = httpx.post(url + "/v1/chat/completions", content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(url + "/v1/chat/completions", content=json.dumps([1, 2]))
    assert r.status_code == 400
