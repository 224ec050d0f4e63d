from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.streaming import SSEDecoder, SSEEvent, SSEProtocolError, encode_event
from tests.unit.streaming import (
    ANTHROPIC_EVENT_COUNT,
    ANTHROPIC_STREAM,
    BOM,
    EDGE_STREAM,
    OPENAI_EVENT_COUNT,
    OPENAI_STREAM,
    mixed_line_endings,
    with_line_ending,
)

# --- helpers -----------------------------------------------------------------


def decode_chunks(chunks: Iterable[bytes], max_event_size: int | None = None) -> list[SSEEvent]:
    decoder = SSEDecoder() if max_event_size is None else SSEDecoder(max_event_size)
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.flush())
    return events


def split_at(stream: bytes, offsets: Iterable[int]) -> list[bytes]:
    bounds = [0, *sorted(offsets), len(stream)]
    return [stream[a:b] for a, b in pairwise(bounds)]


_LINE = re.compile(rb"([^\r\n]*)(\r\n|\r|\n)")


def reference_decode(stream: bytes) -> list[SSEEvent]:
    """A slow, obviously-correct oracle: split the whole stream into lines per
    the WHATWG rules, cut a block at each blank line, parse fields line by line."""
    events: list[SSEEvent] = []
    pos = len(BOM) if stream.startswith(BOM) else 0
    block_start = 0
    lines: list[bytes] = []
    while (m := _LINE.match(stream, pos)) is not None:
        pos = m.end()
        if m.group(1):
            lines.append(m.group(1))
        else:
            events.append(_reference_event(stream[block_start:pos], lines))
            block_start, lines = pos, []
    if block_start < len(stream):
        if pos < len(stream):
            lines.append(stream[pos:])
        events.append(_reference_event(stream[block_start:], lines))
    return events


def _reference_event(raw: bytes, lines: list[bytes]) -> SSEEvent:
    event: str | None = None
    data: list[bytes] = []
    id_: str | None = None
    retry: int | None = None
    for line in lines:
        if line.startswith(b":"):
            continue
        if b":" in line:
            name, value = line.split(b":", 1)
            value = value.removeprefix(b" ")
        else:
            name, value = line, b""
        if name == b"event":
            event = value.decode("utf-8", "replace") or None
        elif name == b"data":
            data.append(value)
        elif name == b"id" and b"\0" not in value:
            id_ = value.decode("utf-8", "replace")
        elif name == b"retry" and value and all(48 <= c <= 57 for c in value):
            retry = int(value)
    return SSEEvent(raw, event, b"\n".join(data), id_, retry)


def fields(events: list[SSEEvent]) -> list[tuple[str | None, bytes, str | None, int | None]]:
    return [(e.event, e.data, e.id, e.retry) for e in events]


SAMPLES = {
    "openai": OPENAI_STREAM,
    "anthropic": ANTHROPIC_STREAM,
    "anthropic-crlf": with_line_ending(ANTHROPIC_STREAM, b"\r\n"),
    "anthropic-cr": with_line_ending(ANTHROPIC_STREAM, b"\r"),
    "openai-crlf-bom": BOM + with_line_ending(OPENAI_STREAM, b"\r\n"),
    "edge": EDGE_STREAM,
    "edge-crlf": with_line_ending(EDGE_STREAM, b"\r\n"),
    "edge-cr": with_line_ending(EDGE_STREAM, b"\r"),
    "edge-mixed-bom": BOM + mixed_line_endings(EDGE_STREAM),
    "anthropic-mixed": mixed_line_endings(ANTHROPIC_STREAM),
}
SHORT_SAMPLES = ["edge-cr", "edge-mixed-bom"]  # quadratic in length: keep them short


# --- the central property: chunking never changes the result ---------------


@pytest.mark.parametrize("name", SAMPLES)
def test_one_piece_matches_reference_and_is_byte_faithful(name: str) -> None:
    stream = SAMPLES[name]
    events = decode_chunks([stream])
    assert events == reference_decode(stream)
    assert b"".join(e.raw for e in events) == stream


@pytest.mark.parametrize("name", SAMPLES)
def test_every_two_chunk_split_gives_the_same_events(name: str) -> None:
    stream = SAMPLES[name]
    expected = decode_chunks([stream])
    for i in range(len(stream) + 1):
        assert decode_chunks([stream[:i], stream[i:]]) == expected, f"split at {i}"


