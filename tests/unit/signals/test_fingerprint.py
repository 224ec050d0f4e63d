from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.signals.fingerprint import (
    _MULTIPLIERS,
    DEFAULT_MAX_CHARS,
    Fingerprint,
    fingerprint,
    hamming,
    sample_text,
    simhash,
    simhash_bands,
    skeleton,
    topics,
    words,
)
from gateway.signals.prompt_text import PromptParts, prompt_text

REPO = Path(__file__).resolve().parents[3]


def user(text: str, system: str = "") -> PromptParts:
    return PromptParts(system=system, user_turns=(text,), last_user=text)


# About 200 words each, on unrelated subjects.
BREAD = (
    "I have been baking sourdough at home for about six months and my loaves keep coming out "
    "dense and gummy in the middle even though the crust looks fine. My starter doubles in "
    "roughly five hours after feeding at room temperature, which I think means it is active "
    "enough. I use a flour blend of eighty percent strong white and twenty percent wholemeal, "
    "with hydration around seventy five percent. After mixing I do four sets of stretch and "
    "folds thirty minutes apart, then let the dough bulk ferment until it has risen by about "
    "half, which usually takes another three hours in my kitchen. I shape it into a tight "
    "boule, put it in a floured banneton and leave it in the fridge overnight. The next "
    "morning I bake it straight from the fridge in a preheated cast iron pot at two hundred "
    "and forty degrees with the lid on for twenty minutes and then without the lid for "
    "another twenty five. When I cut it open the crumb is tight near the bottom and the "
    "centre feels damp. Could the problem be under fermentation, too much water, cutting it "
    "too soon, or my oven running cold? What should I change first, and how would I tell "
    "which of these is really the cause?"
)
SKY = (
    "Last weekend I set up my small reflecting telescope in the garden to look at Jupiter and "
    "its moons, but the image kept shimmering and I could barely make out the cloud bands. "
    "A friend told me that the atmosphere was probably unsteady and that astronomers call "
    "this poor seeing. I would like to understand the physics behind that. Why does warm air "
    "rising from rooftops and the ground make stars twinkle and planets blur, and why do the "
    "planets twinkle less than the stars do? I have also read about adaptive optics on large "
    "observatories, where a deformable mirror corrects the wavefront hundreds of times per "
    "second using a laser guide star. How does the system measure the distortion, and could "
    "any version of that idea work for an amateur instrument with an eight inch aperture? "
    "Finally, are there practical habits that help, such as letting the tube cool down "
    "before observing, avoiding views over hot surfaces, or waiting until the planet is high "
    "above the horizon, and how much difference do they make compared with simply choosing "
    "a night with a steady jet stream over the region? I mostly observe from a suburban "
    "garden with some light pollution, in early evening."
)
LEASE = (
    "Our small design studio signed a five year commercial lease for an office unit two "
    "years ago, and the landlord has now written to say that a break clause lets them end "
    "the lease early if they want to redevelop the building. We did not have a solicitor "
    "review the contract at the time, and I am trying to work out where we stand. The clause "
    "says the landlord may terminate on six months written notice after the second "
    "anniversary, provided that they intend to carry out substantial works. Does a vague "
    "statement about redevelopment count as sufficient intention, or would they need "
    "planning permission and contractors lined up? We also spent a significant amount on "
    "fitting out the space, including partitions and lighting, with the landlord's consent. "
    "Is there any right to compensation for those improvements, or for the disruption of "
    "moving, under the statutory protection that business tenants sometimes have? If we "
    "want to negotiate, what leverage do we realistically have, and should we respond to "
    "the notice in writing straight away or wait for legal advice? Any general guidance "
    "about how courts tend to read these clauses would help us decide whether it is worth "
    "contesting."
)
PARAGRAPHS = (BREAD, SKY, LEASE)

