"""Memory stays flat under a few thousand hostile requests.

The gateway, the demo model and the client live in this process. A warm-up
phase first fills every bounded structure the traffic can reach (connection
pools, the identity cache, per-identity standings, metric children, rate
buckets) with the same identities as the measured phase; what the measured
phase leaves behind is then growth per request, not a cache filling up.

Two measures, each with a stated slack, after the measured phase:
- GC-tracked objects alive (`gc.get_objects()`): at most OBJECT_SLACK more,
  i.e. fewer than one object per request: a leaked context, task, dict or
  list per request is several per request;
- resident memory (VmRSS): at most RSS_SLACK more over MEASURED requests
  (~5 KiB a request): a leaked body or response per request is more, and the
  mix holds 100 KB prompts.
tracemalloc would be exact but makes this process ~5x slower; it is used
below only for the short huge-key test.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from collections.abc import Iterator

import httpx
import pytest

from tests.hostile import rawhttp, tally
from tests.hostile.conftest import LONG, Gateway, LogWatch, start_gateway
from tests.hostile.strategies import FuzzRequest, corpus
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis

KEYS = ("sk-mem-one-1111", "sk-mem-two-2222", "sk-mem-three-3333", "sk-mem-four-4444",
        "sk-mem-five-5555", "sk-mem-six-6666", "sk-mem-seven-7777",
        "sk-mem-" + "w" * 4000)  # one long key: a 4 KB header now and then
WARMUP = 400
MEASURED = 6000 if LONG else 1600
OBJECT_SLACK = 1000
RSS_SLACK = 8 * 1024 * 1024
CONCURRENCY = 8


@pytest.fixture
def gateway(redis: RedisServer, demo_url: str, logwatch: LogWatch) -> Iterator[Gateway]:
    with start_gateway(redis, upstream=demo_url, watch=logwatch) as gw:
        yield gw


def _headers(request: FuzzRequest) -> list[tuple[bytes, bytes]]:
    headers = []
    if request.content_type is not None:
        headers.append((b"Content-Type", request.content_type))
    if request.key == "two-keys":
        headers += [(b"Authorization", b"Bearer sk-a"), (b"x-api-key", b"sk-b")]
    elif request.key is not None:
        key = request.key.encode()
        headers.append((b"x-api-key", key) if request.dialect == "anthropic"
                       else (b"Authorization", b"Bearer " + key))
    return headers


async def _read_response(reader: asyncio.StreamReader, *, leave: bool) -> tuple[int, bool]:
    """Read one response off a keep-alive connection: (status, connection still usable)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip().lower()
    if b"content-length" in fields:
        await reader.readexactly(int(fields[b"content-length"]))
        return status, fields.get(b"connection") != b"close"
    while True:  # chunked
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        await reader.readexactly(size + 2)
        if leave:
            return status, False  # first chunk read: hang up mid-stream
        if size == 0:
            return status, fields.get(b"connection") != b"close"


async def _drive(port: int, requests: list[FuzzRequest], row: tally.Row) -> None:
    """CONCURRENCY keep-alive connections over raw sockets (an HTTP client library
    would cost this one process more CPU than the gateway it measures)."""
    queue: asyncio.Queue[tuple[int, FuzzRequest]] = asyncio.Queue()
    for item in enumerate(requests):
        queue.put_nowait(item)

    async def worker() -> None:
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while not queue.empty():
            index, request = queue.get_nowait()
            if connection is None:
                connection = await asyncio.open_connection("127.0.0.1", port)
            reader, writer = connection
            leave = index % 3 == 0 and b'"stream": true' in request.body
            writer.write(rawhttp.build(request.method.encode(), request.path.encode(),
                                       _headers(request), request.body, close=False))
            status, reusable = await asyncio.wait_for(_read_response(reader, leave=leave), 60)
            assert status < 500, (status, request)
            row.add(f"{status} (left mid-stream)" if leave else status)
            if not reusable:
                writer.close()
                connection = None
        if connection is not None:
            connection[1].close()

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def _settled(gw: Gateway) -> None:
    """Give the background settles of answered requests time to finish (they take
    a Redis round trip each; the handler's internals are not the tests' business)."""
    time.sleep(0.5)


def _allocated() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _objects() -> int:
    gc.collect()
    return len(gc.get_objects())


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_memory_flat_over_thousands_of_hostile_requests(gateway: Gateway) -> None:
    row = tally.row("memory: seeded hostile mix after a warm-up")
    requests = corpus(seed=9, count=WARMUP + MEASURED, keys=KEYS)
    asyncio.run(_drive(gateway.port, requests[:WARMUP], row))
    _settled(gateway)
    objects, rss = _objects(), _rss()
    asyncio.run(_drive(gateway.port, requests[WARMUP:], row))
    _settled(gateway)
    object_growth, rss_growth = _objects() - objects, _rss() - rss
    print(f"over {MEASURED} requests: {object_growth:+d} objects, "
          f"{rss_growth / 2**20:+.1f} MiB RSS")
    row.add(f"growth {object_growth:+d} objects, {rss_growth / 2**20:+.1f} MiB RSS", 0)
    assert object_growth < OBJECT_SLACK, f"{object_growth} more objects alive"
    assert rss_growth < RSS_SLACK, f"{rss_growth / 2**20:.1f} MiB more resident memory"


def test_distinct_huge_keys_do_not_grow_memory(gateway: Gateway) -> None:
    """A key rotator with 60 KB keys: each request is a new identity; what the gateway
    keeps per identity must not be the key. (The identity cache kept every key whole:
    65,536 of them, each as long as the HTTP server allows a header; now keys over 256
    characters are hashed each time, gateway/identity.py.)"""
    row = tally.row("memory: 60 KB keys, a new one every request (tracemalloc)")
    count, size = 150, 60_000
    body = (b'{"model": "demo-model", "max_tokens": 1, '
            b'"messages": [{"role": "user", "content": "x"}]}')
    tracemalloc.start(1)
    try:
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            for i in range(10):  # warm-up: pools, metric children
                client.post("/v1/chat/completions", content=body, headers={
                    "content-type": "application/json", "authorization": f"Bearer warm-{i}"})
            _settled(gateway)
            before = _allocated()
            for i in range(count):
                key = f"{i:06d}".encode() + b"k" * size
                resp = client.post("/v1/chat/completions", content=body, headers={
                    "content-type": b"application/json", "authorization": b"Bearer " + key})
                row.add(resp.status_code)
                assert resp.status_code < 500
            _settled(gateway)
            after = _allocated()
    finally:
        tracemalloc.stop()
    growth = after - before
    print(f"memory growth over {count} distinct {size}-byte keys: {growth / 1024:.0f} KiB")
    assert growth < count * size / 4, f"{growth / 1024:.0f} KiB retained"
