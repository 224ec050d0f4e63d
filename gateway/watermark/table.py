"""The curated substitution table (`variants.txt`, shipped with the package).

A *variant set* is a handful of words that can replace one another wherever
one of them stands (`often frequently`), with optional restrictions on where a
set counts as a position (see the header of `variants.txt`). A member may be a
*pair* of words written with an underscore (`do_not don't`): the pair is one
position, and writing the other member turns two words into one or back. The
table is read once per process from the package data, never downloaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

_VOWELS = frozenset("aeiou")
_OPTION_FLAGS = ("comma", "bare", "start", "inside")


class TableError(ValueError):
    """A malformed line in a substitution table (names the line)."""


@dataclass(frozen=True, slots=True)
class VariantSet:
    """Interchangeable words; `id` (the first member) is what gets hashed.

    Members are written as they appear in text: a pair member holds a space
    ("do not").
    """

    id: str
    members: tuple[str, ...]
    after: frozenset[str] | None = None  # a position only after one of these words
    not_after: frozenset[str] = field(default_factory=frozenset)
    comma: bool = False  # only when a comma follows the word
    bare: bool = False  # only when no punctuation follows
    start: bool = False  # only at the start of a sentence or line
    inside: bool = False  # never at the start of a sentence or line, nor after a comma

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass(frozen=True, slots=True)
class Table:
    sets: tuple[VariantSet, ...]
    by_word: Mapping[str, tuple[VariantSet, int]]  # one-word member -> (set, index)
    pairs: Mapping[tuple[str, str], tuple[VariantSet, int]]  # ("do", "not") -> (set, index)
    pair_firsts: frozenset[str]  # first words of pairs: a stream holds these back
    prefixes: frozenset[str]  # every prefix of a one-word member or a pair's first word

    def __len__(self) -> int:
        return len(self.sets)


def _words(value: str, lineno: int) -> frozenset[str]:
    words = frozenset(w for w in value.split(",") if w)
    if not words:
        raise TableError(f"line {lineno}: empty word list")
    return words


def _is_word(word: str) -> bool:
    letters = word.replace("'", "")
    return (letters.isascii() and letters.isalpha() and letters.islower()
            and word.count("'") <= 1 and word[0] != "'" and word[-1] != "'")


def parse_table(lines: Iterable[str]) -> Table:
    """Parse table text; raise TableError naming the line of any mistake."""
    sets: list[VariantSet] = []
    seen: dict[str, str] = {}  # member -> set id
    for lineno, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words_part, _, options_part = line.partition("|")
        written = words_part.split()
        if len(written) < 2:
            raise TableError(f"line {lineno}: a set needs two or more members")
        members = []
        for word in written:
            parts = word.split("_")
            if len(parts) > 2 or not all(_is_word(p) for p in parts):
                raise TableError(f"line {lineno}: {word!r} is not a lower-case word or pair")
            member = " ".join(parts)
            if member in seen:
                raise TableError(f"line {lineno}: {word!r} is already in set "
                                 f"{seen[member]!r}")
            members.append(member)
        after: frozenset[str] | None = None
        not_after: set[str] = set()
        flags: dict[str, bool] = dict.fromkeys(_OPTION_FLAGS, False)
        for option in options_part.split():
            name, eq, value = option.partition("=")
            if name == "after" and eq:
                after = _words(value, lineno)
            elif name == "not-after" and eq:
                not_after |= _words(value, lineno)
            elif name in flags and not eq:
                flags[name] = True
            else:
                raise TableError(f"line {lineno}: unknown option {option!r}")
        if len({m[0] in _VOWELS for m in members}) > 1:
            not_after |= {"a", "an"}  # "a huge" / "an enormous": the article would be wrong
        vset = VariantSet(members[0], tuple(members), after, frozenset(not_after), **flags)
        sets.append(vset)
        for member in members:
            seen[member] = vset.id

    # Restrictions compare against the *normalised* previous word: a set's id. A pair
    # ends in its last word, so "not-after=not" also means after "is not" / "isn't".
    ending: dict[str, set[str]] = {}
    for vset in sets:
        for member in vset.members:
            if " " in member:
                ending.setdefault(member.rsplit(" ", 1)[1], set()).add(vset.id)

    def norm(words: frozenset[str]) -> frozenset[str]:
        out = {seen.get(w, w) for w in words}
        for w in words:
            out |= ending.get(w, set())
        return frozenset(out)

    final = tuple(
        dataclasses.replace(s, after=None if s.after is None else norm(s.after),
                            not_after=norm(s.not_after)) for s in sets)
    by_word: dict[str, tuple[VariantSet, int]] = {}
    pairs: dict[tuple[str, str], tuple[VariantSet, int]] = {}
    for vset in final:
        for index, member in enumerate(vset.members):
            first, _, second = member.partition(" ")
            if second:
                pairs[first, second] = (vset, index)
            else:
                by_word[member] = (vset, index)
    pair_firsts = frozenset(first for first, _ in pairs)
    clash = pair_firsts & by_word.keys()
    if clash:
        raise TableError(f"{sorted(clash)[0]!r} is both a word of a set and the start of a pair")
    prefixes = frozenset(
        word[:i] for word in (*by_word, *pair_firsts) for i in range(1, len(word) + 1))
    return Table(final, by_word, pairs, pair_firsts, prefixes)


@lru_cache(maxsize=1)
def default_table() -> Table:
    """The table that ships with the package (read once per process)."""
    text = resources.files(__package__).joinpath("variants.txt").read_text("utf-8")
    return parse_table(text.splitlines())
