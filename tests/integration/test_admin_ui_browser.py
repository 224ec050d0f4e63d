"""The admin page in a real headless browser (Debian's chromium) against a real gateway.

A campaign of three keys sharing a chain-of-thought template over three
(simulated) hours, next to one benign key: the page must list and plot the
three and not the benign one, and its screenshot must show a plot.

`DG_UPDATE_SCREENSHOT=1` also writes the screenshot to docs/img/admin-ui.png.
Without chromium the test skips, except under CI (`CI` set), where it fails.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.clock import FakeClock
from gateway.identity import IdentityHasher
from gateway.settings import Settings
from gateway.storage.memory import MemoryBackend
from tests.support.server import serve_in_thread

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="chromium not installed (apt-get install chromium; scripts/test installs it when "
    "run as root)")

DOC_IMAGE = Path(__file__).parents[2] / "docs" / "img" / "admin-ui.png"
TOKEN = "browser-t0ken"
SIZE = (1200, 800)
POLICY = """
version: 1
rules:
  - name: diversity
    kind: prompt_diversity
    config:
      window: 1800
      half_life: 1800
      thresholds: {min_requests: 8}
      steps:
        - {at: 0.6, action: flag}
        - {at: 0.8, action: throttle, factor: 0.5}
"""
HARVEST = ("Solve: what is {a} times {b}? Articulate the internal reasoning behind your "
           "answer and write it out step by step.")
TOPICS = ["sourdough bread", "the capital of Peru", "tax deductions for freelancers",
          "autumn leaves", "the distance to Mars", "learning piano as an adult",
          "why the sky is blue", "novels like Dune", "how vaccines work", "packing for Iceland",
          "repotting a fern", "the rules of cricket", "a birthday toast", "fixing a bike chain"]
ASKS = ["Tell me about {}.", "Any quick tips on {}?", "Write two lines about {}.",
        "What should a beginner know about {}?"]
STEP = 300.0  # simulated seconds between rounds of requests
ROUNDS = 36  # three hours
CAMPAIGN = ("sk-hydra-1", "sk-hydra-2", "sk-hydra-3")
BENIGN = "sk-benign"


def plan(key: str, round_: int) -> list[str]:
    """Prompts one key sends in one round.

    hydra-1 hides harvesting in cover traffic, less and less (a slow rise);
    hydra-2 joins an hour in and only harvests (a jump); hydra-3 harvests
    for 90 minutes, then sends ordinary chat (its suspicion decays).
    """
    def cot(n: int) -> list[str]:
        return [HARVEST.format(a=round_ * 7 + i + 3, b=(round_ + i) % 13 + 2) for i in range(n)]

    def cover(n: int) -> list[str]:
        base = round_ * 5 + sum(map(ord, key))
        return [ASKS[(base + i) // len(TOPICS) % len(ASKS)].format(TOPICS[(base + i) % len(TOPICS)])
                for i in range(n)]

    if key == "sk-hydra-1":
        harvest = 1 + round_ * 3 // ROUNDS
        return cot(harvest) + cover(4 - harvest)
    if key == "sk-hydra-2":
        return cot(3) if round_ >= 12 else []
    if key == "sk-hydra-3":
        return cot(3) if 4 <= round_ < 22 else cover(2) if round_ >= 22 else []
    return cover(2)


def chat(prompt: str) -> dict[str, Any]:
    return {"model": "demo-model", "max_tokens": 3,
            "messages": [{"role": "user", "content": prompt}]}


@pytest.fixture(scope="module")
def campaign(demo_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway that has watched the campaign; yields its URL."""
    policy = tmp_path_factory.mktemp("policy") / "policy.yaml"
    policy.write_text(POLICY)
    clock = FakeClock(start=time.time() - ROUNDS * STEP)  # storage time: 3 h ago, up to now
    app = create_app(Settings(policy=policy, upstream=demo_url, redis="memory",  # type: ignore[arg-type]
                              admin_token=TOKEN), storage=MemoryBackend(clock))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        for round_ in range(ROUNDS):
            for key in (*CAMPAIGN, BENIGN):
                for prompt in plan(key, round_):
                    resp = http.post("/v1/chat/completions", json=chat(prompt),
                                     headers={"authorization": f"Bearer {key}"})
                    assert resp.status_code == 200
            clock.advance(STEP)
        yield url


def ids() -> tuple[set[str], str]:
    hasher = IdentityHasher(b"distill-guard-dev-secret")
    return {hasher.hash_key(key) for key in CAMPAIGN}, hasher.hash_key(BENIGN)


