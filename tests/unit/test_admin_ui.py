"""The suspicion history `Standings` keeps, the timeline endpoint and the page's headers."""

from __future__ import annotations

import base64
import hashlib
import re
import time
import tracemalloc
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from gateway.admin_ui import page
from gateway.app import GatewayApp, create_app
from gateway.settings import Settings
from gateway.signals.suspicion import History, Standing, Standings

T0 = 1_699_999_980.0  # a multiple of 60: bucket starts are easy to read
TOKEN = "s3cret-admin-t0ken"
ADMIN = {"authorization": f"Bearer {TOKEN}"}


def standing(suspicion: float, at: float, *, flagged: bool = False,
             **signals: float) -> Standing:
    return Standing(suspicion=suspicion, at=at, half_life=3600.0, flagged=flagged,
                    actions=["flag"] if flagged else [], signals=dict(signals),
                    evidence={"requests": 40.0, "template_share": 1.0})


# -- history -------------------------------------------------------------------
def test_below_the_floor_and_unflagged_is_not_tracked() -> None:
    standings = Standings(history_floor=0.3)
    standings.put("benign", standing(0.1, T0))
    standings.put("weird", standing(0.35, T0))
    standings.put("flagged-low", standing(0.05, T0, flagged=True))
    assert {i for i, _ in standings.history().tracks(T0)} == {"weird", "flagged-low"}
    assert standings.get("benign") is not None  # the standing itself is still kept


def test_one_point_per_bucket_updated_in_place() -> None:
    standings = Standings()
    for second in range(0, 180, 5):  # 3 minutes of requests every 5 s
        standings.put("a", standing(0.5 + second / 1000, T0 + second, reasoning=1.0))
    (_, track), = standings.history().tracks(T0 + 180)
    assert [p.at for p in track.points] == [T0, T0 + 60, T0 + 120]
    assert [p.suspicion for p in track.points] == [0.555, 0.615, 0.675]  # last in each bucket
    assert track.points[-1].signals == {"reasoning": 1.0}
    # a late request (an older storage time) updates the newest point, never appends
    standings.put("a", standing(0.7, T0 + 30))
    assert len(track.points) == 3 and track.points[-1].suspicion == 0.7


def test_points_are_kept_for_the_window_only() -> None:
    standings = Standings(history_hours=1.0, history_bucket=60.0)
    for minute in range(180):
        standings.put("a", standing(0.5, T0 + minute * 60))
    (_, track), = standings.history().tracks(T0 + 179 * 60)
    assert len(track.points) == 61  # bounded: an hour of minutes (+ the one being filled)
    assert track.points[0].at == T0 + 119 * 60


def test_identities_gone_quiet_for_the_window_expire() -> None:
    standings = Standings(history_hours=1.0)
    standings.put("old", standing(0.9, T0, flagged=True))
    standings.put("new", standing(0.9, T0 + 3000, flagged=True))
    history = standings.history()
    assert [i for i, _ in history.tracks(T0 + 3000)] == ["old", "new"]
    assert [i for i, _ in history.tracks(T0 + 3601)] == ["new"]
    assert "old" not in history


def test_capacity_evicts_the_least_suspicious() -> None:
    standings = Standings(history_identities=100)
    for i in range(100):
        standings.put(f"id{i:03}", standing(0.3 + i / 200, T0, flagged=True))
    history = standings.history()
    assert len(history) == 100
    standings.put("strong", standing(0.99, T0 + 1, flagged=True))
    # one eviction pass drops to 90% of capacity: the weakest 11 go, the newcomer stays
    assert len(history) == 90
    kept = {i for i, _ in history.tracks(T0 + 1)}
    assert "strong" in kept and "id010" not in kept and "id011" in kept
    # a newcomer weaker than everything held is the one evicted
    for i in range(10):
        standings.put(f"more{i}", standing(0.8, T0 + 2, flagged=True))
    standings.put("weak", standing(0.3, T0 + 3))
    assert "weak" not in history and len(history) <= 100


def test_shadow_history_is_separate() -> None:
    standings = Standings()
    standings.put("a", standing(0.9, T0, flagged=True), shadow=True)
    assert standings.history().tracks(T0) == []
    assert [i for i, _ in standings.history(shadow=True).tracks(T0)] == ["a"]


def test_history_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        History(hours=0, identities=10, floor=0.3, bucket=60)


def test_put_in_the_same_bucket_allocates_nothing_and_costs_o1() -> None:
    """The request path: a known identity in an unchanged bucket allocates nothing."""
    standings = Standings(history_identities=2_000)
    for i in range(2_000):
        standings.put(f"id{i}", standing(0.5, T0, flagged=True))
    same = [standing(0.6, T0 + 1 + i * 0.001, flagged=True) for i in range(1_000)]
    standings.put("id7", same[0])
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for s in same:
            standings.put("id7", s)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 1_000  # no per-request growth

    def cost(tracked: int) -> float:
        many = Standings(history_identities=tracked)
        for i in range(tracked):
            many.put(f"id{i}", standing(0.5, T0, flagged=True))
        start = time.perf_counter()
        for minute in range(3):  # new buckets and same-bucket updates, known identities
            for i in range(2_000):
                many.put(f"id{i % tracked}", standing(0.5, T0 + 60 * minute + i / 1e4))
        return time.perf_counter() - start

    small, large = min(cost(50) for _ in range(3)), min(cost(2_000) for _ in range(3))
    assert large < small * 3  # independent of how many identities are tracked


