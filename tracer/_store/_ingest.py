"""OTLP requests → columns → Arrow → DuckDB.

The hot path of agentrace: every span of every source passes through
``Batch.add_proto`` or ``Batch.add_json``. Both walk their input once, build one
tuple per row, and leave validation, classification and the projection of
``agentrace.*`` events to ``Batch._span``, which both share. Rows become Arrow
columns in one transpose per table, and DuckDB inserts them in bulk.

A large protobuf request with its wire bytes goes through ``Batch.add_proto_wire``
instead: its plain spans (tracer._store._wire) become the same rows in bulk, and
their wide columns stay the walk's Arrow arrays; the other spans take ``_span``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from .. import conventions as c
from .._errors import DecodeError, DuplicateSpanError
from .._mapping import classify, messaging_fact
from .._otlp import (
    INT64_MAX,
    INT64_MIN,
    KIND_BY_NAME,
    KIND_NAMES,
    STATUS_BY_NAME,
    STATUS_NAMES,
    PB2ExportTraceServiceRequest,
    Record,
    attrs_from_json,
    attrs_from_proto,
    check_bytes_id,
    check_hex_id,
    decode_proto,
)
from .._recorder import SpanBatch
from .._redact import Redactor
from ._derive import LANGCHAIN_SCOPE_PREFIX, resolve_batch

if TYPE_CHECKING:
    from .._recorder import SpanData
    from ._wire import Walked

# The span columns the protobuf walk lays out as Arrow arrays (see tracer._store._wire).
_WIRE_COLUMNS = frozenset({
    "trace_id", "span_id", "parent_span_id", "trace_state", "flags", "name", "start_ns",
    "end_ns", "status_message", "attributes", "dropped_attributes_count",
    "dropped_events_count", "dropped_links_count",
})  # fmt: skip
# Requests smaller than this are read field by field: the bulk walk's fixed cost pays off
# only over some dozens of spans (and a process that never sees one never loads numba).
_WIRE_MIN_BYTES = 16 << 10


DERIVED_MESSAGING = "messaging"


def _json_entity_refs(refs: Any) -> str:
    if not refs:
        return "[]"
    if not isinstance(refs, list) or not all(isinstance(e, dict) for e in refs):
        raise DecodeError("resource entityRefs is not a list of objects")
    return _dumps(
        [
            {"schema_url": e.get("schemaUrl") or "", "type": e.get("type") or "",
             "id_keys": [str(k) for k in e.get("idKeys") or ()],
             "description_keys": [str(k) for k in e.get("descriptionKeys") or ()]}
            for e in refs
        ]
    ).decode()  # fmt: skip


def _dumps(value: Any) -> bytes:
    # Strict: a value the OTLP wire form could not carry (a datetime, a dataclass...) is an
    # error here too, so a span stored directly and one sent through OTLP give the same row.
    return orjson.dumps(value, option=_STRICT)


_STRICT = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_MAX_NS = (1 << 63) - 1
_NON_FINITE = {float("inf"): "Infinity", float("-inf"): "-Infinity"}


def _wire_value(v: Any) -> Any:
    """``v`` as the OTLP wire form would bring it back (``v`` itself when unchanged):
    non-finite doubles wrapped as ``{"doubleValue": ...}``, integers past 64 bits refused."""
    if isinstance(v, float):
        if v != v:
            return {"doubleValue": "NaN"}
        return {"doubleValue": _NON_FINITE[v]} if v in _NON_FINITE else v
    if isinstance(v, int):
        if not INT64_MIN <= v <= INT64_MAX:
            raise ValueError(f"integer attribute value {v} does not fit in OTLP's 64-bit int")
        return v
    if isinstance(v, list | tuple):
        items = [_wire_value(x) for x in v]
        return items if any(a is not b for a, b in zip(items, v, strict=True)) else v
    if isinstance(v, dict):
        return _wire_attrs(v)
    return v


def _wire_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes built in process, as they would arrive through OTLP (see ``_wire_value``)."""
    out: dict[str, Any] | None = None
    for k, v in attrs.items():
        if v is None or type(v) is str or type(v) is bool:
            continue
        w = _wire_value(v)
        if w is not v:
            if out is None:
                out = dict(attrs)
            out[k] = w
    return out if out is not None else attrs if type(attrs) is dict else dict(attrs)


SPAN_COLUMNS = (
    "trace_id", "span_id", "parent_span_id", "trace_state", "flags", "name", "kind",
    "start_ns", "end_ns", "status_code", "status_message", "attributes", "resource",
    "scope_name", "scope_version", "service_name", "operation", "agent",
    "dropped_attributes_count", "dropped_events_count", "dropped_links_count",
    "scope_attributes", "scope_dropped_attributes_count", "scope_schema_url",
    "resource_dropped_attributes_count", "resource_schema_url", "resource_entity_refs", "cycle",
)  # fmt: skip
EVENT_COLUMNS = (
    "trace_id", "span_id", "seq", "time_ns", "name", "attributes", "dropped_attributes_count",
)  # fmt: skip
LINK_COLUMNS = (
    "trace_id", "span_id", "seq", "linked_trace_id", "linked_span_id", "trace_state", "flags",
    "attributes", "dropped_attributes_count",
)  # fmt: skip
VERSION_COLUMNS = (
    "run_id", "version", "parent_version", "base_version", "kind", "agent", "span_id",
    "committed_ns", "snapshot", "patch", "hash", "keys", "source", "derived", "step",
)  # fmt: skip
READ_COLUMNS = (
    "run_id", "span_id", "seq", "agent", "version", "head_version", "keys", "via", "cache",
    "read_ns", "derived",
)  # fmt: skip
MESSAGE_COLUMNS = (
    "run_id", "span_id", "seq", "event", "message_id", "topic", "msg_key", "consumer_group",
    "consumer", "agent", "attempt", "outcome", "fault", "time_ns", "derived",
)  # fmt: skip

