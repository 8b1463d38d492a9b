"""An OpenTelemetry SDK ``SpanExporter`` that writes straight into a store.

For a program instrumented with OpenTelemetry (any framework, any convention)
that should record locally, without a collector or ``agentrace serve``::

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from tracer import StoreSpanExporter

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(StoreSpanExporter("runs.duckdb")))

Needs the ``sdk`` extra (opentelemetry-sdk). Spans are converted to OTLP
protobuf here, at the boundary, and go through the same ingest as every other
source: conventions mapped, secrets redacted, LangGraph state rebuilt, one
transaction per export call.

Threads: ``export`` is called by the span processor's worker thread (or the
caller's thread with ``SimpleSpanProcessor``); it blocks until the batch is
committed and returns SUCCESS, or FAILURE when the spans cannot be stored (the
processor then drops them, as it does for any failing exporter; the reason is
logged). Calls are serialised by the store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest as PB2ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans as PB2ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PB2Span
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ._errors import AgentraceError
from ._otlp import fill_attrs
from ._store._models import IngestResult
from ._store._store import Store

log = logging.getLogger("agentrace.exporter")

_HAS_IS_REMOTE = 0x100  # OTLP span flags: bit 8 says bit 9 is meaningful,
_IS_REMOTE = 0x200  # bit 9 that the parent (or linked) context came from another process


def _plain(value: Any) -> Any:
    # SDK attribute sequences are tuples; the store's attribute form has lists.
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _attrs(target: Any, attributes: Any) -> None:
    if attributes:
        fill_attrs(target, {k: _plain(v) for k, v in attributes.items()})


def _flags(trace_flags: int, remote: bool | None) -> int:
    flags = int(trace_flags) & 0xFF
    if remote is not None:
        flags |= _HAS_IS_REMOTE | (_IS_REMOTE if remote else 0)
    return flags


def encode_spans(spans: Sequence[ReadableSpan]) -> PB2ExportTraceServiceRequest:
    """The OTLP request for finished SDK spans, grouped by resource and scope."""
    req = PB2ExportTraceServiceRequest()
    resources: dict[int, Any] = {}
    scopes: dict[tuple[int, Any], PB2ScopeSpans] = {}
    for span in spans:
        ctx = span.context
        if ctx is None:
            continue
        resource = span.resource
        rs = resources.get(id(resource))
        if rs is None:
            rs = req.resource_spans.add()
            _attrs(rs.resource.attributes, resource.attributes)
            rs.schema_url = resource.schema_url or ""
            resources[id(resource)] = rs
        scope = span.instrumentation_scope
        key = (
            id(resource),
            (scope.name, scope.version, scope.schema_url) if scope is not None else None,
        )
        ss = scopes.get(key)
        if ss is None:
            ss = rs.scope_spans.add()
            if scope is not None:
                ss.scope.name = scope.name
                ss.scope.version = scope.version or ""
                _attrs(ss.scope.attributes, getattr(scope, "attributes", None))
                ss.schema_url = scope.schema_url or ""
            scopes[key] = ss
        out: PB2Span = ss.spans.add()
        out.trace_id = ctx.trace_id.to_bytes(16, "big")
        out.span_id = ctx.span_id.to_bytes(8, "big")
        out.trace_state = ctx.trace_state.to_header() if ctx.trace_state else ""
        parent = span.parent
        if parent is not None:
            out.parent_span_id = parent.span_id.to_bytes(8, "big")
        out.flags = _flags(ctx.trace_flags, parent.is_remote if parent is not None else False)
        out.name = span.name
        out.kind = span.kind.value + 1  # type: ignore[assignment]  # SDK INTERNAL=0 is OTLP 1
        out.start_time_unix_nano = span.start_time or 0
        out.end_time_unix_nano = span.end_time or span.start_time or 0
        _attrs(out.attributes, span.attributes)
        out.dropped_attributes_count = span.dropped_attributes
        out.dropped_events_count = span.dropped_events
        out.dropped_links_count = span.dropped_links
        for ev in span.events:
            e = out.events.add()
            e.name = ev.name
            e.time_unix_nano = ev.timestamp or 0
            _attrs(e.attributes, ev.attributes)
            e.dropped_attributes_count = getattr(ev, "dropped_attributes", 0)
        for link in span.links:
            ln = out.links.add()
            ln.trace_id = link.context.trace_id.to_bytes(16, "big")
            ln.span_id = link.context.span_id.to_bytes(8, "big")
            ln.trace_state = (
                link.context.trace_state.to_header() if link.context.trace_state else ""
            )
            ln.flags = _flags(link.context.trace_flags, link.context.is_remote)
            _attrs(ln.attributes, link.attributes)
            ln.dropped_attributes_count = getattr(link, "dropped_attributes", 0)
        status = span.status
        out.status.code = status.status_code.value  # type: ignore[assignment]  # UNSET 0, OK 1, ERROR 2
        out.status.message = status.description or ""
    return req


class StoreSpanExporter(SpanExporter):
    """Exports SDK spans into an agentrace :class:`Store` (or a path, opened and owned here)."""

    def __init__(self, store: Store | str | Path) -> None:
        self._owns = not isinstance(store, Store)
        self.store = store if isinstance(store, Store) else Store(store)
        self.result = IngestResult()
        self._lock = threading.Lock()
        self._shut = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shut:
            return SpanExportResult.FAILURE
        req = encode_spans(spans)
        try:
            result = self.store.ingest([req], source="exporter")
        except AgentraceError as exc:
            log.error("agentrace could not store %d span(s): %s", len(spans), exc)
            return SpanExportResult.FAILURE
        with self._lock:
            self.result += result
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        if self._shut:
            return
        self._shut = True
        if self._owns:
            self.store.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # every export is committed before it returns
