"""Decoding in worker processes: the same rows, errors and rules as decoding in the writer.

Large files and large receiver bodies are decoded by the pool's processes and
written in one transaction (tracer._store._parallel). Here the size thresholds
are lowered so that small fixtures take that path, cut into many chunks, and the
stores are compared with those written by the in-process path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import tracer as t
from tracer import _import, _receiver
from tracer._store import _parallel, _workers
from tracer._store._parallel import split_request
from tracer.analysis import analyze

from . import test_receiver
from .helpers import DAMAGED, FOREIGN, counts, span_rows

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "sample_traces").glob("*.jsonl"))
FOREIGN_FILES = sorted(FOREIGN.glob("*.jsonl"))


@pytest.fixture
def parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every import through the pool, in chunks of a few requests."""
    monkeypatch.setattr(_import, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(_parallel, "CHUNK_BYTES", 2048)
    monkeypatch.setattr(_parallel, "SPLIT_BYTES", 2048)


def _derived(store: t.Store) -> list[Any]:
    """The rows the derive phase and the projections write, in a stable order."""
    out: list[Any] = [
        store.sql(
            """SELECT run_id, workflow, status, agents, span_count, error_count, version_count,
                      flow_id FROM runs ORDER BY ALL"""
        ).fetchall(),
        store.sql("SELECT trace_id, span_id, agent, cycle FROM spans ORDER BY ALL").fetchall(),
    ]
    for table in ("state_versions", "state_reads", "messages"):
        out.append(store.sql(f"SELECT * FROM {table} ORDER BY ALL").fetchall())
    return out


def _findings(store: t.Store) -> list[tuple[str, str, str]]:
    return sorted(
        (f.kind, f.run_id, f.message)
        for run in store.runs()
        for f in analyze(store, run.run_id, save=False)
    )


def _store_of(paths: list[Path], tmp: Path, name: str) -> t.Store:
    store = t.Store(tmp / f"{name}.duckdb")
    for p in paths:
        t.import_file(store, p)
    return store


def test_a_parallel_import_writes_the_rows_of_an_import_in_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = SAMPLES + FOREIGN_FILES
    plain = _store_of(files, tmp_path, "plain")
    monkeypatch.setattr(_import, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(_parallel, "CHUNK_BYTES", 2048)  # traces cut across many chunks
    monkeypatch.setattr(_parallel, "SPLIT_BYTES", 2048)
    par = _store_of(files, tmp_path, "par")
    assert counts(par) == counts(plain) and counts(par)["spans"] > 500
    assert span_rows(par) == span_rows(plain)
    assert _derived(par) == _derived(plain)
    # And the findings found on them are the same.
    assert _findings(par) == _findings(plain) != []


def test_a_bad_record_names_its_line_and_stores_nothing(tmp_path: Path, parallel: None) -> None:
    good = (ROOT / "sample_traces" / "credit.jsonl").read_bytes().splitlines()
    bad = (DAMAGED / "end_before_start.jsonl").read_bytes().strip()
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join([*good, bad, *good[:1]]) + b"\n")
    store = t.Store(tmp_path / "s.duckdb")
    with pytest.raises(t.DecodeError) as err:
        t.import_file(store, path)
    assert err.value.source == str(path) and err.value.line == len(good) + 1
    assert "ends before it starts" in str(err.value)
    assert set(counts(store).values()) == {0}


def test_a_span_repeated_in_another_chunk_is_skipped_or_refused(
    tmp_path: Path, parallel: None
) -> None:
    lines = (ROOT / "sample_traces" / "credit.jsonl").read_bytes().splitlines()
    again = tmp_path / "again.jsonl"
    again.write_bytes(b"\n".join([*lines, *lines]) + b"\n")
    store = t.Store(tmp_path / "s.duckdb")
    result = t.import_file(store, again)
    n = counts(store)["spans"]
    assert result.spans == n and result.skipped == n and result.requests == 2 * len(lines)
    conflict = tmp_path / "conflict.jsonl"
    obj = orjson.loads(lines[-1])
    obj["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] += " (renamed)"
    changed = orjson.dumps(obj)
    conflict.write_bytes(b"\n".join([*lines, changed]) + b"\n")
    other = t.Store(tmp_path / "o.duckdb")
    with pytest.raises(t.DuplicateSpanError) as err:
        t.import_file(other, conflict)
    # Found by the writer against an earlier chunk: named with the chunk's line (its one
    # record here; a chunk of many names their range).
    assert err.value.source == str(conflict) and err.value.line == len(lines) + 1
    assert "already stored in trace" in str(err.value)
    assert set(counts(other).values()) == {0}


def _one_big_request(n_traces: int = 3, spans: int = 40) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "big"
    rs.schema_url = "https://example.com/r"
    ss = rs.scope_spans.add()
    ss.scope.name, ss.schema_url = "s", "https://example.com/s"
    for tr in range(n_traces):
        for i in range(spans):
            sp = ss.spans.add()
            sp.trace_id = bytes([tr + 1]) * 16
            sp.span_id = (i + 1).to_bytes(8, "big")
            sp.parent_span_id = b"" if i == 0 else (1).to_bytes(8, "big")
            sp.name = f"invoke_agent a{i % 3}"
            sp.start_time_unix_nano, sp.end_time_unix_nano = 10 + i, 20 + i
            kv = sp.attributes.add()
            kv.key, kv.value.string_value = "gen_ai.agent.name", f"a{i % 3}"
    ss2 = rs.scope_spans.add()  # a small second scope stays whole
    ss2.scope.name = "other"
    sp = ss2.spans.add()
    sp.trace_id, sp.span_id, sp.name = b"\x09" * 16, b"\x01" * 8, "lone"
    return req


def test_a_large_request_is_cut_between_spans_keeping_resource_and_scope() -> None:
    req = _one_big_request()
    data = req.SerializeToString()
    split = split_request(data, 1024)
    assert split is not None
    pieces = list(split)
    assert len(pieces) > 5
    assert all(len(p) <= 1024 + 200 for p in pieces)
    spans = []
    for p in pieces:
        part = t.decode_proto(p)
        for rs in part.resource_spans:
            assert rs.resource == req.resource_spans[0].resource
            assert rs.schema_url == "https://example.com/r"
            for ss in rs.scope_spans:
                assert ss.scope.name in ("s", "other")
                spans.extend(ss.spans)
    assert spans == [sp for ss in req.resource_spans[0].scope_spans for sp in ss.spans]
    # Not the plain layout (a varint field at the top): left whole, for the decoder to judge.
    assert split_request(b"\x08\x01" + data, 1024) is None
    assert split_request(data[:-3], 1024) is None


def test_a_large_single_request_file_imports_in_pieces_as_one(
    tmp_path: Path, parallel: None
) -> None:
    path = tmp_path / "one.pb"
    path.write_bytes(_one_big_request(5, 200).SerializeToString())
    plain = t.Store(tmp_path / "plain.duckdb")
    plain.ingest([t.decode_proto(path.read_bytes())])
    store = t.Store(tmp_path / "s.duckdb")
    result = t.import_file(store, path)
    assert result.requests == 1 and result.spans == 1001
    assert span_rows(store) == span_rows(plain)
    assert _derived(store) == _derived(plain)


def test_a_decoding_process_that_dies_fails_its_task_and_the_pool_recovers() -> None:
    pool = _workers.Pool(1)
    try:
        assert pool.submit("chunk", [], None).result(timeout=600).spans == 0
        (worker,) = pool._workers
        worker.proc.kill()
        with pytest.raises(_workers.WorkerError):
            pool.submit("chunk", [], None).result(timeout=600)
        assert pool.submit("chunk", [], None).result(timeout=600).spans == 0
        with pytest.raises(ValueError, match="no decoding task"):
            pool.submit("os.system", "true")
    finally:
        pool.close()


@pytest.mark.parametrize(
    "case",
    [
        test_receiver.test_spans_that_cannot_be_stored_are_a_partial_success,
        test_receiver.test_refused_requests_get_a_status_and_store_nothing,
        test_receiver.test_compressed_bodies,
        test_receiver.test_a_bad_request_does_not_spoil_the_requests_committed_with_it,
        test_receiver.test_fixture_traces_post_as_protobuf_and_as_json_like_an_import,
    ],
    ids=lambda f: f.__name__.removeprefix("test_"),
)
def test_the_receiver_keeps_its_contract_when_the_pool_decodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: Any
) -> None:
    monkeypatch.setattr(_receiver, "POOL_MIN_BODY", 0)  # every body through the pool
    if case is test_receiver.test_compressed_bodies:
        for encoding in ("gzip", "deflate", "zstd"):
            (tmp_path / encoding).mkdir()
            case(tmp_path / encoding, encoding)
    else:
        case(tmp_path)


def test_a_group_of_decoded_requests_is_written_as_one_batch_unless_they_share_a_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receiver's group of requests decoded by the pool: written with one set of
    statements when no two share a trace, else chunk by chunk; either way the rows an
    ingest of the same requests writes."""
    from tracer._store._parallel import Decoded, decode_request

    bodies = [(FOREIGN / f"{name}.pb").read_bytes() for name in ("pydantic_ai", "openai_agents")]
    bodies += [(FOREIGN / f"{name}.pb").read_bytes() for name in ("crewai",)]
    chunked: list[int] = []
    real = t.Store.ingest_decoded

    def spy(self: t.Store, chunks: Any, **kwargs: Any) -> Any:
        chunks = list(chunks)
        chunked.append(len(chunks))
        return real(self, chunks, **kwargs)

    monkeypatch.setattr(t.Store, "ingest_decoded", spy)

    def decoded(body: bytes, store: t.Store) -> Decoded:
        out = decode_request(body, "", "proto", 1 << 26, store.redactor)
        assert isinstance(out, Decoded)
        return out

    for name, group in (("apart", bodies), ("shared", [*bodies, bodies[0]])):
        plain = t.Store(tmp_path / f"{name}-plain.duckdb")
        expected = plain.ingest([t.decode_proto(b) for b in group])
        store = t.Store(tmp_path / f"{name}.duckdb")
        result = store.ingest_group([decoded(b, store) for b in group], source="receiver")
        assert result.requests == len(group) and result.runs == len(plain.runs())
        assert (result.spans, result.skipped) == (expected.spans, expected.skipped)
        assert span_rows(store) == span_rows(plain)
        assert _derived(store) == _derived(plain)
    # Apart: one batch, no chunk by chunk; shared (a trace sent twice): chunk by chunk.
    assert chunked == [len(bodies) + 1]


def test_a_file_whose_traces_the_store_has_is_compared_with_them(
    tmp_path: Path, parallel: None
) -> None:
    """Traces stored before the file's transaction are read back for every chunk that
    holds them: the same spans again are skipped, changed ones refused."""
    lines = (ROOT / "sample_traces" / "credit.jsonl").read_bytes().splitlines()
    path = tmp_path / "credit.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    store = t.Store(tmp_path / "s.duckdb")
    first = t.import_file(store, path)
    before = counts(store)
    again = t.import_file(store, path)
    assert (again.spans, again.skipped) == (0, first.spans) and counts(store) == before
    obj = orjson.loads(lines[-1])
    obj["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] += " (renamed)"
    path.write_bytes(b"\n".join([*lines[:-1], orjson.dumps(obj)]) + b"\n")
    with pytest.raises(t.DuplicateSpanError):
        t.import_file(store, path)
    assert counts(store) == before
