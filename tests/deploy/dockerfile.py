"""A small Dockerfile reader for the deployment tests: instructions, stages, flags."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass
class Instruction:
    keyword: str  # upper case
    flags: dict[str, str]  # --from=build -> {"from": "build"}
    args: list[str]  # exec form (JSON) or shell words
    exec_form: bool
    raw: str  # the text after the keyword and flags
    line: int


@dataclass
class Stage:
    name: str | None
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def _logical_lines(text: str) -> list[tuple[int, str]]:
    lines: list[tuple[int, str]] = []
    current, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # comment lines inside a continuation are dropped
        if not current:
            start = number
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append((start, current + stripped))
        current = ""
    return lines


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, in order."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in _logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        flags: dict[str, str] = {}
        rest = rest.strip()
        while keyword != "RUN" and rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags[name] = value
            rest = rest.strip()
        if keyword == "HEALTHCHECK":  # its options, then CMD ...
            cmd, _, rest = rest.partition(" ")
            assert cmd.upper() in ("CMD", "NONE"), line
        exec_form = rest.startswith("[")
        words = json.loads(rest) if exec_form else shlex.split(rest, posix=True)
        instruction = Instruction(keyword, flags, words, exec_form, rest, number)
        if keyword == "FROM":
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(name, base))
        elif keyword == "ARG" and not stages:
            name, _, value = rest.partition("=")
            args[name] = value
        else:
            stages[-1].instructions.append(instruction)
    return args, stages


def env_of(stage: Stage) -> dict[str, str]:
    """ENV key=value pairs of a stage (the form this Dockerfile uses)."""
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for word in instruction.args:
            key, sep, value = word.partition("=")
            assert sep, f"line {instruction.line}: ENV in key=value form, please"
            env[key] = value
    return env


def copies(stage: Stage) -> list[tuple[list[str], str]]:
    """(sources, destination) of the stage's COPY instructions from the build context."""
    return [(i.args[:-1], i.args[-1]) for i in stage.all("COPY") if "from" not in i.flags]


def source_of(stage: Stage, image_path: str) -> Path | None:
    """The repository file that the stage's COPY put at `image_path`, if any."""
    target = PurePosixPath(image_path)
    for sources, dest in reversed(copies(stage)):
        for source in sources:
            if dest.endswith("/") and source.endswith("/"):
                # COPY dir/ /dest/: the directory's contents land under dest
                try:
                    rest = target.relative_to(dest)
                except ValueError:
                    continue
                return ROOT / source / rest
            if PurePosixPath(dest) == target or (
                    dest.endswith("/") and target == PurePosixPath(dest) / Path(source).name):
                return ROOT / source
    return None


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + "$")


def dockerignore_excludes(path: str, lines: list[str]) -> bool:
    """Whether Docker leaves `path` (relative to the context) out of the build context.

    Docker's rules: patterns in order, the last one matching wins, `!` re-includes,
    and a pattern matching a parent directory matches everything under it.
    """
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        regex = _pattern_regex(pattern)
        if any(regex.match(c) for c in candidates):
            excluded = not negated
    return excluded
