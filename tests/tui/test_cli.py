"""``agentrace tui`` on the command line, and the import rule: only it loads Textual."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from tracer import Store
from tui.cli import cli

from .helpers import stale_read_run


def test_runs_and_the_tui_entry_point_do_not_load_textual(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        stale_read_run(store)
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom tui.cli import cli\nimport tui\n"
        f"r = CliRunner().invoke(cli, ['runs', '--db', {str(db)!r}])\n"
        "assert r.exit_code == 0, r.output\nassert callable(tui.run_app)\n"
        "print(sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_missing_store_is_one_clear_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["tui", "--db", str(tmp_path / "nope.duckdb")])
    assert result.exit_code == 1
    assert "nope.duckdb: no such store" in result.output
    assert not (tmp_path / "nope.duckdb").exists()


def test_an_unknown_run_is_one_clear_line(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        stale_read_run(store)
    result = CliRunner().invoke(cli, ["tui", "--db", str(db), "--run", "ffff"])
    assert result.exit_code == 1
    assert "no run 'ffff'" in result.output


def test_the_help_names_every_option() -> None:
    result = CliRunner().invoke(cli, ["tui", "--help"])
    assert result.exit_code == 0
    for option in ("--db", "--run", "--listen"):
        assert option in result.output
