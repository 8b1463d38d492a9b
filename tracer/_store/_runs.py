"""The ``runs`` rows of a batch of new traces, worked out here rather than in SQL.

A receiver's group commit of a few requests holds dozens to thousands of spans of
traces the store has never seen. The ``runs`` rows of such traces follow from the batch
alone; :meth:`Store._refresh_runs` computes them with one SQL statement whose
planning and fixed per-operator costs (about 13 ms on two cores) dwarf the rows
themselves. :func:`runs_table` computes the same rows in Python over the batch's
Arrow ``spans`` table (after redaction, as the SQL reads it) in well under a
millisecond for such batches, and the store inserts them in one statement.

The rules are the SQL's, to the byte (tests/store compare both paths):

* root: among the spans without a parent or in a cycle, the first by
  ``(start_ns, span_id)``; its attributes give the workflow name, pattern,
  status, parent run, workflow reference and scenario (``->>``: a string value,
  or NULL when the key is absent or null);
* first span: the first by ``(start_ns, has a parent, span_id)``, for the run's
  status, name and service name (its first non-NULL service name, as DuckDB's
  ``arg_min`` skips NULLs);
* agents: the distinct non-NULL agents, sorted by code point;
* handled errors: error spans (not in a cycle) whose parent in the trace did
  not end in error.

A batch this module cannot match exactly is left to the SQL (None): a root
attribute read by ``->>`` that is neither a string nor null (DuckDB prints
numbers its own way), or state versions of a run outside the batch's traces.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
import pyarrow as pa

# Above this many spans the SQL statement does the batch (its rows in Python would be a
# large transient). Measured on two cores, Python is the faster up to the writer's largest
# batch (50,000 spans): 4,096 spans of 8 receiver requests cost 22 ms in SQL (staging
# the batch and the statement), 5 ms here.
MAX_SPANS: Final = 50_000

_ROOT_KEYS: Final = (
    "gen_ai.workflow.name",
    "agentrace.run.pattern",
    "agentrace.run.status",
    "agentrace.run.parent",
    "agentrace.run.workflow_ref",
    "agentrace.run.scenario",
)
_COLUMNS: Final = (
    "trace_id", "span_id", "parent_span_id", "name", "start_ns", "end_ns", "status_code",
    "service_name", "agent", "attributes", "cycle",
)  # fmt: skip

SCHEMA: Final = pa.schema(
    [
        ("run_id", pa.string()),
        ("workflow", pa.string()),
        ("pattern", pa.string()),
        ("status", pa.string()),
        ("service_name", pa.string()),
        ("root_span_id", pa.string()),
        ("root_name", pa.string()),
        ("start_ns", pa.int64()),
        ("end_ns", pa.int64()),
        ("span_count", pa.int64()),
        ("error_count", pa.int64()),
        ("agents", pa.list_(pa.string())),
        ("version_count", pa.int64()),
        ("parent_run_id", pa.string()),
        ("workflow_ref", pa.string()),
        ("scenario", pa.string()),
        ("attributes", pa.string()),
        ("handled_error_count", pa.int64()),
        ("flow_id", pa.string()),
        ("analysed_ns", pa.int64()),
    ]
)


class _Run:
    __slots__ = (
        "agents",
        "end",
        "errors",
        "first",
        "first_key",
        "n",
        "root",
        "root_key",
        "service",
        "service_key",
        "spans",
        "start",
    )  # fmt: skip

    def __init__(self) -> None:
        self.n = 0
        self.errors = 0
        self.start: int | None = None
        self.end: int | None = None
        self.root: tuple[Any, ...] | None = None
        self.root_key: tuple[int, str] | None = None
        self.first: tuple[Any, ...] | None = None
        self.first_key: tuple[int, bool, str] | None = None
        self.service: str | None = None
        self.service_key: tuple[int, bool, str] | None = None
        self.agents: set[str] = set()
        self.spans: dict[str, tuple[str, str, bool]] = {}  # span id -> parent, status, cycle


def runs_table(
    spans: pa.Table, versions: pa.Table | None, trace_ids: frozenset[str] | set[str]
) -> pa.Table | None:
    """The ``runs`` rows of ``trace_ids``, every span of which is in ``spans``; None when
    the batch is one the SQL must do (see the module docstring)."""
    if spans.num_rows > MAX_SPANS:
        return None
    counts: dict[str, int] = {}
    if versions is not None and versions.num_rows:
        for run_id in versions.column("run_id").to_pylist():
            if run_id not in trace_ids:
                return None
            counts[run_id] = counts.get(run_id, 0) + 1
    cols = [spans.column(c).to_pylist() for c in _COLUMNS]
    runs: dict[str, _Run] = {}
    for trace, span, parent, name, start, end, status, service, agent, attrs, cycle in zip(
        *cols, strict=True
    ):
        if trace not in trace_ids:
            continue
        run = runs.get(trace)
        if run is None:
            run = runs[trace] = _Run()
        run.n += 1
        if status == "ERROR":
            run.errors += 1
        if run.start is None or start < run.start:
            run.start = start
        if run.end is None or end > run.end:
            run.end = end
        if agent is not None:
            run.agents.add(agent)
        if parent == "" or cycle:
            rkey = (start, span)
            if run.root_key is None or rkey < run.root_key:
                run.root_key, run.root = rkey, (span, name, attrs, status)
        fkey = (start, parent != "", span)
        if run.first_key is None or fkey < run.first_key:
            run.first_key, run.first = fkey, (span, name, status)
        if service is not None and (run.service_key is None or fkey < run.service_key):
            run.service_key, run.service = fkey, service
        run.spans[span] = (parent, status, bool(cycle))
    rows: list[tuple[Any, ...]] = []
    for trace in sorted(runs):
        run = runs[trace]
        assert run.first is not None
        first_span, first_name, first_status = run.first
        values: dict[str, str | None] = {}
        root_span = root_name = root_attrs = root_status = None
        if run.root is not None:
            root_span, root_name, root_attrs, root_status = run.root
            parsed = orjson.loads(root_attrs)
            if not isinstance(parsed, dict):
                return None
            for key in _ROOT_KEYS:
                value = parsed.get(key)
                if value is not None and not isinstance(value, str):
                    return None
                values[key] = value
        handled = 0
        for parent, status, cycle in run.spans.values():
            if status == "ERROR" and not cycle:
                p = run.spans.get(parent)
                if p is not None and p[1] != "ERROR":
                    handled += 1
        rows.append(
            (
                trace,
                _coalesce(values.get("gen_ai.workflow.name"), root_name, first_name),
                _coalesce(values.get("agentrace.run.pattern"), "imported"),
                _coalesce(
                    values.get("agentrace.run.status"),
                    _coalesce(root_status, first_status).lower(),
                ),
                run.service,
                _coalesce(root_span, first_span),
                _coalesce(root_name, first_name),
                run.start,
                run.end,
                run.n,
                run.errors - handled,
                sorted(run.agents),
                counts.get(trace, 0),
                values.get("agentrace.run.parent"),
                values.get("agentrace.run.workflow_ref"),
                values.get("agentrace.run.scenario"),
                _coalesce(root_attrs, "{}"),
                handled,
                trace,
                None,
            )
        )
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in SCHEMA]
    return pa.Table.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(columns, SCHEMA, strict=True)],
        schema=SCHEMA,
    )


def _coalesce(*values: Any) -> Any:
    for v in values:
        if v is not None:
            return v
    return None
