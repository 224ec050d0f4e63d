"""The complete stage of finished requests, run in batches by one worker task.

A request's complete stage (deferred shadow rules, cross-identity counters, settling
its counters) needs storage calls but nothing from the client, so it runs after the
response. One worker takes every request that finished since its last batch: while a
batch waits on storage, the requests finishing meanwhile queue for the next one. At
low load a batch is one request and nothing waits longer than before; under load
batches grow, so the storage calls per request fall (two per batch, not two per
request) and no task is created per request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.pipeline.chain import Chain, RequestOutcome
from gateway.pipeline.context import RequestContext

log = logging.getLogger("distill_guard.access")

MAX_BATCH = 256  # requests per batch: bounds one script's size and one call's work


class CompletionQueue:
    def __init__(self, after: Callable[[RequestContext, int], None]) -> None:
        """`after(ctx, status)` runs once a request's complete stage is over."""
        self._after = after
        self._pending: list[tuple[RequestOutcome, RequestContext, int]] = []
        self._worker: asyncio.Task[None] | None = None

    def submit(self, outcome: RequestOutcome, ctx: RequestContext, status: int) -> None:
        self._pending.append((outcome, ctx, status))
        if self._worker is None:
            self._worker = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                try:
                    await Chain.complete_many([(outcome, ctx) for outcome, ctx, _ in batch])
                except Exception:
                    log.exception("complete stage failed")
                finally:
                    for _, ctx, status in batch:
                        self._after(ctx, status)
        finally:
            self._worker = None  # no await between the empty check and here

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def drain(self) -> None:
        """Wait until every submitted request is complete (shutdown, tests)."""
        while self._worker is not None:
            await asyncio.shield(self._worker)
