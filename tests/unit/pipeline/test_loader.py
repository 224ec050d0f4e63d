"""Each authoring mistake gets an exact `file:line: field: message` error."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.pipeline.loader import PolicyError, load_policy, parse_policy
from gateway.pipeline.policy_file import json_schema

FIXTURES = Path(__file__).parents[2] / "fixtures" / "policies"
REPO = Path(__file__).parents[3]


def problems(name: str) -> list[str]:
    path = FIXTURES / "invalid" / name
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    return [str(p).removeprefix(f"{path}:") for p in caught.value.problems]


def test_unknown_key_names_line_and_field() -> None:
    assert problems("unknown_key.yaml") == [
        "6: rules[0].config.allow_modelz: Extra inputs are not permitted"
    ]


def test_unknown_kind() -> None:
    [problem] = problems("unknown_kind.yaml")
    assert problem.startswith("4: rules[0].kind: unknown policy kind 'rate_limiter' (known kinds: ")
    assert "access" in problem


def test_duplicate_rule_name_points_at_second_rule() -> None:
    assert problems("duplicate_rule_name.yaml") == [
        "5: rules[1].name: duplicate rule name 'same' (first used by rules[0])"
    ]


def test_duplicate_yaml_key() -> None:
    assert problems("duplicate_key.yaml") == ["6: rules[0].shadow: duplicate key 'shadow'"]


def test_invalid_yaml_has_line() -> None:
    [problem] = problems("bad_yaml.yaml")
    assert problem.startswith("5: invalid YAML")


def test_wrong_enum_value() -> None:
    assert problems("wrong_type.yaml") == [
        "5: rules[0].on_storage_error: Input should be 'allow' or 'deny'"
    ]


def test_bad_rule_name() -> None:
    [problem] = problems("bad_rule_name.yaml")
    assert problem.startswith("3: rules[0].name: String should match pattern")


def test_top_level_typo() -> None:
    assert problems("top_level_typo.yaml") == ["2: rulez: Extra inputs are not permitted"]


def test_empty_file_is_an_empty_policy() -> None:
    policy = parse_policy("")
    assert policy.rules == []  # type: ignore[attr-defined]


def test_shipped_policies_are_valid() -> None:
    for path in (REPO / "policies").glob("*.yaml"):
        load_policy(path)


def test_every_schema_field_has_a_description() -> None:
    schema = json_schema()
    missing = []

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            for name, prop in node.get("properties", {}).items():
                if "description" not in prop:
                    missing.append(f"{where}.{name}")
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(schema, "$")
    assert missing == []