@pytest.mark.parametrize("name", SAMPLES)
def test_byte_by_byte_gives_the_same_events(name: str) -> None:
    stream = SAMPLES[name]
    one_byte_chunks = [stream[i : i + 1] for i in range(len(stream))]
    assert decode_chunks(one_byte_chunks) == decode_chunks([stream])


@pytest.mark.parametrize("name", SHORT_SAMPLES)
def test_every_three_chunk_split_gives_the_same_events(name: str) -> None:
    stream = SAMPLES[name]
    expected = decode_chunks([stream])
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            got = decode_chunks([stream[:i], stream[i:j], stream[j:]])
            assert got == expected, f"split at {i}, {j}"


def test_line_ending_variants_carry_the_same_fields() -> None:
    for base in (OPENAI_STREAM, ANTHROPIC_STREAM, EDGE_STREAM):
        expected = fields(decode_chunks([base]))
        for variant in (
            with_line_ending(base, b"\r\n"),
            with_line_ending(base, b"\r"),
            mixed_line_endings(base),
            BOM + base,
        ):
            assert fields(decode_chunks([variant])) == expected


# --- parsing details ------------------------------------------------------------


def test_sample_streams_decode_as_expected() -> None:
    openai = decode_chunks([OPENAI_STREAM])
    assert len(openai) == OPENAI_EVENT_COUNT
    assert openai[-1].is_done
    assert not any(e.is_done for e in openai[:-1])
    assert openai[-2].json()["usage"]["completion_tokens"] == 17

    anthropic = decode_chunks([ANTHROPIC_STREAM])
    assert len(anthropic) == ANTHROPIC_EVENT_COUNT
    assert anthropic[0].event == "message_start"
    assert anthropic[2].event == "ping"
    assert [e.json()["type"] for e in anthropic] == [e.event for e in anthropic]


def test_edge_stream_fields() -> None:
    events = decode_chunks([EDGE_STREAM])
    assert [e.raw for e in events] == [
        b": keep-alive\n\n",
        b"event: update\nid: 7\nretry: 1500\ndata: line one\ndata:line two\ndata\n\n",
        b"data:  two spaces\n: a comment inside an event\nunknown: field\nretry: soon\n\n",
        b"\n",
        b"id: bad\0id\nevent:\ndata: {}\n\n",
        b"data: trailing, no blank line",
    ]
    assert fields(events) == [
        (None, b"", None, None),  # comment-only block, forwarded as a no-data event
        ("update", b"line one\nline two\n", "7", 1500),
        (None, b" two spaces", None, None),  # only one leading space is stripped
        (None, b"", None, None),  # stray blank line
        (None, b"{}", None, None),  # id with NUL ignored, empty event name is default
        (None, b"trailing, no blank line", None, None),  # emitted by flush
    ]


def test_whatwg_examples() -> None:
    stream = b"data: YHOO\ndata: +2\ndata: 10\n\n"
    assert [e.data for e in decode_chunks([stream])] == [b"YHOO\n+2\n10"]
    stream = b"data\n\ndata\ndata\n\ndata:"
    assert [e.data for e in decode_chunks([stream])] == [b"", b"\n", b""]
    stream = b"data:test\n\ndata: test\n\n"
    assert [e.data for e in decode_chunks([stream])] == [b"test", b"test"]


def test_bom_is_skipped_only_at_stream_start() -> None:
    stream = BOM + b"data:1\n\n" + BOM + b"data:2\n\ndata:3\n\n"
    events = decode_chunks([stream])
    # The second BOM makes "\ufeffdata" an unknown field, as in browsers.
    assert [e.data for e in events] == [b"1", b"", b"3"]
    assert events[0].raw == BOM + b"data:1\n\n"


@pytest.mark.parametrize("stream", [b"", b"\xef", b"\xef\xbb", BOM, BOM + b"\n", b"\xef\xbbx"])
def test_bom_fragments_and_empty_streams(stream: bytes) -> None:
    for i in range(len(stream) + 1):
        events = decode_chunks([stream[:i], stream[i:]])
        assert events == reference_decode(stream)
        assert b"".join(e.raw for e in events) == stream


def test_crlf_split_between_cr_and_lf_waits_for_the_lf() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\n\r") == []
    assert decoder.feed(b"\n") == [SSEEvent(b"data: a\r\n\r\n", data=b"a")]
    # With LF streams nothing is ever held back.
    assert decoder.feed(b"data: b\n\n") == [SSEEvent(b"data: b\n\n", data=b"b")]


