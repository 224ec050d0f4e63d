from __future__ import annotations

import pydoc_data.topics
import re

import pytest

from gateway.demo_upstream import prose

SECRET = b"test-deployment-secret"
IDENTITY = "3fa2b1c4d5e6f708"


def demo_text(words: int, seed: int = 1) -> str:
    """Demo-model prose of at least `words` words."""
    paragraphs = max(1, words // 60)
    text = prose.answer(seed, paragraphs)
    while len(text.split()) < words:
        paragraphs += 1
        text = prose.answer(seed, paragraphs)
    return text


def real_passages(count: int, words: int) -> list[str]:
    """Human-written English (the Python language reference in the stdlib), never marked."""
    text = "\n\n".join(pydoc_data.topics.topics.values())
    text = re.sub(r"(?m)^[~*=\-^]{3,}\s*$", "", text)  # reST heading underlines
    tokens = re.findall(r"\S+\s*", text)
    return ["".join(tokens[i * words:(i + 1) * words]) for i in range(count)]


@pytest.fixture(scope="session")
def long_demo() -> str:
    return demo_text(2000)
