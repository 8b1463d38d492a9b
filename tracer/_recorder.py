"""The recorder: the one interface through which the engine (or anyone) reports a run.

It builds OpenTelemetry ``Span`` protobuf messages with agentrace's conventions
and hands them, batched, to a :class:`SpanSink`. Clock and ids are injected, so
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
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest as PB2ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PB2Span
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PB2Status

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


class ActiveSpan:
    """A span being recorded. ``end()`` (or leaving its ``with`` block) finishes it."""

    __slots__ = ("_recorder", "_span", "context", "ended", "name")

    def __init__(self, recorder: Recorder, span: PB2Span, context: SpanContext) -> None:
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
        fill_attrs(self._span.attributes, {key: value})

    def set_attributes(self, attributes: Attributes) -> None:
        fill_attrs(self._span.attributes, dict(attributes))

    def add_event(
        self, name: str, attributes: Attributes | None = None, *, time_ns: int | None = None
    ) -> None:
        ev = self._span.events.add()
        ev.time_unix_nano = self._recorder.clock.now_ns() if time_ns is None else time_ns
        ev.name = name
        if attributes:
            fill_attrs(ev.attributes, dict(attributes))

    def add_link(self, context: SpanContext, attributes: Attributes | None = None) -> None:
        link = self._span.links.add()
        link.trace_id = context.trace_id
        link.span_id = context.span_id
        if attributes:
            fill_attrs(link.attributes, dict(attributes))

    def set_status(self, status: Literal["ok", "error", "unset"], message: str = "") -> None:
        code = {
            "unset": PB2Status.STATUS_CODE_UNSET,
            "ok": PB2Status.STATUS_CODE_OK,
            "error": PB2Status.STATUS_CODE_ERROR,
        }
        self._span.status.code = code[status]
        self._span.status.message = message if status == "error" else ""

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
        self._span.end_time_unix_nano = self._recorder.clock.now_ns() if end_ns is None else end_ns
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
        self._buffer: list[PB2Span] = []
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
        span = PB2Span()
        if parent is not None:
            span.trace_id = parent.trace_id
            span.parent_span_id = parent.span_id
        else:
            span.trace_id = trace_id or self.ids.trace_id()
        span_id = self.ids.span_id()
        span.span_id = span_id
        span.name = name
        span.kind = KIND_BY_NAME[kind]  # type: ignore[assignment]  # int enum value
        span.start_time_unix_nano = self.clock.now_ns() if start_ns is None else start_ns
        if attributes:
            fill_attrs(span.attributes, dict(attributes))
        active = ActiveSpan(self, span, SpanContext(span.trace_id, span_id))
        for link in links:
            active.add_link(link)
        return active

    def _finish(self, span: PB2Span) -> None:
        with self._lock:
            self._buffer.append(span)
            full = len(self._buffer) >= self.batch_size
        if full:
            self.flush()

    def _take(self) -> PB2ExportTraceServiceRequest | None:
        with self._lock:
            if not self._buffer:
                return None
            spans, self._buffer = self._buffer, []
        req = PB2ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        fill_attrs(rs.resource.attributes, self.resource)
        ss = rs.scope_spans.add()
        ss.scope.name, ss.scope.version = self.scope
        ss.spans.extend(spans)
        return req

    def flush(self) -> None:
        """Hand every finished span to the sink and flush it."""
        req = self._take()
        if req is not None:
            self.sink.export(req)
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
