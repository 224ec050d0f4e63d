"""Limit dodging: every cheap-looking request is charged as docs/policies.md says.

Time stands still (a FakeClock drives the gateway's Redis backend and the
test's own reader of the buckets), so a bucket's fill level, read after the
background settle, is exactly what the requests were charged:

- a long prompt: its tokens (estimated at admission, then the upstream's
  `usage`); past what a bucket holds at once it is refused up front;
- many tiny requests, all at once: exactly the request limit gets through;
- a stream the client leaves early: the prompt plus ceil(characters sent / 4),
  never nothing, and its in-flight slot is given back;
- `n` > 1: max_tokens x n reserved; past the bucket, refused up front;
- huge `max_tokens`: refused up front with nothing taken.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.clock import FakeClock
from gateway.demo_upstream import DemoConfig, create_demo_app
from gateway.identity import IdentityHasher
from gateway.storage.base import Acquire, identity_key
from gateway.storage.redis import RedisBackend
from gateway.tokens import estimate_input_tokens, tokens_from_chars
from tests.hostile import tally
from tests.hostile.conftest import (
    IDENTITY_SECRET,
    Gateway,
    LogWatch,
    start_gateway,
    write_policy,
)
from tests.support.redis_server import RedisServer
from tests.support.server import serve_in_thread

pytestmark = pytest.mark.redis

DAY = 86_400.0
QUOTA = 1_000_000.0
REQUESTS, INPUT, OUTPUT, TOTAL, IN_FLIGHT = range(5)
# Redis expires a bucket's key when it would be full again, in real seconds, while
# the gateway's time stands still: buckets that refill slowly (1000 days) outlive
# the test, so what they hold is what was charged.
PERIOD = 1000 * DAY
METER = """
version: 1
rules:
  - name: meter
    kind: rate_shaping
    config:
      default_output_tokens: 1024
      limits:
        - requests: 1000000/1000day
        - input_tokens: 1000000/1000day
        - output_tokens: 1000000/1000day
        - total_tokens: 1000000/1000day
        - concurrent: 4
"""
TIGHT = """
version: 1
rules:
  - name: tight
    kind: rate_shaping
    config:
      limits:
        - requests: 20/1000day
        - input_tokens: 1000/1000day
        - output_tokens: 1000/1000day
