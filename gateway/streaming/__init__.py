"""I/O-free stream handling: SSE decoding/encoding and token usage tracking."""

from gateway.streaming.sse import (
    DEFAULT_MAX_EVENT_SIZE,
    SSEDecoder,
    SSEEvent,
    SSEProtocolError,
    encode_event,
)
from gateway.streaming.usage import (
    Dialect,
    StreamUsageTracker,
    UsageCounts,
    is_openai_usage_only_chunk,
    usage_from_body,
)

__all__ = [
    "DEFAULT_MAX_EVENT_SIZE",
    "Dialect",
    "SSEDecoder",
    "SSEEvent",
    "SSEProtocolError",
    "StreamUsageTracker",
    "UsageCounts",
    "encode_event",
    "is_openai_usage_only_chunk",
    "usage_from_body",
]