# A fixed input and its SimHash, computed once. If this fails, either the hash is no
# longer stable across processes (salted hashing crept in) or its definition changed,
# which invalidates every stored signature: bump a version instead of editing the value.
STABLE_TEXT = "The quick brown fox jumps over the lazy dog while 3 wizards box quietly."
STABLE_SIMHASH = 0x604982D04B8A1CC1


# --- exact ---------------------------------------------------------------------------


def test_exact_ignores_whitespace_and_case() -> None:
    a = fingerprint(user("What is the   capital of\nFrance?", system="Be brief."))
    b = fingerprint(user("what is the capital of france?\t", system="BE   BRIEF."))
    assert a.exact == b.exact
    assert len(a.exact) == 16 and int(a.exact, 16) >= 0


def test_exact_differs_for_different_prompts() -> None:
    base = fingerprint(user("What is the capital of France?")).exact
    assert fingerprint(user("What is the capital of Spain?")).exact != base
    assert fingerprint(user("What is the capital of France!")).exact != base
    assert fingerprint(user("x = y + 1")).exact != fingerprint(user("x = y - 1")).exact
    assert fingerprint(user("What is the capital of France?", system="Be brief.")).exact != base


def test_exact_of_sampled_prompt_sees_the_middle() -> None:
    text = BREAD * 200  # ~250 KB
    middle = len(text) // 2 + 7  # not inside any sampled window
    edited = text[:middle] + "X" + text[middle + 1 :]
    assert sample_text(edited) == sample_text(text)
    a, b = fingerprint(user(text)), fingerprint(user(edited))
    assert a.sampled and b.sampled
    assert a.simhash == b.simhash
    assert a.exact != b.exact
    assert fingerprint(user(text.upper())).exact == a.exact


# --- simhash -----------------------------------------------------------------------------


def reference_simhash(text: str) -> int:
    """The definition, one shingle and one bit at a time."""
    crcs = [zlib.crc32(word) for word in words(text)]
    if not crcs:
        return 0
    k = min(3, len(crcs))
    features = []
    for i in range(len(crcs) - k + 1):
        feature = 0
        for j in range(k):
            feature ^= crcs[i + j] * _MULTIPLIERS[j]
        features.append(feature & (2**64 - 1))
    result = 0
    for bit in range(64):
        if 2 * sum((f >> bit) & 1 for f in features) > len(features):
            result |= 1 << bit
    return result


def test_simhash_matches_the_reference_definition() -> None:
    rng = random.Random(11)
    vocabulary = ["".join(rng.choices("abcdefgh", k=rng.randint(1, 7))) for _ in range(300)]
    sizes = [*range(0, 12), 100, 127, 128, 129, 255, 256, 257, 1000, 4099]
    for size in sizes:
        text = " ".join(rng.choice(vocabulary) for _ in range(size))
        assert simhash(text) == reference_simhash(text), size
    for paragraph in PARAGRAPHS:
        assert simhash(paragraph) == reference_simhash(paragraph)


