import threading
from pathlib import Path

import duckdb
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import tracer as t

from .helpers import record_run, spans_of

FOREIGN = Path(__file__).parents[1] / "fixtures" / "foreign"


@pytest.fixture
def store(tmp_path):
    with t.Store(tmp_path / "s.duckdb") as s:
        yield s


def _counts(store: t.Store) -> dict[str, int]:
    tables = (
        "runs",
        "spans",
        "span_events",
        "span_links",
        "state_versions",
        "state_reads",
        "messages",
    )
    return {name: store.sql(f"SELECT count(*) FROM {name}").fetchall()[0][0] for name in tables}


def test_recorded_run_is_indexed(store) -> None:
    run_id = record_run(t.DuckDBSink(store), versions=5)
    (run,) = store.runs()
    assert (run.run_id, run.workflow, run.pattern, run.status) == (
        run_id,
        "demo",
        "orchestration",
        "completed",
    )
    # The failed step was retried by its parent: a handled error, counted apart.
    assert (run.span_count, run.error_count, run.handled_error_count) == (3, 0, 1)
    assert run.version_count == 5
    assert run.agents == ("reader", "writer")
    versions = store.state_versions(run_id)
    assert [v.version for v in versions] == [1, 2, 3, 4, 5]
    assert versions[1].parent_version == 1 and versions[0].kind == "initial"
    (read,) = store.state_reads(run_id)
    assert (read.version, read.head_version, read.via, read.cache, read.keys) == (
        1,
        5,
        "cache",
        "c1",
        ("count",),
    )
    spans = store.spans(run_id)
    assert [s.name for s in spans] == [
        "invoke_workflow demo",
        "invoke_agent writer",
        "invoke_agent reader",
    ]
    assert spans[0].attributes["nested"] == {"k": 1} and spans[0].attributes["ratio"] == 0.5
    assert store.spans(run_id, offset=1, limit=1) == [spans[1]]
    (link,) = store.links(run_id)
    assert link.linked_span_id == spans[0].span_id


def test_state_at_any_version_and_diff(store) -> None:
    run_id = record_run(t.DuckDBSink(store), versions=6)
    for v in range(1, 7):
        assert store.state_at(run_id, v) == {
            "count": v,
            "items": list(range(v)),
            "meta": {"by": "writer"},
        }
    changes = {c.path: c for c in store.diff(run_id, 2, 4)}
    assert changes["/count"].old == 2 and changes["/count"].new == 4
    assert changes["/items/2"].change == "added" and changes["/items/3"].change == "added"
    with pytest.raises(t.NotFoundError):
        store.state_at(run_id, 7)


def test_import_twice_adds_nothing(store) -> None:
    sink = t.InMemorySink()
    record_run(sink)
    first = store.ingest(sink.requests)
    before = _counts(store)
    second = store.ingest(sink.requests)
    assert first.spans == 3 and second.spans == 0 and second.skipped == 3
    assert _counts(store) == before


def test_same_span_with_other_content_is_refused_and_nothing_written(store) -> None:
    sink = t.InMemorySink()
    record_run(sink)
    store.ingest(sink.requests)
    before = _counts(store)
    changed = ExportTraceServiceRequest()
    changed.CopyFrom(sink.requests[0])
    spans_of(changed)[0].name = "renamed"
    with pytest.raises(t.DuplicateSpanError, match="different content"):
        store.ingest([changed])
    assert _counts(store) == before


def test_bad_record_rolls_back_whole_ingest(store) -> None:
    good = t.InMemorySink()
    record_run(good, seed=1)
    bad = ExportTraceServiceRequest()
    bad.CopyFrom(good.requests[0])
    sp = spans_of(bad)[0]
    sp.trace_id = bytes(16 * [1])
    sp.end_time_unix_nano = sp.start_time_unix_nano - 1
    with pytest.raises(t.DecodeError, match="ends before it starts"):
        store.ingest([*good.requests, bad], source="upload")
    assert _counts(store)["spans"] == 0


