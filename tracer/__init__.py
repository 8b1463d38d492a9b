"""agentrace's record: OTLP spans plus immutable state versions, indexed in DuckDB.

The ground floor: knows no engine and no Textual. Its public surface is what
``__all__`` lists; the modules behind it are private.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import conventions
from ._clock import Clock, FakeClock, IdGenerator, RandomIds, SeededIds, SystemClock
from ._errors import (
    AgentraceError,
    ChainError,
    CheckpointerError,
    DecodeError,
    DuplicateSpanError,
    NotFoundError,
    SchemaError,
    StoreError,
    StoreLockedError,
)
from ._mapping import SpanFacts, classify, span_facts
from ._printable import json_printable, printable
from ._state import FieldChange, apply_patch, canonical_json, chain_hash, diff, field_changes

if TYPE_CHECKING:
    from ._checkpointer import checkpoint_snapshots, safe_url
    from ._exporter import StoreSpanExporter
    from ._grpc import GrpcReceiver, start_grpc_receiver
    from ._import import detect_format, expand_paths, import_file
    from ._langgraph import (
        NodeWrite,
        checkpointer_requests,
        derive_trace_state,
        history_requests,
        import_checkpointer,
        import_history,
        langgraph_writes,
        run_id_for_thread,
    )
    from ._otlp import Record, decode_json, decode_proto, encode_json, read_records
    from ._receiver import Receiver, ReceiverStats, serve, start_receiver
    from ._recorder import ActiveSpan, Recorder, SpanBatch, SpanContext, SpanData, SpanSink
    from ._redact import Redactor
    from ._sinks import (
        DuckDBSink,
        InMemorySink,
        OtlpHttpSink,
        OtlpJsonLinesSink,
        OtlpProtoFileSink,
        TeeSink,
    )
    from ._store._models import (
        Finding,
        IngestResult,
        Message,
        Run,
        RunTokens,
        Span,
        SpanEvent,
        SpanLink,
        StateRead,
        StateVersion,
        VerifyResult,
    )
    from ._store._schema import SCHEMA_VERSION
    from ._store._store import DEFAULT_DB, Store

# Loaded on first use: the store (DuckDB, Arrow), the OTLP codecs (protobuf), the
# receiver (aiohttp) and the optional extras are heavy to import, and code that only
# records through the plain OpenTelemetry API (``tracer.otel``) needs none of them.
_LAZY = {
    "checkpoint_snapshots": "._checkpointer",
    "safe_url": "._checkpointer",
    "detect_format": "._import",
    "expand_paths": "._import",
    "import_file": "._import",
    "NodeWrite": "._langgraph",
    "checkpointer_requests": "._langgraph",
    "derive_trace_state": "._langgraph",
    "history_requests": "._langgraph",
    "import_checkpointer": "._langgraph",
    "import_history": "._langgraph",
    "langgraph_writes": "._langgraph",
    "run_id_for_thread": "._langgraph",
    "Record": "._otlp",
    "decode_json": "._otlp",
    "decode_proto": "._otlp",
    "encode_json": "._otlp",
    "read_records": "._otlp",
    "ActiveSpan": "._recorder",
    "Recorder": "._recorder",
    "SpanBatch": "._recorder",
    "SpanContext": "._recorder",
    "SpanData": "._recorder",
    "SpanSink": "._recorder",
    "Redactor": "._redact",
    "DuckDBSink": "._sinks",
    "InMemorySink": "._sinks",
    "OtlpHttpSink": "._sinks",
    "OtlpJsonLinesSink": "._sinks",
    "OtlpProtoFileSink": "._sinks",
    "TeeSink": "._sinks",
    "Finding": "._store._models",
    "IngestResult": "._store._models",
    "Message": "._store._models",
    "Run": "._store._models",
    "RunTokens": "._store._models",
    "Span": "._store._models",
    "SpanEvent": "._store._models",
    "SpanLink": "._store._models",
    "StateRead": "._store._models",
    "StateVersion": "._store._models",
    "VerifyResult": "._store._models",
    "SCHEMA_VERSION": "._store._schema",
    "DEFAULT_DB": "._store._store",
    "Store": "._store._store",
    "StoreSpanExporter": "._exporter",
    "GrpcReceiver": "._grpc",
    "start_grpc_receiver": "._grpc",
    "Receiver": "._receiver",
    "ReceiverStats": "._receiver",
    "serve": "._receiver",
    "start_receiver": "._receiver",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name == "otel":  # a public module, loaded on first use: it needs opentelemetry-api
        value = importlib.import_module(".otel", __name__)
        globals()[name] = value
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tracer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "DEFAULT_DB",
    "SCHEMA_VERSION",
    "ActiveSpan",
    "AgentraceError",
    "ChainError",
    "CheckpointerError",
    "Clock",
    "DecodeError",
    "DuckDBSink",
    "DuplicateSpanError",
    "FakeClock",
    "FieldChange",
    "Finding",
    "GrpcReceiver",
    "IdGenerator",
    "InMemorySink",
    "IngestResult",
    "Message",
    "NodeWrite",
    "NotFoundError",
    "OtlpHttpSink",
    "OtlpJsonLinesSink",
    "OtlpProtoFileSink",
    "RandomIds",
    "Receiver",
    "ReceiverStats",
    "Record",
    "Recorder",
    "Redactor",
    "Run",
    "RunTokens",
    "SchemaError",
    "SeededIds",
    "Span",
    "SpanBatch",
    "SpanContext",
    "SpanData",
    "SpanEvent",
    "SpanFacts",
    "SpanLink",
    "SpanSink",
    "StateRead",
    "StateVersion",
    "Store",
    "StoreError",
    "StoreLockedError",
    "StoreSpanExporter",
    "SystemClock",
    "TeeSink",
    "VerifyResult",
    "apply_patch",
    "canonical_json",
    "chain_hash",
    "checkpoint_snapshots",
    "checkpointer_requests",
    "classify",
    "conventions",
    "decode_json",
    "decode_proto",
    "derive_trace_state",
    "detect_format",
    "diff",
    "encode_json",
    "expand_paths",
    "field_changes",
    "history_requests",
    "import_checkpointer",
    "import_file",
    "import_history",
    "json_printable",
    "langgraph_writes",
    "otel",
    "printable",
    "read_records",
    "run_id_for_thread",
    "safe_url",
    "serve",
    "span_facts",
    "start_grpc_receiver",
    "start_receiver",
]