def test_eviction_is_amortised() -> None:
    """A stream of new identities at capacity: one O(n log n) pass per n/10 newcomers."""
    standings = Standings(history_identities=2_000)
    start = time.perf_counter()
    for i in range(20_000):
        standings.put(f"id{i}", standing(0.3 + (i % 97) / 200, T0 + i / 100, flagged=True))
    elapsed = time.perf_counter() - start
    assert len(standings.history()) <= 2_000
    assert elapsed < 2.0  # ~0.1 s here; quadratic eviction would take far longer


# -- endpoints -----------------------------------------------------------------
@pytest.fixture
def app() -> Iterator[tuple[GatewayApp, TestClient]]:
    gateway = create_app(Settings(redis="memory", admin_token=TOKEN))  # type: ignore[arg-type]
    with TestClient(gateway) as client:
        yield gateway, client


def seed(gateway: GatewayApp, now: float) -> None:
    assert gateway.state is not None
    standings = gateway.state.standings
    for minute in range(30):
        at = now - 1800 + minute * 60
        standings.put("harvester", standing(min(0.95, 0.4 + minute / 40), at,
                                            flagged=minute >= 8, reasoning=1.0, templated=0.8))
    standings.put("benign", standing(0.05, now - 60))
    standings.put("borderline", standing(0.4, now - 7200))
    standings.put("shadowed", standing(0.97, now - 30, flagged=True), shadow=True)


def test_timeline_needs_the_admin_token(app: tuple[GatewayApp, TestClient]) -> None:
    _, client = app
    assert client.get("/admin/timeline").status_code == 401
    assert client.get("/admin/timeline", headers={"authorization": "Bearer nope"}).status_code \
        == 401
    assert client.get(f"/admin/timeline?token={TOKEN}").status_code == 401  # header only
    assert client.get("/admin/timeline", headers=ADMIN).status_code == 200


def test_timeline_json_shape(app: tuple[GatewayApp, TestClient]) -> None:
    gateway, client = app
    now = time.time()
    seed(gateway, now)
    response = client.get("/admin/timeline?hours=1", headers=ADMIN)
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["hours"] == 1 and body["shadow"] is False and body["bucket_seconds"] == 60
    assert abs(body["now"] - now) < 60
    assert [i["id"] for i in body["identities"]] == ["harvester"]  # borderline: 2 h ago
    row = body["identities"][0]
    assert set(row) >= {"id", "suspicion", "peak", "flagged", "actions", "signals", "evidence",
                        "points", "last_request_at", "flagged_at"}
    assert row["flagged"] is True and row["actions"] == ["flag"]
    assert row["peak"] == 0.95 and 0.9 < row["suspicion"] <= 0.95
    assert row["evidence"]["template_share"] == 1.0
    assert len(row["points"]) == 30
    t, suspicion, signals = row["points"][0]
    assert t % 60 == 0 and suspicion == 0.4 and signals == {"reasoning": 1.0, "templated": 0.8}
    assert [p[0] for p in row["points"]] == sorted(p[0] for p in row["points"])

    wide = client.get("/admin/timeline?hours=6", headers=ADMIN).json()
    assert [i["id"] for i in wide["identities"]] == ["harvester", "borderline"]
    flagged = client.get("/admin/timeline?hours=6&flagged=true", headers=ADMIN).json()
    assert [i["id"] for i in flagged["identities"]] == ["harvester"]
    shadow = client.get("/admin/timeline?shadow=true", headers=ADMIN).json()
    assert shadow["shadow"] is True and [i["id"] for i in shadow["identities"]] == ["shadowed"]
    capped = client.get("/admin/timeline?hours=100&limit=1", headers=ADMIN).json()
    assert capped["hours"] == 6 and capped["count"] == 2 and len(capped["identities"]) == 1
    for bad in ("hours=x", "hours=0", "hours=nan", "limit=0", "limit=1.5"):
        assert client.get(f"/admin/timeline?{bad}", headers=ADMIN).status_code == 400


def test_page_is_a_static_shell_with_strict_headers(app: tuple[GatewayApp, TestClient]) -> None:
    _, client = app
    response = client.get("/admin/ui")  # navigation cannot send a bearer header
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert TOKEN not in response.text
    headers = response.headers
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    csp = dict(d.strip().split(" ", 1) for d in headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'none'" and csp["connect-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'" and "unsafe-inline" not in headers[
        "content-security-policy"]
    # the inline script and style are allowed by their hashes, nothing else
    for tag in ("script", "style"):
        (body,) = re.findall(rf"<{tag}>(.*?)</{tag}>", response.text, flags=re.DOTALL)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert csp[f"{tag}-src"] == f"'sha256-{digest}'"
    # nothing is loaded from elsewhere
    assert not re.search(r"(src|href)=\"(?!data:)", response.text)
    assert "http://" not in response.text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in response.text


def test_page_is_off_without_an_admin_token() -> None:
    with TestClient(create_app(Settings(redis="memory"))) as client:
        assert client.get("/admin/ui").status_code == 404
        assert client.get("/admin/timeline").status_code == 404


def test_page_ships_as_package_data() -> None:
    body, csp = page()
    assert body.startswith(b"<!doctype html>") and "sha256-" in csp
