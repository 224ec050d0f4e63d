"""The prose generator: deterministic, varied, real English sentences."""

from __future__ import annotations

from gateway.demo_upstream import prose


def test_same_seed_same_text_and_different_seeds_differ() -> None:
    a = prose.answer.__wrapped__(42, 3, "gardens")
    assert a == prose.answer.__wrapped__(42, 3, "gardens")
    assert a != prose.answer.__wrapped__(43, 3, "gardens")


def test_default_answer_is_long_varied_prose() -> None:
    for prompt in ("Explain photosynthesis", "Why is the sky blue?", "hi", "Tell me a story"):
        text = prose.answer(prose.seed_of(prompt), 3, prose.topic_of(prompt))
        words = text.split()
        distinct = {w.strip(".,").lower() for w in words}
        assert 150 <= len(words) <= 320
        assert len(distinct) >= 100
        assert text.count("\n\n") == 2  # three paragraphs
        assert all(s[0].isupper() for s in text.replace("\n\n", " ").split(". ") if s)
        assert text.endswith(".")


def test_vocabulary_is_large_and_has_common_function_words() -> None:
    vocabulary = set(prose.NOUNS + prose.ADJECTIVES + prose.ADVERBS + prose.VERBS)
    assert len(vocabulary) >= 300
    assert {"important", "large", "quickly", "show"} <= vocabulary
    corpus = " ".join(prose.answer(seed, 3, "") for seed in range(20)).lower().split()
    assert {"the", "however,", "shows"} <= set(corpus)


def test_tokens_keep_leading_whitespace_and_join_back() -> None:
    text = prose.answer(7, 2, "rivers")
    toks = prose.tokens(text)
    assert "".join(toks) == text
    assert len(toks) == prose.count_words(text)
    assert all(t.startswith((" ", "\n")) for t in toks[1:])


def test_take_cuts_at_budget() -> None:
    toks = prose.tokens("one two three four")
    assert prose.take(toks, None) == (toks, None, False)
    assert prose.take(toks, 2) == (("one", " two"), 0, True)
    assert prose.take(toks, 4) == (toks, 0, False)


def test_topic_and_grammar_helpers() -> None:
    assert prose.topic_of("What is the weather in Paris?") == "weather"
    assert prose.topic_of("Photosynthesis, explain it") == "photosynthesis"
    assert prose.topic_of("hi") == ""
    assert prose.article("useful tool") == "a"
    assert prose.article("important idea") == "an"
    assert [prose.plural(n) for n in ("city", "process", "person", "day")] == [
        "cities",
        "processes",
        "people",
        "days",
    ]
    assert [prose.third_person(v) for v in ("teach", "carry", "show")] == [
        "teaches",
        "carries",
        "shows",
    ]
    assert [prose.past(v) for v in ("build", "carry", "change", "show")] == [
        "built",
        "carried",
        "changed",
        "showed",
    ]


def test_reasoning_is_step_by_step() -> None:
    text = prose.reasoning(5, "weather")
    assert text.startswith("Let me think about this step by step.")
    assert "about weather" in text
    assert 30 <= len(text.split()) <= 120
