"""Labelled traffic personas: benign applications and distillation campaigns.

Each persona is a generator of `SimRequest`s — (API key, time offset, request
body, label, persona) — deterministic given a seed: `generate(seed, ...)`
seeds one `random.Random` per persona from the seed and the persona's name,
so adding a persona does not change the traffic of the others.

Benign
    chat-assistant   one key fronting many real users (three apps of different size):
                     diverse questions, writing tasks, advice, multi-turn follow-ups,
                     ~1 req/s bursts by day, quiet at night.
    small-keys       many individual developers and hobbyists, a handful of requests
                     each (the background a hydra hides in).
    sdk-quickstart   developers trying the API with the documentation's example prompt
                     ("Say this is a test"), 2-6 times each: one template, many keys.
    rag-app          a fixed instruction template around retrieved documents
                     (`<document>` tags or fenced blocks) and users' questions.
    coding-agent     a fixed agent system prompt and tool definitions; tasks run as
                     agent loops (tool calls and tool results).
    nightly-eval     a benchmark of 300 fixed questions (a third chain-of-thought
                     math), run once at high rate.
    support-bot      a fixed system prompt, short varied customer messages.

Campaign
    capability-sweep broad, novel prompts over the whole topic space at volume.
    cot-harvest      hard questions, each with a chain-of-thought elicitation suffix
                     (some paraphrased so the default patterns miss them).
    template-harvest one scaffold with slot variation (names, numbers, quotes) at volume.
    rubric-harvest   "grade this response against the rubric ... explain step by step".
    hydra            20-50 keys, 20-40 requests each, sharing three templates (one with
                     chain-of-thought), a quarter of each key's traffic ordinary chat.

Volumes are per hour at `scale=1`; `scale` multiplies every rate (not the number
of keys, nor the hydra's per-key counts, which stay under per-key volume by design).
The simulated day starts at 08:00; benign traffic follows office hours.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from gateway.signals.prompt_text import DialectName
from gateway.simulate import banks

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"
DAY_START_HOUR = 8.0
BLOCK = 300.0  # seconds: arrival rates are drawn per 5-minute block

JSONDict = dict[str, Any]


class Label(StrEnum):
    BENIGN = "benign"
    CAMPAIGN = "campaign"


@dataclass(frozen=True, slots=True)
class SimRequest:
    """One simulated request: who sends what, when, and what it really is."""

    key: str  # the API key (raw; the runner hashes it like the gateway does)
    at: float  # seconds after the simulation starts
    path: str  # OPENAI_PATH or ANTHROPIC_PATH
    body: JSONDict
    label: Label
    persona: str
    client_ip: str = "198.18.0.1"  # where it comes from (see `place`)
    user_agent: str = ""

    @property
    def dialect(self) -> DialectName:
        return "anthropic" if self.path == ANTHROPIC_PATH else "openai"


@dataclass(frozen=True, slots=True)
class Span:
    """What to simulate: `hours` of traffic at `scale` times the nominal volume."""

    hours: float = 24.0
    scale: float = 1.0

    @property
    def seconds(self) -> float:
        return self.hours * 3600.0

    def __post_init__(self) -> None:
        if not (0 < self.hours <= 24 * 14):
            raise ValueError(f"hours must be in (0, 336], got {self.hours!r}")
        if not (0 < self.scale <= 100):
            raise ValueError(f"scale must be in (0, 100], got {self.scale!r}")


Generator = Callable[[random.Random, Span], Iterator[SimRequest]]


@dataclass(frozen=True, slots=True)
class Persona:
    name: str
    label: Label
    summary: str
    generate: Generator
    # Probes of known weaknesses run only when named (--personas); the default
    # mix is the issue's personas.
    probe: bool = False


# --- time -------------------------------------------------------------------------------


def hour_of_day(at: float) -> float:
    return (DAY_START_HOUR + at / 3600.0) % 24.0


def office_hours(at: float) -> float:
    """Relative activity of human-driven traffic at time `at` (1.0 = a busy afternoon)."""
    hour = hour_of_day(at)
    if 9 <= hour < 18:
        return 1.0
    if 7 <= hour < 9 or 18 <= hour < 22:
        return 0.55
    return 0.12


def always(at: float) -> float:
    return 1.0


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 40:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def arrivals(
    rng: random.Random, start: float, end: float, per_hour: float,
    profile: Callable[[float], float] = always, burstiness: float = 0.0,
) -> list[float]:
    """Poisson arrivals between `start` and `end` at `per_hour` x profile x a random
    per-block factor (lognormal with sigma `burstiness`, mean 1)."""
    times: list[float] = []
    block = start
    while block < end:
        stop = min(end, block + BLOCK)
        factor = rng.lognormvariate(-burstiness * burstiness / 2, burstiness) if burstiness else 1
        lam = per_hour * profile(block) * factor * (stop - block) / 3600.0
        times.extend(rng.uniform(block, stop) for _ in range(poisson(rng, lam)))
        block = stop
    times.sort()
    return times


def campaign_window(rng: random.Random, span: Span, *, max_hours: float = 8.0) -> tuple[
        float, float]:
    """When a campaign runs: it starts in the first fifth and lasts 50-80% of the span."""
    start = rng.uniform(0.0, 0.2) * span.seconds
    length = min(max_hours * 3600.0, rng.uniform(0.5, 0.8) * span.seconds)
    return start, min(span.seconds, start + length)


def make_key(rng: random.Random, persona: str, index: int) -> str:
    return f"sk-sim-{persona}-{index}-{rng.getrandbits(48):012x}"


# --- slots --------------------------------------------------------------------------------


def pick(rng: random.Random, items: Sequence[str]) -> str:
    return items[rng.randrange(len(items))]


def sentence(rng: random.Random) -> str:
    tail = pick(rng, banks.SENTENCE_TAILS)
    text = (f"{pick(rng, banks.SENTENCE_SUBJECTS)} {pick(rng, banks.SENTENCE_VERBS)} "
            f"{pick(rng, banks.SENTENCE_OBJECTS)}")
    return f"{text} {tail}." if tail else f"{text}."


def paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(sentence(rng) for _ in range(sentences))


def subject(rng: random.Random, domain: str | None = None) -> tuple[str, str]:
    """(domain, subject)."""
    chosen = domain or pick(rng, banks.DOMAINS)
    return chosen, pick(rng, banks.SUBJECTS[chosen])


class Slots(dict[str, str]):
    """`str.format_map` slots filled on first use, from the banks, consistently per prompt."""

    def __init__(self, rng: random.Random, domain: str | None = None, **fixed: str) -> None:
        super().__init__(fixed)
        self.rng = rng
        self.domain, first = subject(rng, domain)
        self.setdefault("s", first)

    def __missing__(self, key: str) -> str:
        value = self._make(key)
        self[key] = value
        return value

    def _make(self, key: str) -> str:
        rng = self.rng
        simple: Mapping[str, Sequence[str]] = _SIMPLE_SLOTS
        if key in simple:
            return pick(rng, simple[key])
        if key == "t":
            others = [s for s in banks.SUBJECTS[self.domain] if s != self["s"]]
            return pick(rng, others) if others else subject(rng)[1]
        if key == "S":
            value = self["s"]
            return value[:1].upper() + value[1:]
        if key == "d":
            return self.domain
        if key in ("n", "years", "age", "words"):
            low, high = {"n": (2, 90), "years": (1, 15), "age": (3, 9),
                         "words": (80, 250)}[key]
            return str(rng.randint(low, high))
        if key in ("a", "b", "c"):
            return str(rng.randint(2, 60))
        if key == "v":
            return f"{rng.randint(1, 5)}.{rng.randint(0, 12)}.{rng.randint(0, 9)}"
        if key == "date":
            return f"{pick(rng, _MONTHS)} {rng.randint(1, 28)}"
        if key == "order":
            return str(rng.randint(100000, 999999))
        if key == "tracking":
            return f"1Z{rng.getrandbits(60):015X}"
        if key == "code":
            return f"{pick(rng, ('SAVE', 'WELCOME', 'SPRING', 'VIP'))}{rng.randint(5, 50)}"
        if key == "price":
            return f"{rng.randint(9, 499)}.{rng.choice(('99', '95', '00', '49'))}"
        if key == "name":
            return f"{pick(rng, banks.FIRST_NAMES)}"
        if key == "brand":
            return pick(rng, banks.COMPANIES)
        if key == "pronoun":
            return rng.choice(("she", "he", "they"))
        if key in ("x", "z", "w"):
            return pick(rng, banks.ABSTRACT_NOUNS)
        if key in ("p", "q"):
            return pick(rng, banks.DATA_KINDS)
        if key == "casual":
            return pick(rng, banks.CASUAL_LINES)
        if key == "passage":
            return paragraph(rng, rng.randint(3, 6))
        if key == "problem":
            return pick(rng, banks.HARD_PROBLEMS).format_map(Slots(rng))
        if key == "func":
            return pick(rng, banks.FUNCS)
        raise KeyError(key)


_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_SIMPLE_SLOTS: dict[str, Sequence[str]] = {
    "situation": banks.SITUATIONS, "issue": banks.ISSUES, "relation": banks.RELATIONS,
    "hobby": banks.HOBBIES, "work": banks.WORK_TOPICS, "image": banks.IMAGES,
    "job": banks.JOBS, "meet": banks.MEETINGS, "business": banks.BUSINESSES,
    "gift": banks.GIFTS, "notes": banks.NOTES, "feature": banks.FEATURES,
    "cause": banks.CAUSES, "team": banks.TEAMS, "weekday": banks.WEEKDAYS,
    "tier": banks.TIERS, "endpoint": banks.ENDPOINTS, "test": banks.TEST_NAMES,
    "path": banks.PATHS, "cls": banks.CLASS_NAMES, "product": banks.PRODUCTS,
    "city": banks.CITIES, "first": banks.FIRST_NAMES, "last": banks.LAST_NAMES,
    "audience": banks.AUDIENCES, "benefit": banks.BENEFITS, "lang": banks.CODE_LANGS,
    "spec": banks.SPECS, "rubric": banks.RUBRICS, "language": banks.LANGUAGES,
    "docsubject": banks.DOC_SUBJECTS,
}


def fill(rng: random.Random, template: str, domain: str | None = None, **fixed: str) -> str:
    return template.format_map(Slots(rng, domain, **fixed))


# --- bodies -----------------------------------------------------------------------------


def openai_body(
    rng: random.Random, messages: list[JSONDict], *, model: str = "demo-model",
    stream_share: float = 0.0, max_tokens: int | None = None, **extra: Any,
) -> JSONDict:
    body: JSONDict = {"model": model, "messages": messages}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if rng.random() < stream_share:
        body["stream"] = True
    body.update(extra)
    return body


def anthropic_body(
    rng: random.Random, messages: list[JSONDict], *, system: str | None = None,
    model: str = "demo-model", max_tokens: int = 1024, stream_share: float = 0.0,
    **extra: Any,
) -> JSONDict:
    body: JSONDict = {"model": model, "max_tokens": max_tokens, "messages": messages}
    if system is not None:
        body["system"] = system
    if rng.random() < stream_share:
        body["stream"] = True
    body.update(extra)
    return body


def assistant_reply(rng: random.Random, topic: str) -> str:
    opener = pick(rng, banks.ASSISTANT_OPENERS).format(s=topic, S=topic[:1].upper() + topic[1:])
    return f"{opener} {pick(rng, banks.ASSISTANT_BODIES)} {pick(rng, banks.ASSISTANT_BODIES)}"


# --- what people ask a chat assistant ------------------------------------------------------


def chat_question(rng: random.Random, *, popular: float = 0.7) -> tuple[str, str]:
    """(question, its subject) as a person would type it."""
    roll = rng.random()
    domain = pick(rng, banks.POPULAR_DOMAINS) if rng.random() < popular else None
    slots = Slots(rng, domain)
    if roll < 0.07:
        return pick(rng, banks.COMMON_PROMPTS), "that"
    if roll < 0.45:
        return pick(rng, banks.KNOWLEDGE_FRAMES).format_map(slots), slots["s"]
    if roll < 0.68:
        return pick(rng, banks.ADVICE_FRAMES).format_map(slots), slots["s"]
    if roll < 0.92:
        return pick(rng, banks.WRITING_TASKS).format_map(slots), "that"
    text = fill(rng, "{casual}")
    return f"Translate this into {pick(rng, banks.LANGUAGES)}: {text}", "the translation"


def chat_conversation(rng: random.Random) -> list[str]:
    """The user turns of one conversation: a question, then 0-4 follow-ups."""
    question, _ = chat_question(rng)
    turns = [question]
    while len(turns) < 5 and rng.random() < 0.35:
        follow = pick(rng, banks.FOLLOW_UPS)
        turns.append(follow.format(t=subject(rng)[1]) if "{t}" in follow else follow)
    return turns


def _chat_messages(
    rng: random.Random, turns: Sequence[str], upto: int, system: str | None
) -> list[JSONDict]:
    messages: list[JSONDict] = [{"role": "system", "content": system}] if system else []
    for i in range(upto + 1):
        messages.append({"role": "user", "content": turns[i]})
        if i < upto:
            messages.append({"role": "assistant", "content": assistant_reply(rng, "that")})
    return messages


CHAT_SYSTEMS = (
    "You are Nova, the helpful assistant inside the Nova mobile app. Be friendly, concise and "
    "accurate. If you are not sure, say so. Do not give medical, legal or financial advice "
    "beyond general information. Format answers with short paragraphs.",
    None,
    "You are a helpful assistant for a productivity browser extension. Answer in the user's "
    "language. Prefer bullet points for lists.",
)


def _conversations(
    rng: random.Random, key: str, times: Sequence[float], *, anthropic: bool,
    system: str | None, persona: str, label: Label, model: str = "demo-model",
) -> Iterator[SimRequest]:
    """Each arrival starts a conversation; its follow-ups come 20-180 s apart."""
    for start in times:
        turns = chat_conversation(rng)
        at = start
        for upto in range(len(turns)):
            if anthropic:
                messages = _chat_messages(rng, turns, upto, None)
                body = anthropic_body(rng, messages, system=system, model=model,
                                      stream_share=0.7)
                yield SimRequest(key, at, ANTHROPIC_PATH, body, label, persona)
            else:
                messages = _chat_messages(rng, turns, upto, system)
                body = openai_body(rng, messages, model=model, stream_share=0.7,
                                   temperature=0.7)
                yield SimRequest(key, at, OPENAI_PATH, body, label, persona)
            at += rng.uniform(20, 180)


def chat_assistant(rng: random.Random, span: Span) -> Iterator[SimRequest]:
    # (conversations per hour at the office-hours peak, dialect, system prompt)
    apps = ((600.0, False, CHAT_SYSTEMS[0]), (160.0, True, CHAT_SYSTEMS[2]),
            (45.0, False, CHAT_SYSTEMS[1]))
    for index, (rate, anthropic, system) in enumerate(apps):
        key = make_key(rng, "chat", index)
        times = arrivals(rng, 0.0, span.seconds, rate * span.scale, office_hours, 0.8)
        yield from _conversations(rng, key, times, anthropic=anthropic, system=system,
                                  persona="chat-assistant", label=Label.BENIGN)


def small_keys(rng: random.Random, span: Span) -> Iterator[SimRequest]:
    for index in range(40):
        key = make_key(rng, "small", index)
        anthropic = rng.random() < 0.4
        sessions = max(1, poisson(rng, 3 * min(1.0, span.hours / 8) * max(span.scale, 0.34)))
        for _ in range(sessions):
            start = rng.uniform(0, span.seconds)
            count = rng.randint(1, 6)
            times = sorted(start + rng.uniform(0, 1200) for _ in range(count))
            yield from _conversations(rng, key, times, anthropic=anthropic, system=None,
                                      persona="small-keys", label=Label.BENIGN)


QUICKSTART_PROMPTS = (  # what SDK documentation tells a developer to send first
    "Say this is a test", "Hello, world", "Write a haiku about recursion in programming.",
    "Hello, Claude", "ping",
)


def sdk_quickstart(rng: random.Random, span: Span) -> Iterator[SimRequest]:
    """Developers trying the API: the docs' example prompt, a few times, then gone."""
    for index in range(max(10, round(80 * span.scale))):
        key = make_key(rng, "quickstart", index)
        anthropic = rng.random() < 0.4
        prompt = QUICKSTART_PROMPTS[3 if anthropic and rng.random() < 0.6 else
                                    rng.randrange(3)]
        at = span.seconds * rng.random()
        while office_hours(at) < 1.0 and rng.random() < 0.8:  # mostly in office hours
            at = span.seconds * rng.random()
        for _ in range(rng.randint(2, 6)):
            messages: list[JSONDict] = [{"role": "user", "content": prompt}]
            if anthropic:
                yield SimRequest(key, at, ANTHROPIC_PATH, anthropic_body(rng, messages),
                                 Label.BENIGN, "sdk-quickstart")
            else:
                yield SimRequest(key, at, OPENAI_PATH, openai_body(rng, messages),
                                 Label.BENIGN, "sdk-quickstart")
            at += rng.uniform(5, 120)


