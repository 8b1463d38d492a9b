"""export -o writes a new file where asked and nothing else; -o - is standard output."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

import tracer as t
from tui.cli import cli

from ..tracer.helpers import record_run


@pytest.fixture
def db(tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "a.duckdb"
    with t.Store(path) as store:
        run_id = record_run(t.DuckDBSink(store))
    return str(path), run_id


def export(db: tuple[str, str], *args: str):
    return CliRunner().invoke(cli, ["export", db[1], "--db", db[0], *args])


def test_an_existing_file_needs_force(tmp_path, db) -> None:
    out = tmp_path / "run.jsonl"
    out.write_text("keep me")
    r = export(db, "--format", "otlp-json", "-o", str(out))
    assert r.exit_code == 1
    assert r.stderr == f"agentrace: {out} already exists; pass --force to replace it\n"
    assert out.read_text() == "keep me"
    r = export(db, "--format", "otlp-json", "-o", str(out), "--force")
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["resourceSpans"]


def test_links_directories_and_devices_are_never_replaced(tmp_path, db) -> None:
    target = tmp_path / "target.txt"
    target.write_text("the link points here")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    dangling = tmp_path / "dangling.jsonl"
    dangling.symlink_to(tmp_path / "nowhere")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases = [
        (link, "a symbolic link"), (dangling, "a symbolic link"), (tmp_path, "a directory"),
        (fifo, "a FIFO"), (Path("/dev/null"), "a device"),
    ]  # fmt: skip
    for out, what in cases:
        for force in ([], ["--force"]):
            r = export(db, "--format", "otlp-proto", "-o", str(out), *force)
            assert r.exit_code == 1, (out, r.output)
            assert r.stderr == f"agentrace: {out} is {what}; export to a new file instead\n"
    assert link.is_symlink() and target.read_text() == "the link points here"
    assert dangling.is_symlink() and not (tmp_path / "nowhere").exists()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    # Nothing half-written was left beside them.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_new_file_gets_the_users_umask(tmp_path, db) -> None:
    old = os.umask(0o027)
    try:
        r = export(db, "--format", "otlp-json", "-o", str(tmp_path / "new.jsonl"))
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE(os.stat(tmp_path / "new.jsonl").st_mode) == 0o640


def test_dash_is_standard_output(tmp_path, db, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = export(db, "--format", "otlp-json", "-o", "-")
    assert r.exit_code == 0 and not (tmp_path / "-").exists()
    assert json.loads(r.stdout)["resourceSpans"]
    r = export(db, "--format", "otlp-proto", "-o", "-")
    assert r.exit_code == 0 and not (tmp_path / "-").exists()
    assert t.decode_proto(r.stdout_bytes).resource_spans
    r = export(db, "--format", "parquet", "-o", "-")
    assert r.exit_code == 2 and "-o - cannot take it" in r.stderr


def _deep(depth: int) -> str:
    """A key-value list ``depth`` levels deep, as JSON text (json.dumps would recurse too deep)."""
    text = '{"stringValue": "bottom"}'
    for i in range(depth):
        text = f'{{"kvlistValue": {{"values": [{{"key": "k{i}", "value": {text}}}]}}}}'
    return text


def test_deeply_nested_values_export_whole(tmp_path) -> None:
    span = (
        f'{{"traceId": "{"ab" * 16}", "spanId": "{"cd" * 8}", "name": "deep", "startTimeUnixNano": "1",'
        f' "endTimeUnixNano": "2", "attributes": [{{"key": "deep", "value": {_deep(250)}}}]}}'
    )
    src = tmp_path / "deep.jsonl"
    src.write_text(f'{{"resourceSpans": [{{"scopeSpans": [{{"spans": [{span}]}}]}}]}}\n')
    db = str(tmp_path / "d.duckdb")
    assert CliRunner().invoke(cli, ["import", str(src), "--db", db]).exit_code == 0
    for fmt in ("otlp-json", "otlp-proto"):
        out = tmp_path / f"out.{fmt}"
        r = CliRunner().invoke(
            cli, ["export", "ab" * 16, "--format", fmt, "-o", str(out), "--db", db]
        )
        assert r.exit_code == 0 and r.stderr == "", (fmt, r.output)
        again = str(tmp_path / f"again-{fmt}.duckdb")
        back = CliRunner().invoke(cli, ["import", str(out), "--db", again])
        if fmt == "otlp-proto":
            # protobuf's own decoder stops at 100 levels of messages (about 33 of key-value
            # lists): the file is valid, reading it back is refused in one line.
            assert back.exit_code == 1
            (line,) = back.stderr.splitlines()
            assert line.startswith(f"agentrace: {out}"), line
            continue
        assert back.exit_code == 0, back.output
        with t.Store(again, read_only=True) as a, t.Store(db, read_only=True) as b:
            sa, sb = a.spans("ab" * 16), b.spans("ab" * 16)
            assert [s.attributes for s in sa] == [s.attributes for s in sb]


class _FailingAt:
    """A connection whose COPY of one table fails, as a full disk would fail it."""

    def __init__(self, con: object, table: str) -> None:
        self._con, self._table = con, table

    def execute(self, sql: str, *args: object) -> object:
        if sql.startswith("COPY") and f"FROM {self._table} " in sql:
            import duckdb

            raise duckdb.IOException("No space left on device")
        return self._con.execute(sql, *args)  # type: ignore[attr-defined]


@pytest.mark.parametrize("existing", [False, True], ids=["new-folder", "replaced-folder"])
def test_parquet_export_is_whole_or_nothing(tmp_path, db, monkeypatch, existing) -> None:
    out = tmp_path / "exports" / "pq"
    with t.Store(db[0]) as store:
        if existing:  # an earlier export, told apart from this one by its bytes
            for p in store.export_parquet(db[1], out):
                p.write_bytes(b"an earlier export of " + p.name.encode())
        before = {p.name: p.read_bytes() for p in out.iterdir()} if existing else {}
        cur = store._cur
        monkeypatch.setattr(store, "_cur", lambda: _FailingAt(cur(), "span_links"))
        with pytest.raises(Exception, match="No space left"):
            store.export_parquet(db[1], out)
        monkeypatch.undo()
        # Nothing half-written: no new folder, no staging left, an old export untouched.
        assert sorted(p.name for p in out.parent.iterdir()) == (["pq"] if existing else [])
        if existing:
            assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        written = store.export_parquet(db[1], out)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)
    assert len(written) > 3 and sorted(p.name for p in out.parent.iterdir()) == ["pq"]
