"""Token accounting of `rate_shaping`: the reconciled count equals the upstream's usage.

A real gateway in front of the demo model, counters in a real Redis. Time stands
still: the gateway's Redis backend and the test's own second backend share one
FakeClock, so nothing drains from a bucket and its fill level, read after the
background settle, is exactly what the request was charged.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest

from gateway.clock import FakeClock
from gateway.identity import IdentityHasher
from gateway.storage.base import Acquire, identity_key
from gateway.storage.redis import RedisBackend
from gateway.tokens import estimate_input_tokens
from tests.integration.conftest import FIXTURES, GatewayFactory
from tests.support.redis_server import external_redis_url, start_redis_server

pytestmark = pytest.mark.redis

API_KEY = "sk-token-accounting"
IDENTITY = IdentityHasher(b"distill-guard-dev-secret").hash_key(API_KEY)
QUOTA = 1_000_000.0
DAY = 86_400.0
REDIS_TIMEOUT = 1.0  # generous: a 2-core box runs gateway, demo model and tests at once
SETTLE_TIMEOUT = 5.0
POLICIES = FIXTURES / "policies" / "rate_shaping"

PROMPT = "Describe how rivers shape valleys over thousands of years."
OPENAI_BODY: dict[str, Any] = {
    "model": "demo-model", "messages": [{"role": "user", "content": PROMPT}]}
ANTHROPIC_BODY: dict[str, Any] = {
    "model": "demo-model", "max_tokens": 600, "messages": [{"role": "user", "content": PROMPT}]}


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    url = external_redis_url()
    if url is not None:
        yield url
        return
    with start_redis_server() as server:
        yield server.url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@dataclass
class Buckets:
    """A second backend on the gateway's Redis, reading buckets at the gateway's (frozen) time."""

    backend: RedisBackend
    rule: str = ""

    def key(self, index: int) -> str:
        return identity_key(IDENTITY, "rs", self.rule, str(index), "")

    async def consumed(self, index: int = 0) -> float:
        """Units taken from limit `index` (a `QUOTA/day` bucket): a cost-0 admit peeks."""
        op = Acquire(self.key(index), QUOTA, DAY, QUOTA, cost=0)
        [result] = (await self.backend.admit([op])).results
        assert result.allowed
        return QUOTA - result.remaining

    async def settled(self, done: Callable[[float], bool], index: int = 0) -> float:
        """Poll until the background settle has run (`done(consumed)`); the last reading."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        value = await self.consumed(index)
        while not done(value) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            value = await self.consumed(index)
        return value

    async def settled_at(self, expected: float, index: int = 0) -> float:
        return await self.settled(lambda value: value == expected, index)

    async def in_flight(self, index: int) -> int:
        return int(await self.backend.client.zcard(self.key(index)))


@pytest.fixture
async def buckets(redis_url: str, clock: FakeClock) -> AsyncIterator[Buckets]:
    backend = RedisBackend.from_url(redis_url, timeout=REDIS_TIMEOUT, clock=clock)
    await backend.client.flushall()
    try:
        yield Buckets(backend)
    finally:
        await backend.aclose()


Start = Callable[..., AbstractContextManager[str]]


@pytest.fixture
def start(
    make_gateway: GatewayFactory, redis_url: str, clock: FakeClock, buckets: Buckets
) -> Start:
    """`with start("daily_tokens") as url:` a gateway enforcing that fixture policy on Redis."""

    def open_gateway(policy: str, **settings: Any) -> AbstractContextManager[str]:
        path = POLICIES / f"{policy}.yaml"
        buckets.rule = policy.replace("_", "-")
        storage = RedisBackend.from_url(redis_url, timeout=REDIS_TIMEOUT, clock=clock)
        return make_gateway(policy=path, storage=storage, **settings)

    return open_gateway


def openai_client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0)


def anthropic_client(url: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=url, api_key=API_KEY, max_retries=0)


def sse_data(lines: list[str]) -> list[str]:
    return [line.removeprefix("data:").strip() for line in lines if line.startswith("data:")]


# -- OpenAI ---------------------------------------------------------------------------------

async def test_openai_non_streamed(start: Start, buckets: Buckets) -> None:
    with start("daily_tokens") as url:
        async with openai_client(url) as client:
            reply = await client.chat.completions.create(**OPENAI_BODY)
    assert reply.usage is not None
    used = reply.usage.prompt_tokens + reply.usage.completion_tokens
    reserved = estimate_input_tokens(OPENAI_BODY) + 1024  # default_output_tokens
    assert used != reserved  # else a missing settle would go unnoticed
    assert await buckets.settled_at(used) == used


