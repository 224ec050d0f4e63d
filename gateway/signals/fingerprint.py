"""Prompt fingerprints: exact hash, SimHash, template skeleton, topic buckets.

`fingerprint(prompt_text(body, dialect))` runs on the hot path, so everything
here is stdlib, deterministic across processes and machines
(no `hash()`, which is salted per process for str and bytes), and bounded in
cost by `max_chars`. Stored signatures depend on the constants in this module:
changing a multiplier, a mask rule or a stopword changes them.

Signals
-------
exact
    blake2b (64 bits, 16 hex) of the full prompt lower-cased, with ASCII
    whitespace removed rather than collapsed: equal prompts "modulo whitespace
    and case" get equal hashes, and removing costs one C pass where collapsing
    costs a split into words. For a sampled prompt (below) the hash covers the
    normalised sample plus a CRC-32 and the length of the whole lower-cased
    prompt: two long prompts that differ anywhere still differ, but whitespace
    is only ignored inside the sample.
simhash, bands
    64-bit SimHash over word 3-shingles of the (sampled) full prompt. Words are
    maximal runs of ASCII letters and digits or of non-ASCII characters, after
    lower-casing; common Unicode punctuation, symbols and emoji separate words
    and each CJK character is a word of its own. The feature of the shingle
    (w1, w2, w3) is `crc32(w1)*A1 ^ crc32(w2)*A2 ^ crc32(w3)*A3` with three
    fixed odd 32-bit multipliers (each product fits in 64 bits). All CRCs go
    into one big integer, a 64-bit lane per word, so each product is one
    multiplication for the whole prompt and the per-bit majority is counted by
    SWAR folds of that integer (`_majority`): the Python work per word is three
    C-level passes (split, crc32, array). `bands` cut the SimHash into four
    16-bit bands `"b<i>:<4 hex>"`; prompts within Hamming distance 3 share at
    least one band, which is what LSH bucketing needs.
template, skeleton
    The skeleton is the template source - tool names, system text and the last
    user turn, not earlier turns (a chat user's changing questions give
    changing skeletons, a harvester's fixed scaffold gives one) - with its slot
    values masked, in this order:

    1. fenced code blocks (``` or ~~~; an unterminated one runs to the end) -> <code>
    2. XML-style tag blocks `<doc ...>...</doc>`, outermost -> `<doc> <q> </doc>`
    3. inline code `...` -> <code>
    4. URLs (http://, https://, www.) and e-mail addresses -> <url>
    5. quoted strings: straight and curly double quotes, guillemets, curly
       single quotes, and straight single quotes that are not apostrophes -> <q>
    6. long tokens: 20+ characters of [A-Za-z0-9+/=_-] (hashes, ids, base64) -> <id>
    7. numbers: integers, decimals, 1,000s, percentages, dates and times
       (2024-05-01, 05/01/24, 12:30), ordinals and unit suffixes (3rd, 10kg),
       not digits inside words (gpt4); a month name next to a number -> <n>
    8. two or more consecutive Capitalised words that do not start a sentence
       (names, places, titles); at a sentence start the first word stays and
       the rest must still be two or more -> <name>
    9. lower-case; a run of slots separated only by spaces or punctuation
       becomes one slot (its kind if all agree, else <v>).

    `template` is blake2b (16 hex) of the whole skeleton with whitespace
    removed; `skeleton` is its first ~300 characters, whitespace collapsed, for
    investigators. A template source longer than SKELETON_HEAD + SKELETON_TAIL
    characters is cut to its head and tail; a fence, tag block or quote that
    the cut leaves open is masked up to the cut, so a long document pasted
    into a fixed scaffold still maps to one template.
topics
    Content words of the last user turn (else the system text), with fenced
    code and `<tag>` blocks masked (`topic_text`: pasted documents are not
    the topic), first TOPIC_CHARS characters: 3+ characters, not all digits, not in a stopword
    list of function words and prompt boilerplate ("explain", "write", ...).
    Words are ranked by count (ties: first seen), crudely stemmed (plural -s,
    -ies -> -y, then the first 6 characters) and projected by CRC-32 into 256
    buckets; the first TOPIC_LIMIT distinct buckets are kept, sorted.
elicits_reasoning
    `ReasoningPatterns` (see `elicitation`) searched over the template source,
    cut to its head and tail like the skeleton's.

Long inputs
-----------
Only the SimHash and the exact hash read the full prompt; the skeleton,
elicitation and topic inputs are a few KB whatever the prompt size. When the
full prompt is longer than `max_chars`, the SimHash runs on a deterministic
sample: the first max_chars // 2 characters, the last max_chars // 4, and the
remaining quarter as evenly spaced 1 KB windows over the middle (default
8,192: 4 KB + 2 KB + two 1 KB windows; 16,384 cost a 100 KB prompt more than
the 1 ms budget), joined by newlines; `sampled` is
then True and the exact hash reads the whole prompt only for its CRC-32. The
SimHash also reads at most MAX_WORDS words (first two thirds and last third),
and non-ASCII samples at most MAX_WORD_BYTES bytes, so that CJK text (a word per
character) or emoji costs about what English does. bench/fingerprint.py prints
the cost per prompt size.
"""

