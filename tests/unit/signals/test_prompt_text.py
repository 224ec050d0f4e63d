from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import Dialect
from gateway.signals.prompt_text import DialectName, PromptParts, ToolDef, prompt_text

DIALECTS: tuple[DialectName, ...] = ("openai", "anthropic")

OPENAI_CHAT: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "You are a meticulous tax assistant."},
        {"role": "developer", "content": [{"type": "text", "text": "Cite the statute."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Is my home office deductible?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "text", "text": "I work from home 3 days a week."},
            ],
        },
        {
            "role": "assistant",
            "content": "Let me look up the rules.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup_statute", "arguments": '{"code": "280A"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "IRC 280A(c)(1): exclusive use..."},
        {"role": "user", "content": "And if I also use the room as a guest room?"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "lookup_statute",
                "description": "Look up a section of the tax code.",
                "parameters": {
                    "type": "object",
                    "properties": {"code": {"type": "string"}, "year": {"type": "integer"}},
                    "required": ["code"],
                },
            },
        }
    ],
}

ANTHROPIC_MESSAGES: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "system": [
        {"type": "text", "text": "You are a coding agent."},
        {"type": "text", "text": "Prefer small diffs.", "cache_control": {"type": "ephemeral"}},
    ],
    "tools": [
        {
            "name": "read_file",
            "description": "Read a file from the repository.",
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
        },
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
    ],
    "messages": [
        {"role": "user", "content": "Fix the failing test in parser.py"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "I should read the file.", "signature": "x"},
                {"type": "text", "text": "Reading the file."},
                {"type": "tool_use", "id": "tu_1", "name": "read_file", "input": {"path": "p"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "tu_1",
                    "content": [{"type": "text", "text": "def parse(s): return s.split()"}],
                }
            ],
        },
    ],
}


def test_openai_chat() -> None:
    parts = prompt_text(OPENAI_CHAT, "openai")
    assert parts.system == "You are a meticulous tax assistant.\nCite the statute."
    assert parts.user_turns == (
        "Is my home office deductible?\nI work from home 3 days a week.",
        "And if I also use the room as a guest room?",
    )
    assert parts.last_user == "And if I also use the room as a guest room?"
    assert parts.tool_results == ("IRC 280A(c)(1): exclusive use...",)
    assert parts.tools == (
        ToolDef("lookup_statute", "Look up a section of the tax code.", ("code", "year")),
    )
    assert parts.tool_names == ("lookup_statute",)
    assert parts.media == 1
    full = parts.full_text()
    assert "Let me look up the rules." not in full  # the assistant's own words
    assert "exclusive use" in full and "guest room" in full and "tax code" in full
    template = parts.template_text()
    assert "lookup_statute" in template and "guest room" in template
    assert "home office" not in template  # earlier user turns are not the template


def test_anthropic_messages_with_tool_result() -> None:
    parts = prompt_text(ANTHROPIC_MESSAGES, Dialect.ANTHROPIC)
    assert parts.system == "You are a coding agent.\nPrefer small diffs."
    assert parts.user_turns == ("Fix the failing test in parser.py",)
    # an agent step that only returns a tool result keeps the task as the last user turn
    assert parts.last_user == "Fix the failing test in parser.py"
    assert parts.tool_results == ("def parse(s): return s.split()",)
    assert parts.tool_names == ("read_file", "web_search")
    assert parts.tools[0].parameters == ("path",)
    full = parts.full_text()
    assert "I should read the file" not in full and "Reading the file" not in full


def test_anthropic_system_string_documents_and_images() -> None:
    body = {
        "system": "Be brief.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "data": "AAAA"}},
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "Doc."},
                    },
                    {"type": "document", "source": {"type": "base64", "data": "JVBERi0"}},
                    {"type": "text", "text": "Summarise."},
                ],
            }
        ],
    }
    parts = prompt_text(body, "anthropic")
    assert parts.system == "Be brief."
    assert parts.last_user == "Doc.\nSummarise."
    assert parts.media == 2


