"""A circuit breaker around shared storage, so no request waits on a dead Redis.

Closed: calls go through. After `failure_threshold` consecutive failures it
opens: calls fail at once with StorageError (the chain then uses the local
fallback) for `reset_after` seconds. Then one probe call is let through
(half-open); success closes the breaker, failure opens it again. So when
Redis comes back, shared counting resumes within about `reset_after`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from gateway import metrics
from gateway.clock import Clock, SystemClock
from gateway.storage.base import (
    Admission,
    AdmitOp,
    CircuitOpen,
    CounterBackend,
    SettleOp,
    StorageError,
)

log = logging.getLogger("distill_guard.storage")
T = TypeVar("T")


class CircuitBreaker(CounterBackend):
    def __init__(
        self, inner: CounterBackend, *, failure_threshold: int = 3, reset_after: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self._threshold = failure_threshold
        self._reset_after = reset_after
        self._clock = clock or SystemClock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        metrics.STORAGE_SHARED.set(1)

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    async def _guard(self, call: Callable[[], Awaitable[T]]) -> T:
        if self._opened_at is not None:
            waited = self._clock.monotonic() - self._opened_at
            if waited < self._reset_after or self._probing:
                raise CircuitOpen("circuit open: shared storage recently failed")
            self._probing = True  # half-open: this call is the probe
        try:
            result = await call()
        except StorageError:
            self._failed()
            raise
        finally:
            self._probing = False
        self._succeeded()
        return result

    def _failed(self) -> None:
        self._failures += 1
        if self._opened_at is not None or self._failures >= self._threshold:
            if self._opened_at is None:
                log.warning("storage circuit opened after %d failures", self._failures)
            self._opened_at = self._clock.monotonic()
            metrics.STORAGE_SHARED.set(0)

    def _succeeded(self) -> None:
        if self._opened_at is not None:
            log.warning("storage circuit closed: shared counting resumed")
        self._failures = 0
        self._opened_at = None
        metrics.STORAGE_SHARED.set(1)

    async def admit(self, ops: Sequence[AdmitOp]) -> Admission:
        return await self._guard(lambda: self.inner.admit(ops))

    async def settle(self, ops: Sequence[SettleOp]) -> None:
        await self._guard(lambda: self.inner.settle(ops))

    async def prepare(self) -> None:
        await self.inner.prepare()

    async def ping(self) -> None:
        await self.inner.ping()  # readiness always asks the real thing

    async def aclose(self) -> None:
        await self.inner.aclose()
