from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.pipeline.match import header_name


class Config(BaseModel):
    """Allow or deny requests by model, path or header; no counters involved."""

    model_config = ConfigDict(extra="forbid")

    allow_models: list[str] | None = Field(
        None, description="Model globs that may be called; any other model is refused."
    )
    deny_models: list[str] = Field(
        default_factory=list, description="Model globs that are always refused."
    )
    deny_paths: list[str] = Field(
        default_factory=list, description="Path globs that are refused (404), e.g. `/v1/files*`."
    )
    deny_headers: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Header name -> value globs that get a request refused.",
    )
    message: str = Field(
        "This request is not allowed by the gateway policy.",
        description="Error message returned to the client on refusal.",
    )

    @field_validator("deny_headers")
    @classmethod
    def _header_names(cls, headers: dict[str, list[str]]) -> dict[str, list[str]]:
        for name in headers:
            header_name(name)  # a name that is not latin-1 crashed compile (tests/hostile)
        return headers