# --- RAG -------------------------------------------------------------------------------------

RAG_SYSTEM = (
    "You are the internal knowledge assistant of Northwind Traders. Answer employees' "
    "questions using only the provided documents. Cite the document title in brackets. If the "
    "documents do not contain the answer, say that you don't know and suggest who to ask."
)
RAG_INSTRUCTION = (
    "Use the documents below to answer the question at the end. Quote the relevant sentence "
    "when possible.\n\n{documents}\n\nQuestion: {question}"
)
RAG_TAGGED = (
    "Here are the most relevant help-center articles for this customer:\n\n{documents}\n\n"
    "<question>{question}</question>\n\nAnswer the question in at most three sentences, "
    "using only these articles. If they do not answer it, reply exactly: \"I'm not sure, "
    "let me connect you with a colleague.\""
)


def rag_document(rng: random.Random) -> tuple[str, str]:
    """(title, text) of one retrieved document."""
    topic = pick(rng, banks.DOC_SUBJECTS)
    title = f"{pick(rng, banks.DOC_KINDS).title()}: {topic}"
    facts = [fill(rng, pick(rng, banks.DOC_FACTS)) for _ in range(rng.randint(3, 7))]
    intro = f"This document describes {topic}. {sentence(rng)}"
    return title, " ".join([intro, *facts])