"""
TIGHT_LIMITS = {REQUESTS: 20.0, INPUT: 1000.0, OUTPUT: 1000.0}
KEY = "sk-dodger-0042"
SETTLE_TIMEOUT = 10.0


class Buckets:
    """Reads the gateway's buckets in Redis at the gateway's (frozen) time."""

    def __init__(self, url: str, clock: FakeClock, rule: str, limits: dict[int, float]) -> None:
        self.backend = RedisBackend.from_url(url, timeout=2.0, clock=clock)
        self.rule = rule
        self.limits = limits
        self.identity = IdentityHasher(IDENTITY_SECRET.encode()).hash_key(KEY)

    def key(self, index: int) -> str:
        return identity_key(self.identity, "rs", self.rule, str(index), "")

    async def consumed(self, index: int) -> float:
        """Units taken from limit `index`: an admit of cost 0 peeks without taking."""
        quota = self.limits[index]
        [result] = (await self.backend.admit([Acquire(self.key(index), quota, PERIOD, quota,
                                                      cost=0)])).results
        return quota - result.remaining

    async def all(self) -> dict[int, float]:
        return {index: await self.consumed(index) for index in self.limits}

    async def settled(self, expected: dict[int, float]) -> dict[int, float]:
        """Poll until the background settle has written `expected` (or time is up)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        seen = await self.all()
        while any(seen[i] != v for i, v in expected.items()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            seen = await self.all()
        return seen

    async def in_flight(self) -> int:
        return int(await self.backend.client.zcard(self.key(IN_FLIGHT)))


@contextmanager
def _gateway(redis: RedisServer, upstream: str, tmp_path: Path, policy: str, clock: FakeClock,
             logwatch: LogWatch) -> Iterator[Gateway]:
    storage = RedisBackend.from_url(redis.url, timeout=2.0, clock=clock)
    with start_gateway(redis, upstream=upstream, policy=write_policy(tmp_path, policy),
                       storage=storage, watch=logwatch) as gw:
        yield gw


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def meter(redis: RedisServer, clock: FakeClock) -> AsyncIterator[Buckets]:
    buckets = Buckets(redis.url, clock, "meter", {i: QUOTA for i in range(4)})
    try:
        yield buckets
    finally:
        await buckets.backend.aclose()


@pytest.fixture
async def tight(redis: RedisServer, clock: FakeClock) -> AsyncIterator[Buckets]:
    buckets = Buckets(redis.url, clock, "tight", TIGHT_LIMITS)
    try:
        yield buckets
    finally:
        await buckets.backend.aclose()


OPENAI = {"authorization": f"Bearer {KEY}"}
ANTHROPIC = {"x-api-key": KEY}


def chat(content: str, **fields: Any) -> dict[str, Any]:
    return {"model": "demo-model", "messages": [{"role": "user", "content": content}], **fields}


def _usage(body: dict[str, Any]) -> tuple[int, int]:
    usage = body["usage"]
    if "prompt_tokens" in usage:
        return usage["prompt_tokens"], usage["completion_tokens"]
    return usage["input_tokens"], usage["output_tokens"]


async def test_long_prompt_is_charged_its_tokens(
        redis: RedisServer, demo_url: str, tmp_path: Path, clock: FakeClock, meter: Buckets,
        tight: Buckets, logwatch: LogWatch) -> None:
    row = tally.row("dodging: very long prompts (100 KB, 1 MB)")
    with _gateway(redis, demo_url, tmp_path, METER, clock, logwatch) as gw:
        async with httpx.AsyncClient(base_url=gw.url, timeout=60) as client:
            charged = {REQUESTS: 0.0, INPUT: 0.0, OUTPUT: 0.0, TOTAL: 0.0}
            for size in (100_000, 1_000_000):
                resp = await client.post("/v1/chat/completions", headers=OPENAI,
                                         json=chat("word " * (size // 5), max_tokens=20))
                row.add(resp.status_code)
                assert resp.status_code == 200, resp.text[:300]
                prompt, completion = _usage(resp.json())
                charged[REQUESTS] += 1
                charged[INPUT] += prompt
                charged[OUTPUT] += completion
                charged[TOTAL] += prompt + completion
                assert await meter.settled(charged) == charged
    # Past what a bucket holds at once: refused before the upstream, nothing taken.
    with _gateway(redis, demo_url, tmp_path, TIGHT, clock, logwatch) as gw:
        async with httpx.AsyncClient(base_url=gw.url, timeout=60) as client:
            body = chat("x" * 8000, max_tokens=5)
            assert estimate_input_tokens(body) > TIGHT_LIMITS[INPUT]
            resp = await client.post("/v1/chat/completions", headers=OPENAI, json=body)
            row.add(resp.status_code)
            assert resp.status_code == 429
            assert "more than the limit allows at once" in resp.json()["error"]["message"]
    assert await tight.all() == {REQUESTS: 0.0, INPUT: 0.0, OUTPUT: 0.0}


@pytest.mark.parametrize("path,body", [
    ("/v1/completions", {"model": "demo-model", "prompt": [1] * 5000, "max_tokens": 5}),
    ("/v1/completions", {"model": "demo-model", "prompt": [[1] * 3000, [2] * 2000],
                         "max_tokens": 5}),
    ("/v1/embeddings", {"model": "demo-model", "input": [7] * 4000}),
])
async def test_prompt_as_token_ids_is_counted_up_front(
        redis: RedisServer, demo_url: str, tmp_path: Path, clock: FakeClock, tight: Buckets,
        path: str, body: dict[str, Any], logwatch: LogWatch) -> None:
    """A prompt of token ids has no text: it was estimated at 0 tokens and passed a
    1000-token limit with 5000 tokens (charged after, overdrawing the bucket)."""
    row = tally.row("dodging: very long prompts given as token ids")
    with _gateway(redis, demo_url, tmp_path, TIGHT, clock, logwatch) as gw:
        async with httpx.AsyncClient(base_url=gw.url, timeout=60) as client:
            resp = await client.post(path, headers=OPENAI, json=body)
    row.add(resp.status_code)
    assert resp.status_code == 429, resp.text[:300]
    assert "more than the limit allows at once" in resp.text
    assert await tight.all() == {REQUESTS: 0.0, INPUT: 0.0, OUTPUT: 0.0}


async def test_many_tiny_requests_at_once_get_exactly_the_limit(
        redis: RedisServer, demo_url: str, tmp_path: Path, clock: FakeClock, tight: Buckets,
        logwatch: LogWatch) -> None:
    row = tally.row("dodging: 80 tiny requests at once (limit 20)")
    with _gateway(redis, demo_url, tmp_path, TIGHT, clock, logwatch) as gw:
        limits = httpx.Limits(max_connections=40)
        async with httpx.AsyncClient(base_url=gw.url, timeout=60, limits=limits) as client:
            tiny = [chat("", max_tokens=1), {"model": "demo-model", "prompt": "", "max_tokens": 1},
                    {"model": "demo-model", "max_tokens": 1,
                     "messages": [{"role": "user", "content": "."}]}]
            paths = ["/v1/chat/completions", "/v1/completions", "/v1/messages"]
            responses = await asyncio.gather(*(
                client.post(paths[i % 3], json=tiny[i % 3],
                            headers=ANTHROPIC if i % 3 == 2 else OPENAI)
                for i in range(80)))
    statuses = sorted(r.status_code for r in responses)
    for status in statuses:
        row.add(status)
    assert statuses == [200] * 20 + [429] * 60
    # the admitted ones are charged what the upstream says they used, no less
    used = [_usage(r.json()) for r in responses if r.status_code == 200]
    expected = {REQUESTS: 20.0, INPUT: float(sum(u[0] for u in used)),
                OUTPUT: float(sum(u[1] for u in used))}
    assert await tight.settled(expected) == expected


@pytest.fixture(scope="module")
def slow_demo() -> Iterator[str]:
    """The demo model streaming word by word, 20 ms apart."""
    with serve_in_thread(create_demo_app(DemoConfig(word_delay=0.02, paragraphs=5))) as url:
        yield url


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
async def test_stream_left_early_is_charged_what_was_sent(
        redis: RedisServer, slow_demo: str, tmp_path: Path, clock: FakeClock, meter: Buckets,
        dialect: str, logwatch: LogWatch) -> None:
    row = tally.row("dodging: streams left after the first events")
    path, headers = (("/v1/chat/completions", OPENAI) if dialect == "openai"
                     else ("/v1/messages", ANTHROPIC))
    body = chat("Tell me about rivers", max_tokens=2000, stream=True)
    with _gateway(redis, slow_demo, tmp_path, METER, clock, logwatch) as gw:
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
            seen = b""
            async with client.stream("POST", path, json=body, headers=headers) as resp:
                assert resp.status_code == 200
                async for chunk in resp.aiter_raw():
                    seen += chunk
                    if seen.count(b"data:") >= 6:
                        break  # and hang up mid-stream
            row.add(f"{resp.status_code} (left after 6 events)")
        await _until(lambda: _released(meter))
        await asyncio.sleep(0.3)
        consumed = await meter.all()
        assert await meter.in_flight() == 0, "the in-flight slot of the stream was not released"
    print(f"stream left early ({dialect}): charged {consumed}")
    received = _text_chars(seen)
    assert received > 0
    assert consumed[REQUESTS] == 1
    assert consumed[INPUT] > 0
    # charged what was sent (ceil(chars / 4), at least what this client read), not
    # the 2000 reserved, and never nothing
    assert tokens_from_chars(received) <= consumed[OUTPUT] < 2000, (received, consumed)
    assert consumed[TOTAL] == consumed[INPUT] + consumed[OUTPUT]


async def _released(meter: Buckets) -> bool:
    """The request is counted and its in-flight slot given back."""
    return await meter.consumed(REQUESTS) > 0 and not await meter.in_flight()


async def _until(done: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while not await done() and time.monotonic() < deadline:  # noqa: ASYNC110 (polls Redis)
        await asyncio.sleep(0.05)


def _text_chars(stream: bytes) -> int:
    """Characters of answer text in the complete SSE events of `stream`."""
    chars = 0
    for line in stream.split(b"\n"):
        if not line.startswith(b"data: {"):
            continue
        try:
            event = json.loads(line[6:])
        except ValueError:
            continue  # the last, cut-off line
        for choice in event.get("choices") or []:
            chars += len((choice.get("delta") or {}).get("content") or "")
        chars += len((event.get("delta") or {}).get("text") or "")
    return chars


async def test_n_samples_are_each_paid_for(
        redis: RedisServer, demo_url: str, tmp_path: Path, clock: FakeClock, meter: Buckets,
        tight: Buckets, logwatch: LogWatch) -> None:
    row = tally.row("dodging: n > 1 (and n not an integer)")
    with _gateway(redis, demo_url, tmp_path, METER, clock, logwatch) as gw:
        async with httpx.AsyncClient(base_url=gw.url, timeout=60) as client:
            resp = await client.post("/v1/chat/completions", headers=OPENAI,
                                     json=chat("hello", n=3, max_tokens=50))
            row.add(resp.status_code)
            assert resp.status_code == 200 and len(resp.json()["choices"]) == 3
            prompt, completion = _usage(resp.json())
            assert completion > 50  # three samples' worth
            expected = {REQUESTS: 1.0, INPUT: prompt, OUTPUT: completion,
                        TOTAL: prompt + completion}
            assert await meter.settled(expected) == expected
    with _gateway(redis, demo_url, tmp_path, TIGHT, clock, logwatch) as gw:
        async with httpx.AsyncClient(base_url=gw.url, timeout=60) as client:
            refused = await client.post("/v1/chat/completions", headers=OPENAI,
                                        json=chat("hi", n=4, max_tokens=300))  # 1200 > 1000
            row.add(refused.status_code)
            assert refused.status_code == 429
            assert "1200 output tokens" in refused.json()["error"]["message"]
            assert await tight.all() == {REQUESTS: 0.0, INPUT: 0.0, OUTPUT: 0.0}
            # n that is not an integer reserves one sample; the upstream refuses it
            # (400), and a refused call is charged its request and prompt, no output.
            for odd in (3.0, "3", True):
                resp = await client.post("/v1/chat/completions", headers=OPENAI,
                                         json=chat("hi", n=odd, max_tokens=300))
                row.add(resp.status_code)
                assert resp.status_code == 400, resp.text[:200]
            consumed = await tight.settled({REQUESTS: 3.0, OUTPUT: 0.0})
            assert consumed[REQUESTS] == 3 and consumed[OUTPUT] == 0


@pytest.mark.parametrize("path,field,value", [
    ("/v1/chat/completions", "max_tokens", 10**6),
    ("/v1/chat/completions", "max_completion_tokens", 2**31),
    ("/v1/chat/completions", "max_tokens", 2**63 - 1),
    ("/v1/completions", "max_tokens", 2**64 - 1),
    ("/v1/messages", "max_tokens", 10**9),
])
async def test_huge_max_tokens_is_refused_up_front(
        redis: RedisServer, demo_url: str, tmp_path: Path, clock: FakeClock, tight: Buckets,
        path: str, field: str, value: int, logwatch: LogWatch) -> None:
    row = tally.row("dodging: huge max_tokens / max_completion_tokens")
    body: dict[str, Any] = ({"model": "demo-model", "prompt": "hi"} if path == "/v1/completions"
                            else chat("hi"))
    body[field] = value
    with _gateway(redis, demo_url, tmp_path, TIGHT, clock, logwatch) as gw:
        async with httpx.AsyncClient(base_url=gw.url, timeout=60) as client:
            # httpx writes JSON with the stdlib: integers past 64 bits stay integers
            resp = await client.post(path, json=body,
                                     headers=ANTHROPIC if "messages" in path else OPENAI)
    row.add(resp.status_code)
    assert resp.status_code == 429, resp.text[:300]
    assert "more than the limit allows at once" in resp.text
    assert await tight.all() == {REQUESTS: 0.0, INPUT: 0.0, OUTPUT: 0.0}
