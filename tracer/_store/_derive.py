"""The derive phase: what agentrace works out from stored spans, recomputed per trace.

Spans are stored as they arrived; everything else about a trace is a function of
the spans stored so far, recomputed in the writing transaction for every trace a
batch touches (and, for flows, the traces linked to it). So batch order never
matters: a late batch, a parent after its children, a root first or last, all end
in the same rows.

* the agent of every span: its own (``classify``), else that of the nearest
  enclosing span that has one, else (a plain service on a broker) the service of the
  nearest enclosing producer or consumer span (``service_agent``); and the ``cycle``
  flag of spans that are their own ancestor (treated as roots, so an agent is never
  inherited through a cycle);
* state versions rebuilt from a LangGraph OpenInference trace (``derived =
  'langgraph-trace'``), pointing at the node spans that produced them;
* the flow of each run: the runs joined to it by span links.

A batch of traces the store has never seen holds every span of them, so their
agents and cycles are worked out on the batch before it is written
(:func:`resolve_tree` over the batch's rows); only traces seen before are read
back from the store. Cost follows the traces a batch touches, not the store.
"""

from __future__ import annotations

import contextlib
import itertools
import operator
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa

from .._mapping import classify, service_agent
from .._otlp import KIND_BY_NAME

if TYPE_CHECKING:
    import duckdb

DERIVED_LANGGRAPH_TRACE = "langgraph-trace"
_trace_of = operator.itemgetter(0)
_MESSAGING_KINDS = ("PRODUCER", "CONSUMER")
LANGCHAIN_SCOPE_PREFIX = "openinference.instrumentation.lang"


def resolve_tree(
    parents: Mapping[str, str],
    own: Mapping[str, str | None],
    services: Mapping[str, str] | None = None,
) -> tuple[dict[str, str | None], set[str]]:
    """Each span's agent (its own, else the nearest ancestor's) and the spans in a cycle.

    ``parents`` maps span id to parent span id ('' for a root) and holds every span
    known of the trace; a parent not in it is unknown (not arrived), so the chain stops
    there. A span in a parent cycle is a root: it keeps only its own agent. A span that
    gets no agent so takes the nearest ``services`` entry at or above it (the service of
    a producer or consumer span): weaker than any agent a span inherits.
    """
    if services:
        strong, in_cycle = resolve_tree(parents, own)
        fallback = resolve_tree(parents, services)[0]
        return {sid: a or fallback.get(sid) for sid, a in strong.items()}, in_cycle
    cycle: set[str] = set()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in parents:
        if start in state:
            continue
        path = []
        sid = start
        while sid in parents and sid not in state:
            state[sid] = 1
            path.append(sid)
            sid = parents[sid]
        if state.get(sid) == 1:
            # The walk came back onto its own path: from sid on, every span is its own ancestor.
            cycle.update(path[path.index(sid) :])
        for p in path:
            state[p] = 2
    agents: dict[str, str | None] = {}
    for start in parents:
        if start in agents:
            continue
        path = []
        sid = start
        while True:
            if sid in agents:
                found = agents[sid]
                break
            if sid not in parents:  # a root's '' or a parent that has not arrived
                found = None
                break
            a = own.get(sid)
            if a is not None:
                agents[sid] = found = a
                break
            path.append(sid)
            if sid in cycle:
                found = None
                break
            sid = parents[sid]
        for p in path:
            agents[p] = found
    return agents, cycle


def _cycles(parents: Mapping[str, str]) -> set[str]:
    """The spans of ``parents`` that are their own ancestor.

    Peels the spans no remaining span names as parent until none is left to peel: what
    stays is exactly the cycles. Set operations per level of the tree, so agent traces
    (wide and shallow) cost little; a deep chain falls back to walking it.
    """
    remaining: set[str] = set(parents)
    for _ in range(64):
        referenced = {parents[x] for x in remaining}
        kept = remaining & referenced
        if len(kept) == len(remaining):
            return kept
        remaining = kept
    return resolve_tree({x: parents[x] for x in remaining}, {})[1]


