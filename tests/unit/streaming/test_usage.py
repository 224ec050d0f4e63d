from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.streaming import (
    Dialect,
    SSEDecoder,
    SSEEvent,
    StreamUsageTracker,
    UsageCounts,
    encode_event,
    is_openai_usage_only_chunk,
    usage_from_body,
)
from tests.unit.streaming import (
    ANTHROPIC_STREAM,
    ANTHROPIC_TEXT,
    ANTHROPIC_THINKING,
    ANTHROPIC_TOOL_JSON,
    OPENAI_STREAM,
    OPENAI_TEXT,
    OPENAI_TOOL_ARGS,
    with_line_ending,
)

OPENAI_CHARS = len(OPENAI_TEXT) + len(OPENAI_TOOL_ARGS)
ANTHROPIC_CHARS = len(ANTHROPIC_THINKING) + len(ANTHROPIC_TEXT) + len(ANTHROPIC_TOOL_JSON)
ANTHROPIC_INPUT = 472 + 100 + 2000  # input + cache writes + cache reads


def decode(stream: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return decoder.feed(stream) + decoder.flush()


def track(dialect: Dialect, events: list[SSEEvent]) -> StreamUsageTracker:
    tracker = StreamUsageTracker(dialect)
    for event in events:
        tracker.observe(event)
    return tracker


def json_event(obj: object, event: str | None = None) -> SSEEvent:
    raw = encode_event(orjson.dumps(obj), event)
    [decoded] = decode(raw)
    return decoded


# --- streams -------------------------------------------------------------------------


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_openai_stream(ending: bytes) -> None:
    tracker = track("openai", decode(with_line_ending(OPENAI_STREAM, ending)))
    assert tracker.usage == UsageCounts(input_tokens=42, output_tokens=17)
    assert tracker.output_text_chars == OPENAI_CHARS
    assert tracker.finished


def test_openai_stream_cut_before_usage_chunk() -> None:
    events = decode(OPENAI_STREAM)[:-2]  # lose the usage chunk and [DONE]
    tracker = track("openai", events)
    assert tracker.usage == UsageCounts(None, None)
    assert tracker.output_text_chars == OPENAI_CHARS
    assert not tracker.finished


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_anthropic_stream(ending: bytes) -> None:
    tracker = track("anthropic", decode(with_line_ending(ANTHROPIC_STREAM, ending)))
    assert tracker.usage == UsageCounts(input_tokens=ANTHROPIC_INPUT, output_tokens=89)
    assert tracker.output_text_chars == ANTHROPIC_CHARS
    assert tracker.finished


def test_anthropic_stream_cut_before_message_delta() -> None:
    events = decode(ANTHROPIC_STREAM)[:-2]
    tracker = track("anthropic", events)
    # message_start's output_tokens (1) is a placeholder, not a count.
    assert tracker.usage == UsageCounts(input_tokens=ANTHROPIC_INPUT, output_tokens=None)
    assert tracker.output_text_chars == ANTHROPIC_CHARS
    assert not tracker.finished


@pytest.mark.parametrize(
    ("dialect", "stream"), [("openai", OPENAI_STREAM), ("anthropic", ANTHROPIC_STREAM)]
)
def test_stream_cut_at_any_byte_never_raises(dialect: Dialect, stream: bytes) -> None:
    previous = 0
    for cut in range(0, len(stream) + 1, 7):
        tracker = track(dialect, decode(stream[:cut]))  # a torn last event is malformed JSON
        assert tracker.output_text_chars >= previous
        previous = tracker.output_text_chars


def test_anthropic_message_delta_is_cumulative_and_may_restate_input() -> None:
    tracker = StreamUsageTracker("anthropic")
    tracker.observe(
        json_event({"type": "message_start", "message": {"usage": {"input_tokens": 10}}})
    )
    tracker.observe(json_event({"type": "message_delta", "usage": {"output_tokens": 5}}))
    assert tracker.usage == UsageCounts(10, 5)
    tracker.observe(
        json_event(
            {
                "type": "message_delta",
                "usage": {
                    "input_tokens": 30,
                    "cache_read_input_tokens": 7,
                    "cache_creation_input_tokens": None,
                    "output_tokens": 12,
                },
            }
        )
    )
    assert tracker.usage == UsageCounts(37, 12)


def test_openai_reasoning_refusal_legacy_completions_and_function_call() -> None:
    tracker = track(
        "openai",
        [
            json_event({"choices": [{"delta": {"reasoning_content": "abc"}}]}),
            json_event({"choices": [{"delta": {"reasoning": "de", "refusal": "f"}}]}),
            json_event({"choices": [{"delta": {"function_call": {"arguments": "{}"}}}]}),
            json_event({"choices": [{"text": "legacy", "index": 0}]}),
            json_event({"choices": [{"delta": {"content": None, "tool_calls": None}}]}),
        ],
    )
    assert tracker.output_text_chars == 3 + 2 + 1 + 2 + 6


def test_openai_running_usage_on_every_chunk_last_wins() -> None:
    tracker = track(
        "openai",
        [
            json_event(
                {
                    "choices": [{"delta": {"content": "a"}}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 1},
                }
            ),
            json_event(
                {
                    "choices": [{"delta": {"content": "b"}}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 2},
                }
            ),
        ],
    )
    assert tracker.usage == UsageCounts(5, 2)


def test_openai_responses_api_stream() -> None:
    tracker = track(
        "openai",
        [
            json_event(
                {"type": "response.created", "response": {"usage": None}}, "response.created"
            ),
            json_event(
                {"type": "response.output_text.delta", "delta": "Hi "}, "response.output_text.delta"
            ),
            json_event({"type": "response.reasoning_summary_text.delta", "delta": "why"}),
            json_event({"type": "response.function_call_arguments.delta", "delta": "{}"}),
            json_event({"type": "response.audio.delta", "delta": "UklGRg=="}),
        ],
    )
    assert (tracker.output_text_chars, tracker.finished) == (3 + 3 + 2, False)
    tracker.observe(
        json_event(
            {
                "type": "response.completed",
                "response": {"usage": {"input_tokens": 9, "output_tokens": 4, "total_tokens": 13}},
            }
        )
    )
    assert tracker.usage == UsageCounts(9, 4)
    assert tracker.finished


MALFORMED = [
    b"{",
    b"null",
    b"[1, 2]",
    b'"text"',
    b"\xff\xfe",
    b'{"choices": "nope", "usage": 3}',
    b'{"choices": [1, null, {"delta": "x"}, {"delta": {"content": 5}}]}',
    b'{"choices": [{"delta": {"tool_calls": [null, {"function": "f"}, {"function": {}}]}}]}',
    b'{"usage": {"prompt_tokens": "9", "completion_tokens": true}}',
    b'{"usage": {"prompt_tokens": -1, "completion_tokens": 1.5}}',
    b'{"type": "message_start", "message": []}',
    b'{"type": "message_start", "message": {"usage": null}}',
    b'{"type": "message_delta", "usage": {"output_tokens": "many"}}',
    b'{"type": "content_block_delta", "delta": null}',
    b'{"type": "content_block_delta", "delta": {"text": ["a"]}}',
    b'{"type": "response.completed", "response": null}',
    b'{"type": ["response.completed"]}',
    b'{"type": {"a": 1}}',
]


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_malformed_events_are_ignored(dialect: Dialect) -> None:
    tracker = StreamUsageTracker(dialect)
    for data in MALFORMED:
        tracker.observe(SSEEvent(b"data: ...\n\n", data=data))
    tracker.observe(SSEEvent(b": ping\n\n"))
    assert tracker.usage == UsageCounts(None, None)
    assert tracker.output_text_chars == 0


_WIRE_WORDS = [
    "type", "choices", "delta", "usage", "message", "content", "text", "thinking",
    "partial_json", "tool_calls", "function", "function_call", "arguments", "response",
    "message_start", "message_delta", "message_stop", "content_block_delta",
    "response.completed", "response.output_text.delta", "input_tokens", "output_tokens",
    "prompt_tokens", "completion_tokens", "cache_read_input_tokens",
]  # fmt: skip
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(_WIRE_WORDS),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(_WIRE_WORDS), inner, max_size=4)
    ),
    max_leaves=25,
)


