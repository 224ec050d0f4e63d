"""Finding the positions a watermark may use, and never anything else.

The scanner walks text as a sequence of whitespace runs and *chunks* (maximal
runs of non-whitespace). A chunk is a candidate only if all of these hold:

- it is *plain*: optional opening `(`, `*` or `_`, then letters (at most one
  inner apostrophe), then optional closing punctuation `.,;:!?)*_`. A chunk
  with a digit, a slash, a dot between letters, `@`, `://`, a hyphen, ... is
  never touched, so numbers, URLs, e-mail addresses, paths, identifiers and
  hyphenated compounds are left alone;
- its letters are a word of the substitution table in lower, Title or UPPER
  case, and the set's restrictions hold (previous word, comma, ...);
- it is not the first chunk of the block (a position is keyed by the previous
  word, and the first chunk can then be sent on at once: no added time to
  first token);
- the scanner is not inside something protected. Protection is a small state
  machine carried across chunks (and so across stream deltas):

  - fenced code: from a line starting (indent < 4) with ``` or ~~~ to a line
    holding a fence of the same character, at least as long;
  - indented code and block quotes: a line indented 4+ columns, or starting
    with `>`, to its end;
  - inline code: from a run of n backticks to the next run of n backticks;
  - quotations: straight or curly double quotes; straight or curly single
    quotes that open at the start of a word before a letter (so apostrophes,
    "don't", "students'", never open one) and close before a non-letter;
  - JSON, lists, link texts: `{` or `[` to the matching `}` / `]` (depth counted);
  - math: `$$ ... $$`, and `$ ... $` when the `$` is not before a digit ($5);
  - markup: `<name` (not right after a letter or digit: `x<y`) to `>`;
  - element content: after `<name ...>` up to the matching `</name>`, for common
    inline HTML elements anywhere and for any well-formed tag that opens a line
    (`<thinking>`, `<artifact id="a b">`: a name, then only `name=value`
    attributes), but not void elements or `<.../>`. So `<class 'type'>` or
    `<function f at 0x10>` (Python's output, quoted bare in prose) protects
    only itself, not the rest of the text.

  A blank line ends inline code, quotations, brackets, inline math and unfinished
  markup (a stray quote mark must not silence the rest of a long answer); fences,
  display math and element content run on until they close. Everything errs on
  the side of protection: an unmatched opener only leaves text unmarked.
  Characters inside URLs and e-mail addresses never open or close anything.

A candidate's *context* is the previous chunk, normalised: a table word becomes
its set id (so marking a word never changes the context of the next one),
other plain words are lower-cased, and any other chunk is taken lower-cased as
it is. The scanner calls `choose(context, set, observed index)` for each
candidate and writes the member it returns, in the original's case.

Pairs: a table member may be two words ("do not" / "don't"). The first word of
a possible pair is held back until the next chunk arrives; if that completes the
pair, the pair is one position (context: the word before the pair), else the
held word goes out unchanged. `finish()` releases a word still held at the end.

Look-ahead: a set with `not-before=` ("it is" / "it's": never before "been",
"and", a participle, ...) is a position only once the *next* chunk is known: a
plain word, after a single space, that the set does not refuse. The position's
word is held back until then (for a pair, its first word goes out at once:
every member of such a set begins with it, "it" / "it's"). If the next chunk
refuses it, the held word goes out unchanged; a refused pair is scanned again as
two single words, so "it is not" is still the pair "is not" after "it". Whether
a position stands never depends on how the next word was marked (the loader
refuses a next word exactly when it refuses every word it can be marked into).

The scanner is I/O-free and only ever sees *complete* chunks (see `marker`),
so its output for a text does not depend on how the text was split.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from gateway.watermark.table import Table, VariantSet

# (context, set, index of the member observed) -> index of the member to write
Choose = Callable[[str, VariantSet, int], int]

_SPLIT = re.compile(r"(\s+)").split
_PLAIN = re.compile(r"[(*_]*([A-Za-z]+(?:['\u2019][A-Za-z]+)?)([.,;:!?)*_]*)").fullmatch
# Superset of every prefix of a plain chunk (streaming: "could this still be plain?").
_PARTIAL = re.compile(r"[(*_]*(?:([A-Za-z]+(?:['\u2019][A-Za-z]*)?)([.,;:!?)*_]*))?").fullmatch
_SPECIALS = re.compile(r"`+|\$+|[\"\u201c\u201d'\u2018\u2019{}\[\]<>]").finditer
_URLISH = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*://[^\s<>\"'`)\]]*"  # scheme://...
    r"|www\.[^\s<>\"'`)\]]*"
    r"|[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+"  # e-mail, @handles
).sub
_TAG = re.compile(r"(/?)([A-Za-z][A-Za-z0-9-]*)|!").match
_VOID = frozenset({
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
    "source", "track", "wbr"})
# Inline elements whose content is protected wherever they stand; any other tag
# protects its content only when it opens a line (`<thinking>` on its own line),
# so a placeholder like "replace <name> with ..." does not silence the rest.
_HTML = frozenset({
    "a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "del", "dfn", "em", "i", "ins",
    "kbd", "mark", "pre", "q", "s", "samp", "small", "span", "strong", "sub", "sup", "time",
    "tt", "u", "var", "math", "svg", "script", "style", "textarea"})
_ATTR = re.compile(r"[A-Za-z_:][-\w:.]*=").match  # an attribute's "name="
_QUOTE_OPENERS = frozenset("([{\"\u201c\u2014\u2013-/")  # after these, ' opens a quotation
_SENTENCE_END = ".!?:"
_CLAUSE_END = ".!?:;,"
# A chunk after which a sentence starts: list bullets, heading marks ("- Note that",
# "## Note that"); numbered items ("1.", "2)") too. Dashes start a clause.
_BULLET = re.compile(r"[-*+\u2022]|#{1,6}|\d{1,3}[.)]").fullmatch
_DASHES = frozenset({"\u2013", "\u2014", "--"})
_PUNCT = ".,;:!?)*_"  # what may follow a plain word's letters
_TRAILING_CLOSERS = "\"')]\u201d\u2019*_"


def _blank(match: re.Match[str]) -> str:
    return "#" * len(match.group())


def case_like(word: str, template: str) -> str:
    """`word` in the case of `template` (lower, UPPER or Title)."""
    if template.islower():
        return word
    if template.isupper() and len(template) > 1:
        return word.upper()
    return word[:1].upper() + word[1:]


def _case_ok(core: str) -> bool:
    return core.islower() or core.isupper() or (core[0].isupper() and core[1:].islower())


def _starts(prev_chunk: str, at_line_start: bool, clause: bool) -> bool:
    """Does a sentence (or, with `clause`, a clause) start after `prev_chunk`?"""
    if at_line_start:
        return True
    end = prev_chunk.rstrip(_TRAILING_CLOSERS)[-1:]
    if end and end in (_CLAUSE_END if clause else _SENTENCE_END):
        return True
    return _BULLET(prev_chunk) is not None or (clause and prev_chunk in _DASHES)


class _Look:
    """A position waiting for the next chunk (see "Look-ahead" above)."""

    __slots__ = ("ctx", "first", "index", "match", "tok", "vset", "ws")

    def __init__(self, vset: VariantSet, index: int, ctx: str, tok: str,
                 match: re.Match[str], first: re.Match[str] | None) -> None:
        self.vset = vset
        self.index = index
        self.ctx = ctx
        self.tok = tok  # the (second) word, held back
        self.match = match
        self.first = first  # a pair's first word (already sent), or None
        self.ws = ""  # whitespace seen after `tok`


class Scanner:
    """Protection state + context; `process()` complete chunks, get them back marked."""

    __slots__ = (
        "_apos", "_brace", "_busy", "_choose", "_ctx", "_fence", "_held", "_held_before",
        "_held_match", "_held_ws", "_indent", "_inline", "_line_prot", "_look", "_markup",
        "_markup_block", "_markup_close", "_markup_name", "_markup_q", "_math", "_nl",
        "_prev_chunk", "_quote_c", "_quote_d", "_quote_s", "_seconds", "_table", "_tag",
        "_tag_depth", "_words",
    )

    def __init__(self, table: Table, choose: Choose) -> None:
        self._table = table
        self._words = table.words  # one-word members and first words of pairs
        self._seconds = table.pair_seconds
        self._choose = choose
        self._ctx: str | None = None  # normalised previous chunk; None before the first
        self._prev_chunk = ""
        self._apos = "'"  # the apostrophe this text uses, for "can't"
        self._nl = 1  # newlines since the last chunk (the start counts as a line start)
        self._indent = 0
        self._line_prot = False
        self._fence: str | None = None  # the fence string that opened the code block
        self._inline = 0
        self._quote_d = self._quote_c = self._quote_s = False
        self._brace = 0
        self._math = 0  # 1 inline, 2 display
        self._markup = False
        self._markup_close = False
        self._markup_name = ""
        self._markup_block = False
        self._markup_q = ""  # an attribute value's open quote, inside markup
        self._tag: str | None = None
        self._tag_depth = 0
        self._busy = False
        # A held-back first word of a pair ("do" of "do not"), with what came after it.
        self._held = ""
        self._held_ws = ""
        self._held_match: re.Match[str] | None = None
        self._held_before: tuple[str, str, bool] = ("", "", False)  # ctx, prev chunk, line start
        self._look: _Look | None = None  # a look-ahead position waiting for the next chunk

    # -- the hot path -----------------------------------------------------------------

    def process(self, text: str) -> str:
        """Scan `text`, which must end at the end of a chunk; return what can be sent.

        Only one word is ever kept back: the first word of a possible pair, or the
        word of a look-ahead position, until the next chunk decides; `finish()`
        returns it at the end of the text.
        """
        parts = _SPLIT(text)  # chunk, whitespace, chunk, ..., chunk ("" at either end)
        out: list[str] = []
        append, chunk, space = out.append, self.chunk, self.space
        last = len(parts) - 1
        for i in range(0, last + 1, 2):
            tok = parts[i]
            if tok:
                append(chunk(tok))
            if i < last:
                ws = parts[i + 1]
                if ws == " " and not self._nl and not self._held and self._look is None:
                    append(ws)  # the usual single space: no state to change
                else:
                    append(space(ws))
        return "".join(out)

    def finish(self) -> str:
        """End of the text: whatever is held back, unchanged."""
        out = ""
        while self._look is not None or self._held:
            out += self._refuse() if self._look is not None else self._release()
        return out

    def chunk(self, tok: str) -> str:
        """Scan one complete chunk; return the text that can be sent now."""
        out = ""
        while self._look is not None:  # a refused pair is scanned again, maybe into another
            out += self._resolve(tok)
        if self._held:
            if self._held_ws == " " and (paired := self._pair(tok)) is not None:
                return out + paired
            out += self._release()
        at_line_start = self._nl > 0
        if self._markup and self._markup_block and self._markup_name not in _HTML:
            self._attribute(tok)
        if (at_line_start and self._line_start(tok)) or self._fence is not None:
            pass  # a fence line, or inside a fence
        elif tok.isalpha() and (key := tok.lower()) not in self._words:
            self._ctx = key  # the usual case: a bare word of no interest
        elif (match := _PLAIN(tok)) is None:
            self._special(tok, at_line_start)
            self._ctx = tok.lower()
        else:
            key = match.group(1).lower()
            if "'" in key or "\u2019" in key:
                key = self._key(match.group(1))
            entry = self._table.by_word.get(key)
            if entry is not None:
                tok = self._candidate(tok, match, entry, at_line_start)
                self._ctx = entry[0].id
                if self._look is not None:  # held until the next chunk
                    self._prev_chunk = tok
                    return out
            elif (key in self._table.pair_firsts and self._ctx is not None
                  and not self._busy and not self._line_prot and not match.group(2)):
                self._held = tok
                self._held_ws = ""
                self._held_match = match
                self._held_before = (self._ctx, self._prev_chunk, at_line_start)
                self._ctx = key
                self._prev_chunk = tok
                return out
            else:
                self._ctx = key
        self._prev_chunk = tok
        return out + tok if out else tok

    def space(self, ws: str) -> str:
        """Scan one whitespace run (or part of one); return what can be sent now."""
        look = self._look
        if look is not None:
            if look.ws + ws == " ":
                look.ws = " "  # (a single space mid-line changes no line state)
                return ""
            return self._refuse() + self.space(ws)  # no next word on this line
        if ws == " ":
            if self._nl:
                self._indent += 1
        else:
            self._whitespace(ws)
        if not self._held:
            return ws
        self._held += ws
        self._held_ws += ws
        return "" if self._held_ws == " " else self._release()

    def _key(self, core: str) -> str:
        key = core.lower()
        if "'" in core or "\u2019" in core:
            self._apos = "\u2019" if "\u2019" in core else "'"
            key = key.replace("\u2019", "'")
        return key

    def _release(self) -> str:
        held = self._held
        self._held = ""
        self._held_ws = ""
        self._held_match = None
        return held

    def _pair(self, tok: str) -> str | None:
        """If `tok` completes a pair with the held word, the pair's text (marked)."""
        if tok.rstrip(_PUNCT).lower() not in self._seconds:
            return None  # the usual case: no pair ends in this word
        match = _PLAIN(tok)
        first = self._held_match
        if match is None or first is None or match.start(1):
            return None
        core = match.group(1)
        first_core = first.group(1)
        entry = self._table.pairs.get((first_core.lower(), core.lower()))
        if entry is None:
            return None
        vset, index = entry
        ctx, prev_chunk, at_line_start = self._held_before
        case_ok = _case_ok(first_core) and (
            core.islower() or (core.isupper() and first_core.isupper()))
        if not case_ok or not self._allowed(vset, ctx, match.group(2), at_line_start,
                                            prev_chunk):
            return None
        if vset.ahead and match.group(2):
            return None  # punctuation: no next word (never a look-ahead position)
        held = self._held
        self._release()
        self._ctx = vset.id
        self._prev_chunk = tok
        if vset.ahead:
            self._look = _Look(vset, index, ctx, tok, match, first)
            return first.string  # every member begins with it: send it now
        chosen = self._choose(ctx, vset, index)
        if chosen == index:
            return held + tok
        first_tok = first.string
        return (first_tok[:first.start(1)] + self._write(vset, chosen, first_core)
                + tok[match.end(1):])

    def _candidate(self, tok: str, match: re.Match[str], entry: tuple[VariantSet, int],
                   at_line_start: bool) -> str:
        vset, index = entry
        ctx = self._ctx
        core = match.group(1)
        if (ctx is None or self._busy or self._line_prot or not _case_ok(core)
                or not self._allowed(vset, ctx, match.group(2), at_line_start,
                                     self._prev_chunk)):
            return tok
        if vset.ahead:
            if not match.group(2):
                self._look = _Look(vset, index, ctx, tok, match, None)
            return tok
        chosen = self._choose(ctx, vset, index)
        if chosen == index:
            return tok
        start, end = match.span(1)
        return tok[:start] + self._write(vset, chosen, core) + tok[end:]

    def _write(self, vset: VariantSet, index: int, template: str) -> str:
        word = vset.members[index]
        if "'" in word:
            word = word.replace("'", self._apos)
        return case_like(word, template)

    def _resolve(self, tok: str) -> str:
        """The chunk after a look-ahead position has come: decide the position."""
        look = self._look
        assert look is not None
        match = _PLAIN(tok)
        if (match is None or match.start(1) or look.ws != " "
                or not look.vset.next_ok(match.group(1).lower().replace("\u2019", "'"),
                                         self._words)):
            return self._refuse()
        self._look = None
        vset, index, held, ws = look.vset, look.index, look.tok, look.ws
        chosen = self._choose(look.ctx, vset, index)
        first = look.first
        if first is None:  # a one-word member ("it's"): rewrite it like any position
            if chosen == index:
                return held + ws
            m = look.match
            return held[:m.start(1)] + self._write(vset, chosen, m.group(1)) + held[m.end(1):] + ws
        if chosen == index:  # a pair whose first word went out: " is" or "'s"
            return " " + held + ws
        first_core = first.group(1)
        return self._write(vset, chosen, first_core)[len(first_core):] + ws

    def _refuse(self) -> str:
        """The look-ahead position is not one: send its text unchanged."""
        look = self._look
        assert look is not None
        self._look = None
        if look.first is None:
            return look.tok + look.ws
        # A refused pair: its first word went out already; scan the second again,
        # as it would have been scanned had the pair not been in the table.
        first = look.first
        self._ctx = first.group(1).lower()
        self._prev_chunk = first.string
        out = " " + self.chunk(look.tok)
        return out + self.space(look.ws) if look.ws else out

    def _allowed(self, vset: VariantSet, ctx: str, trailing: str, at_line_start: bool,
                 prev_chunk: str) -> bool:
        if vset.after is not None and ctx not in vset.after and not (
                (vset.after_clause and _starts(prev_chunk, at_line_start, clause=True))
                or (vset.after_start and _starts(prev_chunk, at_line_start, clause=False))):
            return False
        if ctx in vset.not_after:
            return False
        if vset.comma and not trailing.startswith(","):
            return False
        if vset.bare and trailing:
            return False
        if vset.start or vset.inside:
            sentence_start = _starts(prev_chunk, at_line_start, clause=False)
            if vset.start:
                return sentence_start
            return not sentence_start and not prev_chunk.endswith(",")
        return True

    def _whitespace(self, tok: str) -> None:
        newlines = tok.count("\n")
        if newlines:
            self._nl += newlines
            self._line_prot = False
            tail = tok[tok.rfind("\n") + 1:]
            self._indent = len(tail) + 3 * tail.count("\t")
        elif self._nl:
            self._indent += len(tok) + 3 * tok.count("\t")

    # -- line starts: fences, indented code, block quotes, blank lines -------------------

    def _line_start(self, tok: str) -> bool:
        """Handle the first chunk of a line; True if it was a fence line or fenced."""
        blank = self._nl >= 2
        indent = self._indent
        self._nl = 0
        self._indent = 0
        if self._fence is not None:
            fence = self._fence
            if indent < 4 and tok.startswith(fence) and not tok.strip(fence[0]):
                self._fence = None
            return True
        if blank:
            self._inline = 0
            self._quote_d = self._quote_c = self._quote_s = False
            self._brace = 0
            self._markup = False
            if self._math == 1:
                self._math = 0
            self._update_busy()
        if indent < 4 and tok.startswith(("```", "~~~")):
            run = len(tok) - len(tok.lstrip(tok[0]))
            self._fence = tok[0] * run
            self._inline = 0
            self._quote_d = self._quote_c = self._quote_s = False
            self._update_busy()
            self._ctx = tok.lower()
            return True
        self._line_prot = indent >= 4 or tok[0] == ">"
        return False

    # -- chunks with anything but letters and plain punctuation ----------------------------

    def _special(self, tok: str, at_line_start: bool) -> None:
        if "://" in tok or "@" in tok or "www." in tok:
            tok = _URLISH(_blank, tok)
        for match in _SPECIALS(tok):
            s = match.group()
            c = s[0]
            i, j = match.span()
            prev = tok[i - 1] if i else ""
            nxt = tok[j] if j < len(tok) else ""
            if self._inline:
                if c == "`" and len(s) == self._inline:
                    self._inline = 0
            elif self._markup:
                if c == ">":
                    self._end_markup(prev)
            elif self._math:
                if c == "$" and (len(s) >= 2) == (self._math == 2):
                    self._math = 0
            elif self._quote_d:
                if c == '"':
                    self._quote_d = False
            elif self._quote_c:
                if c == "\u201d":
                    self._quote_c = False
            elif self._quote_s:
                if c in "'\u2019" and prev and not nxt.isalpha():
                    self._quote_s = False
            elif c == "`":
                self._inline = len(s)
            elif c == "$":
                if len(s) >= 2:
                    self._math = 2
                elif nxt and not nxt.isdigit():
                    self._math = 1
            elif c == '"':
                self._quote_d = True
            elif c == "\u201c":
                self._quote_c = True
            elif c in "'\u2018":
                if (not prev or prev in _QUOTE_OPENERS) and nxt.isalpha():
                    self._quote_s = True
            elif c in "{[":
                self._brace += 1
            elif c in "}]":
                if self._brace:
                    self._brace -= 1
            elif c == "<" and not prev.isalnum():
                tag = _TAG(tok, j)
                if tag is not None:
                    self._markup = True
                    self._markup_close = bool(tag.group(1))
                    self._markup_name = name = (tag.group(2) or "").lower()
                    self._markup_block = name in _HTML or (at_line_start and i == 0)
                    self._markup_q = ""
            # ">", "\u201d", "\u2019" outside their spans are arrows, stray marks, apostrophes
        self._update_busy()

    def _attribute(self, tok: str) -> None:
        """A chunk inside a line-opening tag: anything but `name=value` (or the tag's
        end) means this is no element whose content must be protected."""
        rest = tok
        if self._markup_q:
            end = rest.find(self._markup_q)
            if end < 0:
                return  # inside a quoted value
            rest = rest[end + 1:]
            self._markup_q = ""
        if not rest or rest[0] in ">/":
            return
        match = _ATTR(rest)
        if match is None:
            self._markup_block = False
            return
        value = rest[match.end():]
        if value[:1] in ("\"", "'") and value.find(value[0], 1) < 0:
            self._markup_q = value[0]

    def _end_markup(self, prev: str) -> None:
        self._markup = False
        name = self._markup_name
        if not name:
            return  # <!-- comment --> or <!doctype>
        if self._markup_close:
            if name == self._tag:
                self._tag_depth -= 1
                if not self._tag_depth:
                    self._tag = None
        elif prev != "/" and name not in _VOID and self._markup_block:
            if self._tag is None:
                self._tag, self._tag_depth = name, 1
            elif name == self._tag:
                self._tag_depth += 1

    def _update_busy(self) -> None:
        self._busy = bool(
            self._inline or self._quote_d or self._quote_c or self._quote_s or self._brace
            or self._math or self._markup or self._tag is not None)

    # -- streaming look-ahead -------------------------------------------------------------

    def settled(self, partial: str) -> bool:
        """True if a chunk starting with `partial` will be written unchanged, however
        it goes on (so a stream can send it before the chunk is complete)."""
        if self._held or self._look is not None:
            return False
        if self._ctx is None or self._fence is not None:
            return True
        if not self._nl and (self._busy or self._line_prot):
            return True
        if partial.isalpha():  # the usual case: the start of a word
            return partial.lower() not in self._table.prefixes
        match = _PARTIAL(partial)
        if match is None:
            return True
        core = match.group(1)
        if core is None:
            return False
        key = core.lower().replace("\u2019", "'")
        if match.group(2):  # the word is complete
            return key not in self._table.by_word and key not in self._table.pair_firsts
        return key not in self._table.prefixes
