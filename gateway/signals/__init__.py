"""Per-request signals about a prompt, for diversity, template and elicitation policies.

`prompt_text` reads the client-written text of a request body; `fingerprint`
turns it into exact / near-duplicate / template / topic / elicitation signals.
Both are synchronous, stdlib-only and bounded in cost (see `fingerprint`).
"""

from gateway.signals.elicitation import DEFAULT_REASONING_PATTERNS, ReasoningPatterns
from gateway.signals.fingerprint import (
    DEFAULT_MAX_CHARS,
    Fingerprint,
    fingerprint,
    hamming,
    sample_text,
    simhash,
    simhash_bands,
    skeleton,
    topics,
)
from gateway.signals.prompt_text import PromptParts, ToolDef, prompt_text

__all__ = [
    "DEFAULT_MAX_CHARS",
    "DEFAULT_REASONING_PATTERNS",
    "Fingerprint",
    "PromptParts",
    "ReasoningPatterns",
    "ToolDef",
    "fingerprint",
    "hamming",
    "prompt_text",
    "sample_text",
    "simhash",
    "simhash_bands",
    "skeleton",
    "topics",
]
