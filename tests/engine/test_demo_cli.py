"""``agentrace demo``: records the bundled scenarios into a store."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import tracer as t
from tui.cli import cli


def test_demo_credit_records_fifty_runs_once(tmp_path: Path) -> None:
    db = str(tmp_path / "demo.duckdb")
    runner = CliRunner()
    first = runner.invoke(cli, ["demo", "--scenario", "credit", "--no-tui", "--db", db])
    assert first.exit_code == 0, first.output
    assert "recorded 1 scenario(s), 50 run(s), 300 new span(s)" in first.output
    again = runner.invoke(cli, ["demo", "--scenario", "credit", "--no-tui", "--db", db])
    assert again.exit_code == 0 and "0 new span(s); 300 already in the store" in again.output
    with t.Store(db, read_only=True) as store:
        runs = store.runs()
        assert len(runs) == 50 and {r.scenario for r in runs} == {"credit"}
        assert all(v.ok for v in store.verify())


def test_demo_all_and_an_unknown_scenario(tmp_path: Path) -> None:
    db = str(tmp_path / "demo.duckdb")
    runner = CliRunner()
    bad = runner.invoke(cli, ["demo", "--scenario", "nope", "--no-tui", "--db", db])
    assert bad.exit_code == 1 and "no scenario 'nope'" in bad.output
    assert not Path(db).exists()  # refused before the store was touched
    ok = runner.invoke(cli, ["demo", "--db", db])
    assert ok.exit_code == 0, ok.output
    with t.Store(db, read_only=True) as store:
        scenarios = {r.scenario for r in store.runs()}
    assert {"credit", "credit-fixed", "trading-saga", "flaky", "low-confidence"} <= scenarios


def test_demo_stores_the_findings_and_without_a_terminal_lists_the_runs(tmp_path: Path) -> None:
    db = str(tmp_path / "demo.duckdb")
    result = CliRunner().invoke(cli, ["demo", "--scenario", "credit", "--db", db])
    assert result.exit_code == 0, result.output
    assert "no terminal here" in result.output and "credit-decisioning" in result.output
    with t.Store(db, read_only=True) as store:
        stale = [f for f in store.findings() if f.kind == "stale_read"]
        wrong = [
            r.run_id
            for r in store.runs()
            if not store.state_at(r.run_id, r.version_count)["decision"]["rating_ok"]
        ]
    # one stored stale read per wrongly rated application, and no other finding
    assert sorted(f.run_id for f in stale) == sorted(wrong) and len(wrong) == 10