async def test_openai_stream_the_client_asked_usage_for(start: Start, buckets: Buckets) -> None:
    with start("daily_tokens") as url:
        async with openai_client(url) as client:
            stream = await client.chat.completions.create(
                **OPENAI_BODY, stream=True, stream_options={"include_usage": True})
            chunks = [chunk async for chunk in stream]
    usage_chunks = [c for c in chunks if not c.choices]
    assert len(usage_chunks) == 1, "the client asked for the usage chunk: it must get it"
    usage = usage_chunks[0].usage
    assert usage is not None
    used = usage.prompt_tokens + usage.completion_tokens
    assert await buckets.settled_at(used) == used


async def test_openai_stream_without_include_usage(
    start: Start, buckets: Buckets, demo_url: str
) -> None:
    """The gateway asks upstream for usage to count, and hides the extra chunk."""
    body = {**OPENAI_BODY, "stream": True}
    headers = {"authorization": f"Bearer {API_KEY}"}
    with start("daily_tokens") as url:
        async with httpx.AsyncClient(timeout=30) as http, http.stream(
            "POST", url + "/v1/chat/completions", json=body, headers=headers
        ) as resp:
            assert resp.status_code == 200
            data = sse_data([line async for line in resp.aiter_lines()])
        # The same request straight to the (deterministic) demo model, with usage.
        async with httpx.AsyncClient(timeout=30) as http:
            direct = await http.post(demo_url + "/v1/chat/completions",
                                     json={**body, "stream_options": {"include_usage": True}})
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert chunks and all(chunk["choices"] for chunk in chunks), "a usage-only chunk leaked"
    assert all(chunk.get("usage") is None for chunk in chunks)
    [usage] = [json.loads(d)["usage"] for d in sse_data(direct.text.splitlines())
               if d != "[DONE]" and json.loads(d)["choices"] == []]
    used = usage["prompt_tokens"] + usage["completion_tokens"]
    assert await buckets.settled_at(used) == used


async def test_shadow_rule_counts_real_usage_and_hides_its_usage_chunk(
    start: Start, buckets: Buckets
) -> None:
    """A shadow token limit must count what an enforced one would, invisibly."""
    with start("shadow_tokens") as url:
        async with openai_client(url) as client:
            stream = await client.chat.completions.create(**OPENAI_BODY, stream=True)
            chunks = [chunk async for chunk in stream]
            reply = await client.chat.completions.create(**OPENAI_BODY)
    assert all(chunk.choices for chunk in chunks), "the shadow rule's usage chunk leaked"
    assert reply.usage is not None
    used = reply.usage.prompt_tokens + reply.usage.completion_tokens  # same prompt, same answer
    assert await buckets.settled_at(2 * used) == 2 * used


# -- Anthropic ------------------------------------------------------------------------------

async def test_anthropic_stream(start: Start, buckets: Buckets) -> None:
    with start("daily_tokens") as url:
        async with anthropic_client(url) as client, client.messages.stream(
            **ANTHROPIC_BODY
        ) as stream:
            message = await stream.get_final_message()
    used = message.usage.input_tokens + message.usage.output_tokens
    assert message.usage.output_tokens > 1  # more than message_start's placeholder
    assert await buckets.settled_at(used) == used


async def test_anthropic_non_streamed(start: Start, buckets: Buckets) -> None:
    with start("daily_tokens") as url:
        async with anthropic_client(url) as client:
            message = await client.messages.create(**ANTHROPIC_BODY)
    used = message.usage.input_tokens + message.usage.output_tokens
    assert await buckets.settled_at(used) == used


# -- input and output limits ----------------------------------------------------------------

async def _openai_stream_usage(url: str) -> tuple[int, int]:
    async with openai_client(url) as client:
        stream = await client.chat.completions.create(
            **OPENAI_BODY, stream=True, stream_options={"include_usage": True})
        usage = [chunk.usage async for chunk in stream if chunk.usage is not None][-1]
    return usage.prompt_tokens, usage.completion_tokens


async def _anthropic_stream_usage(url: str) -> tuple[int, int]:
    async with anthropic_client(url) as client, client.messages.stream(
        **ANTHROPIC_BODY
    ) as stream:
        usage = (await stream.get_final_message()).usage
    return usage.input_tokens, usage.output_tokens