@given(_json_values, st.sampled_from(["openai", "anthropic"]))
def test_observe_never_raises_on_odd_json(value: object, dialect: Dialect) -> None:
    data = orjson.dumps(value)
    tracker = StreamUsageTracker(dialect)
    tracker.observe(SSEEvent(b"", data=data))
    is_openai_usage_only_chunk(SSEEvent(b"", data=data))
    usage_from_body(dialect, data)
    assert tracker.output_text_chars >= 0


@given(st.binary(max_size=200), st.sampled_from(["openai", "anthropic"]))
def test_observe_never_raises(data: bytes, dialect: Dialect) -> None:
    StreamUsageTracker(dialect).observe(SSEEvent(b"", data=data))


def test_unknown_dialect_is_rejected() -> None:
    with pytest.raises(ValueError):
        StreamUsageTracker("gemini")  # type: ignore[arg-type]


# --- usage-only chunk ------------------------------------------------------------------


def test_usage_only_chunk_detection_on_sample_stream() -> None:
    flags = [is_openai_usage_only_chunk(e) for e in decode(OPENAI_STREAM)]
    assert flags == [False] * 7 + [True, False]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"choices": [ ], "usage": {"prompt_tokens": 1}}', True),
        (b'{"choices":[],"usage":null}', False),
        (b'{"choices":[],"usage":{}}', True),
        (b'{"choices":[{"delta":{}}],"usage":{"prompt_tokens":1}}', False),
        (b'{"choices":[{"delta":{"content":"\\"choices\\": []"}}]}', False),
        (b'{"x": {"choices": []}, "usage": {"prompt_tokens": 1}}', False),
        (b'{"choices":[],', False),
        (b"", False),
    ],
)
def test_usage_only_chunk_detection(data: bytes, expected: bool) -> None:
    assert is_openai_usage_only_chunk(SSEEvent(b"", data=data)) is expected


