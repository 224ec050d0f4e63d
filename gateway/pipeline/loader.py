"""Load a policy file and report every problem as `file:line: field: message`."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from gateway.pipeline.policy_file import policy_file_model
from gateway.policies.registry import kinds

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


class PolicyError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# Values built from the node tree, aliases expanded. A policy is a few hundred values
# (a big `tiers` map some tens of thousands); YAML aliases can make a short file
# expand exponentially ("billion laughs"), which took seconds to minutes to refuse.
MAX_VALUES = 500_000


class _TooBig(Exception):
    pass


class _Walk:
    """One walk of a node tree: the values still allowed, one scalar constructor."""

    def __init__(self) -> None:
        self.left = MAX_VALUES
        # one constructor per walk: a new SafeLoader per scalar cost ~0.1 ms each
        self.constructor = yaml.SafeLoader("")

    def scalar(self, node: yaml.Node) -> Any:
        return self.constructor.construct_object(node, deep=True)


def _to_python(node: yaml.Node, loc: Loc, lines: dict[Loc, int], problems: list[str],
               walk: _Walk | None = None) -> Any:
    """Build plain data from the YAML node tree, noting the line of every path."""
    walk = walk if walk is not None else _Walk()
    walk.left -= 1
    if walk.left < 0:
        raise _TooBig
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node)) if not isinstance(
                key_node, yaml.ScalarNode) else walk.scalar(key_node)
            if not isinstance(key, Hashable):
                # `? [a, b]: x`: a list or mapping as a key (tests/hostile)
                key = yaml.serialize(key_node).strip().replace("\n", " ")
                lines[(*loc, key)] = key_node.start_mark.line + 1
                problems.append(f"{'.'.join(map(str, (*loc, key)))}\0keys must be strings")
            if isinstance(key, str) and key in out:
                lines[(*loc, key)] = key_node.start_mark.line + 1
                problems.append(f"{'.'.join(map(str, (*loc, key)))}\0duplicate key {key!r}")
            out[key] = _to_python(value_node, (*loc, key), lines, problems, walk)
            lines[(*loc, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*loc, i), lines, problems, walk)
                for i, item in enumerate(node.value)]
    return walk.scalar(node)


def _line_for(loc: Loc, lines: dict[Loc, int]) -> tuple[int, Loc]:
    """The line of the deepest known part of `loc`, and `loc` without union tags."""
    clean: list[str | int] = []
    line = lines.get((), 1)
    for part in loc:
        candidate = (*clean, part)
        if candidate in lines:
            clean.append(part)
            line = lines[candidate]
        elif isinstance(part, str) and len(clean) >= 2 and clean[-2] == "rules":
            continue  # discriminated-union tag (the rule's kind), not a real field
        else:
            clean.append(part)
    return line, tuple(clean)


def _field_name(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_policy(text: str, filename: str = "<policy>") -> BaseModel:
    lines: dict[Loc, int] = {}
    raw_problems: list[str] = []
    # Only PolicyError leaves here: the hot reload keeps the running policy on it, and
    # `policy check` prints it; anything else killed the reload watcher or printed a
    # traceback (tests/hostile/test_policy_fuzz.py).
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = {} if root is None else _to_python(root, (), lines, raw_problems)
    except yaml.YAMLError as exc:  # bad syntax, or a tag SafeLoader does not construct
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise PolicyError([Problem(filename, line, "", f"invalid YAML: {exc}")]) from exc
    except RecursionError as exc:
        raise PolicyError([Problem(filename, 1, "", "invalid YAML: nested too deeply")]) from exc
    except _TooBig as exc:
        raise PolicyError([Problem(filename, 1, "", f"more than {MAX_VALUES} values once "
                                   "YAML aliases are expanded")]) from exc
    problems = []
    for raw in raw_problems:
        field, message = raw.split("\0")
        loc = tuple(int(p) if p.isdigit() else p for p in field.split("."))
        problems.append(Problem(filename, lines.get(loc, 1), _field_name(loc), message))
    if not isinstance(data, dict):
        problems.append(Problem(filename, 1, "", "a policy file must be a mapping"))
        raise PolicyError(problems)
    problems.extend(_duplicate_rule_names(data, filename, lines))
    unknown = _unknown_kinds(data, filename, lines)
    problems.extend(unknown.values())
    try:
        policy = policy_file_model().model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            if error["loc"][:2] in unknown:
                continue  # already reported, more plainly
            line, loc = _line_for(tuple(error["loc"]), lines)
            problems.append(Problem(filename, line, _field_name(loc), error["msg"]))
    if problems:
        raise PolicyError(sorted(problems, key=lambda p: p.line))
    return policy


def _unknown_kinds(
    data: dict[str, Any], filename: str, lines: dict[Loc, int]
) -> dict[tuple[str | int, ...], Problem]:
    rules = data.get("rules")
    if not isinstance(rules, list):
        return {}
    known = kinds()
    found: dict[tuple[str | int, ...], Problem] = {}
    for i, rule in enumerate(rules):
        kind = rule.get("kind") if isinstance(rule, dict) else None
        if isinstance(kind, str) and kind not in known:
            found[("rules", i)] = Problem(
                filename, lines.get(("rules", i, "kind"), 1), f"rules[{i}].kind",
                f"unknown policy kind {kind!r} (known kinds: {', '.join(sorted(known))})",
            )
    return found


def _duplicate_rule_names(
    data: dict[str, Any], filename: str, lines: dict[Loc, int]
) -> list[Problem]:
    rules = data.get("rules")
    if not isinstance(rules, list):
        return []
    seen: dict[str, int] = {}
    problems = []
    for i, rule in enumerate(rules):
        name = rule.get("name") if isinstance(rule, dict) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            problems.append(Problem(
                filename, lines.get(("rules", i, "name"), 1), f"rules[{i}].name",
                f"duplicate rule name {name!r} (first used by rules[{seen[name]}])",
            ))
        else:
            seen[name] = i
    return problems


def load_policy(path: str | Path) -> BaseModel:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([Problem(str(path), 1, "", f"cannot read policy file: {exc}")]) from exc
    return parse_policy(text, str(path))
