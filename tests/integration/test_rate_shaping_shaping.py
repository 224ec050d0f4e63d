"""`rate_shaping` as clients see it: delay, 429s the SDKs understand, headers, degrade,
limit keys and shadow mode. A real gateway on a socket, in-memory counters, real time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml
from anthropic.types import MessageParam
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.integration.conftest import GatewayFactory
from tests.support.server import serve_in_thread

CHAT = "/v1/chat/completions"
BODY: dict[str, Any] = {"model": "demo-model", "messages": [{"role": "user", "content": "hello"}]}
QUESTION = "Describe how rivers shape valleys."
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": QUESTION}]
ANTHROPIC_MESSAGES: list[MessageParam] = [{"role": "user", "content": QUESTION}]


def policy(config: dict[str, Any], *, name: str = "shape", shadow: bool = False,
           identity: dict[str, Any] | None = None) -> str:
    """A policy file with one `rate_shaping` rule."""
    rule: dict[str, Any] = {"name": name, "kind": "rate_shaping", "config": config}
    if shadow:
        rule["shadow"] = True
    document: dict[str, Any] = {"version": 1, "rules": [rule]}
    if identity is not None:
        document["identity"] = identity
    return yaml.safe_dump(document, sort_keys=False)


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def post(url: str, key: str, body: dict[str, Any] | None = None,
         headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(url + CHAT, json=body or BODY, headers={**auth(key), **(headers or {})},
                      timeout=30)


# -- delay --------------------------------------------------------------------------------

async def _timed_post(
    client: httpx.AsyncClient, key: str
) -> tuple[float, httpx.Response, float]:
    started = time.perf_counter()
    resp = await client.post(CHAT, json=BODY, headers=auth(key))
    return started, resp, time.perf_counter()


async def _warm(client: httpx.AsyncClient, connections: int) -> None:
    """Open the pool's connections first, so connects do not reorder the burst."""
    await asyncio.gather(*(client.get("/healthz") for _ in range(connections)))


async def test_delay_spreads_a_burst_in_arrival_order(make_gateway: GatewayFactory) -> None:
    text = policy({"on_exceed": "delay", "max_delay": 10,
                   "limits": [{"requests": "10/s", "burst": 1}]})
    with make_gateway(policy_text=text) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            await _warm(client, 50)
            tasks = []
            for _ in range(50):
                tasks.append(asyncio.create_task(_timed_post(client, "sk-delay")))
                await asyncio.sleep(0.005)
            results = await asyncio.gather(*tasks)
    statuses = [resp.status_code for _, resp, _ in results]
    assert statuses == [200] * 50, "delay must hold requests, never refuse them here"
    first_start = min(started for started, _, _ in results)
    finishes = [finished for _, _, finished in results]
    span = max(finishes) - first_start
    print(f"delay span for 50 requests at 10/s: {span:.3f}s")
    assert 4.0 < span < 7.0  # one slot per 100 ms: the 50th starts ~4.9 s after the first
    # Completion follows start order; only near-ties (<20 ms apart) may swap.
    inversions = [(i, j) for i in range(50) for j in range(i + 1, 50)
                  if finishes[j] < finishes[i] - 0.02]
    assert inversions == []


