"""The curated substitution table (`variants.txt`, shipped with the package).

A *variant set* is a handful of words that can replace one another wherever
one of them stands (`often frequently`), with optional restrictions on where a
set counts as a position (see the header of `variants.txt`). A member may be a
*pair* of words written with an underscore (`do_not don't`): the pair is one
position, and writing the other member turns two words into one or back. The
table is read once per process from the package data, never downloaded.

Restrictions on the *next* word (`not-before=`) make a set a *look-ahead* set:
the scanner decides such a position only once the following word is known (see
`scan`). For those sets the loader also works out which table words must count
as "the same next word": marking may turn a next word into another member of
its set ("do not" into "don't"), so a word of the table is refused as a next
word exactly when some word it can become would be, and a position never
appears or vanishes because a later word was marked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

_VOWELS = frozenset("aeiou")
_OPTION_FLAGS = ("comma", "bare", "start", "inside")
SENTENCE_START = "^"  # in `after=`: also at the start of a sentence or line
CLAUSE_START = "^^"  # in `after=`: also at the start of a clause (after a comma, too)


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
    after_start: bool = False  # `after=` holds "^": also at a sentence or line start
    after_clause: bool = False  # `after=` holds "^^": also at a clause start
    # Look-ahead: never a position before one of these words, or a word ending so.
    not_before: frozenset[str] = field(default_factory=frozenset)
    not_before_endings: tuple[str, ...] = ()
    ahead: bool = False  # a look-ahead set (any `not-before=`)
    # Table words (one-word members and first words of pairs) refused as the next word.
    blocked_next: frozenset[str] = field(default_factory=frozenset)

    @property
    def size(self) -> int:
        return len(self.members)

    def next_ok(self, word: str, table_words: frozenset[str]) -> bool:
        """May `word` (lower case, "'" apostrophes) follow a position of this set?"""
        if word in table_words:
            return word not in self.blocked_next
        return word not in self.not_before and not word.endswith(self.not_before_endings)


@dataclass(frozen=True, slots=True)
class Table:
    sets: tuple[VariantSet, ...]
    by_word: Mapping[str, tuple[VariantSet, int]]  # one-word member -> (set, index)
    pairs: Mapping[tuple[str, str], tuple[VariantSet, int]]  # ("do", "not") -> (set, index)
    pair_firsts: frozenset[str]  # first words of pairs: a stream holds these back
    prefixes: frozenset[str]  # every prefix of a one-word member or a pair's first word
    words: frozenset[str] = frozenset()  # one-word members and first words of pairs
    pair_seconds: frozenset[str] = frozenset()  # second words of pairs ("not", "is", ...)

    def __len__(self) -> int:
        return len(self.sets)


def _is_word(word: str) -> bool:
    letters = word.replace("'", "")
    return (letters.isascii() and letters.isalpha() and letters.islower()
            and word.count("'") <= 1 and word[0] != "'" and word[-1] != "'")


def _words(value: str, lineno: int, groups: Mapping[str, frozenset[str]],
           endings_ok: bool = False) -> frozenset[str]:
    """A comma-separated word list; `@name` expands a group, `*ed` is an ending."""
    out: set[str] = set()
    for word in value.split(","):
        if not word:
            continue
        if word.startswith("@"):
            if word[1:] not in groups:
                raise TableError(f"line {lineno}: unknown group {word!r}")
            out |= groups[word[1:]]
        elif word in (SENTENCE_START, CLAUSE_START) or _is_word(word) or (
                endings_ok and word.startswith("*") and _is_word(word[1:])):
            out.add(word)
        else:
            raise TableError(f"line {lineno}: {word!r} is not a lower-case word")
    if not out:
        raise TableError(f"line {lineno}: empty word list")
    return frozenset(out)


def parse_table(lines: Iterable[str]) -> Table:
    """Parse table text; raise TableError naming the line of any mistake."""
    sets: list[VariantSet] = []
    seen: dict[str, str] = {}  # member -> set id
    groups: dict[str, frozenset[str]] = {}
    for lineno, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("@"):  # "@name = word word ..." defines (or extends) a group
            name, eq, value = line[1:].partition("=")
            name = name.strip()
            if not eq or not name.isalpha():
                raise TableError(f"line {lineno}: a group is written '@name = words'")
            words = _words(",".join(value.split()), lineno, groups, endings_ok=True)
            groups[name] = groups.get(name, frozenset()) | words
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
        not_before: set[str] = set()
        flags: dict[str, bool] = dict.fromkeys(_OPTION_FLAGS, False)
        for option in options_part.split():
            name, eq, value = option.partition("=")
            if name == "after" and eq:
                after = _words(value, lineno, groups)
            elif name == "not-after" and eq:
                not_after |= _words(value, lineno, groups) - {SENTENCE_START, CLAUSE_START}
            elif name == "not-before" and eq:
                not_before |= (_words(value, lineno, groups, endings_ok=True)
                               - {SENTENCE_START, CLAUSE_START})
            elif name in flags and not eq:
                flags[name] = True
            else:
                raise TableError(f"line {lineno}: unknown option {option!r}")
        if len({m[0] in _VOWELS for m in members}) > 1:
            not_after |= {"a", "an"}  # "a huge" / "an enormous": the article would be wrong
        if not_before:
            firsts = {m.split(" ")[0] for m in members if " " in m}
            lead = next(iter(firsts)) if len(firsts) == 1 else None
            if len(firsts) > 1 or (lead is not None
                                   and not all(m.startswith(lead) for m in members)):
                # The first word of a look-ahead pair is sent before the next word
                # is known, so every member must begin with it ("it is" / "it's").
                raise TableError(f"line {lineno}: in a set with not-before=, every member "
                                 "must begin with the first word of its pair")
        vset = VariantSet(
            members[0], tuple(members), after, frozenset(not_after),
            comma=flags["comma"], bare=flags["bare"], start=flags["start"],
            inside=flags["inside"],
            after_start=after is not None and SENTENCE_START in after,
            after_clause=after is not None and CLAUSE_START in after,
            not_before=frozenset(w for w in not_before if not w.startswith("*")),
            not_before_endings=tuple(sorted(w[1:] for w in not_before if w.startswith("*"))),
            ahead=bool(not_before))
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

    blocked = _blocked_next(sets)
    final = tuple(
        dataclasses.replace(s, after=None if s.after is None else norm(s.after),
                            not_after=norm(s.not_after),
                            blocked_next=blocked.get(s.id, frozenset())) for s in sets)
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
    return Table(final, by_word, pairs, pair_firsts, prefixes,
                 frozenset(by_word) | pair_firsts, frozenset(second for _, second in pairs))


def _blocked_next(sets: list[VariantSet]) -> dict[str, frozenset[str]]:
    """For each look-ahead set, the table words refused as the word after it.

    Marking can turn a table word into any member of its set, and a pair's first
    word into the set's other members ("do" of "do not" into "don't"); sets that
    share a pair's first word ("i am", "i will") are linked the same way. Within
    such a group, if one word is refused, all are.
    """
    parent = list(range(len(sets)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_of: dict[str, int] = {}
    for i, vset in enumerate(sets):
        for member in vset.members:
            if " " in member:
                first = member.split(" ")[0]
                j = first_of.setdefault(first, i)
                parent[root(i)] = root(j)
    groups: dict[int, set[str]] = {}  # group -> its words as they start a next chunk
    for i, vset in enumerate(sets):
        groups.setdefault(root(i), set()).update(m.split(" ")[0] for m in vset.members)
    out: dict[str, frozenset[str]] = {}
    for vset in sets:
        if not vset.ahead:
            continue
        refused: set[str] = set()
        for words in groups.values():
            if any(w in vset.not_before or w.endswith(vset.not_before_endings)
                   for w in words):
                refused |= words
        out[vset.id] = frozenset(refused)
    return out


@lru_cache(maxsize=1)
def default_table() -> Table:
    """The table that ships with the package (read once per process)."""
    text = resources.files(__package__).joinpath("variants.txt").read_text("utf-8")
    return parse_table(text.splitlines())
