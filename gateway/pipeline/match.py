"""`match:` — which requests a rule applies to, compiled once at load time."""

from __future__ import annotations

import fnmatch
import operator
import re
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from gateway.pipeline.context import RequestContext


class Match(BaseModel):
    """Conditions a request must meet for the rule to apply; all given ones must hold."""

    model_config = ConfigDict(extra="forbid")

    paths: list[str] | None = Field(
        None, description="Path globs, e.g. `/v1/chat/*`. Any of them may match."
    )
    methods: list[str] | None = Field(None, description="HTTP methods, e.g. `[POST]`.")
    models: list[str] | None = Field(
        None, description="Globs on the request body's `model`, e.g. `gpt-4*`."
    )
    tiers: list[str] | None = Field(None, description="Identity tiers the rule applies to.")
    tenants: list[str] | None = Field(None, description="Tenants the rule applies to.")
    headers: dict[str, list[str]] | None = Field(
        None,
        description="Header name -> value globs; the header must be present and match one.",
    )
    authenticated: bool | None = Field(
        None, description="Only requests with (true) or without (false) an API key."
    )
    suspicion: str | None = Field(
        None,
        description='Compare the identity\'s suspicion score (0..1, from prompt_diversity '
        'rules, as of its previous request), e.g. ">= 0.6" or "< 0.3".',
        pattern=r"^\s*(>=|<=|>|<|==)\s*(0(\.\d+)?|1(\.0+)?|\.\d+)\s*$",
    )


Predicate = Callable[[RequestContext], bool]


def _globs(patterns: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def compile_match(match: Match) -> Predicate:
    checks: list[Predicate] = []
    if match.paths is not None:
        paths = _globs(match.paths)
        checks.append(lambda ctx: paths.match(ctx.path) is not None)
    if match.methods is not None:
        methods = {m.upper() for m in match.methods}
        checks.append(lambda ctx: ctx.method in methods)
    if match.models is not None:
        models = _globs(match.models)
        checks.append(lambda ctx: (m := ctx.model) is not None and models.match(m) is not None)
    if match.tiers is not None:
        tiers = set(match.tiers)
        checks.append(lambda ctx: ctx.identity.tier in tiers)
    if match.tenants is not None:
        tenants = set(match.tenants)
        checks.append(lambda ctx: ctx.identity.tenant in tenants)
    if match.headers is not None:
        for name, values in match.headers.items():
            checks.append(_header_check(name.lower().encode("latin-1"), _globs(values)))
    if match.authenticated is not None:
        wanted = match.authenticated
        checks.append(lambda ctx: ctx.identity.authenticated is wanted)
    if match.suspicion is not None:
        symbol, value = _comparison(match.suspicion)
        compare = _COMPARE[symbol]
        checks.append(lambda ctx: compare(ctx.suspicion, value))
    if not checks:
        return lambda ctx: True
    return lambda ctx: all(check(ctx) for check in checks)


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq,
}


def _comparison(text: str) -> tuple[str, float]:
    found = re.match(r"^\s*(>=|<=|>|<|==)\s*([0-9.]+)\s*$", text)
    assert found is not None  # the schema's pattern already holds
    return found.group(1), float(found.group(2))


def _header_check(name: bytes, values: re.Pattern[str]) -> Predicate:
    def check(ctx: RequestContext) -> bool:
        value = ctx.header(name)
        return value is not None and values.match(value.decode("latin-1")) is not None

    return check
