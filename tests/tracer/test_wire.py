"""The bulk protobuf walk (tracer._store._wire) gives the rows the field-by-field path gives.

Every request here goes through ``Batch.add_proto`` (upb's message, span by span) and
``Batch.add_proto_wire`` (plain spans read from the bytes in bulk, the rest span by
span) with the size threshold lifted, and the two batches must agree to the byte: every
table, the traces, the error flag, duplicates and rejections, or the same error.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tracer import conventions as c
from tracer._errors import DecodeError
from tracer._mapping import CLASSIFY_KEYS, classify
from tracer._otlp import decode_json, decode_proto, read_records
from tracer._store import _ingest, _wire
from tracer._store._ingest import Batch

FIXTURES = Path(__file__).parents[1] / "fixtures"
SAMPLES = Path(__file__).parents[2] / "sample_traces"


@pytest.fixture(autouse=True)
def _always_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_ingest, "_WIRE_MIN_BYTES", 0)


def _batches(blobs: list[bytes], lenient: bool = False) -> tuple[Any, Any]:
    """(reference, walked): each a Batch, or the error adding raised."""
    out: list[Any] = []
    for walked in (False, True):
        batch = Batch(lenient=lenient)
        try:
            for n, blob in enumerate(blobs):
                batch.where = ("req", n)
                req = decode_proto(blob)
                if walked:
                    batch.add_proto_wire(blob, req)
                else:
                    batch.add_proto(req)
        except DecodeError as exc:
            out.append((type(exc), str(exc)))
        else:
            out.append(batch)
    return out[0], out[1]


def _assert_same(blobs: list[bytes], lenient: bool = False) -> Batch | None:
    ref, got = _batches(blobs, lenient)
    if not isinstance(ref, Batch):
        assert got == ref
        return None
    assert isinstance(got, Batch), got
    for batch in (ref, got):  # as the writer does for traces it has not seen
        batch.resolve(batch.trace_ids)
    assert got.cycles == ref.cycles
    assert got.spans == ref.spans
    assert got.events == ref.events and got.links == ref.links
    assert got.messages == ref.messages and got.message_spans == ref.message_spans
    assert got.origins == ref.origins
    assert got.trace_ids == ref.trace_ids and got._seen == ref._seen
    assert (got.has_errors, got.duplicates, got.rejected) == (
        ref.has_errors,
        ref.duplicates,
        ref.rejected,
    )
    ref_tables, got_tables = ref.tables(), got.tables()
    assert got_tables.keys() == ref_tables.keys()
    for name, table in ref_tables.items():
        assert got_tables[name].equals(table), name
    return got


# -- requests of every shape --------------------------------------------------------------

_TRACES = [bytes([k]) * 16 for k in (1, 2)] + [bytes(range(16))]
_SPANS = [bytes([k]) * 8 for k in range(1, 6)]
_KEYS = [
    *sorted(CLASSIFY_KEYS),
    "a", "b", "ü", 'q"\\', "k\n\x1f", "", "x" * 40, "messaging.message.id",
    "messaging.kafka.message.key", "celery.task_id", "messaging.consumer.group.name",
    "agentrace.message.fault",
]  # fmt: skip
_TEXT = st.text(max_size=12) | st.sampled_from(
    ["invoke_agent scorer", "agent run", "chat gpt", "running tool", "\x1b[31m", '"', "\\"]
)
_FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, -0.0, 1e16, 1e-7, 5e-324, 1.7976931348623157e308, 0.1, 123456789.125]
)
_INTS = st.integers(-(2**63), 2**63 - 1) | st.sampled_from([0, -1, 2**63 - 1, -(2**63)])
_VALUE = st.one_of(
    st.tuples(st.just("s"), _TEXT),
    st.tuples(st.just("i"), _INTS),
    st.tuples(st.just("b"), st.booleans()),
    st.tuples(st.just("d"), _FLOATS),
    st.tuples(st.just("none"), st.none()),
    st.tuples(st.just("bytes"), st.binary(max_size=4)),
    st.tuples(st.just("list"), st.lists(_TEXT, max_size=2)),
    st.tuples(st.just("kv"), st.dictionaries(st.sampled_from(["p", "q"]), _TEXT, max_size=2)),
)
_TIMES = st.sampled_from([0, 1, 1_700_000_000_000_000_000, 2**63 - 1, 2**63, 2**64 - 1]) | (
    st.integers(0, 2**64 - 1)
)


def _set_value(v: Any, kind: str, value: Any) -> None:
    if kind == "s":
        v.string_value = value
    elif kind == "i":
        v.int_value = value
    elif kind == "b":
        v.bool_value = value
    elif kind == "d":
        v.double_value = value
    elif kind == "bytes":
        v.bytes_value = value
    elif kind == "list":
        for x in value:
            v.array_value.values.add().string_value = x
    elif kind == "kv":
        for k, x in value.items():
            kv = v.kvlist_value.values.add()
            kv.key = k
            kv.value.string_value = x


@st.composite
def _span(draw: st.DrawFn) -> Span:
    sp = Span()
    odd = draw(st.integers(0, 9)) == 0  # now and then, ids and times that do not validate
    sp.trace_id = draw(st.sampled_from(_TRACES + ([b"", b"\0" * 16, b"\1" * 15] if odd else [])))
    sp.span_id = draw(st.sampled_from(_SPANS + ([b"\0" * 8, b"\1" * 9] if odd else [])))
    sp.parent_span_id = draw(st.sampled_from([b"", *_SPANS] + ([b"\0" * 8, b"\1"] if odd else [])))
    sp.name = draw(_TEXT)
    sp.kind = draw(st.integers(0, 7) if odd else st.sampled_from([0, 1, 1, 2, 3, 4, 5]))
    sp.trace_state = draw(st.sampled_from(["", "k=v"]))
    sp.flags = draw(st.sampled_from([0, 1, 256, 2**32 - 1]))
    start = draw(_TIMES if odd else st.integers(0, 2**62))
    sp.start_time_unix_nano = start
    sp.end_time_unix_nano = draw(_TIMES if odd else st.integers(start, start + 2**20))
    for key, (kind, value) in draw(
        st.lists(st.tuples(st.sampled_from(_KEYS) | _TEXT, _VALUE), max_size=9)
    ):
        kv = sp.attributes.add()
        kv.key = key
        if kind == "none" and draw(st.booleans()):
            continue  # no value field at all
        kv.value.SetInParent()
        _set_value(kv.value, kind, value)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        ev = sp.events.add()
        ev.name = draw(st.sampled_from(["exception", "agentrace.state.read", "agentrace", "x"]))
        ev.time_unix_nano = draw(_TIMES if odd else st.integers(start, start + 2**20))
        ev.dropped_attributes_count = draw(st.sampled_from([0, 0, 2]))
        for key, (kind, value) in draw(
            st.lists(st.tuples(st.sampled_from(_KEYS[-8:]) | _TEXT, _VALUE), max_size=3)
        ):
            kv = ev.attributes.add()
            kv.key = key
            kv.value.SetInParent()
            _set_value(kv.value, kind, value)
    if draw(st.integers(0, 7)) == 0:
        ln = sp.links.add()
        ln.trace_id, ln.span_id = _TRACES[2], _SPANS[0]
    sp.dropped_attributes_count = draw(st.sampled_from([0, 0, 3, 2**32 - 1]))
    sp.dropped_events_count = draw(st.sampled_from([0, 0, 1]))
    if draw(st.booleans()):
        sp.status.code = draw(st.integers(0, 3) if odd else st.integers(0, 2))
        sp.status.message = draw(_TEXT)
    return sp


@st.composite
def _request(draw: st.DrawFn) -> bytes:
    req = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(1, 2))):
        rs = req.resource_spans.add()
        if draw(st.booleans()):
            rs.resource.attributes.add(key=c.SERVICE_NAME).value.string_value = draw(_TEXT)
        for _ in range(draw(st.integers(0, 2))):
            ss = rs.scope_spans.add()
            ss.scope.name = draw(st.sampled_from(["", "bench", "openinference.langchain"]))
            for sp in draw(st.lists(_span(), max_size=6)):
                ss.spans.append(sp)
    return req.SerializeToString()


_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(st.lists(_request(), min_size=1, max_size=3), st.booleans())
def test_random_requests_give_the_same_rows(blobs: list[bytes], lenient: bool) -> None:
    _assert_same(blobs, lenient)


# -- wire forms an SDK does not send, that upb accepts ----------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire) + payload


def _in_request(*spans: bytes) -> bytes:
    scope = b"".join(_field(2, 2, _varint(len(s)) + s) for s in spans)
    rs = _field(2, 2, _varint(len(scope)) + scope)
    return _field(1, 2, _varint(len(rs)) + rs)


_EXTRA = st.one_of(
    st.tuples(st.integers(1, 20), st.just(0), st.integers(0, 2**64 - 1).map(_varint)),
    st.tuples(st.integers(1, 20), st.just(1), st.binary(min_size=8, max_size=8)),
    st.tuples(
        st.integers(1, 20), st.just(2), st.binary(max_size=6).map(lambda b: _varint(len(b)) + b)
    ),
    st.tuples(st.integers(1, 20), st.just(5), st.binary(min_size=4, max_size=4)),
)


@_SETTINGS
@given(_span(), st.lists(_EXTRA, max_size=3), st.booleans())
def test_repeated_unknown_and_odd_fields_give_the_same_rows(
    sp: Span, extra: list[tuple[int, int, bytes]], lenient: bool
) -> None:
    """Fields twice (upb keeps the last, or merges), fields OTLP does not define, known
    fields with another wire type: whatever upb makes of them, the rows agree."""
    body = sp.SerializeToString() + b"".join(_field(f, w, p) for f, w, p in extra)
    blob = _in_request(body, sp.SerializeToString())
    try:
        decode_proto(blob)
    except DecodeError:
        assume(False)
    _assert_same([blob], lenient)


def test_a_key_value_with_two_values_or_no_key_gives_the_same_rows() -> None:
    base = Span(trace_id=_TRACES[0], span_id=_SPANS[0], name="n").SerializeToString()
    any_two = _field(1, 2, b"\x01a") + _field(3, 0, b"\x05")
    kv_two_values = _field(1, 2, b"\x01k") + _field(2, 2, bytes([len(any_two)]) + any_two)
    kv_no_key = _field(2, 2, b"\x02\x18\x07")
    kv_twice = (
        _field(1, 2, b"\x01k") + _field(2, 2, b"\x02\x18\x01") + _field(2, 2, b"\x02\x18\x02")
    )
    for kv in (kv_two_values, kv_no_key, kv_twice):
        _assert_same([_in_request(base + _field(9, 2, bytes([len(kv)]) + kv))])


# -- real traces ------------------------------------------------------------------------------


def _fixture_requests() -> list[tuple[str, list[bytes]]]:
    out = []
    files = sorted((FIXTURES / "foreign").glob("*.pb")) + sorted(SAMPLES.glob("*.jsonl"))
    for path in files:
        blobs = [
            bytes(r.data) if r.kind == "proto" else decode_json(r.data).SerializeToString()
            for r in read_records(path)
        ]
        out.append((path.name, blobs))
    return out


@pytest.mark.parametrize(("name", "blobs"), _fixture_requests(), ids=lambda x: str(x)[:40])
def test_fixtures_give_the_same_rows(name: str, blobs: list[bytes]) -> None:
    _assert_same(blobs)
    # And all in one request: a batch that mixes frameworks, scopes and resources.
    merged = ExportTraceServiceRequest()
    for blob in blobs:
        merged.MergeFromString(blob)
    _assert_same([merged.SerializeToString()])


def test_sdk_spans_are_read_in_bulk() -> None:
    """The spans the OpenTelemetry SDK sends for agent work are plain: the walk does not
    quietly send them all the slow way."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel = provider.get_tracer("agents")
    with otel.start_as_current_span("invoke_workflow credit"):
        for k in range(50):
            with otel.start_as_current_span(f"invoke_agent a{k % 3}") as span:
                span.set_attributes({
                    c.GEN_AI_OPERATION_NAME: "invoke_agent", c.GEN_AI_AGENT_NAME: f"a{k % 3}",
                    "score": k / 7, "ok": k % 2 == 0, "n": -k, "text": 'say "hi"\n',
                })  # fmt: skip
                span.add_event("tool.result", {"ok": True, "rows": k})
                with otel.start_as_current_span("chat gpt") as chat:
                    chat.set_attribute("gen_ai.request.model", "gpt")
                    if k % 10 == 0:
                        chat.record_exception(ValueError(f"bad {k}"))
    blob = encode_spans(exporter.get_finished_spans()).SerializeToString()
    walked = _wire.walk(blob)
    assert walked is not None
    assert all(walked.plain), [n for n, p in zip(walked.names, walked.plain, strict=True) if not p]
    batch = _assert_same([blob])
    assert batch is not None and len(batch.spans) == 101 and len(batch.events) == 55


