"""The gateway as an ASGI app: ops routes, admin API, and the proxy for the rest."""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import metrics
from gateway.admin_ui import admin_ui_routes
from gateway.authoring.audit import AuditLog
from gateway.embedded import EmbeddedServer
from gateway.identity import IdentityHasher
from gateway.lifecycle import DrainOnTerm
from gateway.metrics import rule_tallies
from gateway.pipeline.chain import Chain
from gateway.pipeline.loader import load_policy
from gateway.policies.shared import Shared
from gateway.proxy.client_ip import ClientIPResolver
from gateway.proxy.handler import ProxyHandler, Receive, Scope, Send
from gateway.proxy.upstream import AiohttpUpstream, UpstreamError
from gateway.reload import PolicyReloader
from gateway.settings import DEMO_UPSTREAM, Settings
from gateway.signals.suspicion import Standing
from gateway.state import GatewayState
from gateway.storage import open_backend
from gateway.storage.base import CounterBackend, StorageError
from gateway.storage.breaker import CircuitBreaker
from gateway.storage.fallback import LocalFallback

log = logging.getLogger("distill_guard")

OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class GatewayApp:
    """Routes /healthz, /readyz, /metrics and /admin/* to Starlette, the rest to the proxy."""

    def __init__(self, settings: Settings, *, storage: CounterBackend | None = None) -> None:
        """`storage` overrides the backend settings.redis names (tests inject clocks)."""
        self.settings = settings
        self._storage_override = storage
        self.state: GatewayState | None = None
        self.proxy: ProxyHandler | None = None
        self.ready = False
        self.reloader: PolicyReloader | None = None
        self.drain: DrainOnTerm | None = None
        self.ops = Starlette(
            routes=[
                Route("/healthz", self.healthz),
                Route("/readyz", self.readyz),
                Route("/metrics", self.metrics),
                Route("/admin/policy", self.admin_policy),
                Route("/admin/reload", self.admin_reload, methods=["POST"]),
                Route("/admin/rules", self.admin_rules),
                Route("/admin/identities", self.admin_identities),
                Route("/admin/identities/{identity}", self.admin_identity),
                *admin_ui_routes(self),
            ],
            lifespan=self.lifespan,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.proxy is not None:
            path: str = scope["path"]
            if path not in OPS_PATHS and not path.startswith("/admin/"):
                await self.proxy(scope, receive, send)
                return
        await self.ops(scope, receive, send)

    @asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        settings = self.settings
        policy = load_policy(settings.policy)
        metrics.POLICY_LOADS.labels(result="ok").inc()
        demo: EmbeddedServer | None = None
        upstream_url = settings.upstream
        if upstream_url == DEMO_UPSTREAM:
            from gateway.demo_upstream import DemoConfig, create_demo_app

            demo = EmbeddedServer(create_demo_app(DemoConfig(word_delay=settings.demo_word_delay)))
            await demo.start()
            upstream_url = demo.url
        upstream = AiohttpUpstream(
            upstream_url, connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_timeout,
            max_connections=settings.upstream_max_connections,
        )
        await upstream.start()
        # `is None`, not `or`: an empty MemoryBackend is falsy (it has __len__)
        storage = self._storage_override if self._storage_override is not None else open_backend(
            settings.redis, timeout=settings.redis_timeout_ms / 1000,
            max_connections=settings.redis_max_connections)
        fallback: CounterBackend | None = None
        if storage.name == "redis":
            storage = CircuitBreaker(
                storage, failure_threshold=settings.redis_breaker_failures,
                reset_after=settings.redis_breaker_reset_seconds)
            fallback = LocalFallback() if settings.storage_fallback else None
        try:
            await storage.prepare()
        except StorageError as exc:  # start anyway: the breaker and fallback cover it
            log.warning("counter storage not ready at startup: %s", exc)
        shared = Shared(
            watermark_secret=settings.watermark_secret.get_secret_value().encode())
        standings = shared.standings
        self.state = GatewayState(
            settings=settings, chain=Chain.from_policy(policy, shared), storage=storage,
            upstream=upstream,
            hasher=IdentityHasher(settings.identity_secret.get_secret_value().encode()),
            client_ip=ClientIPResolver(settings.trusted_proxies), fallback=fallback,
            standings=standings,
        )
        audit = (AuditLog(settings.audit_log, bodies=settings.audit_log_bodies,
                          max_buffer_bytes=settings.audit_log_buffer_bytes)
                 if settings.audit_log is not None else None)
        self.proxy = ProxyHandler(self.state, audit)
        self.reloader = PolicyReloader(self.state, Path(settings.policy), shared)
        watcher = (asyncio.create_task(self.reloader.watch(settings.policy_watch_interval))
                   if settings.policy_watch_interval > 0 else None)
        hup = _on_sighup(self.reloader)
        self.drain = DrainOnTerm(settings.shutdown_drain_seconds, on_drain=self._stop_ready)
        self.drain.install()
        self.ready = True
        log.info("gateway started", extra={"fields": {
            "upstream": "demo" if demo else settings.upstream, "storage": storage.name,
            "policy": str(settings.policy), "rules": len(self.state.chain.rules)}})
        try:
            yield
        finally:
            self.ready = False
            if hup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            if watcher is not None:
                watcher.cancel()
            await self.proxy.drain()
            if audit is not None:
                await asyncio.to_thread(audit.close)  # writes what is still buffered
            await upstream.close()
            await storage.aclose()
            if demo is not None:
                await demo.stop()

    def _stop_ready(self) -> None:
        self.ready = False  # /readyz: 503 from now on; requests are still served

    # -- ops routes ----------------------------------------------------------
    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        checks: dict[str, str] = {}
        state = self.state
        if state is None or not self.ready:
            status = "draining" if self.drain is not None and self.drain.draining else "starting"
            return JSONResponse({"status": status}, status_code=503)
        try:
            await state.upstream.ping()
            checks["upstream"] = "ok"
        except UpstreamError as exc:
            checks["upstream"] = f"unreachable: {exc}"
        degraded = False
        try:
            await state.storage.ping()
            checks["storage"] = "ok"
        except StorageError as exc:
            checks["storage"] = f"unreachable: {exc}"
            # With the local fallback the replica still serves (limits enforced
            # locally): staying ready keeps a Redis outage from emptying the Service.
            degraded = state.fallback is not None
        ok = all(v == "ok" for k, v in checks.items() if not (k == "storage" and degraded))
        status = ("degraded" if degraded else "ready") if ok else "not ready"
        return JSONResponse({"status": status, "checks": checks},
                            status_code=200 if ok else 503)

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # -- admin API -----------------------------------------------------------
    def _admin_refusal(self, request: Request) -> Response | None:
        token = self.settings.admin_token
        if token is None:
            return JSONResponse({"error": "the admin API is off (no admin token set)"},
                                status_code=404)
        given = request.headers.get("authorization", "")
        expected = "Bearer " + token.get_secret_value()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return JSONResponse({"error": "unauthorized"}, status_code=401,
                                headers={"www-authenticate": "Bearer"})
        return None

    async def admin_reload(self, request: Request) -> Response:
        """Re-read the policy file now; a file that fails validation is refused."""
        refusal = self._admin_refusal(request)
        if refusal is not None:
            return refusal
        if self.reloader is None:
            return JSONResponse({"error": "starting"}, status_code=503)
        result = await self.reloader.reload("admin API")
        if not result.ok:
            return JSONResponse({"status": "refused", "error": result.error,
                                 "running_rules": result.rules}, status_code=422)
        return JSONResponse({"status": "reloaded" if result.changed else "unchanged",
                             "rules": result.rules})

    async def admin_rules(self, request: Request) -> Response:
        """Per rule, what it decided since the process started: for a shadow rule,
        what it would have done. The evidence to promote a rule out of shadow."""
        refusal = self._admin_refusal(request)
        if refusal is not None:
            return refusal
        if self.state is None:
            return JSONResponse({"error": "starting"}, status_code=503)
        tallies = rule_tallies()
        rules = []
        for rule in self.state.chain.rules:
            info = rule.info
            entry: dict[str, Any] = {
                "name": info.name, "kind": info.kind, "shadow": info.shadow,
                **tallies.get(info.name, {"decisions": {}, "perturbations": {}}),
            }
            if info.kind == "prompt_diversity":
                entry["identities_flagged"] = sum(
                    1 for _, standing in self.state.standings.items(shadow=info.shadow)
                    if standing.flagged)
            rules.append(entry)
        reloader = self.reloader
        return JSONResponse({
            "policy": str(self.settings.policy), "rules": rules,
            "loaded_at": reloader.loaded_at if reloader else None,
            "last_reload_error": reloader.last_error if reloader else "",
        })

    async def admin_identities(self, request: Request) -> Response:
        """Identities this process has scored, most suspicious first.

        `?flagged=true` keeps flagged ones; `?shadow=true` lists what shadow
        rules recorded instead of what enforced rules hold.
        """
        if (refusal := self._admin_refusal(request)) is not None:
            return refusal
        assert self.state is not None
        now = time.time()
        shadow = request.query_params.get("shadow") == "true"
        flagged_only = request.query_params.get("flagged") == "true"
        rows = [{"identity": identity, **_standing_json(standing, now)}
                for identity, standing in self.state.standings.items(shadow=shadow)
                if standing.flagged or not flagged_only]
        rows.sort(key=lambda row: -float(row["suspicion"]))
        return JSONResponse({"identities": rows[:1000], "count": len(rows), "shadow": shadow})

    async def admin_identity(self, request: Request) -> Response:
        if (refusal := self._admin_refusal(request)) is not None:
            return refusal
        assert self.state is not None
        identity = request.path_params["identity"]
        enforced, shadow = self.state.standings.lookup(identity)
        if enforced is None and shadow is None:
            return JSONResponse({"error": f"no evidence for identity {identity!r}"},
                                status_code=404)
        now = time.time()
        return JSONResponse({
            "identity": identity,
            "enforced": _standing_json(enforced, now) if enforced is not None else None,
            "shadow": _standing_json(shadow, now) if shadow is not None else None,
        })

    async def admin_policy(self, request: Request) -> Response:
        if (refusal := self._admin_refusal(request)) is not None:
            return refusal
        assert self.state is not None
        chain = self.state.chain
        rules: list[dict[str, Any]] = [
            {"name": r.info.name, "kind": r.info.kind, "shadow": r.info.shadow,
             "on_storage_error": r.info.on_storage_error}
            for r in chain.rules
        ]
        return JSONResponse({"policy": str(self.settings.policy), "rules": rules})


def _standing_json(standing: Standing, now: float) -> dict[str, Any]:
    return {
        "suspicion": round(standing.current(now), 4),
        "suspicion_at_last_request": round(standing.suspicion, 4),
        "last_request_at": standing.at, "flagged": standing.flagged,
        "actions": standing.actions, "throttle": standing.throttle,
        "perturb_level": standing.perturb_level, "signals": standing.signals,
        "evidence": standing.evidence,
    }


def create_app(
    settings: Settings | None = None, *, storage: CounterBackend | None = None
) -> GatewayApp:
    return GatewayApp(settings or Settings(), storage=storage)


def _on_sighup(reloader: PolicyReloader) -> bool:
    """SIGHUP reloads the policy; only the main thread can take signals (tests
    run the app in a thread: then there is no handler, and False)."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(
            reloader.reload("SIGHUP")))
    except (RuntimeError, ValueError, NotImplementedError):
        return False
    return True


def create_app_from_env() -> GatewayApp:
    """uvicorn factory for worker processes: settings come from DISTILL_GUARD_* env."""
    from gateway.logs import configure_logging

    settings = Settings()
    configure_logging(settings.log_level)
    return GatewayApp(settings)