_U32 = pa.uint32()
_I64 = pa.int64()
_I32 = pa.int32()
_STR = pa.string()
_STRS = pa.list_(pa.string())

SCHEMAS: dict[str, pa.Schema] = {
    "spans": pa.schema(
        [(n, _STR) for n in SPAN_COLUMNS[:4]]
        + [("flags", _U32), ("name", _STR), ("kind", _STR), ("start_ns", _I64), ("end_ns", _I64)]
        + [(n, _STR) for n in SPAN_COLUMNS[9:18]]
        + [(n, _U32) for n in SPAN_COLUMNS[18:21]]
        + [("scope_attributes", _STR), ("scope_dropped_attributes_count", _U32)]
        + [("scope_schema_url", _STR), ("resource_dropped_attributes_count", _U32)]
        + [("resource_schema_url", _STR), ("resource_entity_refs", _STR), ("cycle", pa.bool_())]
    ),
    "span_events": pa.schema(
        [
            ("trace_id", _STR),
            ("span_id", _STR),
            ("seq", _I32),
            ("time_ns", _I64),
            ("name", _STR),
            ("attributes", _STR),
            ("dropped_attributes_count", _U32),
        ]
    ),
    "span_links": pa.schema(
        [
            ("trace_id", _STR),
            ("span_id", _STR),
            ("seq", _I32),
            ("linked_trace_id", _STR),
            ("linked_span_id", _STR),
            ("trace_state", _STR),
            ("flags", _U32),
            ("attributes", _STR),
            ("dropped_attributes_count", _U32),
        ]
    ),
    "state_versions": pa.schema(
        [
            ("run_id", _STR),
            ("version", _I64),
            ("parent_version", _I64),
            ("base_version", _I64),
            ("kind", _STR),
            ("agent", _STR),
            ("span_id", _STR),
            ("committed_ns", _I64),
            ("snapshot", _STR),
            ("patch", _STR),
            ("hash", _STR),
            ("keys", _STRS),
            ("source", _STR),
            ("derived", _STR),
            ("step", _I64),
        ]
    ),
    "state_reads": pa.schema(
        [
            ("run_id", _STR),
            ("span_id", _STR),
            ("seq", _I32),
            ("agent", _STR),
            ("version", _I64),
            ("head_version", _I64),
            ("keys", _STRS),
            ("via", _STR),
            ("cache", _STR),
            ("read_ns", _I64),
            ("derived", _STR),
        ]
    ),
    "messages": pa.schema(
        [
            ("run_id", _STR),
            ("span_id", _STR),
            ("seq", _I32),
            ("event", _STR),
            ("message_id", _STR),
            ("topic", _STR),
            ("msg_key", _STR),
            ("consumer_group", _STR),
            ("consumer", _STR),
            ("agent", _STR),
            ("attempt", _I32),
            ("outcome", _STR),
            ("fault", _STR),
            ("time_ns", _I64),
            ("derived", _STR),
        ]
    ),
}

Event = tuple[int, str, dict[str, Any], int]  # time_ns, name, attributes, dropped count
# Where a span came from: resource JSON, service name, scope name, scope version, and the
# index in ``Batch.origins`` of (scope attributes JSON, scope dropped count, scope schema
# URL, resource dropped count, resource schema URL, resource entity refs JSON).
Origin = tuple[str, str | None, str, str, int]
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
Link = tuple[
    str, str, str, int, dict[str, Any], int
]  # trace, span, trace_state, flags, attrs, dropped


def _int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        try:
            return int(v)
        except (TypeError, ValueError):
            raise DecodeError(f"{what} must be an integer, got {v!r}") from None
    return v


def _opt_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def _str_list(v: Any) -> list[str]:
    if isinstance(v, list):
        return [str(x) for x in v]
    if isinstance(v, str) and v:
        return [v]
    return []


