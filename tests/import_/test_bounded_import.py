"""A large single-request protobuf file is mapped and cut into pieces, never held whole, and
written under a bounded DuckDB memory limit: the same rows as decoding it in one go, the
same one-line errors for a broken file, and nothing stored when it is broken."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import tracer as t
from tracer import _import
from tracer._files import read_records
from tracer._otlp import fill_attrs
from tracer._store import _parallel
from tracer._store import _store as store_module

from .helpers import counts, span_rows
from .test_parallel import _derived


@pytest.fixture
def pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every import through the pool, a request cut into pieces of a few KiB."""
    monkeypatch.setattr(_import, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(_parallel, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(_parallel, "SPLIT_BYTES", 4096)


def _wire(num: int, payload: bytes) -> bytes:
    return _parallel._encode_varint(num << 3 | 2) + _parallel._encode_varint(len(payload)) + payload


def _request(seed: int = 1) -> bytes:
    """Many resource spans (some large, some small), scopes with their own fields, traces
    cut across them, agents and errors: encoded by protobuf itself."""
    rng = random.Random(seed)
    req = ExportTraceServiceRequest()
    for r in range(12):
        rs = req.resource_spans.add()
        fill_attrs(rs.resource.attributes, {"service.name": f"svc-{r % 4}", "n": r})
        rs.schema_url = f"https://example.com/r{r}"
        for s in range(rng.randint(1, 3)):
            ss = rs.scope_spans.add()
            ss.scope.name, ss.scope.version = f"scope-{s}", "1.0"
            ss.schema_url = f"https://example.com/s{s}"
            for i in range(rng.choice([2, 30, 120])):
                sp = ss.spans.add()
                tr = rng.randrange(5)
                sp.trace_id = bytes([tr + 1]) * 16
                sp.span_id = rng.getrandbits(64).to_bytes(8, "big")
                sp.parent_span_id = b"" if i == 0 and r == 0 else (tr + 7).to_bytes(8, "big")
                sp.name = f"invoke_agent a{i % 4}"
                sp.start_time_unix_nano = 1_700_000_000_000_000_000 + r * 10_000 + i
                sp.end_time_unix_nano = sp.start_time_unix_nano + 500
                sp.status.code = 2 if i % 17 == 3 else 0  # type: ignore[assignment]
                fill_attrs(sp.attributes, {"gen_ai.agent.name": f"a{i % 4}", "i": i})
    return req.SerializeToString()


def _scope_fields_last(data: bytes) -> bytes:
    """The same request with each scope's own fields (scope, schema URL) after its spans and
    each resource's after its scopes: valid protobuf, an order encoders may choose."""
    view = memoryview(data)
    out = []
    for _, _, p, end in _parallel._fields(view, 0, len(view)):
        head, scopes = [], []
        for n2, s2, p2, e2 in _parallel._fields(view, p, end):
            if n2 != 2:
                head.append(bytes(view[s2:e2]))
                continue
            spans, own = [], []
            for n3, s3, _, e3 in _parallel._fields(view, p2, e2):
                (spans if n3 == 2 else own).append(bytes(view[s3:e3]))
            scopes.append(_wire(2, b"".join(spans + own)))
        out.append(_wire(1, b"".join(scopes + head)))
    return b"".join(out)


@pytest.mark.parametrize("layout", ["as encoded", "own fields last"])
def test_a_request_of_many_resource_spans_imports_as_the_single_decode_does(
    tmp_path: Path, pieces: None, layout: str
) -> None:
    data = _request()
    if layout == "own fields last":
        data = _scope_fields_last(data)
        assert t.decode_proto(data) == t.decode_proto(_request())
    path = tmp_path / "big.pb"
    path.write_bytes(data)
    whole = t.Store(tmp_path / "whole.duckdb")
    whole.ingest([t.decode_proto(data)])
    store = t.Store(tmp_path / "s.duckdb")
    result = t.import_file(store, path)
    n = len(span_rows(whole))
    assert result.requests == 1 and result.spans == n and n > 500
    assert span_rows(store) == span_rows(whole)
    assert _derived(store) == _derived(whole)


def test_a_mapped_request_is_walked_in_pieces_of_the_chunk_size(tmp_path: Path) -> None:
    path = tmp_path / "big.pb"
    data = _request()
    path.write_bytes(data)
    (record,) = read_records(path, mapped=False)
    assert isinstance(record.data, bytes)
    records = read_records(path, mapped=True)
    record = next(records)
    assert isinstance(record.data, memoryview) and bytes(record.data) == data
    split = _parallel.split_request(record.data, 4096)
    assert split is not None
    sizes = [len(p) for p in split]
    assert len(sizes) > 20 and max(sizes) < 4096 + 600
    records.close()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncated", "not a valid OTLP protobuf message"),
        ("garbled span", "not a valid OTLP protobuf message"),
    ],
)
def test_a_broken_large_request_is_one_line_naming_the_file_and_stores_nothing(
    tmp_path: Path, pieces: None, damage: str, message: str
) -> None:
    data = bytearray(_request())
    if damage == "truncated":
        data = data[: len(data) * 2 // 3]
    else:
        # A span's bytes replaced by a tag with an impossible wire type (7), lengths kept:
        # the layout is plain, the piece holding that span does not decode.
        view = memoryview(bytes(data))
        _, _, p, end = next(_parallel._fields(view, 0, len(view)))
        spans = [
            (s3, e3)
            for n2, _, p2, e2 in _parallel._fields(view, p, end)
            if n2 == 2
            for n3, s3, _, e3 in _parallel._fields(view, p2, e2)
            if n3 == 2
        ]
        s3, e3 = spans[len(spans) // 2]
        body_start = e3 - (e3 - s3 - 2)  # short spans: one-byte tag and length
        data[body_start : body_start + 2] = b"\x0f\x0f"
    path = tmp_path / "broken.pb"
    path.write_bytes(bytes(data))
    store = t.Store(tmp_path / "s.duckdb")
    before = counts(store)
    with pytest.raises(t.DecodeError) as err:
        t.import_file(store, path)
    text = str(err.value)
    assert "\n" not in text and str(path) in text and message in text
    assert counts(store) == before


def test_the_memory_limit_holds_while_a_large_import_writes_and_is_restored(
    tmp_path: Path, pieces: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    real = t.Store._write_decoded

    def spy(self: t.Store, con: object, *args: object, **kwargs: object) -> object:
        seen.append(self.sql("SELECT current_setting('memory_limit')").fetchall()[0][0])
        return real(self, con, *args, **kwargs)  # type: ignore[arg-type]

    derived: list[str] = []
    real_refresh = t.Store._refresh_runs

    def refresh(self: t.Store, con: object, *args: object, **kwargs: object) -> None:
        derived.append(self.sql("SELECT current_setting('memory_limit')").fetchall()[0][0])
        real_refresh(self, con, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(t.Store, "_write_decoded", spy)
    monkeypatch.setattr(t.Store, "_refresh_runs", refresh)
    path = tmp_path / "big.pb"
    path.write_bytes(_request())
    store = t.Store(tmp_path / "s.duckdb")
    before = store.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
    t.import_file(store, path)
    assert store_module.INGEST_MEMORY_LIMIT == 64 * 1024 * 1024
    assert seen and set(seen) == {"64.0 MiB"} and before != "64.0 MiB"
    # The derive phase (joins and aggregates over the largest trace) runs under it too.
    assert derived == ["64.0 MiB"]
    assert store.sql("SELECT current_setting('memory_limit')").fetchall()[0][0] == before
    # A failing import restores it as well.
    path.write_bytes(_request()[:-5])
    with pytest.raises(t.DecodeError):
        t.import_file(store, path)
    assert store.sql("SELECT current_setting('memory_limit')").fetchall()[0][0] == before
    # A limit the user set comes back as it was, import after import.
    store.sql("SET memory_limit = '3GB'")
    path.write_bytes(_request(seed=2))
    for _ in range(2):
        t.import_file(store, path)
        assert store.sql("SELECT current_setting('memory_limit')").fetchall()[0][0] == "2.7 GiB"


def test_an_import_duckdb_cannot_fit_in_the_lowered_limit_is_written_again_with_its_usual_limit(
    tmp_path: Path, pieces: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should a file need more than the lowered limit (DuckDB cannot spill every kind of
    working memory), DuckDB refuses a statement; the file's
    transaction is rolled back whole and the file written again unbounded: the same rows,
    one commit, and no store reported damaged."""
    import duckdb

    limits: list[str] = []
    real = t.Store._write_decoded

    def tight(self: t.Store, con: object, *args: object, **kwargs: object) -> object:
        limit = self.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
        limits.append(limit)
        if limit == "64.0 MiB" and len(limits) == 3:
            raise duckdb.OutOfMemoryException(
                "Out of Memory Error: failed to pin block of size 256.0 KiB (63.7 MiB/64.0 MiB used)"
            )
        return real(self, con, *args, **kwargs)  # type: ignore[arg-type]

    data = _request()
    path = tmp_path / "big.pb"
    path.write_bytes(data)
    whole = t.Store(tmp_path / "whole.duckdb")
    whole.ingest([t.decode_proto(data)])
    monkeypatch.setattr(t.Store, "_write_decoded", tight)
    commits: list[object] = []
    store = t.Store(tmp_path / "s.duckdb")
    store.on_ingest(lambda result, runs: commits.append(result))
    result = t.import_file(store, path)
    assert limits[:3] == ["64.0 MiB"] * 3 and "64.0 MiB" not in limits[3:] and len(limits) > 4
    assert len(commits) == 1 and result.spans == len(span_rows(whole))
    assert span_rows(store) == span_rows(whole)
    assert _derived(store) == _derived(whole)
    store.close()
    t.Store(tmp_path / "s.duckdb").close()  # opens cleanly: nothing damaged
