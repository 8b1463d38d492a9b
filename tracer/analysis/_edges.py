"""Detectors over the declared graph: traffic it does not allow, declarations never used."""

from __future__ import annotations

from .._store._models import Finding
from ._context import RunContext
from ._model import Severity, make_finding

# An edge's span ids go into the finding for the UI to highlight; a busy edge keeps
# its first ones there and its total in the evidence.
_MAX_SPANS = 100
_DECLARABLE = ("handoff", "publish", "deliver")  # compensations are never declared


def detect_undeclared_edges(ctx: RunContext) -> list[Finding]:
    """``undeclared_edge``: traffic on a handoff, publish or deliver edge that the run's
    declared graph does not allow (a rejected attempt counts: it was tried). Only runs
    that declare a graph."""
    if ctx.declared is None:
        return []
    out = []
    for u, v, kind, d in ctx.graph.edges(keys=True, data=True):
        if kind not in _DECLARABLE or d["declared"] or not d["observed"]:
            continue
        outcomes = dict(sorted(d["outcomes"].items()))
        message = (
            f"{kind} {u} → {v} is not in the declared graph, yet was used {d['count']} time(s)"
        )
        agents = [n for n in (u, v) if ctx.graph.nodes[n]["kind"] == "agent"]
        out.append(
            make_finding(
                ctx,
                "undeclared_edge",
                Severity.WARNING,
                message,
                identity=(kind, u, v),
                at_ns=d["first_ns"] or ctx.end_ns,
                agents=agents,
                span_ids=d["span_ids"][:_MAX_SPANS],
                evidence={
                    "edge": kind,
                    "from": u,
                    "to": v,
                    "count": d["count"],
                    "outcomes": outcomes,
                    "first_ns": d["first_ns"],
                    "last_ns": d["last_ns"],
                    "spans": len(d["span_ids"]),
                },
            )
        )
    return out


def detect_unused_edges(ctx: RunContext) -> list[Finding]:
    """``unused_edge``: a declared handoff, publish or subscription that carried nothing in a
    completed run although both its ends were active (the agents acted, the topic carried
    traffic): the run went around the declaration.

    Both ends active keeps the detector quiet about what a single run does not reach: a
    router's branch not taken (its target never ran), a compensation path in a run that
    needed no rollback (its topic stayed silent), everything after the point where a
    failed or compensated run stopped (only completed runs are looked at).
    """
    if ctx.declared is None or ctx.run.status != "completed":
        return []
    g = ctx.graph
    out = []
    for u, v, kind, d in g.edges(keys=True, data=True):
        if kind not in _DECLARABLE or not d["declared"] or d["observed"]:
            continue
        if not (g.nodes[u]["observed"] and g.nodes[v]["observed"]):
            continue
        what = "subscription" if kind == "deliver" else kind
        message = f"declared {what} {u} → {v} was never used, though both ends were active"
        agents = [n for n in (u, v) if g.nodes[n]["kind"] == "agent"]
        out.append(
            make_finding(
                ctx,
                "unused_edge",
                Severity.INFO,
                message,
                identity=(kind, u, v),
                at_ns=ctx.end_ns,
                agents=agents,
                evidence={"edge": kind, "from": u, "to": v},
            )
        )
    return out
