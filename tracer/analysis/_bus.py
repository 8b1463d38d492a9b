"""Detectors over the bus: messages processed twice, messages never handled."""

from __future__ import annotations

import collections
from typing import Any

from .._store._models import Finding
from ._context import DeliveryRow, RunContext
from ._model import Severity, fmt_list, make_finding


def _delivery(
    d: DeliveryRow, effects: list[tuple[int, tuple[str, ...]]] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "span_id": d.span_id,
        "group": d.group,
        "consumer": d.consumer,
        "agent": d.agent,
        "attempt": d.attempt,
        "ack": d.ack,
        "fault": d.fault,
        "fate": d.fate,
        "start_ns": d.start_ns,
    }
    if effects is not None:
        out["versions"] = [v for v, _ in effects]
        out["keys"] = sorted({k for _, ks in effects for k in ks})
    return out


def detect_duplicate_deliveries(ctx: RunContext) -> list[Finding]:
    """``duplicate_delivery``: one message processed more than once by the same consumer group.

    Processed: acked, or committed state whatever the ack (an effect applied, then a
    crash before the ack, then a redelivery is the classic case); in a foreign trace,
    which records no acks, a process span that completed without error. A consumer that
    notices and acks ``duplicate`` did its job: no finding. Where two or more processings
    committed state the effect was applied twice: ``error``; otherwise ``warning``.
    """
    if not ctx.heads_flow:
        return []  # the flow's bus is analysed in its first run
    dups = ctx.message_fates.duplicates
    if not dups:
        return []
    effects = ctx.message_fates.effects
    out = []
    for (topic, message_id, group), ds in dups:
        applied = [d for d in ds if effects.get(d.span_id)]
        twice = len(applied) > 1
        key_counts = collections.Counter(
            k for d in applied for k in {k for _, ks in effects[d.span_id] for k in ks}
        )
        repeated = sorted(k for k, n in key_counts.items() if n > 1)
        versions = [v for d in applied for v, _ in effects[d.span_id]]
        message = (
            f"message {message_id} on {topic or '?'} was processed {len(ds)} times by group {group}"
        )
        if twice:
            message += (
                f": its effect was applied {len(applied)} times (v{', v'.join(map(str, versions))})"
            )
        else:
            message += "; no second effect is visible in the state"
        second = ds[1]
        out.append(
            make_finding(
                ctx,
                "duplicate_delivery",
                Severity.ERROR if twice else Severity.WARNING,
                message,
                identity=(topic, message_id, group),
                at_ns=second.start_ns,
                agents=[d.agent or d.consumer for d in ds],
                versions=versions,
                span_ids=[d.span_id for d in ds],
                evidence={
                    "message_id": message_id,
                    "topic": topic,
                    "group": group,
                    "times": len(ds),
                    "effect_applied_twice": twice,
                    "repeated_keys": repeated,
                    "processings": [_delivery(d, effects.get(d.span_id, [])) for d in ds],
                },
            )
        )
    return out


def detect_lost_events(ctx: RunContext) -> list[Finding]:
    """``lost_event``: a message published and, by the end of the run, never handled (acked,
    seen as a duplicate, or dead-lettered) by one of the topic's subscribers.

    Subscribers are the declared subscriptions, or for runs that declare none the
    groups seen consuming the topic anywhere in the run's flow (the runs joined to it by
    span links). In a foreign trace, a message on a destination nobody was seen
    consuming, and never delivered, is lost too: published and never consumed.
    """
    if not ctx.heads_flow:
        return []
    out = []
    for lost in ctx.message_fates.lost:
        p = lost.publish
        ds = lost.deliveries
        theirs = [d for d in ds if any(d.serves(s) for s in lost.missing)]
        if not theirs:
            how = "never delivered to them"
        else:
            fates = collections.Counter(d.ack or d.fate for d in theirs)
            how = "delivered " + ", ".join(f"{n}× {f}" for f, n in sorted(fates.items()))
        by = p.agent or "an unknown publisher"
        if lost.missing:
            message = (
                f"message {p.message_id} on {p.topic} published by {by} "
                f"was never handled by {fmt_list(lost.missing)} ({how})"
            )
        else:
            message = (
                f"message {p.message_id} on {p.topic} published by {by} was never consumed: "
                "no consumer of it, or of anything else on that destination, was recorded"
            )
        out.append(
            make_finding(
                ctx,
                "lost_event",
                Severity.ERROR,
                message,
                identity=(p.topic, p.message_id),
                at_ns=ctx.end_ns,
                agents=(p.agent, *lost.missing),
                span_ids=(p.span_id, *(d.span_id for d in ds)),
                evidence={
                    "message_id": p.message_id,
                    "topic": p.topic,
                    "key": p.key,
                    "publisher": p.agent,
                    "published_ns": p.time_ns,
                    "publish_span_id": p.span_id,
                    "missing_subscribers": list(lost.missing),
                    "run_end_ns": ctx.end_ns,
                    "deliveries": [_delivery(d) for d in ds],
                    "deliveries_to_missing": [d.span_id for d in theirs],
                },
            )
        )
    return out
