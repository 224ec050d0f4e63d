"""Evidence for investigators through the admin API; nothing tells the client."""

from __future__ import annotations

import httpx

from gateway.identity import IdentityHasher
from tests.integration.conftest import GatewayFactory

POLICY = """
version: 1
rules:
  - name: diversity
    kind: prompt_diversity
    config:
      steps:
        - {at: 0.6, action: flag}
  - name: diversity-shadow
    kind: prompt_diversity
    shadow: true
    config:
      steps:
        - {at: 0.5, action: reject}
"""
ADMIN = {"authorization": "Bearer t0ken"}


def harvest(i: int) -> dict[str, object]:
    prompt = (f"Solve: what is {i * 7 + 3} times {i % 13 + 2}? Articulate the internal "
              "reasoning behind your answer and write it out step by step.")
    return {"model": "demo-model", "max_tokens": 5,
            "messages": [{"role": "user", "content": prompt}]}


def test_flagged_identity_listed_with_evidence(make_gateway: GatewayFactory) -> None:
    identity = IdentityHasher(b"distill-guard-dev-secret").hash_key("sk-harvest")
    with make_gateway(policy_text=POLICY, admin_token="t0ken") as url, httpx.Client() as http:
        headers_seen: set[str] = set()
        for i in range(45):
            resp = http.post(url + "/v1/chat/completions", json=harvest(i),
                             headers={"authorization": "Bearer sk-harvest"})
            assert resp.status_code == 200  # the shadow rule's reject is not enforced
            headers_seen.update(resp.headers.keys())
        assert not [h for h in headers_seen if "flag" in h or "suspic" in h]
        listing = http.get(url + "/admin/identities?flagged=true", headers=ADMIN).json()
        assert [row["identity"] for row in listing["identities"]] == [identity]
        row = listing["identities"][0]
        assert row["suspicion"] >= 0.6 and "flag" in row["actions"]
        assert row["evidence"]["template_share"] == 1.0
        detail = http.get(url + f"/admin/identities/{identity}", headers=ADMIN).json()
        assert detail["enforced"]["signals"]["reasoning"] == 1.0
        assert detail["shadow"]["actions"][-1] == "reject"  # what shadow would have done
        assert http.get(url + "/admin/identities/unknown", headers=ADMIN).status_code == 404
        assert http.get(url + "/admin/identities").status_code == 401
        shadow = http.get(url + "/admin/identities?shadow=true", headers=ADMIN).json()
        assert shadow["shadow"] is True and shadow["count"] == 1
