"""tracer's public surface is what ``__all__`` lists; this pins it so a change is a decision."""

import tracer

PUBLIC = {
    # the record
    "Recorder", "ActiveSpan", "SpanContext", "SpanData", "SpanBatch", "SpanSink",
    "InMemorySink", "DuckDBSink", "OtlpJsonLinesSink", "OtlpProtoFileSink", "OtlpHttpSink", "TeeSink",
    "Clock", "SystemClock", "FakeClock", "IdGenerator", "RandomIds", "SeededIds", "conventions",
    # the store and its read models
    "Store", "DEFAULT_DB", "SCHEMA_VERSION", "Run", "RunTokens", "Span", "SpanEvent", "SpanLink", "StateVersion",
    "StateRead", "Message", "Finding", "IngestResult", "VerifyResult", "FieldChange",
    # OTLP in and out
    "decode_json", "decode_proto", "encode_json", "read_records", "Record", "detect_format",
    "import_file", "expand_paths", "import_history", "import_checkpointer", "langgraph_writes", "checkpoint_snapshots", "checkpointer_requests", "NodeWrite", "safe_url", "CheckpointerError", "history_requests", "run_id_for_thread",
    "derive_trace_state", "classify", "span_facts", "SpanFacts", "Redactor",
    "Receiver", "ReceiverStats", "start_receiver", "serve", "GrpcReceiver", "start_grpc_receiver",
    "StoreSpanExporter",
    # the convention's helper for code agentrace does not run (tracer.otel)
    "otel",
    # trace text for a terminal
    "printable", "json_printable",
    # state documents
    "canonical_json", "chain_hash", "diff", "apply_patch", "field_changes",
    # errors
    "AgentraceError", "StoreError", "StoreLockedError", "SchemaError", "NotFoundError",
    "DecodeError", "DuplicateSpanError", "ChainError",
}  # fmt: skip


def test_public_names_are_pinned() -> None:
    assert set(tracer.__all__) == PUBLIC


def test_every_public_name_resolves() -> None:
    for name in tracer.__all__:
        assert getattr(tracer, name) is not None, name


def test_errors_form_one_tree() -> None:
    for name in ("StoreError", "DecodeError", "ChainError"):
        assert issubclass(getattr(tracer, name), tracer.AgentraceError)
    assert issubclass(tracer.StoreLockedError, tracer.StoreError)
    assert issubclass(tracer.DuplicateSpanError, tracer.DecodeError)
