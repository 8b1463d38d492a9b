"""agentrace's record: OTLP spans plus immutable state versions, indexed in DuckDB.

The ground floor: knows no engine and no Textual. Its public surface is what
``__all__`` lists; the modules behind it are private.
"""

from __future__ import annotations

from . import conventions
from ._clock import Clock, FakeClock, IdGenerator, RandomIds, SeededIds, SystemClock
from ._errors import (
    AgentraceError,
    ChainError,
    DecodeError,
    DuplicateSpanError,
    NotFoundError,
    SchemaError,
    StoreError,
    StoreLockedError,
)
from ._import import expand_paths, import_file
from ._otlp import Record, decode_json, decode_proto, encode_json, read_records
from ._recorder import ActiveSpan, Recorder, SpanContext, SpanSink
from ._sinks import (
    DuckDBSink,
    InMemorySink,
    OtlpHttpSink,
    OtlpJsonLinesSink,
    OtlpProtoFileSink,
    TeeSink,
)
from ._state import FieldChange, apply_patch, canonical_json, chain_hash, diff, field_changes
from ._store._models import (
    Finding,
    IngestResult,
    Message,
    Run,
    Span,
    SpanEvent,
    SpanLink,
    StateRead,
    StateVersion,
    VerifyResult,
)
from ._store._schema import SCHEMA_VERSION
from ._store._store import DEFAULT_DB, Store

__all__ = [
    "DEFAULT_DB",
    "SCHEMA_VERSION",
    "ActiveSpan",
    "AgentraceError",
    "ChainError",
    "Clock",
    "DecodeError",
    "DuckDBSink",
    "DuplicateSpanError",
    "FakeClock",
    "FieldChange",
    "Finding",
    "IdGenerator",
    "InMemorySink",
    "IngestResult",
    "Message",
    "NotFoundError",
    "OtlpHttpSink",
    "OtlpJsonLinesSink",
    "OtlpProtoFileSink",
    "RandomIds",
    "Record",
    "Recorder",
    "Run",
    "SchemaError",
    "SeededIds",
    "Span",
    "SpanContext",
    "SpanEvent",
    "SpanLink",
    "SpanSink",
    "StateRead",
    "StateVersion",
    "Store",
    "StoreError",
    "StoreLockedError",
    "SystemClock",
    "TeeSink",
    "VerifyResult",
    "apply_patch",
    "canonical_json",
    "chain_hash",
    "conventions",
    "decode_json",
    "decode_proto",
    "diff",
    "encode_json",
    "expand_paths",
    "field_changes",
    "import_file",
    "read_records",
]
