"""docs/deploying.md's settings table is the one generated from `Settings`."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import Settings
from gateway.settings_doc import BEGIN, END, main, settings_table, table_in
from tests.deploy.dockerfile import ROOT

PAGE = ROOT / "docs" / "deploying.md"


def test_page_table_is_the_generated_one() -> None:
    assert table_in(PAGE.read_text(encoding="utf-8")) == settings_table(), (
        "docs/deploying.md is out of date: python -m gateway.settings_doc --write "
        "docs/deploying.md")


def test_every_setting_has_a_row_and_a_description() -> None:
    table = settings_table()
    for name, field in Settings.model_fields.items():
        assert f"| `DISTILL_GUARD_{name.upper()}` |" in table
        assert field.description, name
    # No machine-specific path and no secret value in the page.
    assert str(ROOT) not in table
    assert "distill-guard-dev" not in table


def test_write_replaces_only_the_table(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"before\n{BEGIN}\nold table\n{END}\nafter\n", encoding="utf-8")
    assert main(["--write", str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    assert text.startswith(f"before\n{BEGIN}\n| variable |")
    assert text.endswith(f"{END}\nafter\n")
    assert table_in(text) == settings_table()
    assert main([]) == 0
    assert capsys.readouterr().out == settings_table()
    (tmp_path / "bare.md").write_text("no markers\n")
    assert main(["--write", str(tmp_path / "bare.md")]) == 1