async def test_delay_queue_full_refuses_with_retry_after(make_gateway: GatewayFactory) -> None:
    """20 at once, `max_queue: 5`: the first fits the bucket and goes at once (it does not
    queue), the next 5 are held 0.2 .. 1.0 s, and the other 14 are refused."""
    text = policy({"on_exceed": "delay", "max_delay": 10, "max_queue": 5,
                   "limits": [{"requests": "5/s", "burst": 1}]})
    with make_gateway(policy_text=text) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            await _warm(client, 20)
            results = await asyncio.gather(*(_timed_post(client, "sk-queue") for _ in range(20)))
            admitted = sorted(done - started for started, resp, done in results
                              if resp.status_code == 200)
            refused = [resp for _, resp, _ in results if resp.status_code != 200]
            assert len(admitted) == 6 and len(refused) == 14
            assert admitted[-1] > 0.8  # the 5th held request waited ~1 s
            for resp in refused:
                assert resp.status_code == 429
                assert int(resp.headers["retry-after"]) >= 1
                assert 0 < int(resp.headers["retry-after-ms"]) <= 1000 * int(
                    resp.headers["retry-after"])
                assert resp.headers["x-ratelimit-remaining-requests"] == "0"
                error = resp.json()
                assert set(error) == {"error"}
                assert error["error"]["type"] == "rate_limit_error"
                assert error["error"]["code"] == "rate_limit_exceeded"
                assert set(error["error"]) == {"message", "type", "param", "code"}
            # Every held request left the queue when it finished: 5 may queue again.
            await asyncio.sleep(0.1)
            again = await asyncio.gather(*(_timed_post(client, "sk-queue") for _ in range(5)))
            assert [resp.status_code for _, resp, _ in again] == [200] * 5


async def test_one_identity_queue_does_not_delay_another(make_gateway: GatewayFactory) -> None:
    text = policy({"on_exceed": "delay", "max_delay": 10,
                   "limits": [{"requests": "10/s", "burst": 1}]})
    with make_gateway(policy_text=text) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            await _warm(client, 42)
            # A: one goes at once, 40 are held for 0.1 .. 4.0 s.
            queued = [asyncio.create_task(_timed_post(client, "sk-busy")) for _ in range(41)]
            await asyncio.sleep(0.3)
            started, resp, finished = await _timed_post(client, "sk-quiet")
            still_queued = sum(not task.done() for task in queued)
            for task in queued:
                task.cancel()  # hang up; the gateway drops them
            await asyncio.gather(*queued, return_exceptions=True)
    assert resp.status_code == 200
    assert still_queued >= 30
    assert finished - started < 1.0  # behind A's queue it would wait ~4 s


# -- 429s through the official SDKs -------------------------------------------------------

ONE_PER_MINUTE = policy({"limits": [{"requests": "1/min"}]})


def test_openai_sdk_raises_rate_limit_error(make_gateway: GatewayFactory) -> None:
    with make_gateway(policy_text=ONE_PER_MINUTE) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="sk-sdk", max_retries=0)
        client.chat.completions.create(model="demo-model", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="demo-model", messages=MESSAGES)
    error = caught.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    assert "Rate limit reached for requests" in error.message
    assert int(error.response.headers["retry-after"]) >= 59


def test_anthropic_sdk_raises_rate_limit_error(make_gateway: GatewayFactory) -> None:
    with make_gateway(policy_text=ONE_PER_MINUTE) as url:
        client = anthropic.Anthropic(base_url=url, api_key="sk-sdk", max_retries=0)
        client.messages.create(model="demo-model", max_tokens=50, messages=ANTHROPIC_MESSAGES)
        with pytest.raises(anthropic.RateLimitError) as caught:
            client.messages.create(model="demo-model", max_tokens=50, messages=ANTHROPIC_MESSAGES)
    error = caught.value
    assert error.status_code == 429
    assert error.body == {"type": "error", "error": {
        "type": "rate_limit_error", "message": error.body["error"]["message"]}}  # type: ignore[index]
    assert "retry-after-ms" in error.response.headers


def test_openai_sdk_retries_after_retry_after_ms(make_gateway: GatewayFactory) -> None:
    text = policy({"limits": [{"requests": "2/s", "burst": 1}]})
    with make_gateway(policy_text=text) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="sk-retry", max_retries=2)
        client.chat.completions.create(model="demo-model", messages=MESSAGES)
        started = time.perf_counter()
        raw = client.chat.completions.with_raw_response.create(
            model="demo-model", messages=MESSAGES)
        waited = time.perf_counter() - started
    assert raw.parse().choices[0].message.content
    assert raw.retries_taken == 1
    # It slept retry-after-ms (~500 ms), not the whole-second retry-after (1 s).
    assert 0.3 < waited < 0.9


