"""New SSE events for rewritten JSON payloads, built cheaply.

`orjson.dumps` never emits a raw CR or LF (control characters are escaped), so
a payload is always one `data:` line and `encode_event`'s checks are not
needed. Like the decoder, this fills the frozen dataclass's slots directly:
its generated `__init__` costs more than the rest of building the event.
"""

from __future__ import annotations

from typing import Any

from gateway.streaming.sse import SSEEvent

_new = object.__new__
_set_raw, _set_event, _set_data, _set_id, _set_retry = (
    SSEEvent.__dict__[name].__set__ for name in ("raw", "event", "data", "id", "retry")
)
_PREFIXES: dict[str | None, bytes] = {None: b"data: "}


def json_event(data: bytes, name: str | None) -> SSEEvent:
    """An event carrying one line of JSON `data`, named `name` (or unnamed)."""
    prefix = _PREFIXES.get(name)
    if prefix is None:
        if name is None or "\n" in name or "\r" in name:  # pragma: no cover - never named so
            raise ValueError("SSE event name cannot contain CR or LF")
        prefix = b"event: " + name.encode() + b"\ndata: "
        if len(_PREFIXES) < 64:  # the few names a model API uses
            _PREFIXES[name] = prefix
    obj: Any = _new(SSEEvent)
    _set_raw(obj, prefix + data + b"\n\n")
    _set_event(obj, name)
    _set_data(obj, data)
    _set_id(obj, None)
    _set_retry(obj, None)
    event: SSEEvent = obj
    return event
