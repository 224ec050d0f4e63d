"""Tests for gateway.streaming, with the sample upstream streams they share.

The samples follow the public wire formats: OpenAI chat completions with
``stream_options.include_usage`` and Anthropic Messages with extended thinking
and tool use.
"""

from __future__ import annotations

BOM = b"\xef\xbb\xbf"


def _openai_chunk(delta: str, finish: str = "null") -> bytes:
    return (
        b'data: {"id":"chatcmpl-9x","object":"chat.completion.chunk","created":1718000000,'
        b'"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,'
        b'"delta":'
        + delta.encode()
        + b',"logprobs":null,"finish_reason":'
        + finish.encode()
        + b'}],"usage":null}\n\n'
    )


OPENAI_TEXT = "Hello, w\u00f6rld \u6f22\u5b57!"
OPENAI_TOOL_ARGS = '{"city": "Paris"}'
OPENAI_STREAM = b"".join(
    [
        _openai_chunk('{"role":"assistant","content":"","refusal":null}'),
        _openai_chunk('{"content":"Hello, w\\u00f6rld "}'),
        _openai_chunk('{"content":"\u6f22\u5b57!"}'),
        _openai_chunk(
            '{"tool_calls":[{"index":0,"id":"call_1","type":"function",'
            '"function":{"name":"get_weather","arguments":""}}]}'
        ),
        _openai_chunk('{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\": "}}]}'),
        _openai_chunk('{"tool_calls":[{"index":0,"function":{"arguments":"\\"Paris\\"}"}}]}'),
        _openai_chunk("{}", finish='"tool_calls"'),
        b'data: {"id":"chatcmpl-9x","object":"chat.completion.chunk","created":1718000000,'
        b'"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[],'
        b'"usage":{"prompt_tokens":42,"completion_tokens":17,"total_tokens":59,'
        b'"prompt_tokens_details":{"cached_tokens":0},'
        b'"completion_tokens_details":{"reasoning_tokens":0}}}\n\n',
        b"data: [DONE]\n\n",
    ]
)
OPENAI_EVENT_COUNT = 9


def _anthropic(event: str, data: str) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + data.encode() + b"\n\n"


ANTHROPIC_THINKING = "Let me check the weather."
ANTHROPIC_TEXT = "I'll look that up \u2014 one moment."
ANTHROPIC_TOOL_JSON = '{"location": "Paris"}'
ANTHROPIC_STREAM = b"".join(
    [
        _anthropic(
            "message_start",
            '{"type":"message_start","message":{"id":"msg_01","type":"message",'
            '"role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,'
            '"stop_sequence":null,"usage":{"input_tokens":472,'
            '"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,'
            '"output_tokens":1}}}',
        ),
        _anthropic(
            "content_block_start",
            '{"type":"content_block_start","index":0,'
            '"content_block":{"type":"thinking","thinking":"","signature":""}}',
        ),
        _anthropic("ping", '{"type": "ping"}'),
        _anthropic(
            "content_block_delta",
            '{"type":"content_block_delta","index":0,'
            '"delta":{"type":"thinking_delta","thinking":"Let me check "}}',
        ),
        _anthropic(
            "content_block_delta",
            '{"type":"content_block_delta","index":0,'
            '"delta":{"type":"thinking_delta","thinking":"the weather."}}',
        ),
        _anthropic(
            "content_block_delta",
            '{"type":"content_block_delta","index":0,'
            '"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA"}}',
        ),
        _anthropic("content_block_stop", '{"type":"content_block_stop","index":0}'),
        _anthropic(
            "content_block_start",
            '{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}',
        ),
        _anthropic(
            "content_block_delta",
            '{"type":"content_block_delta","index":1,'
            '"delta":{"type":"text_delta","text":"I\'ll look that up \\u2014 "}}',
        ),
        _anthropic(
            "content_block_delta",
            '{"type":"content_block_delta","index":1,'
            '"delta":{"type":"text_delta","text":"one moment."}}',
        ),
        _anthropic("content_block_stop", '{"type":"content_block_stop","index":1}'),
        _anthropic(
            "content_block_start",
            '{"type":"content_block_start","index":2,"content_block":{"type":"tool_use",'
            '"id":"toolu_01","name":"get_weather","input":{}}}',
        ),
        _anthropic(
            "content_block_delta",
            '{"type":"content_block_delta","index":2,'
            '"delta":{"type":"input_json_delta","partial_json":""}}',
        ),
        _anthropic(
            "content_block_delta",
            '{"type":"content_block_delta","index":2,'
            '"delta":{"type":"input_json_delta","partial_json":"{\\"location\\": "}}',
        ),
        _anthropic(
            "content_block_delta",
            '{"type":"content_block_delta","index":2,'
            '"delta":{"type":"input_json_delta","partial_json":"\\"Paris\\"}"}}',
        ),
        _anthropic("content_block_stop", '{"type":"content_block_stop","index":2}'),
        _anthropic(
            "message_delta",
            '{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},'
            '"usage":{"output_tokens":89}}',
        ),
        _anthropic("message_stop", '{"type":"message_stop"}'),
    ]
)
ANTHROPIC_EVENT_COUNT = 18

# Everything the field parser has to get right, in one short LF stream.
EDGE_STREAM = (
    b": keep-alive\n\n"
    b"event: update\nid: 7\nretry: 1500\ndata: line one\ndata:line two\ndata\n\n"
    b"data:  two spaces\n: a comment inside an event\nunknown: field\nretry: soon\n\n"
    b"\n"
    b"id: bad\0id\nevent:\ndata: {}\n\n"
    b"data: trailing, no blank line"
)


def with_line_ending(stream: bytes, ending: bytes) -> bytes:
    return stream.replace(b"\n", ending)


def mixed_line_endings(stream: bytes) -> bytes:
    """Cycle LF, CRLF and CR over successive line ends, never letting a LF follow
    a CR (which would merge the two into one CRLF and change the meaning)."""
    endings = (b"\n", b"\r\n", b"\r")
    lines = stream.split(b"\n")
    out: list[bytes] = []
    previous = b""
    for i, line in enumerate(lines[:-1]):
        ending = endings[i % 3]
        if ending == b"\n" and previous.endswith(b"\r") and not line:
            ending = b"\r\n"
        out.append(line + ending)
        previous = ending
    return b"".join(out) + lines[-1]
