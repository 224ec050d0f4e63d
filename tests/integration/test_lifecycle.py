"""SIGTERM on a served gateway: readiness drops first, the stream in flight
completes, new connections are refused, the process exits cleanly."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx

from tests.support.gateway_process import GatewayProcess

POLICY = Path(__file__).parents[2] / "policies" / "default.yaml"
BODY = {"model": "demo-model", "stream": True, "max_tokens": 400,
        "messages": [{"role": "user", "content": "Describe how rivers shape valleys."}]}


def test_sigterm_drains_then_stops_accepting_and_finishes_the_stream() -> None:
    gateway = GatewayProcess(policy=POLICY, upstream="demo", redis="memory",
                             demo_word_delay="0.02", shutdown_drain_seconds="1",
                             shutdown_grace_seconds="20")
    lines: list[str] = []
    first_event = threading.Event()
    errors: list[BaseException] = []

    def stream() -> None:
        try:
            with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=BODY,
                              headers={"authorization": "Bearer sk-lifecycle"},
                              timeout=30) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    lines.append(line)
                    first_event.set()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
            first_event.set()

    try:
        assert httpx.get(gateway.url + "/readyz", timeout=5).status_code == 200
        reader = threading.Thread(target=stream)
        reader.start()
        assert first_event.wait(10)
        gateway.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        # draining: not ready, still alive and still serving what reaches it
        ready = httpx.get(gateway.url + "/readyz", timeout=5)
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        assert httpx.get(gateway.url + "/healthz", timeout=5).status_code == 200
        # after the drain delay the listening socket is closed
        deadline = time.monotonic() + 5
        while True:
            try:
                httpx.get(gateway.url + "/healthz", timeout=1)
            except httpx.ConnectError:
                break
            assert time.monotonic() < deadline, "still accepting connections"
            time.sleep(0.1)
        assert gateway.proc.poll() is None  # the stream is still running
        reader.join(30)
        assert not errors, errors
        data = [line for line in lines if line.startswith("data:")]
        assert data[-1] == "data: [DONE]"  # the stream in flight completed
        assert len(data) > 50
        # uvicorn re-raises the signal once shut down: exit by SIGTERM, not a crash
        assert gateway.proc.wait(20) in (0, -signal.SIGTERM)
        assert "timeout graceful shutdown exceeded" not in gateway.log.read_text()
    finally:
        gateway.stop()