class Batch:
    """Rows for every table, built from OTLP requests; not thread-safe.

    ``add_*`` validates as it goes and raises :class:`DecodeError` naming the span;
    a span id seen twice in one batch is skipped when identical and refused when not.
    With a ``redactor``, secrets are replaced in resources (as they are added) and in
    the text columns of :meth:`tables`, before anything reaches the store.
    """

    def __init__(self, redactor: Redactor | None = None, *, lenient: bool = False) -> None:
        self.redactor = redactor if redactor is not None and redactor.active else None
        # Lenient: a span that does not validate is left out and reported in ``rejected``
        # (placed in ``where``: the source and line being added), the rest kept.
        self.lenient = lenient
        self.rejected: list[str] = []
        self.where: tuple[str, int | None] = ("<input>", None)
        self.spans: list[tuple[Any, ...]] = []
        self.events: list[tuple[Any, ...]] = []
        self.links: list[tuple[Any, ...]] = []
        self.versions: list[tuple[Any, ...]] = []
        self.reads: list[tuple[Any, ...]] = []
        self.messages: list[tuple[Any, ...]] = []
        self._seen: dict[str, int] = {}
        self.trace_ids: set[str] = set()
        self.duplicates = 0
        # Positions in ``messages`` of the rows taken from a PRODUCER/CONSUMER span itself:
        # their agent is the span's, which ``resolve_agents`` may still change.
        self.message_spans: list[int] = []
        self.origins: list[tuple[Any, ...]] = []
        self.has_errors = False  # a span with status ERROR was added
        self.cycles: set[tuple[str, str]] = set()  # (trace, span) of spans in a parent cycle
        # Runs of span rows read in bulk: (first row, one past the last, the walk, its first
        # span there). ``tables`` takes their wide columns from the walk's Arrow arrays.
        self._blocks: list[tuple[int, int, Walked, int]] = []

    def __len__(self) -> int:
        return len(self.spans)

    # -- protobuf ----------------------------------------------------------------------------

    def add_proto(self, req: PB2ExportTraceServiceRequest) -> int:
        """Add every span of a request; returns how many were added."""
        before = len(self.spans)
        proto_fn = self._proto_span
        lenient = self.lenient
        for ss, origin in self._proto_scopes(req):
            for sp in ss.spans:
                if lenient:
                    self._lenient(proto_fn, sp, origin)
                else:
                    proto_fn(sp, origin)
        return len(self.spans) - before

    def add_proto_wire(self, data: bytes | memoryview, req: PB2ExportTraceServiceRequest) -> int:
        """``add_proto(req)`` where ``data`` is the wire form upb parsed into ``req``: its
        plain spans are read from the bytes in bulk (see tracer._store._wire), the others
        from ``req`` one by one. The rows are the same either way."""
        if len(data) < _WIRE_MIN_BYTES:
            return self.add_proto(req)
        from . import _wire  # numba: loaded by the first request large enough to need it

        walked = _wire.walk(data)
        if walked is None or [e - f for _, f, e in walked.scopes] != [
            len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans
        ]:
            return self.add_proto(req)
        before = len(self.spans)
        ranges = iter(walked.scopes)
        for ss, origin in self._proto_scopes(req):
            _, first, end = next(ranges)
            if first < end:
                self._scope_spans(walked, first, end, origin, ss.spans)
        return len(self.spans) - before

    def _one_proto_span(self, sp: Any, origin: Origin) -> None:
        if self.lenient:
            self._lenient(self._proto_span, sp, origin)
        else:
            self._proto_span(sp, origin)

    def _scope_spans(self, w: Walked, first: int, end: int, origin: Origin, spans: Any) -> None:
        """Spans ``first:end`` of ``w`` (one scope's, ``spans`` in upb's message), in order:
        the plain ones' rows made in bulk, the others one by one. The rows are those
        ``_span`` makes; the scope is taken one by one whenever an id repeats."""
        plain = w.plain[first:end]
        mine = [k for k, p in enumerate(plain, first) if p]
        keys = [w.trace_ids[k] + w.span_ids[k] for k in mine]
        others = {
            spans[k - first].trace_id.hex() + spans[k - first].span_id.hex()
            for k, p in enumerate(plain, first)
            if not p
        }  # fmt: skip
        seen = self._seen
        if (
            len(set(keys)) != len(keys)
            or not others.isdisjoint(keys)
            or not seen.keys().isdisjoint(keys)
        ):
            for sp in spans:  # an id seen before: compared one by one, as always
                self._one_proto_span(sp, origin)
            return
        tids = [w.trace_ids[k] for k in mine]
        self.trace_ids.update(tids)
        codes = [w.codes[k] for k in mine]
        if 2 in codes:
            self.has_errors = True
        names = [w.names[k] for k in mine]
        kinds = [w.kinds[k] for k in mine]
        pids = [w.parent_ids[k] for k in mine]
        ops, agents = _classify_plain(
            names, kinds, pids, [w.ops[k] for k in mine], [w.agents[k] for k in mine]
        )
        resource, service, scope_name, scope_version, where = origin
        n = len(mine)
        rows = list(
            zip(
                tids, [w.span_ids[k] for k in mine], pids, [w.trace_states[k] for k in mine],
                [w.flags[k] for k in mine], names, [KIND_NAMES[x] for x in kinds],
                [w.starts[k] for k in mine], [w.ends[k] for k in mine],
                [STATUS_NAMES[x] for x in codes], [w.status_messages[k] for k in mine],
                [w.attributes[k] for k in mine], repeat(resource, n), repeat(scope_name, n),
                repeat(scope_version, n), repeat(service, n), ops, agents,
                [w.dropped_attributes[k] for k in mine], [w.dropped_events[k] for k in mine],
                [w.dropped_links[k] for k in mine], repeat(where, n), strict=False,
            )
        )  # fmt: skip
        # Runs of plain spans between the others: each run's rows, events and ids at once.
        done = 0  # plain rows added so far
        k = first
        while k < end:
            if not w.plain[k]:
                self._one_proto_span(spans[k - first], origin)
                k += 1
                continue
            j = k + 1
            while j < end and w.plain[j]:
                j += 1
            base = len(self.spans)
            count = j - k
            self.spans.extend(rows[done : done + count])
            self.events.extend(w.events[w.first_events[k] : w.first_events[j]])
            seen.update(zip(keys[done : done + count], range(base, base + count), strict=True))
            self._blocks.append((base, base + count, w, k))
            done += count
            k = j

    def _proto_scopes(self, req: PB2ExportTraceServiceRequest) -> Iterator[tuple[Any, Origin]]:
        """Each scope of ``req`` with its origin (resource and scope facts), in order."""
        for rs in req.resource_spans:
            res = rs.resource
            resource_attrs = attrs_from_proto(res.attributes)
            resource = _dumps(resource_attrs).decode()
            if self.redactor is not None:
                resource = self.redactor.json_text(resource)
            service = resource_attrs.get(c.SERVICE_NAME)
            service = service if isinstance(service, str) else None
            refs = (
                _dumps(
                    [
                        {"schema_url": e.schema_url, "type": e.type, "id_keys": list(e.id_keys),
                         "description_keys": list(e.description_keys)}
                        for e in res.entity_refs
                    ]
                ).decode()
                if len(res.entity_refs)
                else "[]"
            )  # fmt: skip
            for ss in rs.scope_spans:
                scope = ss.scope
                origin = self._origin(
                    resource, service, scope.name, scope.version,
                    _dumps(attrs_from_proto(scope.attributes)).decode() if len(scope.attributes) else "{}",
                    scope.dropped_attributes_count, ss.schema_url, res.dropped_attributes_count,
                    rs.schema_url, refs,
                )  # fmt: skip
                yield ss, origin

    # -- the recorder's own spans --------------------------------------------------------------

    def add_spans(
        self, spans: Sequence[SpanData], resource_attrs: Mapping[str, Any], scope: tuple[str, str]
    ) -> int:
        """Add spans as the recorder built them (no protobuf in between); the rows are the
        same as those of the OTLP request the recorder would have sent."""
        before = len(self.spans)
        resource = _dumps(_wire_attrs(resource_attrs)).decode()
        if self.redactor is not None:
            resource = self.redactor.json_text(resource)
        service = resource_attrs.get(c.SERVICE_NAME)
        service = service if isinstance(service, str) else None
        origin = self._origin(resource, service, scope[0], scope[1], "{}", 0, "", 0, "", "[]")
        span_fn = self._span
        for sp in spans:
            try:
                tid = check_bytes_id(sp.trace_id, 16, "trace id", allow_empty=False)
                sid = check_bytes_id(sp.span_id, 8, "span id", allow_empty=False)
                pid = check_bytes_id(sp.parent_span_id, 8, "parent span id", allow_empty=True)
            except DecodeError as exc:
                raise DecodeError(f"span {sp.name!r}: {exc.detail}") from None
            links = [(lt.hex(), ls.hex(), "", 0, _wire_attrs(la), 0) for lt, ls, la in sp.links]
            events = [(et, en, _wire_attrs(ea), ed) for et, en, ea, ed in sp.events]
            span_fn(
                tid, sid, pid, "", 0, sp.name, sp.kind, sp.start_ns, sp.end_ns, sp.status_code,
                sp.status_message, _wire_attrs(sp.attributes), origin, 0, 0, 0, events, links,
            )  # fmt: skip
        return len(self.spans) - before

    # -- OTLP/JSON ---------------------------------------------------------------------------

    def add_json(self, obj: Any) -> int:
        """Add every span of a decoded OTLP/JSON request; returns how many were added."""
        if not isinstance(obj, dict):
            raise DecodeError("not an OTLP trace request (not a JSON object)")
        if "resourceSpans" not in obj:
            if "resourceMetrics" in obj or "resourceLogs" in obj:
                raise DecodeError("an OTLP request, but of metrics or logs, not traces")
            if obj:
                raise DecodeError("not an OTLP trace request (no resourceSpans)")
        if not isinstance(obj.get("resourceSpans") or [], list):
            raise DecodeError("resourceSpans is not a list")
        before = len(self.spans)
        json_fn = self._json_span
        lenient = self.lenient
        for rs in obj.get("resourceSpans") or ():
            res = (rs.get("resource") or {}) if isinstance(rs, dict) else None
            if res is None:
                raise DecodeError("resourceSpans entry is not an object")
            resource_attrs = attrs_from_json(res.get("attributes") or [], "resource attributes")
            resource = _dumps(resource_attrs).decode()
            if self.redactor is not None:
                resource = self.redactor.json_text(resource)
            service = resource_attrs.get(c.SERVICE_NAME)
            service = service if isinstance(service, str) else None
            refs = _json_entity_refs(res.get("entityRefs"))
            res_dropped = _int(
                res.get("droppedAttributesCount") or 0, "resource droppedAttributesCount"
            )
            res_schema = rs.get("schemaUrl") or ""
            for ss in rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or ():
                if not isinstance(ss, dict):
                    raise DecodeError("scopeSpans entry is not an object")
                scope = ss.get("scope") or ss.get("instrumentationLibrary") or {}
                scope_attrs = attrs_from_json(scope.get("attributes") or [], "scope attributes")
                origin = self._origin(
                    resource, service, scope.get("name") or "", scope.get("version") or "",
                    _dumps(scope_attrs).decode() if scope_attrs else "{}",
                    _int(scope.get("droppedAttributesCount") or 0, "scope droppedAttributesCount"),
                    ss.get("schemaUrl") or "", res_dropped, res_schema, refs,
                )  # fmt: skip
                for sp in ss.get("spans") or ():
                    if lenient:
                        self._lenient(json_fn, sp, origin)
                    else:
                        json_fn(sp, origin)
        return len(self.spans) - before

    def _origin(
        self, resource: str, service: str | None, scope_name: str, scope_version: str,
        *rest: Any,
    ) -> Origin:  # fmt: skip
        """The per-span form of a resource and scope: the columns every span of a scope
        repeats are kept once, in ``origins``, and each span row holds their index."""
        self.origins.append(rest)
        return (resource, service, scope_name, scope_version, len(self.origins) - 1)

    # -- one span of each wire form -------------------------------------------------------------

    def _proto_span(self, sp: Any, origin: Origin) -> None:
        span_fn = self._span
        name = sp.name
        tid = sp.trace_id.hex()
        sid = sp.span_id.hex()
        pid = sp.parent_span_id.hex()
        if len(tid) != 32 or len(sid) != 16 or (pid and len(pid) != 16):
            # The slow path only to say precisely what is wrong.
            try:
                check_bytes_id(sp.trace_id, 16, "trace id", allow_empty=False)
                check_bytes_id(sp.span_id, 8, "span id", allow_empty=False)
                check_bytes_id(sp.parent_span_id, 8, "parent span id", allow_empty=True)
            except DecodeError as exc:
                raise DecodeError(f"span {name!r}: {exc.detail}") from None
        events = (
            [
                (e.time_unix_nano, e.name, attrs_from_proto(e.attributes),
                 e.dropped_attributes_count)
                for e in sp.events
            ]
            if len(sp.events)
            else []
        )  # fmt: skip
        links = []
        for ln in sp.links:
            try:
                ltid = check_bytes_id(ln.trace_id, 16, "link trace id", allow_empty=False)
                lsid = check_bytes_id(ln.span_id, 8, "link span id", allow_empty=False)
            except DecodeError as exc:
                raise DecodeError(f"span {name!r} ({sid}): {exc.detail}") from None
            links.append(
                (
                    ltid,
                    lsid,
                    ln.trace_state,
                    ln.flags,
                    attrs_from_proto(ln.attributes),
                    ln.dropped_attributes_count,
                )
            )
        status = sp.status
        span_fn(
            tid, sid, pid, sp.trace_state, sp.flags, name, sp.kind,
            sp.start_time_unix_nano, sp.end_time_unix_nano, status.code, status.message,
            attrs_from_proto(sp.attributes), origin,
            sp.dropped_attributes_count, sp.dropped_events_count, sp.dropped_links_count,
            events, links,
        )  # fmt: skip

    def _json_span(self, sp: Any, origin: Origin) -> None:
        span_fn = self._span
        if not isinstance(sp, dict):
            raise DecodeError("a span is not an object")
        name = sp.get("name") or ""
        try:
            sid = check_hex_id(sp.get("spanId"), 8, "span id", allow_empty=False)
            tid = check_hex_id(sp.get("traceId"), 16, "trace id", allow_empty=False)
            pid = check_hex_id(sp.get("parentSpanId"), 8, "parent span id", allow_empty=True)
            events = [
                (
                    _int(e.get("timeUnixNano") or 0, "event timeUnixNano"),
                    e.get("name") or "",
                    attrs_from_json(
                        e.get("attributes") or [], f"event {e.get('name')!r} attributes"
                    ),
                    _int(e.get("droppedAttributesCount") or 0, "droppedAttributesCount"),
                )
                for e in sp.get("events") or ()
            ]
            links = [
                (
                    check_hex_id(ln.get("traceId"), 16, "link trace id", allow_empty=False),
                    check_hex_id(ln.get("spanId"), 8, "link span id", allow_empty=False),
                    ln.get("traceState") or "",
                    _int(ln.get("flags") or 0, "link flags"),
                    attrs_from_json(ln.get("attributes") or [], "link attributes"),
                    _int(ln.get("droppedAttributesCount") or 0, "droppedAttributesCount"),
                )
                for ln in sp.get("links") or ()
            ]
            kind = sp.get("kind") or 0
            if isinstance(kind, str):
                kind = KIND_BY_NAME.get(kind.removeprefix("SPAN_KIND_"), -1)
            status = sp.get("status") or {}
            code = status.get("code") or 0
            if isinstance(code, str):
                code = STATUS_BY_NAME.get(code.removeprefix("STATUS_CODE_"), -1)
            attrs = attrs_from_json(sp.get("attributes") or [], "attributes")
            start = _int(sp.get("startTimeUnixNano") or 0, "startTimeUnixNano")
            end = _int(sp.get("endTimeUnixNano") or 0, "endTimeUnixNano")
            dropped = (
                _int(sp.get("droppedAttributesCount") or 0, "droppedAttributesCount"),
                _int(sp.get("droppedEventsCount") or 0, "droppedEventsCount"),
                _int(sp.get("droppedLinksCount") or 0, "droppedLinksCount"),
            )
        except DecodeError as exc:
            raise DecodeError(f"span {name!r}: {exc.detail}") from None
        span_fn(
            tid, sid, pid, sp.get("traceState") or "", _int(sp.get("flags") or 0, "flags"),
            name, kind, start, end, code, status.get("message") or "", attrs, origin,
            *dropped, events, links,
        )  # fmt: skip

    def _lenient(self, fn: Callable[[Any, Origin], None], sp: Any, origin: Origin) -> None:
        """``fn(sp, origin)``; a bad span is left out whole and reported, not raised."""
        marks = (len(self.spans), len(self.events), len(self.links), len(self.versions),
                 len(self.reads), len(self.messages))  # fmt: skip
        try:
            fn(sp, origin)
        except DecodeError as exc:
            n = marks[0]
            for k in [k for k, i in self._seen.items() if i >= n]:
                del self._seen[k]
            del self.spans[n:]
            self._blocks = [b for b in self._blocks if b[1] <= n]
            del self.events[marks[1] :]
            del self.links[marks[2] :]
            del self.versions[marks[3] :]
            del self.reads[marks[4] :]
            del self.messages[marks[5] :]
            self.message_spans = [i for i in self.message_spans if i < marks[5]]
            source, line = self.where
            self.rejected.append(str(exc.at(source, line)))

    # -- shared ------------------------------------------------------------------------------

    def _span(
        self, tid: str, sid: str, pid: str, trace_state: str, flags: int, name: str, kind: int,
        start: int, end: int, code: int, message: str, attrs: dict[str, Any], origin: Origin,
        dropped_attrs: int, dropped_events: int, dropped_links: int, events: list[Event],
        links: list[Link],
    ) -> None:  # fmt: skip
        where = f"span {name!r} ({sid})"
        if tid == _ZERO_TRACE or sid == _ZERO_SPAN or pid == _ZERO_SPAN:
            what = (
                "trace id"
                if tid == _ZERO_TRACE
                else "span id"
                if sid == _ZERO_SPAN
                else "parent span id"
            )
            raise DecodeError(f"{where}: an all-zero {what} is not a valid id")
        if not 0 <= kind < len(KIND_NAMES):
            raise DecodeError(f"{where}: unknown span kind {kind!r}")
        if not 0 <= code < len(STATUS_NAMES):
            raise DecodeError(f"{where}: unknown status code {code!r}")
        if end < start:
            raise DecodeError(f"{where}: ends before it starts (start {start}, end {end})")
        if end > _MAX_NS or start < 0:
            # Nanoseconds are stored as BIGINT: a uint64 past 2^63 (after 2262) cannot be.
            raise DecodeError(
                f"{where}: a time outside the years 1970-2262 (start {start}, end {end})"
            )
        attrs_json = _dumps(attrs).decode()
        if code == 2:
            self.has_errors = True
        key = tid + sid
        prior = self._seen.get(key)
        if prior is not None:
            old = self.spans[prior]
            same = (old[5], old[7], old[8], old[11]) == (name, start, end, attrs_json)
            if same and (old[2], old[6], old[9], old[10]) == (
                pid,
                KIND_NAMES[kind],
                STATUS_NAMES[code],
                message,
            ):
                self.duplicates += 1
                return
            raise DuplicateSpanError(
                f"{where}: span id seen twice in trace {tid} with different content"
            )
        self._seen[key] = len(self.spans)
        self.trace_ids.add(tid)
        op, agent = classify(name, kind, attrs, not pid)
        resource, service, scope_name, scope_version = origin[:4]
        self.spans.append(
            (tid, sid, pid, trace_state, flags, name, KIND_NAMES[kind], start, end, STATUS_NAMES[code],
             message, attrs_json, resource, scope_name, scope_version, service, op, agent,
             dropped_attrs, dropped_events, dropped_links, origin[4])
        )  # fmt: skip
        has_message_event = False
        for seq, (t, ename, eattrs, edropped) in enumerate(events):
            if not 0 <= t <= _MAX_NS:
                raise DecodeError(
                    f"{where}: event {ename!r} at a time outside the years 1970-2262 ({t})"
                )
            self.events.append((tid, sid, seq, t, ename, _dumps(eattrs).decode(), edropped))
            if ename.startswith("agentrace."):
                if ename.startswith("agentrace.message."):
                    has_message_event = True
                self._project(tid, sid, seq, t, ename, eattrs, attrs, agent, where)
        for seq, (ltid, lsid, lstate, lflags, lattrs, ldropped) in enumerate(links):
            self.links.append(
                (tid, sid, seq, ltid, lsid, lstate, lflags, _dumps(lattrs).decode(), ldropped)
            )
        if kind in (4, 5) and not has_message_event:
            fact = messaging_fact(kind, attrs)
            if fact is not None:
                event, mid, topic, mkey, group, consumer, attempt = fact
                self.messages.append(
                    (tid, sid, -1, event, mid, topic, mkey, group, consumer, agent or origin[1],
                     attempt, None, _s(attrs.get(c.MESSAGE_FAULT)), start, DERIVED_MESSAGING)
                )  # fmt: skip
                self.message_spans.append(len(self.messages) - 1)

    def _project(
        self, tid: str, sid: str, seq: int, t: int, ename: str, ea: dict[str, Any],
        span_attrs: dict[str, Any], agent: str | None, where: str,
    ) -> None:  # fmt: skip
        if ename == c.EV_STATE_COMMIT:
            version = ea.get(c.STATE_VERSION)
            if not isinstance(version, int) or isinstance(version, bool) or version < 1:
                raise DecodeError(f"{where}: {ename} event without a positive {c.STATE_VERSION}")
            snapshot = ea.get(c.STATE_SNAPSHOT)
            patch = ea.get(c.STATE_PATCH)
            step = span_attrs.get(c.AGENT_STEP)
            if snapshot is None and patch is None:
                raise DecodeError(
                    f"{where}: {ename} event {version} has neither snapshot nor patch"
                )
            self.versions.append(
                (tid, version, _opt_int(ea.get(c.STATE_PARENT_VERSION)),
                 _opt_int(ea.get(c.STATE_BASE_VERSION)), _s(ea.get(c.STATE_KIND)) or "commit",
                 _s(ea.get(c.STATE_AGENT)) or agent, sid, t,
                 snapshot if isinstance(snapshot, str) else None,
                 patch if isinstance(patch, str) else None, _s(ea.get(c.STATE_HASH)),
                 _str_list(ea.get(c.STATE_KEYS)), _s(ea.get(c.STATE_SOURCE)) or "agentrace", None,
                 step if type(step) is int else None)
            )  # fmt: skip
        elif ename == c.EV_STATE_READ:
            version = ea.get(c.STATE_VERSION)
            if not isinstance(version, int) or isinstance(version, bool):
                raise DecodeError(f"{where}: {ename} event without {c.STATE_VERSION}")
            self.reads.append(
                (tid, sid, seq, _s(ea.get(c.STATE_AGENT)) or agent, version,
                 _opt_int(ea.get(c.STATE_HEAD_VERSION)), _str_list(ea.get(c.STATE_KEYS)),
                 _s(ea.get(c.STATE_VIA)) or "store", _s(ea.get(c.STATE_CACHE)), t, None)
            )  # fmt: skip
        elif ename.startswith("agentrace.message."):

            def get(k: str) -> Any:
                v = ea.get(k)
                return span_attrs.get(k) if v is None else v

            outcome = ea.get(c.MESSAGE_OUTCOME)
            if ename == c.EV_MESSAGE_ACK and outcome is None:
                outcome = "acked"
            self.messages.append(
                (tid, sid, seq, ename.removeprefix("agentrace.message."),
                 _s(get(c.MESSAGING_MESSAGE_ID)), _s(get(c.MESSAGING_DESTINATION)),
                 _s(get(c.MESSAGE_KEY)), _s(get(c.MESSAGING_CONSUMER_GROUP)),
                 _s(get(c.MESSAGE_CONSUMER)), _s(ea.get(c.STATE_AGENT)) or agent,
                 _opt_int(get(c.MESSAGE_ATTEMPT)), _s(outcome), _s(ea.get(c.MESSAGE_FAULT)), t, None)
            )  # fmt: skip

    def resolve(self, trace_ids: Iterable[str]) -> None:
        """Work out the agent and cycle flag of every span of ``trace_ids`` (traces the store
        has not seen, so this batch holds all their spans) from the batch alone."""
        ids = set(trace_ids)
        if not ids:
            return
        self.cycles |= resolve_batch(self.spans, ids)
        if self.message_spans:
            agent_of = {(r[0], r[1]): r[17] or r[15] for r in self.spans if r[0] in ids}
            for i in self.message_spans:
                m = self.messages[i]
                a = agent_of.get((m[0], m[1]), m[9])
                if a != m[9]:
                    self.messages[i] = (*m[:9], a, *m[10:])

    def cross_trace_links(self) -> set[tuple[str, str]]:
        """``(trace, linked trace)`` of every link from one trace to another."""
        return {(r[0], r[3]) for r in self.links if r[0] != r[3]}

    def langgraph_traces(self) -> set[str]:
        """Traces with spans of the LangChain instrumentation (whose state can be rebuilt)."""
        return {r[0] for r in self.spans if r[13].startswith(LANGCHAIN_SCOPE_PREFIX)}

    def _span_columns(self, rows: list[tuple[Any, ...]], schema: pa.Schema) -> list[Any]:
        """The span table's columns. Rows read in bulk take their wide columns from the
        walk's arrays (one ``take`` per walk and column), the other rows are transposed;
        one more ``take`` puts them back in row order."""
        blocks = self._blocks
        narrow = [
            i for i, f in enumerate(schema) if i < 21 and not (blocks and f.name in _WIRE_COLUMNS)
        ]
        columns: list[Any] = [None] * 21
        for i in narrow:
            columns[i] = pa.array([r[i] for r in rows], type=schema[i].type)
        if blocks:
            import numpy as np  # loaded with the walk that made the blocks

            # Rows outside the blocks, then each walk's rows: where each row now is.
            at = np.empty(len(rows), np.int64)
            loose = np.ones(len(rows), bool)
            for a, b, _, _ in blocks:
                loose[a:b] = False
            outside = np.flatnonzero(loose)
            at[outside] = np.arange(outside.size)
            parts: list[tuple[Walked, Any]] = []
            pos = outside.size
            by_walk: dict[int, list[tuple[int, int, int]]] = {}
            walks: dict[int, Walked] = {}
            for a, b, w, k in blocks:
                by_walk.setdefault(id(w), []).append((a, b, k))
                walks[id(w)] = w
            for key, spans in by_walk.items():
                rows_of = np.concatenate([np.arange(a, b) for a, b, _ in spans])
                taken = np.concatenate([np.arange(k, k + b - a) for a, b, k in spans])
                at[rows_of] = pos + np.arange(rows_of.size)
                pos += rows_of.size
                parts.append((walks[key], pa.array(taken)))
            order = pa.array(at)
            loose_rows = [rows[i] for i in outside.tolist()]
            for i, f in enumerate(schema):
                if i >= 21 or columns[i] is not None:
                    continue
                pieces = [pa.array([r[i] for r in loose_rows], type=f.type)]
                pieces += [w.arrays[f.name].take(idx) for w, idx in parts]
                columns[i] = pa.concat_arrays(pieces).take(order)
        which = pa.array([r[21] for r in rows], pa.int32())
        # The origin columns, repeated per span, taken from the few origins.
        for k, vals in enumerate(zip(*self.origins, strict=True)):
            columns.append(pa.array(vals, type=schema[21 + k].type).take(which))
        columns.append(
            pa.array(
                [(r[0], r[1]) in self.cycles for r in rows] if self.cycles else [False] * len(rows),
                pa.bool_(),
            )
        )  # fmt: skip
        return columns

    def tables(self) -> dict[str, pa.Table]:
        """The rows as Arrow tables, one per store table (empty tables left out)."""
        out: dict[str, pa.Table] = {}
        for name, rows in (
            ("spans", self.spans), ("span_events", self.events), ("span_links", self.links),
            ("state_versions", self.versions), ("state_reads", self.reads), ("messages", self.messages),
        ):  # fmt: skip
            if rows:
                schema = SCHEMAS[name]
                if name == "spans":
                    arrays = self._span_columns(rows, schema)
                else:
                    arrays = [
                        pa.array(col, type=f.type)
                        for col, f in zip(zip(*rows, strict=True), schema, strict=True)
                    ]
                out[name] = pa.Table.from_arrays(arrays, schema=schema)
        return out if self.redactor is None else self.redactor.tables(out)