def test_attributes_after_events_give_the_same_rows() -> None:
    """SDKs write a span's attributes before its events; the other order is not one run of
    attribute rows, and still gives the same rows."""
    sp = Span(trace_id=_TRACES[0], span_id=_SPANS[0], name="n")
    sp.attributes.add(key="a").value.int_value = 1
    ev = sp.events.add(name="e", time_unix_nano=5)
    ev.attributes.add(key="x").value.string_value = "in the event"
    late = sp.attributes.add(key="b")
    late.value.string_value = "after the event"
    body = sp.SerializeToString()
    # Move the span's second attribute behind its event, on the wire.
    kv = late.SerializeToString()
    tail = _field(9, 2, _varint(len(kv)) + kv)
    assert tail in body
    reordered = body.replace(tail, b"") + tail
    two = Span(trace_id=_TRACES[0], span_id=_SPANS[1], name="m")
    two.events.add(name="e2", time_unix_nano=6).attributes.add(key="y").value.bool_value = True
    got = _assert_same([_in_request(reordered, two.SerializeToString())])
    assert got is not None and [e[1] for e in got.events] == [_SPANS[0].hex(), _SPANS[1].hex()]


def test_doubles_are_written_as_orjson_writes_them() -> None:
    values = [0.1, -0.0, 1e16, 1e-7, 5e-324, 2.5, 1.7976931348623157e308, -123.456]
    for odd in (math.nan, math.inf, -math.inf):  # wrapped in the store: not plain
        sp = Span(trace_id=_TRACES[0], span_id=_SPANS[0], name="n")
        sp.attributes.add(key="d").value.double_value = odd
        got = _assert_same([_in_request(sp.SerializeToString())])
        assert got is not None and "doubleValue" in got.spans[0][11]
    sp = Span(trace_id=_TRACES[0], span_id=_SPANS[0], name="n")
    for k, v in enumerate(values):
        sp.attributes.add(key=f"d{k}").value.double_value = v
    got = _assert_same([_in_request(sp.SerializeToString())])
    assert got is not None
    assert got.spans[0][11].startswith('{"d0":0.1,"d1":-0.0,"d2":1e+16,"d3":1e-7,')


