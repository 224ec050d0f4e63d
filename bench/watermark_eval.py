"""How well the keyed lexical watermark works: power, false positives, attribution,
robustness and utility, on demo-model output and on real English.

    .venv/bin/python bench/watermark_eval.py            # ~2-3 min on 2 cores
    .venv/bin/python bench/watermark_eval.py --texts 20 # quicker, noisier
    .venv/bin/python bench/watermark_eval.py --json out.json

Texts:
- *demo*: the demo model's prose (`gateway/demo_upstream/prose.py`), generated
  in-process, cut to the length wanted;
- *real*: human-written English that ships with Python itself, the language
  reference in `pydoc_data.topics` (~65,000 words of technical prose with code
  samples; reST heading underlines are dropped, as they would read as `~~~`
  code fences). Never generated, never touched by the gateway. No download.

Every figure is printed as a table; docs/watermark.md carries the output of a run.
"""

from __future__ import annotations

import argparse
import difflib
import json
import random
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from gateway.demo_upstream import prose
from gateway.watermark import DETECTION_Z, Detector, Watermarker, default_table

SECRET = b"bench-deployment-secret"
LENGTHS = (50, 100, 200, 300, 500, 1000, 2000)
_WORD = re.compile(r"\S+\s*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")

RESULTS: dict[str, Any] = {}


# -- texts ---------------------------------------------------------------------------------

def cut(text: str, words: int) -> str:
    return "".join(_WORD.findall(text)[:words]).rstrip()


def demo_text(seed: int, words: int) -> str:
    paragraphs = max(1, words // 60 + 1)
    text = prose.answer(seed, paragraphs)
    while len(text.split()) < words:
        paragraphs += 2
        text = prose.answer(seed, paragraphs)
    return cut(text, words)


@lru_cache(maxsize=1)
def real_corpus() -> str:
    import pydoc_data.topics

    text = "\n\n".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics))
    return re.sub(r"(?m)^[~*=\-^]{3,}[ \t]*$", "", text)


def real_passages(words: int, count: int, rng: random.Random) -> list[str]:
    """`count` passages of `words` words from random offsets of the real corpus."""
    tokens = _WORD.findall(real_corpus())
    starts = [rng.randrange(0, len(tokens) - words) for _ in range(count)]
    return ["".join(tokens[s:s + words]).rstrip() for s in starts]


def disjoint_passages(words: int) -> list[str]:
    """The real corpus cut into consecutive passages of `words` words (no overlap)."""
    tokens = _WORD.findall(real_corpus())
    return ["".join(tokens[s:s + words]).rstrip()
            for s in range(0, len(tokens) - words + 1, words)]


# -- attacks -------------------------------------------------------------------------------

def replace_words(text: str, share: float, rng: random.Random, vocab: Sequence[str]) -> str:
    tokens = _WORD.findall(text)
    for i in rng.sample(range(len(tokens)), int(len(tokens) * share)):
        tokens[i] = rng.choice(vocab) + tokens[i][len(tokens[i].rstrip()):]
    return "".join(tokens)


def drop_every_other_sentence(text: str) -> str:
    return " ".join(_SENTENCE.split(text)[::2])


# -- helpers -------------------------------------------------------------------------------

