from __future__ import annotations

import pytest

from gateway.signals import ReasoningPatterns, fingerprint, prompt_text
from gateway.signals.elicitation import DEFAULT_REASONING_PATTERNS

POSITIVE = [
    # the phrasing from public reporting on chain-of-thought harvesting
    "Articulate the internal reasoning behind a completed response and write it out step by step.",
    "Solve this. Think step-by-step and show your work.",
    "Let's think step by step.",
    "Please explain your reasoning before giving the final answer.",
    "Walk me through your thought process for this proof.",
    "Use chain-of-thought prompting: reason carefully about each clause.",
    "Before answering, think about the edge cases.",
    "Write out your reasoning in full, then give the answer.",
    "Put your reasoning inside <thinking> tags and the answer after it.",
    "Reconstruct the reasoning that led to the answer above.",
    "Show all of your work.",
    "The language of the thinking content must match the user's language.",
    "Give me your complete reasoning trace, verbatim.",
    "Use a scratchpad for intermediate results.",
    "THINK CAREFULLY and justify each step.",
]

NEGATIVE = [
    "What is the capital of Australia?",
    "Write a haiku about autumn leaves.",
    "Give me a recipe for sourdough bread with a 12-hour ferment.",
    "Summarise this article in three bullet points.",
    "Translate 'good morning' into Portuguese.",
    "I stepped by the bakery and bought two croissants.",
    "What's the reason for the delay on the Northern line?",
    "Show me the train times from Leeds to York.",
    "Explain how photosynthesis works to a ten-year-old.",
    "Is the thought of retiring at 50 realistic with a 30% savings rate?",
    "Write a function that reverses a linked list in Rust.",
    "My footsteps echoed; I was thinking of home.",
]


@pytest.mark.parametrize("text", POSITIVE)
def test_positive_examples(text: str) -> None:
    patterns = ReasoningPatterns.default()
    assert patterns.matches(text), text
    assert patterns.search(text) in DEFAULT_REASONING_PATTERNS


@pytest.mark.parametrize("text", NEGATIVE)
def test_negative_examples(text: str) -> None:
    assert ReasoningPatterns.default().search(text) is None


def test_leading_word_boundary_is_honoured() -> None:
    # "\bstep by step" must not match inside "footstep by step"; a later real one still counts
    patterns = ReasoningPatterns.of([r"\bstep by step"])
    assert not patterns.matches("a footstep by step")
    assert patterns.matches("a footstep by step, then step by step")
    assert patterns.matches("step by step")  # at the very start


def test_search_names_the_first_matching_pattern_in_list_order() -> None:
    patterns = ReasoningPatterns.of([r"\bzebra\b", r"\bchain of thought\b", r"\bthought\b"])
    assert patterns.search("use a chain of thought") == r"\bchain of thought\b"
    assert patterns.search("a thought") == r"\bthought\b"


def test_custom_patterns_extend_defaults() -> None:
    extra = [r"\bdeliberate (?:aloud|openly)\b", r"Explain\S* Like I'm Five"]
    patterns = ReasoningPatterns.default().extended(extra)
    assert patterns.patterns[: len(DEFAULT_REASONING_PATTERNS)] == DEFAULT_REASONING_PATTERNS
    assert patterns.matches("Please DELIBERATE ALOUD about this.")
    assert patterns.matches("explain like i'm five: gravity")  # upper-case pattern: IGNORECASE
    assert not ReasoningPatterns.default().matches("Please deliberate aloud about this.")
    # extending twice with the same pattern does not duplicate it
    assert patterns.extended(extra).patterns == patterns.patterns


def test_custom_patterns_flow_into_fingerprint() -> None:
    parts = prompt_text(
        {"messages": [{"role": "user", "content": "Narrate your cogitation."}]}, "openai"
    )
    assert not fingerprint(parts).elicits_reasoning
    custom = ReasoningPatterns.default().extended([r"\bnarrate your cogitation\b"])
    assert fingerprint(parts, patterns=custom).elicits_reasoning
    assert not fingerprint(parts, patterns=ReasoningPatterns.of([])).elicits_reasoning


def test_elicitation_in_system_prompt_counts() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Always think step by step and show your reasoning."},
            {"role": "user", "content": "What is 17 * 23?"},
        ]
    }
    assert fingerprint(prompt_text(body, "openai")).elicits_reasoning


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(unclosed", "does not compile"),
        ("[z-a]", "does not compile"),
        ("a(?i)b", "does not compile"),
        ("", "non-empty"),
        ("x*", "empty string"),
        ("(?:a|)", "empty string"),
    ],
)
def test_invalid_pattern_names_the_pattern(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as caught:
        ReasoningPatterns.default().extended([r"\bfine\b", pattern])
    assert repr(pattern) in str(caught.value)


def test_patterns_are_searched_one_by_one() -> None:
    # so inline flags and backreferences keep their meaning
    patterns = ReasoningPatterns.of([r"(?i)REASON ALOUD", r"\b(\w+) \1 slowly\b"])
    assert patterns.search("reason aloud") == r"(?i)REASON ALOUD"
    assert patterns.search("think think slowly") == r"\b(\w+) \1 slowly\b"
    assert not patterns.matches("think twice slowly")


def test_non_string_pattern_is_rejected() -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        ReasoningPatterns.of([3])  # type: ignore[list-item]