def test_rate_limit_headers_on_success(make_gateway: GatewayFactory) -> None:
    text = policy({"limits": [{"requests": "100/min"}, {"total_tokens": "100000/min"}]})
    with make_gateway(policy_text=text) as url:
        resp = post(url, "sk-headers", {**BODY, "max_tokens": 100})
    assert resp.status_code == 200
    # Reserved: the prompt ("user" + "hello" = 9 chars -> 3 tokens, + 4 per message) + 100.
    assert {k: v for k, v in resp.headers.items() if "ratelimit" in k} == {
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-requests": "99",
        "x-ratelimit-reset-requests": "600ms",  # one request of 100/min is back in 0.6 s
        "x-ratelimit-limit-tokens": "100000",
        "x-ratelimit-remaining-tokens": "99893",
        "x-ratelimit-reset-tokens": "65ms",  # 107 tokens x 0.6 ms
        "ratelimit-policy": '"requests";q=100;w=60, "total_tokens";q=100000;w=60',
        "ratelimit": '"requests";r=99;t=1',
    }


def test_no_rate_limit_headers_when_turned_off(make_gateway: GatewayFactory) -> None:
    text = policy({"headers": False, "limits": [{"requests": "100/min"}]})
    with make_gateway(policy_text=text) as url:
        resp = post(url, "sk-quiet-headers")
    assert resp.status_code == 200
    assert not [k for k in resp.headers if "ratelimit" in k]


# -- degrade ------------------------------------------------------------------------------

DEGRADE = policy({"on_exceed": "degrade", "degrade": {"max_tokens": 5, "model": "demo-small"},
                  "limits": [{"requests": "2/min"}]})


def test_degrade_openai(make_gateway: GatewayFactory) -> None:
    with make_gateway(policy_text=DEGRADE) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="sk-degrade", max_retries=0)
        replies = [client.chat.completions.create(model="demo-model", messages=MESSAGES,
                                                  max_tokens=300) for _ in range(4)]
    for reply in replies[:2]:  # within the limit: untouched
        assert reply.model == "demo-model"
        assert reply.usage is not None and reply.usage.completion_tokens > 5
    for reply in replies[2:]:  # over it: cheaper model, clamped output, still a 200
        assert reply.model == "demo-small"
        assert reply.usage is not None and reply.usage.completion_tokens <= 5


def test_degrade_anthropic_stream(make_gateway: GatewayFactory) -> None:
    with make_gateway(policy_text=DEGRADE) as url:
        client = anthropic.Anthropic(base_url=url, api_key="sk-degrade", max_retries=0)
        messages = []
        for _ in range(3):
            with client.messages.stream(model="demo-model", max_tokens=300,
                                        messages=ANTHROPIC_MESSAGES) as stream:
                messages.append(stream.get_final_message())
    assert [m.model for m in messages] == ["demo-model", "demo-model", "demo-small"]
    assert messages[1].usage.output_tokens > 5
    assert messages[2].usage.output_tokens <= 5 and messages[2].stop_reason == "max_tokens"


def test_degraded_requests_still_count_against_other_rules(
    make_gateway: GatewayFactory,
) -> None:
    text = yaml.safe_dump({"version": 1, "rules": [
        {"name": "cheapen", "kind": "rate_shaping", "config": {
            "on_exceed": "degrade", "degrade": {"model": "demo-small"},
            "limits": [{"requests": "1/min"}]}},
        {"name": "hard-cap", "kind": "rate_shaping", "config": {
            "limits": [{"requests": "3/min"}]}},
    ]}, sort_keys=False)
    with make_gateway(policy_text=text) as url:
        statuses = [post(url, "sk-hydra").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]