def _classify_plain(
    names: list[str], kinds: list[int], parents: list[str], ops: list[str | None],
    agents: list[str | None],
) -> tuple[list[str | None], list[str | None]]:  # fmt: skip
    """``classify`` of plain spans (see tracer._store._wire): of their attributes it reads
    only the GenAI operation and agent names, so spans alike in those, name, kind and
    having a parent are classified once."""
    out_ops: list[str | None] = []
    out_agents: list[str | None] = []
    memo: dict[tuple[Any, ...], tuple[str | None, str | None]] = {}
    for name, kind, pid, op, agent in zip(names, kinds, parents, ops, agents, strict=True):
        if op is not None and agent is not None:
            out_ops.append(op)
            out_agents.append(agent)
            continue
        key = (name, kind, not pid, op, agent)
        got = memo.get(key)
        if got is None:
            attrs: dict[str, Any] = {}
            if op is not None:
                attrs[c.GEN_AI_OPERATION_NAME] = op
            if agent is not None:
                attrs[c.GEN_AI_AGENT_NAME] = agent
            got = memo[key] = classify(name, kind, attrs, not pid)
        out_ops.append(got[0])
        out_agents.append(got[1])
    return out_ops, out_agents


def _s(v: Any) -> str | None:
    if v is None:
        return None
    return v if isinstance(v, str) else str(v)


