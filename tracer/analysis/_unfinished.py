"""A detector over the bus: consumers that did their work and died before finishing it."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

from .. import conventions as c
from .._store._models import Finding
from ._context import HANDLED_FATES, DeliveryRow, RunContext, json_or_text
from ._model import Severity, fmt_list, make_finding


@dataclass(slots=True)
class _Below:
    """What happened under one ``process`` span."""

    versions: list[int] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    steps: list[tuple[str, str]] = field(
        default_factory=list
    )  # (span_id, name) ended without error
    published: set[str] = field(default_factory=set)  # destinations published to


def _below(ctx: RunContext, roots: list[DeliveryRow]) -> dict[str, _Below]:
    """For each delivery span of ``roots``: the state committed, the steps run and the
    messages published by it or any span below it (in whichever trace of the flow it is)."""
    out: dict[str, _Below] = collections.defaultdict(_Below)
    ids = sorted({d.span_id for d in roots})
    if not ids:
        return out
    flow = ctx.flow_runs
    rows = ctx.store.sql(
        """WITH RECURSIVE sub(tid, root, span_id) AS (
               SELECT trace_id, span_id, span_id FROM spans
               WHERE trace_id IN (SELECT unnest($flow)) AND span_id IN (SELECT unnest($ids))
               UNION ALL
               SELECT sub.tid, sub.root, s.span_id FROM spans s
               JOIN sub ON s.trace_id = sub.tid AND s.parent_span_id = sub.span_id)
           SELECT sub.root, s.span_id, s.name, s.kind, s.status_code, s.operation,
                  (SELECT list(v.version ORDER BY v.version) FROM state_versions v
                   WHERE v.run_id = sub.tid AND v.span_id = s.span_id AND v.kind = 'commit'),
                  (SELECT list(DISTINCT k) FROM state_versions v, unnest(v.keys) AS u(k)
                   WHERE v.run_id = sub.tid AND v.span_id = s.span_id AND v.kind = 'commit'),
                  (SELECT any_value(m.topic) FROM messages m
                   WHERE m.run_id = sub.tid AND m.span_id = s.span_id AND m.event = 'publish')
           FROM sub JOIN spans s ON s.trace_id = sub.tid AND s.span_id = sub.span_id
           ORDER BY s.start_ns, s.span_id""",
        {"flow": flow, "ids": ids},
    ).fetchall()
    foreign = not ctx.is_agentrace
    for root, sid, name, kind, status, op, versions, keys, topic in rows:
        b = out[root]
        b.versions.extend(versions or ())
        b.keys.update(keys or ())
        if topic is not None or kind == "PRODUCER":
            b.published.add(topic or name)
        # Our engine's work is its agent steps; a foreign consumer's, any span below it
        # that is not messaging and completed (a query, a call, a model).
        elif (
            sid != root
            and status != "ERROR"
            and (op == c.OP_INVOKE_AGENT or (foreign and kind not in ("PRODUCER", "CONSUMER")))
        ):
            b.steps.append((sid, name))
    return out


def _unpublished(ctx: RunContext, span_ids: list[str]) -> dict[str, list[str]]:
    """The topics our engine recorded as staged and never published, by delivery span."""
    rows = ctx.store.sql(
        """SELECT span_id, attributes FROM spans
           WHERE trace_id IN (SELECT unnest($flow)) AND span_id IN (SELECT unnest($ids))""",
        {"flow": ctx.flow_runs, "ids": span_ids},
    ).fetchall()
    out = {}
    for sid, attrs in rows:
        value = json_or_text(attrs)
        topics = value.get(c.MESSAGE_UNPUBLISHED) if isinstance(value, dict) else None
        if isinstance(topics, list):
            out[sid] = [str(t) for t in topics]
    return out


def detect_unfinished_consumers(ctx: RunContext) -> list[Finding]:
    """``unfinished_consumer``: a consumer that did its work (committed state, or completed a
    step) and died before publishing what followed from it or acking, and no later delivery
    of the message to its group finished the job.

    Died: in a run of our engine, a delivery never acked that ended in error (what an
    injected ``crash`` records, with the topics it had staged in
    ``agentrace.message.unpublished``); in a foreign trace, which records no acks, a
    consumer span that ended in error having published nothing. What it never published
    is, for our engine, what it had staged; for a foreign trace, the destinations that the
    group's consumers of that topic publish to when they complete.
    """
    if not ctx.heads_flow:
        return []
    deliveries = ctx.deliveries
    foreign = not ctx.is_agentrace
    died = [d for d in deliveries if d.ack is None and d.error and d.message_id is not None]
    if not died:
        return []
    finished: dict[tuple[str | None, str, str], list[DeliveryRow]] = collections.defaultdict(list)
    for d in deliveries:
        if d.message_id is not None and d.fate in HANDLED_FATES:
            finished[(d.topic, d.message_id, d.group_key)].append(d)
    died = [
        d
        for d in died
        if not any(
            x.start_ns >= d.start_ns and x.span_id != d.span_id
            for x in finished.get((d.topic, d.message_id or "", d.group_key), ())
        )
    ]
    topics = {(d.topic, d.group_key) for d in died}
    peers = [
        d for d in deliveries if foreign and d.fate == "ok" and (d.topic, d.group_key) in topics
    ]
    below = _below(ctx, [*died, *peers])
    staged = _unpublished(ctx, [d.span_id for d in died]) if not foreign else {}
    expected: dict[tuple[str | None, str], set[str]] = collections.defaultdict(set)
    for p in peers:
        expected[(p.topic, p.group_key)].update(below[p.span_id].published)
    out = []
    for d in died:
        b = below[d.span_id]
        if not b.versions and not b.steps:
            continue  # it died before doing anything: a redelivery or lost_event's business
        if foreign and b.published:
            continue  # it got its message out; without acks nothing says it did not finish
        never = (
            staged.get(d.span_id, []) if not foreign else sorted(expected[(d.topic, d.group_key)])
        )
        who = d.agent or d.consumer or d.group_key or "a consumer"
        did = []
        if b.versions:
            did.append(f"committed v{', v'.join(map(str, b.versions))}")
        if b.steps:
            did.append(f"ran {fmt_list(dict.fromkeys(n for _, n in b.steps))}")
        missing = f"never published to {fmt_list(never)}" if never else "published nothing"
        ending = " and never acked it" if not foreign else ""
        message = (
            f"{who} handled message {d.message_id} on {d.topic or '?'} ({' and '.join(did)}), "
            f"then died: it {missing}{ending}, and no later delivery finished it"
        )
        evidence: dict[str, Any] = {
            "message_id": d.message_id,
            "topic": d.topic,
            "group": d.group,
            "consumer": d.consumer,
            "agent": d.agent,
            "attempt": d.attempt,
            "fault": d.fault,
            "process_span_id": d.span_id,
            "versions": b.versions,
            "keys": sorted(b.keys),
            "steps": [{"span_id": s, "name": n} for s, n in b.steps],
            "never_published": never,
            "published": sorted(b.published),
            "acked": False if not foreign else None,
        }
        out.append(
            make_finding(
                ctx,
                "unfinished_consumer",
                Severity.ERROR,
                message,
                identity=(d.topic, d.message_id, d.group_key, d.span_id),
                at_ns=d.end_ns,
                agents=(d.agent or d.consumer,),
                versions=b.versions,
                span_ids=(d.span_id, *(s for s, _ in b.steps)),
                evidence=evidence,
            )
        )
    return out
