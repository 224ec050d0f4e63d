"""The shipped policies load, and the reference page and JSON Schema match the models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.pipeline.loader import load_policy
from gateway.pipeline.policy_docs import reference_markdown
from gateway.pipeline.policy_file import json_schema, rule_models

ROOT = Path(__file__).parents[3]
REGENERATE = ("regenerate with `distill-guard policy docs > docs/policies.md` and "
              "`distill-guard policy schema > policies/policy.schema.json`")


@pytest.mark.parametrize("name", ["default", "strict", "shadow"])
def test_example_policies_load(name: str) -> None:
    policy = load_policy(ROOT / "policies" / f"{name}.yaml")
    kinds = {rule.kind for rule in policy.rules}  # type: ignore[attr-defined]
    if name != "default":  # strict and shadow cover all three families
        assert {"rate_shaping", "prompt_diversity", "output_perturbation"} <= kinds
    shadows = {rule.shadow for rule in policy.rules}  # type: ignore[attr-defined]
    assert shadows == {"shadow": {True}, "strict": {False}, "default": {True, False}}[name]


def test_default_keeps_diversity_in_shadow_and_guards_logprobs() -> None:
    policy = load_policy(ROOT / "policies" / "default.yaml")
    by_kind = {rule.kind: rule for rule in policy.rules}  # type: ignore[attr-defined]
    assert by_kind["prompt_diversity"].shadow
    assert not by_kind["output_perturbation"].shadow
    assert by_kind["output_perturbation"].config.logprobs.mode in ("cap", "refuse")


def test_example_policies_are_commented_for_authors() -> None:
    for name in ("default", "strict", "shadow"):
        lines = (ROOT / "policies" / f"{name}.yaml").read_text().splitlines()
        comments = sum("#" in line for line in lines)
        assert comments >= len([line for line in lines if line.strip()]) // 3, name


def test_reference_page_matches_the_models() -> None:
    page = (ROOT / "docs" / "policies.md").read_text()
    assert page == reference_markdown(), REGENERATE


def test_committed_schema_matches_the_models() -> None:
    committed = json.loads((ROOT / "policies" / "policy.schema.json").read_text())
    assert committed == json_schema(), REGENERATE


def test_every_field_is_documented() -> None:
    """A field without a description would be an empty cell on the reference page."""
    missing = []
    for model in rule_models():
        stack = [model]
        while stack:
            current = stack.pop()
            for name, field in current.model_fields.items():
                if not field.description:
                    missing.append(f"{current.__name__}.{name}")
                annotation = field.annotation
                for sub in getattr(annotation, "__args__", (annotation,)):
                    if isinstance(sub, type) and hasattr(sub, "model_fields") and sub not in (
                            model,):
                        stack.append(sub)
    assert not missing, missing
