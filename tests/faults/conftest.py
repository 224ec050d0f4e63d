"""Fixtures of the fault tests: a real redis-server per test and a misbehaving upstream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import TimedStorage, Wait
from tests.faults.upstream import FaultUpstream
from tests.support.redis_server import RedisServer, start_redis_server


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with start_redis_server() as server:
        yield server


@pytest.fixture
def fault_upstream() -> Iterator[FaultUpstream]:
    with FaultUpstream() as upstream:
        yield upstream


def write_policy(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


__all__ = ["TimedStorage", "Wait", "write_policy"]