def word_diff(before: str, after: str) -> list[tuple[str, str]]:
    """(before, after) text segments, word-aligned; equal segments have before == after."""
    a, b = _WORD.findall(before), _WORD.findall(after)
    out = []
    matcher = difflib.SequenceMatcher(None, [w.strip() for w in a], [w.strip() for w in b],
                                      autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out += [(w, w) for w in a[i1:i2]]
        else:
            out.append(("".join(a[i1:i2]), "".join(b[j1:j2])))
    return out


def identity(i: int) -> str:
    return f"{(i * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF:016x}"


def fmt_p(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.1e}"


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n### {title}\n")
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    RESULTS[title] = {"header": list(header), "rows": [list(map(str, r)) for r in rows]}


def power_row(label: Any, texts: list[str], detector: Detector) -> list[Any]:
    results = [detector.detect(t) for t in texts]
    ps = [r.deployment.p for r in results]
    zs = [r.deployment.z for r in results]
    positions = [r.positions for r in results]
    detected = sum(z >= DETECTION_Z for z in zs) / len(zs)
    return [label, f"{statistics.mean(positions):.1f}", f"{statistics.median(zs):.2f}",
            fmt_p(ps), f"{max(ps):.1e}", f"{detected:.0%}"]


POWER_HEADER = ("words", "positions (mean)", "median z", "median p", "worst p",
                f"detected (z >= {DETECTION_Z:g})")


# -- sections ------------------------------------------------------------------------------

def coverage_and_utility(n: int, rng: random.Random) -> None:
    rows = []
    table_ = default_table()
    for name, texts in (
        ("demo", [demo_text(s, 1000) for s in range(n)]),
        ("real", real_passages(1000, n, rng)),
    ):
        words = positions = changed = 0
        for i, text in enumerate(texts):
            marked = Watermarker(SECRET, identity(i)).mark(text)
            words += len(text.split())
            changed += sum(len(a.split()) for a, b in word_diff(text, marked) if a != b)
            positions += len(Detector(SECRET).positions(text))
        rows.append([name, words, f"{words / max(positions, 1):.1f}",
                     f"{changed / words:.2%}"])
    table("Coverage and utility (1,000-word texts)",
          ("text", "words", "words per distinct position", "words changed"), rows)
    print(f"\n(table: {len(table_)} sets, {len(table_.by_word)} words)")


def power(n: int, rng: random.Random) -> None:
    detector = Detector(SECRET)
    for name, make in (
        ("demo", lambda words, i: demo_text(1000 + i, words)),
        ("real", None),
    ):
        rows = []
        for words in LENGTHS:
            if make is None:
                texts = real_passages(words, n, rng)
            else:
                texts = [make(words, i) for i in range(n)]
            marked = [Watermarker(SECRET, identity(i)).mark(t) for i, t in enumerate(texts)]
            rows.append(power_row(words, marked, detector))
        table(f"Detection power: watermarked {name} text, {n} texts per length",
              POWER_HEADER, rows)


def pooled(n: int, rng: random.Random) -> None:
    """Many short outputs of one account scored together (`detect --combine`)."""
    ids = [identity(i) for i in range(1000)]
    detector = Detector(SECRET, ids)
    rows = []
    for name in ("demo", "real"):
        for count in (1, 3, 10, 30):
            detected = right = 0
            zs = []
            for trial in range(n):
                who = ids[rng.randrange(len(ids))]
                marker = Watermarker(SECRET, who)
                texts = ([demo_text(10_000 + trial * 50 + j, 300) for j in range(count)]
                         if name == "demo" else real_passages(300, count, rng))
                result = detector.detect(*(marker.mark(t) for t in texts))
                zs.append(result.deployment.z)
                detected += result.marked
                right += result.best is not None and result.best.identity == who
            rows.append([name, count, count * 300, f"{statistics.median(zs):.2f}",
                         f"{detected / n:.0%}", f"{right / n:.0%}"])
    table(f"Pooled 300-word outputs of one account, {n} trials per row",
          ("text", "outputs", "words", "median z", f"detected (z >= {DETECTION_Z:g})",
           "right identity first (of 1,000)"), rows)


def false_positives(n_keys: int, rng: random.Random) -> None:
    rows = []
    for words in (300, 1000, 2000):
        texts = disjoint_passages(words)
        zs = []
        for k in range(n_keys):
            detector = Detector(b"fp-%d" % k)
            zs += [detector.detect(t).deployment.z for t in texts]
        tests = len(zs)
        rows.append([words, tests, f"{statistics.mean(zs):+.2f}", f"{statistics.pstdev(zs):.2f}",
                     f"{max(zs):.2f}", f"{sum(z >= 1.645 for z in zs) / tests:.1%}",
                     f"{sum(z >= 2.326 for z in zs) / tests:.1%}",
                     f"{sum(z >= DETECTION_Z for z in zs)}/{tests}"])
    table(f"False positives: untouched real English (disjoint passages x {n_keys} secrets)",
          ("words", "tests", "mean z", "sd z", "max z", "p < 0.05", "p < 0.01",
           f"flagged (z >= {DETECTION_Z:g})"), rows)
    demo = [demo_text(5000 + i, 1000) for i in range(40)]
    zs = [Detector(b"fp-%d" % k).detect(t).deployment.z for k in range(n_keys) for t in demo]
    print(f"\nUnmarked demo text, 1,000 words, {len(zs)} tests: mean z {statistics.mean(zs):+.2f}, "
          f"sd {statistics.pstdev(zs):.2f}, max {max(zs):.2f}, "
          f"flagged {sum(z >= DETECTION_Z for z in zs)}")


def attribution(n: int, n_ids: int, rng: random.Random) -> None:
    ids = [identity(i) for i in range(n_ids)]
    detector = Detector(SECRET, ids)
    rows = []
    for name in ("demo", "real"):
        for words in (300, 1000, 2000):
            texts = ([demo_text(2000 + i, words) for i in range(n)] if name == "demo"
                     else real_passages(words, n, rng))
            right = attributed = wrong_attributed = 0
            margins = []
            for text in texts:
                who = ids[rng.randrange(n_ids)]
                result = detector.detect(Watermarker(SECRET, who).mark(text))
                assert result.best is not None and result.runner_up is not None
                hit = result.best.identity == who
                right += hit
                attributed += result.attributed and hit
                wrong_attributed += result.attributed and not hit
                margins.append(result.best.score.z - result.runner_up.score.z if hit else 0.0)
            rows.append([name, words, f"{right / n:.0%}", f"{attributed / n:.0%}",
                         wrong_attributed, f"{statistics.median(margins):.2f}"])
    table(f"Attribution among {n_ids:,} identities, {n} texts per row",
          ("text", "words", "right identity ranked first", "attributed (verdict)",
           "wrongly attributed", "median z margin over runner-up"), rows)


def real_vocabulary() -> list[str]:
    """Lower-case words of 3+ letters of the real corpus, for replacing real text."""
    return sorted({w.lower() for w in re.findall(r"\b[A-Za-z]{3,}\b", real_corpus())})


def robustness(n: int, n_ids: int, rng: random.Random) -> None:
    """Attacks on marked texts: random word replacement (each replaced word is a random
    word of the same kind of text: the demo's vocabulary, or the real corpus's)."""
    ids = [identity(i) for i in range(n_ids)]
    detector = Detector(SECRET, ids)
    vocabs = {"demo": sorted({w.lower() for w in prose.NOUNS + prose.ADJECTIVES + prose.VERBS}),
              "real": real_vocabulary()}
    for name in ("demo", "real"):
        vocab = vocabs[name]
        attacks: list[tuple[str, Callable[[str], str]]] = [
            ("none", lambda t: t),
            ("10% words replaced", lambda t, v=vocab: replace_words(t, 0.10, rng, v)),
            ("25% words replaced", lambda t, v=vocab: replace_words(t, 0.25, rng, v)),
            ("40% words replaced", lambda t, v=vocab: replace_words(t, 0.40, rng, v)),
            ("every other sentence removed", drop_every_other_sentence),
        ]
        for words in (1000, 2000):
            texts = ([demo_text(3000 + i, words) for i in range(n)] if name == "demo"
                     else real_passages(words, n, rng))
            owners = [ids[rng.randrange(n_ids)] for _ in texts]
            marked = [Watermarker(SECRET, who).mark(t)
                      for who, t in zip(owners, texts, strict=True)]
            rows = []
            for label, attack in attacks:
                attacked = [attack(t) for t in marked]
                results = [detector.detect(t) for t in attacked]
                ps = [r.deployment.p for r in results]
                detected = sum(r.marked for r in results) / n
                right = sum(r.best is not None and r.best.identity == who
                            for r, who in zip(results, owners, strict=True)) / n
                rows.append([label, f"{statistics.mean(r.positions for r in results):.1f}",
                             fmt_p(ps), f"{detected:.0%}", f"{right:.0%}"])
            table(f"Robustness: watermarked {name} text, {words} words, {n} texts",
                  ("attack", "positions (mean)", "median p",
                   f"detected (z >= {DETECTION_Z:g})", f"right identity first (of {n_ids:,})"),
                  rows)


def samples(real_count: int = 2) -> None:
    """Before/after: the demo passage (of 20) and the ~250-word real passages (prose,
    not grammar rules) with the most changes: where the mark is densest."""
    print("\n### Before / after samples\n")
    marker = Watermarker(SECRET, identity(3))
    picked: list[tuple[str, str, str, list[tuple[str, str]]]] = []
    for name, texts, count in (
        ("demo", [demo_text(seed, 150) for seed in range(40, 60)], 1),
        ("real", [p for p in disjoint_passages(250) if "::=" not in p], real_count),
    ):
        scored = []
        for text in texts:
            marked = marker.mark(text)
            diff = word_diff(text, marked)
            scored.append((sum(a != b for a, b in diff), text, marked, diff))
        scored.sort(key=lambda t: -t[0])  # stable: the first of equals
        picked += [(name, text, marked, diff) for _, text, marked, diff in scored[:count]]
    out = []
    for name, text, marked, diff in picked:
        shown = "".join(
            a if a == b else f"**[{a.strip()} → {b.strip()}]**{a[len(a.rstrip()):]}"
            for a, b in diff)
        shown = re.sub(r"\s+", " ", shown)
        print(f"{name} ({sum(a != b for a, b in diff)} changes): {shown}\n")
        out.append({"text": name, "before": text, "after": marked})
    RESULTS["samples"] = out


def cpu_cost(repeats: int = 15) -> None:
    """CPU per StreamMarker.feed() call (min over repeats; the rest is noise)."""
    marker = Watermarker(SECRET, identity(1))
    tokens = prose.answer_tokens(7, 40, "")  # " word" tokens, as the demo model streams them
    rows = []
    for n in (1, 3, 5):
        deltas = ["".join(tokens[i:i + n]) for i in range(0, len(tokens), n)]
        best = float("inf")
        for _ in range(repeats):
            stream = marker.stream()
            started = time.process_time()
            for delta in deltas:
                stream.feed(delta)
            stream.flush()
            best = min(best, (time.process_time() - started) / len(deltas))
        rows.append([f"{n}-word deltas", len(deltas), f"{best * 1e6:.1f}"])
    text = demo_text(1, 1000)
    best = min(_timed(lambda: marker.mark(text)) for _ in range(repeats))
    rows.append(["mark(), 1,000 words", 1, f"{best * 1e6:.0f}"])
    best = min(_timed(lambda: Watermarker(SECRET, identity(2)).stream()) for _ in range(repeats))
    rows.append(["Watermarker(...).stream()", 1, f"{best * 1e6:.1f}"])
    table("CPU cost (demo prose; min over repeats)", ("call", "calls", "us per call"), rows)


def _timed(fn: Callable[[], object]) -> float:
    started = time.process_time()
    for _ in range(20):
        fn()
    return (time.process_time() - started) / 20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=50, help="texts per table row")
    parser.add_argument("--keys", type=int, default=100,
                        help="secrets for the false-positive rows")
    parser.add_argument("--identities", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.perf_counter()
    print(f"# Watermark evaluation (python {sys.version.split()[0]}, seed {args.seed})")
    coverage_and_utility(args.texts, rng)
    power(args.texts, rng)
    pooled(max(10, args.texts // 2), rng)
    false_positives(args.keys, rng)
    attribution(args.texts, args.identities, rng)
    robustness(args.texts, args.identities, rng)
    samples()
    cpu_cost()
    print(f"\n(finished in {time.perf_counter() - started:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(RESULTS, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
