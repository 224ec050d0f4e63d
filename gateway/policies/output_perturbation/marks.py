"""The watermark library (gateway/watermark), as this kind uses it.

The handler only needs "mark a whole text" and "mark a stream of deltas,
holding back at most a partial word"; the protocols below say exactly that,
so tests can also drive the wiring with a stand-in marker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from gateway.watermark import Watermarker


class StreamMarker(Protocol):
    def feed(self, delta: str) -> str:
        """Marked text to emit now; may hold back a partial word."""

    def flush(self) -> str:
        """The held-back rest, at the end of a text block."""


class Marker(Protocol):
    def mark(self, text: str) -> str:
        """Mark a whole text."""

    def stream(self) -> StreamMarker:
        """A marker for one streamed text block."""


MarkerFactory = Callable[[bytes, str], Marker]


def watermarker() -> MarkerFactory | None:
    """`Watermarker(secret, identity)`: what the handler builds its markers with."""
    return Watermarker