@pytest.fixture(scope="module")
def capture_url() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An OpenAI-style upstream that records the bodies it receives."""
    seen: list[dict[str, Any]] = []

    async def chat(request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json()
        seen.append(body)
        return JSONResponse({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0,
            "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })

    with serve_in_thread(Starlette(routes=[Route(CHAT, chat, methods=["POST"])])) as url:
        yield url, seen


def test_degrade_clamps_the_token_field_the_client_used(
    make_gateway: GatewayFactory, capture_url: tuple[str, list[dict[str, Any]]]
) -> None:
    upstream, seen = capture_url
    text = policy({"on_exceed": "degrade", "degrade": {"max_tokens": 5},
                   "limits": [{"requests": "1/min"}]})
    with make_gateway(policy_text=text, upstream=upstream) as url:
        for _ in range(2):
            resp = post(url, "sk-reasoner", {**BODY, "max_completion_tokens": 100})
            assert resp.status_code == 200
    first, degraded = seen[-2:]
    assert first["max_completion_tokens"] == 100
    assert degraded["max_completion_tokens"] == 5
    assert "max_tokens" not in degraded


# -- who shares a limit -------------------------------------------------------------------

def test_identity_model_key_counts_each_model_apart(make_gateway: GatewayFactory) -> None:
    text = policy({"key": "identity_model", "limits": [{"requests": "1/min"}]})
    with make_gateway(policy_text=text) as url:
        assert post(url, "sk-models").status_code == 200
        assert post(url, "sk-models").status_code == 429
        assert post(url, "sk-models", {**BODY, "model": "demo-reasoner"}).status_code == 200
        assert post(url, "sk-models", {**BODY, "model": "demo-reasoner"}).status_code == 429
        assert post(url, "sk-other-key").status_code == 200  # and each identity apart


def test_tier_key_shares_one_bucket_per_tier(make_gateway: GatewayFactory) -> None:
    text = policy({"key": "tier", "limits": [{"requests": "2/min"}]},
                  identity={"tier_header": "x-tier"})
    with make_gateway(policy_text=text) as url:
        assert post(url, "sk-gold-1", headers={"x-tier": "gold"}).status_code == 200
        assert post(url, "sk-gold-2", headers={"x-tier": "gold"}).status_code == 200
        assert post(url, "sk-gold-1", headers={"x-tier": "gold"}).status_code == 429
        assert post(url, "sk-gold-3", headers={"x-tier": "gold"}).status_code == 429
        assert post(url, "sk-gold-1", headers={"x-tier": "free"}).status_code == 200


def test_global_key_shares_across_identities(make_gateway: GatewayFactory) -> None:
    text = policy({"key": "global", "limits": [{"requests": "2/min"}]})
    with make_gateway(policy_text=text) as url:
        assert post(url, "sk-global-1").status_code == 200
        assert post(url, "sk-global-2").status_code == 200
        assert post(url, "sk-global-3").status_code == 429
        resp = httpx.post(url + CHAT, json=BODY)  # anonymous: counted too
        assert resp.status_code == 429


def test_identity_key_is_the_default(make_gateway: GatewayFactory) -> None:
    with make_gateway(policy_text=ONE_PER_MINUTE) as url:
        assert post(url, "sk-one").status_code == 200
        assert post(url, "sk-two").status_code == 200
        assert post(url, "sk-one").status_code == 429


# -- shadow -------------------------------------------------------------------------------

def _decisions(url: str, rule: str) -> dict[str, float]:
    """decision -> count of `distill_guard_rule_decisions_total` for a shadow rule."""
    text = httpx.get(url + "/metrics").text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (sample.name == "distill_guard_rule_decisions_total"
                    and labels.get("rule") == rule and labels.get("shadow") == "true"):
                assert labels["kind"] == "rate_shaping"
                out[labels["decision"]] = sample.value
    return out


def test_shadow_rule_counts_but_never_refuses(make_gateway: GatewayFactory) -> None:
    text = policy({"limits": [{"requests": "1/min"}]}, name="shadow-requests", shadow=True)
    with make_gateway(policy_text=text) as url:
        before = _decisions(url, "shadow-requests")  # metrics are process-wide
        responses = [post(url, "sk-shadow") for _ in range(4)]
        after = _decisions(url, "shadow-requests")
    assert [r.status_code for r in responses] == [200] * 4
    assert not [k for r in responses for k in r.headers if "ratelimit" in k]
    assert after.get("reject", 0) - before.get("reject", 0) == 3
    assert after.get("allow", 0) - before.get("allow", 0) == 1
