"""A run not analysed is not a run with no findings: "–" and null, per run, in the runs list and
in `runs --json` (a late batch making analysis due again: tests/tracer/test_store.py)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from tracer import Store, import_file
from tracer.analysis import analyze
from tui.app import AgentraceApp
from tui.cli import cli
from tui.widgets.runs_table import RunsTable

from .helpers import FOREIGN, settle


def _store(path: Path) -> tuple[str, str]:
    """Two runs: ``control`` analysed (nothing found), ``lost`` not analysed."""
    with Store(path) as store:
        import_file(store, FOREIGN / "rabbitmq_control.jsonl")
        (control,) = [r.run_id for r in store.runs()]
        import_file(store, FOREIGN / "rabbitmq_lost.jsonl")
        (lost,) = [r.run_id for r in store.runs() if r.run_id != control]
        assert analyze(store, control) == []
    return control, lost


def _json_findings(db: Path) -> dict[str, int | None]:
    res = CliRunner().invoke(cli, ["runs", "--json", "--db", str(db)])
    assert res.exit_code == 0, res.output
    return {r["run_id"]: r["findings"] for r in json.loads(res.output)}


def test_runs_json_gives_null_for_a_run_not_analysed_and_0_for_none_found(tmp_path: Path) -> None:
    db = tmp_path / "a.duckdb"
    control, lost = _store(db)
    assert _json_findings(db) == {control: 0, lost: None}
    rows = CliRunner().invoke(cli, ["runs", "--db", str(db)]).output.splitlines()[1:]
    assert sorted(r.rstrip()[-1] for r in rows) == ["0", "–"]
    with Store(db) as store:
        analyze(store, lost)
    assert _json_findings(db) == {control: 0, lost: 1}


async def test_the_runs_list_shows_a_dash_for_a_run_not_analysed(tmp_path: Path) -> None:
    db = tmp_path / "a.duckdb"
    control, lost = _store(db)
    with Store(db) as store:
        app = AgentraceApp(store)
        async with app.run_test(size=(160, 30)) as pilot:
            await settle(app, pilot)
            table = app.screen.query_one(RunsTable)
            col = [c.key for c in table.visible_columns]
            cells = {r.run_id: table.get_row_at(i) for i, r in enumerate(table.shown)}
            findings, kinds = col.index("findings"), col.index("kinds")
            assert cells[control][findings].plain == "0"
            assert cells[lost][findings].plain == "–"
            assert cells[lost][kinds].plain == "not analysed"
            assert cells[control][kinds].plain == ""