def test_export_then_import_gives_the_same_rows(tmp_path, store) -> None:
    run_id = record_run(t.DuckDBSink(store), versions=4)
    exported = store.export_request(run_id)
    with t.Store(tmp_path / "other.duckdb") as other:
        other.ingest([t.decode_json(t.encode_json(exported))])
        for table, key in (("spans", "trace_id"), ("span_events", "trace_id"), ("span_links", "trace_id"),
                           ("state_versions", "run_id"), ("state_reads", "run_id"), ("runs", "run_id")):  # fmt: skip
            q = f"SELECT * FROM {table} WHERE {key} = ? ORDER BY ALL"
            assert other.sql(q, [run_id]).fetchall() == store.sql(q, [run_id]).fetchall(), table
    # and the wire form is the same spans
    assert sorted(s.SerializeToString() for s in spans_of(exported)) == sorted(
        s.SerializeToString() for s in spans_of(t.decode_proto(exported.SerializeToString()))
    )


def test_verify_finds_a_hand_edited_version(store) -> None:
    run_id = record_run(t.DuckDBSink(store), versions=5)
    assert [r.ok for r in store.verify()] == [True]
    store.sql("UPDATE state_versions SET snapshot = '{\"count\": 99}' WHERE version = 3")
    (result,) = store.verify(run_id)
    assert not result.ok and result.first_bad_version == 3


def test_verify_names_a_missing_version(store) -> None:
    run_id = record_run(t.DuckDBSink(store), versions=4)
    store.sql("DELETE FROM state_versions WHERE version = 2")
    (result,) = store.verify(run_id)
    assert result.first_bad_version == 2 and "missing" in (result.detail or "")
    store.sql("DELETE FROM state_versions WHERE version = 1")
    (result,) = store.verify(run_id)
    assert (result.first_bad_version, result.detail) == (1, "version 1 is missing")


def test_verify_names_a_patch_that_does_not_apply_and_a_wrong_parent(store) -> None:
    run_id = record_run(t.DuckDBSink(store), versions=4)
    store.sql("UPDATE state_versions SET parent_version = 1 WHERE version = 3")
    (result,) = store.verify(run_id)
    assert (result.first_bad_version, result.detail) == (3, "parent is 1, expected 2")
    store.sql(
        """UPDATE state_versions SET patch = '[{"op": "test", "path": "/nope", "value": 1}]'
           WHERE version = 2"""
    )
    (result,) = store.verify(run_id)
    assert result.first_bad_version == 2 and "does not apply" in (result.detail or "")


def test_findings_replace_and_read(store) -> None:
    run_id = record_run(t.DuckDBSink(store))
    f = t.Finding(run_id, "f1", "stale_read", "error", "msg", ("a",), (1, 2), ("s",), {"k": 1}, 5)
    g = t.Finding(run_id, "f2", "lost_update", "warning", "msg2")
    store.replace_findings(run_id, [f, g])
    assert store.findings(run_id) == [f, g] and store.run(run_id).finding_count == 2
    store.replace_findings(run_id, [f])
    assert store.findings(run_id) == [f]
    with pytest.raises(ValueError):
        store.replace_findings("other", [f])
    store.replace_findings(run_id, [])
    assert store.findings() == []
    assert store.run(run_id).finding_count == 0


def test_schema_version_is_recorded_and_newer_refused(tmp_path) -> None:
    path = tmp_path / "x.duckdb"
    t.Store(path).close()
    con = duckdb.connect(str(path))
    assert con.execute("SELECT value FROM agentrace_meta").fetchall() == [(str(t.SCHEMA_VERSION),)]
    con.execute("UPDATE agentrace_meta SET value = '999'")
    con.close()
    with pytest.raises(t.SchemaError, match="newer"):
        t.Store(path)


