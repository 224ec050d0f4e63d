"""Deterministic English prose: the demo model's answers.

Sentences come from templates over a few hundred common English words, so the
text reads like ordinary prose with plenty of synonym-rich words ("important",
"large", "quickly", "shows") for the watermark and diversity policies to act
on. A hash of the prompt seeds the generator: same prompt, same answer.

Tokens: one token is one whitespace-delimited word *with* its leading
whitespace, so `"".join(tokens(text)) == text` and streaming a token list
reproduces the text exactly.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TypeVar

_TOKEN_RE = re.compile(r"\s*\S+")
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z-]*")  # no apostrophes: "what's" is not a topic
_T = TypeVar("_T")


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


NOUNS = _words(
    """
approach method system process result team model problem question idea project change
detail pattern decision outcome study experiment design structure network community market
policy language theory practice rule task goal effort cost benefit risk value quality feature
tool resource strategy plan step stage example case source record report review analysis
measure signal trend factor condition effect reason purpose context situation environment
audience reader customer engineer researcher student teacher writer city region company
organization group family person field area topic issue challenge opportunity solution answer
argument claim view perspective picture story account version draft framework foundation
principle concept element component piece layer level scale range limit balance priority habit
skill moment period decade budget schedule deadline estimate guideline standard benchmark metric
sample survey interview summary outline chapter lesson routine workflow pipeline service
platform product partner leader manager expert observer neighbor library museum school
hospital garden river bridge road journey season morning weekend window door table
"""
)

ADJECTIVES = _words(
    """
important large small simple complex clear strong weak recent early common rare useful
practical general specific particular significant major minor central basic broad narrow deep
quick slow steady stable reliable modern traditional obvious subtle direct careful difficult
easy hard big great good new old different similar natural regular unusual familiar real main
key critical essential valuable honest fair open public local global human social economic
technical physical creative precise accurate rough detailed brief long short wide high low
fresh bright quiet busy likely possible serious complete visible gradual sudden typical
effective efficient flexible consistent robust positive negative surprising interesting helpful
modest ambitious realistic thoughtful vital famous ordinary remarkable
"""
)

ADVERBS = _words(
    """
quickly slowly carefully clearly often usually rarely simply really actually generally largely
mostly nearly directly easily steadily gradually naturally certainly probably especially
particularly typically frequently eventually immediately quietly openly closely widely deeply
strongly briefly consistently reliably precisely roughly sometimes already still rapidly
smoothly seldom honestly
"""
)

DEGREES = _words(
    "very quite rather fairly surprisingly remarkably especially particularly genuinely "
    "reasonably truly often usually"
)

VERBS = _words(
    """
show suggest explain describe reveal support require include improve reduce increase create
build change help allow provide produce affect shape guide follow drive limit connect combine
compare measure test check review examine consider offer raise solve handle manage protect
share capture define extend reflect clarify simplify strengthen highlight address explore
encourage prevent replace organize track predict influence challenge demonstrate confirm
outline emphasize determine identify estimate prepare maintain reach find make take give keep
bring see use need cover mark set lead hold meet carry choose understand teach deliver adjust
expand
"""
)

_IRREGULAR_PAST = {
    "build": "built", "drive": "drove", "find": "found", "make": "made", "take": "took",
    "give": "gave", "keep": "kept", "bring": "brought", "see": "saw", "set": "set",
    "lead": "led", "hold": "held", "meet": "met", "choose": "chose",
    "understand": "understood", "teach": "taught",
}  # fmt: skip
_IRREGULAR_PLURAL = {"person": "people", "analysis": "analyses"}

CONNECTORS = (
    "However", "In addition", "For example", "As a result", "In practice", "At the same time",
    "On the other hand", "For this reason", "In other words", "Of course", "Still", "Meanwhile",
    "Moreover", "Similarly", "In many cases", "Over time", "Even so", "In short", "Above all",
    "Instead", "Overall", "Importantly", "Interestingly", "In fact", "By contrast", "Later",
    "Today", "Besides", "Likewise", "Nevertheless",
)  # fmt: skip

PHRASES = (
    "over time", "in practice", "in the long run", "at the same time", "for most people",
    "in most cases", "on a large scale", "from the start", "in real projects", "at every stage",
    "without much effort", "in a short time", "across the whole team", "under real conditions",
    "for a good reason", "with little risk", "in the first place", "by the end of the day",
    "during the early stage", "after a careful review", "in everyday work", "around the world",
)  # fmt: skip

PREPOSITIONS = _words(
    "in with for across through within during after before around beyond without under "
    "behind among toward"
)

_MODALS = ("can", "could", "should", "will", "may", "might", "must", "would")
_SING_DETS = ("the", "the", "the", "a", "this", "each", "every", "one", "that", "our", "their")
_PLURAL_DETS = ("many", "most", "some", "several", "these", "the", "our", "their", "such", "few")
_PRONOUNS = (("we", True), ("people", True), ("it", False))
_EXPLAINS = ("shows", "explains", "suggests", "helps explain", "makes clear")

_STOPWORDS = frozenset(
    _words(
        """
