"""``lost_update`` in a super-step: parallel nodes that wrote one key from the same base.

LangGraph runs the nodes of a super-step in parallel, all on the state of the
checkpoint before the step, and applies their writes together through each key's
reducer. When two of them write one key and the reducer keeps one value (a last-value
reducer, or any reducer whose result equals one of the writes), the other writes are
lost without a trace in the state. A reducer that merges (``operator.add``,
``add_messages``) keeps every write: its result equals none of them, no finding.

What a step is, from what was recorded:

* a checkpointer import or a ``get_state_history`` dump: the node spans under one
  checkpoint's span (scope ``agentrace.langgraph``, ``agentrace.agent.step``), each
  with the update it wrote (``agentrace.agent.output``); the base is that version's
  base, the survivor that version;
* an OpenInference trace: node spans under one parent with one ``langgraph_step`` in
  their ``metadata``, each with its update (``output.value``, a plain map or a
  ``Command``'s ``update``); the base and survivor are the state versions of that
  step (``state_versions.step``, from the checkpoints when they joined the trace) or
  derived on those spans (the oldest base, the newest version).

The values are compared as stored (canonical JSON).
"""

from __future__ import annotations

import collections
from typing import Any

import orjson

from .._langgraph import NodeWrite, langgraph_writes
from .._store._models import Finding
from ._context import RunContext
from ._model import Severity, clip, fmt_list, make_finding
from ._state_bugs import detect_lost_updates, values_at


def _step_versions(ctx: RunContext, group: list[NodeWrite]) -> tuple[int, int] | None:
    """(base, survivor) versions of a step, or None when the run has no versions for it."""
    if group[0].from_checkpoint:
        q = """SELECT min(coalesce(base_version, version - 1)), max(version) FROM state_versions
               WHERE run_id = $run AND span_id = $parent"""
        params: dict[str, Any] = {"run": ctx.run_id, "parent": group[0].parent_span_id}
    else:
        # Versions of that super-step, or derived on the node spans (or on spans under them).
        q = """SELECT min(coalesce(base_version, version - 1)), max(version) FROM state_versions
               WHERE run_id = $run AND (step = $step OR span_id IN (SELECT unnest($ids)) OR span_id IN (
                   SELECT span_id FROM spans WHERE trace_id = $run
                   AND parent_span_id IN (SELECT unnest($ids))))"""
        params = {"run": ctx.run_id, "ids": [w.span_id for w in group], "step": group[0].step}
    row = ctx.store.sql(q, params).fetchone()
    if row is None or row[0] is None or row[1] is None:
        return None
    return int(row[0]), int(row[1])


def detect_parallel_lost_updates(ctx: RunContext) -> list[Finding]:
    """``lost_update`` among the parallel nodes of a LangGraph super-step (see the module)."""
    if ctx.present.versions < 2:
        return []
    groups: dict[tuple[str, int], list[NodeWrite]] = collections.defaultdict(list)
    for w in langgraph_writes(ctx.store, ctx.run_id):
        if not w.update:
            continue
        groups[(w.parent_span_id, w.step)].append(w)
    # (base, survivor, step, key, writes of that key)
    cases: list[tuple[int, int, int, str, list[tuple[NodeWrite, Any]]]] = []
    for (_, step), group in sorted(groups.items(), key=lambda g: (g[0][1], g[0][0])):
        if len({w.node for w in group}) < 2:
            continue
        by_key: dict[str, list[tuple[NodeWrite, Any]]] = collections.defaultdict(list)
        for w in sorted(group, key=lambda w: (w.start_ns, w.node)):
            for k, v in w.update.items():
                by_key[k].append((w, v))
        shared = {k: ws for k, ws in by_key.items() if len({w.node for w, _ in ws}) > 1}
        if not shared:
            continue
        versions = _step_versions(ctx, group)
        if versions is None:
            continue
        for k, ws in sorted(shared.items()):
            cases.append((versions[0], versions[1], step, k, ws))
    if not cases:
        return []
    wants: dict[int, set[str]] = collections.defaultdict(set)
    for base, surv, _, k, _ in cases:
        wants[base].add(k)
        wants[surv].add(k)
    values = values_at(ctx, wants)
    out = []
    for base, surv, step, key, ws in cases:
        if surv not in values or key not in values[surv]:
            continue
        survivor = values[surv][key]
        written = [(w, clip(v)) for w, v in ws]
        distinct = {orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for _, v in written}
        if len(distinct) < 2:
            continue  # every node wrote the same value: nothing is lost
        kept = [w for w, v in written if v == survivor]
        if not kept:
            continue  # the reducer merged the writes (add, append): every write counts
        lost = [(w, v) for w, v in written if v != survivor]
        base_value = values.get(base, {}).get(key)
        nodes = [w.node for w, _ in written]
        message = (
            f"{fmt_list(nodes)} wrote {key!r} in parallel in super-step {step}, from v{base}; "
            f"v{surv} kept {kept[0].node}'s value: the write of {fmt_list(w.node for w, _ in lost)} is lost"
        )
        evidence: dict[str, Any] = {
            "step": step,
            "key": key,
            "base_version": base,
            "survivor_version": surv,
            "values": {
                "base": base_value,
                "writes": [{"node": w.node, "span_id": w.span_id, "value": v} for w, v in written],
                "survivor": survivor,
            },
            "kept_by": kept[0].node,
            "lost_by": [w.node for w, _ in lost],
            "reducer": "keeps one value (last value)",
            # The names the engine's lost_update uses, so one table shows both kinds.
            "keys": [key],
            "overwriting_version": surv,
            "overwritten_by": kept[0].node,
        }
        out.append(
            make_finding(
                ctx,
                "lost_update",
                Severity.ERROR,
                message,
                identity=("superstep", step, key, *sorted(w.span_id for w, _ in written)),
                at_ns=max(w.end_ns for w, _ in written),
                agents=(*(w.node for w, _ in lost), kept[0].node),
                versions=(base, surv),
                span_ids=tuple(w.span_id for w, _ in written),
                evidence=evidence,
            )
        )
    return out


def detect_all_lost_updates(ctx: RunContext) -> list[Finding]:
    """Both kinds of ``lost_update``: a commit on a stale base, and a super-step's lost writes."""
    return detect_lost_updates(ctx) + detect_parallel_lost_updates(ctx)
