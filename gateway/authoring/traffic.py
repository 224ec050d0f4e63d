"""The traffic format: one JSON object per line, one request per object (docs/replay.md).

The gateway writes it as its audit log (gateway/authoring/audit.py);
`replay` and `policy explain --history` read it. A line written by the
gateway looks like

    {"v": 1, "ts": 1700000000.25, "request_id": "…", "identity": "3f9a…",
     "authenticated": true, "method": "POST", "path": "/v1/chat/completions",
     "client_ip": "10.0.0.7", "headers": {"user-agent": "openai-python/1.0"},
     "body": {"model": "…", "messages": […]}, "status": 200, "decision": "allow"}

Hand-written lines may leave out everything but `ts` and give `api_key`
instead of `identity` (hashed with the identity secret, never stored).
Credentials and cookies are never written, and ignored when read.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel

from gateway.identity import Identity, IdentityHasher
from gateway.offline import OfflineRequest

T = TypeVar("T")

FORMAT_VERSION = 1
DEFAULT_PATH = "/v1/chat/completions"
DEFAULT_CLIENT_IP = "127.0.0.1"
# Never written to the audit log, and dropped when read.
SENSITIVE_HEADERS = frozenset({
    "authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "set-cookie",
})
ALWAYS_RECORDED = ("user-agent",)


class TrafficError(ValueError):
    """A line that is not a valid traffic record."""


def recorded_headers(policy: BaseModel) -> frozenset[bytes]:
    """Request headers the audit log keeps: user-agent and every header `policy` reads.

    That is the identity's tier and tenant headers, headers named in a rule's
    `match`, an access rule's `deny_headers` and a `group_by: header:NAME`.
    """
    names = set(ALWAYS_RECORDED)
    identity = getattr(policy, "identity", None)
    for name in (getattr(identity, "tier_header", None), getattr(identity, "tenant_header", None)):
        if name:
            names.add(name.lower())
    for rule in getattr(policy, "rules", []):
        names.update(k.lower() for k in (getattr(rule.match, "headers", None) or {}))
        names.update(k.lower() for k in (getattr(rule.config, "deny_headers", None) or {}))
        names.update(key.removeprefix("header:").lower()
                     for key in getattr(rule.config, "group_by", ()) or ()
                     if key.startswith("header:"))
    return frozenset(n.encode("latin-1") for n in names - SENSITIVE_HEADERS)


def classify(
    identity_id: str, authenticated: bool, headers: Sequence[tuple[bytes, bytes]],
    policy: BaseModel,
) -> Identity:
    """The identity with the tier and tenant `policy` gives it (as `GatewayState.identify`)."""
    config = getattr(policy, "identity", None)
    if config is None:
        return Identity(identity_id, authenticated)
    found = dict(headers)
    tier: str | None = config.tiers.get(identity_id, config.default_tier)
    tenant: str | None = None
    if config.tier_header and (value := found.get(config.tier_header.lower().encode())):
        tier = value.decode("latin-1")
    if config.tenant_header and (value := found.get(config.tenant_header.lower().encode())):
        tenant = value.decode("latin-1")
    return Identity(identity_id, authenticated, tier, tenant)


@dataclass(slots=True)
class Recorded:
    """What the gateway did with the request when it was recorded (if the line says)."""

    status: int | None = None
    decision: str | None = None


@dataclass(slots=True)
class TrafficEntry:
    request: OfflineRequest
    recorded: Recorded
    source: str  # "file:line"


def parse_record(
    data: Any, hasher: IdentityHasher, policy: BaseModel, source: str = "<request>",
    *, require_ts: bool = True,
) -> TrafficEntry:
    """One traffic record (a decoded JSON object) as the request the proxy would see."""
    if not isinstance(data, dict):
        raise TrafficError("a traffic record must be a JSON object")
    ts = data.get("ts")
    if ts is None and not require_ts:
        ts = 0.0
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        raise TrafficError("`ts` must be a number (unix seconds)")
    method = _text(data, "method", "POST").upper()
    path = _text(data, "path", DEFAULT_PATH)
    client_ip = _text(data, "client_ip", DEFAULT_CLIENT_IP)
    headers = _headers(data.get("headers"))
    identity_id, authenticated = _identity(data, hasher, client_ip)
    body = data.get("body")
    if body is None and isinstance(data.get("model"), str):
        body = {"model": data["model"]}  # a log written without bodies
    status = data.get("status")
    decision = data.get("decision")
    return TrafficEntry(
        OfflineRequest(
            at=float(ts), identity=classify(identity_id, authenticated, headers, policy),
            path=path, body=b"" if body is None else orjson.dumps(body), headers=headers,
            client_ip=client_ip, method=method, query=_text(data, "query", "").encode("latin-1"),
        ),
        Recorded(status if isinstance(status, int) else None,
                 decision if isinstance(decision, str) else None),
        source,
    )


def _text(data: dict[str, Any], name: str, default: str) -> str:
    value = data.get(name, default)
    if not isinstance(value, str):
        raise TrafficError(f"`{name}` must be a string")
    return value


def _headers(value: Any) -> list[tuple[bytes, bytes]]:
    if value is None:
        return []
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise TrafficError("`headers` must be an object of strings")
    return [(name.lower().encode("latin-1"), text.encode("latin-1"))
            for name, text in value.items() if name.lower() not in SENSITIVE_HEADERS]


def _identity(data: dict[str, Any], hasher: IdentityHasher, client_ip: str) -> tuple[str, bool]:
    identity, key = data.get("identity"), data.get("api_key")
    if identity is not None and key is not None:
        raise TrafficError("give `identity` or `api_key`, not both")
    authenticated = data.get("authenticated")
    if authenticated is not None and not isinstance(authenticated, bool):
        raise TrafficError("`authenticated` must be true or false")
    if key is not None:
        if not isinstance(key, str) or not key:
            raise TrafficError("`api_key` must be a non-empty string")
        return hasher.hash_key(key), True
    if identity is not None:
        if not isinstance(identity, str) or not identity:
            raise TrafficError("`identity` must be a non-empty string")
        return identity, (not identity.startswith("anon-")) if authenticated is None \
            else authenticated
    return hasher.anonymous(client_ip), False


# -- reading files --------------------------------------------------------------------


@dataclass(slots=True)
class ReadStats:
    """Lines read and skipped; the first few problems as `file:line: message`."""

    lines: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)
    max_problems: int = 20

    def problem(self, message: str) -> None:
        self.skipped += 1
        if len(self.problems) < self.max_problems:
            self.problems.append(message)


def read_file(
    path: Path, hasher: IdentityHasher, policy: BaseModel, stats: ReadStats,
) -> Iterator[TrafficEntry]:
    """The file's records in file order, streamed; bad lines are skipped into `stats`."""
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            stats.lines += 1
            source = f"{path}:{number}"
            try:
                yield parse_record(orjson.loads(line), hasher, policy, source)
            except (orjson.JSONDecodeError, TrafficError) as exc:
                stats.problem(f"{source}: {exc}")


def windowed(items: Iterable[T], key: Callable[[T], float], window: int) -> Iterator[T]:
    """`items` sorted by `key` within a window: each is held until `window` later ones came.

    A file whose lines are never more than `window` lines out of order comes
    out sorted, holding at most `window + 1` items in memory.
    """
    heap: list[tuple[float, int, T]] = []
    for seq, item in enumerate(items):
        heapq.heappush(heap, (key(item), seq, item))
        if len(heap) > window:
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]


def read_traffic(
    paths: Sequence[Path], hasher: IdentityHasher, policy: BaseModel, stats: ReadStats,
    *, window: int = 10_000,
) -> Iterator[TrafficEntry]:
    """Every file's records merged in timestamp order (each sorted within `window` lines)."""

    def at(entry: TrafficEntry) -> float:
        return entry.request.at

    streams = [windowed(read_file(p, hasher, policy, stats), at, window) for p in paths]
    return heapq.merge(*streams, key=at)
