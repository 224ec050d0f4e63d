"""Does a prompt ask the model to spell out its reasoning?

Distillation campaigns harvest chain-of-thought: prompts that ask the model to
"articulate the internal reasoning behind a completed response and write it
out step by step", to put its thinking in tags, to keep its "thinking content"
in the user's language, or to reconstruct the reasoning behind an answer. One
such prompt is ordinary; an identity whose traffic is mostly such prompts, at
volume, is a signal.

`ReasoningPatterns` holds case-insensitive regular expressions. The defaults
(`DEFAULT_REASONING_PATTERNS`) cover phrasings from public reporting on
chain-of-thought harvesting; policy authors add their own in YAML and the
policy loader calls `ReasoningPatterns.default().extended(extra)`, which
validates every pattern and raises `ValueError` naming the first bad one
(not a string, does not compile, or matches the empty string).

Cost. Each pattern is searched on its own, which is fast when the pattern
starts with a literal character: the regex engine then scans for that
character in C (about 1 ns a character) instead of attempting a match at every
position (about 25 ns). So:
- a leading `\\b` before a literal word is handled outside the regex (the
  match is kept only if the character before it is not a word character);
- patterns without upper-case letters or upper-case escapes (`\\S`, `\\W`,
  `\\D`, `\\B`) are searched, without IGNORECASE, on the lower-cased text;
  others are searched with IGNORECASE on the original text;
- authors should start patterns with a literal word, not an alternation
  (`(?:a|b) c`) or a character class.
The text searched is bounded by the caller (the fingerprint searches at most
a few KB), which also bounds the cost of a badly backtracking author pattern.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

DEFAULT_REASONING_PATTERNS: tuple[str, ...] = (
    r"\bstep[\s-]+by[\s-]+step\b",
    r"\bthink(?:ing)? (?:it )?(?:through|carefully|hard|deeply|aloud|out loud|step)\b",
    r"\blet'?s think\b",
    r"\bshow (?:me )?(?:all )?(?:of )?(?:your|the) (?:work|working|reasoning|thinking|thoughts?"
    r"|thought process|steps|derivation)\b",
    r"\bexplain (?:your|the|each|every) (?:reasoning|thinking|thought process|logic|steps?)\b",
    r"\binternal (?:reasoning|monologue|thoughts?|thinking|deliberation)\b",
    r"\bchain[\s-]+of[\s-]+thoughts?\b",
    r"\bwalk (?:me |us )?through (?:your|the) (?:thought|reasoning|thinking|logic)",
    r"\barticulate\b.{0,80}\b(?:reasoning|thinking|thoughts?|rationale|logic)\b",
    r"\breason(?:ing)? (?:carefully|out loud|aloud|step|through)\b",
    r"\breasoning (?:process|trace|traces|steps|chain|path|content)\b",
    r"\bbefore (?:answering|responding|you answer|you respond),? (?:first )?"
    r"(?:think|reason|deliberate|consider)\b",
    r"\bwrite (?:out|down) (?:your|the|all|each|every) (?:thinking|reasoning|thoughts?|steps?)\b",
    r"\bthought process\b",
    r"\bthinking (?:process|content|trace)\b",
    r"\bverbatim (?:reasoning|thinking|thoughts)\b",
    r"\bfull (?:reasoning|thinking|thought process)\b",
    r"\bcomplete (?:reasoning|thinking|thought process)\b",
    r"\bentire (?:reasoning|thinking|thought process)\b",
    r"\bhidden (?:reasoning|thinking|thought process)\b",
    r"\braw (?:reasoning|thinking|thought process)\b",
    r"\breconstruct (?:the|your) (?:reasoning|thinking|thoughts?|rationale)\b",
    r"\bjustify (?:each|every) (?:step|stage)\b",
    r"<\s*(?:think|thinking|reasoning|scratchpad)\s*>",
    r"\bscratch ?pad\b",
)

_LEADING_WORD = re.compile(r"\\b[a-z0-9_](?![?*{])")
_PLAIN = re.compile(r"[A-Za-z0-9 '_,:;!\"<>=-]+")


@dataclass(frozen=True, slots=True)
class _Pattern:
    source: str
    regex: re.Pattern[str]
    lowered: bool  # search the lower-cased text, without IGNORECASE
    boundary: bool  # a leading \b, checked outside the regex
    prefix: str  # lower-case literal every match starts with ("" if none)


@dataclass(frozen=True, slots=True)
class ReasoningPatterns:
    """Compiled reasoning-elicitation patterns; build with `default()` or `of()`."""

    patterns: tuple[str, ...]
    _compiled: tuple[_Pattern, ...] = field(repr=False, compare=False)

    @classmethod
    def default(cls) -> ReasoningPatterns:
        return _DEFAULT

    @classmethod
    def of(cls, patterns: Iterable[str]) -> ReasoningPatterns:
        """Exactly these patterns (validated); `ValueError` names the first bad one."""
        sources = tuple(patterns)
        return cls(patterns=sources, _compiled=tuple(_compile(source) for source in sources))

    def extended(self, extra: Iterable[str]) -> ReasoningPatterns:
        """These patterns plus the author's `extra` ones (duplicates dropped)."""
        merged = list(self.patterns)
        for source in extra:
            if source not in merged:
                merged.append(source)
        return ReasoningPatterns.of(merged)

    def search(self, text: str) -> str | None:
        """The first pattern (its source, in list order) that matches `text`, or None."""
        lowered = text.lower()
        for pattern in self._compiled:
            start = 0
            if pattern.prefix:
                start = lowered.find(pattern.prefix)
                if start < 0:
                    continue  # str.find skips ahead; far cheaper than a regex scan
            if pattern.lowered:
                if _found(pattern, lowered, start):
                    return pattern.source
            elif _found(pattern, text, 0):
                return pattern.source
        return None

    def matches(self, text: str) -> bool:
        return self.search(text) is not None