def test_a_version_1_store_is_migrated_to_2(tmp_path) -> None:
    from tracer._store._schema import MIGRATIONS

    path = tmp_path / "v1.duckdb"
    con = duckdb.connect(str(path))
    for stmt in MIGRATIONS[0]:
        con.execute(stmt)
    con.execute("INSERT INTO agentrace_meta VALUES ('schema_version', '1')")
    tid = "ab" * 16
    span = "INSERT INTO spans VALUES (?, ?, ?, '', 0, ?, 'INTERNAL', 1, 2, 'UNSET', '', '{}', '{}', ?, '', NULL, NULL, NULL, 0, 0, 0)"
    con.execute(span, [tid, "01" * 8, "", "graph", "openinference.instrumentation.langchain"])
    con.execute(span, [tid, "02" * 8, "01" * 8, "node", "openinference.instrumentation.langchain"])
    # What version 1 invented: a commit_state span under the node span carrying the version.
    con.execute(span, [tid, "03" * 8, "02" * 8, "commit_state node", "agentrace.langgraph"])
    con.execute(
        "INSERT INTO span_events VALUES (?, ?, 0, 2, 'agentrace.state.commit', '{}', 0)",
        [tid, "03" * 8],
    )
    con.execute(
        """INSERT INTO state_versions VALUES (?, 1, NULL, NULL, 'initial', 'node', ?, 2, '{}', NULL,
           'h', [], 'langgraph-trace')""",
        [tid, "03" * 8],
    )
    con.execute(
        "INSERT INTO messages VALUES (?, ?, -1, 'publish', 'm', 't', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1)",
        [tid, "02" * 8],
    )
    con.execute(
        """INSERT INTO runs VALUES (?, 'graph', 'imported', 'ok', NULL, ?, 'graph', 1, 2, 3, 0, [],
           1, NULL, NULL, NULL, '{}')""",
        [tid, "01" * 8],
    )
    con.close()
    with t.Store(path) as store:
        assert store.sql("SELECT value FROM agentrace_meta").fetchall() == [
            (str(t.SCHEMA_VERSION),)
        ]
        assert [s.name for s in store.spans(tid)] == ["graph", "node"]
        assert store.events(tid) == []
        (v,) = store.state_versions(tid)
        assert (v.span_id, v.derived) == ("02" * 8, "langgraph-trace")
        (m,) = store.messages(tid)
        assert m.derived == "messaging"
        run = store.run(tid)
        assert (run.span_count, run.flow_id, run.handled_error_count) == (2, tid, 0)
        sp = store.span(tid, "01" * 8)
        assert (sp.scope_attributes, sp.scope_schema_url, sp.cycle) == ({}, "", False)