def test_cr_only_event_is_released_by_the_next_byte_or_flush() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\r") == []
    assert decoder.feed(b"d") == [SSEEvent(b"data: a\r\r", data=b"a")]
    assert decoder.flush() == [SSEEvent(b"d")]
    assert decoder.feed(b"data: c\r\r") == []
    assert decoder.flush() == [SSEEvent(b"data: c\r\r", data=b"c")]


def test_decoder_is_reusable_after_flush() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: partial")
    assert [e.data for e in decoder.flush()] == [b"partial"]
    assert decoder.flush() == []
    assert decoder.feed(b"") == []
    assert [e.data for e in decoder.feed(b"data: next\n\n")] == [b"next"]


def test_json_and_is_done() -> None:
    assert SSEEvent(b"", data=b'{"a": [1, 2]}').json() == {"a": [1, 2]}
    for bad in (b"", b"[DONE]", b"{", b"\xff"):
        with pytest.raises(ValueError):
            SSEEvent(b"", data=bad).json()
    assert SSEEvent(b"data: [DONE]\n\n", data=b"[DONE]").is_done
    assert not SSEEvent(b"data: [DONE] \n\n", data=b"[DONE] ").is_done


# --- limits ----------------------------------------------------------------------


def test_event_at_the_size_limit_passes() -> None:
    event = b"data: " + b"x" * 100 + b"\n\n"
    assert decode_chunks([event], max_event_size=len(event))[0].raw == event


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 10_000])
def test_oversized_event_raises_whatever_the_chunking(chunk_size: int) -> None:
    stream = b"data: ok\n\n" + b"data: " + b"x" * 1000 + b"\n\n"
    chunks = [stream[i : i + chunk_size] for i in range(0, len(stream), chunk_size)]
    with pytest.raises(SSEProtocolError):
        decode_chunks(chunks, max_event_size=500)


def test_unterminated_flood_raises_before_buffering_it_all() -> None:
    decoder = SSEDecoder(max_event_size=1024)
    decoder.feed(b"data: " + b"x" * 1000)
    with pytest.raises(SSEProtocolError):
        decoder.feed(b"x" * 100)


def test_default_limit_is_one_mebibyte() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: " + b"x" * (1024 * 1024 - 16))
    with pytest.raises(SSEProtocolError):
        decoder.feed(b"x" * 32)
    with pytest.raises(ValueError):
        SSEDecoder(max_event_size=0)


# --- encode_event -------------------------------------------------------------------


def test_encode_event() -> None:
    assert encode_event(b'{"a":1}') == b'data: {"a":1}\n\n'
    assert encode_event(b"a\nb", event="delta") == b"event: delta\ndata: a\ndata: b\n\n"
    assert encode_event(b"") == b"data: \n\n"
    with pytest.raises(ValueError):
        encode_event(b"a\rb")
    with pytest.raises(ValueError):
        encode_event(b"a", event="x\ny")


@given(
    data=st.binary(max_size=64).filter(lambda b: b"\r" not in b),
    event=st.none() | st.text(max_size=8).filter(lambda s: "\n" not in s and "\r" not in s),
)
def test_encode_event_round_trips(data: bytes, event: str | None) -> None:
    encoded = encode_event(data, event)
    [decoded] = decode_chunks([encoded])
    assert decoded.raw == encoded
    assert decoded.data == data
    assert decoded.event == (event or None)


# --- random streams, random chunkings ---------------------------------------------

_TOKENS = [
    b"data",
    b"event",
    b"id",
    b"retry",
    b":",
    b" ",
    b"\n",
    b"\n",
    b"\r",
    b"\r\n",
    b"x",
    b"42",
    b"\xc3\xa9",
    b"\0",
    b"[DONE]",
    b'{"a":1}',
    BOM,
]
_streams = st.builds(
    lambda bom, parts: (BOM if bom else b"") + b"".join(parts),
    st.booleans(),
    st.lists(st.sampled_from(_TOKENS), max_size=60),
)


@settings(max_examples=300, deadline=None)
@given(stream=_streams, data=st.data())
def test_random_streams_random_chunkings(stream: bytes, data: st.DataObject) -> None:
    expected = reference_decode(stream)
    offsets = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    events = decode_chunks(split_at(stream, offsets))
    assert events == expected
    assert b"".join(e.raw for e in events) == stream


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_sample_streams_random_chunkings(data: st.DataObject) -> None:
    stream = SAMPLES[data.draw(st.sampled_from(sorted(SAMPLES)))]
    offsets = data.draw(st.lists(st.integers(0, len(stream)), max_size=40))
    assert decode_chunks(split_at(stream, offsets)) == decode_chunks([stream])
