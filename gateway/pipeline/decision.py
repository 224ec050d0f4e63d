"""What a rule decides about a request at the request stage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gateway.errors import GatewayError


class Action(StrEnum):
    ALLOW = "allow"
    DELAY = "delay"
    MODIFY = "modify"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    error: GatewayError | None = None
    delay: float = 0.0
    mutate: Callable[[dict[str, Any]], None] | None = None
    # Headers for the client response (e.g. rate-limit headers), even when allowed.
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


ALLOW = Decision(Action.ALLOW)


def reject(error: GatewayError) -> Decision:
    return Decision(Action.REJECT, error=error)
