"""Play simulated traffic through a policy: in-process on a fake clock, or over HTTP.

In-process (`simulate`) plays each request through `gateway.offline.OfflineChain`,
which does what the proxy does (gateway/proxy/handler.py) without an upstream:
build the `RequestContext` (identity = `IdentityHasher(secret).hash_key(key)`,
no tier), copy the identity's standing (suspicion, throttle, perturbation
level) into it, run the chain's request stage, then its complete stage. The
memory backend runs on a `FakeClock` advanced to each request's timestamp, so
a simulated day takes seconds and every window, decay and bucket sees
simulated time.

Over HTTP (`send_over_http`) the same requests go to a running gateway on
loopback, in order, with bounded concurrency; the gateway runs on real time,
so the timestamps are compressed and only what a client sees is recorded
(status, refusal, latency).
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
from pydantic import BaseModel

from gateway.identity import Identity, IdentityHasher
from gateway.offline import OfflineChain, OfflineRequest
from gateway.offline import build_context as offline_context
from gateway.pipeline.context import RequestContext
from gateway.signals.suspicion import Standings
from gateway.simulate.personas import ANTHROPIC_PATH, Label, SimRequest

SIM_SECRET = b"distill-guard-simulation"
DEV_IDENTITY_SECRET = b"distill-guard-dev-secret"  # the gateway's (public) development default
SIM_EPOCH = 1_700_000_000.0  # the fake clock's time at offset 0


@dataclass(slots=True)
class Outcome:
    """What happened to one request, and where its identity stood afterwards."""

    persona: str
    label: Label
    key: str
    identity: str
    at: float
    refused: bool = False
    status: int = 200
    delayed: bool = False
    # the standing the request was served under (from the identity's earlier requests)
    throttled: bool = False
    perturbed: bool = False
    # the identity's standing after this request
    suspicion: float = 0.0
    flagged: bool = False
    throttle: float = 1.0
    perturb_level: int = 0
    signals: dict[str, float] = field(default_factory=dict)
    evidence: dict[str, object] = field(default_factory=dict)
    # what shadow prompt_diversity rules hold against the identity (never enforced)
    shadow_suspicion: float = 0.0
    shadow_flagged: bool = False
    latency: float = 0.0  # HTTP mode: seconds until the response was read
    error: str = ""  # HTTP mode: transport error, if any

    @property
    def harvested(self) -> bool:
        """A full-quality answer: not refused, not throttled, not perturbed."""
        return not (self.refused or self.throttled or self.perturbed)


@dataclass(slots=True)
class SimulationResult:
    outcomes: list[Outcome]
    mode: str  # "in-process" or "http"
    elapsed: float  # wall-clock seconds the run took
    simulated_seconds: float


def headers_for(request: SimRequest) -> list[tuple[bytes, bytes]]:
    key = request.key.encode()
    agent = [(b"user-agent", request.user_agent.encode())] if request.user_agent else []
    if request.path == ANTHROPIC_PATH:
        return [(b"x-api-key", key), (b"anthropic-version", b"2023-06-01"),
                (b"content-type", b"application/json"), *agent]
    return [(b"authorization", b"Bearer " + key), (b"content-type", b"application/json"),
            *agent]


def offline_request(request: SimRequest, identity: Identity) -> OfflineRequest:
    return OfflineRequest(SIM_EPOCH + request.at, identity, request.path,
                          orjson.dumps(request.body), headers_for(request), request.client_ip)


def build_context(
    request: SimRequest, identity: Identity, standings: Standings, now: float
) -> RequestContext:
    """The request context the proxy would build, standing included."""
    return offline_context(offline_request(request, identity), standings, now)


async def simulate(
    requests: Sequence[SimRequest], policy: BaseModel, *, secret: bytes = SIM_SECRET,
    standings: Standings | None = None,
) -> SimulationResult:
    """Run `requests` (time-ordered) through `policy` in this process, on a fake clock."""
    started = time.perf_counter()
    offline = OfflineChain(policy, start=SIM_EPOCH, standings=standings)
    standings = offline.standings
    hasher = IdentityHasher(secret)
    identities: dict[str, Identity] = {}
    outcomes: list[Outcome] = []
    for request in requests:
        identity = identities.get(request.key)
        if identity is None:
            identity = Identity(hasher.hash_key(request.key), True, None, None)
            identities[request.key] = identity
        offline.advance_to(SIM_EPOCH + request.at)
        ctx = offline.context(offline_request(request, identity))
        record = Outcome(request.persona, request.label, request.key, identity.id, request.at,
                         throttled=ctx.throttle < 1.0, perturbed=ctx.perturb_level > 0)
        played = await offline.run(ctx)
        if played.error is not None:
            record.refused, record.status = True, played.error.status
        else:
            record.delayed = played.outcome.delay > 0
        standing, shadow = standings.lookup(identity.id)
        if shadow is not None:
            record.shadow_suspicion, record.shadow_flagged = shadow.suspicion, shadow.flagged
        if standing is not None:
            record.suspicion = standing.suspicion
            record.flagged = standing.flagged
            record.throttle = standing.throttle
            record.perturb_level = standing.perturb_level
            record.signals = standing.signals
            record.evidence = standing.evidence
        outcomes.append(record)
    return SimulationResult(outcomes, "in-process", time.perf_counter() - started,
                            requests[-1].at if requests else 0.0)


# --- over HTTP -------------------------------------------------------------------------------


def check_loopback(url: str) -> str:
    """The base URL without a trailing slash; refuse anything but a loopback http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--gateway needs an http(s) URL, got {url!r}")
    host = parts.hostname
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError(f"--gateway must point at this machine (loopback), got {host!r}")
    return url.rstrip("/")


