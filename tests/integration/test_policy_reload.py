"""Hot reload: a broken file under load fails no request and changes nothing;
a good one takes effect; the ConfigMap symlink swap and SIGHUP are seen."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gateway import metrics
from tests.integration.conftest import GatewayFactory
from tests.support.gateway_process import GatewayProcess

TOKEN = "reload-admin-token"
ADMIN = {"authorization": f"Bearer {TOKEN}"}


def policy(denied_model: str) -> str:
    return f"""version: 1
rules:
  - name: deny-a-model
    kind: access
    config:
      deny_models: ["{denied_model}"]
"""


BROKEN = """version: 1
rules:
  - name: deny-a-model
    kind: access
    config:
      deny_modles: ["demo-model-x"]
"""

BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


async def _status(client: httpx.AsyncClient, model: str) -> int:
    response = await client.post("/v1/chat/completions", json={**BODY, "model": model},
                                 headers={"authorization": "Bearer sk-reload"})
    return response.status_code


def _errors() -> float:
    return metrics.POLICY_LOADS.labels(result="error")._value.get()


async def _wait_for(check: Callable[[], object], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():  # type: ignore[misc]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_broken_policy_under_load_fails_nothing_and_keeps_the_old_one(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    with make_gateway(policy_text=policy("blocked-model"), admin_token=TOKEN,
                      policy_watch_interval=0.05) as url:
        policy_file = tmp_path / "policy.yaml"
        errors_before = _errors()
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            stop = asyncio.Event()
            statuses: list[int] = []

            async def load() -> None:
                while not stop.is_set():
                    statuses.append(await _status(client, "demo-model"))

            workers = [asyncio.create_task(load()) for _ in range(8)]
            for _ in range(5):  # break the file repeatedly, by the watcher and the API
                policy_file.write_text(BROKEN)
                refused = await client.post("/admin/reload", headers=ADMIN)
                assert refused.status_code == 422
                assert f"{policy_file}:6:" in refused.json()["error"]
                assert "deny_modles" in refused.json()["error"]
                await asyncio.sleep(0.2)
                policy_file.write_text(policy("blocked-model"))
                await asyncio.sleep(0.2)
            stop.set()
            await asyncio.gather(*workers)
            assert len(statuses) > 50
            assert set(statuses) == {200}  # not one request failed during the reloads
            assert _errors() > errors_before  # counted in metrics
            assert await _status(client, "blocked-model") == 403  # the old policy holds

            # a valid change takes effect, through the watcher alone
            policy_file.write_text(policy("other-model"))

            async def swapped() -> bool:
                return await _status(client, "blocked-model") == 200

            await _wait_for(swapped)
            assert await _status(client, "other-model") == 403
            rules = (await client.get("/admin/rules", headers=ADMIN)).json()
            assert rules["last_reload_error"] == ""
            assert [r["name"] for r in rules["rules"]] == ["deny-a-model"]


async def test_configmap_symlink_swap_is_picked_up(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """The kubelet's update: a new ..<timestamp> dir, then an atomic ..data swap."""
    mount = tmp_path / "config"
    (mount / "..2026_11_27_01").mkdir(parents=True)
    (mount / "..2026_11_27_01" / "policy.yaml").write_text(policy("blocked-model"))
    os.symlink("..2026_11_27_01", mount / "..data")
    os.symlink("..data/policy.yaml", mount / "policy.yaml")
    with make_gateway(policy=mount / "policy.yaml", policy_watch_interval=0.05) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            assert await _status(client, "blocked-model") == 403
            (mount / "..2026_11_27_02").mkdir()
            (mount / "..2026_11_27_02" / "policy.yaml").write_text(policy("other-model"))
            os.symlink("..2026_11_27_02", mount / "..data_tmp")
            os.replace(mount / "..data_tmp", mount / "..data")

            async def swapped() -> bool:
                return await _status(client, "other-model") == 403

            await _wait_for(swapped)
            assert await _status(client, "blocked-model") == 200


def test_sighup_reloads_a_served_gateway(tmp_path: Path, demo_url: str) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy("blocked-model"))
    gateway = GatewayProcess(policy=policy_file, upstream=demo_url, redis="memory",
                             policy_watch_interval="0")  # only the signal reloads
    try:
        def status(model: str) -> int:
            return httpx.post(gateway.url + "/v1/chat/completions",
                              json={**BODY, "model": model}, timeout=10).status_code

        assert status("blocked-model") == 403
        policy_file.write_text(policy("other-model"))
        time.sleep(0.3)
        assert status("blocked-model") == 403  # no watcher: nothing changed yet
        os.kill(gateway.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while status("other-model") != 403:
            assert time.monotonic() < deadline, "SIGHUP did not reload the policy"
            time.sleep(0.05)
        assert status("blocked-model") == 200
        assert gateway.proc.poll() is None  # reloaded, not restarted or killed
    finally:
        gateway.stop()


@pytest.mark.parametrize("reason", ["unknown key", "invalid yaml"])
async def test_admin_reload_reports_the_error(
    make_gateway: GatewayFactory, tmp_path: Path, reason: str
) -> None:
    text = BROKEN if reason == "unknown key" else "version: 1\nrules: [\n"
    with make_gateway(policy_text=policy("blocked-model"), admin_token=TOKEN,
                      policy_watch_interval=0) as url:
        (tmp_path / "policy.yaml").write_text(text)
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            assert (await client.post("/admin/reload")).status_code == 401  # token needed
            refused = await client.post("/admin/reload", headers=ADMIN)
            assert refused.status_code == 422
            assert refused.json()["error"].startswith(f"{tmp_path / 'policy.yaml'}:")
            assert refused.json()["running_rules"] == 1
            rules = (await client.get("/admin/rules", headers=ADMIN)).json()
            assert rules["last_reload_error"] == refused.json()["error"]
            assert await _status(client, "blocked-model") == 403
            (tmp_path / "policy.yaml").write_text(policy("blocked-model"))
            unchanged = await client.post("/admin/reload", headers=ADMIN)
            assert unchanged.json() == {"status": "unchanged", "rules": 1}


async def test_shadow_report_shows_what_a_rule_would_have_done(
    make_gateway: GatewayFactory,
) -> None:
    text = """version: 1
rules:
  - name: shadow-report-deny
    kind: access
    shadow: true
    config:
      deny_models: ["would-block"]
  - name: shadow-report-enforced
    kind: access
    config:
      deny_models: ["blocked-model"]
"""
    with make_gateway(policy_text=text, admin_token=TOKEN) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            for _ in range(3):
                assert await _status(client, "would-block") == 200  # shadow: not enforced
            assert await _status(client, "demo-model") == 200
            assert await _status(client, "blocked-model") == 403
            report = (await client.get("/admin/rules", headers=ADMIN)).json()
    rules = {r["name"]: r for r in report["rules"]}
    shadow = rules["shadow-report-deny"]
    assert shadow["shadow"] is True
    assert shadow["decisions"] == {"reject": 3.0, "allow": 2.0}
    assert rules["shadow-report-enforced"]["decisions"] == {"allow": 4.0, "reject": 1.0}
