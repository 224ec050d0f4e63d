"""What only the Redis backend must show: one command per call, errors, real TIME."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.clock import FakeClock
from gateway.storage import (
    Acquire,
    Adjust,
    AdmitOp,
    Lease,
    MergeState,
    Observe,
    ObserveResult,
    RedisBackend,
    Release,
    StorageError,
    identity_key,
)
from tests.support.redis_server import RedisServer, external_redis_url, start_redis_server

pytestmark = pytest.mark.redis

RPM = identity_key("user-1", "rpm")
FIVE_OPS: list[AdmitOp] = [
    Acquire(RPM, rate=10, period=60, burst=10),
    Acquire(identity_key("user-1", "rps"), rate=2, period=1, burst=2, group=1),
    Acquire(identity_key("user-1", "tpm"), rate=1000, period=60, burst=1000, cost=5),
    Acquire(identity_key("user-1", "tpd"), rate=10**5, period=86400, burst=10**5, cost=0),
    Lease(identity_key("user-1", "slots"), limit=4, lease_id="req-1"),
]
SIGNALS = identity_key("user-1", "pd", "rule")
# Buckets, a lease and sliding-window signals of every sort, in one call.
MIXED_OPS: list[AdmitOp] = [
    *FIVE_OPS,
    Observe(SIGNALS, 3600, 6, members=(("p", "prompt-1"), ("t", "tpl-1"), ("b", "7"), ("b", "9")),
            counters=(("n", 1.0), ("r", 0.0)), tally_member="tpl-1", read_state=True),
    Observe(identity_key("user-1", "pd", "other"), 60, 3, members=(("p", "x"),), group=1),
]


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of this test's own, to stop, pause and restart."""
    if external_redis_url() is not None:
        pytest.skip("fault tests start their own redis-server; REDIS_URL is set")
    with start_redis_server() as server:
        yield server


def command_calls(info: dict[str, Any]) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


async def test_admit_and_settle_are_one_command_each(redis_url: str, clock: FakeClock) -> None:
    backend = RedisBackend.from_url(redis_url, timeout=1.0, clock=clock)
    inspector = Redis.from_url(redis_url, decode_responses=True)
    watcher = Redis.from_url(redis_url, decode_responses=True)
    slots = identity_key("user-1", "slots")
    try:
        await backend.admit(MIXED_OPS)  # warm up: connect and load the scripts
        await backend.settle([Release(slots, "req-1")])
        clock.advance(600)  # a new sub-window, with history: every read path runs
        before = command_calls(await inspector.info("commandstats"))
        async with watcher.monitor() as monitor:
            admission = await backend.admit(MIXED_OPS)
            await backend.settle([Adjust(RPM, rate=10, period=60, burst=10, delta=2),
                                  Release(slots, "req-1"),
                                  MergeState(SIGNALS, (("s", "0.5"),), ttl=3600)])
            await inspector.echo("end-of-test")  # the marker, on a warm connection
            seen = []
            async with asyncio.timeout(5):
                while "end-of-test" not in (cmd := await monitor.next_command())["command"]:
                    seen.append(cmd)
        after = command_calls(await inspector.info("commandstats"))
    finally:
        await watcher.aclose()
        await inspector.aclose()
        await backend.aclose()
    observed = admission.results[len(FIVE_OPS)]
    assert isinstance(observed, ObserveResult)
    assert (observed.totals, observed.tally) == ({"n": 2.0, "r": 0.0}, 2.0)
    from_clients = [c["command"].split()[0].lower() for c in seen if c["client_type"] != "lua"]
    assert from_clients == ["evalsha", "evalsha"]
    # commandstats also count what scripts run inside; besides the watcher's own
    # handshake and the inspector's commands, nothing else may have moved.
    from_scripts = {c["command"].split()[0].lower() for c in seen if c["client_type"] == "lua"}
    moved = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert moved.pop("evalsha") == 2
    assert set(moved) - {"hello", "monitor", "info", "echo"} <= from_scripts


async def test_storage_error_when_down_and_recovery(own_server: RedisServer) -> None:
    clock = FakeClock()
    backend = RedisBackend.from_url(own_server.url, timeout=0.2, clock=clock)
    op = Acquire(RPM, rate=10, period=60, burst=10)
    try:
        assert (await backend.admit([op])).results[0].remaining == 9
        own_server.stop()
        with pytest.raises(StorageError):
            await backend.admit([op])
        with pytest.raises(StorageError):
            await backend.settle([Adjust(RPM, rate=10, period=60, burst=10, delta=1)])
        with pytest.raises(StorageError):
            await backend.ping()
        own_server.start()  # same port, empty data, empty script cache
        await backend.ping()
        assert (await backend.admit([op])).results[0].remaining == 9
    finally:
        await backend.aclose()