from __future__ import annotations

import hashlib
import re
import sys
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from gateway.signals.elicitation import ReasoningPatterns
from gateway.signals.prompt_text import PromptParts

DEFAULT_MAX_CHARS = 8_192  # sampled beyond: a 100 KB prompt stays under 1 ms (bench/fingerprint.py)
SAMPLE_WINDOW = 1024
SKELETON_HEAD = 2048
SKELETON_TAIL = 1024
SKELETON_SHOWN = 300
TOPIC_CHARS = 1024
MAX_WORDS = 2048  # words the SimHash reads, at most
MAX_WORD_BYTES = 5 * MAX_WORDS  # UTF-8 bytes of non-ASCII text it splits into words
TOPIC_BUCKETS = 256
TOPIC_LIMIT = 8
BANDS = 4
_HEX_DIGEST = 8  # bytes: 16 hex characters

# --- data ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fingerprint:
    exact: str  # 16 hex
    simhash: int  # 64-bit
    bands: tuple[str, ...]  # ("b0:1a2b", ...): LSH buckets of the simhash
    template: str  # 16 hex: hash of the full skeleton
    skeleton: str  # first ~300 characters of the skeleton
    topics: tuple[int, ...]  # sorted distinct buckets in [0, 256)
    elicits_reasoning: bool
    chars: int  # length of the full prompt text
    sampled: bool  # the SimHash ran on a sample of the prompt


def fingerprint(
    parts: PromptParts,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    patterns: ReasoningPatterns | None = None,
) -> Fingerprint:
    """All fingerprints of one prompt. Never raises for any `PromptParts`."""
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    full = parts.full_text()
    sample = sample_text(full, max_chars)
    sampled = len(full) > max_chars
    data = _lower_bytes(sample)
    exact_input = data.translate(None, _WHITESPACE)
    if sampled:
        whole = _lower_bytes(full)
        exact_input += (
            b"\x00" + zlib.crc32(whole).to_bytes(4, "big") + len(whole).to_bytes(8, "big")
        )
    sim = simhash_words(_simhash_input(data))
    source = parts.template_text()
    raw_skeleton = _skeleton_raw(source)
    reasoning = (patterns or ReasoningPatterns.default()).matches(
        bounded(source, SKELETON_HEAD, SKELETON_TAIL)
    )
    return Fingerprint(
        exact=_hex(exact_input),
        simhash=sim,
        bands=simhash_bands(sim),
        template=_hex(_lower_bytes(raw_skeleton).translate(None, _WHITESPACE)),
        skeleton=" ".join(raw_skeleton[: 2 * SKELETON_SHOWN].split())[:SKELETON_SHOWN],
        topics=topics(topic_text(parts.last_user or parts.system or full)),
        elicits_reasoning=reasoning,
        chars=len(full),
        sampled=sampled,
    )


def hamming(a: int, b: int) -> int:
    """Bits that differ between two SimHashes."""
    return (a ^ b).bit_count()


def simhash_bands(value: int) -> tuple[str, ...]:
    width = 64 // BANDS
    mask = (1 << width) - 1
    return tuple(f"b{i}:{(value >> (i * width)) & mask:04x}" for i in range(BANDS))


