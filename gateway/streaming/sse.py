"""I/O-free Server-Sent Events decoding, in the style of httpx's ``_decoders``.

The gateway relays events it does not rewrite byte-for-byte, so every decoded
:class:`SSEEvent` keeps the exact bytes it was parsed from (``raw``), and the
concatenated ``raw`` of all events equals the input stream. Field parsing
follows the WHATWG "interpreting an event stream" rules:
https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["DEFAULT_MAX_EVENT_SIZE", "SSEDecoder", "SSEEvent", "SSEProtocolError", "encode_event"]

DEFAULT_MAX_EVENT_SIZE = 1024 * 1024

_BOM = b"\xef\xbb\xbf"
_LF = 0x0A
_CR = 0x0D
# A blank line is a line terminator directly followed by another one. With
# terminators LF, CR and CRLF every such pair contains one of these byte pairs
# (CRLF+CRLF contains LF CR, CRLF+LF contains LF LF, ...), and each of them
# always means a blank line, so no line-by-line scan is needed.
_LF_ONLY_PAIRS: tuple[bytes, ...] = (b"\n\n",)
_ALL_PAIRS: tuple[bytes, ...] = (b"\n\n", b"\n\r", b"\r\r")


class SSEProtocolError(Exception):
    """The upstream sent something that cannot be relayed as an event stream."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One event block: its exact bytes and its parsed fields.

    Where a relay needs more than a browser, this differs from the spec on
    purpose: blocks with no ``data`` field (comments such as keep-alive pings,
    stray blank lines) are events too, with ``data == b""``, so that they are
    forwarded; ``id`` and ``retry`` are those of this block, not the stream's
    last event ID; a final block without its blank line is returned by
    ``flush`` (a browser would drop it).
    """

    raw: bytes
    event: str | None = None
    data: bytes = b""
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """Parse ``data`` as JSON; raises ``ValueError`` when it is not JSON."""
        return orjson.loads(self.data)  # orjson.JSONDecodeError is a ValueError

    @property
    def is_done(self) -> bool:
        """True for OpenAI's ``data: [DONE]`` end-of-stream sentinel."""
        return self.data == b"[DONE]"


# A frozen dataclass's __init__ goes through object.__setattr__ per field,
# which costs more than the rest of the parse; the decoder fills the slots
# directly instead (about half the cost).
_new = object.__new__
_set_raw, _set_event, _set_data, _set_id, _set_retry = (
    SSEEvent.__dict__[name].__set__ for name in ("raw", "event", "data", "id", "retry")
)


def _make_event(
    raw: bytes, event: str | None, data: bytes, id_: str | None, retry: int | None
) -> SSEEvent:
    obj: SSEEvent = _new(SSEEvent)
    _set_raw(obj, raw)
    _set_event(obj, event)
    _set_data(obj, data)
    _set_id(obj, id_)
    _set_retry(obj, retry)
    return obj


def _parse(raw: bytes, begin: int, end: int) -> SSEEvent:
    """Build an event from its raw bytes; ``raw[begin:end]`` holds its field
    lines without the last line's terminator."""
    # Fast path: the usual single "data:" line, sliced out with one copy.
    if (
        raw.startswith(b"data:", begin)
        and raw.find(b"\n", begin, end) < 0
        and raw.find(b"\r", begin, end) < 0
    ):
        begin += 6 if raw.startswith(b" ", begin + 5) else 5
        return _make_event(raw, None, raw[begin:end], None, None)
    lines_blob = raw[begin:end]
    if not lines_blob:
        return _make_event(raw, None, b"", None, None)
    if b"\r" in lines_blob:
        lines_blob = lines_blob.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    event: str | None = None
    data: list[bytes] = []
    id_: str | None = None
    retry: int | None = None
    for line in lines_blob.split(b"\n"):
        name, _, value = line.partition(b":")
        if not name:
            continue  # comment (":...") or an empty line at end of stream
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace") or None
        elif name == b"id":
            if b"\0" not in value:
                id_ = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            retry = int(value)
    if not data:
        payload = b""
    elif len(data) == 1:
        payload = data[0]
    else:
        payload = b"\n".join(data)
    return _make_event(raw, event, payload, id_, retry)