@dataclass(frozen=True, slots=True)
class Parsed:
    """A protobuf request with the wire bytes upb parsed it from: its plain spans are then
    read from the bytes in bulk (see ``Batch.add_proto_wire``)."""

    data: bytes | memoryview
    request: PB2ExportTraceServiceRequest


Payload = PB2ExportTraceServiceRequest | dict[str, Any] | Record | SpanBatch | Parsed


def add_payload(batch: Batch, payload: Payload, source: str, index: int) -> None:
    """Add one payload to ``batch``, placing any error in its source and line."""
    batch.where = (payload.source, payload.line) if isinstance(payload, Record) else (source, index)
    if isinstance(payload, SpanBatch):
        batch.add_spans(payload.spans, payload.resource, payload.scope)
    elif isinstance(payload, Parsed):
        try:
            batch.add_proto_wire(payload.data, payload.request)
        except DecodeError as exc:
            raise exc.at(source, index) from None
    elif isinstance(payload, Record):
        try:
            if payload.kind == "json":
                try:
                    obj = orjson.loads(payload.data)
                except orjson.JSONDecodeError as exc:
                    raise DecodeError(f"not JSON: {exc}") from None
                batch.add_json(obj)
            else:
                batch.add_proto_wire(payload.data, decode_proto(payload.data))
        except DecodeError as exc:
            raise exc.at(payload.source, payload.line) from None
    elif isinstance(payload, dict):
        try:
            batch.add_json(payload)
        except DecodeError as exc:
            raise exc.at(source, index) from None
    else:
        try:
            batch.add_proto(payload)
        except DecodeError as exc:
            raise exc.at(source, index) from None