def resolve_batch(rows: list[tuple[Any, ...]], trace_ids: Iterable[str]) -> set[tuple[str, str]]:
    """Fill the agent column (index 17) of the span rows of ``trace_ids`` in place, from
    those rows alone (every span of those traces); returns ``(trace, span)`` of the spans
    in a parent cycle.

    The common case costs a pass over the rows and a few set operations per trace: every
    span that could inherit an agent (one without its own, under a parent) and every
    cycle is found first, and only traces that have some are walked span by span.
    """
    wanted = set(trace_ids)
    parents_of: dict[str, dict[str, str]] = {}
    orphans: dict[str, list[str]] = {}  # spans without an agent of their own, per trace
    services_of: dict[str, dict[str, str]] = {}  # producer/consumer spans' services, per trace
    # A request holds a trace's spans together: a run of rows per trace, read in bulk.
    for tid, run in itertools.groupby(rows, key=_trace_of):
        if tid not in wanted:
            continue
        group = list(run)
        p = {r[1]: r[2] for r in group}
        if tid in parents_of:
            parents_of[tid].update(p)
        else:
            parents_of[tid] = p
        none = [r[1] for r in group if r[17] is None]
        if none:
            orphans.setdefault(tid, []).extend(none)
            for r in group:
                if r[17] is None and r[6] in _MESSAGING_KINDS:
                    service = service_agent(KIND_BY_NAME[r[6]], orjson.loads(r[11]), r[15])
                    if service is not None:
                        services_of.setdefault(tid, {})[r[1]] = service
    slow: dict[str, set[str]] = {}  # trace -> its cycles, for traces walked span by span
    changes: dict[tuple[str, str], tuple[str | None, bool]] = {}
    for tid, parents in parents_of.items():
        cycle = _cycles(parents)
        if cycle or tid in services_of or any(parents[x] in parents for x in orphans.get(tid, ())):
            slow[tid] = cycle
    if not slow:
        return set()
    own_of: dict[str, dict[str, str | None]] = {tid: {} for tid in slow}
    for r in rows:
        own = own_of.get(r[0])
        if own is not None:
            own[r[1]] = r[17]
    for tid, own in own_of.items():
        agents, cycle = resolve_tree(parents_of[tid], own, services_of.get(tid))
        for sid, a in agents.items():
            if a != own[sid] or sid in cycle:
                changes[(tid, sid)] = (a, sid in cycle)
    if changes:
        for i, r in enumerate(rows):
            ch = changes.get((r[0], r[1]))
            if ch is not None and ch[0] != r[17]:
                rows[i] = (*r[:17], ch[0], *r[18:])
    return {k for k, (_, c) in changes.items() if c}


def rederive_stored(
    con: duckdb.DuckDBPyConnection, trace_ids: list[str], *, full: bool = False,
    bulk: bool = False,
) -> None:  # fmt: skip
    """Recompute agents and cycle flags of stored traces (after new spans joined them).

    A new span changes only what lies below it: spans whose parent chain stopped at it
    (it had not arrived), which had no agent then. So the stored ``agent`` column serves
    as each span's own agent (a span that has one keeps it), and only the light columns
    are read. A trace where a cycle appears, or ``full``, is classified again from its
    attributes (a span in a cycle keeps only its own agent, which the column may not say),
    as is one with a producer or consumer span that may hold its service as its agent
    (weaker than an agent a late parent brings, which the column cannot tell).

    ``bulk``: for traces of any size (a file's, cut across many chunks), the common case
    is worked out on arrays (:func:`_rederive_arrays`); what it cannot settle, here.
    """
    if bulk and not full and _rederive_arrays(con, trace_ids):
        return
    rows = con.execute(
        """SELECT trace_id, span_id, parent_span_id, agent, cycle, service_name,
                  kind IN ('PRODUCER', 'CONSUMER') AND coalesce(agent = service_name, true)
           FROM spans WHERE trace_id IN (SELECT unnest($ids))""",
        {"ids": trace_ids},
    ).fetchall()
    by_trace: dict[str, list[tuple[Any, ...]]] = {}
    for r in rows:
        by_trace.setdefault(r[0], []).append(r)
    changed: list[tuple[str, str, str | None, bool, str | None]] = []
    for tid, spans in by_trace.items():
        parents = {r[1]: r[2] for r in spans}
        own: Mapping[str, str | None] = {r[1]: r[3] for r in spans}
        agents, cycle = resolve_tree(parents, own)
        if full or any(r[6] for r in spans) or cycle != {r[1] for r in spans if r[4]}:
            own, services = _classified(con, tid)
            agents, cycle = resolve_tree(parents, own, services)
        for r in spans:
            a, c = agents.get(r[1]), r[1] in cycle
            if a != r[3] or c != bool(r[4]):
                changed.append((tid, r[1], a, c, r[5]))
    if not changed:
        return
    cols = list(zip(*changed, strict=True))
    table = pa.table(
        {
            "trace_id": pa.array(cols[0], pa.string()),
            "span_id": pa.array(cols[1], pa.string()),
            "agent": pa.array(cols[2], pa.string()),
            "cycle": pa.array(cols[3], pa.bool_()),
            "service_name": pa.array(cols[4], pa.string()),
        }
    )
    con.register("_changed", table)
    try:
        _apply_changed(con)
    finally:
        con.unregister("_changed")