def test_a_second_writer_process_is_named(tmp_path) -> None:
    import subprocess
    import sys

    path = tmp_path / "locked.duckdb"
    t.Store(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({str(path)!r}); print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(t.StoreLockedError) as err:
            t.Store(path)
        assert err.value.pid == holder.pid
        assert "locked by process" in str(err.value)
    finally:
        holder.communicate("")


def test_concurrent_readers_in_threads(store) -> None:
    run_id = record_run(t.DuckDBSink(store), versions=8)
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for v in range(1, 9):
                assert store.state_at(run_id, v)["count"] == v
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []


def test_direct_recording_and_otlp_import_give_the_same_rows(tmp_path) -> None:
    # The DuckDB sink writes the recorder's spans without protobuf; an OTLP file of the
    # same run, imported, must give exactly the same rows.
    with t.Store(tmp_path / "direct.duckdb") as direct, t.Store(tmp_path / "wire.duckdb") as wire:
        run_id = record_run(t.DuckDBSink(direct), versions=5, seed=3)
        record_run(t.OtlpJsonLinesSink(tmp_path / "run.jsonl"), versions=5, seed=3)
        t.import_file(wire, tmp_path / "run.jsonl")
        for table, key in (("spans", "trace_id"), ("span_events", "trace_id"), ("span_links", "trace_id"),
                           ("state_versions", "run_id"), ("state_reads", "run_id"), ("runs", "run_id")):  # fmt: skip
            q = f"SELECT * FROM {table} WHERE {key} = ? ORDER BY ALL"
            assert direct.sql(q, [run_id]).fetchall() == wire.sql(q, [run_id]).fetchall(), table


def test_values_the_wire_cannot_carry_are_refused_on_both_paths(tmp_path) -> None:
    import datetime

    for sink in (t.DuckDBSink(t.Store(":memory:")), t.InMemorySink()):
        rec = t.Recorder(sink)
        rec.start_span("x", attributes={"when": datetime.datetime(2024, 1, 1)}).end()
        with pytest.raises(TypeError):
            rec.flush()


def _without_version(req: ExportTraceServiceRequest, version: int) -> ExportTraceServiceRequest:
    out = ExportTraceServiceRequest()
    out.CopyFrom(req)
    for sp in spans_of(out):
        keep = [
            e
            for e in sp.events
            if not (
                e.name == "agentrace.state.commit"
                and any(
                    a.key == "agentrace.state.version" and a.value.int_value == version
                    for a in e.attributes
                )
            )
        ]
        del sp.events[:]
        sp.events.extend(keep)
    return out


def test_state_at_refuses_a_chain_with_a_missing_version(store) -> None:
    # Versions 1..4 with snapshots at 1 and 3: without version 3 (it has not arrived, or
    # never will), version 4's patch cannot be applied to version 2's document.
    sink = t.InMemorySink()
    run_id = record_run(sink, versions=4)
    store.ingest([_without_version(sink.requests[0], 3)])
    assert [v.version for v in store.state_versions(run_id)] == [1, 2, 4]
    assert store.state_at(run_id, 2)["count"] == 2
    with pytest.raises(t.StoreError, match="version 3 is missing"):
        store.state_at(run_id, 4)
    with pytest.raises(t.StoreError, match="version 3 is missing"):
        store.state_at(run_id, 4)  # not cached either


def test_runs_row_does_not_depend_on_the_order_spans_arrive(tmp_path, store) -> None:
    # Two roots starting at the same nanosecond, from two services: the root, its name and
    # the service are chosen by (start, span id), so an export imported again gives the same row.
    trace = "ab" * 16

    def rs(span_id: str, name: str, service: str) -> dict:
        span = {"traceId": trace, "spanId": span_id, "name": name,
                "startTimeUnixNano": 100, "endTimeUnixNano": 105}  # fmt: skip
        res = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
        return {"resource": res, "scopeSpans": [{"spans": [span]}]}

    store.ingest(
        [{"resourceSpans": [rs("00" * 7 + "02", "b", "s2"), rs("00" * 7 + "01", "a", "s1")]}]
    )
    run = store.run(trace)
    assert (run.root_span_id, run.workflow, run.service_name) == ("00" * 7 + "01", "a", "s1")
    with t.Store(tmp_path / "other.duckdb") as other:
        other.ingest([store.export_request(trace)])
        q = "SELECT * FROM runs"
        assert other.sql(q).fetchall() == store.sql(q).fetchall()


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        float("-inf"),
        [1.5, float("nan")],
        {"k": float("-inf")},
        ("a", "b"),
    ],
)
def test_direct_and_wire_store_the_same_value(value) -> None:
    rows = []
    for direct in (True, False):
        with t.Store(":memory:") as store:
            mem = t.InMemorySink()
            rec = t.Recorder(t.DuckDBSink(store) if direct else mem, ids=t.SeededIds(1))
            with rec.start_span("x", attributes={"v": value}) as sp:
                sp.add_event("e", {"v": value})
            rec.close()
            if not direct:
                store.ingest([t.decode_json(t.encode_json(r)) for r in mem.requests])
            rows.append(
                store.sql(
                    "SELECT s.attributes::VARCHAR, e.attributes::VARCHAR FROM spans s JOIN span_events e USING (span_id)"
                ).fetchall()
            )
    assert rows[0] == rows[1]


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, [2**64]])
def test_integers_past_64_bits_are_refused_on_both_paths(value) -> None:
    for sink in (t.DuckDBSink(t.Store(":memory:")), t.InMemorySink()):
        rec = t.Recorder(sink)
        rec.start_span("x", attributes={"v": value}).end()
        with pytest.raises(ValueError, match="64-bit"):
            rec.flush()


