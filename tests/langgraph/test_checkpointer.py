"""LangGraph checkpointers read directly: the claims graph written by SqliteSaver and
PostgresSaver, imported, with its parallel super-step and its one lost update."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import ormsgpack
import pytest
from click.testing import CliRunner

import tracer as t
from tracer.analysis import detect
from tui.cli import cli


def _counts(store: t.Store) -> dict[str, int]:
    return {
        table: store.sql(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("spans", "state_versions", "state_reads")
    }


def _history(app: Any, thread: str) -> list[Any]:
    return list(app.get_state_history({"configurable": {"thread_id": thread}}))


def _check_claims_run(store: t.Store, app: Any) -> None:
    """What both checkpointers must give: every checkpoint a version, step 2 parallel,
    one lost_update on claim-1 and none on claim-2."""
    for thread in ("claim-1", "claim-2"):
        run_id = t.run_id_for_thread(thread)
        history = _history(app, thread)[::-1]  # oldest first
        versions = store.state_versions(run_id)
        assert len(versions) == len(history) == 5
        spans = {s.span_id: s for s in store.spans(run_id)}
        for v, snap in zip(versions, history, strict=True):
            assert (
                spans[v.span_id].attributes["langgraph.checkpoint.id"]
                == snap.config["configurable"]["checkpoint_id"]
            )
            assert spans[v.span_id].attributes[t.conventions.AGENT_STEP] == snap.metadata["step"]
            assert v.source == f"langgraph:{snap.metadata['source']}"
            # LangGraph shows a reducer channel never written as its default (0); the
            # checkpoint holds no value for it.
            assert store.state_at(run_id, v.version).get("reserve", 0) == snap.values["reserve"]
        assert store.verify(run_id)[0].ok
        # The parallel step: fraud_check and damage_assessor both under the step-2 version's span.
        step2 = versions[3]
        under = sorted(s.agent for s in spans.values() if s.parent_span_id == step2.span_id)
        assert under == ["damage_assessor", "fraud_check"]
        # versions_seen: both parallel nodes read v3 (the step-1 checkpoint), settle read v4.
        reads = {(r.agent, r.version) for r in store.state_reads(run_id)}
        assert {("intake", 2), ("fraud_check", 3), ("damage_assessor", 3), ("settle", 4)} <= reads
    lost = [f for f in detect(store, t.run_id_for_thread("claim-1")) if f.kind == "lost_update"]
    assert len(lost) == 1
    ev = lost[0].evidence
    assert ev["key"] == "reserve" and ev["base_version"] == 3 and ev["survivor_version"] == 4
    writes = {w["node"]: w["value"] for w in ev["values"]["writes"]}
    assert writes == {"fraud_check": 1500, "damage_assessor": 3500}
    assert ev["values"]["base"] == 1000
    assert ev["values"]["survivor"] == 1500 and ev["kept_by"] == "fraud_check"
    assert ev["lost_by"] == ["damage_assessor"]
    assert [
        f for f in detect(store, t.run_id_for_thread("claim-2")) if f.kind == "lost_update"
    ] == []


def test_a_sqlite_checkpointer_gives_every_checkpoint_and_the_lost_update(
    claims_sqlite: Path, claims: Any, tmp_path: Path
) -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    assert t.detect_format(claims_sqlite) == "langgraph"
    with t.Store(tmp_path / "a.duckdb") as store:
        result = t.import_file(store, claims_sqlite)
        assert result.runs == 2 and result.versions == 10
        con = sqlite3.connect(claims_sqlite, check_same_thread=False)
        try:
            _check_claims_run(store, claims.build(SqliteSaver(con)))
        finally:
            con.close()
        # Again: nothing new.
        before = _counts(store)
        assert t.import_file(store, claims_sqlite).versions == 0
        assert _counts(store) == before


def test_the_merging_reducer_is_not_a_finding(claims_sqlite: Path, tmp_path: Path) -> None:
    # notes (operator.add) is written by both parallel nodes too, and keeps both.
    with t.Store(tmp_path / "a.duckdb") as store:
        t.import_file(store, claims_sqlite)
        run_id = t.run_id_for_thread("claim-1")
        assert store.state_at(run_id, 4)["notes"] == [
            "intake C-1",
            "damage assessed",
            "fraud checked",
        ]
        keys = [f.evidence["key"] for f in detect(store, run_id) if f.kind == "lost_update"]
        assert keys == ["reserve"]


def test_only_the_thread_asked_for(claims_sqlite: Path, tmp_path: Path) -> None:
    with t.Store(tmp_path / "a.duckdb") as store:
        result = t.import_file(store, claims_sqlite, thread="claim-2")
        assert result.run_ids == {t.run_id_for_thread("claim-2")}


def test_a_fork_from_an_older_checkpoint_is_a_fork(claims: Any, tmp_path: Path) -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = tmp_path / "fork.sqlite"
    con = sqlite3.connect(path, check_same_thread=False)
    try:
        saver = SqliteSaver(con)
        claims.run_threads(saver)
        app = claims.build(saver)
        step1 = next(s for s in _history(app, "claim-1") if s.metadata["step"] == 1)
        app.update_state(step1.config, {"reserve": 4000}, as_node="intake")
    finally:
        con.close()
    with t.Store(tmp_path / "a.duckdb") as store:
        t.import_file(store, path, thread="claim-1")
        versions = store.state_versions(t.run_id_for_thread("claim-1"))
        assert len(versions) == 6
        fork = versions[-1]
        assert fork.kind == "fork" and fork.base_version == 3 and fork.parent_version == 5
        assert fork.source == "langgraph:update"
        assert store.state_at(fork.run_id, fork.version)["reserve"] == 4000


def test_the_three_dump_shapes(claims_sqlite: Path, claims: Any, tmp_path: Path) -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    con = sqlite3.connect(claims_sqlite, check_same_thread=False)
    app = claims.build(SqliteSaver(con))

    def dump(thread: str) -> list[dict[str, Any]]:
        # The lines docs/import.md shows.
        return [
            {"values": s.values, "next": list(s.next), "config": s.config, "metadata": s.metadata,
             "created_at": s.created_at, "parent_config": s.parent_config,
             "tasks": [{"id": x.id, "name": x.name, "error": repr(x.error) if x.error else None,
                        "result": x.result} for x in s.tasks]}
            for s in app.get_state_history({"configurable": {"thread_id": thread}})
        ]  # fmt: skip

    shapes = {
        "list": dump("claim-1") + dump("claim-2"),
        "by_thread": {"claim-1": dump("claim-1"), "claim-2": dump("claim-2")},
        "snapshots": {"snapshots": dump("claim-1") + dump("claim-2")},
    }
    con.close()
    for name, doc in shapes.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc, default=str))
        with t.Store(tmp_path / f"{name}.duckdb") as store:
            result = t.import_file(store, path)
            assert result.runs == 2 and result.versions == 10, name
            lost = [
                f for f in detect(store, t.run_id_for_thread("claim-1")) if f.kind == "lost_update"
            ]
            assert [f.evidence["lost_by"] for f in lost] == [["damage_assessor"]], name
            assert not [
                f for f in detect(store, t.run_id_for_thread("claim-2")) if f.kind == "lost_update"
            ], name


# -- hostile and bad input ---------------------------------------------------------------------


def _checkpointer_with(path: Path, checkpoint: bytes, type_: str = "msgpack") -> Path:
    con = sqlite3.connect(path)
    con.executescript(
        """CREATE TABLE checkpoints (thread_id TEXT, checkpoint_ns TEXT, checkpoint_id TEXT,
               parent_checkpoint_id TEXT, type TEXT, checkpoint BLOB, metadata BLOB);
           CREATE TABLE writes (thread_id TEXT, checkpoint_ns TEXT, checkpoint_id TEXT, task_id TEXT,
               task_path TEXT, idx INTEGER, channel TEXT, type TEXT, value BLOB);"""
    )
    con.execute(
        "INSERT INTO checkpoints VALUES ('t', '', '1f0', NULL, ?, ?, ?)",
        (type_, checkpoint, b'{"source": "input", "step": -1}'),
    )
    con.commit()
    con.close()
    return path


def test_ext_types_are_described_never_imported_or_built(tmp_path: Path) -> None:
    # A blob naming a module and a class: LangGraph's serializer would import and call it.
    evil = ormsgpack.packb(
        ["agentrace_no_such_module_x", "Boom", {"cmd": "rm -rf /"}, "model_validate_json"]
    )
    doc = {
        "v": 4, "id": "1f0", "ts": "2026-01-01T00:00:00+00:00", "channel_versions": {}, "versions_seen": {},
        "channel_values": {"x": ormsgpack.Ext(5, evil), "s": ormsgpack.Ext(0, ormsgpack.packb(["os", "system", "id"]))},
    }  # fmt: skip
    path = _checkpointer_with(tmp_path / "evil.sqlite", ormsgpack.packb(doc))
    with t.Store(tmp_path / "a.duckdb") as store:
        t.import_file(store, path)
        state = store.state_at(t.run_id_for_thread("t"), 1)
    assert state["x"] == {"__type__": "agentrace_no_such_module_x.Boom", "cmd": "rm -rf /"}
    assert state["s"] == {"__type__": "os.system", "value": "id"}
    assert "agentrace_no_such_module_x" not in sys.modules


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: _checkpointer_with(p, b"\x80\x04K\x01.", "pickle"), "serializer type 'pickle' is not read"),
        (lambda p: _checkpointer_with(p, b"x", "encrypted.aes"), "serializer type 'encrypted.aes' is not read"),
        (lambda p: _checkpointer_with(p, ormsgpack.packb({"v": 99, "channel_values": {}})), "checkpoint format v99 is not known"),
        (lambda p: _checkpointer_with(p, b"\xc1\xc1"), "msgpack value that does not decode"),
    ],
)  # fmt: skip
def test_unknown_serializers_and_formats_are_one_line_nothing_written(
    tmp_path: Path, make: Any, message: str
) -> None:
    path = make(tmp_path / "c.sqlite")
    db = tmp_path / "a.duckdb"
    res = CliRunner().invoke(cli, ["import", str(path), "--db", str(db)])
    assert res.exit_code == 1
    lines = [x for x in res.stderr.splitlines() if x.startswith("agentrace:")]
    assert len(lines) == 1 and message in lines[0] and str(path) in lines[0], res.stderr
    with t.Store(db) as store:
        assert _counts(store) == {"spans": 0, "state_versions": 0, "state_reads": 0}


def test_a_sqlite_file_that_is_not_a_checkpointer(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE people (name TEXT)")
    con.commit()
    con.close()
    res = CliRunner().invoke(cli, ["import", str(path), "--db", str(tmp_path / "a.duckdb")])
    assert res.exit_code == 1
    assert f"agentrace: {path}: a SQLite database but not a LangGraph checkpointer" in res.stderr
    half = tmp_path / "half.sqlite"
    con = sqlite3.connect(half)
    con.execute("CREATE TABLE checkpoints (thread_id TEXT)")
    con.commit()
    con.close()
    res = CliRunner().invoke(cli, ["import", str(half), "--db", str(tmp_path / "a.duckdb")])
    assert "unknown LangGraph checkpointer schema: table checkpoints lacks" in res.stderr


def test_a_thread_that_is_not_there(claims_sqlite: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        cli,
        ["import", str(claims_sqlite), "--thread", "claim-9", "--db", str(tmp_path / "a.duckdb")],
    )
    assert res.exit_code == 1
    assert (
        res.stderr.strip()
        == f"agentrace: {claims_sqlite}: no thread 'claim-9' in this checkpointer"
    )


# -- Postgres ----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_postgres_checkpointer_read_from_its_url(
    postgres_url: str, claims: Any, tmp_path: Path
) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver

    with PostgresSaver.from_conn_string(postgres_url) as saver:
        saver.setup()
        claims.run_threads(saver)
        app = claims.build(saver)
        db = tmp_path / "a.duckdb"
        res = CliRunner().invoke(cli, ["import", postgres_url, "--db", str(db)])
        assert res.exit_code == 0, res.stderr
        assert "2 run(s)" in res.stdout and "10 state version(s)" in res.stdout
        with t.Store(db) as store:
            _check_claims_run(store, app)
        res = CliRunner().invoke(
            cli, ["import", postgres_url, "--thread", "claim-2", "--db", str(tmp_path / "b.duckdb")]
        )
        assert res.exit_code == 0 and "1 run(s)" in res.stdout


@pytest.mark.postgres
def test_postgres_credentials_never_shown_nor_stored(
    postgres_url: str, claims: Any, tmp_path: Path
) -> None:
    from langgraph.checkpoint.postgres import PostgresSaver

    password = postgres_url.split(":")[2].split("@")[0]
    wrong = postgres_url.replace(password, "not-the-password-41")
    db = tmp_path / "a.duckdb"
    res = CliRunner().invoke(cli, ["import", wrong, "--db", str(db)])
    assert res.exit_code == 1
    assert "password authentication failed" in res.stderr
    assert "not-the-password-41" not in res.stderr + res.stdout
    assert len([x for x in res.stderr.splitlines() if x]) == 1
    # A port nothing listens on: refused, one line.
    port = postgres_url.rsplit(":", 1)[1].split("/")[0]
    refused = postgres_url.replace(f":{port}/", ":1/")
    res = CliRunner().invoke(cli, ["import", refused, "--db", str(db)])
    assert res.exit_code == 1 and "Connection refused" in res.stderr and password not in res.stderr
    # Not a checkpointer, and a thread that is not there.
    res = CliRunner().invoke(cli, ["import", postgres_url, "--db", str(db)])
    assert res.exit_code == 1 and "not a LangGraph checkpointer" in res.stderr
    with PostgresSaver.from_conn_string(postgres_url) as saver:
        saver.setup()
        claims.run_threads(saver)
    res = CliRunner().invoke(cli, ["import", postgres_url, "--thread", "nope", "--db", str(db)])
    assert res.exit_code == 1 and "no thread 'nope'" in res.stderr and password not in res.stderr
    with t.Store(db) as store:
        assert _counts(store)["state_versions"] == 0
    # Imported for real: the password is nowhere in the store.
    res = CliRunner().invoke(cli, ["import", postgres_url, "--db", str(db)])
    assert res.exit_code == 0, res.stderr
    with t.Store(db) as store:
        assert _counts(store)["state_versions"] == 10
    assert password.encode() not in db.read_bytes()


# -- the committed fixtures: one instrumented run, checkpointer and trace ------------------------

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "foreign"


@pytest.mark.parametrize("suffix", [".jsonl", ".pb"])
def test_the_trace_gives_the_parallel_lost_update_too(suffix: str, tmp_path: Path) -> None:
    with t.Store(tmp_path / "a.duckdb") as store:
        t.import_file(store, FIXTURES / f"langgraph_claims_openinference{suffix}")
        by_thread = {r.attributes.get("session.id"): r.run_id for r in store.runs()}
        assert set(by_thread) == {"claim-1", "claim-2"}
        lost = [f for f in detect(store, by_thread["claim-1"]) if f.kind == "lost_update"]
        assert len(lost) == 1
        ev = lost[0].evidence
        assert ev["key"] == "reserve" and ev["step"] == 2
        assert {w["node"]: w["value"] for w in ev["values"]["writes"]} == {
            "fraud_check": 1500,
            "damage_assessor": 3500,
        }
        assert (
            ev["values"]["base"] == 1000
            and ev["values"]["survivor"] == ev["values"]["writes"][-1]["value"]
        )
        assert not [f for f in detect(store, by_thread["claim-2"]) if f.kind == "lost_update"]


def test_the_fixture_checkpointer_matches_its_trace(tmp_path: Path) -> None:
    with t.Store(tmp_path / "a.duckdb") as store:
        t.import_file(store, FIXTURES / "langgraph_claims.sqlite")
        run_id = t.run_id_for_thread("claim-1")
        assert len(store.state_versions(run_id)) == 5
        lost = [f for f in detect(store, run_id) if f.kind == "lost_update"]
        assert [f.evidence["lost_by"] for f in lost] == [["damage_assessor"]]


def _joined(store: t.Store) -> dict[str, Any]:
    out = {}
    for run in store.runs():
        out[run.attributes.get("session.id")] = (
            run.run_id,
            run.span_count,
            [(v.version, v.kind, v.agent, v.base_version, v.step, v.derived, v.span_id, v.hash)
             for v in store.state_versions(run.run_id)],
            sorted((r.agent, r.version, r.span_id) for r in store.state_reads(run.run_id)),
            [(f.kind, f.evidence.get("lost_by")) for f in detect(store, run.run_id)],
        )  # fmt: skip
    return out


@pytest.mark.parametrize(
    "trace", ["langgraph_claims_openinference.jsonl", "langgraph_claims_openinference.pb"]
)
def test_one_run_from_two_sources_in_either_order(trace: str, tmp_path: Path) -> None:
    sources = [FIXTURES / "langgraph_claims.sqlite", FIXTURES / trace]
    results = []
    for name, order in (("ckpt_first", sources), ("trace_first", sources[::-1])):
        with t.Store(tmp_path / f"{name}.duckdb") as store:
            for path in order:
                t.import_file(store, path)
            got = _joined(store)
            for run_id, *_ in got.values():
                assert store.verify(run_id)[0].ok
            results.append(got)
    assert results[0] == results[1]
    got = results[0]
    assert set(got) == {"claim-1", "claim-2"}  # one run per thread, the trace's
    for thread, (run_id, span_count, versions, reads, findings) in got.items():
        assert run_id != t.run_id_for_thread(thread)
        assert span_count == 7  # the trace's spans, nothing added
        assert len(versions) == 5
        assert {v[5] for v in versions} == {"langgraph-checkpoint"}
        assert [v[4] for v in versions] == [-1, 0, 1, 2, 3]  # super-steps
        # Versions and reads point at the trace's real node spans (or '' for the parallel step).
        assert [bool(v[6]) for v in versions] == [True, False, True, False, True]
        assert all(span for _, _, span in reads) and len(reads) == 4
        assert findings == ([("lost_update", ["damage_assessor"])] if thread == "claim-1" else [])


def test_a_trace_in_late_batches_around_its_checkpoints(tmp_path: Path) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    whole = ExportTraceServiceRequest.FromString(
        (FIXTURES / "langgraph_claims_openinference.pb").read_bytes()
    )

    def part(keep: Any) -> ExportTraceServiceRequest:
        req = ExportTraceServiceRequest()
        req.CopyFrom(whole)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                spans = [s for s in ss.spans if keep(s)]
                del ss.spans[:]
                ss.spans.extend(spans)
        return req

    with t.Store(tmp_path / "whole.duckdb") as store:
        t.import_file(store, FIXTURES / "langgraph_claims.sqlite")
        store.ingest([whole])
        expected = _joined(store)
    nodes_first = [
        part(lambda s: s.name not in ("claims", "settle")),
        part(lambda s: s.name in ("claims", "settle")),
    ]
    for name, steps in (
        ("root_last", ["ckpt", *nodes_first]),
        ("ckpt_between", [nodes_first[0], "ckpt", nodes_first[1]]),
        ("ckpt_last", [*nodes_first[::-1], "ckpt"]),
        ("nodes_last", [nodes_first[1], "ckpt", nodes_first[0]]),
    ):
        with t.Store(tmp_path / f"{name}.duckdb") as store:
            for step in steps:
                if step == "ckpt":
                    t.import_file(store, FIXTURES / "langgraph_claims.sqlite")
                else:
                    store.ingest([step])
            assert _joined(store) == expected, name


def test_findings_table_names_the_lost_writer_and_the_kept_one(tmp_path: Path) -> None:
    fixture = (
        Path(__file__).resolve().parents[1] / "fixtures" / "foreign" / "langgraph_claims.sqlite"
    )
    db = str(tmp_path / "a.duckdb")
    assert CliRunner().invoke(cli, ["import", str(fixture), "--db", db]).exit_code == 0
    res = CliRunner().invoke(cli, ["findings", "--db", db])
    assert res.exit_code == 0, res.output
    row = next(line for line in res.output.splitlines() if "damage_assessor" in line).split()
    # base v2, the lost write's node, the version that kept the other write and its node, the key
    assert row[1:] == ["v3", "damage_assessor", "v4", "fraud_check", "reserve"], res.output
    assert "[" not in res.output  # no Python list shown as a cell