def _apply_changed(con: duckdb.DuckDBPyConnection) -> None:
    """Write the agents and cycle flags of ``_changed`` (trace_id, span_id, agent, cycle,
    service_name) to their spans and to the messages taken from them."""
    con.execute(
        """UPDATE spans SET agent = c.agent, cycle = c.cycle FROM _changed c
           WHERE spans.trace_id = c.trace_id AND spans.span_id = c.span_id"""
    )
    # Messages taken from a span carry its agent (or, without one, its service).
    con.execute(
        """UPDATE messages SET agent = coalesce(c.agent, c.service_name) FROM _changed c
           WHERE messages.derived = 'messaging' AND messages.run_id = c.trace_id
             AND messages.span_id = c.span_id"""
    )


def _rederive_arrays(con: duckdb.DuckDBPyConnection, trace_ids: list[str]) -> bool:
    """:func:`rederive_stored` for the common case, on arrays: False (nothing written) when
    a trace has a producer or consumer span that may hold its service as its agent,
    cycles other than those its flags record, or ids not in OTLP's lowercase hex.

    The spans stream out of DuckDB as numbers (row id, the 64-bit words of trace, span
    and parent ids); numpy finds each span's parent by sorting, and both answers of
    :func:`resolve_tree` come from pointer doubling (:mod:`tracer._store._forest`):

    * cycles: ``p^k`` (the k-th ancestor, or -1 past a root or a missing parent) for
      ``k >= n`` is -1 except on or below a cycle, where it lands on the cycle; on a cycle
      it maps the cycle onto itself, one to one. So the spans it lands on are the cycles.
    * agents: a span *stops* the walk up when it has its own agent, is on a cycle or has
      no parent to go to; every other span takes the agent its nearest stop has (its own,
      which may be none). No chain of non-stops loops, as every loop is a cycle.

    Nothing of it is held in DuckDB's memory, so it runs within an import's lowered limit;
    a 10M-span trace costs about a gigabyte of arrays instead of ten million Python rows.
    """
    import duckdb
    import numpy as np
    import pyarrow.compute as pc

    from ._forest import far_ancestors, nearest, on_cycles, parents
    from ._seen import mix

    t = (
        con.sql(
            """SELECT rowid AS rid,
                  TRY_CAST('0x' || trace_id[1:16] AS UBIGINT) AS t1,
                  TRY_CAST('0x' || trace_id[17:32] AS UBIGINT) AS t2,
                  TRY_CAST('0x' || span_id AS UBIGINT) AS s,
                  CASE WHEN parent_span_id = '' THEN 0::UBIGINT
                       ELSE TRY_CAST('0x' || parent_span_id AS UBIGINT) END AS p,
                  parent_span_id = '' AS root,
                  length(trace_id) = 32 AND length(span_id) = 16 AND trace_id = lower(trace_id)
                    AND span_id = lower(span_id) AND parent_span_id = lower(parent_span_id)
                    AND length(parent_span_id) IN (0, 16) AS hex,
                  agent, cycle,
                  kind IN ('PRODUCER', 'CONSUMER') AND coalesce(agent = service_name, true)
                    AS messaging
           FROM spans WHERE trace_id IN (SELECT unnest($ids))""",
            params={"ids": trace_ids},
        )
        .to_arrow_reader()
        .read_all()
    )  # streamed: DuckDB holds none of it
    n = t.num_rows
    if n == 0:
        return True
    ids = ("t1", "t2", "s", "p")
    if (
        not pc.all(t.column("hex")).as_py()
        or any(t.column(c).null_count for c in ids)
        or pc.any(t.column("messaging")).as_py()
    ):
        return False
    t1, t2, s, p = (t.column(c).to_numpy() for c in ids)
    root = t.column("root").to_numpy(zero_copy_only=False)
    parent = parents(mix(t1, t2, s), mix(t1, t2, p), ~root)
    if parent is None:  # two spans with one key: the rows settle it
        return False
    # A key names one span; a parent's key that is another span's by chance is not its parent.
    found = parent.clip(0)
    parent[(t1[found] != t1) | (t2[found] != t2) | (s[found] != p)] = -1
    del t1, t2, s, p, root, found
    rid = t.column("rid").to_numpy()
    codes = pc.dictionary_encode(t.column("agent")).combine_chunks()
    agents = codes.dictionary
    own = pc.fill_null(codes.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    flagged = t.column("cycle").to_numpy(zero_copy_only=False)
    del t, codes
    cycle = on_cycles(far_ancestors(parent))
    if not np.array_equal(cycle, flagged):
        return False
    agent = own[nearest(parent, (own >= 0) | cycle | (parent < 0))]
    changed = np.flatnonzero((own < 0) & (agent >= 0))
    if len(changed) == 0:
        return True
    new = pa.table({"rid": pa.array(rid[changed]), "agent": agents.take(pa.array(agent[changed]))})
    con.register("_rd_new", new)
    try:
        con.execute(
            """CREATE OR REPLACE TEMP TABLE _changed AS
               SELECT s.trace_id, s.span_id, c.agent, s.cycle, s.service_name
               FROM spans s JOIN _rd_new c ON s.rowid = c.rid"""
        )
    finally:
        con.unregister("_rd_new")
    try:
        _apply_changed(con)
    finally:
        # After a failed statement the transaction is aborted, and the table goes with it.
        with contextlib.suppress(duckdb.TransactionException):
            con.execute("DROP TABLE IF EXISTS _changed")
    return True


def _classified(
    con: duckdb.DuckDBPyConnection, trace_id: str
) -> tuple[dict[str, str | None], dict[str, str]]:
    """Each span's own agent, from its name, kind and attributes, and the service of each
    producer or consumer span without one."""
    rows = con.execute(
        """SELECT span_id, parent_span_id, name, kind, attributes, service_name
           FROM spans WHERE trace_id = ?""",
        [trace_id],
    ).fetchall()
    own: dict[str, str | None] = {}
    services: dict[str, str] = {}
    for sid, pid, name, kind, attrs_json, service in rows:
        k, attrs = KIND_BY_NAME.get(kind, 0), orjson.loads(attrs_json)
        own[sid] = agent = classify(name, k, attrs, not pid)[1]
        if agent is None:
            fallback = service_agent(k, attrs, service)
            if fallback is not None:
                services[sid] = fallback
    return own, services


# -- LangGraph state from OpenInference traces ------------------------------------------------


def derive_langgraph(con: duckdb.DuckDBPyConnection, trace_ids: list[str]) -> int:
    """Rebuild the ``langgraph-trace`` state versions of ``trace_ids`` from their stored spans;
    returns how many more versions they have than before (a late batch adds some)."""
    from .._langgraph import trace_versions  # the LangGraph reading lives with its importer

    (before,) = con.execute(
        "SELECT count(*) FROM state_versions WHERE derived = $d AND run_id IN (SELECT unnest($ids))",
        {"d": DERIVED_LANGGRAPH_TRACE, "ids": trace_ids},
    ).fetchall()[0]
    con.execute(
        "DELETE FROM state_versions WHERE derived = $d AND run_id IN (SELECT unnest($ids))",
        {"d": DERIVED_LANGGRAPH_TRACE, "ids": trace_ids},
    )
    rows = con.execute(
        """SELECT trace_id, span_id, parent_span_id, name, start_ns, end_ns, attributes
           FROM spans WHERE trace_id IN (SELECT unnest($ids))
             AND (parent_span_id = '' OR cycle OR json_exists(attributes, '$.metadata'))
             AND starts_with(scope_name, $scope)""",
        {"ids": trace_ids, "scope": LANGCHAIN_SCOPE_PREFIX},
    ).fetchall()
    by_trace: dict[str, list[tuple[Any, ...]]] = {}
    for r in rows:
        by_trace.setdefault(r[0], []).append(r[1:])
    versions: list[tuple[Any, ...]] = []
    for tid in sorted(by_trace):
        versions.extend(trace_versions(tid, by_trace[tid]))
    if versions:
        from ._ingest import SCHEMAS

        schema = SCHEMAS["state_versions"]
        cols = list(zip(*versions, strict=True))
        con.register(
            "_derived_versions",
            pa.Table.from_arrays(
                [pa.array(col, type=f.type) for col, f in zip(cols, schema, strict=True)],
                schema=schema,
            ),
        )
        try:
            con.execute("INSERT INTO state_versions SELECT * FROM _derived_versions")
        finally:
            con.unregister("_derived_versions")
    # A thread whose checkpoints are stored: they, not the rebuilt line, are its state.
    from .._langgraph import join_checkpoints

    join_checkpoints(con, trace_ids)
    return max(0, len(versions) - int(before))


# -- flows -------------------------------------------------------------------------------------


def derive_flows(
    con: duckdb.DuckDBPyConnection,
    trace_ids: Iterable[str],
    pairs: Iterable[tuple[str, str]],
    *,
    around: set[tuple[str, str]] | None = None,
) -> None:
    """Record the cross-trace link ``pairs`` of a batch and give every run joined to one of
    ``trace_ids`` by links (in either direction, any number of hops) its flow's id: the id
    of the flow's first run (earliest start, then lowest id). Runs of the batch that no
    link joins keep their own id, whatever else the batch holds.

    ``around``: the stored links that touch ``trace_ids``, when the caller read them in
    this transaction (:func:`known_and_linked`); used when the batch brings no links of
    its own, saving a statement."""
    pairs = sorted(set(pairs))
    if pairs:
        a, b = zip(*pairs, strict=True)
        con.execute(
            """INSERT INTO trace_links SELECT unnest($a), unnest($b) ON CONFLICT DO NOTHING""",
            {"a": list(a), "b": list(b)},
        )
    seen = set(trace_ids)
    links: set[tuple[str, str]] = set()
    frontier = sorted(seen)
    if around is not None and not pairs:
        links |= around
        frontier = sorted({x for link in around for x in link} - seen)
        seen.update(frontier)
    while frontier:
        rows = con.execute(
            """SELECT trace_id, linked_trace_id FROM trace_links WHERE trace_id IN (SELECT unnest($f))
               UNION SELECT trace_id, linked_trace_id FROM trace_links
               WHERE linked_trace_id IN (SELECT unnest($f))""",
            {"f": frontier},
        ).fetchall()
        links.update((r[0], r[1]) for r in rows)
        new = {x for r in rows for x in r} - seen
        seen |= new
        frontier = sorted(new)
    if not links:
        return
    # The flows: the linked traces in groups joined by links (union-find).
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in links:
        rx, ry = root(x), root(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    members = sorted(parent)
    starts = dict(
        con.execute(
            "SELECT run_id, start_ns FROM runs WHERE run_id IN (SELECT unnest($ids))",
            {"ids": members},
        ).fetchall()
    )
    first: dict[str, tuple[int, str]] = {}
    for m in members:
        if m in starts:
            key = (starts[m], m)
            r = root(m)
            if r not in first or key < first[r]:
                first[r] = key
    ids = [m for m in members if m in starts]
    con.execute(
        """UPDATE runs SET flow_id = f.flow_id
           FROM (SELECT unnest($ids) AS run_id, unnest($flows) AS flow_id) f
           WHERE runs.run_id = f.run_id""",
        {"ids": ids, "flows": [first[root(m)][1] for m in ids]},
    )


def known_and_linked(
    con: duckdb.DuckDBPyConnection, trace_ids: Iterable[str]
) -> tuple[list[str], set[tuple[str, str]]]:
    """The traces among ``trace_ids`` that the store already has, and the stored links that
    touch them: one statement, as a small batch's writes begin with both."""
    known: list[str] = []
    links: set[tuple[str, str]] = set()
    for a, b in con.execute(
        """SELECT run_id, NULL FROM runs WHERE run_id IN (SELECT unnest($ids))
           UNION ALL SELECT trace_id, linked_trace_id FROM trace_links
           WHERE trace_id IN (SELECT unnest($ids))
           UNION ALL SELECT trace_id, linked_trace_id FROM trace_links
           WHERE linked_trace_id IN (SELECT unnest($ids))""",
        {"ids": sorted(trace_ids)},
    ).fetchall():
        if b is None:
            known.append(a)
        else:
            links.add((a, b))
    return sorted(known), links
