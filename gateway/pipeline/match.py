"""`match:` — which requests a rule applies to, compiled once at load time."""

from __future__ import annotations

import fnmatch
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.pipeline.context import RequestContext

# RFC 9110 field names. A policy naming a header outside them could never match,
# and a name that is not latin-1 crashed the chain when it was compiled, or every
# request when it was read per request (tier_header, group_by) (tests/hostile).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Headers that carry API keys: never a tier, tenant or group value (those end up in
# Redis keys, hashed or not), which is what raw keys must never reach.
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"})


def header_name(name: str, *, credentials: bool = True) -> str:
    """Check a header name written in a policy; `credentials=False` refuses key headers."""
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not an HTTP header name")
    if not credentials and name.lower() in CREDENTIAL_HEADERS:
        raise ValueError(f"{name!r} carries API keys; its value must not become a tier, "
                         "tenant or group")
    return name


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

    @field_validator("headers")
    @classmethod
    def _header_names(cls, headers: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        for name in headers or {}:
            header_name(name)
        return headers


Predicate = Callable[[RequestContext], bool]


@dataclass(frozen=True, slots=True)
class Condition:
    """One condition of a `match`: what it wants, and how to read it off a request."""

    field: str
    wanted: str
    holds: Predicate
    actual: Callable[[RequestContext], object]


def _globs(patterns: list[str], *, ignore_case: bool = False) -> re.Pattern[str]:
    # An empty list matches nothing ("any of none"): joined into "", it matched every
    # value, so `allow_models: []` allowed every model (tests/hostile).
    if not patterns:
        return re.compile(r"(?!)")
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns),
                      re.IGNORECASE if ignore_case else 0)


def conditions(match: Match) -> list[Condition]:
    """The conditions `match` sets, in field order (all must hold)."""
    out: list[Condition] = []
    if match.paths is not None:
        # Paths compare case-insensitively: an upstream that routes so (Express's
        # default) would serve /V1/Fine_Tuning as /v1/fine_tuning; matching more
        # requests is the safe side for deny_paths and for limits (tests/hostile).
        paths = _globs(match.paths, ignore_case=True)
        out.append(Condition("paths", f"one of {match.paths}",
                             lambda ctx: paths.match(ctx.path) is not None,
                             lambda ctx: ctx.path))
    if match.methods is not None:
        methods = {m.upper() for m in match.methods}
        out.append(Condition("methods", f"one of {sorted(methods)}",
                             lambda ctx: ctx.method in methods, lambda ctx: ctx.method))
    if match.models is not None:
        models = _globs(match.models)
        out.append(Condition(
            "models", f"one of {match.models}",
            lambda ctx: (m := ctx.model) is not None and models.match(m) is not None,
            lambda ctx: ctx.model))
    if match.tiers is not None:
        tiers = set(match.tiers)
        out.append(Condition("tiers", f"one of {match.tiers}",
                             lambda ctx: ctx.identity.tier in tiers,
                             lambda ctx: ctx.identity.tier))
    if match.tenants is not None:
        tenants = set(match.tenants)
        out.append(Condition("tenants", f"one of {match.tenants}",
                             lambda ctx: ctx.identity.tenant in tenants,
                             lambda ctx: ctx.identity.tenant))
    if match.headers is not None:
        for name, values in match.headers.items():
            out.append(_header_condition(name, values))
    if match.authenticated is not None:
        wanted = match.authenticated
        out.append(Condition("authenticated", str(wanted).lower(),
                             lambda ctx: ctx.identity.authenticated is wanted,
                             lambda ctx: ctx.identity.authenticated))
    if match.suspicion is not None:
        symbol, value = _comparison(match.suspicion)
        compare = _COMPARE[symbol]
        out.append(Condition("suspicion", f"{symbol} {value:g}",
                             lambda ctx: compare(ctx.suspicion, value),
                             lambda ctx: round(ctx.suspicion, 4)))
    return out


def compile_match(match: Match) -> Predicate:
    checks = [condition.holds for condition in conditions(match)]
    if not checks:
        return lambda ctx: True
    return lambda ctx: all(check(ctx) for check in checks)


def explain_match(match: Match, ctx: RequestContext) -> list[str]:
    """Why `match` does not hold for `ctx`, one line per failing condition (none: it holds).

    For `policy explain`; the request path uses `compile_match`.
    """
    return [f"{c.field}: wants {c.wanted}, the request has {c.actual(ctx)!r}"
            for c in conditions(match) if not c.holds(ctx)]


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq,
}


def _comparison(text: str) -> tuple[str, float]:
    found = re.match(r"^\s*(>=|<=|>|<|==)\s*([0-9.]+)\s*$", text)
    assert found is not None  # the schema's pattern already holds
    return found.group(1), float(found.group(2))


def _header_condition(name: str, values: list[str]) -> Condition:
    key = name.lower().encode("latin-1")
    pattern = _globs(values)

    def actual(ctx: RequestContext) -> str | None:
        value = ctx.header(key)
        return value.decode("latin-1") if value is not None else None

    def holds(ctx: RequestContext) -> bool:
        value = ctx.header(key)
        return value is not None and pattern.match(value.decode("latin-1")) is not None

    return Condition(f"headers.{name.lower()}", f"one of {values}", holds, actual)