async def _openai_usage(url: str) -> tuple[int, int]:
    async with openai_client(url) as client:
        usage = (await client.chat.completions.create(**OPENAI_BODY)).usage
    assert usage is not None
    return usage.prompt_tokens, usage.completion_tokens


@pytest.mark.parametrize("call", [_openai_usage, _openai_stream_usage, _anthropic_stream_usage])
async def test_input_and_output_limits_get_their_own_part(
    start: Start, buckets: Buckets, call: Callable[[str], Awaitable[tuple[int, int]]]
) -> None:
    with start("split_tokens") as url:
        input_tokens, output_tokens = await call(url)
    assert await buckets.settled_at(output_tokens, index=1) == output_tokens
    assert await buckets.consumed(index=0) == input_tokens


# -- a stream the client cuts short ---------------------------------------------------------

CUT_MAX_TOKENS = 500


async def _read_a_few_events(
    url: str, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Start a stream, read its first events, and hang up."""
    events: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=30) as http, http.stream(
        "POST", url + path, json=body,
        headers={"authorization": f"Bearer {API_KEY}", **(headers or {})},
    ) as resp:
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line.removeprefix("data:")))
            if len(events) >= 8:
                break
    return events


def _openai_seen(events: list[dict[str, Any]]) -> tuple[int, int]:
    """(input tokens the gateway can know of, output chars the client saw): OpenAI."""
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    body = {**OPENAI_BODY, "max_tokens": CUT_MAX_TOKENS, "stream": True}
    return estimate_input_tokens(body), len(text)


def _anthropic_seen(events: list[dict[str, Any]]) -> tuple[int, int]:
    start = next(e for e in events if e["type"] == "message_start")
    text = "".join(e["delta"].get("text", "") for e in events
                   if e["type"] == "content_block_delta")
    return start["message"]["usage"]["input_tokens"], len(text)


CUT_CASES = [
    pytest.param("/v1/chat/completions", _openai_seen, id="openai"),
    pytest.param("/v1/messages", _anthropic_seen, id="anthropic"),
]


@pytest.mark.parametrize(("path", "seen"), CUT_CASES)
async def test_stream_cut_short_charges_what_was_sent_and_frees_the_slot(
    start: Start, buckets: Buckets, path: str,
    seen: Callable[[list[dict[str, Any]]], tuple[int, int]],
) -> None:
    body = {**OPENAI_BODY, "max_tokens": CUT_MAX_TOKENS, "stream": True}
    reserved = estimate_input_tokens(body) + CUT_MAX_TOKENS
    # A slow model (~10 s for a whole answer), so the client really hangs up mid-stream.
    with start("tokens_in_flight", upstream="demo", demo_word_delay=0.05) as url:
        events = await _read_a_few_events(url, path, body)
        charged = await buckets.settled(lambda value: value != reserved)
        input_tokens, output_chars = seen(events)
        assert output_chars > 0
        # Charged: the input, plus at least the output the client received (4 chars a
        # token); well under the reservation, as most of the answer was never sent.
        assert input_tokens + -(-output_chars // 4) <= charged < reserved
        assert charged < input_tokens + 100
        assert await buckets.in_flight(1) == 0
        # The `concurrent: 1` slot is free again: the next request goes through.
        async with openai_client(url) as client:
            reply = await client.chat.completions.create(**OPENAI_BODY, max_tokens=3)
        assert reply.choices[0].message.content


@pytest.mark.parametrize("second_id", [
    pytest.param("second-id", id="own-request-id"),
    pytest.param("first-id", id="reused-request-id"),  # a client's id cannot share a slot
])
async def test_second_request_in_flight_is_refused(start: Start, second_id: str) -> None:
    body = {**OPENAI_BODY, "stream": True}
    auth = {"authorization": f"Bearer {API_KEY}"}
    with start("tokens_in_flight", upstream="demo", demo_word_delay=0.05) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http, http.stream(
            "POST", "/v1/chat/completions", json=body, headers={**auth, "x-request-id": "first-id"}
        ) as first:
            assert first.status_code == 200
            # Read one line and keep the iterator referenced: a `break` out of
            # `async for` lets the generator be finalised, which closes the
            # response, and the gateway then (rightly) frees the slot.
            lines = first.aiter_lines()
            await lines.__anext__()  # the first request is in flight
            async with http.stream(
                "POST", "/v1/chat/completions", json=body,
                headers={**auth, "x-request-id": second_id},
            ) as second:
                assert second.status_code == 429
                assert "1 in flight" in json.loads(await second.aread())["error"]["message"]
