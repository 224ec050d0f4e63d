"""The policy reference page, generated from the same models the loader uses.

`distill-guard policy docs > docs/policies.md` writes it; a test fails when the
committed page differs from what the models say, so it cannot drift.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from gateway.pipeline.match import Match
from gateway.pipeline.policy_file import IdentityConfig, RuleBase, policy_file_model
from gateway.policies.registry import kinds

HEADER = """\
# Policy reference

Generated from the policy models by `distill-guard policy docs`; do not edit by
hand (a test compares this page with the models). Check a file with
`distill-guard policy check FILE`; editors can validate as you type against
`policies/policy.schema.json` (see the README's "Editing policies").

Durations and rates are written as `amount/unit` (`600/min`, `2M/hour`) where a
field says so. Every object is strict: an unknown key is an error that names
the file and line.
"""


def reference_markdown() -> str:
    sections = [HEADER]
    file_model = policy_file_model()
    sections.append(_model_section("Policy file", file_model, skip={"rules"}, extra=(
        "| `rules` | list of rules | `[]` | Rules, applied in this order; each is "
        "one of the kinds below. |")))
    sections.append(_model_section("`identity`", IdentityConfig))
    sections.append(_model_section("Rule (every kind)", RuleBase, extra=(
        "| `kind` | string | required | The policy kind: "
        + ", ".join(f"`{name}`" for name in kinds()) + ". |\n"
        "| `config` | object | `{}` | Settings of that kind (below). |")))
    sections.append(_model_section("`match`", Match))
    for name, kind in kinds().items():
        seen: set[type[BaseModel]] = set()
        sections.append(f"## Kind `{name}`\n\n{_doc(kind.config)}\n")
        for title, model in _nested(f"`{name}` config", kind.config, seen):
            sections.append(_model_section(title, model, level=3,
                                           show_doc=model is not kind.config))
    return "\n".join(sections).rstrip() + "\n"


def _nested(
    title: str, model: type[BaseModel], seen: set[type[BaseModel]]
) -> list[tuple[str, type[BaseModel]]]:
    """The model, then every model its fields use (depth first, once each)."""
    seen.add(model)
    out = [(title, model)]
    for field_name, field in model.model_fields.items():
        for sub in _models_in(field.annotation):
            if sub not in seen:
                out.extend(_nested(f"{title} → `{field_name}`", sub, seen))
    return out


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(_models_in(arg))
    return found


def _model_section(
    title: str, model: type[BaseModel], *, level: int = 2, skip: frozenset[str] | set[str] = (
        frozenset()), extra: str = "", show_doc: bool = True
) -> str:
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        rows.append(f"| `{field.alias or name}` | {_type(field.annotation)} | "
                    f"{_default(field)} | {_cell(field.description or '')} |")
    if extra:
        rows.append(extra)
    doc = _doc(model) if show_doc else ""
    return f"{'#' * level} {title}\n\n" + (f"{doc}\n\n" if doc else "") + "\n".join(rows) + "\n"


def _doc(model: type[BaseModel]) -> str:
    text = (model.__doc__ or "").strip()
    if text.startswith("A rule of kind") or text == "A distill-guard policy file.":
        return ""
    return " ".join(line.strip() for line in text.splitlines())


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is typing.Literal:
        return " \\| ".join(f"`{json.dumps(a)}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(a) for a in args)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin in (list, tuple, set, frozenset):
        inner = ", ".join(_type(a) for a in args if a is not Ellipsis)
        return f"list of {inner}" if origin is not tuple else f"[{inner}]"
    if origin is dict:
        return f"map {_type(args[0])} → {_type(args[1])}"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return "object"
        names = {str: "string", int: "integer", float: "number", bool: "boolean"}
        return names.get(annotation, annotation.__name__)
    return str(annotation).replace("typing.", "")


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        try:
            value = field.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "see below"
        if isinstance(value, BaseModel):
            return "see below" if value.model_dump() else "`{}`"
        return f"`{json.dumps(value, default=str)}`"
    if field.default is PydanticUndefined:
        return "required"
    if isinstance(field.default, BaseModel):
        return "see below"
    return f"`{json.dumps(field.default, default=str)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")
