"""What a hostile client sends: hypothesis strategies and a seeded corpus.

Bodies are of three families, for each route:
- structured but wrong: a valid body of the route with fields set to odd
  values, removed, or added (numbers at and past every integer width, wrong
  types, huge `n` and `max_tokens`, odd `stream_options`, message content of
  every block type, deep nesting);
- arbitrary JSON (not always an object);
- bytes that are not JSON at all (truncated JSON, invalid UTF-8, a BOM,
  NaN, duplicate keys, nesting past the parser's depth limit, binary).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

OPENAI, ANTHROPIC = "openai", "anthropic"

BASE_BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": "demo-model", "max_tokens": 16,
                             "messages": [{"role": "user", "content": "hello there"}]},
    "/v1/completions": {"model": "demo-model", "prompt": "Once upon a time", "max_tokens": 16},
    "/v1/embeddings": {"model": "demo-model", "input": "hello"},
    "/v1/messages": {"model": "demo-model", "max_tokens": 16,
                     "messages": [{"role": "user", "content": "hello"}]},
    "/v1/messages/count_tokens": {"model": "demo-model",
                                  "messages": [{"role": "user", "content": "hello"}]},
}
POST_ROUTES = tuple(BASE_BODIES)
GET_ROUTES = ("/v1/models", "/v1/models/demo-model", "/v1/models/%00..%2f", "/v1/nope")


def dialect_of(path: str) -> str:
    return ANTHROPIC if path.startswith("/v1/messages") else OPENAI


FIELDS = (
    "model", "messages", "prompt", "input", "system", "max_tokens", "max_completion_tokens",
    "n", "stream", "stream_options", "logprobs", "top_logprobs", "logit_bias", "temperature",
    "top_p", "tools", "tool_choice", "functions", "response_format", "echo", "thinking",
    "stop", "user", "metadata", "seed", "encoding_format", "dimensions", "best_of",
)

INTERESTING_INTS = (
    0, 1, -1, 2, 5, 128, 129, 255, 256, 1024, 4096, 2**15, 2**16, 2**31 - 1, 2**31, 2**32,
    2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**30, -(2**63), -(2**64),
)
INTERESTING_FLOATS = (0.0, -0.0, 0.5, 1.0, 2.0, 1e-300, 1e308, -1e308, 5e-324, 1.5)
INTERESTING_STRINGS = (
    "", " ", "demo-model", "demo-*", "../../etc/passwd", "\u0000", "\u202e", "🙂" * 8,
    "a" * 4096, "Bearer sk-x", "null", "NaN", "-1", "1e999", "<script>", "%00", "\ud7ff",
    "\ufeff", "true",
)
BLOCK_TYPES = ("text", "input_text", "image", "image_url", "tool_result", "tool_use",
               "thinking", "redacted_thinking", "document", "input_audio", "file", "zz", "")
ROLES = ("user", "assistant", "system", "developer", "tool", "function", "", "USER", "model")

leaves = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70), st.sampled_from(INTERESTING_INTS),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(INTERESTING_FLOATS),
    st.text(max_size=30), st.sampled_from(INTERESTING_STRINGS),
)
json_values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=10), st.sampled_from(FIELDS)),
                        children, max_size=4),
    ),
    max_leaves=12,
)

blocks = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(BLOCK_TYPES), json_values)},
    optional={"text": st.one_of(st.text(max_size=60), json_values),
              "content": json_values, "source": json_values, "image_url": json_values,
              "id": json_values, "input": json_values, "tool_use_id": json_values,
              "cache_control": json_values},
)
contents = st.one_of(st.text(max_size=200), st.lists(blocks, max_size=4), json_values)
messages = st.lists(
    st.one_of(
        st.fixed_dictionaries({"role": st.one_of(st.sampled_from(ROLES), json_values),
                               "content": contents},
                              optional={"name": json_values, "tool_calls": json_values,
                                        "tool_call_id": json_values}),
        json_values,
    ),
    max_size=5,
)
field_values = st.one_of(json_values, messages, st.sampled_from(INTERESTING_INTS),
                         st.sampled_from(INTERESTING_STRINGS))


@st.composite
def structured_bodies(draw: st.DrawFn, path: str) -> dict[str, Any]:
    """A valid body of `path` with a few fields changed, removed or added."""
    body: dict[str, Any] = json.loads(json.dumps(BASE_BODIES[path]))
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(("set", "set", "set", "drop", "messages")))
        name = draw(st.sampled_from(FIELDS))
        if action == "set":
            body[name] = draw(field_values)
        elif action == "drop":
            body.pop(draw(st.sampled_from(sorted(body) or ["model"])), None)
        else:
            body["messages"] = draw(messages)
    if draw(st.booleans()):
        body["stream"] = draw(st.one_of(st.just(True), json_values))
    return body


def nested(depth: int, opener: str) -> str:
    closer = "]" if opener == "[" else "}"
    inner = '"x"'
    return (opener if opener == "[" else '{"a":') * depth + inner + closer * depth


DEPTHS = (200, 400, 600, 900, 1023, 1024, 1100)  # orjson parses up to 1024 levels


@st.composite
def deep_bodies(draw: st.DrawFn, path: str) -> bytes:
    """A valid body of `path` with one field replaced by deeply nested lists or objects."""
    base = json.dumps(BASE_BODIES[path])
    depth = draw(st.sampled_from(DEPTHS))
    opener = draw(st.sampled_from(("[", "{")))
    field = draw(st.sampled_from(("messages", "prompt", "input", "system", "tools",
                                  "metadata", "stream_options", "logit_bias")))
    return (base[:-1] + f', "{field}": ' + nested(depth, opener) + "}").encode()


@st.composite
def raw_bodies(draw: st.DrawFn, path: str) -> bytes:
    """Bytes that are not quite (or not at all) a JSON object."""
    base = json.dumps(BASE_BODIES[path])
    kind = draw(st.sampled_from((
        "binary", "truncated", "bom", "nan", "dupes", "deep", "utf8", "utf16", "top", "huge",
        "empty", "whitespace",
    )))
    if kind == "binary":
        return draw(st.binary(max_size=300))
    if kind == "truncated":
        return base.encode()[:draw(st.integers(0, len(base) - 1))]
    if kind == "bom":
        return b"\xef\xbb\xbf" + base.encode()
    if kind == "nan":
        return base[:-1].encode() + b', "temperature": ' + draw(st.sampled_from(
            (b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-0", b"01", b"0x10"))) + b"}"
    if kind == "dupes":
        return (base[:-1] + ', "model": "other-model", "stream": true, "stream": false, '
                '"max_tokens": 1, "max_tokens": 99999999}').encode()
    if kind == "deep":
        return draw(deep_bodies(path))
    if kind == "utf8":
        bad = draw(st.sampled_from((b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                                    b"\xc0\xaf", b"\x00")))
        return base.replace("hello", "hel").encode().replace(b"hel", b"hel" + bad)
    if kind == "utf16":
        return base.encode("utf-16")
    if kind == "top":
        return json.dumps(draw(json_values)).encode()
    if kind == "huge":
        size = draw(st.sampled_from((10_000, 200_000, 2_000_000)))
        body = json.loads(base)
        body["messages" if "messages" in body else "prompt" if "prompt" in body
             else "input"] = ([{"role": "user", "content": "w " * (size // 2)}]
                              if "messages" in body else "w " * (size // 2))
        return json.dumps(body).encode()
    if kind == "empty":
        return b""
    return b" \t\r\n " + base.encode() + b"\n\n"


CONTENT_TYPES = (
    b"application/json", b"application/json; charset=utf-8", b"APPLICATION/JSON",
    b"application/json;charset=latin-1", b"application/json ; x=y", b"text/plain",
    b"application/jsonx", b"multipart/form-data; boundary=x", b"", b"application/x-ndjson",
)


@dataclass(frozen=True)
class FuzzRequest:
    method: str
    path: str
    body: bytes
    content_type: bytes | None
    key: str | None

    @property
    def dialect(self) -> str:
        return dialect_of(self.path)


def dumps(value: Any) -> bytes:
    """JSON the stdlib way: big integers stay integers, which orjson would refuse."""
    return json.dumps(value).encode()


@st.composite
def requests(draw: st.DrawFn, keys: tuple[str, ...]) -> FuzzRequest:
    if draw(st.integers(0, 9)) == 0:
        method = draw(st.sampled_from(("GET", "PUT", "DELETE", "PATCH", "OPTIONS", "POST")))
        path = draw(st.sampled_from(POST_ROUTES + GET_ROUTES))
    else:
        method = "POST"
        path = draw(st.sampled_from(POST_ROUTES))
    if method == "GET":
        body = b""
    else:
        family = draw(st.sampled_from(("structured", "structured", "json", "raw", "deep")))
        base = path if path in BASE_BODIES else "/v1/chat/completions"
        if family == "structured":
            body = dumps(draw(structured_bodies(base)))
        elif family == "json":
            body = dumps(draw(json_values))
        elif family == "deep":
            body = draw(deep_bodies(base))
        else:
            body = draw(raw_bodies(base))
    content_type = draw(st.integers(0, 5).flatmap(  # mostly right, so bodies get parsed
        lambda n: st.just(b"application/json") if n else st.one_of(
            st.none(), st.sampled_from(CONTENT_TYPES))))
    key = draw(st.one_of(st.sampled_from(keys), st.none()))
    return FuzzRequest(method, path, body, content_type, key)


# -- a seeded corpus without hypothesis (the memory test sends thousands) -------------

def corpus(seed: int, count: int, keys: tuple[str, ...]) -> list[FuzzRequest]:
    """`count` hostile requests drawn from the same families, reproducibly.

    Hypothesis is for finding the one input that breaks something; the memory
    test needs many inputs fast and the same ones every run.
    """
    rng = random.Random(seed)
    out = []
    for i in range(count):
        path = rng.choice(POST_ROUTES)
        base = json.loads(json.dumps(BASE_BODIES[path]))
        kind = i % 8
        key: str | None = rng.choice(keys)
        content_type: bytes | None = b"application/json"
        if kind == 0:
            body = dumps(base)
        elif kind == 1:  # odd values
            base[rng.choice(FIELDS)] = rng.choice(
                (*INTERESTING_INTS, *INTERESTING_STRINGS, None, [], {}, True))
            body = dumps(base)
        elif kind == 2:  # streaming
            base["stream"] = True
            body = dumps(base)
        elif kind == 3:  # not JSON
            body = rng.choice((b"{", b"\xff\xfe", b"[1,2]", b"null", b"", b'{"a":NaN}',
                               ("[" * 1100).encode(), rng.randbytes(64)))
        elif kind == 4:  # deep but parseable
            base["messages" if "messages" in base else "input"] = json.loads(
                nested(rng.choice((300, 900)), "["))
            body = dumps(base)
        elif kind == 5:  # two different keys (401) / no key (anonymous)
            key = rng.choice((None, "two-keys"))
            body = dumps(base)
        elif kind == 6:  # wrong content type
            content_type = rng.choice(CONTENT_TYPES)
            body = dumps(base)
        else:  # big prompt, huge n / max_tokens
            if path in ("/v1/chat/completions", "/v1/completions", "/v1/messages"):
                base["max_tokens"] = rng.choice((1, 64, 10**6, 2**63))
                base["n"] = rng.choice((1, 2, 128, 10**9))
            text = "word " * rng.choice((10, 1000, 20_000))
            if "messages" in base:
                base["messages"][0]["content"] = text
            else:
                base["prompt" if "prompt" in base else "input"] = text
            body = dumps(base)
        out.append(FuzzRequest("POST", path, body, content_type, key))
    return out
