"""Identity spoofing: no header trick buys a second bucket.

A tight per-identity limit (3 requests an hour, reject). For each spoof, a key
of its own is first used up the ordinary way (`Authorization: Bearer KEY`,
three requests), then the spoof is sent: it must land in the same bucket (429)
or be refused (401). Each spoof comes from a loopback source address of its
own (127.0.0.x), so a spoof that fell back to "anonymous, by client IP" would
find a fresh bucket there and get a 200: the test would see the dodge.

The resolution rules these tests hold are written down in docs/hostile-input.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.hostile import rawhttp, tally
from tests.hostile.conftest import Gateway, LogWatch, start_gateway, write_policy
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis

TIGHT = """
version: 1
rules:
  - name: tight-per-key
    kind: rate_shaping
    config:
      key: identity
      limits:
        - requests: 3/hour
"""
LIMIT = 3
BODY = b'{"model": "demo-model", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}'


@dataclass(frozen=True)
class Spoof:
    name: str
    headers: tuple[tuple[bytes, bytes], ...]  # KEY stands for this spoof's key
    expect: tuple[int, ...]  # statuses that show no dodge


def _spoofs() -> list[Spoof]:
    k = b"KEY"
    return [
        Spoof("AUTHORIZATION upper-case name", ((b"AUTHORIZATION", b"Bearer " + k),), (429,)),
        Spoof("bearer lower-case scheme", ((b"authorization", b"bearer " + k),), (429,)),
        Spoof("BEARER upper-case scheme", ((b"Authorization", b"BEARER " + k),), (429,)),
        Spoof("extra spaces around the key", ((b"Authorization", b"Bearer    " + k + b"   "),),
              (429,)),
        Spoof("leading spaces and tab (OWS)", ((b"Authorization", b" \t Bearer " + k),), (429,)),
        Spoof("x-api-key", ((b"x-api-key", k),), (429,)),
        Spoof("X-API-KEY upper-case name", ((b"X-API-KEY", k),), (429,)),
        Spoof("x-api-key with spaces", ((b"x-api-key", b"  " + k + b"  "),), (429,)),
        Spoof("same key in Authorization and x-api-key",
              ((b"Authorization", b"Bearer " + k), (b"x-api-key", k)), (429,)),
        Spoof("same key in two Authorization headers",
              ((b"Authorization", b"Bearer " + k), (b"authorization", b"bearer " + k)), (429,)),
        Spoof("key plus a Basic Authorization header",
              ((b"Authorization", b"Basic Zm9vOmJhcg=="), (b"Authorization", b"Bearer " + k)),
              (429,)),
        Spoof("key plus an empty Bearer", ((b"Authorization", b"Bearer"), (b"x-api-key", k)),
              (429,)),
        Spoof("a different key in x-api-key",
              ((b"Authorization", b"Bearer " + k), (b"x-api-key", k + b"-other")), (401,)),
        Spoof("a different key in a second Authorization",
              ((b"Authorization", b"Bearer " + k), (b"Authorization", b"Bearer " + k + b"2")),
              (401,)),
        Spoof("a different key, case only", ((b"Authorization", b"Bearer " + k),
                                            (b"X-Api-Key", k.lower())), (401,)),
        Spoof("key with X-Forwarded-For", ((b"Authorization", b"Bearer " + k),
                                          (b"X-Forwarded-For", b"203.0.113.9")), (429,)),
    ]


SPOOFS = _spoofs()
TAB = Spoof("tab between scheme and key", ((b"Authorization", b"Bearer\t" + b"KEY"),), (429,))


@pytest.fixture
def tight(redis: RedisServer, demo_url: str, tmp_path: Path,
          logwatch: LogWatch) -> Iterator[Gateway]:
    with start_gateway(redis, upstream=demo_url, policy=write_policy(tmp_path, TIGHT),
                       watch=logwatch) as gw:
        yield gw


def send(gw: Gateway, headers: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]],
         source: str = "127.0.0.1", path: bytes = b"/v1/chat/completions") -> int:
    data = rawhttp.build(b"POST", path, [(b"Content-Type", b"application/json"), *headers],
                         BODY)
    responses, raw = rawhttp.exchange(gw.port, data, source=source)
    assert len(responses) == 1, raw[:300]
    return responses[0].status


def _use_up(gw: Gateway, key: bytes, source: str) -> None:
    for _ in range(LIMIT):
        assert send(gw, [(b"Authorization", b"Bearer " + key)], source) == 200
    assert send(gw, [(b"Authorization", b"Bearer " + key)], source) == 429


def _try(gw: Gateway, spoof: Spoof, index: int) -> int:
    key = f"sk-spoof-{index:02d}-7f3a".encode()
    source = f"127.0.0.{10 + index}"
    _use_up(gw, key, source)
    headers = tuple((n, v.replace(b"KEY", key)) for n, v in spoof.headers)
    return send(gw, headers, source)


def test_spoofed_credentials_share_the_key_bucket_or_are_refused(tight: Gateway) -> None:
    row = tally.row("identity: credential header spoofs after the key's limit")
    dodged = []
    for index, spoof in enumerate(SPOOFS):
        status = _try(tight, spoof, index)
        row.add(status)
        row.count += LIMIT + 1  # the requests that used the key up
        if status not in spoof.expect:
            dodged.append(f"{spoof.name}: {status}, expected {spoof.expect}")
    assert not dodged, "\n".join(dodged)


def test_tab_between_scheme_and_key_is_the_same_identity(tight: Gateway) -> None:
    """`Bearer<TAB>key` was read as no key at all: anonymous, a fresh bucket per client
    IP (fixed in gateway/identity.py from /tmp/hostile_patches/identity_whitespace.diff)."""
    status = _try(tight, TAB, 40)
    tally.row("identity: credential header spoofs after the key's limit").add(status)
    assert status in TAB.expect


def test_anonymous_x_forwarded_for_from_untrusted_peer_is_ignored(tight: Gateway) -> None:
    """No trusted proxies: the peer address decides; X-Forwarded-For, Forwarded and
    X-Real-IP never give an anonymous caller another bucket."""
    row = tally.row("identity: X-Forwarded-For/Forwarded/X-Real-IP from an untrusted peer")
    source = "127.0.0.200"
    for _ in range(LIMIT):
        assert send(tight, [], source) == 200
    spoofs: list[list[tuple[bytes, bytes]]] = [
        [(b"X-Forwarded-For", b"203.0.113.7")],
        [(b"X-Forwarded-For", b"203.0.113.7, 198.51.100.1")],
        [(b"X-Forwarded-For", b"1.1.1.1"), (b"X-Forwarded-For", b"2.2.2.2")],
        [(b"x-forwarded-for", b"garbage, ::1, 2001:db8::7")],
        [(b"Forwarded", b"for=203.0.113.7")],
        [(b"X-Real-IP", b"203.0.113.7")],
        [(b"X-Forwarded-For", b"127.0.0.1")],
        [(b"X-Forwarded-For", b"")],
    ]
    statuses = [send(tight, headers, source) for headers in spoofs]
    for status in statuses:
        row.add(status)
    row.count += LIMIT
    assert statuses == [429] * len(spoofs)


def test_trusted_proxy_rightmost_untrusted_hop_decides(
        redis: RedisServer, demo_url: str, tmp_path: Path, logwatch: LogWatch) -> None:
    """Peer 127.0.0.1 is a trusted proxy: the client is the rightmost hop it did not
    add itself. Hops a client prepends change nothing."""
    row = tally.row("identity: X-Forwarded-For via a trusted proxy (prepended hops)")
    with start_gateway(redis, upstream=demo_url, policy=write_policy(tmp_path, TIGHT),
                       trusted_proxies=["127.0.0.1/32"], watch=logwatch) as gw:
        for _ in range(LIMIT):
            assert send(gw, [(b"X-Forwarded-For", b"198.51.100.23")]) == 200
        same_client = [
            [(b"X-Forwarded-For", b"198.51.100.23")],
            [(b"X-Forwarded-For", b"203.0.113.1, 198.51.100.23")],
            [(b"X-Forwarded-For", b"10.9.9.9, 203.0.113.1, 198.51.100.23")],
            [(b"X-Forwarded-For", b"6.6.6.6"), (b"X-Forwarded-For", b"198.51.100.23")],
            [(b"X-Forwarded-For", b"198.51.100.23, 127.0.0.1")],  # a trusted hop is skipped
            [(b"X-Forwarded-For", b" 198.51.100.23 ")],
        ]
        statuses = [send(gw, headers) for headers in same_client]
        other = send(gw, [(b"X-Forwarded-For", b"198.51.100.24")])
    for status in [*statuses, other]:
        row.add(status)
    row.count += LIMIT
    assert statuses == [429] * len(same_client)
    assert other == 200  # a different client behind the proxy has a bucket of its own
