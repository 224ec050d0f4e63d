"""Process settings: every flag of `distill-guard serve` is also an env var.

The environment prefix is `DISTILL_GUARD_` (for example
`DISTILL_GUARD_UPSTREAM=http://model:8000`). Policy rules live in the YAML
policy file, not here: settings say where things are and how long to wait.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"
DEMO_UPSTREAM = "demo"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DISTILL_GUARD_", extra="forbid")

    policy: Path = Field(
        DEFAULT_POLICY, description="Path of the YAML policy file the gateway enforces."
    )
    policy_watch_interval: float = Field(
        2.0, ge=0, description="Seconds between checks of the policy file for changes "
        "(0: reload only on SIGHUP or POST /admin/reload).",
    )
    shutdown_grace_seconds: float = Field(
        30.0, ge=0, description="On SIGTERM, how long in-flight requests and streams may "
        "run on after the gateway stops accepting connections.",
    )
    shutdown_drain_seconds: float = Field(
        0.0, ge=0, description="On SIGTERM, how long to keep accepting while /readyz "
        "already answers 503, so load balancers stop routing here first (Kubernetes: a "
        "few seconds, or a preStop sleep).",
    )
    upstream: str = Field(
        DEMO_UPSTREAM,
        description="Base URL of the model endpoint (e.g. http://127.0.0.1:8000), or `demo` "
        "for the built-in demo model served in-process.",
    )
    redis: str = Field(
        "memory",
        description="Counter storage: `memory` (one process only), or redis://, rediss://, "
        "redis+cluster://host:port[,host:port] or redis+sentinel://host:port/service URLs.",
    )
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8080, ge=0, le=65535, description="Port to listen on.")
    workers: int = Field(1, ge=1, description="Worker processes (they share only Redis).")
    identity_secret: SecretStr = Field(
        SecretStr("distill-guard-dev-secret"),
        description="Server secret for the keyed hash that turns API keys into identity ids. "
        "Set it in production: the default is public.",
    )
    watermark_secret: SecretStr = Field(
        SecretStr("distill-guard-dev-watermark"),
        description="Deployment secret for the output watermark; with the caller's identity "
        "it keys the mark. It never leaves the process. Set it in production: the default "
        "is public.",
    )
    admin_token: SecretStr | None = Field(
        None, description="Bearer token for /admin/*; the admin API is off without one."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Peer addresses or CIDRs whose X-Forwarded-For is believed.",
    )
    max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1, description="Largest request body accepted (413 above)."
    )
    max_headers: int = Field(100, ge=1, description="Most request headers accepted (431 above).")
    upstream_connect_timeout: float = Field(
        5.0, gt=0, description="Seconds to connect to the upstream before a 502."
    )
    upstream_timeout: float = Field(
        600.0, gt=0, description="Seconds without upstream bytes before a 504."
    )
    upstream_max_connections: int = Field(
        1000, ge=1, description="Pooled keep-alive connections to the upstream."
    )
    redis_timeout_ms: float = Field(
        50.0, gt=0, description="Milliseconds a Redis call may take before it counts as failed."
    )
    demo_word_delay: float = Field(
        0.0, ge=0, description="Seconds between streamed words of the built-in demo model."
    )
    redis_max_connections: int = Field(
        32, ge=1, description="Connections to Redis per process; bursts queue for one."
    )
    redis_breaker_failures: int = Field(
        3, ge=1, description="Consecutive Redis failures that open the circuit breaker."
    )
    redis_breaker_reset_seconds: float = Field(
        1.0, gt=0, description="Seconds the breaker stays open before probing Redis again."
    )
    storage_fallback: bool = Field(
        True,
        description="While Redis is away, enforce each limit divided by the rule's "
        "fallback_replicas on local in-process counters (rules with on_storage_error: allow).",
    )
    log_level: str = Field("info", description="Log level: debug, info, warning, error.")
    access_log: bool = Field(True, description="Write one JSON log line per request.")
    audit_log: Path | None = Field(
        None,
        description="Append one JSON line per request (identity id, route, selected headers, "
        "request body, outcome) to this file, for `distill-guard replay`; off when unset. "
        "It holds prompts; `{pid}` in the path is replaced by the process id (one file per "
        "worker). See docs/replay.md.",
    )
    audit_log_bodies: bool = Field(
        True, description="Write request bodies (prompts) into the audit log."
    )
    audit_log_buffer_bytes: int = Field(
        64 * 1024 * 1024, ge=1024,
        description="Most bytes of audit lines waiting for the disk; beyond it lines are "
        "dropped and counted, requests never wait.",
    )
