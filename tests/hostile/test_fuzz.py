"""Generated OTLP (JSON and protobuf, well-formed or not) through import and the receiver.

Whatever arrives: no traceback, a clear answer (stored, or one DecodeError /
one 4xx naming what is wrong), nothing half-written (a refused file or request
leaves every table as it was), and the receiver stays up. Bounded: 25 examples a
test by default; AGENTRACE_FUZZ_EXAMPLES=2000 for a long run.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracer as t

from ..import_.helpers import ThreadedReceiver, counts, post

EXAMPLES = int(os.environ.get("AGENTRACE_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)  # fmt: skip

# Text with everything a trace may carry: controls, escapes, bidi, surrogates' neighbours.
HOSTILE = st.sampled_from(["\x1b]52;c;eA==\x07", "\x1b[2J", "\u202e", "\x9b", "\x00", "\ufeff"])
TEXT = st.one_of(
    st.text(max_size=40),
    st.builds(lambda a, b: a + b, st.text(max_size=10), HOSTILE),
    st.builds(lambda n: "v" * n, st.sampled_from([0, 1, 10_000, 300_000])),
)


def _hex_id(n: int) -> st.SearchStrategy[str]:
    good = st.binary(min_size=n, max_size=n).map(bytes.hex)
    wrong = st.one_of(
        st.binary(max_size=20).map(bytes.hex),  # any length
        st.binary(min_size=n, max_size=n).map(lambda b: base64.b64encode(b).decode()),
        TEXT,
        st.just("0" * (2 * n)),
    )
    return st.one_of(good, good, wrong)


SCALAR = st.one_of(
    st.builds(lambda v: {"stringValue": v}, TEXT),
    st.builds(lambda v: {"intValue": str(v)}, st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda v: {"intValue": v}, st.one_of(st.integers(), TEXT)),
    st.builds(lambda v: {"doubleValue": v}, st.floats(allow_nan=False)),
    st.builds(lambda v: {"boolValue": v}, st.booleans()),
    st.builds(lambda v: {"bytesValue": base64.b64encode(v).decode()}, st.binary(max_size=64)),
    st.builds(lambda v: {"bytesValue": v}, TEXT),
    st.just({}),
)
VALUE = st.recursive(
    SCALAR,
    lambda inner: st.one_of(
        st.builds(lambda vs: {"arrayValue": {"values": vs}}, st.lists(inner, max_size=4)),
        st.builds(
            lambda kvs: {"kvlistValue": {"values": [{"key": k, "value": v} for k, v in kvs]}},
            st.lists(st.tuples(TEXT, inner), max_size=4),
        ),
    ),
    max_leaves=20,
)
ATTRS = st.lists(st.builds(lambda k, v: {"key": k, "value": v}, TEXT, VALUE), max_size=6)
NANOS = st.one_of(st.integers(0, 2**64 + 5).map(str), st.integers(-5, 2**63), TEXT)

SPAN = st.fixed_dictionaries(
    {"traceId": _hex_id(16), "spanId": _hex_id(8), "name": TEXT,
     "startTimeUnixNano": NANOS, "endTimeUnixNano": NANOS},
    optional={
        "parentSpanId": _hex_id(8), "kind": st.integers(-3, 9), "attributes": ATTRS,
        "status": st.fixed_dictionaries({"code": st.integers(-1, 5), "message": TEXT}),
        "events": st.lists(st.fixed_dictionaries(
            {"name": TEXT, "timeUnixNano": NANOS, "attributes": ATTRS}), max_size=3),
        "links": st.lists(st.fixed_dictionaries(
            {"traceId": _hex_id(16), "spanId": _hex_id(8), "attributes": ATTRS}), max_size=2),
        "droppedAttributesCount": st.integers(-1, 2**33),
    },
)  # fmt: skip
REQUEST = st.builds(
    lambda res, spans: {
        "resourceSpans": [{"resource": {"attributes": res}, "scopeSpans": [{"spans": spans}]}]
    },
    ATTRS,
    st.lists(SPAN, max_size=4),
)
# Now and then not an OTLP request at all, or not JSON.
DOCUMENT = st.one_of(
    REQUEST.map(json.dumps),
    REQUEST.map(json.dumps),
    st.builds(lambda v: json.dumps({"resourceSpans": v}), st.one_of(TEXT, st.integers(), ATTRS)),
    st.text(max_size=200),
)


def _proto(doc: str, cut: int, flip: int) -> bytes:
    """The protobuf of ``doc`` when it is a valid request, truncated or with a byte changed."""
    try:
        data = t.decode_json(doc).SerializeToString()
    except t.AgentraceError:
        data = doc.encode()
    if data and cut % 3 == 0:
        data = data[: cut % len(data)]
    if data and flip % 4 == 0:
        i = flip % len(data)
        data = data[:i] + bytes([data[i] ^ 0x5A]) + data[i + 1 :]
    return data


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    store = t.Store(tmp_path_factory.mktemp("fuzz") / "fuzz.duckdb")
    yield store
    store.close()


def _import(store: t.Store, path: Path) -> None:
    before = counts(store)
    try:
        t.import_file(store, path)
    except t.DecodeError as exc:
        line = str(exc)
        assert "\n" not in line and line.startswith(str(path)), line
        assert counts(store) == before  # a refused file writes nothing


@FUZZ
@given(doc=DOCUMENT)
def test_import_json(store: t.Store, tmp_path_factory: pytest.TempPathFactory, doc: str) -> None:
    path = tmp_path_factory.mktemp("in") / "spans.jsonl"
    path.write_text(doc + "\n", errors="surrogatepass")
    _import(store, path)


@FUZZ
@given(doc=DOCUMENT, cut=st.integers(0, 1000), flip=st.integers(0, 1000))
def test_import_protobuf(
    store: t.Store, tmp_path_factory: pytest.TempPathFactory, doc: str, cut: int, flip: int
) -> None:
    path = tmp_path_factory.mktemp("in") / "spans.pb"
    path.write_bytes(_proto(doc, cut, flip))
    _import(store, path)


@pytest.fixture(scope="module")
def receiver(store: t.Store) -> Any:
    with ThreadedReceiver(store) as rx:
        yield rx
        # Still up after everything it was sent.
        assert post(rx.url, b"{}", {"Content-Type": "application/json"})[0] == 200


def _send(rx: Any, store: t.Store, body: bytes, ctype: str) -> None:
    before = counts(store)
    status, _, answer = post(rx.url, body, {"Content-Type": ctype})
    assert status in (200, 400, 413), (status, answer[:300])
    if status != 200:
        assert counts(store) == before  # a refused request writes nothing


@FUZZ
@given(doc=DOCUMENT)
def test_receiver_json(receiver: Any, store: t.Store, doc: str) -> None:
    _send(receiver, store, doc.encode(errors="surrogatepass"), "application/json")


@FUZZ
@given(doc=DOCUMENT, cut=st.integers(0, 1000), flip=st.integers(0, 1000))
def test_receiver_protobuf(receiver: Any, store: t.Store, doc: str, cut: int, flip: int) -> None:
    _send(receiver, store, _proto(doc, cut, flip), "application/x-protobuf")
