"""The hot path's pipelined Redis connection (gateway/storage/resp.py), on a real server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.storage import RedisBackend
from gateway.storage.resp import PipelinedRedis
from tests.support.redis_server import RedisServer, start_redis_server

pytestmark = pytest.mark.redis


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with start_redis_server() as own:
        yield own


def client_for(server: RedisServer, timeout: float = 1.0, **kwargs: object) -> PipelinedRedis:
    return PipelinedRedis(host="127.0.0.1", port=server.port, timeout=timeout,
                          connect_timeout=1.0, **kwargs)  # type: ignore[arg-type]


async def test_concurrent_calls_get_their_own_replies(server: RedisServer) -> None:
    client = client_for(server)
    try:
        replies = await asyncio.gather(*[client.execute("ECHO", f"n{i}") for i in range(500)])
        assert replies == [f"n{i}".encode() for i in range(500)]
    finally:
        await client.aclose()


async def test_errors_are_redis_py_exceptions(server: RedisServer) -> None:
    client = client_for(server)
    try:
        with pytest.raises(NoScriptError):
            await client.execute("EVALSHA", "0" * 40, 0)
        with pytest.raises(ResponseError):
            await client.execute("INCR", "a", "b")
        assert await client.execute("PING") == b"PONG"  # the connection is still in step
    finally:
        await client.aclose()


async def test_a_late_reply_after_a_timeout_goes_to_nobody(server: RedisServer) -> None:
    client = client_for(server, timeout=0.1)
    try:
        await client.execute("SET", "k", "before")
        server.pause()
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            await client.execute("GET", "k")
        assert time.monotonic() - started < 0.5
        server.resume()
        # The timed-out GET's reply arrives first; it must not be taken for this ECHO's.
        assert await client.execute("ECHO", "after") == b"after"
    finally:
        server.resume()
        await client.aclose()


async def test_lost_connection_fails_waiters_then_reconnects(server: RedisServer) -> None:
    client = client_for(server, timeout=2.0)
    try:
        assert await client.execute("PING") == b"PONG"
        server.pause()
        waiting = asyncio.ensure_future(client.execute("PING"))
        await asyncio.sleep(0.05)
        server.kill()
        with pytest.raises(RedisConnectionError):
            await waiting
        server.start()
        assert await client.execute("PING") == b"PONG"
    finally:
        await client.aclose()


async def test_refused_connection_is_a_connection_error(server: RedisServer) -> None:
    client = client_for(server)
    server.stop()
    with pytest.raises(RedisConnectionError):
        await client.execute("PING")
    await client.aclose()


async def test_password_and_database(server: RedisServer) -> None:
    admin = Redis(host="127.0.0.1", port=server.port)
    admin.config_set("requirepass", "s3cret")
    admin.close()
    client = client_for(server, password="s3cret", db=3)
    try:
        await client.execute("SET", "in-db-3", "yes")
        check = Redis(host="127.0.0.1", port=server.port, password="s3cret", db=3)
        assert check.get("in-db-3") == b"yes"
        check.close()
    finally:
        await client.aclose()
    wrong = client_for(server, password="nope")
    with pytest.raises(ResponseError):
        await wrong.execute("PING")
    await wrong.aclose()


async def test_backend_from_url_uses_it_for_scripts(server: RedisServer) -> None:
    backend = RedisBackend.from_url(server.url + "", timeout=1.0)
    try:
        assert backend._pipelined is not None  # a plain redis:// URL takes the fast path
        tls = RedisBackend.from_url("rediss://127.0.0.1:1/0", timeout=1.0)
        assert tls._pipelined is None  # TLS stays on redis-py
        await tls.aclose()
    finally:
        await backend.aclose()
