"""Settings of the demo upstream."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """How the fake model behaves.

    word_delay: seconds slept between streamed words (0 = as fast as possible;
        the `demo` CLI uses ~0.02 so streaming is visible).
    fast: benchmark mode — every answer is one fixed ~100-word paragraph and
        plain requests are served from pre-rendered bytes, so the upstream
        costs as little CPU as possible.
    paragraphs: paragraphs per prose answer (each ~55-95 words).
    """

    word_delay: float = 0.0
    fast: bool = False
    paragraphs: int = 3

    def __post_init__(self) -> None:
        if self.word_delay < 0:
            raise ValueError("word_delay must be >= 0")
        if self.paragraphs < 1:
            raise ValueError("paragraphs must be >= 1")
