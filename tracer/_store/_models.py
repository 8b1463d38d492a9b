"""Immutable read models handed out by the read API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Run:
    run_id: str
    workflow: str | None
    pattern: str | None
    status: str | None
    service_name: str | None
    root_span_id: str | None
    start_ns: int
    end_ns: int
    span_count: int
    error_count: int
    agents: tuple[str, ...]
    version_count: int
    finding_count: int
    parent_run_id: str | None
    workflow_ref: str | None
    scenario: str | None
    attributes: dict[str, Any] = field(default_factory=dict, compare=False)
    handled_error_count: int = 0  # ERROR spans whose parent ended without error (caught)
    flow_id: str | None = None  # the first run of the runs joined to this one by span links
    # When its findings were stored (a wall-clock time, not part of the run's equality);
    # None: not analysed since it last changed.
    analysed_ns: int | None = field(default=None, compare=False)

    @property
    def analysed(self) -> bool:
        """Analysis ran since the run last changed (``finding_count`` 0 then means none found)."""
        return self.analysed_ns is not None

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)


@dataclass(frozen=True, slots=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status_code: str
    status_message: str
    attributes: dict[str, Any]
    service_name: str | None
    operation: str | None
    agent: str | None
    resource: dict[str, Any] = field(default_factory=dict, compare=False)
    scope_name: str = ""
    scope_version: str = ""
    trace_state: str = ""
    flags: int = 0
    dropped_attributes_count: int = 0
    dropped_events_count: int = 0
    dropped_links_count: int = 0
    scope_attributes: dict[str, Any] = field(default_factory=dict, compare=False)
    scope_dropped_attributes_count: int = 0
    scope_schema_url: str = ""
    resource_dropped_attributes_count: int = 0
    resource_schema_url: str = ""
    resource_entity_refs: tuple[dict[str, Any], ...] = field(default=(), compare=False)
    cycle: bool = False  # its parent chain leads back to it: every view treats it as a root

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def is_error(self) -> bool:
        return self.status_code == "ERROR"


@dataclass(frozen=True, slots=True)
class SpanEvent:
    trace_id: str
    span_id: str
    seq: int
    time_ns: int
    name: str
    attributes: dict[str, Any]
    dropped_attributes_count: int = 0


@dataclass(frozen=True, slots=True)
class SpanLink:
    trace_id: str
    span_id: str
    seq: int
    linked_trace_id: str
    linked_span_id: str
    trace_state: str
    flags: int
    attributes: dict[str, Any]
    dropped_attributes_count: int = 0


@dataclass(frozen=True, slots=True)
class StateVersion:
    """One immutable version of a run's state (without its document: see ``Store.state_at``)."""

    run_id: str
    version: int
    parent_version: int | None
    base_version: int | None
    kind: str
    agent: str | None
    span_id: str
    committed_ns: int
    hash: str | None
    keys: tuple[str, ...]
    source: str | None
    derived: str | None = None  # None: recorded by its producer; else the deriver's name
    step: int | None = None  # the super-step that wrote it, when known


@dataclass(frozen=True, slots=True)
class StateRead:
    run_id: str
    span_id: str
    seq: int
    agent: str | None
    version: int
    head_version: int | None
    keys: tuple[str, ...]
    via: str
    cache: str | None
    read_ns: int
    derived: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    run_id: str
    span_id: str
    seq: int
    event: str
    message_id: str | None
    topic: str | None
    msg_key: str | None
    consumer_group: str | None
    consumer: str | None
    agent: str | None
    attempt: int | None
    outcome: str | None
    fault: str | None
    time_ns: int
    derived: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    run_id: str
    finding_id: str
    kind: str
    severity: str
    message: str
    agents: tuple[str, ...] = ()
    versions: tuple[int, ...] = ()
    span_ids: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict, compare=False)
    detected_ns: int = 0


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one ingest transaction stored."""

    runs: int = 0
    spans: int = 0
    skipped: int = 0  # spans already in the store (or repeated in the input) with the same content
    versions: int = 0
    requests: int = 0
    errors: tuple[str, ...] = ()  # bad records skipped under --skip-bad
    run_ids: frozenset[str] = field(default=frozenset(), compare=False)  # the runs touched

    def __add__(self, other: IngestResult) -> IngestResult:
        # A run touched by both counts once; counts without ids behind them are added.
        ids = self.run_ids | other.run_ids
        runs = len(ids) + (self.runs - len(self.run_ids)) + (other.runs - len(other.run_ids))
        return IngestResult(
            runs, self.spans + other.spans, self.skipped + other.skipped,
            self.versions + other.versions, self.requests + other.requests,
            self.errors + other.errors, ids,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class VerifyResult:
    run_id: str
    versions: int
    ok: bool
    first_bad_version: int | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class RunTokens:
    """The input and output tokens of a run's model calls, in all, by agent and by model
    (each ``(input, output)``)."""

    input: int = 0
    output: int = 0
    by_agent: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    by_model: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.input + self.output
