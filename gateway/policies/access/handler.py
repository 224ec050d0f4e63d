from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.errors import GatewayError
from gateway.pipeline.context import RequestContext
from gateway.pipeline.decision import ALLOW, Decision, reject
from gateway.pipeline.match import Match, compile_match
from gateway.policies.access.schema import Config
from gateway.policies.base import Handler as BaseHandler
from gateway.policies.base import RuleInfo
from gateway.storage.base import OpResult


class Handler(BaseHandler[Config]):
    def __init__(self, rule: RuleInfo, config: Config, shared: Any = None) -> None:
        super().__init__(rule, config, shared)
        # Compiled once here so the request path does no config parsing.
        def never(ctx: RequestContext) -> bool:
            return False

        self._allowed = compile_match(Match(models=config.allow_models)) \
            if config.allow_models is not None else None
        self._denied_model = compile_match(Match(models=config.deny_models)) \
            if config.deny_models else never
        self._denied_path = compile_match(Match(paths=config.deny_paths)) \
            if config.deny_paths else never
        # any one listed header matching is enough to refuse
        header_checks = [compile_match(Match(headers={name: values}))
                         for name, values in config.deny_headers.items()]
        self._denied_header = (lambda ctx: any(c(ctx) for c in header_checks)) \
            if header_checks else never

    def decide(
        self, ctx: RequestContext, results: Sequence[OpResult], admitted: bool
    ) -> Decision:
        if self._denied_path(ctx):
            return reject(GatewayError(404, f"Unknown path {ctx.path}.", code="not_found"))
        if self._denied_header(ctx):
            return reject(GatewayError(403, self.config.message, code="forbidden"))
        if ctx.model is not None and (
            self._denied_model(ctx) or (self._allowed is not None and not self._allowed(ctx))
        ):
            return reject(
                GatewayError(403, f"{self.config.message} (model {ctx.model!r})",
                             code="model_not_allowed", param="model")
            )
        return ALLOW
