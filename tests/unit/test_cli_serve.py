"""`distill-guard serve` hands its settings to uvicorn's worker processes via env."""

from __future__ import annotations

import pytest

from gateway.cli import worker_environment
from gateway.settings import Settings


def test_workers_get_the_real_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(identity_secret="id-secret", admin_token="admin-t",  # type: ignore[arg-type]
                        watermark_secret="wm-secret", trusted_proxies=["10.0.0.0/8"])
    env = worker_environment(settings)
    assert env["DISTILL_GUARD_IDENTITY_SECRET"] == "id-secret"
    assert env["DISTILL_GUARD_ADMIN_TOKEN"] == "admin-t"
    assert env["DISTILL_GUARD_WATERMARK_SECRET"] == "wm-secret"
    for name in list(env):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    rebuilt = Settings()  # what create_app_from_env does in each worker
    assert rebuilt == settings
    assert rebuilt.identity_secret.get_secret_value() == "id-secret"


def test_unset_admin_token_stays_unset() -> None:
    assert "DISTILL_GUARD_ADMIN_TOKEN" not in worker_environment(Settings())