async def test_a_hung_server_times_out(own_server: RedisServer) -> None:
    backend = RedisBackend.from_url(own_server.url, timeout=0.1, clock=FakeClock())
    op = Acquire(RPM, rate=10, period=60, burst=10)
    try:
        await backend.admit([op])
        own_server.pause()
        started = time.monotonic()
        with pytest.raises(StorageError):
            await backend.admit([op])
        assert time.monotonic() - started < 1.0
        own_server.resume()
        # The timed-out call may still have run once the server woke up.
        assert (await backend.admit([op])).results[0].remaining in (7, 8)
    finally:
        own_server.resume()
        await backend.aclose()


async def test_refused_connection_fails_fast() -> None:
    from tests.support.redis_server import free_port

    backend = RedisBackend.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout=0.1)
    try:
        with pytest.raises(StorageError):
            await backend.admit([Acquire(RPM, rate=10, period=60, burst=10)])
    finally:
        await backend.aclose()


async def test_script_errors_are_storage_errors(redis_url: str) -> None:
    backend = RedisBackend.from_url(redis_url, timeout=1.0)
    try:
        await backend.client.flushall()
        await backend.client.set(RPM, "not a tat")
        with pytest.raises(StorageError):
            await backend.admit([Acquire(RPM, rate=10, period=60, burst=10)])
    finally:
        await backend.aclose()


async def test_redis_time_when_no_clock_is_injected(redis_url: str) -> None:
    backend = RedisBackend.from_url(redis_url, timeout=1.0)
    op = Acquire(RPM, rate=5, period=1, burst=5)
    try:
        await backend.client.flushall()
        admitted = [await backend.admit([op]) for _ in range(6)]
    finally:
        await backend.aclose()
    assert [a.results[0].allowed for a in admitted] == [True] * 5 + [False]
    assert 0 < admitted[-1].results[0].retry_after <= 0.2
    assert abs(admitted[0].now - time.time()) < 5  # the server's clock, not a fake one


async def test_observe_on_redis_time(redis_url: str) -> None:
    backend = RedisBackend.from_url(redis_url, timeout=1.0)
    op = Observe(SIGNALS, 60, 6, members=(("p", "a"),), counters=(("n", 1.0),), tally_member="a")
    try:
        await backend.client.flushall()
        await backend.admit([op])
        second = (await backend.admit([op])).results[0]
        keys = {k.decode() for k in await backend.client.keys()}
    finally:
        await backend.aclose()
    assert isinstance(second, ObserveResult)
    assert (second.distinct, second.totals, second.tally) == ({"p": 1.0}, {"n": 2.0}, 2.0)
    slot = int(time.time() // 10)  # the server's clock picks the sub-window
    assert keys
    assert keys <= {f"{SIGNALS}:{s}:{suffix}" for s in (slot - 1, slot, slot + 1)
                    for suffix in ("s:p", "c")}


# The product budget for what an identity costs Redis once it has gone quiet.
IDLE_IDENTITY_BUDGET = 2048


async def test_memory_per_idle_identity(redis_url: str, clock: FakeClock) -> None:
    """used_memory / identity after 1000 identities each observed once (4 sets,
    4 counters, a tally) with their state hash written: what an identity that
    made one request holds until its keys expire."""
    backend = RedisBackend.from_url(redis_url, timeout=1.0, clock=clock)
    n = 1000
    try:
        await backend.client.flushall()
        before = int((await backend.client.info("memory"))["used_memory"])
        for i in range(n):
            key = identity_key(f"{i:016x}", "pd", "diversity")  # 16 hex chars, as identity.py
            await backend.admit([Observe(
                key, 3600, 6,
                members=tuple((f"s{k}", f"{i:016x}{k:016x}") for k in range(4)),
                counters=tuple((f"c{k}", 1.0) for k in range(4)),
                tally_member=f"{i % 50:016x}", read_state=True,
            )])
            await backend.settle([MergeState(key, (
                ("s", repr(0.123456789)), ("at", repr(clock.now())), ("peers", "0.0"),
                ("peers_t", f"{i % 50:016x}"),
            ), ttl=3600)])
        after = int((await backend.client.info("memory"))["used_memory"])
        assert await backend.client.dbsize() == 6 * n
    finally:
        await backend.aclose()
    per_identity = (after - before) / n
    print(f"redis memory per idle identity: {per_identity:.0f} bytes")
    assert per_identity <= IDLE_IDENTITY_BUDGET