def rag_question(rng: random.Random) -> str:
    roll = rng.random()
    topic = pick(rng, banks.DOC_SUBJECTS)
    if roll < 0.6:
        return fill(rng, pick(rng, banks.RAG_QUESTIONS), s=topic)
    question, _ = chat_question(rng, popular=1.0)
    return f"About {topic}: {question}" if roll < 0.8 else question


def rag_app(rng: random.Random, span: Span) -> Iterator[SimRequest]:
    # app 0: OpenAI, <document> tags, question in plain text (templates vary with it)
    key = make_key(rng, "rag", 0)
    for at in arrivals(rng, 0.0, span.seconds, 280 * span.scale, office_hours, 0.5):
        docs = [rag_document(rng) for _ in range(rng.randint(2, 5))]
        documents = "\n".join(f"<document title=\"{t}\">\n{text}\n</document>"
                              for t, text in docs)
        prompt = RAG_INSTRUCTION.format(documents=documents, question=rag_question(rng))
        body = openai_body(rng, [{"role": "system", "content": RAG_SYSTEM},
                                 {"role": "user", "content": prompt}],
                           temperature=0.0, max_tokens=400)
        yield SimRequest(key, at, OPENAI_PATH, body, Label.BENIGN, "rag-app")
    # app 1: Anthropic, fenced articles, question in <question> tags: ONE template
    key = make_key(rng, "rag", 1)
    for at in arrivals(rng, 0.0, span.seconds, 140 * span.scale, office_hours, 0.5):
        docs = [rag_document(rng) for _ in range(rng.randint(1, 4))]
        documents = "\n\n".join(f"```\n# {t}\n{text}\n```" for t, text in docs)
        prompt = RAG_TAGGED.format(documents=documents, question=rag_question(rng))
        body = anthropic_body(rng, [{"role": "user", "content": prompt}], max_tokens=300,
                              system="You are a careful support assistant.")
        yield SimRequest(key, at, ANTHROPIC_PATH, body, Label.BENIGN, "rag-app")


