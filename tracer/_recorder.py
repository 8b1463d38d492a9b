"""The recorder: the one interface through which the engine (or anyone) reports a run.

It builds spans with agentrace's conventions as plain :class:`SpanData` and hands
them, batched, to a :class:`SpanSink`: as OpenTelemetry protobuf messages, made
only at that boundary, or as they are to a sink that takes them directly. Clock and ids are injected, so
under a :class:`FakeClock` and :class:`SeededIds` the output is byte-identical
from run to run.

Thread rules: a ``Recorder`` may be used from any thread; one ``ActiveSpan`` at a
time from one thread (the engine records a step from the coroutine that runs it).
Sink calls happen on the thread that fills the batch or calls ``flush``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest as PB2ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PB2Span

from . import conventions as c
from ._clock import Clock, IdGenerator, RandomIds, SystemClock
from ._otlp import KIND_BY_NAME, fill_attrs
from ._state import JSON, canonical_json, changed_keys, diff

SpanKind = Literal["INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"]
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True, slots=True)
class SpanContext:
    """A span's identity; ``traceparent`` carries it across the bus and processes (W3C)."""

    trace_id: bytes
    span_id: bytes
    sampled: bool = True

    @property
    def trace_id_hex(self) -> str:
        return self.trace_id.hex()

    @property
    def span_id_hex(self) -> str:
        return self.span_id.hex()

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id.hex()}-{self.span_id.hex()}-{'01' if self.sampled else '00'}"

    @classmethod
    def from_traceparent(cls, header: str) -> SpanContext:
        """Parse a W3C ``traceparent`` header; ValueError when it is not one."""
        m = _TRACEPARENT.match(header.strip().lower())
        if not m or m.group(1) == "ff":
            raise ValueError(f"not a W3C traceparent header: {header!r}")
        trace_id, span_id = bytes.fromhex(m.group(2)), bytes.fromhex(m.group(3))
        if not any(trace_id) or not any(span_id):
            raise ValueError(f"traceparent with an all-zero id: {header!r}")
        return cls(trace_id, span_id, bool(int(m.group(4), 16) & 1))


class SpanSink(Protocol):
    """Where finished spans go. ``export`` is called with one request per batch.

    ``export`` must not keep a reference to ``request`` past its return unless it
    copies it; ``flush`` makes everything exported so far durable; ``close``
    flushes and releases what the sink holds. A sink may raise: the recorder
    passes the error to its caller.
    """

    def export(self, request: PB2ExportTraceServiceRequest) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


Attributes = Mapping[str, Any]


@dataclass(slots=True)
class SpanData:
    """A span as the recorder builds it: plain Python until a sink needs the wire form.

    Attribute values are JSON-like (str, bool, int, float, list, dict, None), as in
    the store. Events are ``(time_ns, name, attributes, dropped)``; links
    ``(trace_id, span_id, attributes)``; ``kind`` and ``status_code`` are the OTLP
    enum numbers.
    """

    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes
    name: str
    kind: int
    start_ns: int
    end_ns: int = 0
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[int, str, dict[str, Any], int]] = field(default_factory=list)
    links: list[tuple[bytes, bytes, dict[str, Any]]] = field(default_factory=list)
    status_code: int = 0
    status_message: str = ""

    def to_proto(self, out: PB2Span) -> None:
        out.trace_id = self.trace_id
        out.span_id = self.span_id
        if self.parent_span_id:
            out.parent_span_id = self.parent_span_id
        out.name = self.name
        out.kind = self.kind  # type: ignore[assignment]  # the enum's number
        out.start_time_unix_nano = self.start_ns
        out.end_time_unix_nano = self.end_ns
        fill_attrs(out.attributes, self.attributes)
        for time_ns, name, attrs, _dropped in self.events:
            ev = out.events.add()
            ev.time_unix_nano = time_ns
            ev.name = name
            fill_attrs(ev.attributes, attrs)
        for trace_id, span_id, attrs in self.links:
            link = out.links.add()
            link.trace_id = trace_id
            link.span_id = span_id
            fill_attrs(link.attributes, attrs)
        if self.status_code:
            out.status.code = self.status_code  # type: ignore[assignment]  # the enum's number
            out.status.message = self.status_message


