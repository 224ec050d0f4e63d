"""The optional audit log: one traffic line (gateway/authoring/traffic.py) per request.

Off by default; `DISTILL_GUARD_AUDIT_LOG=/var/log/distill-guard/audit.jsonl`
turns it on. It holds prompts (`body`) unless `DISTILL_GUARD_AUDIT_LOG_BODIES=false`:
enabling it is the operator's choice, and the file needs the care any store
of user prompts needs. It never holds an API key: the identity id only, and
no authorization, x-api-key or cookie header.

The request path never waits on the disk: `record` appends a small entry to a
buffer under a lock held for microseconds, and a writer thread turns entries
into JSON lines and appends them. The buffer is bounded in bytes (body sizes
plus a little): when the disk falls behind that far, entries are dropped and
counted in `distill_guard_audit_log_dropped_total`, requests never block.
`close` (at shutdown) writes what is buffered and closes the file.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import Counter
from pydantic import BaseModel

from gateway.authoring.traffic import FORMAT_VERSION, recorded_headers
from gateway.pipeline.context import RequestContext

log = logging.getLogger("distill_guard.audit")

DROPPED = Counter(
    "distill_guard_audit_log_dropped_total",
    "Audit log lines dropped because the write buffer was full (the disk fell behind).",
)
WRITE_ERRORS = Counter(
    "distill_guard_audit_log_write_errors_total",
    "Failed writes of the audit log (each loses the lines of one batch).",
)
_ENTRY_OVERHEAD = 512  # bytes counted per entry on top of its body


@dataclass(slots=True)
class AuditEntry:
    """What the request path hands over; turned into a line by the writer thread."""

    ts: float
    request_id: str
    identity: str
    authenticated: bool
    method: str
    path: str
    query: bytes
    client_ip: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    status: int
    decision: str
    shadow: list[tuple[str, str]]


def entry_for(ctx: RequestContext, status: int, headers: frozenset[bytes]) -> AuditEntry:
    """The entry of one finished request; `headers`: the names to keep."""
    return AuditEntry(
        # when the request arrived and the policies ran
        ts=time.time() - (time.perf_counter() - ctx.started),
        request_id=ctx.request_id, identity=ctx.identity.id,
        authenticated=ctx.identity.authenticated, method=ctx.method, path=ctx.path,
        query=ctx.query, client_ip=ctx.client_ip,
        headers=[(k, v) for k, v in ctx.headers if k in headers],
        body=ctx.body,  # the client's bytes, before any policy rewrote the JSON
        status=status, decision=ctx.decision,
        shadow=list(ctx.rule_state.get("_shadow", ())),
    )


def to_line(entry: AuditEntry, *, bodies: bool = True) -> bytes:
    """The entry as one traffic line (keys in a fixed order)."""
    record: dict[str, Any] = {
        "v": FORMAT_VERSION, "ts": round(entry.ts, 6), "request_id": entry.request_id,
        "identity": entry.identity, "authenticated": entry.authenticated,
        "method": entry.method, "path": entry.path,
    }
    if entry.query:
        record["query"] = entry.query.decode("latin-1")
    record["client_ip"] = entry.client_ip
    record["headers"] = {k.decode("latin-1"): v.decode("latin-1") for k, v in entry.headers}
    body = _json_or_none(entry.body)
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        record["model"] = body["model"]
    if bodies:
        record["body"] = body
    record["status"] = entry.status
    record["decision"] = entry.decision
    if entry.shadow:
        record["shadow"] = dict(entry.shadow)
    try:
        return orjson.dumps(record) + b"\n"
    except TypeError:  # e.g. an integer beyond 64 bits in the body
        record["body"] = None
        return orjson.dumps(record) + b"\n"


def _json_or_none(body: bytes) -> Any:
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None  # not JSON (e.g. a multipart upload on a forwarded path)


class AuditLog:
    """Appends traffic lines to `path` from a writer thread; `record` never blocks."""

    def __init__(
        self, path: Path | str, *, bodies: bool = True, max_buffer_bytes: int = 64 << 20
    ) -> None:
        self.path = Path(str(path).replace("{pid}", str(os.getpid())))
        self.bodies = bodies
        self._max_bytes = max_buffer_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")
        self._cond = threading.Condition()
        self._pending: list[AuditEntry] = []
        self._buffered = 0  # bytes of entries queued or being written
        self._closed = False
        self._names: tuple[object, frozenset[bytes]] = (None, frozenset())
        self._thread = threading.Thread(target=self._run, name="distill-guard-audit",
                                        daemon=True)
        self._thread.start()

    def record(self, ctx: RequestContext, status: int, policy: BaseModel) -> None:
        """Queue the line of one finished request; drop it (counted) when the buffer is full."""
        entry = entry_for(ctx, status, self._headers(policy))
        size = len(entry.body) + _ENTRY_OVERHEAD
        with self._cond:
            if self._closed or self._buffered + size > self._max_bytes:
                DROPPED.inc()
                return
            self._buffered += size
            self._pending.append(entry)
            self._cond.notify()

    def _headers(self, policy: BaseModel) -> frozenset[bytes]:
        known, names = self._names
        if known is not policy:  # recomputed once per (re)loaded policy
            names = recorded_headers(policy)
            self._names = (policy, names)
        return names

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                batch, self._pending = self._pending, []
                closed = self._closed
            if batch:
                self._write(batch)
            if closed and not batch:
                return

    def _write(self, batch: list[AuditEntry]) -> None:
        try:
            self._file.write(b"".join(to_line(e, bodies=self.bodies) for e in batch))
            self._file.flush()
        except (OSError, ValueError) as exc:
            WRITE_ERRORS.inc()
            log.warning("audit log write failed (%d lines lost): %s", len(batch), exc)
        finally:
            with self._cond:
                self._buffered -= sum(len(e.body) + _ENTRY_OVERHEAD for e in batch)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until what was recorded so far is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                if self._buffered <= 0:
                    return
            time.sleep(0.005)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is buffered, stop the writer and close the file."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)
        self._file.close()
