"""Per-request state. It lives here, never on a handler's `self`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.errors import Dialect, GatewayError
from gateway.identity import Identity


@dataclass(slots=True)
class RequestContext:
    request_id: str
    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    client_ip: str
    dialect: Dialect
    identity: Identity
    body: bytes
    started: float
    is_model_route: bool = False
    _json: dict[str, Any] | None = None
    json_dirty: bool = False
    status: int = 0
    decision: str = "allow"
    upstream_seconds: float = 0.0
    client_gone: bool = False
    # The gateway answered itself (refusal or bad input).
    refused: bool = False
    # The request was handed to the upstream (so it may have cost tokens).
    sent_upstream: bool = False
    response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    # Time of the counter storage's answer for this request (Redis TIME), 0 if none.
    storage_now: float = 0.0
    # The identity's standing from earlier requests (suspicion, throttle, ...).
    suspicion: float = 0.0
    throttle: float = 1.0
    perturb_level: int = 0
    # Scratch space per rule name, for state carried from request to complete.
    rule_state: dict[str, Any] = field(default_factory=dict)

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def json(self) -> dict[str, Any]:
        """The request body as a JSON object, parsed once (model routes only)."""
        if self._json is None:
            self._json = parse_json_object(self.body)
        return self._json

    @property
    def model(self) -> str | None:
        if not self.is_model_route:
            return None
        model = self.json.get("model")
        return model if isinstance(model, str) else None

    @property
    def streaming(self) -> bool:
        return self.is_model_route and self.json.get("stream") is True

    def mark_json_changed(self) -> None:
        self.json_dirty = True

    def outgoing_body(self) -> bytes:
        """The body to send upstream: the original bytes unless a policy changed it."""
        if self.json_dirty and self._json is not None:
            return orjson.dumps(self._json)
        return self.body


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise GatewayError(400, "The request body must be a JSON object.")
    return value