def spans_to_request(
    spans: Sequence[SpanData], resource: Attributes, scope: tuple[str, str]
) -> PB2ExportTraceServiceRequest:
    """The OTLP request for ``spans``: one resource, one scope (the wire boundary)."""
    req = PB2ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    fill_attrs(rs.resource.attributes, dict(resource))
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = scope
    for sp in spans:
        sp.to_proto(ss.spans.add())
    return req


@dataclass(frozen=True, slots=True)
class SpanBatch:
    """Spans handed to a store as they are (``Store.ingest`` accepts it like a request)."""

    spans: Sequence[SpanData]
    resource: Mapping[str, Any]
    scope: tuple[str, str]


_STATUS = {"unset": 0, "ok": 1, "error": 2}


class ActiveSpan:
    """A span being recorded. ``end()`` (or leaving its ``with`` block) finishes it."""

    __slots__ = ("_recorder", "_span", "context", "ended", "name")

    def __init__(self, recorder: Recorder, span: SpanData, context: SpanContext) -> None:
        self._recorder = recorder
        self._span = span
        self.context = context
        self.name = span.name
        self.ended = False

    @property
    def trace_id(self) -> str:
        return self.context.trace_id.hex()

    @property
    def span_id(self) -> str:
        return self.context.span_id.hex()

    def set_attribute(self, key: str, value: Any) -> None:
        self._span.attributes[key] = value

    def set_attributes(self, attributes: Attributes) -> None:
        self._span.attributes.update(attributes)

    def add_event(
        self, name: str, attributes: Attributes | None = None, *, time_ns: int | None = None
    ) -> None:
        when = self._recorder.clock.now_ns() if time_ns is None else time_ns
        self._span.events.append((when, name, dict(attributes) if attributes else {}, 0))

    def add_link(self, context: SpanContext, attributes: Attributes | None = None) -> None:
        self._span.links.append(
            (context.trace_id, context.span_id, dict(attributes) if attributes else {})
        )

    def set_status(self, status: Literal["ok", "error", "unset"], message: str = "") -> None:
        self._span.status_code = _STATUS[status]
        self._span.status_message = message if status == "error" else ""

    def record_exception(self, exc: BaseException, *, escaped: bool = False) -> None:
        """An ``exception`` event per the OpenTelemetry conventions (no stack: it would differ per machine)."""
        self.add_event(
            "exception",
            {
                "exception.type": type(exc).__qualname__,
                "exception.message": str(exc),
                "exception.escaped": escaped,
            },
        )

    def commit_state(
        self,
        *,
        version: int,
        snapshot: JSON,
        hash: str,
        parent_snapshot: JSON | None = None,
        parent_version: int | None = None,
        base_version: int | None = None,
        kind: str = "commit",
        agent: str | None = None,
        keys: Sequence[str] | None = None,
        time_ns: int | None = None,
    ) -> None:
        """Record a committed state version as an ``agentrace.state.commit`` event.

        The document travels whole every ``snapshot_every`` versions (and when no
        parent is given) and as a JSON Patch against ``parent_snapshot`` otherwise.
        """
        attrs: dict[str, Any] = {
            c.STATE_VERSION: version,
            c.STATE_PARENT_VERSION: parent_version or 0,
            c.STATE_BASE_VERSION: base_version or 0,
            c.STATE_KIND: kind,
            c.STATE_HASH: hash,
        }
        if agent:
            attrs[c.STATE_AGENT] = agent
        every = self._recorder.snapshot_every
        if parent_snapshot is None:
            attrs[c.STATE_SNAPSHOT] = canonical_json(snapshot)
            touched = (
                list(keys)
                if keys is not None
                else sorted(snapshot)
                if isinstance(snapshot, dict)
                else []
            )
        else:
            patch = diff(parent_snapshot, snapshot)
            if version % every == 1 or every == 1:
                attrs[c.STATE_SNAPSHOT] = canonical_json(snapshot)
            else:
                attrs[c.STATE_PATCH] = canonical_json(patch)
            touched = list(keys) if keys is not None else changed_keys(patch)
        attrs[c.STATE_KEYS] = touched
        self.add_event(c.EV_STATE_COMMIT, attrs, time_ns=time_ns)

    def record_read(
        self,
        *,
        version: int,
        keys: Iterable[str],
        via: str = "store",
        head_version: int | None = None,
        cache: str | None = None,
        agent: str | None = None,
        time_ns: int | None = None,
    ) -> None:
        """Record that this span read ``keys`` at ``version`` (the head being ``head_version``)."""
        attrs: dict[str, Any] = {
            c.STATE_VERSION: version,
            c.STATE_KEYS: list(keys),
            c.STATE_VIA: via,
        }
        if head_version is not None:
            attrs[c.STATE_HEAD_VERSION] = head_version
        if cache:
            attrs[c.STATE_CACHE] = cache
        if agent:
            attrs[c.STATE_AGENT] = agent
        self.add_event(c.EV_STATE_READ, attrs, time_ns=time_ns)

    def end(self, *, end_ns: int | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        self._span.end_ns = self._recorder.clock.now_ns() if end_ns is None else end_ns
        self._recorder._finish(self._span)

    def __enter__(self) -> ActiveSpan:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is not None and not self.ended:
            self.record_exception(exc, escaped=True)
            self.set_status("error", f"{type(exc).__name__}: {exc}")
        self.end()


class Recorder:
    """Builds spans and ships them to ``sink`` in batches of ``batch_size``."""

    def __init__(
        self,
        sink: SpanSink,
        *,
        clock: Clock | None = None,
        ids: IdGenerator | None = None,
        resource: Attributes | None = None,
        scope: tuple[str, str] = ("agentrace", "0.1.0"),
        batch_size: int = 1024,
        snapshot_every: int = 32,
    ) -> None:
        if batch_size < 1 or snapshot_every < 1:
            raise ValueError("batch_size and snapshot_every must be at least 1")
        self.sink = sink
        self.clock: Clock = clock or SystemClock()
        self.ids: IdGenerator = ids or RandomIds()
        self.resource = dict(resource or {c.SERVICE_NAME: "agentrace"})
        self.scope = scope
        self.batch_size = batch_size
        self.snapshot_every = snapshot_every
        self._buffer: list[SpanData] = []
        self._lock = threading.Lock()
        self._closed = False

    def start_span(
        self,
        name: str,
        *,
        kind: SpanKind = "INTERNAL",
        parent: SpanContext | ActiveSpan | None = None,
        trace_id: bytes | None = None,
        attributes: Attributes | None = None,
        links: Iterable[SpanContext] = (),
        start_ns: int | None = None,
    ) -> ActiveSpan:
        """Start a span: a child of ``parent``, or the root of a new trace (``trace_id`` or a fresh one)."""
        if self._closed:
            raise RuntimeError("recorder is closed")
        if isinstance(parent, ActiveSpan):
            parent = parent.context
        trace = parent.trace_id if parent is not None else trace_id or self.ids.trace_id()
        span = SpanData(
            trace,
            self.ids.span_id(),
            parent.span_id if parent is not None else b"",
            name,
            KIND_BY_NAME[kind],
            self.clock.now_ns() if start_ns is None else start_ns,
            attributes=dict(attributes) if attributes else {},
        )
        active = ActiveSpan(self, span, SpanContext(trace, span.span_id))
        for link in links:
            active.add_link(link)
        return active

    def _finish(self, span: SpanData) -> None:
        with self._lock:
            self._buffer.append(span)
            full = len(self._buffer) >= self.batch_size
        if full:
            self.flush()

    def flush(self) -> None:
        """Hand every finished span to the sink and flush it.

        A sink with ``export_spans(spans, resource, scope)`` gets the spans as they
        are (the DuckDB sink writes rows from them directly); any other sink gets
        one OTLP request.
        """
        with self._lock:
            spans, self._buffer = self._buffer, []
        if spans:
            export_spans = getattr(self.sink, "export_spans", None)
            if export_spans is not None:
                export_spans(spans, self.resource, self.scope)
            else:
                self.sink.export(spans_to_request(spans, self.resource, self.scope))
        self.sink.flush()

    def close(self) -> None:
        """Flush and close the sink. Spans still open are not recorded."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        self.sink.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