def test_a_request_the_walk_does_not_read_is_taken_whole_the_usual_way() -> None:
    sp = Span(trace_id=_TRACES[0], span_id=_SPANS[0], name="n").SerializeToString()
    # An unknown field at the top of the request: upb skips it, the walk declines.
    blob = _in_request(sp) + _field(9, 0, b"\x01")
    assert _wire.walk(blob) is None
    _assert_same([blob])


# -- what the walk relies on -------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(
    name=_TEXT,
    kind=st.integers(0, 5),
    root=st.booleans(),
    op=st.none() | _TEXT,
    agent=st.none() | _TEXT,
    others=st.dictionaries(
        st.sampled_from(["metadata", "agent.name", "graph.node.id", "x", "llm.model_name"])
        | st.text(max_size=6),
        st.text(max_size=6) | st.integers(),
        max_size=4,
    ),
)
def test_classify_reads_no_other_key_when_none_of_its_keys_is_there(
    name: str, kind: int, root: bool, op: str | None, agent: str | None, others: dict[str, Any]
) -> None:
    """The plain spans' classification rests on this: without any of ``CLASSIFY_KEYS``
    but the GenAI operation and agent names, no other attribute changes the answer."""
    attrs = {k: v for k, v in others.items() if k not in CLASSIFY_KEYS}
    own = {}
    if op is not None:
        own[c.GEN_AI_OPERATION_NAME] = op
    if agent is not None:
        own[c.GEN_AI_AGENT_NAME] = agent
    assert classify(name, kind, {**attrs, **own}, root) == classify(name, kind, own, root)


