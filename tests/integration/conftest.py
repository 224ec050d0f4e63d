"""Real servers on loopback sockets: the demo model and the gateway in front of it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.demo_upstream import create_demo_app
from gateway.settings import Settings
from gateway.storage.base import CounterBackend
from tests.support.server import serve_in_thread

FIXTURES = Path(__file__).parents[1] / "fixtures"

GatewayFactory = Callable[..., AbstractContextManager[str]]


@pytest.fixture(scope="session")
def demo_url() -> Iterator[str]:
    with serve_in_thread(create_demo_app()) as url:
        yield url


@pytest.fixture
def make_gateway(demo_url: str, tmp_path: Path) -> GatewayFactory:
    """Start a gateway: `with make_gateway(policy_text=..., upstream=...) as url:`."""

    @contextmanager
    def start(policy_text: str | None = None, storage: CounterBackend | None = None,
              **overrides: Any) -> Iterator[str]:
        if policy_text is not None:
            policy_file = tmp_path / "policy.yaml"
            policy_file.write_text(policy_text)
            overrides.setdefault("policy", policy_file)
        overrides.setdefault("upstream", demo_url)
        overrides.setdefault("redis", "memory")
        with serve_in_thread(create_app(Settings(**overrides), storage=storage)) as url:
            yield url

    return start


@pytest.fixture
def gateway_url(make_gateway: GatewayFactory) -> Iterator[str]:
    with make_gateway() as url:
        yield url