# --- coding agent ------------------------------------------------------------------------------

AGENT_SYSTEM = (
    "You are a coding agent working in the user's repository. You can read and edit files, "
    "search the code and run commands through the tools provided. Work in small steps: read "
    "before you edit, run the tests after every change, and never invent file contents. When "
    "the task is done, reply with a short summary of what you changed and why. Follow the "
    "project's existing style. Ask before deleting files or running destructive commands."
)
_TOOL_SPECS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("read_file", "Read a file of the repository.", ("path", "start_line", "end_line")),
    ("write_file", "Replace a file's contents.", ("path", "content")),
    ("search", "Search the repository with a regular expression.", ("pattern", "glob")),
    ("run_command", "Run a shell command in the repository root.", ("command", "timeout")),
    ("list_dir", "List a directory.", ("path",)),
)


def _tool_schema(params: Sequence[str]) -> JSONDict:
    return {"type": "object", "properties": {p: {"type": "string"} for p in params},
            "required": list(params[:1])}


ANTHROPIC_TOOLS = [{"name": n, "description": d, "input_schema": _tool_schema(p)}
                   for n, d, p in _TOOL_SPECS]
OPENAI_TOOLS = [{"type": "function", "function": {"name": n, "description": d,
                                                  "parameters": _tool_schema(p)}}
                for n, d, p in _TOOL_SPECS]


