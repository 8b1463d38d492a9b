import base64
import gzip

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import tracer as t
from tracer._otlp import read_records

from .helpers import record_run, spans_of


def _request() -> ExportTraceServiceRequest:
    sink = t.InMemorySink()
    record_run(sink)
    req = ExportTraceServiceRequest()
    for r in sink.requests:
        req.resource_spans.extend(r.resource_spans)
    return req


def test_json_round_trip_is_lossless_and_uses_hex_ids() -> None:
    req = _request()
    line = t.encode_json(req)
    span = spans_of(req)[0]
    assert span.trace_id.hex().encode() in line
    assert base64.b64encode(span.trace_id) not in line
    assert b'"kind":1' in line  # integer enums
    assert b'"startTimeUnixNano":"' in line  # int64 as decimal strings
    assert t.decode_json(line) == req


def test_proto_round_trip() -> None:
    req = _request()
    assert t.decode_proto(req.SerializeToString()) == req


def test_json_parse_would_misread_hex_ids_so_we_convert() -> None:
    # The trap the codec avoids: protobuf's JSON mapping reads a 32-hex id as base64.
    from google.protobuf import json_format

    line = t.encode_json(_request())
    naive = json_format.Parse(line, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    assert len(spans_of(naive)[0].trace_id) == 24
    assert len(spans_of(t.decode_json(line))[0].trace_id) == 16


def test_unknown_fields_are_ignored_and_empty_parent_tolerated() -> None:
    obj = {
        "resourceSpans": [{"resource": {}, "futureField": 1, "scopeSpans": [{"scope": {}, "spans": [
            {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "parentSpanId": "",
             "name": "x", "kind": 2, "startTimeUnixNano": "1", "endTimeUnixNano": "2", "shiny": True}
        ]}]}]
    }  # fmt: skip
    req = t.decode_json(obj)
    assert spans_of(req)[0].parent_span_id == b""


@pytest.mark.parametrize(
    ("trace_id", "message"),
    [
        ("W47/95gDgQPSabYzgT/GDA==", "looks like base64"),
        ("5b8efff798038103d269b633813fc6", "has 30 hex digits, expected 32"),
        ("zz8efff798038103d269b633813fc60c", "is not hex"),
    ],
)
def test_bad_ids_are_named(trace_id: str, message: str) -> None:
    obj = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {"spans": [{"traceId": trace_id, "spanId": "eee19b7ec3c1b174", "name": "x"}]}
                ]
            }
        ]
    }
    with pytest.raises(t.DecodeError, match=message) as err:
        t.decode_json(obj, source="f.jsonl", line=3)
    assert str(err.value).startswith("f.jsonl:3: ")


def test_truncated_protobuf_is_a_decode_error() -> None:
    data = _request().SerializeToString()
    with pytest.raises(t.DecodeError, match="not a valid OTLP protobuf"):
        t.decode_proto(data[: len(data) // 2], source="x.pb")


def test_read_records_detects_formats(tmp_path) -> None:
    req = _request()
    jl = tmp_path / "a.jsonl"
    jl.write_bytes(t.encode_json(req) + b"\n\n" + t.encode_json(req) + b"\n")
    assert [(r.kind, r.line) for r in read_records(jl)] == [("json", 1), ("json", 3)]
    pb = tmp_path / "a.pb"
    pb.write_bytes(req.SerializeToString())
    assert [r.kind for r in read_records(pb)] == ["proto"]
    lp = tmp_path / "a.lp"
    data = req.SerializeToString()
    lp.write_bytes(len(data).to_bytes(4, "big") + data + len(data).to_bytes(4, "big") + data)
    recs = list(read_records(lp))
    assert [r.line for r in recs] == [1, 2] and recs[1].data == data
    gz = tmp_path / "a.jsonl.gz"
    gz.write_bytes(gzip.compress(jl.read_bytes()))
    assert len(list(read_records(gz))) == 2
    pretty = tmp_path / "one.json"
    pretty.write_text('{\n  "resourceSpans": []\n}\n')
    assert [r.line for r in read_records(pretty)] == [1]