def test_json_import_refuses_an_integer_past_64_bits(store) -> None:
    req = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "ab" * 16, "spanId": "01" * 8, "name": "x",
        "attributes": [{"key": "n", "value": {"intValue": str(2**63)}}]}]}]}]}  # fmt: skip
    with pytest.raises(t.DecodeError, match="64-bit"):
        store.ingest([req])


def test_same_span_with_another_status_is_refused(store) -> None:
    sink = t.InMemorySink()
    record_run(sink)
    changed = ExportTraceServiceRequest()
    changed.CopyFrom(sink.requests[0])
    spans_of(changed)[2].status.code = 1  # ERROR before, OK now
    store.ingest(sink.requests)
    with pytest.raises(t.DuplicateSpanError, match="different content"):
        store.ingest([changed])
    with (
        t.Store(":memory:") as other,
        pytest.raises(t.DuplicateSpanError, match="different content"),
    ):
        other.ingest([sink.requests[0], changed])  # both in one batch


@pytest.mark.parametrize("patch", ['[{"op": "bogus", "path": "/count"}]', '{"op": "replace"}'])
def test_a_hand_edited_patch_is_a_store_error_naming_the_version(store, patch) -> None:
    run_id = record_run(t.DuckDBSink(store), versions=4)
    store.sql("UPDATE state_versions SET patch = ? WHERE version = 4", [patch])
    with pytest.raises(t.StoreError, match="version 4 does not apply"):
        store.state_at(run_id, 4)
    assert store.state_at(run_id, 3)["count"] == 3


def test_a_run_is_marked_analysed_until_a_late_batch_changes_it(tmp_path) -> None:
    """Not analysed, analysed with no finding and a late batch that makes analysis due again
    are three different things."""
    lines = (FOREIGN / "rabbitmq_control.jsonl").read_bytes().splitlines()
    assert len(lines) >= 2  # one request per process: the same trace in several batches
    first, late = tmp_path / "first.jsonl", tmp_path / "late.jsonl"
    first.write_bytes(lines[0] + b"\n")
    late.write_bytes(b"\n".join(lines[1:]) + b"\n")
    with t.Store(tmp_path / "a.duckdb") as store:
        t.import_file(store, first)
        (run,) = store.runs()
        assert run.analysed_ns is None and not run.analysed
        store.replace_findings(run.run_id, [], analysed_ns=123)
        run = store.run(run.run_id)
        assert run.analysed and run.analysed_ns == 123 and run.finding_count == 0
        assert store.runs()[0].analysed_ns == 123
        t.import_file(store, late)
        assert store.run(run.run_id).analysed_ns is None
        assert store.run(run.run_id).span_count > run.span_count


def test_a_version_2_store_keeps_its_analysed_runs(tmp_path) -> None:
    """Migrating to version 3: a run with stored findings was analysed (when is not known);
    one without is not known to have been."""
    path = tmp_path / "v2.duckdb"
    with t.Store(path) as store:
        a = record_run(t.DuckDBSink(store))
        b = record_run(t.DuckDBSink(store), seed=2)
        store.replace_findings(a, [t.Finding(a, "f1", "stale_read", "error", "msg")])
    con = duckdb.connect(str(path))
    con.execute("ALTER TABLE runs DROP COLUMN analysed_ns")
    con.execute("UPDATE agentrace_meta SET value = '2' WHERE key = 'schema_version'")
    con.close()
    with t.Store(path) as store:
        assert store.run(a).analysed_ns == 0 and store.run(b).analysed_ns is None