def _tool_step(rng: random.Random, slots: Slots) -> tuple[str, JSONDict, str]:
    """(tool name, its input, what it returned)."""
    name = pick(rng, ("read_file", "read_file", "search", "run_command", "write_file"))
    if name == "read_file":
        snippet = pick(rng, banks.CODE_SNIPPETS).format_map(slots)
        return name, {"path": slots["path"]}, snippet
    if name == "search":
        hits = "\n".join(f"{pick(rng, banks.PATHS)}:{rng.randint(3, 400)}: "
                         f"{slots['func']}(" for _ in range(rng.randint(1, 5)))
        return name, {"pattern": slots["func"]}, hits
    if name == "run_command":
        output = pick(rng, banks.TEST_OUTPUTS).format_map(slots)
        return name, {"command": "pytest -q" if rng.random() < 0.6 else "make lint"}, output
    return name, {"path": slots["path"], "content": "..."}, "ok"


def coding_agent(rng: random.Random, span: Span) -> Iterator[SimRequest]:
    # (tasks per hour at the peak, Anthropic dialect?)
    for index, (rate, anthropic) in enumerate(((40.0, True), (12.0, False))):
        key = make_key(rng, "coder", index)
        for start in arrivals(rng, 0.0, span.seconds, rate * span.scale, office_hours, 0.6):
            slots = Slots(rng)
            task = fill(rng, pick(rng, banks.CODE_TASKS), func=slots["func"],
                        path=slots["path"])
            steps = rng.randint(2, 9)
            at = start
            history: list[tuple[str, JSONDict, str]] = []
            for step in range(steps):
                if anthropic:
                    yield SimRequest(key, at, ANTHROPIC_PATH,
                                     _anthropic_agent_body(rng, task, history),
                                     Label.BENIGN, "coding-agent")
                else:
                    yield SimRequest(key, at, OPENAI_PATH,
                                     _openai_agent_body(rng, task, history, step),
                                     Label.BENIGN, "coding-agent")
                history.append(_tool_step(rng, slots))
                at += rng.uniform(4, 40)


def _anthropic_agent_body(
    rng: random.Random, task: str, history: Sequence[tuple[str, JSONDict, str]]
) -> JSONDict:
    messages: list[JSONDict] = [{"role": "user", "content": task}]
    for i, (name, tool_input, output) in enumerate(history):
        messages.append({"role": "assistant", "content": [
            {"type": "text", "text": "Let me check that."},
            {"type": "tool_use", "id": f"toolu_{i:04d}", "name": name, "input": tool_input}]})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": f"toolu_{i:04d}", "content": output}]})
    return anthropic_body(rng, messages, system=AGENT_SYSTEM, tools=ANTHROPIC_TOOLS,
                          max_tokens=4096, stream_share=0.9)


def _openai_agent_body(
    rng: random.Random, task: str, history: Sequence[tuple[str, JSONDict, str]], step: int
) -> JSONDict:
    messages: list[JSONDict] = [{"role": "system", "content": AGENT_SYSTEM},
                                {"role": "user", "content": task}]
    for i, (name, tool_input, output) in enumerate(history):
        call_id = f"call_{step}_{i}"
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function",
             "function": {"name": name, "arguments": json.dumps(tool_input)}}]})
        messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
    return openai_body(rng, messages, tools=OPENAI_TOOLS, stream_share=0.9, temperature=0.2)


# --- nightly evaluation --------------------------------------------------------------------------

EVAL_MCQ = (
    "The following is a multiple choice question about {domain}. Answer with the letter of "
    "the correct option only.\n\n{stem}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"
)
EVAL_MATH = "Question: {problem}\nLet's think step by step."
EVAL_QUESTIONS = 300


