"""Hostile input: the gateway in-process on a real socket, a real redis-server per test.

    with start_gateway(redis) as gw:      # policies/default.yaml, the demo model upstream
        gw.url, gw.port, gw.app           # gw.app.state: the running GatewayState

Every test here runs under `logwatch` (autouse): a handler on the root and
uvicorn loggers that fails the test when the gateway logged an error, an
exception with a traceback or "unexpected error".

Hypothesis: `PROFILE` (deadline off, health checks that only measure speed
off) and `examples(n)`: `n` in the default run, ten times `n` with
`HYPOTHESIS_PROFILE=long` for a longer local run. Profiles are applied per
test, never loaded globally, so other suites keep theirs.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from gateway.app import GatewayApp, create_app
from gateway.demo_upstream import DemoConfig, create_demo_app
from gateway.settings import Settings
from gateway.state import GatewayState
from gateway.storage.base import CounterBackend
from tests.hostile import tally
from tests.support.redis_server import RedisServer, start_redis_server
from tests.support.server import serve_in_thread

REPO = Path(__file__).resolve().parents[2]
DEFAULT_POLICY = REPO / "policies" / "default.yaml"
POLICIES = sorted((REPO / "policies").glob("*.yaml"))

# Known secrets: the tests grep everything the gateway emits for them.
IDENTITY_SECRET = "hostile-identity-secret-7d0c2b1e9a55"
WATERMARK_SECRET = "hostile-watermark-secret-41f9e6a2c8d3"
ADMIN_TOKEN = "hostile-admin-token-0b5e8c3d71a6f2"

settings.register_profile(
    "hostile", deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.large_base_example],
)
settings.register_profile("hostile-long", settings.get_profile("hostile"))
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
PROFILE = settings.get_profile("hostile-long" if LONG else "hostile")


def examples(n: int) -> int:
    """Hypothesis examples for a test: `n` by default, 10 n with HYPOTHESIS_PROFILE=long."""
    return n * 10 if LONG else n


# -- logs ------------------------------------------------------------------------------

_PROBLEM_TEXT = ("unexpected error", "Traceback", "Exception in ASGI application")


class LogWatch(logging.Handler):
    """Keeps WARNING+ records from the gateway, uvicorn and everything else."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self.expected: list[tuple[str, str]] = []

    def expect(self, logger: str, message: str) -> None:
        """Errors a test provokes on purpose (no traceback): not problems."""
        self.expected.append((logger, message))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def attach(self) -> None:
        """(Re)attach: uvicorn's dictConfig drops handlers of its loggers at every start."""
        for name in ("", "uvicorn", "uvicorn.error"):
            logger = logging.getLogger(name)
            if self not in logger.handlers:
                logger.addHandler(self)

    def detach(self) -> None:
        for name in ("", "uvicorn", "uvicorn.error"):
            logging.getLogger(name).removeHandler(self)

    def problems(self) -> list[str]:
        out = []
        for record in self.records:
            text = record.getMessage()
            if not record.exc_info and (record.name, text) in self.expected:
                continue
            if record.exc_info:
                text += "\n" + "".join(traceback.format_exception(*record.exc_info))
            if record.levelno >= logging.ERROR or record.exc_info or any(
                    marker in text for marker in _PROBLEM_TEXT):
                out.append(f"{record.name} {record.levelname}: {text[:3000]}")
        return out


@pytest.fixture(autouse=True)
def logwatch() -> Iterator[LogWatch]:
    watch = LogWatch()
    watch.attach()
    try:
        yield watch
    finally:
        watch.detach()
    problems = watch.problems()
    assert not problems, "the gateway logged errors:\n" + "\n".join(problems[:5])


# -- servers ---------------------------------------------------------------------------

@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A fresh redis-server on a free port, for this test alone."""
    with start_redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def demo_url() -> Iterator[str]:
    """The demo model, answering at once (its benchmark mode)."""
    with serve_in_thread(create_demo_app(DemoConfig(fast=True))) as url:
        yield url


@dataclass
class Gateway:
    url: str
    app: GatewayApp

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def state(self) -> GatewayState:
        assert self.app.state is not None
        return self.app.state


@contextmanager
def start_gateway(
    redis: RedisServer | None, *, upstream: str, policy: Path | str = DEFAULT_POLICY,
    storage: CounterBackend | None = None, watch: LogWatch | None = None, **overrides: Any,
) -> Iterator[Gateway]:
    """The gateway in this process on a loopback port, counters on `redis`."""
    options: dict[str, Any] = {
        "policy": Path(policy), "upstream": upstream,
        "redis": redis.url if redis is not None else "memory",
        "identity_secret": IDENTITY_SECRET, "watermark_secret": WATERMARK_SECRET,
        "admin_token": ADMIN_TOKEN, "policy_watch_interval": 0,
        # generous: a 2-core box runs gateway, demo model, Redis and the test at once
        "redis_timeout_ms": 2000,
    }
    options.update(overrides)
    app = create_app(Settings(**options), storage=storage)
    with serve_in_thread(app) as url:
        if watch is not None:
            watch.attach()
        yield Gateway(url, app)


def write_policy(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- the tally -------------------------------------------------------------------------

def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    if not tally.ROWS:
        return
    rows = tally.as_json()
    if getattr(config, "cache", None) is not None:  # -p no:cacheprovider has none
        config.cache.set("hostile/tally", rows)
    terminalreporter.section("hostile input: what was sent, what came back")
    for name, entry in rows.items():
        outcomes = ", ".join(f"{k}: {v}" for k, v in entry["outcomes"].items())  # type: ignore[attr-defined]
        terminalreporter.write_line(f"{name}: {entry['count']} ({outcomes})")


def pytest_collection_modifyitems(config: Any, items: list[pytest.Item]) -> None:
    """The long profile runs ten times the examples: give its tests time for them."""
    if LONG:
        here = Path(__file__).parent
        for item in items:
            if here in Path(str(item.fspath)).parents:
                item.add_marker(pytest.mark.timeout(1800))
