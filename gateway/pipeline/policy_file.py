"""The policy file model: strict, documented, and assembled from the kinds.

Each rule is `{name, kind, match, shadow, on_storage_error, config}` where
`config` is validated by the schema of the rule's kind. The models are built
from the registry, so a new kind folder is picked up with no edit here, and
`distill-guard policy schema` always matches what the loader accepts.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from gateway.pipeline.match import Match, header_name
from gateway.policies.registry import kinds

RULE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class RuleBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="Unique name of the rule; used in metrics, logs and reports.",
        pattern=RULE_NAME_PATTERN,
    )
    description: str = Field("", description="Free text for authors: why the rule exists.")
    match: Match = Field(
        default_factory=Match,
        description="Which requests the rule applies to; empty means every request.",
    )
    shadow: bool = Field(
        False, description="Evaluate and count the rule's decisions, but never enforce them."
    )
    on_storage_error: Literal["allow", "deny"] = Field(
        "allow",
        description="When counter storage fails: `allow` lets the request through "
        "(fail-open), `deny` refuses it with 503 (fail-closed).",
    )


class IdentityConfig(BaseModel):
    """How callers map to tiers and tenants."""

    model_config = ConfigDict(extra="forbid")

    tier_header: str | None = Field(
        None,
        description="Request header carrying the caller's tier. Only set this when a "
        "trusted component in front of the gateway writes the header.",
    )
    tenant_header: str | None = Field(
        None, description="Request header carrying the caller's tenant (same caveat)."
    )
    tiers: dict[str, str] = Field(
        default_factory=dict,
        description="Identity id (from `distill-guard identity KEY`) -> tier. Raw keys "
        "never appear in policy files.",
    )
    default_tier: str | None = Field(None, description="Tier of identities not listed.")

    @field_validator("tier_header", "tenant_header")
    @classmethod
    def _header_names(cls, name: str | None) -> str | None:
        # read per request: a name that is not latin-1 made every request a 500, and a
        # key header would put raw keys into Redis keys as tier names (tests/hostile)
        return None if name is None else header_name(name, credentials=False)


@cache
def rule_models() -> tuple[type[RuleBase], ...]:
    models = []
    for kind in kinds().values():
        title = "".join(part.title() for part in kind.name.split("_"))
        model = create_model(
            f"{title}Rule",
            __base__=RuleBase,
            __doc__=f"A rule of kind `{kind.name}`.",
            kind=(Literal[kind.name], Field(description="The policy kind.")),  # type: ignore[arg-type]
            config=(
                kind.config,
                Field(default_factory=kind.config,
                      description=f"Settings of the `{kind.name}` kind."),
            ),
        )
        models.append(model)
    return tuple(models)


@cache
def policy_file_model() -> type[BaseModel]:
    rules = rule_models()
    rule_type: Any = (
        rules[0] if len(rules) == 1
        else Annotated[Union[rules], Field(discriminator="kind")]  # noqa: UP007
    )
    return create_model(
        "PolicyFile",
        __config__=ConfigDict(extra="forbid", title="distill-guard policy file"),
        __doc__="A distill-guard policy file.",
        version=(Literal[1], Field(1, description="Format version of the policy file.")),
        identity=(
            IdentityConfig,
            Field(default_factory=IdentityConfig,
                  description="Tiers and tenants of callers (identity ids, never raw keys)."),
        ),
        forward_unknown_paths=(
            bool,
            Field(True, description="Forward paths other than the known model API routes."),
        ),
        rules=(
            list[rule_type],
            Field(default_factory=list, description="Rules, applied in this order."),
        ),
    )


def json_schema() -> dict[str, Any]:
    schema = policy_file_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