def benchmark() -> list[str]:
    """The evaluation suite: fixed questions (the same in every run, whatever the seed)."""
    rng = random.Random("nightly-eval-benchmark-v1")
    questions: list[str] = []
    for i in range(EVAL_QUESTIONS):
        if i % 3 == 2:
            problem = pick(rng, banks.EVAL_WORD_PROBLEMS).format_map(Slots(rng))
            questions.append(EVAL_MATH.format(problem=problem))
            continue
        domain, subj = subject(rng)
        options = rng.sample(banks.MCQ_DISTRACTORS, 3)
        options.insert(rng.randrange(4), f"The concept of {subj} as studied in {domain}")
        stem = pick(rng, banks.MCQ_STEMS).format(s=subj)
        questions.append(EVAL_MCQ.format(domain=domain, stem=stem, a=options[0], b=options[1],
                                         c=options[2], d=options[3]))
    return questions


def nightly_eval(rng: random.Random, span: Span) -> Iterator[SimRequest]:
    key = make_key(rng, "eval", 0)
    # 01:00 when the span reaches it, else 60% into the span
    night = (24.0 + 1.0 - DAY_START_HOUR) * 3600.0
    at = night if night < span.seconds - 600 else 0.6 * span.seconds
    for question in benchmark():
        body = openai_body(rng, [{"role": "user", "content": question}], temperature=0.0,
                           max_tokens=512)
        yield SimRequest(key, at, OPENAI_PATH, body, Label.BENIGN, "nightly-eval")
        at += rng.uniform(0.6, 1.2)  # ~1 req/s: the harness stays under the rate limit


# --- customer support --------------------------------------------------------------------------

SUPPORT_SYSTEMS = (
    "You are Sunny, the customer support assistant of Brightside Home, an online store for "
    "home goods. Be warm and brief. You can look up orders when the customer gives an order "
    "number. Refunds take 5-7 business days. Never promise delivery dates. Escalate to a "
    "human agent when the customer asks or is upset.",
    "You are the support bot for Volt Mobile. Help customers with plans, billing and device "
    "problems. Keep answers under 80 words. Do not discuss competitors.",
)
SUPPORT_REPLIES = (
    "I'm sorry about that! Could you share your order number so I can take a look?",
    "Thanks for waiting. I've checked and your order is on its way.",
    "I understand. Let me connect you with a colleague who can help further.",
    "You can reset it from the login page using 'Forgot password'.",
)


def support_bot(rng: random.Random, span: Span) -> Iterator[SimRequest]:
    for index, rate in enumerate((220.0, 70.0)):
        key = make_key(rng, "support", index)
        profile: Callable[[float], float] = (
            lambda t: max(0.25, office_hours(t))) if index == 0 else office_hours
        for start in arrivals(rng, 0.0, span.seconds, rate * span.scale, profile, 0.4):
            turns = [fill(rng, pick(rng, banks.SUPPORT_MESSAGES))
                     for _ in range(1 + (rng.random() < 0.4) + (rng.random() < 0.2))]
            at = start
            for upto in range(len(turns)):
                messages: list[JSONDict] = [{"role": "system",
                                             "content": SUPPORT_SYSTEMS[index]}]
                for i in range(upto + 1):
                    messages.append({"role": "user", "content": turns[i]})
                    if i < upto:
                        messages.append({"role": "assistant",
                                         "content": pick(rng, SUPPORT_REPLIES)})
                body = openai_body(rng, messages, temperature=0.3, max_tokens=200)
                yield SimRequest(key, at, OPENAI_PATH, body, Label.BENIGN, "support-bot")
                at += rng.uniform(15, 90)


SHARED_TOOL_SYSTEM = (
    "You are WriteWell, an open-source editing assistant. Improve the user's text for clarity, "
    "grammar and flow. Keep the author's voice and meaning. Return only the revised text.")


def shared_tool(rng: random.Random, span: Span) -> Iterator[SimRequest]:
    """Probe: 40 developers, each with their own key, running the same open-source
    tool. One slotted template shared by many keys: what a hydra looks like too."""
    for index in range(max(10, round(40 * span.scale))):
        key = make_key(rng, "shared-tool", index)
        at = span.seconds * rng.random()
        for _ in range(rng.randint(3, 15)):
            text = paragraph(rng, rng.randint(2, 4))
            messages: list[JSONDict] = [
                {"role": "system", "content": SHARED_TOOL_SYSTEM},
                {"role": "user", "content": f"Improve this text:\n\n\"{text}\""}]
            yield SimRequest(key, at, OPENAI_PATH, openai_body(rng, messages),
                             Label.BENIGN, "shared-tool")
            at += rng.uniform(30, 900)


# --- campaigns -----------------------------------------------------------------------------------


def capability_sweep(rng: random.Random, span: Span) -> Iterator[SimRequest]:
    """Academic-extraction style: every request a new subject, uniformly over all domains."""
    for index, rate in enumerate((1200.0, 300.0)):
        key = make_key(rng, "sweep", index)
        start, end = campaign_window(rng, span)
        for at in arrivals(rng, start, end, rate * span.scale, always, 0.15):
            slots = Slots(rng)
            prompt = pick(rng, banks.SWEEP_FRAMES).format_map(slots)
            # vary the wrapping too: an extraction crawler rarely sends the same prompt twice
            prompt = f"{prompt} {pick(rng, _SWEEP_STYLE)}".format(n=rng.randint(3, 12),
                                                                   words=rng.randint(150, 900))
            if index == 0:
                body = openai_body(rng, [{"role": "user", "content": prompt}],
                                   temperature=rng.choice((0.0, 0.7, 1.0)), max_tokens=1024)
                yield SimRequest(key, at, OPENAI_PATH, body, Label.CAMPAIGN,
                                 "capability-sweep")
            else:
                body = anthropic_body(rng, [{"role": "user", "content": prompt}])
                yield SimRequest(key, at, ANTHROPIC_PATH, body, Label.CAMPAIGN,
                                 "capability-sweep")