def _found(pattern: _Pattern, text: str, start: int) -> bool:
    match = pattern.regex.search(text, start)
    if not pattern.boundary:
        return match is not None
    while match is not None:
        start = match.start()
        if start == 0 or not (text[start - 1].isalnum() or text[start - 1] == "_"):
            return True
        match = pattern.regex.search(text, start + 1)
    return False


def _compile(source: object) -> _Pattern:
    if not isinstance(source, str) or not source:
        raise ValueError(f"reasoning pattern {source!r}: must be a non-empty string")
    try:
        compiled = re.compile(source, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"reasoning pattern {source!r} does not compile: {exc}") from None
    for probe in ("", "a b."):
        found = compiled.search(probe)
        if found is not None and found.end() == found.start():
            raise ValueError(f"reasoning pattern {source!r} matches the empty string")
    lowered = source == source.lower()  # no upper-case letter, so no \S \W \D \B either
    flags = 0 if lowered else re.IGNORECASE
    boundary = bool(_LEADING_WORD.match(source)) and not _has_top_level_branch(source)
    body = source[2:] if boundary else source
    return _Pattern(source, re.compile(body, flags), lowered, boundary, _literal_prefix(body))


def _literal_prefix(body: str) -> str:
    """The plain characters every match of `body` starts with, lower-cased ("" if unsure)."""
    if _has_top_level_branch(body):
        return ""
    match = _PLAIN.match(body)
    prefix = match[0] if match else ""
    if prefix and body[len(prefix) : len(prefix) + 1] in ("?", "*", "{"):
        prefix = prefix[:-1]  # the last character is optional
    return prefix.lower()


def _has_top_level_branch(source: str) -> bool:
    """Whether `source` has a `|` outside any group or character class."""
    depth = 0
    in_class = False
    escaped = False
    for char in source:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return True
    return False


_DEFAULT = ReasoningPatterns.of(DEFAULT_REASONING_PATTERNS)
