"""Ingest hygiene: invalid ids refused per span and named, parent cycles stored but flagged
and shown as roots, the good spans of a bad request or file kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest as PB2Request,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

import tracer as t
from tui.cli import cli

from .helpers import ThreadedReceiver, counts, post

JSON = {"Content-Type": "application/json"}
PROTO = {"Content-Type": "application/x-protobuf"}
TRACE = "cd" * 16


def span(sid: str, parent: str = "", *, trace: str = TRACE, name: str = "s", start: int = 0) -> dict[str, Any]:  # fmt: skip
    sp: dict[str, Any] = {
        "traceId": trace, "spanId": sid, "name": name, "kind": 1,
        "startTimeUnixNano": str(1000 + start), "endTimeUnixNano": str(2000 + start),
    }  # fmt: skip
    if parent:
        sp["parentSpanId"] = parent
    return sp


def request(*spans: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceSpans": [{"resource": {}, "scopeSpans": [{"scope": {}, "spans": list(spans)}]}]
    }


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        (span("00" * 8, name="zero-span"), "all-zero span id"),
        (span("11" * 8, name="zero-trace", trace="00" * 16), "all-zero trace id"),
        (span("12" * 8, "00" * 8, name="zero-parent"), "all-zero parent span id"),
    ],
)
def test_all_zero_ids_are_refused_naming_the_span(bad: dict[str, Any], what: str) -> None:
    store = t.Store(":memory:")
    with pytest.raises(t.DecodeError) as err:
        store.ingest([request(span("aa" * 8), bad)], source="req")
    assert what in str(err.value) and repr(bad["name"]) in str(err.value)
    assert counts(store)["spans"] == 0  # one transaction: nothing half-written
    # With skip_bad, only that span is left out, and named.
    kept = store.ingest([request(span("aa" * 8), bad)], source="req", skip_bad=True)
    assert kept.spans == 1 and len(kept.errors) == 1 and what in kept.errors[0]


def test_a_span_that_is_its_own_ancestor_is_flagged_and_shown_as_a_root() -> None:
    store = t.Store(":memory:")
    a, b, c, d, e = (f"{i:016x}" for i in range(1, 6))
    # a is a plain root; b is its own parent; c -> d -> c is a cycle; e hangs under d.
    store.ingest([request(span(a), span(b, b, start=1), span(c, d, start=2), span(d, c, start=3),
                          span(e, d, start=4))])  # fmt: skip
    flagged = {s.span_id for s in store.spans(TRACE) if s.cycle}
    assert flagged == {b, c, d}
    tree = store.span_tree(TRACE).to_pylist()
    # Every span exactly once; the cycle's spans are roots, e stays under d.
    assert sorted(r["span_id"] for r in tree) == [a, b, c, d, e]
    depth = {r["span_id"]: r["depth"] for r in tree}
    assert depth == {a: 0, b: 0, c: 0, d: 0, e: 1}
    (run,) = store.runs()
    assert run.root_span_id == a and run.span_count == 5
    # Exported as sent: the flag is derived, the parent ids are the input's.
    exported = {sp.span_id.hex(): sp.parent_span_id.hex() for rs in store.export_request(TRACE).resource_spans
                for ss in rs.scope_spans for sp in ss.spans}  # fmt: skip
    assert exported == {a: "", b: b, c: d, d: c, e: d}


def test_a_cycle_closed_by_a_late_span_is_flagged_then() -> None:
    store = t.Store(":memory:")
    x, y = f"{7:016x}", f"{8:016x}"
    store.ingest([request(span(x, y))])
    assert not store.spans(TRACE)[0].cycle  # its parent has not arrived: not a cycle (yet)
    store.ingest([request(span(y, x, start=1))])
    assert {s.span_id for s in store.spans(TRACE) if s.cycle} == {x, y}


def test_the_receiver_keeps_the_good_spans_of_a_request_with_a_zero_id(tmp_path: Path) -> None:
    store = t.Store(tmp_path / "s.duckdb")
    body = request(span("aa" * 8), span("bb" * 8, "aa" * 8), span("00" * 8, name="nil"))
    with ThreadedReceiver(store) as rx:
        status, _, raw = post(rx.url, orjson.dumps(body), JSON)
        assert status == 200
        partial = orjson.loads(raw)["partialSuccess"]
        assert partial["rejectedSpans"] == "1" and "'nil'" in partial["errorMessage"]
        proto = t.decode_json(
            orjson.dumps(request(span("cc" * 8, trace="ef" * 16), span("00" * 8, trace="ef" * 16)))
        )
        status, _, raw = post(rx.url, proto.SerializeToString(), PROTO)
        resp = ExportTraceServiceResponse()
        resp.ParseFromString(raw)
        assert status == 200 and resp.partial_success.rejected_spans == 1
    assert counts(store)["spans"] == 3


def _proto_with_bad_span(tmp_path: Path, *, all_bad: bool = False) -> Path:
    good = (
        [] if all_bad else [span("aa" * 8, name="fine"), span("bb" * 8, "aa" * 8, name="fine too")]
    )
    bad = dict(span("cc" * 8, name="backwards"), endTimeUnixNano="10")
    req: PB2Request = t.decode_json(orjson.dumps(request(*good, bad)))
    path = tmp_path / "one.pb"
    path.write_bytes(req.SerializeToString())
    return path


def test_skip_bad_leaves_out_single_spans_of_a_protobuf_request(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    path = _proto_with_bad_span(tmp_path)
    strict = CliRunner().invoke(cli, ["import", str(path), "--db", str(db)])
    assert strict.exit_code == 1 and "'backwards'" in strict.output
    out = CliRunner().invoke(cli, ["import", str(path), "--db", str(db), "--skip-bad"])
    assert out.exit_code == 0, out.output
    assert (
        "skipped:" in out.output
        and "'backwards'" in out.output
        and "ends before it starts" in out.output
    )
    assert "2 span(s)" in out.output
    with t.Store(db, read_only=True) as store:
        assert sorted(s.name for s in store.spans(TRACE)) == ["fine", "fine too"]


def test_skip_bad_with_nothing_left_to_import_fails(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    path = _proto_with_bad_span(tmp_path, all_bad=True)
    out = CliRunner().invoke(cli, ["import", str(path), "--db", str(db), "--skip-bad"])
    assert out.exit_code == 1 and "'backwards'" in out.output


def test_a_request_stored_in_part_keeps_its_schema_urls(tmp_path: Path) -> None:
    store = t.Store(tmp_path / "s.duckdb")
    body = request(span("aa" * 8), span("00" * 8, name="nil"))
    body["resourceSpans"][0]["schemaUrl"] = "https://opentelemetry.io/schemas/1.30.0"
    body["resourceSpans"][0]["scopeSpans"][0]["schemaUrl"] = (
        "https://opentelemetry.io/schemas/1.27.0"
    )
    with ThreadedReceiver(store) as rx:
        status, _, raw = post(rx.url, orjson.dumps(body), JSON)
    assert status == 200 and orjson.loads(raw)["partialSuccess"]["rejectedSpans"] == "1"
    (sp,) = store.spans(TRACE)
    assert (sp.resource_schema_url, sp.scope_schema_url) == (
        "https://opentelemetry.io/schemas/1.30.0", "https://opentelemetry.io/schemas/1.27.0",
    )  # fmt: skip