_SWEEP_STYLE = ("Be thorough.", "Use examples.", "Write in a formal register.",
                "Use headings.", "Avoid jargon.", "Include citations where possible.",
                "Use about {words} words.", "Give {n} examples.", "Keep it under {words} words.",
                "Structure it in {n} sections.", "", "", "")


def cot_harvest(rng: random.Random, span: Span) -> Iterator[SimRequest]:
    for index, rate in enumerate((700.0, 250.0)):
        key = make_key(rng, "cot", index)
        start, end = campaign_window(rng, span)
        for at in arrivals(rng, start, end, rate * span.scale, always, 0.2):
            problem = pick(rng, banks.HARD_PROBLEMS).format_map(Slots(rng))
            suffix = pick(rng, banks.COT_SUFFIXES)
            prompt = f"{problem}\n\n{suffix}" if rng.random() < 0.8 else f"{suffix}\n\n{problem}"
            body = openai_body(rng, [{"role": "user", "content": prompt}],
                               model="demo-reasoner", max_tokens=4096)
            yield SimRequest(key, at, OPENAI_PATH, body, Label.CAMPAIGN, "cot-harvest")


def template_harvest(rng: random.Random, span: Span) -> Iterator[SimRequest]:
    key = make_key(rng, "tmpl", 0)
    start, end = campaign_window(rng, span)
    for at in arrivals(rng, start, end, 1500 * span.scale, always, 0.1):
        prompt = fill(rng, banks.PRODUCT_SCAFFOLD,
                      product=f"{pick(rng, banks.ADJECTIVES)} {pick(rng, banks.PRODUCTS)}")
        body = openai_body(rng, [{"role": "user", "content": prompt}], max_tokens=400,
                           temperature=0.9)
        yield SimRequest(key, at, OPENAI_PATH, body, Label.CAMPAIGN, "template-harvest")


def rubric_harvest(rng: random.Random, span: Span) -> Iterator[SimRequest]:
    key = make_key(rng, "rubric", 0)
    start, end = campaign_window(rng, span)
    for at in arrivals(rng, start, end, 450 * span.scale, always, 0.2):
        slots = Slots(rng)
        question = pick(rng, banks.KNOWLEDGE_FRAMES + banks.HARD_PROBLEMS).format_map(slots)
        response = " ".join([assistant_reply(rng, slots["s"]), paragraph(rng, rng.randint(2, 5))])
        prompt = banks.GRADER_SCAFFOLD.format(rubric=pick(rng, banks.RUBRICS),
                                              question=question, response=response)
        body = anthropic_body(rng, [{"role": "user", "content": prompt}], max_tokens=1500)
        yield SimRequest(key, at, ANTHROPIC_PATH, body, Label.CAMPAIGN, "rubric-harvest")