async def send_over_http(
    requests: Sequence[SimRequest], base_url: str, *, concurrency: int = 16,
    request_timeout: float = 60.0, admin_token: str | None = None,
    identity_secret: bytes = DEV_IDENTITY_SECRET,
) -> SimulationResult:
    """Send `requests` in order to a gateway at `base_url` (loopback), `concurrency` at a time.

    With `admin_token`, read each identity's final standing from the gateway's
    admin API afterwards (ids from `identity_secret`, the gateway's
    DISTILL_GUARD_IDENTITY_SECRET) and record it on the identity's last outcome.
    """
    import httpx

    base = check_loopback(base_url)
    started = time.perf_counter()
    hasher = IdentityHasher(identity_secret)
    ids = {key: hasher.hash_key(key) for key in {r.key for r in requests}}
    outcomes = [Outcome(r.persona, r.label, r.key, ids[r.key], r.at) for r in requests]
    slots = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=request_timeout, limits=limits,
                                 trust_env=False) as client:

        async def one(index: int, request: SimRequest) -> None:
            record = outcomes[index]
            sent = time.perf_counter()
            try:
                headers = [(k.decode(), v.decode()) for k, v in headers_for(request)]
                # honoured only when the gateway trusts loopback as a proxy
                headers.append(("x-forwarded-for", request.client_ip))
                response = await client.post(request.path, content=orjson.dumps(request.body),
                                             headers=headers)
                await response.aread()
                record.status = response.status_code
                record.refused = response.status_code in (403, 429, 503)
            except httpx.HTTPError as exc:
                record.status, record.error = 0, f"{type(exc).__name__}: {exc}"
            finally:
                record.latency = time.perf_counter() - sent
                slots.release()

        tasks: list[asyncio.Task[None]] = []
        for index, request in enumerate(requests):
            await slots.acquire()  # launch in order, at most `concurrency` in flight
            tasks.append(asyncio.create_task(one(index, request)))
        await asyncio.gather(*tasks)
        if admin_token is not None:
            await _read_standings(client, admin_token, outcomes)
    return SimulationResult(outcomes, "http", time.perf_counter() - started,
                            requests[-1].at if requests else 0.0)


async def _read_standings(client: Any, token: str, outcomes: list[Outcome]) -> None:
    """Copy each identity's standing, from GET /admin/identities/{id}, onto its last outcome."""
    last: dict[str, Outcome] = {}
    for record in outcomes:
        last[record.identity] = record
    headers = {"authorization": f"Bearer {token}"}
    for identity, record in last.items():
        response = await client.get(f"/admin/identities/{identity}", headers=headers)
        if response.status_code == 404:
            continue  # never scored (no prompt_diversity rule matched it)
        if response.status_code != 200:
            raise RuntimeError(f"admin API answered {response.status_code}: {response.text}")
        data = response.json()
        enforced, shadow = data.get("enforced"), data.get("shadow")
        if enforced:
            record.suspicion = float(enforced["suspicion_at_last_request"])
            record.flagged = bool(enforced["flagged"])
            record.throttle = float(enforced["throttle"])
            record.perturb_level = int(enforced["perturb_level"])
            record.signals = dict(enforced["signals"])
        if shadow:
            record.shadow_suspicion = float(shadow["suspicion_at_last_request"])
            record.shadow_flagged = bool(shadow["flagged"])