class SSEDecoder:
    """Incrementally split a byte stream into :class:`SSEEvent` objects.

    ``feed`` returns the events completed by a chunk; ``flush`` returns what is
    left at end of stream (an event that lacked its final blank line). An event
    whose blank line is a CR at the end of a chunk is held until the next byte
    shows whether a LF follows (it belongs to that event's raw bytes): never
    with LF streams, rarely with CRLF (a chunk cut between CR and LF), but for
    every event of a CR-only stream, which no known model server sends.

    After :class:`SSEProtocolError` the decoder must not be used again.
    """

    __slots__ = ("_buf", "_max", "_pairs", "_scan", "_skip", "_started")

    def __init__(self, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        if max_event_size <= 0:
            raise ValueError("max_event_size must be positive")
        self._max = max_event_size
        # Bytes of the incomplete event. A bytearray: appending and deleting a
        # prefix are both amortised O(1), so slow drips never go quadratic.
        self._buf = bytearray()
        self._scan = 0  # where in _buf to resume the blank-line search
        self._pairs = _LF_ONLY_PAIRS
        self._started = False  # the BOM check has been done
        self._skip = 0  # BOM length to skip when parsing the next event

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        if b"\r" in chunk and self._pairs is _LF_ONLY_PAIRS:
            self._pairs = _ALL_PAIRS
        buf = self._buf
        if not self._started:
            buf += chunk
            if len(buf) < len(_BOM) and _BOM.startswith(buf):
                return []  # could still be a BOM split across chunks
            self._started = True
            self._skip = len(_BOM) if buf.startswith(_BOM) else 0
            data: bytes | bytearray = buf
        elif buf:
            buf += chunk
            data = buf
        else:
            # Common case: the previous chunk ended on an event boundary, so
            # slice events straight out of the immutable chunk (one copy each).
            data = chunk
        events, consumed = self._drain(data, final=False)
        if data is buf:
            del buf[:consumed]
        elif consumed < len(data):
            buf += memoryview(data)[consumed:]
        self._scan = max(0, self._scan - consumed)
        if len(buf) > self._max:
            raise SSEProtocolError(f"SSE event exceeds {self._max} bytes")
        return events

    def flush(self) -> list[SSEEvent]:
        buf = self._buf
        if not buf:
            return []
        if not self._started:  # only part of a BOM ever arrived: not a BOM
            self._started = True
            self._skip = 0
        events, consumed = self._drain(buf, final=True)
        if consumed < len(buf):
            raw = bytes(buf[consumed:])
            lines_end = len(raw)
            if raw.endswith(b"\r\n"):
                lines_end -= 2
            elif raw.endswith((b"\n", b"\r")):
                lines_end -= 1
            events.append(_parse(raw, self._skip, max(lines_end, self._skip)))
        buf.clear()
        self._scan = 0
        self._skip = 0
        return events

    def _drain(self, data: bytes | bytearray, *, final: bool) -> tuple[list[SSEEvent], int]:
        """Cut every complete event out of ``data``; return them and the number
        of bytes they span. Updates ``_scan`` relative to ``data``."""
        events: list[SSEEvent] = []
        size = len(data)
        start = 0
        scan = self._scan
        limit = self._max
        while start < size:
            head = start + self._skip
            if head >= size:
                break
            first = data[head]
            if first in (_LF, _CR):
                # Blank line right at the start of a block: an empty event.
                end = head + 1
                if first == _CR:
                    if end == size and not final:
                        break  # a LF may follow in the next chunk
                    if end < size and data[end] == _LF:
                        end += 1
                events.append(_make_event(bytes(data[start:end]), None, b"", None, None))
                self._skip = 0
                start = scan = end
                continue
            if scan < head:
                scan = head
            if self._pairs is _LF_ONLY_PAIRS:
                pos = data.find(b"\n\n", scan)
            else:
                pos = self._find_pair(data, scan, size)
            if pos < 0:
                scan = max(start, size - 1)  # the last byte may open a pair
                break
            end = pos + 2
            if data[pos + 1] == _CR:
                if end == size and not final:
                    scan = pos
                    break  # a LF may follow in the next chunk
                if end < size and data[end] == _LF:
                    end += 1
            if end - start > limit:
                raise SSEProtocolError(f"SSE event exceeds {limit} bytes")
            raw = bytes(data[start:end])
            # Field lines run up to and including the terminator of the last
            # one (pos is its final byte); a CR before it belongs to a CRLF.
            lines_end = pos - start
            if data[pos] == _LF and lines_end > 0 and raw[lines_end - 1] == _CR:
                lines_end -= 1
            events.append(_parse(raw, self._skip, lines_end))
            self._skip = 0
            start = scan = end
        self._scan = scan
        return events, start

    def _find_pair(self, data: bytes | bytearray, scan: int, size: int) -> int:
        """Earliest blank-line byte pair at or after ``scan``, or -1."""
        pairs = self._pairs
        found = data.find(pairs[0], scan)
        best = -1
        stop = size
        for pair in pairs:
            pos = found if pair is pairs[0] else data.find(pair, scan, stop)
            if pos >= 0:
                best = pos
                stop = pos + 1  # later searches only look for an earlier match
        if best >= 0 and best != found:
            # Search the style this stream uses first, which bounds the others
            # and keeps many-events-per-chunk linear for CRLF and CR streams.
            for pair in pairs:
                if data.startswith(pair, best):
                    self._pairs = (pair, *(p for p in pairs if p != pair))
                    break
        return best


def encode_event(data: bytes, event: str | None = None) -> bytes:
    """Serialise a new event: an optional ``event:`` line, one ``data:`` line
    per LF-separated line of ``data``, and the blank line."""
    if b"\r" in data:
        raise ValueError("SSE data cannot contain CR")
    head = b""
    if event is not None:
        if "\n" in event or "\r" in event:
            raise ValueError("SSE event name cannot contain CR or LF")
        head = b"event: " + event.encode() + b"\n"
    return head + b"data: " + data.replace(b"\n", b"\ndata: ") + b"\n\n"