def _hex(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=_HEX_DIGEST).hexdigest()


_WHITESPACE = b" \t\n\r\x0b\x0c"


def _lower_bytes(text: str) -> bytes:
    return text.lower().encode("utf-8", "surrogatepass")


# --- sampling ------------------------------------------------------------------


def sample_text(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """`text` itself if short enough, else its head, tail and evenly spaced middle windows."""
    size = len(text)
    if size <= max_chars:
        return text
    head = max_chars // 2
    tail = max_chars // 4
    budget = max_chars - head - tail
    window = min(SAMPLE_WINDOW, budget)
    count = budget // window
    middle = size - head - tail  # > budget, since size > max_chars
    pieces = [text[:head]]
    for i in range(1, count + 1):
        start = head + (middle - window) * i // (count + 1)
        pieces.append(text[start : start + window])
    pieces.append(text[size - tail :])
    return "\n".join(pieces)


def bounded(text: str, head: int, tail: int) -> str:
    """`text` cut to its first `head` and last `tail` characters if longer."""
    if len(text) <= head + tail:
        return text
    return text[:head] + "\n" + text[len(text) - tail :]


# --- words -----------------------------------------------------------------------

_WORD_BYTES = bytes(
    v if (48 <= v <= 57 or 65 <= v <= 90 or 97 <= v <= 122 or v >= 128) else 32 for v in range(256)
)
# UTF-8 of Latin-1 punctuation, General Punctuation, arrows, maths and technical
# symbols, box drawing, dingbats, CJK punctuation, full-width punctuation,
# variation selectors and emoji: word separators.
_UNICODE_SEPARATOR = re.compile(
    rb"\xc2[\xa0-\xbf]|\xc3[\x97\xb7]|\xe2[\x80-\x83\x86-\x8f\x94-\x9f\xb8\xb9][\x80-\xbf]"
    rb"|\xe3\x80[\x80-\xbf]|\xef\xbc[\x80-\x8f\x9a-\xa0\xbb-\xbf]|\xef\xbd[\x80\x9b-\xa5]"
    rb"|\xef\xb8[\x80-\x8f]|\xf0\x9f[\x80-\xbf][\x80-\xbf]"
)
# After the separators are gone, a UTF-8 character with lead byte E3-ED is kana,
# a CJK ideograph or Hangul: one word per character. Anything else is a run.
_CJK_LEAD = re.compile(rb"[\xe3-\xed]")
_CJK_WORD = re.compile(rb"[\xe3-\xed][\x80-\xbf]{2}|[^ \xe3-\xed]+")


def words(text: str) -> list[bytes]:
    """Lowercased UTF-8 words of `text` (see the module docstring)."""
    return _split_words(_lower_bytes(text))


def _split_words(data: bytes) -> list[bytes]:
    if data.isascii():
        return data.translate(_WORD_BYTES).split()
    data = _UNICODE_SEPARATOR.sub(b" ", data).translate(_WORD_BYTES)
    if _CJK_LEAD.search(data):
        return _CJK_WORD.findall(data)
    return data.split()


# --- simhash -----------------------------------------------------------------------

# Odd 32-bit multipliers near 2**32, one per shingle position (fixed forever:
# stored signatures depend on them). Near 2**32 so that the top bits of a
# 32x32-bit product are close to balanced.
_MULTIPLIERS = (0xD4B9AD0F, 0xFCA9D379, 0xC9A7834D)
_SHINGLE = len(_MULTIPLIERS)
_BITS = 64


def simhash(text: str) -> int:
    """64-bit SimHash of the word 3-shingles of `text` (0 for text without words)."""
    return simhash_words(words(text))


def _simhash_input(data: bytes) -> list[bytes]:
    """The words the SimHash reads: at most MAX_WORDS, from at most MAX_WORD_BYTES.

    English samples are under both caps (8 KB is about 1,350 words). Text with a
    word per character (CJK) or many multi-byte separators (emoji) would cost
    several times more per KB, so its bytes and then its words are cut to the
    first two thirds and the last third of the cap.
    """
    if len(data) > MAX_WORD_BYTES and not data.isascii():
        head = MAX_WORD_BYTES * 2 // 3
        data = data[:head] + b" " + data[len(data) - (MAX_WORD_BYTES - head) :]
    tokens = _split_words(data)
    if len(tokens) > MAX_WORDS:
        head = MAX_WORDS * 2 // 3
        tokens = tokens[:head] + tokens[len(tokens) - (MAX_WORDS - head) :]
    return tokens


def simhash_words(tokens: Sequence[bytes]) -> int:
    """SimHash of word shingles; the feature of shingle i is XOR_j crc32(w[i+j]) * A[j].

    The CRCs are packed into one integer with a 64-bit lane per word; each
    product `crc * A[j]` is below 2**64, so one big-integer multiplication
    computes it for every lane without carries between lanes, and shifting by
    whole lanes lines up the next words of each shingle.
    """
    n = len(tokens)
    if n == 0:
        return 0
    k = min(_SHINGLE, n)
    rows = n - k + 1
    crcs = array("Q", list(map(zlib.crc32, tokens)))
    if sys.byteorder == "big":
        crcs.byteswap()
    v = int.from_bytes(crcs, "little")
    features = v * _MULTIPLIERS[0]
    for j in range(1, k):
        features ^= (v * _MULTIPLIERS[j]) >> (_BITS * j)
    features &= (1 << (_BITS * rows)) - 1  # drop the lanes past the last full shingle
    return _majority(features, rows)


def _majority(x: int, rows: int) -> int:
    """Bit j of the result is set iff more than half of the 64-bit rows of `x` have bit j.

    SWAR counting on the whole integer: lanes start one bit wide; before a fold
    could overflow them they are widened (split into two integers holding the
    even and the odd lanes at twice the width); a fold adds the top half of the
    rows onto the bottom half. After log2(rows) folds one row of counters is left.
    """
    streams = [x]
    columns = [tuple(range(_BITS))]
    width, cap, span = 1, 1, rows  # cap: the largest count a lane can hold so far
    while span > 1:
        if min(2 * cap, rows) > (1 << width) - 1:
            streams, columns = _widen(streams, columns, width, span)
            width *= 2
        half = (span + 1) // 2
        shift = half * _BITS
        low = (1 << shift) - 1
        streams = [(s & low) + (s >> shift) for s in streams]
        span, cap = half, min(2 * cap, rows)
    # one 64-bit row of counters per stream: read them all as one array
    while width < 8:
        streams, columns = _widen(streams, columns, width, 1)
        width *= 2
    counters = array(_ARRAY_CODE[width])
    counters.frombytes(b"".join(s.to_bytes(_BITS // 8, "little") for s in streams))
    if sys.byteorder == "big":
        counters.byteswap()
    half_rows = rows // 2
    return sum(
        bit
        for bit, count in zip(_column_bits(tuple(columns)), counters, strict=True)
        if count > half_rows
    )


@lru_cache(maxsize=16)
def _column_bits(columns: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
    return tuple(1 << column for cols in columns for column in cols)


def _widen(
    streams: list[int], columns: list[tuple[int, ...]], width: int, rows: int
) -> tuple[list[int], list[tuple[int, ...]]]:
    """Each stream split into its even and its odd `width`-bit lanes, at twice the width."""
    mask = _lane_mask(width, _pow2(rows))
    widened: list[int] = []
    wide_columns: list[tuple[int, ...]] = []
    for s, cols in zip(streams, columns, strict=True):
        widened.append(s & mask)
        widened.append((s >> width) & mask)
        wide_columns.append(cols[0::2])
        wide_columns.append(cols[1::2])
    return widened, wide_columns


# array typecode per counter width in bits (itemsizes are platform-defined)
_ARRAY_CODE = {array(code).itemsize * 8: code for code in "QLIHB"}


def _pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


@lru_cache(maxsize=64)
def _lane_mask(width: int, rows: int) -> int:
    """The even `width`-bit lanes of each 64-bit row, for `rows` rows."""
    row = 0
    for start in range(0, _BITS, 2 * width):
        row |= ((1 << width) - 1) << start
    return int.from_bytes(row.to_bytes(_BITS // 8, "little") * rows, "little")


# --- skeleton ---------------------------------------------------------------------
#
# Every pass is a regex with a literal first character (sre then scans for that
# character at C speed) or is skipped by a substring test; the character-class
# passes (long tokens, numbers, names) run on a "shape" of the text, one byte
# per character, where the classes have become literals ("A" capital, "a"
# lower-case, "0" digit; "t" any id character).

_FENCE = re.compile(r"(```|~~~).*?(?:\1|\Z)", re.DOTALL)
_TAG = re.compile(r"<(/?)([A-Za-z][\w:.-]{0,40})(?:\s[^<>]{0,300})?(/?)>")
_TAG_DEPTH = 16  # how far up the stack a closing tag looks for its opening
_INLINE_CODE = re.compile(r"`[^`\n]{1,500}`")
_URL_TAIL = r"[^\s<>\"'`]*[^\s<>\"'`.,;:!?)\]}]"  # not ending in punctuation
_URLS = (re.compile(rf"https?://{_URL_TAIL}"), re.compile(rf"www\.{_URL_TAIL}"))
_EMAIL_DOMAIN = re.compile(r"@[\w-]{1,63}(?:\.[\w-]{1,63})+")
_QUOTES = (
    ('"', re.compile(r'"[^"]{0,20000}"')),
    ("“", re.compile(r"“[^”]{0,20000}”")),
    ("«", re.compile(r"«[^»]{0,20000}»")),
    ("\u2018", re.compile("\u2018[^\u2019\n]{0,500}\u2019")),  # curly single quotes
    ("'", re.compile(r"'(?<![\w']')(?=\S)[^'\n]{1,500}(?<=\S)'(?!\w)")),
)


def _shape_byte(v: int) -> int:
    """Latin-1 byte -> "A" capital letter, "a" other letter, "0" digit, else itself."""
    if 65 <= v <= 90 or (0xC0 <= v <= 0xDE and v != 0xD7):
        return 65
    if 97 <= v <= 122 or (v >= 0xDF and v != 0xF7):
        return 97
    if 48 <= v <= 57:
        return 48
    return v


_SHAPE = bytes(_shape_byte(v) for v in range(256))
_ID_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-")
_ID_SHAPE = bytes(116 if v in _ID_CHARS else 32 for v in range(256))  # "t" or " "
_LONG_ID_MIN = b"t" * 20
_LONG_ID = re.compile(rb"t{20,}")
_NUMBER = re.compile(rb"0(?<![aA0_]0)(?:[0,._:/-]*0)?(?:%|a{1,3}(?![aA0_]))?")
_NAME = re.compile(rb"A[aA'-]+(?:[ \t]+A[aA'-]+)+")
_SENTENCE_START = frozenset('.!?:;\n\r"“(*-•#')
_MONTHS = frozenset(
    {
        *("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "sept", "oct", "nov"),
        *("dec", "january", "february", "march", "april", "june", "july", "august"),
        *("september", "october", "november", "december"),
    }
)
_WORD_BEFORE = re.compile(r"([A-Za-z]+)\.?[ \t,]*\Z")
_WORD_AFTER = re.compile(r"[ \t,]+([A-Za-z]+)\b\.?")
_SLOT = r"<(?:n|q|code|url|id|name|v)>"
_SLOT_RUN = re.compile(rf"{_SLOT}(?:[\s,;:/&+\-\u2013\u2014()\[\]'\".]*{_SLOT})+")
_SLOT_KIND = re.compile(_SLOT)
_DIGITS = "0123456789"


def skeleton(text: str) -> str:
    """The template skeleton of `text` (the full one; see the module docstring)."""
    return " ".join(_skeleton_raw(text).split())


def _skeleton_raw(text: str) -> str:
    """The skeleton before whitespace is collapsed (the template hash ignores whitespace)."""
    if len(text) > SKELETON_HEAD + SKELETON_TAIL:
        head = _close_cut_end(_FENCE.sub(" <code> ", text[:SKELETON_HEAD]))
        tail = _close_cut_start(text[len(text) - SKELETON_TAIL :])
        text = head + "\n<cut>\n" + tail
    s = text
    if "```" in s or "~~~" in s:
        s = _FENCE.sub(" <code> ", s)
    if "</" in s:
        s = _mask_tag_blocks(s)
    if "`" in s:
        s = _INLINE_CODE.sub(" <code> ", s)
    for url in _URLS:
        s = url.sub(" <url> ", s)
    if "@" in s:
        s = _mask_emails(s)
    for quote, pattern in _QUOTES:
        if quote in s:
            s = pattern.sub(" <q> ", s)
    ids = s.encode("latin-1", "replace").translate(_ID_SHAPE)
    if _LONG_ID_MIN in ids:
        s = _replace(s, ((m.start(), m.end(), " <id> ") for m in _LONG_ID.finditer(ids)))
    if any(digit in s for digit in _DIGITS):
        s = _mask_numbers(s)
    s = _mask_names(s)
    return _SLOT_RUN.sub(_slot_run, s.lower())


def _shape(text: str) -> bytes:
    return text.encode("latin-1", "replace").translate(_SHAPE)


def _replace(text: str, spans: Iterable[tuple[int, int, str]]) -> str:
    """`text` with each (start, end) span, in order and not overlapping, replaced."""
    pieces: list[str] = []
    last = 0
    for start, end, replacement in spans:
        pieces.append(text[last:start])
        pieces.append(replacement)
        last = end
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


def _mask_emails(text: str) -> str:
    spans: list[tuple[int, int, str]] = []
    last = 0
    for match in _EMAIL_DOMAIN.finditer(text):
        at = start = match.start()
        while start > last and at - start < 64 and _email_char(text[start - 1]):
            start -= 1
        if start < at:
            spans.append((start, match.end(), " <url> "))
            last = match.end()
    return _replace(text, spans)


def _email_char(char: str) -> bool:
    return char.isalnum() or char in "._+-"


def _mask_numbers(text: str) -> str:
    """Numbers, and a month name right before or after one, -> <n>."""
    spans: list[tuple[int, int, str]] = []
    last = 0
    for match in _NUMBER.finditer(_shape(text)):
        start, end = match.start(), match.end()
        before = _WORD_BEFORE.search(text, max(last, start - 16), start)
        if before is not None and before[1].lower() in _MONTHS:
            start = before.start()
        after = _WORD_AFTER.match(text, end)
        if after is not None and after[1].lower() in _MONTHS:
            end = after.end()
        spans.append((start, end, " <n> "))
        last = end
    return _replace(text, spans)


def _mask_names(text: str) -> str:
    """Two or more Capitalised words that do not start a sentence -> <name>."""
    spans: list[tuple[int, int, str]] = []
    for match in _NAME.finditer(_shape(text)):
        start, end = match.start(), match.end()
        i = start - 1
        while i >= 0 and text[i] in " \t":
            i -= 1
        if i < 0 or text[i] in _SENTENCE_START:
            words_ = text[start:end].split()
            if len(words_) < 3:
                continue
            start += len(words_[0])  # the sentence's first word stays
        spans.append((start, end, " <name> "))
    return _replace(text, spans)


def _slot_run(match: re.Match[str]) -> str:
    kinds = set(_SLOT_KIND.findall(match[0]))
    return f" {kinds.pop()} " if len(kinds) == 1 else " <v> "


def _tag_blocks(text: str) -> tuple[list[tuple[int, int, str]], list[tuple[str, int]]]:
    """Closed tag blocks as (start, end, name), outermost only, and the tags left open.

    One linear pass over the tags with a stack (a regex with a backreference would
    rescan the rest of the text for every unclosed tag).
    """
    blocks: list[tuple[int, int, str]] = []
    stack: list[tuple[str, int, int]] = []  # name, start of the open tag, its end
    for tag in _TAG.finditer(text):
        if tag[3]:
            continue  # self-closing
        name = tag[2].lower()
        if not tag[1]:
            stack.append((name, tag.start(), tag.end()))
            continue
        for depth in range(len(stack) - 1, max(-1, len(stack) - 1 - _TAG_DEPTH), -1):
            if stack[depth][0] == name:
                start = stack[depth][1]
                del stack[depth:]
                while blocks and blocks[-1][0] > start:
                    blocks.pop()  # nested inside this one
                blocks.append((start, tag.end(), name))
                break
    return blocks, [(name, end) for name, _, end in stack]


def _mask_tag_blocks(text: str) -> str:
    blocks, _ = _tag_blocks(text)
    if not blocks:
        return text
    pieces: list[str] = []
    last = 0
    for start, end, name in blocks:
        pieces.append(text[last:start])
        pieces.append(f" <{name}> <q> </{name}> ")
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def _close_cut_end(segment: str) -> str:
    """A segment whose end was cut: a tag or quote still open runs to the cut."""
    _, still_open = _tag_blocks(segment)
    if still_open:
        segment = segment[: still_open[0][1]] + " <q> "
    for opening, closing in (('"', '"'), ("“", "”"), ("«", "»")):
        opened = segment.count(opening)
        if (opened % 2 == 1) if opening == closing else opened > segment.count(closing):
            segment = segment[: segment.rfind(opening)] + " <q> "
    return segment


def _close_cut_start(segment: str) -> str:
    """A segment whose start was cut: a fence, tag or quote closed without opening."""
    if (segment.count("```") + segment.count("~~~")) % 2 == 1:
        ends = [i for i in (segment.find("```"), segment.find("~~~")) if i >= 0]
        segment = " <code> " + segment[min(ends) + 3 :]
    opened: set[str] = set()
    last_orphan = -1
    for tag in _TAG.finditer(segment):
        name = tag[2].lower()
        if tag[3]:
            continue
        if not tag[1]:
            opened.add(name)
        elif name not in opened:
            last_orphan = tag.start()
    if last_orphan >= 0:
        segment = " <q> " + segment[last_orphan:]
    for opening, closing in (('"', '"'), ("“", "”"), ("«", "»")):
        closed = segment.count(closing)
        if (closed % 2 == 1) if opening == closing else closed > segment.count(opening):
            segment = " <q> " + segment[segment.find(closing) + 1 :]
    return segment


# --- topics -------------------------------------------------------------------------

_STOPWORDS = frozenset(
    b"""
a about above after again against all also am an and any are aren as at be because been before
being below between both but by can cannot could couldn did didn do does doesn doing don down
during each even ever every few for from further get gets getting give given go going got had
hadn has hasn have haven having he her here hers herself him himself his how however i if in
into is isn it its itself just least less let like ll made make makes many may me might more
most much must my myself need needs no nor not now of off often on once one only or other ought
our ours ourselves out over own per please quite rather re really same say says shall shan she
should shouldn since so some something still such sure than that the their theirs them
themselves then there these they thing things this those though through thus to too two under
until up upon us use used using ve very via want wants was wasn way we well were weren what
when where whether which while who whom whose why will with within without won would wouldn yes
yet you your yours yourself yourselves
answer answers ask asked best briefly clear concise describe detail detailed details example
examples explain following help hello hi know let list provide question questions short simple
tell thanks thank think write words
""".split()
)


def topic_text(text: str) -> str:
    """What the user wrote about, without what they pasted: fenced code and
    `<tag>` blocks are masked, so a fixed scaffold around retrieved documents
    does not look broad (its documents vary, its questions are the topic)."""
    text = text[: 4 * TOPIC_CHARS]
    if "```" in text or "~~~" in text:
        text = _FENCE.sub(" ", text)
    if "</" in text:
        text = _mask_tag_blocks(text)
    return text


def topics(text: str, limit: int = TOPIC_LIMIT) -> tuple[int, ...]:
    """Sorted topic buckets in [0, 256) of the content words of `text`."""
    counts = Counter(words(text[:TOPIC_CHARS]))
    chosen: set[int] = set()
    # most frequent first; sorted() is stable, so ties stay in first-seen order
    for word in sorted(counts, key=counts.__getitem__, reverse=True):
        if len(word) < 3 or word in _STOPWORDS or word.isdigit():
            continue
        chosen.add(zlib.crc32(_stem(word)) % TOPIC_BUCKETS)
        if len(chosen) >= limit:
            break
    return tuple(sorted(chosen))


def _stem(word: bytes) -> bytes:
    if len(word) > 4 and word.endswith(b"ies"):
        word = word[:-3] + b"y"
    elif len(word) > 3 and word.endswith(b"s") and not word.endswith((b"ss", b"us", b"is")):
        word = word[:-1]
    return word[:6]
