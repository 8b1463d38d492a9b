"""Building small recorded runs for the tracer's own tests."""

from __future__ import annotations

from typing import Any

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