def hydra(rng: random.Random, span: Span) -> Iterator[SimRequest]:
    """Many keys behind a reseller, each under per-key volume, sharing templates."""
    keys = min(50, max(20, round(30 * span.scale)))
    begin, end = campaign_window(rng, span)
    for index in range(keys):
        key = make_key(rng, "hydra", index)
        count = rng.randint(20, 40)
        # the reseller drips each key's quota out in short bursts over the campaign
        bursts = max(1, count // rng.randint(4, 8))
        starts = sorted(rng.uniform(begin, max(begin + 1.0, end - 1800)) for _ in range(bursts))
        favourite = rng.sample(range(len(banks.HYDRA_TEMPLATES)), 2)
        sent = 0
        for b, start in enumerate(starts):
            n = count // bursts + (1 if b < count % bursts else 0)
            at = start
            for _ in range(n):
                sent += 1
                if rng.random() < 0.25:  # cover traffic: an ordinary chat question
                    question, _ = chat_question(rng)
                    body = openai_body(rng, [{"role": "user", "content": question}],
                                       stream_share=0.5)
                else:
                    template = banks.HYDRA_TEMPLATES[
                        favourite[0] if rng.random() < 0.7 else favourite[1]]
                    body = openai_body(rng, [{"role": "user", "content": fill(rng, template)}],
                                       model="demo-reasoner", max_tokens=2048)
                yield SimRequest(key, at, OPENAI_PATH, body, Label.CAMPAIGN, "hydra")
                at += rng.uniform(2, 60)


PERSONAS: tuple[Persona, ...] = (
    Persona("chat-assistant", Label.BENIGN,
            "chat apps, each key fronting many users; bursts by day", chat_assistant),
    Persona("small-keys", Label.BENIGN, "40 individual keys, a few conversations each",
            small_keys),
    Persona("sdk-quickstart", Label.BENIGN, "80 developers sending the SDK docs' first "
            "prompt a few times", sdk_quickstart),
    Persona("rag-app", Label.BENIGN, "fixed instruction around retrieved documents", rag_app),
    Persona("coding-agent", Label.BENIGN, "agent loops with tools and tool results",
            coding_agent),
    Persona("nightly-eval", Label.BENIGN, "300 fixed benchmark questions at ~1 req/s, once",
            nightly_eval),
    Persona("support-bot", Label.BENIGN, "fixed system prompt, short customer messages",
            support_bot),
    Persona("capability-sweep", Label.CAMPAIGN, "broad novel prompts over all topics",
            capability_sweep),
    Persona("cot-harvest", Label.CAMPAIGN, "hard questions + chain-of-thought elicitation",
            cot_harvest),
    Persona("template-harvest", Label.CAMPAIGN, "one scaffold, slot variation, at volume",
            template_harvest),
    Persona("rubric-harvest", Label.CAMPAIGN, "grading against a rubric, step by step",
            rubric_harvest),
    Persona("hydra", Label.CAMPAIGN, "20-50 keys under per-key volume sharing templates",
            hydra),
    Persona("shared-tool", Label.BENIGN, "probe: 40 keys running one open-source tool's "
            "template", shared_tool, probe=True),
)
PERSONA_NAMES: tuple[str, ...] = tuple(p.name for p in PERSONAS)


def persona(name: str) -> Persona:
    for p in PERSONAS:
        if p.name == name:
            return p
    raise KeyError(f"unknown persona {name!r} (known: {', '.join(PERSONA_NAMES)})")


# --- where requests come from ------------------------------------------------------------------
#
# Networks are /24s of 198.18.0.0/15 (the benchmarking range): 198.18.N.0/24 for
# the named networks below, 198.19.N.0/24 for residential addresses. Benign
# organisations put several keys behind one egress (a company's chat app, RAG
# app and coding agent; a university's students); the hydra's reseller sends
# most of its keys' traffic through four datacenter /24s and the rest through
# residential proxies. Nearly everyone uses an official SDK, so the user agent
# says little.

_COMPANY, _UNIVERSITY = 10, 20
_NETWORKS: dict[str, tuple[int, ...]] = {  # persona -> /24 of its key 0, 1, 2, ...
    "chat-assistant": (_COMPANY, 11, 12),
    "rag-app": (_COMPANY, 13),
    "coding-agent": (_COMPANY, 14),
    "nightly-eval": (15,),
    "support-bot": (16, 17),
    "capability-sweep": (30, 31),
    "cot-harvest": (32, 33),
    "template-harvest": (34,),
    "rubric-harvest": (35,),
}
_RESELLER = (40, 41, 42, 43)
_AGENTS = {"openai": "OpenAI/Python 1.54.4", "anthropic": "Anthropic/Python 0.39.0"}
_OTHER_AGENTS = {"nightly-eval": "lm-eval/0.4.5 python-httpx/0.27.2",
                 "support-bot": "OpenAI/JS 4.73.0", "template-harvest": "python-requests/2.32.3"}


def place(rng: random.Random, name: str, requests: Iterator[SimRequest]) -> Iterator[SimRequest]:
    """Give each request of persona `name` a client address and a user agent."""
    keys: dict[str, int] = {}
    residential: dict[str, int] = {}
    nets = _NETWORKS.get(name)
    for request in requests:
        index = keys.setdefault(request.key, len(keys))
        if name == "hydra":
            if rng.random() < 0.7:
                net = f"198.18.{pick_int(rng, _RESELLER)}"
            else:
                net = f"198.19.{rng.randrange(256)}"
        elif name == "shared-tool":  # developers at home, each on their own line
            net = f"198.19.{residential.setdefault(request.key, rng.randrange(256))}"
        elif name == "small-keys":
            # the first eight keys are students behind the university's NAT
            home = residential.setdefault(request.key, rng.randrange(256))
            net = f"198.18.{_UNIVERSITY}" if index < 8 else f"198.19.{home}"
        elif nets is not None:
            net = f"198.18.{nets[index % len(nets)]}"
        else:
            net = "198.18.99"
        agent = _OTHER_AGENTS.get(name, _AGENTS[request.dialect])
        yield replace(request, client_ip=f"{net}.{rng.randrange(1, 255)}", user_agent=agent)


def pick_int(rng: random.Random, items: Sequence[int]) -> int:
    return items[rng.randrange(len(items))]


def generate(
    seed: int, span: Span | None = None, names: Sequence[str] | None = None
) -> list[SimRequest]:
    """Every chosen persona's traffic, merged in time order (ties: persona order)."""
    span = span or Span()
    chosen = ([persona(n) for n in names] if names is not None
              else [p for p in PERSONAS if not p.probe])
    merged: list[tuple[float, int, int, SimRequest]] = []
    for order, p in enumerate(chosen):
        rng = random.Random(f"{seed}:{p.name}")
        net_rng = random.Random(f"{seed}:{p.name}:network")
        for i, request in enumerate(place(net_rng, p.name, p.generate(rng, span))):
            if 0 <= request.at < span.seconds:
                merged.append((request.at, order, i, request))
    merged.sort(key=lambda item: item[:3])
    return [item[3] for item in merged]