def test_legacy_completions_prompt_string_and_list() -> None:
    assert prompt_text({"prompt": "Once upon a time"}, "openai").last_user == "Once upon a time"
    parts = prompt_text({"prompt": ["Q: 1+1?", [1, 2, 3], "Q: 2+2?"]}, "openai")
    assert parts.user_turns == ("Q: 1+1?", "Q: 2+2?")  # token arrays skipped
    assert parts.last_user == "Q: 2+2?"
    legacy = prompt_text({"prompt": "\n\nHuman: hi\n\nAssistant:"}, "anthropic")
    assert legacy.last_user == "\n\nHuman: hi\n\nAssistant:"


def test_embeddings_input() -> None:
    assert prompt_text({"input": "a cat"}, "openai").user_turns == ("a cat",)
    parts = prompt_text({"input": ["a cat", "a dog"]}, "openai")
    assert parts.user_turns == ("a cat", "a dog")
    assert prompt_text({"input": [[1, 2], [3]]}, "openai") == PromptParts()


def test_responses_api() -> None:
    body = {
        "instructions": "Answer in French.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "What is a tort?"}]},
            {"type": "function_call", "name": "search", "arguments": "{}", "call_id": "c1"},
            {"type": "function_call_output", "call_id": "c1", "output": "A civil wrong."},
        ],
        "tools": [{"type": "function", "name": "search", "description": "Search the web."}],
    }
    parts = prompt_text(body, "openai")
    assert parts.system == "Answer in French."
    assert parts.last_user == "What is a tort?"
    assert parts.tool_results == ("A civil wrong.",)
    assert parts.tools == (ToolDef("search", "Search the web."),)


def test_legacy_functions_and_builtin_tools() -> None:
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "functions": [{"name": "get_weather", "parameters": {"properties": {"city": {}}}}],
        "tools": [{"type": "web_search_preview"}, {"type": "function", "function": {}}],
    }
    parts = prompt_text(body, "openai")
    assert parts.tool_names == ("web_search_preview", "get_weather")
    assert parts.tools[1].parameters == ("city",)


GARBAGE: list[Any] = [
    None,
    [],
    "messages",
    42,
    {"messages": None},
    {"messages": "hello"},
    {"messages": [None, 1, "x", [], {"role": 5}, {"role": "user", "content": 7}]},
    {"messages": [{"role": "user", "content": [None, 3, {"type": "text", "text": 9}]}]},
    {"messages": [{"role": "user", "content": [{"type": ["text"], "text": "x"}]}]},
    {"system": {"text": "x"}, "messages": [{"role": "user", "content": {"a": 1}}]},
    {"system": [1, None, {"type": "text"}], "tools": "all"},
    {
        "tools": [
            None,
            {"function": "x"},
            {"name": 3},
            {"type": None},
            {"name": "t", "input_schema": 3},
        ]
    },
    {"tools": [{"name": "t", "input_schema": {"properties": ["a"]}}]},
    {"prompt": {"text": "x"}, "input": 3.5, "instructions": []},
    {"input": [{"role": "user", "content": None}, {"type": "function_call_output", "output": 5}]},
    {"messages": [{"role": "user", "content": [{"type": "tool_result", "content": {"x": 1}}]}]},
]


def test_garbage_bodies_never_raise() -> None:
    for body in GARBAGE:
        for dialect in DIALECTS:
            parts = prompt_text(body, dialect)
            assert isinstance(parts, PromptParts)
            assert isinstance(parts.full_text(), str)


_KEYS = (
    *("role", "content", "type", "text", "system", "messages", "tools", "function", "name"),
    *("description", "parameters", "input_schema", "properties", "prompt", "input"),
    *("instructions", "output", "source", "data", "functions"),
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.sampled_from(_KEYS), children, max_size=6)
    ),
    max_leaves=40,
)
_roles = st.sampled_from(["user", "system", "developer", "assistant", "tool", "function", 3])


@settings(max_examples=300, deadline=None)
@given(body=_json, roles=st.lists(_roles, max_size=4), dialect=st.sampled_from(DIALECTS))
def test_arbitrary_json_never_raises(body: Any, roles: list[Any], dialect: DialectName) -> None:
    bodies = [body, {"messages": [{"role": role, "content": body} for role in roles]}]
    for candidate in bodies:
        parts = prompt_text(candidate, dialect)
        assert isinstance(parts.full_text(), str)
        assert isinstance(parts.template_text(), str)
        assert all(isinstance(turn, str) and turn for turn in parts.user_turns)