# --- non-streamed bodies ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "body", "expected"),
    [
        (
            "openai",
            b'{"object":"chat.completion","choices":[],"usage":{"prompt_tokens":12,'
            b'"completion_tokens":30,"total_tokens":42}}',
            UsageCounts(12, 30),
        ),
        (
            "openai",
            b'{"object":"list","data":[],"model":"text-embedding-3-small",'
            b'"usage":{"prompt_tokens":8,"total_tokens":8}}',
            UsageCounts(8, None),
        ),
        (
            "openai",
            b'{"object":"response","usage":{"input_tokens":5,"output_tokens":6,"total_tokens":11}}',
            UsageCounts(5, 6),
        ),
        (
            "anthropic",
            b'{"type":"message","usage":{"input_tokens":20,"cache_creation_input_tokens":3,'
            b'"cache_read_input_tokens":null,"output_tokens":9}}',
            UsageCounts(23, 9),
        ),
        ("anthropic", b'{"type":"message","usage":{"input_tokens":20}}', UsageCounts(20, None)),
        ("openai", b"", None),
        ("openai", b"not json", None),
        ("openai", b"[1]", None),
        ("openai", b'{"usage": null}', None),
        ("openai", b'{"usage": {"prompt_tokens": "x", "completion_tokens": false}}', None),
        ("anthropic", b'{"usage": {}}', None),
        ("anthropic", b'{"error": {"type": "overloaded_error"}}', None),
    ],
)
def test_usage_from_body(dialect: Dialect, body: bytes, expected: UsageCounts | None) -> None:
    assert usage_from_body(dialect, body) == expected


@given(st.binary(max_size=200), st.sampled_from(["openai", "anthropic"]))
def test_usage_from_body_never_raises(body: bytes, dialect: Dialect) -> None:
    usage_from_body(dialect, body)
