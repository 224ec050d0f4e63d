"""`--gateway` mode against a real gateway (and the demo model) on loopback sockets."""

from __future__ import annotations

from pathlib import Path

from gateway.app import create_app
from gateway.demo_upstream import create_demo_app
from gateway.settings import Settings
from gateway.simulate.cli import DEFAULT_POLICY, load
from gateway.simulate.personas import Span, generate
from gateway.simulate.report import markdown, summarize
from gateway.simulate.runner import send_over_http, simulate
from tests.support.server import serve_in_thread


async def test_same_traffic_over_http(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(DEFAULT_POLICY)
    requests = generate(4, Span(hours=1, scale=0.15), ["cot-harvest", "support-bot"])
    assert 60 < len(requests) < 400
    with serve_in_thread(create_demo_app()) as demo, serve_in_thread(create_app(Settings(
            policy=policy, upstream=demo, redis="memory", admin_token="t0ken",
            access_log=False))) as url:
        result = await send_over_http(requests, url, concurrency=8, admin_token="t0ken")
    assert result.mode == "http"
    assert all(o.status in (200, 429) and not o.error for o in result.outcomes)
    summary = summarize(result)
    flagged = {i.key for i in summary.identities if i.flagged}  # read from the admin API
    busy = {i.key for i in summary.identities if i.persona == "cot-harvest" and i.requests >= 30}
    assert busy and flagged == busy
    # the same identities are flagged when the traffic runs in-process
    local = await simulate(requests, load(None))
    assert {o.key for o in local.outcomes if o.flagged} == flagged
    text = markdown(summary)
    assert "| cot-harvest | campaign |" in text and "flagged at the end" in text
