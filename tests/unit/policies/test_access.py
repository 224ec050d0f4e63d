"""The `access` kind, driven through the chain with the memory backend."""

from __future__ import annotations

import pytest

from gateway.errors import Dialect, GatewayError
from gateway.identity import Identity
from gateway.pipeline.chain import Chain
from gateway.pipeline.context import RequestContext
from gateway.pipeline.loader import parse_policy
from gateway.storage.memory import MemoryBackend

POLICY = """
version: 1
rules:
  - name: gate
    kind: access
    config:
      allow_models: ["demo-*"]
      deny_models: ["demo-secret"]
      deny_paths: ["/v1/files*"]
      deny_headers: {x-client: ["scraper*"], x-tool: ["harvest"]}
"""


def ctx(path: str = "/v1/chat/completions", model: str = "demo-model",
        headers: list[tuple[bytes, bytes]] | None = None) -> RequestContext:
    body = f'{{"model": "{model}", "messages": []}}'.encode()
    return RequestContext(
        request_id="r", method="POST", path=path, query=b"", headers=headers or [],
        client_ip="127.0.0.1", dialect=Dialect.OPENAI, identity=Identity("id", True),
        body=body, started=0.0, is_model_route=path == "/v1/chat/completions",
    )


@pytest.fixture
def chain() -> Chain:
    return Chain.from_policy(parse_policy(POLICY))


async def status(chain: Chain, request: RequestContext) -> int:
    try:
        await chain.run_request(request, MemoryBackend())
    except GatewayError as error:
        return error.status
    return 200


async def test_models(chain: Chain) -> None:
    assert await status(chain, ctx()) == 200
    assert await status(chain, ctx(model="gpt-4")) == 403
    assert await status(chain, ctx(model="demo-secret")) == 403


async def test_paths(chain: Chain) -> None:
    assert await status(chain, ctx(path="/v1/files/abc")) == 404


async def test_any_denied_header_refuses(chain: Chain) -> None:
    assert await status(chain, ctx(headers=[(b"x-client", b"scraper-2")])) == 403
    assert await status(chain, ctx(headers=[(b"x-tool", b"harvest")])) == 403
    assert await status(chain, ctx(headers=[(b"x-client", b"browser")])) == 200
