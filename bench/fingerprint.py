"""Cost of `gateway.signals` per prompt size (best of N, via timeit).

    .venv/bin/python bench/fingerprint.py [--repeat 7] [--max-chars 16384] [--parts]

Prompts are ordinary English prose (the demo model's generator) in one user
turn under a short system prompt, at 1 KB, 10 KB, 100 KB and 1 MB. The table
shows the best-of-N cost of `prompt_text(body)` and of `fingerprint(parts)`,
whether the prompt was sampled, and with `--parts` the cost of each stage on
its own. No assertions: this is a measurement to read, not a test. Best-of-N
is the floor on an idle core; a busy machine adds to every row.
"""

from __future__ import annotations

import argparse
import os
import platform
import timeit
from collections.abc import Callable
from functools import partial
from typing import Any

from gateway.demo_upstream.prose import answer
from gateway.signals import PromptParts, ReasoningPatterns, fingerprint, prompt_text
from gateway.signals.fingerprint import (
    DEFAULT_MAX_CHARS,
    SKELETON_HEAD,
    SKELETON_TAIL,
    bounded,
    sample_text,
    simhash,
    skeleton,
    topics,
)

SIZES = (("1 KB", 1_000), ("10 KB", 10_000), ("100 KB", 100_000), ("1 MB", 1_000_000))
STAGES = ("lower", "simhash", "skeleton", "elicit", "topics")


def prose(chars: int) -> str:
    paragraphs: list[str] = []
    total, seed = 0, 0
    while total < chars:
        paragraph = answer(seed, paragraphs=3)
        paragraphs.append(paragraph)
        total += len(paragraph) + 2
        seed += 1
    return "\n\n".join(paragraphs)[:chars]


def best(fn: Callable[[], object], repeat: int) -> float:
    """Best-of-`repeat` seconds per call, each repeat about 0.04 s of calls."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()  # calls that take >= 0.2 s
    number = max(1, number // 5)
    return min(timer.repeat(repeat=repeat, number=number)) / number


def chat_body(chars: int) -> dict[str, Any]:
    """A chat request: a short system prompt and `chars` characters of prose from the user."""
    return {
        "model": "m",
        "messages": [
            {"role": "system", "content": "You are a careful assistant. Answer plainly."},
            {"role": "user", "content": prose(chars)},
        ],
    }


def cost(chars: int, repeat: int = 7,
         max_chars: int = DEFAULT_MAX_CHARS) -> tuple[float, float, bool]:
    """(prompt_text seconds, fingerprint seconds, whether sampled) for a prompt of `chars`
    characters, each the best of `repeat` (bench/suite.py reports the 100 KB row)."""
    body = chat_body(chars)
    parts = prompt_text(body, "openai")
    sampled = fingerprint(parts, max_chars=max_chars).sampled
    t_parts = best(partial(prompt_text, body, "openai"), repeat)
    t_fp = best(partial(fingerprint, parts, max_chars=max_chars), repeat)
    return t_parts, t_fp, sampled


def stage_functions(
    parts: PromptParts, max_chars: int, patterns: ReasoningPatterns
) -> list[Callable[[], object]]:
    """The fingerprint's stages, each on its own (`--parts`)."""
    full = parts.full_text()
    sample = sample_text(full, max_chars)
    source = parts.template_text()
    return [
        partial(lambda text: text.lower().encode(), full),  # the exact hash's full read
        partial(simhash, sample),
        partial(skeleton, source),
        partial(patterns.matches, bounded(source, SKELETON_HEAD, SKELETON_TAIL)),
        partial(topics, parts.last_user),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timeit repeats (best is kept)")
    parser.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, help="sample size")
    parser.add_argument("--parts", action="store_true", help="also time each stage")
    args = parser.parse_args()

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"python {platform.python_version()} {platform.machine()}, {os.cpu_count()} cpus,"
        f" load {load:.2f}, max_chars={args.max_chars}, best of {args.repeat}"
    )
    header = f"{'size':>7} {'prompt_text':>12} {'fingerprint':>12} {'sampled':>8}"
    if args.parts:
        header += "".join(f" {name:>9}" for name in STAGES)
    print(header)
    patterns = ReasoningPatterns.default()
    for label, chars in SIZES:
        body = chat_body(chars)
        parts = prompt_text(body, "openai")
        t_parts, t_fp, sampled = cost(chars, args.repeat, args.max_chars)
        row = f"{label:>7} {t_parts * 1e6:>10.1f}us {t_fp * 1e6:>10.1f}us {sampled!s:>8}"
        if args.parts:
            for stage in stage_functions(parts, args.max_chars, patterns):
                row += f" {best(stage, args.repeat) * 1e6:>7.0f}us"
        print(row)


if __name__ == "__main__":
    main()
