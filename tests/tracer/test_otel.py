"""``tracer.otel``: the convention's events recorded on the plain OpenTelemetry API, and what
the store and the detectors make of them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN, Tracer

import tracer as t
from tracer import conventions as c
from tracer.analysis import analyze
from tracer.otel import record_commit, record_invalidation, record_read


@pytest.fixture
def otel() -> Iterator[tuple[Tracer, InMemorySpanExporter]]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield provider.get_tracer("test"), memory
    provider.shutdown()


def _events(span: ReadableSpan) -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            e.name,
            {k: list(v) if isinstance(v, tuple) else v for k, v in (e.attributes or {}).items()},
        )
        for e in span.events
    ]


def _store(memory: InMemorySpanExporter) -> t.Store:
    store = t.Store(":memory:")
    store.ingest([encode_spans(memory.get_finished_spans())])
    return store


def test_each_event_carries_the_conventions_attributes(
    otel: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, memory = otel
    with tracer.start_as_current_span("step"):
        h1 = record_commit({"score": 712, "id": "A"}, version=1)
        h2 = record_commit(
            {"score": 648, "id": "A"}, version=2, parent_hash=h1,
            parent_state={"score": 712, "id": "A"}, agent="scorer",
        )  # fmt: skip
        record_read(version=1, keys=["score"], via="cache", cache="bureau", head_version=2)
        record_invalidation("bureau", keys=["score"], version=2, agent="scorer")
    (span,) = memory.get_finished_spans()
    assert _events(span) == [
        (c.EV_STATE_COMMIT, {
            c.STATE_VERSION: 1, c.STATE_PARENT_VERSION: 0, c.STATE_BASE_VERSION: 0,
            c.STATE_KIND: "initial", c.STATE_HASH: h1,
            c.STATE_SNAPSHOT: '{"id":"A","score":712}', c.STATE_KEYS: ["id", "score"],
        }),
        (c.EV_STATE_COMMIT, {
            c.STATE_VERSION: 2, c.STATE_PARENT_VERSION: 1, c.STATE_BASE_VERSION: 1,
            c.STATE_KIND: "commit", c.STATE_HASH: h2, c.STATE_AGENT: "scorer",
            c.STATE_PATCH: '[{"op":"replace","path":"/score","value":648}]', c.STATE_KEYS: ["score"],
        }),
        (c.EV_STATE_READ, {
            c.STATE_VERSION: 1, c.STATE_KEYS: ["score"], c.STATE_VIA: "cache",
            c.STATE_CACHE: "bureau", c.STATE_HEAD_VERSION: 2,
        }),
        (c.EV_CACHE_INVALIDATE, {
            c.STATE_CACHE: "bureau", c.STATE_KEYS: ["score"], c.STATE_VERSION: 2,
            c.STATE_AGENT: "scorer",
        }),
    ]  # fmt: skip
    assert h1 == t.chain_hash("", {"score": 712, "id": "A"})
    assert h2 == t.chain_hash(h1, {"score": 648, "id": "A"})


def test_the_store_makes_versions_and_reads_of_them_and_the_chain_verifies(
    otel: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, memory = otel
    with tracer.start_as_current_span(
        "invoke_agent risk", attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "risk"}
    ) as span:  # fmt: skip
        h1 = record_commit({"score": 712}, version=1)
        record_commit({"score": 648}, version=2, parent_hash=h1, parent_state={"score": 712})
        record_read(version=1, keys=["score"], via="cache", cache="bureau")
        run_id = format(span.get_span_context().trace_id, "032x")
    store = _store(memory)
    versions = store.state_versions(run_id)
    assert [(v.version, v.parent_version, v.kind, v.keys) for v in versions] == [
        (1, None, "initial", ("score",)),
        (2, 1, "commit", ("score",)),
    ]
    assert store.state_at(run_id, 2) == {"score": 648}
    (read,) = store.sql("SELECT agent, version, keys, via, cache FROM state_reads").fetchall()
    assert read == ("risk", 1, ["score"], "cache", "bureau")
    (verified,) = store.verify(run_id)
    assert verified.ok and verified.versions == 2


def test_a_wrong_parent_hash_breaks_the_chain(otel: tuple[Tracer, InMemorySpanExporter]) -> None:
    tracer, memory = otel
    with tracer.start_as_current_span("step") as span:
        record_commit({"n": 1}, version=1)
        record_commit({"n": 2}, version=2, parent_hash="not the hash of version 1")
        run_id = format(span.get_span_context().trace_id, "032x")
    (verified,) = _store(memory).verify(run_id)
    assert not verified.ok and verified.first_bad_version == 2


def _findings(memory: InMemorySpanExporter, run_id: str) -> list[str]:
    return [f.kind for f in analyze(_store(memory), run_id)]


def test_a_cache_read_behind_a_commit_is_a_stale_read_and_its_invalidation_is_not(
    otel: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, memory = otel
    runs = {}
    for invalidated in (False, True):
        with tracer.start_as_current_span("run") as root:
            h1 = record_commit({"score": 712}, version=1)
            with tracer.start_as_current_span("scorer"):
                record_commit({"score": 648}, version=2, parent_hash=h1, agent="scorer")
                if invalidated:
                    record_invalidation("bureau", keys=["score"], version=2)
            with tracer.start_as_current_span("risk"):
                served = 2 if invalidated else 1
                record_read(
                    version=served, keys=["score"], via="cache", cache="bureau", agent="risk"
                )
            runs[invalidated] = format(root.get_span_context().trace_id, "032x")
    assert _findings(memory, runs[False]) == ["stale_read"]
    assert _findings(memory, runs[True]) == []


def test_two_writers_on_one_base_lose_an_update(otel: tuple[Tracer, InMemorySpanExporter]) -> None:
    tracer, memory = otel
    with tracer.start_as_current_span("run") as root:
        h1 = record_commit({"limit": 5000}, version=1)
        with tracer.start_as_current_span("raise"):
            h2 = record_commit(
                {"limit": 7000}, version=2, parent_hash=h1, base_version=1, agent="a"
            )
        with tracer.start_as_current_span("lower"):
            record_commit({"limit": 4000}, version=3, parent_hash=h2, base_version=1, agent="b")
        run_id = format(root.get_span_context().trace_id, "032x")
    assert _findings(memory, run_id) == ["lost_update"]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: record_commit({"a": 1}, version=0), "version must be an integer >= 1"),
        (lambda: record_commit({"a": 1}, version=True), "version must be an integer"),
        (lambda: record_commit([1], version=1), "state must be a JSON object"),  # type: ignore[arg-type]
        (lambda: record_commit({"a": 1}, version=2, base_version=2), "base_version 2 is not older"),
        (lambda: record_commit({"a": 1}, version=2, kind="merge"), "kind must be one of"),
        (lambda: record_commit({"a": 1}, version=1, parent_state={}), "version 1 has no parent"),
        (lambda: record_read(version=1, keys="score"), "not the string 'score'"),
        (lambda: record_read(version=1, via="disk"), "via must be one of store, cache, message"),
        (lambda: record_read(version=3, head_version=2), "head_version must be an integer >= 3"),
        (lambda: record_invalidation(""), "cache must be the cache's name"),
    ],
)
def test_bad_arguments_are_refused_where_they_are_made(call: Any, error: str) -> None:
    with pytest.raises((TypeError, ValueError), match=error):
        call()


def test_without_a_recording_span_nothing_is_recorded_and_nothing_fails(
    otel: tuple[Tracer, InMemorySpanExporter],
) -> None:
    _, memory = otel
    assert record_commit({"a": 1}, version=1) == t.chain_hash("", {"a": 1})
    record_read(version=1, span=INVALID_SPAN)
    record_invalidation("c")
    assert memory.get_finished_spans() == ()


def test_the_helper_loads_neither_the_engine_nor_the_sdk_nor_the_store() -> None:
    heavy = ("engine", "opentelemetry.sdk", "textual", "duckdb", "pyarrow", "google.protobuf")
    code = (
        "import sys, tracer.otel; "
        f"print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json; " + code],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert json.loads(out.stdout) == []
