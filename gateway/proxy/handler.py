"""The proxy: a pure ASGI app that runs the chain around one upstream call.

Bodies stream through unbuffered unless a policy must read them; SSE events
are decoded (I/O-free) only when a policy reads the stream. A client that
disconnects cancels the upstream call; counters are settled after the
response, off the client's path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import orjson

from gateway import metrics
from gateway.errors import Dialect, GatewayError, dialect_for_path, error_body
from gateway.identity import AmbiguousCredentials, Identity
from gateway.pipeline.chain import Chain, RequestOutcome
from gateway.pipeline.context import RequestContext
from gateway.proxy.completions import CompletionQueue
from gateway.proxy.headers import (
    client_response_headers,
    find_header,
    upstream_request_headers,
)
from gateway.proxy.upstream import UpstreamError, UpstreamResponse
from gateway.streaming.sse import SSEDecoder, SSEProtocolError

if TYPE_CHECKING:
    from gateway.authoring.audit import AuditLog
    from gateway.state import GatewayState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

access_log = logging.getLogger("distill_guard.access")

MODEL_ROUTES = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages"}
)
KNOWN_ROUTES = MODEL_ROUTES | {"/v1/models", "/v1/messages/count_tokens"}
CLIENT_CLOSED = 499  # nginx's convention for "client went away first"
WATCH_AFTER_S = 0.05  # how long a request runs before its client's disconnect is watched
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


def route_label(path: str) -> str:
    if path in KNOWN_ROUTES:
        return path
    if path.startswith("/v1/models/"):
        return "/v1/models/{id}"
    return "other"


class _ClientGone(Exception):
    """The client disconnected while its request body was being read."""


class _DisconnectWatch:
    """Cancel the request's task when its client disconnects.

    Listening needs a task of its own (`receive()` blocks), which costs more than a
    fast request itself; so it starts only once the request has run WATCH_AFTER_S.
    A client gone before then is seen at once when it starts: the server keeps
    answering `http.disconnect` from then on.
    """

    __slots__ = ("_ctx", "_handle", "_receive", "_target", "_task")

    def __init__(self, receive: Receive, ctx: RequestContext) -> None:
        self._receive, self._ctx = receive, ctx
        self._target = asyncio.current_task()
        self._task: asyncio.Task[None] | None = None
        self._handle = asyncio.get_running_loop().call_later(WATCH_AFTER_S, self._start)

    def _start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._ctx.client_gone = True
                if self._target is not None:
                    self._target.cancel()
                return

    def cancel(self) -> None:
        self._handle.cancel()
        if self._task is not None:
            self._task.cancel()


class ProxyHandler:
    def __init__(self, state: GatewayState, audit: AuditLog | None = None) -> None:
        self.state = state
        self.audit = audit  # the optional audit log (gateway/authoring/audit.py)
        self.completions = CompletionQueue(self._audit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        path: str = scope["path"]
        dialect = dialect_for_path(path)
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        request_id = _request_id(headers)
        ctx: RequestContext | None = None
        response_started = False
        outcome = RequestOutcome()
        watcher: _DisconnectWatch | None = None
        status = 0
        upstream_at = started
        overhead = 0.0

        async def send_error(error: GatewayError) -> None:
            nonlocal status
            status = error.status
            extra = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                     for k, v in error.headers.items()]
            body = error_body(dialect, error.status, error.message, code=error.code,
                              param=error.param)
            await send({"type": "http.response.start", "status": error.status, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode()), *extra,
            ]})
            await send({"type": "http.response.body", "body": body})

        metrics.IN_FLIGHT.inc()
        try:
            try:
                ctx = await self._context(scope, receive, dialect, request_id, started)
                watcher = _DisconnectWatch(receive, ctx)
                chain = self.state.chain
                outcome = await chain.run_request(ctx, self.state.storage, self.state.fallback)
                if outcome.delay > 0:
                    await asyncio.sleep(outcome.delay)
                upstream_at = time.perf_counter()
                overhead = upstream_at - started
                ctx.sent_upstream = True
                resp = await self.state.upstream.request(
                    ctx.method, _path_qs(scope), self._upstream_headers(ctx, scope),
                    ctx.outgoing_body(),
                )
            except GatewayError as error:
                if ctx is not None:
                    ctx.refused = True
                    if ctx.decision == "allow":
                        ctx.decision = "error"
                    outcome = ctx.rule_state.pop("_outcome", outcome)
                await send_error(error)
                return
            except UpstreamError as error:
                metrics.UPSTREAM_ERRORS.labels(kind=type(error).__name__).inc()
                await send_error(GatewayError(error.status, str(error), code="upstream_error"))
                return
            except _ClientGone:
                status = CLIENT_CLOSED
                return
            headers_at = time.perf_counter()
            ctx.upstream_seconds = headers_at - upstream_at
            metrics.child(metrics.UPSTREAM_LATENCY, route_label(path)).observe(
                ctx.upstream_seconds)
            try:
                status = resp.status
                ctx.status = status
                response_started = True
                overhead += await self._relay(ctx, outcome, resp, send, headers_at)
            except GatewayError as error:  # a body broken before anything was sent
                await send_error(error)
            except UpstreamError as error:
                metrics.UPSTREAM_ERRORS.labels(kind=type(error).__name__).inc()
                content_type = find_header(resp.headers, b"content-type") or b""
                if content_type.startswith(b"text/event-stream"):
                    await self._end_broken_stream(dialect, send, str(error))
                # Any other body has no error event: leave it unfinished, so the server
                # drops the connection and the client sees it incomplete, never a
                # complete-looking body with an SSE event glued on.
            finally:
                resp.release()
        except asyncio.CancelledError:
            if ctx is None or not ctx.client_gone:
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            status = CLIENT_CLOSED
        except Exception:
            access_log.exception("unexpected error in the proxy")
            status = 500
            if not response_started:
                await send_error(GatewayError(500, "The gateway failed unexpectedly."))
        finally:
            metrics.IN_FLIGHT.dec()
            if watcher is not None:
                watcher.cancel()
            if ctx is not None:
                ctx.status = status
                if outcome.active:  # the audit line waits: deferred shadow rules decide there
                    self.completions.submit(outcome, ctx, status)
                else:
                    self._audit(ctx, status)
            self._record(path, status, ctx, started, overhead)

    # -- request -------------------------------------------------------------
    async def _context(
        self, scope: Scope, receive: Receive, dialect: Dialect, request_id: str, started: float
    ) -> RequestContext:
        settings = self.state.settings
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if len(headers) > settings.max_headers:
            raise GatewayError(431, f"Too many request headers (limit {settings.max_headers}).")
        if _conflicting_framing(headers):
            # A proxy in front may have framed this request the other way; h11 reads it by
            # Transfer-Encoding and parses what follows as a next request (a smuggled one).
            # Refuse it and close the connection, so nothing after it is read (RFC 9112
            # 6.3; tests/hostile/test_smuggling.py).
            raise GatewayError(400, "Conflicting Content-Length and Transfer-Encoding.",
                               code="invalid_framing", headers={"connection": "close"})
        path: str = scope["path"]
        method: str = scope["method"]
        if _path_alias(path):
            # Policies match the path as written, and the upstream gets it as written;
            # an upstream that cleans paths (dot segments, "//", a trailing slash, case)
            # would serve `/v1/chat/./completions` as the chat route that no rate or
            # access rule matched (tests/hostile/test_path_aliases.py).
            raise GatewayError(400, f"The path {path!r} is not in canonical form.",
                               code="invalid_path")
        is_model_route = method == "POST" and path in MODEL_ROUTES
        policy = self.state.chain.policy
        if not getattr(policy, "forward_unknown_paths", True) and route_label(path) == "other":
            raise GatewayError(404, f"Unknown path {path}.", code="not_found")
        if is_model_route:
            content_type = find_header(headers, b"content-type") or b""
            if not content_type.split(b";")[0].strip().lower() == b"application/json":
                raise GatewayError(415, "Requests to this route must be application/json.")
        body = await _read_body(receive, headers, settings.max_body_bytes)
        peer = scope.get("client") or ("", 0)
        client_ip = self.state.client_ip.resolve(
            peer[0], [v for k, v in headers if k == b"x-forwarded-for"])
        try:
            identity = self.state.identify(headers, client_ip)
        except AmbiguousCredentials as exc:
            raise GatewayError(401, str(exc), code="ambiguous_credentials") from exc
        ctx = RequestContext(
            request_id=request_id, method=method, path=path, query=scope.get("query_string", b""),
            headers=headers, client_ip=client_ip, dialect=dialect, identity=identity,
            body=body, started=started, is_model_route=is_model_route,
        )
        standing = self.state.standings.get(identity.id)
        if standing is not None:
            ctx.suspicion = standing.current(time.time())
            ctx.throttle = standing.throttle
            ctx.perturb_level = standing.perturb_level
        if is_model_route:
            _ = ctx.json  # refuse malformed JSON before any policy or upstream sees it
        return ctx

    def _upstream_headers(self, ctx: RequestContext, scope: Scope) -> list[tuple[str, str]]:
        out = upstream_request_headers(ctx.headers)
        peer = (scope.get("client") or ("", 0))[0]
        forwarded = [v.decode("latin-1") for k, v in ctx.headers if k == b"x-forwarded-for"]
        if forwarded and self.state.client_ip.resolve(peer, []) != peer:
            chain = ", ".join([*forwarded, peer])  # peer is a trusted proxy: extend its chain
        else:
            chain = peer  # an untrusted client's own X-Forwarded-For is not passed on
        out.append(("x-forwarded-for", chain))
        out.append(("x-request-id", ctx.request_id))
        out.append(("accept-encoding", "identity"))
        return out

    # -- response ------------------------------------------------------------
    async def _relay(
        self, ctx: RequestContext, outcome: RequestOutcome, resp: UpstreamResponse,
        send: Send, headers_at: float,
    ) -> float:
        """Send the upstream response on; return the gateway time it took."""
        content_type = find_header(resp.headers, b"content-type") or b""
        is_sse = content_type.startswith(b"text/event-stream")
        stream_rules = outcome.stream_rules(ctx) if is_sse else []
        body_rules = [] if is_sse else outcome.body_rules(ctx)
        headers = client_response_headers(
            resp.headers, keep_length=not (stream_rules or body_rules))
        headers.extend(ctx.response_headers)
        headers.append((b"x-request-id", ctx.request_id.encode()))
        Chain.response_start(outcome, ctx, resp.status, headers)
        start = {"type": "http.response.start", "status": resp.status, "headers": headers}
        if body_rules:
            try:
                raw = await resp.read()
            except UpstreamError as error:
                # Nothing is sent yet: a plain error in the dialect (a stream's error
                # event would need a started response).
                metrics.UPSTREAM_ERRORS.labels(kind=type(error).__name__).inc()
                raise GatewayError(error.status, str(error), code="upstream_error") from error
            body = Chain.response_body(body_rules, ctx, raw)
            headers.append((b"content-length", str(len(body)).encode()))
            spent = time.perf_counter() - headers_at
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return spent
        await send(start)
        spent = time.perf_counter() - headers_at
        if stream_rules:
            decoder = SSEDecoder()
            try:
                async for chunk in resp.iter_chunks():
                    out = [e.raw for ev in decoder.feed(chunk)
                           for e in Chain.stream_event(stream_rules, ctx, ev)]
                    if out:
                        await send({"type": "http.response.body", "body": b"".join(out),
                                    "more_body": True})
                out = [e.raw for ev in decoder.flush()
                       for e in Chain.stream_event(stream_rules, ctx, ev)]
            except SSEProtocolError as exc:
                raise UpstreamError(f"upstream sent a malformed event stream: {exc}") from exc
            await send({"type": "http.response.body", "body": b"".join(out)})
        else:
            async for chunk in resp.iter_chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        return spent

    @staticmethod
    async def _end_broken_stream(dialect: Dialect, send: Send, message: str) -> None:
        """End a stream the upstream broke with an error event the SDKs raise on."""
        error = orjson.loads(error_body(dialect, 502, message))
        if dialect is Dialect.ANTHROPIC:
            event = b"event: error\ndata: " + orjson.dumps(error) + b"\n\n"
        else:
            event = b"data: " + orjson.dumps(error) + b"\n\n"
        await send({"type": "http.response.body", "body": event})

    # -- bookkeeping ---------------------------------------------------------
    def _audit(self, ctx: RequestContext, status: int) -> None:
        if self.audit is not None:  # never blocks: a writer thread does the I/O
            self.audit.record(ctx, status, self.state.chain.policy)

    async def drain(self) -> None:
        """Wait for the complete stage of every finished request (shutdown, tests)."""
        await self.completions.drain()

    def _record(
        self, path: str, status: int, ctx: RequestContext | None, started: float,
        overhead: float,
    ) -> None:
        route = route_label(path)
        decision = ctx.decision if ctx is not None else "error"
        metrics.child(metrics.REQUESTS, route, str(status), decision.split(":", 1)[0]).inc()
        if overhead:
            metrics.child(metrics.OVERHEAD, route).observe(overhead)
        if self.state.settings.access_log and access_log.isEnabledFor(logging.INFO):
            access_log.info("request", extra={"fields": {
                "request_id": ctx.request_id if ctx else None,
                "identity": ctx.identity.id if ctx else None,
                "route": route, "method": ctx.method if ctx else None, "status": status,
                "decision": decision, "overhead_ms": round(overhead * 1000, 3),
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            }})


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    given = find_header(headers, b"x-request-id")
    if given is not None and _REQUEST_ID.match(given):
        return given.decode("ascii")
    return os.urandom(16).hex()  # what uuid4().hex carries, without building a UUID


def _conflicting_framing(headers: list[tuple[bytes, bytes]]) -> bool:
    """Content-Length together with Transfer-Encoding, or two different lengths."""
    lengths = {v.strip() for k, v in headers if k == b"content-length"}
    chunked = any(k == b"transfer-encoding" for k, _ in headers)
    return (chunked and bool(lengths)) or len(lengths) > 1


_CANONICAL_ROUTES = {route.lower(): route for route in KNOWN_ROUTES}


def _path_alias(path: str) -> bool:
    """A dot segment or empty segment anywhere, or another spelling of a known route
    (trailing slash, letter case)."""
    segments = path.split("/")[1:]
    if any(s in ("", ".", "..") for s in segments[:-1]) or segments[-1:] in (["."], [".."]):
        return True
    canonical = _CANONICAL_ROUTES.get(path.rstrip("/").lower())
    return canonical is not None and canonical != path


def _path_qs(scope: Scope) -> str:
    # raw_path keeps the client's exact encoding; the host is always ours.
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    path = raw.decode("latin-1")
    if not path.startswith("/"):
        path = "/" + path
    query: bytes = scope.get("query_string", b"")
    return path + ("?" + query.decode("latin-1") if query else "")


async def _read_body(receive: Receive, headers: list[tuple[bytes, bytes]], limit: int) -> bytes:
    declared = find_header(headers, b"content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise GatewayError(413, f"Request body too large (limit {limit} bytes).")
        except ValueError as exc:
            raise GatewayError(400, "Invalid Content-Length header.") from exc
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone()
        chunk: bytes = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise GatewayError(413, f"Request body too large (limit {limit} bytes).")
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


__all__ = ["Identity", "ProxyHandler"]
