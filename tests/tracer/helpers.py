"""Building small recorded runs for the tracer's own tests."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import tracer as t


def record_run(
    sink: t.SpanSink, *, seed: int = 7, versions: int = 3, batch_size: int = 1024
) -> str:
    """A two-step run with ``versions`` state versions, a read, a link; returns its run id."""
    rec = t.Recorder(
        sink,
        clock=t.FakeClock(tick_ns=1_000),
        ids=t.SeededIds(seed),
        batch_size=batch_size,
        snapshot_every=2,
    )
    root = rec.start_span(
        "invoke_workflow demo",
        attributes={"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": "demo",
                    "agentrace.run.pattern": "orchestration", "agentrace.run.status": "completed",
                    "ratio": 0.5, "tags": ["a", "b"], "nested": {"k": 1}},
    )  # fmt: skip
    prev: Any = None
    prev_hash = ""
    with rec.start_span(
        "invoke_agent writer", parent=root, attributes={"gen_ai.agent.name": "writer"}
    ) as step:
        for v in range(1, versions + 1):
            doc = {"count": v, "items": list(range(v)), "meta": {"by": "writer"}}
            h = t.chain_hash(prev_hash, doc)
            step.commit_state(
                version=v, snapshot=doc, hash=h, parent_snapshot=prev, parent_version=v - 1 or None,
                base_version=v - 1 or None, kind="initial" if v == 1 else "commit", agent="writer",
            )  # fmt: skip
            prev, prev_hash = doc, h
    with rec.start_span(
        "invoke_agent reader", parent=root, attributes={"gen_ai.agent.name": "reader"}
    ) as step:
        step.record_read(
            version=1,
            keys=["count"],
            via="cache",
            head_version=versions,
            cache="c1",
            agent="reader",
        )
        step.add_link(root.context, {"why": "test"})
        step.set_status("error", "boom")
    root.end()
    rec.close()
    return root.trace_id


def spans_of(req: ExportTraceServiceRequest) -> list[Any]:
    return [sp for rs in req.resource_spans for ss in rs.scope_spans for sp in ss.spans]


def spans_store(rows: list[dict[str, Any]], flags: dict[tuple[str, str], bool]) -> t.Store:
    """A store in memory holding ``rows`` as spans (the columns a test names; ``start_ns``
    0 unless given), each with its ``flags`` cycle flag, and a message taken from each
    producer span."""
    store = t.Store(":memory:")
    con = store._cur()
    table = pa.Table.from_pylist(
        [{"start_ns": 0, **r, "cycle": flags[(r["trace_id"], r["span_id"])]} for r in rows]
    )
    con.register("_rows", table)
    con.execute(
        """INSERT INTO spans BY NAME
           SELECT trace_id, span_id, parent_span_id, '' AS trace_state, 0 AS flags, name, kind,
                  start_ns, start_ns + 1 AS end_ns, 'UNSET' AS status_code, '' AS status_message,
                  '{}' AS attributes, '{}' AS resource, 's' AS scope_name, '' AS scope_version,
                  service_name, NULL AS operation, agent, 0 AS dropped_attributes_count,
                  0 AS dropped_events_count, 0 AS dropped_links_count, cycle
           FROM _rows"""
    )
    con.execute(
        """INSERT INTO messages BY NAME
           SELECT trace_id AS run_id, span_id, -1 AS seq, 'publish' AS event, agent,
                  0 AS time_ns, 'messaging' AS derived
           FROM _rows WHERE kind = 'PRODUCER'"""
    )
    con.unregister("_rows")
    return store
