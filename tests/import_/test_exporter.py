"""The SDK SpanExporter writes into a store what the receiver would have stored."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanContext, TraceFlags

import tracer as t

from .helpers import ThreadedReceiver, counts, span_rows
from .test_receiver import _make_spans


def test_exporter_and_receiver_store_the_same_rows(tmp_path: Path) -> None:
    via_receiver = t.Store(tmp_path / "r.duckdb")
    direct = t.Store(tmp_path / "d.duckdb")
    with ThreadedReceiver(via_receiver) as rx:
        provider = TracerProvider(resource=Resource.create({"service.name": "exporter-test"}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=rx.url)))
        provider.add_span_processor(
            BatchSpanProcessor(t.StoreSpanExporter(direct), max_export_batch_size=4)
        )
        for i in range(5):
            _make_spans(provider.get_tracer("test"), f"run-{i}")
        provider.shutdown()
    assert counts(direct)["spans"] == 25
    assert span_rows(direct) == span_rows(via_receiver)
    # OTLP span flags: the W3C flags (sampled) and "parent is not remote" (bits 8 and 9).
    flags = {r[0] for r in direct.sql("SELECT DISTINCT flags FROM spans").fetchall()}
    assert flags and all(f & 0x300 == 0x100 and f & 0x01 for f in flags)


def test_an_exporter_given_a_path_owns_its_store(tmp_path: Path) -> None:
    db = tmp_path / "own.duckdb"
    exporter = t.StoreSpanExporter(db)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("x").start_as_current_span(
        "invoke_agent solo", attributes={"gen_ai.agent.name": "solo"}
    ):
        pass
    provider.shutdown()
    assert exporter.result.spans == 1
    with t.Store(db, read_only=True) as store:  # closed by shutdown: openable again
        (run,) = store.runs()
        assert run.agents == ("solo",)
    assert exporter.export([]) == SpanExportResult.FAILURE  # after shutdown


def test_spans_the_store_refuses_fail_the_export_and_store_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = t.Store(":memory:")
    exporter = t.StoreSpanExporter(store)
    ctx = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, False, TraceFlags(1))
    good = ReadableSpan("fine", ctx, start_time=10, end_time=20, resource=Resource.create({}))
    bad_ctx = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C, 0x00F067AA0BA902B7, False, TraceFlags(1)
    )
    bad = ReadableSpan(
        "backwards", bad_ctx, start_time=20, end_time=10, resource=Resource.create({})
    )
    with caplog.at_level(logging.ERROR, logger="agentrace.exporter"):
        assert exporter.export([good, bad]) == SpanExportResult.FAILURE
    assert "ends before it starts" in caplog.text
    assert counts(store)["spans"] == 0
    assert exporter.export([good]) == SpanExportResult.SUCCESS
    assert counts(store)["spans"] == 1


def test_exported_spans_are_redacted(tmp_path: Path) -> None:
    store = t.Store(":memory:")
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(t.StoreSpanExporter(store)))
    with provider.get_tracer("x").start_as_current_span(
        "call",
        attributes={"http.request.header.authorization": ("Bearer abc123def456",), "q": "hello"},
    ):
        pass
    provider.shutdown()
    (row,) = store.sql("SELECT attributes::VARCHAR FROM spans").fetchall()
    assert "abc123def456" not in row[0] and '"q":"hello"' in row[0]


def test_remote_parents_are_flagged() -> None:
    store = t.Store(":memory:")
    exporter = t.StoreSpanExporter(store)
    parent = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True, TraceFlags(1)
    )
    ctx = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0x00F067AA0BA902B7, False, TraceFlags(1))
    child = ReadableSpan(
        "child", ctx, parent=parent, start_time=1, end_time=2, resource=Resource.create({})
    )
    assert exporter.export([child]) == SpanExportResult.SUCCESS
    assert store.sql("SELECT flags, parent_span_id FROM spans").fetchall() == [
        (0x301, "b7ad6b7169203331")
    ]
