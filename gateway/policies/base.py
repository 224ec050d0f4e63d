"""What a policy kind provides: a config schema and a handler with stage hooks.

Like Kong plugins, each kind is a folder `gateway/policies/<kind>/` with
`schema.py` (a pydantic `Config` model) and `handler.py` (a `Handler` class).
The chain owns the cross-cutting rules (order, match, shadow,
on_storage_error); a handler only says what it would do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel

from gateway.pipeline.context import RequestContext
from gateway.pipeline.decision import ALLOW, Decision
from gateway.storage.base import AdmitOp, ObserveResult, OpResult, SettleOp
from gateway.streaming.sse import SSEEvent

ConfigT = TypeVar("ConfigT", bound=BaseModel)
Result = OpResult | ObserveResult


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """The chain-level settings of one rule, as a handler may need them."""

    name: str
    kind: str
    shadow: bool
    on_storage_error: Literal["allow", "deny"]


class Handler(Generic[ConfigT]):
    """Base handler: every hook is optional and does nothing by default."""

    # Set True (per instance or class) by rules that read streamed events or
    # whole non-streamed bodies; the proxy decodes/buffers only for them.
    reads_stream: bool = False
    reads_body: bool = False
    # Replicas sharing this rule's limits: the local fallback enforces 1/N.
    fallback_replicas: int = 1
    # True when a refusal of this rule's counters must not stop other rules'
    # counters being taken (it lets requests through anyway, e.g. degrade).
    isolated: bool = False
    # True when a *shadow* rule of this kind needs nothing on the request path: it
    # never acts and reads no response, so its plan, counting and decision run in
    # the complete stage, after the client has its answer (Chain.complete).
    defer_in_shadow: bool = False

    def __init__(self, rule: RuleInfo, config: ConfigT, shared: Any = None) -> None:
        self.rule = rule
        self.config = config
        self.shared = shared

    # -- request stage -------------------------------------------------------
    def plan(self, ctx: RequestContext, group: int) -> Sequence[AdmitOp]:
        """Counter ops this request needs; all rules' ops go in one round trip."""
        return ()

    def decide(
        self, ctx: RequestContext, results: Sequence[Result], admitted: bool
    ) -> Decision:
        """Decide, given this rule's own op results (plan order) and whether its
        group was written (`admitted`: all ops of the group fit)."""
        return ALLOW

    # -- response stages -----------------------------------------------------
    def reads_response(self, ctx: RequestContext) -> bool:
        """Whether this request's response must be decoded for this rule (only
        asked of rules with `reads_stream`/`reads_body`); False lets the proxy
        relay the bytes untouched when no other rule needs them."""
        return True

    def on_response_start(
        self, ctx: RequestContext, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """Inspect or edit response headers before they are sent."""

    def on_stream_event(self, ctx: RequestContext, event: SSEEvent) -> list[SSEEvent] | None:
        """Return replacement events, or None to pass the event on unchanged."""
        return None

    def on_response_body(self, ctx: RequestContext, body: bytes) -> bytes | None:
        """Return a rewritten non-streamed body, or None to keep it."""
        return None

    # -- complete stage (off the client's path) -------------------------------
    def cross_ops(self, ctx: RequestContext) -> Sequence[AdmitOp]:
        """Counters keyed by something other than the identity (other Cluster
        slots, e.g. a template's set of identities); one call, before settle."""
        return ()

    def on_cross_results(self, ctx: RequestContext, results: Sequence[Result]) -> None:
        """Receive the results of `cross_ops` (plan order)."""

    def settle(self, ctx: RequestContext) -> Sequence[SettleOp]:
        """Counter reconciliation after the response; one round trip for all rules."""
        return ()

    def on_complete(self, ctx: RequestContext) -> None:
        """Anything else to record once the exchange is over."""