what which would could should about there their please explain tell write describe give make
with from this that have does into your some more than then them they were been being also
just like very much many such only over even most other know want need when where while
who whom whose will shall might must can the and for are but not you all any how why its our
yes let using used use help short long answer question questions detail details words word
"""
    )
)

# A fixed ~100-word paragraph: the whole answer in fast (benchmark) mode.
FAST_TEXT = (
    "The short answer is that a careful approach usually works best. First, the team should "
    "review the main facts and check which details really matter. However, it is important "
    "to remember that large changes often take time, and a simple plan can quickly show "
    "whether the idea is sound. In practice, most people find that steady progress beats a "
    "sudden leap. The evidence also shows that clear goals help every group stay focused. "
    "Finally, a good result depends on honest feedback, regular testing and a willingness to "
    "adjust the plan when the situation changes over time."
)


def tokens(text: str) -> tuple[str, ...]:
    """Split text into word tokens that keep their leading whitespace."""
    return tuple(_TOKEN_RE.findall(text))


def count_words(text: str) -> int:
    """Token count of prompt text: its number of whitespace-delimited words."""
    return len(text.split())


def seed_of(text: str) -> int:
    """A stable 64-bit seed from text (Python's hash() is randomized per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def topic_of(text: str) -> str:
    """The longest content word of the prompt ("" if none), used to open the answer."""
    best = ""
    for i, word in enumerate(_WORD_RE.findall(text)):
        if len(word) > len(best) and len(word) >= 4 and word.lower() not in _STOPWORDS:
            # A capital is kept only mid-text, where it likely marks a name.
            best = word.lower() if i == 0 else word
    return best


def article(word: str) -> str:
    lower = word.lower()
    if lower.startswith(("uni", "use", "usu", "one", "eu")):
        return "a"
    if lower.startswith(("hour", "honest")) or lower[:1] in "aeiou":
        return "an"
    return "a"


def plural(noun: str) -> str:
    if noun in _IRREGULAR_PLURAL:
        return _IRREGULAR_PLURAL[noun]
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    if noun.endswith(("s", "sh", "ch", "x", "z")):
        return noun + "es"
    return noun + "s"


def third_person(verb: str) -> str:
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ies"
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    return verb + "s"


def past(verb: str) -> str:
    if verb in _IRREGULAR_PAST:
        return _IRREGULAR_PAST[verb]
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ied"
    return verb + "ed"


class _Pool:
    """Words drawn in a shuffled cycle, so one answer rarely repeats a word."""

    __slots__ = ("_i", "_words")

    def __init__(self, words: Sequence[str], rng: random.Random) -> None:
        self._words = list(words)
        rng.shuffle(self._words)
        self._i = 0

    def next(self) -> str:
        word = self._words[self._i % len(self._words)]
        self._i += 1
        return word


class _Writer:
    """Fills sentence templates; every method returns a lower-case fragment."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.nouns = _Pool(NOUNS, rng)
        self.adjs = _Pool(ADJECTIVES, rng)
        self.advs = _Pool(ADVERBS, rng)
        self.verbs = _Pool(VERBS, rng)
        self.connectors = _Pool(CONNECTORS, rng)
        self.phrases = _Pool(PHRASES, rng)

    def pick(self, options: Sequence[_T]) -> _T:
        return options[self.rng.randrange(len(options))]

    def noun_phrase(self, plural_ok: bool = True) -> tuple[str, bool]:
        """(phrase, is_plural) for a subject or object."""
        adj = self.adjs.next() + " " if self.rng.random() < 0.5 else ""
        if plural_ok and self.rng.random() < 0.35:
            return f"{self.pick(_PLURAL_DETS)} {adj}{plural(self.nouns.next())}", True
        det = self.pick(_SING_DETS)
        head = adj + self.nouns.next()
        if det == "a":
            det = article(head)
        return f"{det} {head}", False

    def subject(self) -> tuple[str, bool]:
        if self.rng.random() < 0.1:
            word, is_plural = _PRONOUNS[self.rng.randrange(len(_PRONOUNS))]
            return word, is_plural
        return self.noun_phrase()

    def obj(self) -> str:
        return self.noun_phrase()[0]

    def verb(self, is_plural: bool) -> str:
        base = self.verbs.next()
        return base if is_plural else third_person(base)

    def be(self, is_plural: bool) -> str:
        return "are" if is_plural else "is"

    def modal(self) -> str:
        return self.pick(_MODALS)

    def pp(self) -> str:
        if self.rng.random() < 0.5:
            return self.phrases.next()
        adj = self.adjs.next()
        return f"{self.pick(PREPOSITIONS)} the {adj} {self.nouns.next()}"

    # Templates: each returns one sentence without final punctuation.
    def s_plain(self) -> str:
        subj, pl = self.subject()
        return f"{subj} {self.verb(pl)} {self.obj()} {self.pp()}"

    def s_connector(self) -> str:
        subj, _ = self.subject()
        return (
            f"{self.connectors.next()}, {subj} {self.modal()} {self.advs.next()} "
            f"{self.verbs.next()} {self.obj()}"
        )

    def s_it_is(self) -> str:
        return (
            f"it is {self.pick(DEGREES)} {self.adjs.next()} to {self.verbs.next()} "
            f"{self.obj()} {self.pp()}"
        )

    def s_copula(self) -> str:
        subj, pl = self.subject()
        subj2, pl2 = self.subject()
        return (
            f"{subj} {self.be(pl)} {self.pick(DEGREES)} {self.adjs.next()}, and {subj2} "
            f"{self.verb(pl2)} {self.obj()}"
        )

    def s_when(self) -> str:
        subj, pl = self.subject()
        subj2, pl2 = self.subject()
        return (
            f"when {subj} {self.verb(pl)} {self.obj()}, {subj2} {self.advs.next()} "
            f"{self.verb(pl2)} {self.obj()}"
        )

    def s_this_shows(self) -> str:
        subj, _ = self.subject()
        return (
            f"this {self.pick(_EXPLAINS)} why {subj} {self.modal()} {self.verbs.next()} "
            f"{self.obj()} {self.advs.next()}"
        )

    def s_past(self) -> str:
        subj, _ = self.subject()
        return (
            f"{self.connectors.next()}, {subj} {past(self.verbs.next())} {self.obj()} {self.pp()}"
        )

    def s_most(self) -> str:
        subj, pl = self.subject()
        return (
            f"most {plural(self.nouns.next())} {self.verbs.next()} {self.obj()} "
            f"{self.advs.next()}, but {subj} {self.verb(pl)} {self.obj()}"
        )

    def s_whether(self) -> str:
        subj, _ = self.subject()
        return (
            f"the real question is whether {subj} {self.modal()} {self.verbs.next()} {self.obj()}"
        )

    def s_there_is(self) -> str:
        head = f"{self.adjs.next()} {self.nouns.next()}"
        return (
            f"there is {article(head)} {head} {self.pp()}, and it "
            f"{third_person(self.verbs.next())} {self.obj()}"
        )

    def s_because(self) -> str:
        subj, pl = self.subject()
        subj2, pl2 = self.subject()
        return (
            f"{subj} {self.verb(pl)} {self.obj()} because {subj2} {self.be(pl2)} {self.adjs.next()}"
        )

    def s_if(self) -> str:
        subj, pl = self.subject()
        subj2, _ = self.subject()
        return (
            f"if {subj} {self.verb(pl)} {self.obj()}, {subj2} {self.modal()} "
            f"{self.verbs.next()} {self.obj()} {self.advs.next()}"
        )

    def s_one_of(self) -> str:
        return (
            f"one of the most {self.adjs.next()} {plural(self.nouns.next())} is "
            f"{self.noun_phrase(plural_ok=False)[0]}"
        )

    def s_while(self) -> str:
        subj, pl = self.subject()
        subj2, pl2 = self.subject()
        return (
            f"while {subj} {self.be(pl)} {self.adjs.next()}, {subj2} {self.advs.next()} "
            f"{self.verb(pl2)} {self.obj()}"
        )

    def s_topic(self, topic: str) -> str:
        subj, pl = self.subject()
        return self.pick(
            (
                f"there are a few {self.adjs.next()} things to say about {topic}",
                f"when it comes to {topic}, {subj} {self.verb(pl)} {self.obj()}",
                f"the question of {topic} is {self.pick(DEGREES)} {self.adjs.next()}, "
                f"and it deserves a careful answer",
            )
        )


_TEMPLATES: tuple[Callable[[_Writer], str], ...] = (
    _Writer.s_plain, _Writer.s_connector, _Writer.s_it_is, _Writer.s_copula, _Writer.s_when,
    _Writer.s_this_shows, _Writer.s_past, _Writer.s_most, _Writer.s_whether,
    _Writer.s_there_is, _Writer.s_because, _Writer.s_if, _Writer.s_one_of, _Writer.s_while,
    _Writer.s_plain, _Writer.s_connector,
)  # fmt: skip


def _sentence(fragment: str) -> str:
    return fragment[0].upper() + fragment[1:] + "."


@lru_cache(maxsize=2048)
def answer(seed: int, paragraphs: int = 3, topic: str = "") -> str:
    """A prose answer of `paragraphs` paragraphs (55-95 words each)."""
    writer = _Writer(random.Random(seed))
    out: list[str] = []
    for index in range(paragraphs):
        target = writer.rng.randint(55, 95)
        sentences = [_sentence(writer.s_topic(topic or "this question"))] if index == 0 else []
        words = sum(len(s.split()) for s in sentences)
        while words < target:
            sentence = _sentence(writer.pick(_TEMPLATES)(writer))
            sentences.append(sentence)
            words += len(sentence.split())
        out.append(" ".join(sentences))
    return "\n\n".join(out)


@lru_cache(maxsize=2048)
def reasoning(seed: int, topic: str = "") -> str:
    """A few sentences of step-by-step reasoning that precede an answer."""
    writer = _Writer(random.Random(seed ^ 0x5EA5))
    subj, pl = writer.subject()
    subj2, pl2 = writer.subject()
    middle = [
        f"The key point is that {subj} {writer.verb(pl)} {writer.obj()}.",
        f"Next, I should compare {writer.obj()} with {writer.obj()}.",
        f"If {subj2} {writer.verb(pl2)} {writer.obj()}, then the answer "
        f"{writer.modal()} {writer.verbs.next()} {writer.obj()}.",
        f"I should also check whether {writer.obj()} is really {writer.adjs.next()}.",
        _sentence(writer.s_it_is()),
    ]
    writer.rng.shuffle(middle)
    about = f" about {topic}" if topic else ""
    return " ".join(
        [
            "Let me think about this step by step.",
            f"First, I need to understand what the question{about} is really asking.",
            *middle[:3],
            "Finally, I will put these ideas together and write a clear answer.",
        ]
    )


FAST_TOKENS = tokens(FAST_TEXT)


@lru_cache(maxsize=2048)
def answer_tokens(seed: int, paragraphs: int, topic: str) -> tuple[str, ...]:
    return tokens(answer(seed, paragraphs, topic))


def take(toks: tuple[str, ...], budget: int | None) -> tuple[tuple[str, ...], int | None, bool]:
    """The first `budget` tokens, the budget left over, and whether text was cut."""
    if budget is None:
        return toks, None, False
    kept = toks[:budget]
    return kept, budget - len(kept), len(kept) < len(toks)