def test_simhash_one_word_edit_is_near() -> None:
    for paragraph in PARAGRAPHS:
        tokens = paragraph.split()
        assert 190 <= len(tokens) <= 230
        for position in (0, len(tokens) // 2, len(tokens) - 1):
            edited = [*tokens]
            edited[position] = "zebra"
            distance = hamming(simhash(paragraph), simhash(" ".join(edited)))
            assert distance <= 10, (position, distance)


def test_simhash_unrelated_prompts_are_far() -> None:
    distances = [hamming(simhash(a), simhash(b)) for a, b in itertools.combinations(PARAGRAPHS, 2)]
    assert all(22 <= d <= 42 for d in distances), distances


def test_simhash_ignores_case_and_punctuation() -> None:
    assert simhash("Hello, World! How are you?") == simhash("hello world how are you")
    assert simhash("") == 0 and simhash("  ...  ") == 0


def test_simhash_is_a_fixed_value() -> None:
    assert simhash(STABLE_TEXT) == STABLE_SIMHASH


def test_simhash_is_stable_across_processes() -> None:
    code = (
        "from gateway.signals.fingerprint import simhash, topics, fingerprint\n"
        "from gateway.signals.prompt_text import PromptParts\n"
        f"t = {STABLE_TEXT!r}\n"
        "f = fingerprint(PromptParts(user_turns=(t,), last_user=t))\n"
        "print(simhash(t), f.exact, f.template, f.topics)\n"
    )
    outputs = set()
    for seed in ("0", "1", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        outputs.add(result.stdout)
    here = fingerprint(user(STABLE_TEXT))
    assert outputs == {f"{STABLE_SIMHASH} {here.exact} {here.template} {here.topics}\n"}


def test_bands() -> None:
    assert simhash_bands(0x0123456789ABCDEF) == ("b0:cdef", "b1:89ab", "b2:4567", "b3:0123")
    fp = fingerprint(user(BREAD))
    assert fp.bands == simhash_bands(fp.simhash)
    near = fingerprint(user(BREAD.replace("gummy", "heavy")))
    if hamming(fp.simhash, near.simhash) <= 3:
        assert set(fp.bands) & set(near.bands)  # the LSH guarantee


# --- template ---------------------------------------------------------------------------

FIRST = ["Marie", "Albert", "Ada", "Alan", "Grace", "Niels", "Rosalind", "Isaac", "Emmy", "Carl"]
LAST = ["Curie", "Einstein", "Lovelace", "Turing", "Hopper", "Bohr", "Franklin", "Noether"]
QUOTES = ["the sky is blue", "to be or not to be", "hello, world", "it's complicated, really"]
URLS = ["https://example.com/a?b=1", "http://x.org/p/q", "www.site.net/page", "ops@corp.io"]
CODE = ["def f(x):\n    return x * 2", "SELECT * FROM t WHERE id = 3;", "console.log('hi')"]
MONTHS = ["January", "March", "Sept.", "December"]


def harvester_prompt(rng: random.Random) -> str:
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    date = rng.choice(
        [
            f"{rng.randint(2000, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            f"{rng.choice(MONTHS)} {rng.randint(1, 28)}, {rng.randint(1990, 2030)}",
            f"{rng.randint(1, 28)} {rng.choice(MONTHS)} {rng.randint(1990, 2030)}",
        ]
    )
    return (
        f"Summarise the report on {name} dated {date} in {rng.randint(2, 5000)} words, "
        f"with a confidence of {rng.randint(1, 99)}% and a budget of ${rng.randint(1, 9)},"
        f"{rng.randint(100, 999)}.{rng.randint(10, 99)}. Include the quote "
        f'"{rng.choice(QUOTES)}" and cite {rng.choice(URLS)}, record '
        f"{rng.getrandbits(128):032x}.\n```python\n{rng.choice(CODE)}\n```\nReturn JSON only."
    )


def test_template_harvester_slots_map_to_one_template() -> None:
    rng = random.Random(3)
    system = "You are a data labelling assistant for Acme Research Labs."
    prints = [fingerprint(user(harvester_prompt(rng), system=system)) for _ in range(30)]
    assert len({fp.template for fp in prints}) == 1, {fp.skeleton for fp in prints}
    assert len({fp.exact for fp in prints}) == 30
    shown = prints[0].skeleton
    assert "<name>" in shown and "<n>" in shown and "<q>" in shown and "<url>" in shown
    assert "summarise the report on" in shown and "acme" not in shown


NATURAL_QUESTIONS = [
    "How long should I rest a roast chicken before carving it?",
    "Can I claim a home office deduction if I am a salaried employee?",
    "Why does Saturn have rings but Earth does not?",
    "Write a sonnet about the sea at night.",
    "What is the difference between a Roth IRA and a traditional IRA?",
    "How do I get rid of aphids on my tomato plants without pesticides?",
    "Explain how a black hole evaporates through Hawking radiation.",
    "What are some good exercises for lower back pain?",
    "Translate 'where is the train station' into Japanese.",
    "Why is the sky blue during the day and red at sunset?",
    "How do I fix a leaking kitchen tap with a ceramic cartridge?",
    "What caused the fall of the Western Roman Empire?",
    "Suggest a vegetarian dinner menu for eight guests.",
    "How does compound interest work on a savings account?",
    "Compose a limerick about a cat who loves jazz.",
    "What is the best way to learn to play the cello as an adult?",
    "How do vaccines train the immune system?",
    "Is it legal to record a phone call without telling the other person?",
    "Why do onions make you cry when you cut them?",
    "How far away is the Andromeda galaxy and how do we know?",
    "What should I pack for a week of hiking in the Scottish Highlands?",
    "How can I make my sourdough crust crispier?",
    "What does a capital gains tax allowance mean for selling shares?",
    "Recommend three novels for someone who loved Middlemarch.",
    "How do noise-cancelling headphones actually cancel noise?",
    "What are the symptoms of vitamin D deficiency?",
    "Write a short poem in the style of Emily Dickinson about snow.",
    "How do I politely decline a wedding invitation?",
    "Why do we have leap years?",
    "What is the rule against perpetuities in property law?",
]


def test_template_distinct_natural_questions_stay_distinct() -> None:
    assert len(NATURAL_QUESTIONS) == 30
    system = "You are a helpful assistant."
    templates = {fingerprint(user(q, system=system)).template for q in NATURAL_QUESTIONS}
    assert len(templates) >= 28


def test_template_ignores_earlier_turns_but_not_the_last() -> None:
    def chat(turns: list[str]) -> Fingerprint:
        messages = [{"role": "user", "content": turn} for turn in turns]
        return fingerprint(prompt_text({"messages": messages}, "openai"))

    a = chat(["Tell me about Rome.", "And its aqueducts?"])
    b = chat(["Tell me about Paris.", "And its aqueducts?"])
    c = chat(["Tell me about Rome.", "And its emperors?"])
    assert a.template == b.template
    assert a.template != c.template


def rag_prompt(document: str, fence: str) -> str:
    instructions = (
        "Answer the question using only the context below. If the answer is not in the "
        "context, say you do not know. Context:\n"
    )
    if fence == "```":
        block = f"```\n{document}\n```"
    elif fence == "tag":
        block = f'<document index="1">\n{document}\n</document>'
    else:
        block = f'"{document}"'
    return f"{instructions}{block}\nQuestion: what is the main finding?"


DOCUMENTS = [
    "The 2019 survey of 1,204 farms found that cover crops raised yields by 7%.",
    "Dr. Ana Souza reports that the new bridge design reduces steel use by a third.",
    "Quarterly revenue at Northwind fell as the company exited its retail business.",
    "A trial in Leeds showed that reminders by text message cut missed appointments.",
    "The committee concluded that the outage was caused by an expired certificate.",
]


@pytest.mark.parametrize("fence", ["```", "tag", "quote"])
def test_template_rag_scaffold_is_one_template(fence: str) -> None:
    templates = {fingerprint(user(rag_prompt(doc, fence))).template for doc in DOCUMENTS}
    assert len(templates) == 1
    long_docs = [(doc + " ") * 300 for doc in DOCUMENTS]  # ~25 KB: the skeleton input is cut
    long_templates = {fingerprint(user(rag_prompt(doc, fence))).template for doc in long_docs}
    assert len(long_templates) == 1


def test_skeleton_masks() -> None:
    cases = {
        "Call `f(x)` now": "call <code> now",
        "See https://a.b/c?d=1, or mail bob.smith+x@mail.co.uk.": "see <url> , or mail <url> .",
        "(www.x.org/a_b)": "( <url> )",
        "Say 'hello there' but don't shout": "say <q> but don't shout",
        "Use “curly quotes” and «guillemets»": "use <q> and <q>",
        "Hash d41d8cd98f00b204e9800998ecf8427e ok": "hash <id> ok",
        "Pay $1,200.50 by 2024-05-01 at 12:30, or 15% on March 3": (
            "pay $ <n> by <n> at <n> , or <n> on <n>"
        ),
        "gpt4 and v2 stay, 3rd and 10kg go": "gpt4 and v2 stay, <n> and <n> go",
        "I met Ada Lovelace in London.": "i met <name> in london.",
        "Ada Lovelace wrote notes.": "ada lovelace wrote notes.",
        "Yesterday Ada Lovelace King wrote.": "yesterday <name> wrote.",
        "<doc>anything at all</doc> then": "<doc> <q> </doc> then",
        "```\ncode without an end": "<code>",
    }
    for text, expected in cases.items():
        assert skeleton(text) == expected, text


def test_skeleton_is_shown_truncated() -> None:
    fp = fingerprint(user("word " * 400))
    assert len(fp.skeleton) <= 300
    assert fp.template != fingerprint(user("word " * 401)).template


# --- topics -----------------------------------------------------------------------------

COOKING = (
    "How long should I braise beef short ribs in the oven, and what temperature keeps the "
    "meat tender without drying out the sauce? I usually sear the ribs, add red wine, stock, "
    "garlic and rosemary, then cover the casserole."
)
COOKING_REPHRASED = (
    "What oven temperature and braising time give tender short ribs? After searing the beef "
    "I pour in wine and stock with rosemary and garlic and put the lid on the casserole."
)
ASTRONOMY = (
    "Why do astronomers use infrared telescopes to observe distant galaxies, and how does "
    "the redshift of starlight from the early universe move visible light into the infrared "
    "range that the telescope mirror and detectors can capture?"
)
ASTRONOMY_REPHRASED = (
    "How does cosmological redshift push light from the earliest galaxies into the infrared, "
    "and why does that make infrared telescopes with cold detectors and large mirrors the "
    "right tool for astronomers observing the distant universe?"
)
CONTRACT = (
    "Is a contract still enforceable if one party signed it under duress, and can the "
    "aggrieved party rescind the agreement or claim damages for breach after performing "
    "some of the obligations under the contract?"
)
CONTRACT_REPHRASED = (
    "Can an agreement signed under duress be rescinded, or does the party who was pressured "
    "lose that right once they have performed obligations under the contract? Could they "
    "still claim damages for a breach of that contract?"
)


def test_topics_are_well_formed() -> None:
    for text in (COOKING, ASTRONOMY, CONTRACT, "", "the and of", "42 1999"):
        buckets = topics(text)
        assert list(buckets) == sorted(set(buckets))
        assert len(buckets) <= 8
        assert all(0 <= b < 256 for b in buckets)
    assert topics("the and of to please explain") == ()


def test_topics_separate_subjects_and_overlap_rephrasings() -> None:
    subjects = {
        "cooking": (COOKING, COOKING_REPHRASED),
        "astronomy": (ASTRONOMY, ASTRONOMY_REPHRASED),
        "contract": (CONTRACT, CONTRACT_REPHRASED),
    }
    buckets = {name: (set(topics(a)), set(topics(b))) for name, (a, b) in subjects.items()}
    for name, (a, b) in buckets.items():
        assert len(a) == 8 and len(b) == 8, name
        assert len(a & b) >= 4, (name, a & b)  # the same topic rephrased overlaps
    for x, y in itertools.combinations(buckets, 2):
        assert len(buckets[x][0] & buckets[y][0]) <= 2, (x, y)  # different topics mostly don't


def test_topics_come_from_the_last_user_turn() -> None:
    fp = fingerprint(user(ASTRONOMY, system=COOKING))
    assert fp.topics == topics(ASTRONOMY)
    assert fingerprint(PromptParts(system=COOKING)).topics == topics(COOKING)


# --- sampling ---------------------------------------------------------------------------


def test_sample_layout() -> None:
    text = "".join(f"{i:07d}\n" for i in range(20_000)).replace("\n", ";")  # 160 KB, no newlines
    sample = sample_text(text, DEFAULT_MAX_CHARS)
    head, *windows, tail = sample.split("\n")
    head_size, tail_size = DEFAULT_MAX_CHARS // 2, DEFAULT_MAX_CHARS // 4
    assert head == text[:head_size] and tail == text[-tail_size:]
    count = (DEFAULT_MAX_CHARS - head_size - tail_size) // 1024
    assert count >= 2 and [len(w) for w in windows] == [1024] * count
    starts = [text.index(w) for w in windows]
    assert head_size < starts[0] and starts[-1] < len(text) - tail_size - 1024
    assert starts == sorted(starts)
    gaps = [b - a for a, b in itertools.pairwise([head_size, *starts])]
    assert max(gaps) - min(gaps) <= 1024  # evenly spaced
    assert len(sample) == DEFAULT_MAX_CHARS + count + 1
    assert sample_text(text, DEFAULT_MAX_CHARS) == sample
    assert sample_text("short", 100) == "short"
    assert len(sample_text(text, 1)) <= 3


def test_one_megabyte_prompt_is_sampled_and_deterministic() -> None:
    rng = random.Random(5)
    paragraphs = [*PARAGRAPHS]
    text = "\n\n".join(rng.choice(paragraphs) for _ in range(900))
    assert len(text) > 1_000_000
    a = fingerprint(user(text))
    b = fingerprint(user(text))
    assert a.sampled and not fingerprint(user(BREAD)).sampled
    assert a == b
    assert a.chars == len(text)
    assert sample_text(text) == sample_text(text)
    assert len(sample_text(text)) <= DEFAULT_MAX_CHARS + 16


def test_max_chars_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        fingerprint(user("hi"), max_chars=0)


# --- properties ---------------------------------------------------------------------------


def assert_well_formed(fp: Fingerprint, text_len: int) -> None:
    assert len(fp.exact) == 16 and int(fp.exact, 16) >= 0
    assert len(fp.template) == 16 and int(fp.template, 16) >= 0
    assert 0 <= fp.simhash < 2**64
    assert fp.bands == simhash_bands(fp.simhash)
    assert len(fp.skeleton) <= 300
    assert list(fp.topics) == sorted(set(fp.topics)) and len(fp.topics) <= 8
    assert all(0 <= t < 256 for t in fp.topics)
    assert isinstance(fp.elicits_reasoning, bool)
    assert fp.chars >= text_len


_texty = st.text(
    alphabet=st.characters(codec="utf-8") | st.sampled_from(list("\"'`<>/ \n\t0123456789AZaz.,")),
    max_size=400,
)


@settings(max_examples=200, deadline=None)
@given(text=_texty, system=_texty, max_chars=st.integers(min_value=1, max_value=600))
def test_arbitrary_text_never_raises(text: str, system: str, max_chars: int) -> None:
    fp = fingerprint(user(text, system=system), max_chars=max_chars)
    assert_well_formed(fp, len(text))
    assert fp.sampled == (fp.chars > max_chars)
    assert fingerprint(user(text, system=system), max_chars=max_chars) == fp


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=300))
def test_surrogates_and_control_characters(text: str) -> None:
    lone = text + "\ud800 \x00 \u202e"
    assert_well_formed(fingerprint(user(lone)), len(lone))
    assert simhash(text.upper()) == simhash(text.lower()) or not text.isascii()


def test_topics_ignore_pasted_documents_and_code() -> None:
    question = "Which holidays do part-time employees get?"
    with_docs = (f"<document title='handbook'>{ASTRONOMY}</document>\n"
                 f"```\n{COOKING}\n```\n{question}")
    fp = fingerprint(PromptParts(last_user=with_docs))
    assert set(fp.topics) <= set(topics(question + " document title handbook"))
    assert not set(fp.topics) & (set(topics(ASTRONOMY)) | set(topics(COOKING))) - set(
        topics(question + " document"))