def chromium(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        pytest.fail("chromium is required under CI: apt-get install chromium")
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-extensions", "--hide-scrollbars",
         "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}",
         f"--window-size={SIZE[0]},{SIZE[1]}", "--virtual-time-budget=5000", *args, url],
        capture_output=True, text=True, timeout=60, check=False)


class Dom(HTMLParser):
    """Rows of the identities table and lines of the plot, from chromium's --dump-dom."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[str] = []
        self.lines: list[str] = []
        self.svg_seen = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "svg" and attr.get("id") == "chart":
            self.svg_seen = True
        if tag == "tr" and attr.get("data-id"):
            self.rows.append(attr["data-id"] or "")
        if tag == "path" and "line" in (attr.get("class") or "").split():
            self.lines.append(attr.get("data-id") or "")
            assert (attr.get("d") or "").startswith("M")


def test_page_lists_and_plots_the_campaign(campaign: str, tmp_path: Path) -> None:
    flagged, benign = ids()
    # what the page will fetch: the three campaign keys are flagged, the benign one is not
    timeline = httpx.get(campaign + "/admin/timeline?flagged=true",
                         headers={"authorization": f"Bearer {TOKEN}"}).json()
    assert {row["id"] for row in timeline["identities"]} == flagged
    assert all(len(row["points"]) >= 10 for row in timeline["identities"])

    start = time.monotonic()
    result = chromium(f"{campaign}/admin/ui#token={TOKEN}", tmp_path, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = Dom()
    dom.feed(result.stdout)
    assert dom.svg_seen
    assert sorted(dom.rows) == sorted(flagged), result.stdout[-3000:]
    assert sorted(dom.lines) == sorted(flagged)  # one line per flagged identity
    assert benign not in result.stdout
    assert TOKEN not in result.stdout  # the fragment is dropped, nothing echoes it
    assert "Content Security Policy" not in result.stderr  # nothing inline was refused
    assert "updated" in result.stdout  # the status line: the data fetch succeeded
    assert time.monotonic() - start < 15


def test_a_wrong_token_gets_the_login_form(campaign: str, tmp_path: Path) -> None:
    result = chromium(f"{campaign}/admin/ui#token=wrong", tmp_path, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "The gateway refused that token." in result.stdout
    assert '<section id="login">' in result.stdout  # no longer hidden
    assert '<main id="view" hidden="">' in result.stdout
    assert 'data-id="' not in result.stdout


def test_screenshot_shows_the_plot(campaign: str, tmp_path: Path) -> None:
    shot = tmp_path / "admin-ui.png"
    result = chromium(f"{campaign}/admin/ui?refresh=0#token={TOKEN}", tmp_path,
                      f"--screenshot={shot}")
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    width, height, pixels = decode_png(shot.read_bytes(), rows=400)
    assert (width, height) == SIZE
    # the plot is in the upper half: lines in several colours, not a blank page
    plot = [pixels[y][x] for y in range(80, 380) for x in range(60, 1180)]
    colours = Counter(plot)
    ((_, count),) = colours.most_common(1)
    assert len(plot) - count > 5_000  # not a blank page
    coloured = Counter(quantise(p) for p in plot if max(p) - min(p) > 80)  # not the grey grid
    assert sum(coloured.values()) > 2_000, f"{coloured} in the plot area"
    assert len([c for c, n in coloured.items() if n > 100]) >= 3  # three lines, three colours
    if os.environ.get("DG_UPDATE_SCREENSHOT"):
        DOC_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOC_IMAGE)


def quantise(pixel: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = pixel
    return r // 64, g // 64, b // 64


def decode_png(data: bytes, rows: int) -> tuple[int, int, list[list[tuple[int, int, int]]]]:
    """Width, height and the first `rows` rows of RGB pixels of an 8-bit RGB(A) PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, bytearray(), b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour_type in (2, 6) and interlace == 0
    channels = 3 if colour_type == 2 else 4
    stride = width * channels
    raw = zlib.decompressobj().decompress(bytes(idat), (stride + 1) * min(rows, height))
    previous = bytearray(stride)
    pixels: list[list[tuple[int, int, int]]] = []
    for y in range(min(rows, height)):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        kind, row = line[0], bytearray(line[1:])
        if kind == 1:
            for i in range(channels, stride):
                row[i] = (row[i] + row[i - channels]) & 0xFF
        elif kind == 2:
            row = bytearray((a + b) & 0xFF for a, b in zip(row, previous, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = row[i - channels] if i >= channels else 0
                row[i] = (row[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = row[i - channels] if i >= channels else 0
                b, c = previous[i], previous[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        pixels.append([tuple(row[x:x + 3]) for x in range(0, stride, channels)])  # type: ignore[misc]
        previous = row
    return width, height, pixels
