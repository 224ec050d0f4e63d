from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.identity import IdentityHasher
from gateway.watermark import Watermarker

from .conftest import real_passages


@pytest.fixture
def files(tmp_path: Path, long_demo: str) -> dict[str, Path]:
    secret = tmp_path / "secret"
    secret.write_text("cli-secret\n")
    hasher = IdentityHasher(b"id-secret")
    keys = [f"sk-test-{i}" for i in range(30)]
    ids = [hasher.hash_key(k) for k in keys]
    (tmp_path / "ids").write_text("\n".join(ids) + "\n")
    (tmp_path / "keys").write_text("\n".join(keys) + "\n")
    marked = tmp_path / "marked.txt"
    marked.write_text(Watermarker(b"cli-secret", ids[11]).mark(long_demo))
    plain = tmp_path / "plain.txt"
    plain.write_text(real_passages(1, 2000)[0])
    return {"secret": secret, "ids": tmp_path / "ids", "keys": tmp_path / "keys",
            "marked": marked, "plain": plain, "id": Path(ids[11])}


def test_detect_json(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["watermark", "detect", "--json", "--secret-file", str(files["secret"]),
                 "--identities", str(files["ids"]), str(files["marked"]), str(files["plain"])])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert [o["input"] for o in out] == [str(files["marked"]), str(files["plain"])]
    marked, plain = out
    assert marked["marked"] and marked["attributed"]
    assert marked["best"]["identity"] == str(files["id"])
    assert marked["deployment"]["z"] >= 4.0
    assert marked["runner_up"]["z"] < marked["best"]["z"]
    assert not plain["marked"] and not plain["attributed"]
    assert plain["deployment"]["p"] > 1e-3
    assert marked["words"] > 1900 and marked["candidates"] == 30


def test_detect_raw_keys_and_table(files: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILL_GUARD_IDENTITY_SECRET", "id-secret")
    monkeypatch.setenv("DISTILL_GUARD_WATERMARK_SECRET", "cli-secret")
    code = main(["watermark", "detect", "--keys", "--identities", str(files["keys"]),
                 str(files["marked"])])
    assert code == 0
    out = capsys.readouterr().out
    assert "marked" in out.splitlines()[1]
    assert str(files["id"]) + " *" in out


def test_detect_stdin(files: dict[str, Path], capsys: pytest.CaptureFixture[str],
                      monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(files["marked"].read_text()))
    assert main(["watermark", "detect", "--json", "--secret-file", str(files["secret"]),
                 "-"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["input"] == "-" and result["marked"] and result["best"] is None


def test_missing_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["watermark", "detect", str(tmp_path / "nope.txt")]) == 2
    assert "nope.txt" in capsys.readouterr().err


def test_detect_combine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Short outputs are weak one by one and strong together."""
    from .conftest import demo_text

    marker = Watermarker(b"cli-secret", "0123456789abcdef")
    names = []
    for i in range(12):
        path = tmp_path / f"out{i}.txt"
        path.write_text(marker.mark(demo_text(300, seed=100 + i)))
        names.append(str(path))
    secret = tmp_path / "secret"
    secret.write_text("cli-secret")
    assert main(["watermark", "detect", "--json", "--combine", "--secret-file", str(secret),
                 *names]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 13 and out[-1]["input"] == "(all 12 inputs)"
    assert not any(o["marked"] for o in out[:-1])
    assert out[-1]["marked"] and out[-1]["words"] >= 3600
