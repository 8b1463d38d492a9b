"""--db names a store or a path that does not exist yet; anything else is one line and untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import tracer as t
from tui.cli import cli

from ..tracer.helpers import record_run

NOT_STORES = {
    "trace.json": (b'{"resourceSpans": []}\n', "is a JSON file"),
    "data.csv": (b"a,b,c\n1,2,3\n", "is a text file (CSV?)"),
    "empty.duckdb": (b"", "is an empty file"),
    "old.sqlite": (b"SQLite format 3\x00" + b"\x00" * 100, "is an SQLite database"),
    "blob.bin": (bytes(range(256)) * 4, "is a file of another kind"),
}


@pytest.fixture
def spans_file(tmp_path: Path) -> Path:
    src = tmp_path / "src.duckdb"
    with t.Store(src) as store:
        run_id = record_run(t.DuckDBSink(store))
        data = t.encode_json(store.export_request(run_id))
    out = tmp_path / "spans.jsonl"
    out.write_bytes(data + b"\n")
    return out


@pytest.mark.parametrize("name", sorted(NOT_STORES))
def test_a_file_that_is_not_a_store_is_refused_untouched(tmp_path, spans_file, name) -> None:
    content, what = NOT_STORES[name]
    db = tmp_path / name
    db.write_bytes(content)
    before = sorted(os.listdir(tmp_path))
    for args in (
        ["import", str(spans_file)],
        ["runs"],
        ["findings"],
        ["verify"],
        ["serve", "--port", "0"],
    ):
        r = CliRunner().invoke(cli, [*args, "--db", str(db)])
        assert r.exit_code == 1, (args, r.output)
        (line,) = r.stderr.splitlines()
        assert line == (
            f"agentrace: {db} {what}, not an agentrace store; --db takes an agentrace store "
            "(a DuckDB file) or a path that does not exist yet"
        ), args
        assert r.stdout == "", args
    assert db.read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == before


def test_a_directory_or_a_device_is_refused(tmp_path) -> None:
    for db, what in ((tmp_path, "is a directory"), (Path("/dev/null"), "is not a regular file")):
        with pytest.raises(t.StoreError, match=f"^{db} {what}; --db takes"):
            t.Store(db)


def test_a_path_that_does_not_exist_yet_becomes_a_store(tmp_path, spans_file) -> None:
    db = tmp_path / "sub" / "new.duckdb"
    r = CliRunner().invoke(cli, ["import", str(spans_file), "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert json.loads(CliRunner().invoke(cli, ["runs", "--json", "--db", str(db)]).stdout)


def test_a_damaged_store_is_one_line_naming_it_and_what_to_do(tmp_path) -> None:
    good = tmp_path / "good.duckdb"
    with t.Store(good) as store:
        for seed in range(3):
            record_run(t.DuckDBSink(store), seed=seed, versions=40)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.duckdb"
    truncated.write_bytes(data[: len(data) // 3])
    scrambled = tmp_path / "scrambled.duckdb"
    scrambled.write_bytes(data[: 8192 + 100] + b"\xab" * 4000 + data[8192 + 4100 :])
    for db in (truncated, scrambled):
        for args in (["runs"], ["findings"], ["verify"]):
            r = CliRunner().invoke(cli, [*args, "--db", str(db)])
            assert r.exit_code == 1, (db, args, r.output)
            assert r.exception is None or isinstance(r.exception, SystemExit)
            (line,) = r.stderr.splitlines()
            assert line.startswith(f"agentrace: {db}: the store cannot be "), line
            assert line.endswith(
                "if it is damaged, restore it from a backup, or move it aside and import the traces again"
            ), line


def test_a_lock_message_never_shows_the_holders_token(tmp_path) -> None:
    db = tmp_path / "a.duckdb"
    t.Store(db).close()
    script = tmp_path / "h.py"
    script.write_text(
        f"import duckdb, sys\nc = duckdb.connect({str(db)!r})\nprint('ready', flush=True)\nsys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, str(script), "serve", "--token", "s3cr3t-value", "--password=hunter2"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        r = CliRunner().invoke(cli, ["runs", "--db", str(db)])
    finally:
        holder.communicate("")
    assert r.exit_code == 1
    (line,) = r.stderr.splitlines()
    assert "--token *** --password=***" in line, line
    assert "s3cr3t" not in line and "hunter2" not in line