def test_doubles_of_every_magnitude_round_trip() -> None:
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**63 - 1, 2_000, dtype=np.int64).view(np.float64)
    values = [float(v) for v in bits if math.isfinite(v)]
    sp = Span(trace_id=_TRACES[0], span_id=_SPANS[0], name="n")
    for k, v in enumerate(values):
        sp.attributes.add(key=str(k)).value.double_value = v
    _assert_same([_in_request(sp.SerializeToString())])
    assert struct.pack("<d", values[0])  # the values are finite doubles of all exponents


# -- hostile bytes ------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_the_walk_survives_any_bytes(data: bytes) -> None:
    """The walk reads only within the buffer, whatever the bytes say (it is compiled code
    with no bounds checks of its own): any input gives a layout or None, never a crash."""
    _wire.walk(data)


@settings(max_examples=300, deadline=None)
@given(_request(), st.data())
def test_the_walk_survives_damaged_requests(blob: bytes, data: st.DataObject) -> None:
    """Cut, flipped and lengthened requests: the lengths inside point past the end."""
    damaged = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 4))):
        if not damaged:
            break
        at = data.draw(st.integers(0, len(damaged) - 1))
        what = data.draw(st.sampled_from(["flip", "cut", "max"]))
        if what == "flip":
            damaged[at] ^= data.draw(st.integers(1, 255))
        elif what == "cut":
            del damaged[at:]
        else:
            damaged[at] = 0xFF
    walked = _wire.walk(bytes(damaged))
    if walked is not None:
        assert len(walked.plain) == sum(e - f for _, f, e in walked.scopes)


