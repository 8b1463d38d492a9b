"""The store commands as a user runs them: exit codes, stderr lines, files left behind."""

import json

import pytest
from click.testing import CliRunner

import tracer as t
from tui.cli import cli

from .helpers import record_run


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "a.duckdb"
    with t.Store(path) as store:
        record_run(t.DuckDBSink(store), versions=4)
    return str(path)


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_runs_json(db) -> None:
    r = run("runs", "--db", db, "--json")
    assert r.exit_code == 0
    (row,) = json.loads(r.output)
    assert row["workflow"] == "demo" and len(row["run_id"]) == 32 and row["versions"] == 4


def test_runs_uses_env_var(db, monkeypatch) -> None:
    monkeypatch.setenv("AGENTRACE_DB", db)
    assert json.loads(run("runs", "--json").output)[0]["workflow"] == "demo"


def test_state_json_prints_the_document(db) -> None:
    run_id = json.loads(run("runs", "--db", db, "--json").output)[0]["run_id"]
    r = run("state", run_id[:8], "--version", "3", "--db", db, "--json")
    assert r.exit_code == 0 and json.loads(r.output) == {
        "count": 3,
        "items": [0, 1, 2],
        "meta": {"by": "writer"},
    }
    human = run("state", run_id, "-v", "3", "--db", db)
    assert "changed since version 2" in human.output and "/items/2" in human.output


def test_missing_store_and_missing_run_are_one_line_errors(tmp_path, db) -> None:
    r = CliRunner().invoke(cli, ["runs", "--db", str(tmp_path / "nope.duckdb")])
    assert r.exit_code == 1 and "no such store" in r.output
    assert not (tmp_path / "nope.duckdb").exists()
    r = CliRunner().invoke(cli, ["state", "ffff", "--version", "1", "--db", db])
    assert r.exit_code == 1 and "no run 'ffff'" in r.output


def test_import_export_round_trip(tmp_path, db) -> None:
    run_id = json.loads(run("runs", "--db", db, "--json").output)[0]["run_id"]
    out = tmp_path / "run.jsonl"
    assert run("export", run_id, "--format", "otlp-json", "-o", str(out), "--db", db).exit_code == 0
    pb = tmp_path / "run.pb"
    assert run("export", run_id, "--format", "otlp-proto", "-o", str(pb), "--db", db).exit_code == 0
    fresh = str(tmp_path / "fresh.duckdb")
    r = run("import", str(out), "--db", fresh)
    assert r.exit_code == 0 and "3 span(s)" in r.output
    r = run("import", str(pb), "--db", fresh)
    assert "0 span(s)" in r.output and "3 already stored" in r.output
    again = tmp_path / "again.jsonl"
    run("export", run_id, "--format", "otlp-json", "-o", str(again), "--db", fresh)
    assert again.read_bytes() == out.read_bytes()
    pq = tmp_path / "pq"
    assert run("export", run_id, "--format", "parquet", "-o", str(pq), "--db", db).exit_code == 0
    assert (pq / "spans.parquet").exists()


def test_bad_file_names_file_and_line_and_stores_nothing(tmp_path, db) -> None:
    run_id = json.loads(run("runs", "--db", db, "--json").output)[0]["run_id"]
    good = tmp_path / "good.jsonl"
    run("export", run_id, "--format", "otlp-json", "-o", str(good), "--db", db)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(good.read_bytes() + b"{not json\n")
    fresh = tmp_path / "fresh.duckdb"
    r = CliRunner().invoke(cli, ["import", str(bad), "--db", str(fresh)])
    assert r.exit_code == 1
    assert f"{bad}:2: not JSON" in r.output
    with t.Store(fresh) as s:
        assert s.runs() == []
    r = CliRunner().invoke(cli, ["import", str(bad), "--db", str(fresh), "--skip-bad"])
    assert r.exit_code == 0 and "1 bad record(s) skipped" in r.output and f"{bad}:2" in r.output
    with t.Store(fresh) as s:
        assert len(s.runs()) == 1


def test_verify_exit_codes(db) -> None:
    assert run("verify", "--db", db).exit_code == 0
    with t.Store(db) as s:
        s.sql("UPDATE state_versions SET snapshot = '{}' WHERE version = 1")
    r = CliRunner().invoke(cli, ["verify", "--db", db])
    assert r.exit_code == 1 and "BAD" in r.output and "version 1" in r.output


def test_import_counts_a_run_once_across_files(tmp_path, db) -> None:
    run_id = json.loads(run("runs", "--db", db, "--json").output)[0]["run_id"]
    jl, pb = tmp_path / "run.jsonl", tmp_path / "run.pb"
    run("export", run_id, "--format", "otlp-json", "-o", str(jl), "--db", db)
    run("export", run_id, "--format", "otlp-proto", "-o", str(pb), "--db", db)
    r = run("import", str(jl), str(pb), "--db", str(tmp_path / "fresh.duckdb"))
    assert "imported 2 of 2 file(s): 1 run(s), 3 span(s)" in r.output


def test_export_to_an_unwritable_path_is_one_line_and_leaves_nothing(tmp_path, db) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for fmt, out, why in (
        (
            "otlp-json",
            blocker / "x.json",
            ": cannot write: Not a directory",
        ),  # a folder that is a file
        ("otlp-proto", tmp_path, " is a directory; export to a new file"),
        ("parquet", blocker, " is a file; export to a new folder"),
    ):
        run_id = json.loads(run("runs", "--db", db, "--json").output)[0]["run_id"]
        r = CliRunner().invoke(cli, ["export", run_id, "--format", fmt, "-o", str(out), "--db", db])
        assert r.exit_code == 1, (fmt, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit), (fmt, r.exception)
        (line,) = r.stderr.splitlines()
        assert line.startswith(f"agentrace: {out}{why}"), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "a.duckdb"]


def test_a_store_locked_by_a_multiline_command_is_one_line(tmp_path, db) -> None:
    import subprocess
    import sys

    script = f"import duckdb, sys\nc = duckdb.connect({db!r})\nprint('ready', flush=True)\nsys.stdin.read()"
    holder = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        r = CliRunner().invoke(cli, ["runs", "--db", db])
    finally:
        holder.communicate("")
    assert r.exit_code == 1
    (line,) = r.stderr.splitlines()
    assert line.startswith(f"agentrace: {db}: the store is locked by process {holder.pid} (")


def test_import_of_only_missing_files_creates_no_store(tmp_path) -> None:
    fresh = tmp_path / "fresh.duckdb"
    r = CliRunner().invoke(cli, ["import", str(tmp_path / "nope.jsonl"), "--db", str(fresh)])
    assert r.exit_code == 1 and "nope.jsonl: no such file" in r.output
    assert not fresh.exists()
