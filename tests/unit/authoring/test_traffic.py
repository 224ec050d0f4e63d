"""The traffic format: parsing lines, reading files in timestamp order, skipping bad lines."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.authoring.replay import replay
from gateway.authoring.traffic import (
    ReadStats,
    TrafficError,
    parse_record,
    read_traffic,
    recorded_headers,
    windowed,
)
from gateway.identity import IdentityHasher
from gateway.pipeline.loader import parse_policy

HASHER = IdentityHasher(b"test-secret")
POLICY = parse_policy("""
version: 1
identity: {tier_header: X-Tier, tenant_header: x-tenant, tiers: {abc: gold}}
rules:
  - name: by-team
    kind: access
    match: {headers: {X-Team: ["*"]}}
    config: {deny_headers: {x-blocked: ["yes"]}}
  - name: per-key
    kind: rate_shaping
    config: {limits: [{requests: 2/min}]}
  - name: watch
    kind: prompt_diversity
    shadow: true
    config: {group_by: ["header:X-Client", user_agent]}
""", "<test>")


def write(path: Path, records: list[dict[str, Any] | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                            for r in records))
    return path


def test_an_api_key_is_hashed_with_the_secret_and_never_kept() -> None:
    entry = parse_record({"ts": 1, "api_key": "sk-secret", "body": {"model": "m"}},
                         HASHER, POLICY)
    request = entry.request
    assert request.identity.id == HASHER.hash_key("sk-secret")
    assert request.identity.authenticated
    assert b"sk-secret" not in repr(entry).encode()
    assert request.method == "POST" and request.path == "/v1/chat/completions"
    assert json.loads(request.body) == {"model": "m"}


def test_identity_ids_tiers_and_tenants() -> None:
    gold = parse_record({"ts": 1, "identity": "abc"}, HASHER, POLICY).request.identity
    assert (gold.id, gold.authenticated, gold.tier) == ("abc", True, "gold")
    headed = parse_record({"ts": 1, "identity": "abc",
                           "headers": {"X-Tier": "free", "X-Tenant": "acme"}}, HASHER, POLICY)
    assert (headed.request.identity.tier, headed.request.identity.tenant) == ("free", "acme")
    anon = parse_record({"ts": 1, "client_ip": "10.1.2.3"}, HASHER, POLICY).request.identity
    assert anon.id == HASHER.anonymous("10.1.2.3") and not anon.authenticated
    logged = parse_record({"ts": 1, "identity": anon.id}, HASHER, POLICY).request.identity
    assert not logged.authenticated


def test_credentials_in_recorded_headers_are_dropped() -> None:
    entry = parse_record({"ts": 1, "identity": "abc", "headers": {
        "Authorization": "Bearer sk-x", "x-api-key": "sk-x", "Cookie": "a=b",
        "User-Agent": "sdk/1"}}, HASHER, POLICY)
    assert entry.request.headers == [(b"user-agent", b"sdk/1")]


@pytest.mark.parametrize(("record", "message"), [
    ({"identity": "abc"}, "`ts`"),
    ({"ts": "yesterday"}, "`ts`"),
    ({"ts": 1, "identity": "abc", "api_key": "k"}, "not both"),
    ({"ts": 1, "headers": {"a": 1}}, "`headers`"),
    ({"ts": 1, "path": 5}, "`path`"),
    ({"ts": 1, "api_key": ""}, "`api_key`"),
    ([1, 2], "JSON object"),
])
def test_invalid_records(record: Any, message: str) -> None:
    with pytest.raises(TrafficError, match=message):
        parse_record(record, HASHER, POLICY)


def test_a_log_without_bodies_keeps_the_model() -> None:
    entry = parse_record({"ts": 1, "identity": "abc", "model": "m", "body": None},
                         HASHER, POLICY)
    assert json.loads(entry.request.body) == {"model": "m"}


def test_recorded_headers_are_the_ones_the_policy_reads() -> None:
    assert recorded_headers(POLICY) == {b"user-agent", b"x-tier", b"x-tenant", b"x-team",
                                        b"x-blocked", b"x-client"}
    credentials = parse_policy(
        'version: 1\nrules: [{name: a, kind: access, match: {headers: {authorization: ["*"]}}}]',
        "<test>")
    assert recorded_headers(credentials) == {b"user-agent"}


def test_windowed_sorts_within_the_window_and_holds_no_more() -> None:
    held: list[int] = []

    def items() -> Any:
        for value in [3, 1, 2, 6, 4, 5, 9, 7, 8]:
            held.append(value)
            yield value

    out = []
    for value in windowed(items(), float, 2):
        out.append(value)
        assert len(held) - len(out) <= 3  # at most window + 1 in memory
    assert out == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert list(windowed([3, 2, 1], float, 0)) == [3, 2, 1]


def test_files_are_merged_in_time_order_and_bad_lines_skipped(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", [{"ts": 10, "identity": "a"}, "{not json",
                                     {"ts": 30, "identity": "a"}])
    b = write(tmp_path / "b.jsonl", [{"ts": 20, "identity": "b"}, {"identity": "b"}, "",
                                     {"ts": 5, "identity": "b"}])
    stats = ReadStats()
    entries = list(read_traffic([a, b], HASHER, POLICY, stats, window=10))
    assert [e.request.at for e in entries] == [5, 10, 20, 30]
    assert stats.lines == 6 and stats.skipped == 2
    assert stats.problems[0].startswith(f"{a}:2: ")
    assert stats.problems[1] == f"{b}:2: `ts` must be a number (unix seconds)"


def test_lines_beyond_the_window_are_played_late(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", [
        {"ts": 100, "identity": "a", "body": {"model": "m", "messages": []}},
        {"ts": 200, "identity": "a", "body": {"model": "m", "messages": []}},
        {"ts": 50, "identity": "a", "body": {"model": "m", "messages": []}},
    ])
    stats = ReadStats()
    entries = read_traffic([path], HASHER, POLICY, stats, window=1)
    report = asyncio.run(replay(entries, POLICY, policy_name="p", stats=stats))
    data = report.to_json()
    assert data["late"] == 1 and data["requests"] == 3
    assert data["first_ts"] == 50 and data["last_ts"] == 200
    sorted_report = asyncio.run(replay(read_traffic([path], HASHER, POLICY, ReadStats()),
                                       POLICY, policy_name="p")).to_json()
    assert sorted_report["late"] == 0
