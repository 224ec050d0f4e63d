"""A read-only investigator page under the admin API, and the timeline it plots.

- `GET /admin/ui`: one self-contained HTML file (`page.html`, vanilla JS and
  inline SVG, no external requests). It is a static shell holding no data and
  no token: navigation cannot send a bearer header, so the page asks for the
  admin token (or takes it from the URL fragment, `/admin/ui#token=…`, which
  browsers never send to a server), keeps it in `sessionStorage` and sends it
  as `Authorization: Bearer …` on every data request. Served only while the
  admin API is on (404 otherwise, like every /admin route).
- `GET /admin/timeline?hours=6&shadow=false&flagged=false&limit=200`: the
  per-identity suspicion history `Standings` keeps, as JSON; admin token
  required like every /admin route.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import time
from functools import cache
from importlib.resources import files
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.settings import Settings
from gateway.signals.suspicion import Track
from gateway.state import GatewayState

DEFAULT_LIMIT = 200
NO_STORE = {"cache-control": "no-store"}


class AdminHost(Protocol):
    """What the routes need from the gateway app (gateway.app.GatewayApp)."""

    settings: Settings
    state: GatewayState | None

    def _admin_refusal(self, request: Request) -> Response | None: ...


@cache
def page() -> tuple[bytes, str]:
    """The page and its Content-Security-Policy (inline script and style allowed by hash)."""
    html = files(__package__).joinpath("page.html").read_text(encoding="utf-8")
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for tag, body in re.findall(r"<(script|style)>(.*?)</\1>", html, flags=re.DOTALL):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        hashes[tag].append(f"'sha256-{digest}'")
    csp = "; ".join([
        "default-src 'none'",
        "script-src " + " ".join(hashes["script"]),
        "style-src " + " ".join(hashes["style"]),
        "connect-src 'self'",
        "img-src data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ])
    return html.encode(), csp


def security_headers(csp: str) -> dict[str, str]:
    return {
        "content-security-policy": csp,
        "x-frame-options": "DENY",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cross-origin-opener-policy": "same-origin",
        "cross-origin-resource-policy": "same-origin",
        **NO_STORE,
    }


def track_json(
    identity: str, track: Track, *, now: float, since: float, bucket: float
) -> dict[str, Any]:
    """One identity of the timeline: its standing now and its points since `since`.

    A point is `[bucket start, suspicion, {signal: score > 0}]`, as of the
    last request in that bucket.
    """
    standing = track.standing
    recent = [p for p in track.points if p.at + bucket > since]
    points = [[p.at, round(p.suspicion, 4),
               {name: round(score, 3) for name, score in p.signals.items() if score > 0}]
              for p in recent]
    return {
        "id": identity,
        "suspicion": round(standing.current(now), 4),
        "peak": round(max((p.suspicion for p in recent), default=0.0), 4),
        "flagged": standing.flagged,
        "flagged_at": track.flagged_at or None,
        "last_request_at": standing.at,
        "actions": list(standing.actions),
        "throttle": standing.throttle,
        "perturb_level": standing.perturb_level,
        "signals": {name: round(score, 3) for name, score in standing.signals.items()},
        "evidence": standing.evidence,
        "points": points,
    }


def timeline(
    host: AdminHost, *, hours: float | None, shadow: bool, flagged_only: bool, limit: int,
    now: float | None = None,
) -> dict[str, Any]:
    assert host.state is not None
    history = host.state.standings.history(shadow=shadow)
    now = time.time() if now is None else now
    hours = history.hours if hours is None else min(hours, history.hours)
    since = now - hours * 3600.0
    rows = [track_json(identity, track, now=now, since=since, bucket=history.bucket)
            for identity, track in history.tracks(now)
            if track.standing.at >= since and (not flagged_only or track.flagged_at >= since)]
    rows.sort(key=lambda row: (-row["suspicion"], -row["peak"], row["id"]))
    return {
        "now": now, "hours": hours, "shadow": shadow, "flagged_only": flagged_only,
        "bucket_seconds": history.bucket, "floor": history.floor, "count": len(rows),
        "identities": rows[:limit],
    }


def admin_ui_routes(host: AdminHost) -> list[Route]:
    """Routes to mount in the gateway's ops app."""

    async def admin_ui(request: Request) -> Response:
        if host.settings.admin_token is None:  # off: the same 404 as every /admin route
            refusal = host._admin_refusal(request)
            assert refusal is not None
            return refusal
        body, csp = page()
        return Response(body, media_type="text/html; charset=utf-8",
                        headers=security_headers(csp))

    async def admin_timeline(request: Request) -> Response:
        if (refusal := host._admin_refusal(request)) is not None:
            return refusal
        params = request.query_params
        try:
            hours = float(params["hours"]) if "hours" in params else None
            limit = int(params.get("limit", DEFAULT_LIMIT))
        except ValueError:
            return JSONResponse({"error": "hours must be a number, limit an integer"},
                                status_code=400, headers=NO_STORE)
        if (hours is not None and not (math.isfinite(hours) and hours > 0)) or limit < 1:
            return JSONResponse({"error": "hours and limit must be positive"},
                                status_code=400, headers=NO_STORE)
        body = timeline(host, hours=hours, shadow=params.get("shadow") == "true",
                        flagged_only=params.get("flagged") == "true", limit=limit)
        return JSONResponse(body, headers=NO_STORE)

    return [
        Route("/admin/ui", admin_ui, methods=["GET"]),
        Route("/admin/timeline", admin_timeline, methods=["GET"]),
    ]
