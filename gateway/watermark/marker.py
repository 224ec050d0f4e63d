"""Writing the watermark: whole texts and streamed text blocks.

`Watermarker(secret, identity)` is cheap to build (keys are cached); it holds no
per-text state. `mark(text)` marks a whole assistant text; `stream()` returns a
`StreamMarker` for one streamed text block, for which

    "".join(m.feed(d) for d in deltas) + m.flush() == mark("".join(deltas))

for every way of splitting the text into deltas.

Streaming buffer: a chunk (a run of non-whitespace) is only marked once it is
complete, so `feed()` holds back the trailing partial chunk, but only while it
could still become a table word: a partial chunk that can no longer change
("Hello", "{\"a\":", anything inside code or quotes, and always the first chunk
of the block) is sent at once, so the first token is never delayed. The other
holds are one complete word at a time: a word that may start a pair ("do" of
"do not", "it" of "it is"), kept until the next word shows whether the pair is
there; and the word of a look-ahead position ("it's", or "is" of "it is" once
"it" has gone out), kept until the next word shows whether it may stand there
("it's a" yes, "it's been" no). So a delta is held back only when it ends inside
a word like "of" (a prefix of "often") or is such a word, and it goes out with
the next delta (or at `flush()`).
"""

from __future__ import annotations

import re

from gateway.watermark import keys
from gateway.watermark.scan import Scanner
from gateway.watermark.table import Table, VariantSet, default_table

_LAST_SPACE = re.compile(r"\s\S*\Z").search  # the last whitespace character


class Watermarker:
    """Marks assistant text for one (deployment secret, caller identity)."""

    __slots__ = ("_deploy_key", "_ident_key", "_table")

    def __init__(self, secret: bytes, identity: str, table: Table | None = None) -> None:
        self._deploy_key = keys.deployment_key(secret)
        self._ident_key = keys.identity_key(secret, identity)
        self._table = table if table is not None else default_table()

    def _choose(self, context: str, vset: VariantSet, observed: int) -> int:
        msg = keys.message(context, vset.id)
        green = keys.deployment_role(self._deploy_key, msg, vset.size)
        if green is None:
            green = keys.identity_green(self._ident_key, msg, vset.size)
        return green

    def mark(self, text: str) -> str:
        """The whole (non-streamed) assistant text, marked."""
        scanner = Scanner(self._table, self._choose)
        return scanner.process(text) + scanner.finish()

    def stream(self) -> StreamMarker:
        """A marker for one streamed text block."""
        return StreamMarker(Scanner(self._table, self._choose))


class StreamMarker:
    """Marks one streamed text block delta by delta (see the module docstring)."""

    __slots__ = ("_emitted", "_pending", "_scanner")

    def __init__(self, scanner: Scanner) -> None:
        self._scanner = scanner
        self._pending = ""  # the trailing, still incomplete chunk
        self._emitted = 0  # how much of it was already sent (it is then unchanged)

    def feed(self, delta: str) -> str:
        """Take the next delta; return the text that can be sent now."""
        last = _LAST_SPACE(delta)
        if last is None:
            self._pending += delta
            return self._early()
        i = last.start() + 1
        pending, skip = self._pending, self._emitted
        self._pending = delta[i:]
        self._emitted = 0
        if i == 1:  # the usual " word" delta: one chunk completed, one space
            scanner = self._scanner
            out = scanner.chunk(pending) if pending else ""
            out += scanner.space(delta[0])
        else:
            out = self._scanner.process(pending + delta[:i])
        if skip:
            out = out[skip:]
        return out + self._early() if self._pending else out

    def flush(self) -> str:
        """End of the block: everything held back."""
        pending, skip = self._pending, self._emitted
        self._pending, self._emitted = "", 0
        out = self._scanner.process(pending)[skip:] if pending else ""
        return out + self._scanner.finish()

    def _early(self) -> str:
        pending = self._pending
        if self._emitted == len(pending) or not self._scanner.settled(pending):
            return ""
        out = pending[self._emitted:]
        self._emitted = len(pending)
        return out
