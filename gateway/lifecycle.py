"""Graceful shutdown: readiness drops first, in-flight work finishes, then exit.

On SIGTERM the gateway
1. answers `/readyz` with 503 at once (load balancers and Kubernetes stop
   sending new requests), while still accepting for `shutdown_drain_seconds`
   (requests already routed here are not refused);
2. then hands the signal to uvicorn, which stops accepting connections and
   waits up to `shutdown_grace_seconds` for in-flight requests and streams;
3. then runs the app's shutdown (drain background work, close pools) and exits.

A second SIGTERM skips the drain delay. uvicorn installs its handler before
the app starts; we wrap it from the app's lifespan, in each worker process.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger("distill_guard.lifecycle")

Handler = Callable[[int, FrameType | None], Any]


class DrainOnTerm:
    """Wraps the current SIGTERM handler (uvicorn's) with a drain delay."""

    def __init__(self, delay: float, on_drain: Callable[[], None]) -> None:
        self.delay = delay
        self.on_drain = on_drain
        self.draining = False
        self._previous: Handler | None = None
        self._timer: threading.Timer | None = None

    def install(self) -> bool:
        """False when signals cannot be taken here (not the main thread)."""
        try:
            previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._handle)
        except ValueError:
            return False
        self._previous = previous if callable(previous) else None
        return True

    def _handle(self, sig: int, frame: FrameType | None) -> None:
        if self.draining:  # asked twice: stop waiting
            if self._timer is not None:
                self._timer.cancel()
            self._forward(sig, frame)
            return
        self.draining = True
        self.on_drain()
        log.info("SIGTERM: readiness off, draining", extra={"fields": {
            "accepting_for_seconds": self.delay}})
        if self.delay <= 0:
            self._forward(sig, frame)
            return
        self._timer = threading.Timer(self.delay, self._forward, args=(sig, None))
        self._timer.daemon = True
        self._timer.start()

    def _forward(self, sig: int, frame: FrameType | None) -> None:
        if self._previous is not None:
            self._previous(sig, frame)  # uvicorn: stop accepting, wait, shut down
        else:
            signal.default_int_handler(sig, frame)
