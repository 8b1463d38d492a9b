import threading

import pytest

import tracer as t

from .helpers import record_run, spans_of


def _jsonl(tmp_path, name: str, seed: int) -> bytes:
    path = tmp_path / name
    record_run(t.OtlpJsonLinesSink(path), seed=seed, batch_size=2)
    return path.read_bytes()


def test_same_seed_same_bytes(tmp_path) -> None:
    a, b = _jsonl(tmp_path, "a", 1), _jsonl(tmp_path, "b", 1)
    assert a == b
    assert _jsonl(tmp_path, "c", 2) != a


def test_batches_flush_at_size_and_on_close() -> None:
    sink = t.InMemorySink()
    rec = t.Recorder(sink, batch_size=2, ids=t.SeededIds(0), clock=t.FakeClock())
    spans = [rec.start_span(f"s{i}") for i in range(3)]
    spans[0].end()
    assert sink.requests == []
    spans[1].end()
    assert len(sink.requests) == 1
    spans[2].end()
    rec.flush()
    assert len(sink.requests) == 2 and sink.flushes >= 1
    rec.close()
    assert sink.closed
    with pytest.raises(RuntimeError):
        rec.start_span("late")


def test_children_share_the_trace_and_point_at_parent() -> None:
    sink = t.InMemorySink()
    run_id = record_run(sink)
    spans = spans_of(sink.requests[0])
    assert {sp.trace_id.hex() for sp in spans} == {run_id}
    root = next(sp for sp in spans if not sp.parent_span_id)
    assert all(sp.parent_span_id == root.span_id for sp in spans if sp is not root)


def test_exception_in_span_block_marks_error() -> None:
    sink = t.InMemorySink()
    rec = t.Recorder(sink, ids=t.SeededIds(0), clock=t.FakeClock())
    with pytest.raises(ValueError), rec.start_span("boom"):
        raise ValueError("bad")
    rec.flush()
    (span,) = sink.spans()
    assert span.status.code == 2 and "bad" in span.status.message
    assert span.events[0].name == "exception"


def test_commit_state_sends_snapshots_every_n_and_patches_between() -> None:
    sink = t.InMemorySink()
    record_run(sink, versions=5)
    commits = [ev for sp in sink.spans() for ev in sp.events if ev.name == "agentrace.state.commit"]
    has_snapshot = [
        any(kv.key == "agentrace.state.snapshot" for kv in ev.attributes) for ev in commits
    ]
    # snapshot_every=2 in the helper: versions 1, 3, 5 whole; 2 and 4 as patches
    assert has_snapshot == [True, False, True, False, True]


def test_traceparent_round_trip_and_rejects_garbage() -> None:
    ctx = t.SpanContext(
        bytes.fromhex("0af7651916cd43dd8448eb211c80319c"), bytes.fromhex("b7ad6b7169203331")
    )
    assert ctx.traceparent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert t.SpanContext.from_traceparent(ctx.traceparent) == ctx
    for bad in ("", "00-xyz", "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "00-00000000000000000000000000000000-b7ad6b7169203331-01"):  # fmt: skip
        with pytest.raises(ValueError):
            t.SpanContext.from_traceparent(bad)


def test_recorder_is_safe_across_threads() -> None:
    sink = t.InMemorySink()
    rec = t.Recorder(sink, batch_size=7)

    def work() -> None:
        for _ in range(200):
            rec.start_span("x").end()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    rec.close()
    ids = [sp.span_id for sp in sink.spans()]
    assert len(ids) == 800 == len(set(ids))


def test_fake_clock_only_moves_forward() -> None:
    clock = t.FakeClock(start_ns=10, tick_ns=5)
    assert [clock.now_ns(), clock.now_ns()] == [10, 15]
    clock.advance(ns=100)
    assert clock.now_ns() == 120
    with pytest.raises(ValueError):
        clock.set(0)
