"""The audit log writer: one traffic line per request, bounded buffer, never a raw key."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import REGISTRY

from gateway.authoring.audit import AuditLog, entry_for, to_line
from gateway.errors import Dialect
from gateway.identity import Identity
from gateway.pipeline.context import RequestContext
from gateway.pipeline.loader import parse_policy

POLICY = parse_policy("version: 1\nidentity: {tier_header: x-tier}\nrules: []\n", "<test>")
HEADERS = [(b"authorization", b"Bearer sk-live-123"), (b"x-api-key", b"sk-live-123"),
           (b"cookie", b"session=1"), (b"user-agent", b"openai-python/1.0"),
           (b"x-tier", b"pro"), (b"content-type", b"application/json")]


def context(body: bytes = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}',
            path: str = "/v1/chat/completions") -> RequestContext:
    ctx = RequestContext(
        request_id="req-1", method="POST", path=path, query=b"", headers=HEADERS,
        client_ip="10.0.0.1", dialect=Dialect.OPENAI, identity=Identity("0123456789abcdef", True),
        body=body, started=time.perf_counter(), is_model_route=True,
    )
    ctx.decision = "delay:per-key"
    ctx.rule_state["_shadow"] = [("watch", "reject")]
    return ctx


def dropped() -> float:
    return REGISTRY.get_sample_value("distill_guard_audit_log_dropped_total") or 0.0


def test_a_line_holds_the_request_and_outcome_but_no_credentials() -> None:
    names = frozenset({b"user-agent", b"x-tier"})
    line = to_line(entry_for(context(), 200, names))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    record = json.loads(line)
    assert list(record) == ["v", "ts", "request_id", "identity", "authenticated", "method",
                            "path", "client_ip", "headers", "model", "body", "status",
                            "decision", "shadow"]
    assert abs(record["ts"] - time.time()) < 5
    assert record["identity"] == "0123456789abcdef"
    assert record["headers"] == {"user-agent": "openai-python/1.0", "x-tier": "pro"}
    assert record["body"]["messages"][0]["content"] == "hi"
    assert (record["status"], record["decision"]) == (200, "delay:per-key")
    assert record["shadow"] == {"watch": "reject"}
    assert b"sk-live-123" not in line and b"session" not in line


def test_without_bodies_only_the_model_is_kept() -> None:
    record = json.loads(to_line(entry_for(context(), 200, frozenset()), bodies=False))
    assert "body" not in record and record["model"] == "m"


def test_a_body_that_is_not_json_is_null() -> None:
    record = json.loads(to_line(entry_for(context(b"--multipart--"), 200, frozenset())))
    assert record["body"] is None and "model" not in record


def test_close_writes_everything_and_pid_names_the_file(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "logs" / "audit-{pid}.jsonl")
    assert audit.path == tmp_path / "logs" / f"audit-{os.getpid()}.jsonl"
    for _ in range(50):
        audit.record(context(), 200, POLICY)
    audit.close()
    lines = audit.path.read_bytes().splitlines()
    assert len(lines) == 50
    assert all(orjson.loads(line)["headers"] == {"user-agent": "openai-python/1.0",
                                                  "x-tier": "pro"} for line in lines)
    audit.record(context(), 200, POLICY)  # after close: dropped, no error


def test_a_slow_disk_drops_lines_instead_of_blocking(tmp_path: Path, monkeypatch: Any) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl", max_buffer_bytes=4096)
    gate = threading.Event()
    real_write = audit._file.write

    def slow_write(data: bytes) -> int:
        gate.wait(10)
        return real_write(data)

    monkeypatch.setattr(audit._file, "write", slow_write)
    before = dropped()
    started = time.perf_counter()
    for _ in range(100):  # ~600 bytes each against a 4 KiB buffer
        audit.record(context(), 200, POLICY)
    assert time.perf_counter() - started < 1.0  # never waited on the disk
    lost = dropped() - before
    assert 80 <= lost < 100
    gate.set()
    audit.close()
    assert len(audit.path.read_bytes().splitlines()) == 100 - lost