def test_decoding_loads_neither_duckdb_nor_numba_until_needed() -> None:
    """A decoding process holds the decoder only: DuckDB never (it writes nothing), numba
    only once a request large enough for the walk arrives (it weighs ~100 MB)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from tracer._store._parallel import decode_chunk\n"
        "from tracer._otlp import Record\n"
        "from opentelemetry.proto.trace.v1.trace_pb2 import Span\n"
        "from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import"
        " ExportTraceServiceRequest as R\n"
        "def req(n):\n"
        "    r = R(); ss = r.resource_spans.add().scope_spans.add()\n"
        "    for k in range(n):\n"
        "        ss.spans.add(trace_id=b'\\1' * 16, span_id=(k + 1).to_bytes(8, 'big'),\n"
        "                     name='invoke_agent a' + 'x' * 100)\n"
        "    return r.SerializeToString()\n"
        "decode_chunk([Record('f', 1, 'proto', req(3))], None)\n"
        "print('duckdb' in sys.modules, 'numba' in sys.modules)\n"
        "decode_chunk([Record('f', 1, 'proto', req(500))], None)\n"
        "print('duckdb' in sys.modules, 'numba' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[:2] == ["False False", "False True"]


def test_a_ten_megabyte_value_full_of_escapes_gives_the_same_rows() -> None:
    """Hostile values: terminal escapes, quotes, backslashes and control characters, ten
    megabytes of them in one attribute (the JSON it becomes is up to six times as long)."""
    value = ("\x1b[2J\x1b]0;owned\x07" + '"\\\x00\n\t' + "é" * 3) * (10_000_000 // 24)
    sp = Span(trace_id=_TRACES[0], span_id=_SPANS[0], name="\x1b[31mred\x1b[0m")
    sp.attributes.add(key="\x1b[1mkey").value.string_value = value
    sp.attributes.add(key=c.GEN_AI_AGENT_NAME).value.string_value = "\x1b]8;;http://x\x07a"
    walked = _wire.walk(_in_request(sp.SerializeToString()))
    assert walked is not None and walked.plain == [True]
    got = _assert_same([_in_request(sp.SerializeToString())])
    assert got is not None and len(got.spans[0][11]) > len(value)
