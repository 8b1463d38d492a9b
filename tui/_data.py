"""What the debugger shows, read from the store: functions for thread workers, frozen results.

Every function here takes a :class:`tracer.Store` and runs DuckDB queries, so it
is called from a thread worker, never from the UI thread; what it returns is
immutable and safe to hand to the UI. Only the store's read API is used, plus
``tracer.analysis`` for the coordination graph when it is installed.
"""

from __future__ import annotations

import bisect
import heapq
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from tracer import (
    FieldChange,
    Finding,
    NodeWrite,
    NotFoundError,
    Run,
    Span,
    SpanEvent,
    SpanLink,
    StateVersion,
    Store,
    langgraph_writes,
)
from tracer import RunTokens as Tokens
from tracer import conventions as c

from ._graph_draw import Layout, layout
from ._json_lines import json_lines
from ._llm import (
    INPUT_TOKENS,
    MODEL_KEYS,
    OUTPUT_TOKENS,
    Conversation,
    conversation,
    parse_json,
    span_kind,
    span_model,
    span_tokens,
)

__all__ = [
    "Change",
    "ContractView",
    "GraphData",
    "LinkView",
    "ReadView",
    "RunMeta",
    "SpanData",
    "SpanFacts",
    "SpanView",
    "StateData",
    "SuperStep",
    "Tokens",
    "filter_spans",
    "filtered_tree",
    "find_position",
    "focus_graph",
    "load_graph",
    "load_head",
    "load_meta",
    "load_span",
    "load_state",
    "load_superstep",
    "positions_of",
    "prepare_span",
    "run_tokens",
    "span_facts",
    "versions_of",
    "writer_of",
]


@dataclass(frozen=True, slots=True)
class RunMeta:
    """A run's header, its versions' metadata (no documents) and its findings.

    ``complete`` False is the quick first load (:func:`load_head`): ``versions`` then
    holds only the last one, and readers fetch what else they need (see
    :func:`load_state`); :func:`load_meta` gives every version.
    """

    run: Run
    versions: tuple[StateVersion, ...]
    findings: tuple[Finding, ...]
    spans_by_version: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    complete: bool = True
    tokens: Tokens | None = None  # the run's model calls (with the full load)
    # A LangGraph run's node writes, read once with the full load (every step shows some).
    writes: tuple[NodeWrite, ...] | None = None

    @property
    def last_version(self) -> int:
        if self.complete:
            return self.versions[-1].version if self.versions else 0
        return max(self.run.version_count, self.versions[-1].version if self.versions else 0)

    def version(self, k: int) -> StateVersion | None:
        i = bisect.bisect_left(self.versions, k, key=lambda v: v.version)
        if i < len(self.versions) and self.versions[i].version == k:
            return self.versions[i]
        return None


def load_head(store: Store, run_id: str) -> RunMeta:
    """What the first paint needs: the run, its findings and its last version (a few ms).

    The full list of versions can be long (10,000 rows cost ~40 ms, more while the
    waterfall's query runs beside it); it follows in :func:`load_meta`.
    """
    run = store.run(run_id)
    last = store.state_versions(run_id, versions=[run.version_count]) if run.version_count else []
    if run.version_count and not last:
        return load_meta(store, run_id)  # versions not numbered 1..N: read them all
    return RunMeta(run, tuple(last), tuple(store.findings(run_id)), {}, complete=False)


def load_meta(store: Store, run_id: str) -> RunMeta:
    """The run with every version's metadata and its findings."""
    run = store.run(run_id)
    versions = tuple(store.state_versions(run_id))
    by_span: dict[str, list[int]] = {}
    for v in versions:
        by_span.setdefault(v.span_id, []).append(v.version)
    langgraph = any((v.source or "").startswith("langgraph") for v in versions)
    return RunMeta(
        run,
        versions,
        tuple(store.findings(run_id)),
        {k: tuple(v) for k, v in by_span.items()},
        tokens=run_tokens(store, [run_id]).get(run_id),
        writes=tuple(langgraph_writes(store, run_id)) if langgraph else None,
    )


def versions_of(
    store: Store, run_id: str, meta: RunMeta, wanted: Iterable[int]
) -> dict[int, StateVersion]:
    """The metadata of versions ``wanted``, from ``meta`` or, when it lacks them, the store."""
    want = {k for k in wanted if k > 0}
    found: dict[int, StateVersion] = {}
    for k in want:
        v = meta.version(k)
        if v is not None:
            found[k] = v
    missing = want - found.keys()
    if missing and not meta.complete:
        found.update((v.version, v) for v in store.state_versions(run_id, versions=missing))
    return found


# -- state --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """A field that differs between the diff's base and the version shown, and who wrote it."""

    path: str
    change: str  # added, removed, changed
    old: Any
    new: Any
    writer: StateVersion | None  # the last version in (base, k] that wrote the field's top key


@dataclass(frozen=True, slots=True)
class ReadView:
    """A read made by the span that committed the version: what it got and what was newest."""

    version: int
    head: int | None
    keys: tuple[str, ...]
    via: str
    cache: str | None
    time_ns: int
    head_meta: StateVersion | None  # the newest committed version at the time, when stale
    # When stale: each key read, with its value in the version served and in the head.
    values: tuple[tuple[str, Any, Any], ...] = ()

    @property
    def stale(self) -> bool:
        return self.head is not None and self.version < self.head


@dataclass(frozen=True, slots=True)
class ContractView:
    name: str
    outcome: str
    source: str
    target: str
    errors: tuple[str, ...]
    payload: str


@dataclass(frozen=True, slots=True)
class StateData:
    version: int
    base: int
    meta: StateVersion | None
    doc: Any
    changes: tuple[Change, ...]
    reads: tuple[ReadView, ...]
    contracts: tuple[ContractView, ...]
    findings: tuple[Finding, ...]
    writer_span: Span | None
    superstep: SuperStep | None = None


@dataclass(frozen=True, slots=True)
class NodeStep:
    """What one node wrote in a super-step: its update, channel by channel."""

    node: str
    update: Mapping[str, Any]
    span_id: str


@dataclass(frozen=True, slots=True)
class SuperStep:
    """The LangGraph super-step a version came from: the nodes that ran in it (in parallel when
    more than one), what each wrote, and the nodes that run next (none: the graph ended)."""

    step: int
    nodes: tuple[NodeStep, ...]
    next: tuple[str, ...]


def load_superstep(
    store: Store, run_id: str, vmeta: StateVersion | None,
    writes: Sequence[NodeWrite] | None = None,
) -> SuperStep | None:  # fmt: skip
    """The super-step of a LangGraph version (from :func:`tracer.langgraph_writes`, or the
    ``writes`` read before); None for a version that did not come from one (any other run,
    a human update)."""
    if vmeta is None or vmeta.step is None or not (vmeta.source or "").startswith("langgraph"):
        return None
    if writes is None:
        writes = langgraph_writes(store, run_id)
    nodes = tuple(
        NodeStep(w.node, w.update, w.span_id)
        for w in sorted(writes, key=lambda w: w.node)
        if w.step == vmeta.step
    )
    later = [w.step for w in writes if w.step > vmeta.step]
    after = tuple(sorted({w.node for w in writes if later and w.step == min(later)}))
    return SuperStep(vmeta.step, nodes, after)


def writer_of(
    path: str, base: int, version: int, versions: Mapping[int, StateVersion]
) -> StateVersion | None:
    """The last version in ``(base, version]`` whose recorded keys include ``path``'s top key."""
    if version <= base:
        return None
    top = path.split("/")[1] if path.count("/") >= 1 and path != "" else ""
    top = top.replace("~1", "/").replace("~0", "~")
    for k in range(version, base, -1):
        v = versions.get(k)
        if v is None:
            continue
        if not v.keys or top in v.keys:
            return v
    return None


def load_state(
    store: Store, run_id: str, version: int, base: int | None, meta: RunMeta
) -> StateData:
    """The view of ``version``: document, diff against ``base`` (default k-1), the writer's reads."""
    base = version - 1 if base is None else base
    doc = store.state_at(run_id, version) if version else {}
    raw: list[FieldChange] = store.diff(run_id, base, version) if version else []
    span_range = range(base + 1, version + 1) if raw and version > base else ()
    versions = versions_of(store, run_id, meta, [version, *span_range])
    changes = tuple(
        Change(ch.path, ch.change, ch.old, ch.new, writer_of(ch.path, base, version, versions))
        for ch in raw
    )
    vmeta = versions.get(version)
    reads: list[ReadView] = []
    contracts: list[ContractView] = []
    writer_span: Span | None = None
    if vmeta is not None and vmeta.span_id:
        try:
            writer_span = store.span(run_id, vmeta.span_id)
        except NotFoundError:
            writer_span = None
        events = store.events(run_id, vmeta.span_id)
        heads = [
            int(e.attributes[c.STATE_HEAD_VERSION])
            for e in events
            if e.name == c.EV_STATE_READ and e.attributes.get(c.STATE_HEAD_VERSION)
        ]
        versions.update(versions_of(store, run_id, meta, heads))
        for ev in events:
            if ev.name == c.EV_STATE_READ:
                reads.append(_with_values(store, run_id, _read_view(ev, versions)))
            elif ev.name == c.EV_CONTRACT_CHECK:
                contracts.append(_contract_view(ev))
    span_id = vmeta.span_id if vmeta else None
    findings = tuple(
        f for f in meta.findings if version in f.versions or (span_id and span_id in f.span_ids)
    )
    return StateData(
        version, base, vmeta, doc, changes, tuple(reads), tuple(contracts), findings, writer_span,
        load_superstep(store, run_id, vmeta, meta.writes),
    )  # fmt: skip


def _read_view(ev: SpanEvent, versions: Mapping[int, StateVersion]) -> ReadView:
    a = ev.attributes
    head = a.get(c.STATE_HEAD_VERSION)
    version = int(a.get(c.STATE_VERSION, 0) or 0)
    head_i = int(head) if head is not None else None
    head_meta = versions.get(head_i) if head_i is not None and head_i > version else None
    keys = a.get(c.STATE_KEYS) or ()
    return ReadView(
        version,
        head_i,
        tuple(str(k) for k in (keys if isinstance(keys, list | tuple) else [keys])),
        str(a.get(c.STATE_VIA, "store")),
        str(a[c.STATE_CACHE]) if a.get(c.STATE_CACHE) else None,
        ev.time_ns,
        head_meta,
    )


def _with_values(store: Store, run_id: str, read: ReadView) -> ReadView:
    """A stale read with what it got and what it would have got from the head, key by key."""
    if not read.stale or read.head is None or not read.keys:
        return read
    try:
        got, newest = store.state_at(run_id, read.version), store.state_at(run_id, read.head)
    except NotFoundError:
        return read
    if not isinstance(got, dict) or not isinstance(newest, dict):
        return read
    values = tuple((k, got.get(k), newest.get(k)) for k in read.keys)
    return replace(read, values=values)


def _contract_view(ev: SpanEvent) -> ContractView:
    a = ev.attributes
    errors: Any = a.get(c.CONTRACT_ERRORS, "[]")
    if isinstance(errors, str):
        try:
            errors = orjson.loads(errors)
        except orjson.JSONDecodeError:
            errors = [errors]
    if not isinstance(errors, list):
        errors = [errors]
    return ContractView(
        str(a.get(c.CONTRACT_NAME, "")),
        str(a.get(c.CONTRACT_OUTCOME, "")),
        str(a.get(c.CONTRACT_SOURCE, "")),
        str(a.get(c.CONTRACT_TARGET, "")),
        tuple(e if isinstance(e, str) else orjson.dumps(e).decode() for e in errors),
        str(a.get(c.CONTRACT_PAYLOAD, "")),
    )


# -- spans --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkView:
    link: SpanLink
    target: Span | None  # the linked span, when it is in the store

    @property
    def same_run(self) -> bool:
        return self.link.linked_trace_id == self.link.trace_id


@dataclass(frozen=True, slots=True)
class SpanData:
    span: Span
    events: tuple[SpanEvent, ...]
    links: tuple[LinkView, ...]
    parent: Span | None
    versions: tuple[int, ...]


def load_span(store: Store, run_id: str, span_id: str, meta: RunMeta | None = None) -> SpanData:
    span = store.span(run_id, span_id)
    events = tuple(store.events(run_id, span_id))
    links = []
    for ln in store.links(run_id, span_id):
        try:
            target: Span | None = store.span(ln.linked_trace_id, ln.linked_span_id)
        except NotFoundError:
            target = None
        links.append(LinkView(ln, target))
    parent = None
    if span.parent_span_id:
        try:
            parent = store.span(run_id, span.parent_span_id)
        except NotFoundError:
            parent = None
    versions = meta.spans_by_version.get(span_id, ()) if meta else ()
    return SpanData(span, events, tuple(links), parent, tuple(versions))


ATTR_PAGE = 500  # attributes laid out at first, and per "more"
_FOLD_ABOVE = 30  # a JSON value longer than this opens with its second level folded


@dataclass(frozen=True, slots=True)
class SpanView:
    """A span prepared for the pane off the UI thread (see the module docstring)."""

    data: SpanData
    attrs: tuple[tuple[str, Any], ...]  # the first ``shown`` attributes, by key
    total_attrs: int
    chat: Conversation | None
    json: Mapping[str, Any] = field(default_factory=dict)  # attribute key -> parsed JSON
    folded: frozenset[tuple[str, str]] = frozenset()  # (attribute key, JSON pointer)

    @property
    def span(self) -> Span:
        return self.data.span


def prepare_span(data: SpanData, shown: int = ATTR_PAGE) -> SpanView:
    """Sort (the first ``shown`` of) the attributes, parse JSON values, find the conversation."""
    attrs = data.span.attributes
    # The first ``shown`` keys without sorting a million: a heap, O(n log shown).
    keys = heapq.nsmallest(shown, attrs) if len(attrs) > shown else sorted(attrs)
    items = tuple((k, attrs[k]) for k in keys)
    parsed: dict[str, Any] = {}
    folded: set[tuple[str, str]] = set()
    for k, v in items:
        doc = parse_json(v)
        if doc is not None:
            parsed[k] = doc
            lines = json_lines(doc, limit=_FOLD_ABOVE + 1)
            if len(lines) > _FOLD_ABOVE:
                folded |= {(k, ln.path) for ln in lines if ln.depth == 1 and ln.kind != "value"}
    chat = conversation(attrs, data.events)
    return SpanView(data, items, len(attrs), chat, parsed, frozenset(folded))


def positions_of(tree: pa.Table, span_ids: Sequence[str]) -> list[int]:
    """The rows of ``span_ids`` in a ``span_tree`` table, ascending (one vectorised pass)."""
    if not span_ids:
        return []
    found = pc.index_in(tree.column("span_id"), value_set=pa.array(list(span_ids), pa.string()))
    return [int(i) for i in pc.indices_nonzero(pc.is_valid(found)).to_pylist()]


def find_position(tree: pa.Table, span_id: str) -> int | None:
    """The row of ``span_id`` in a ``span_tree`` table (a vectorised scan, no index held)."""
    i = pc.index(tree.column("span_id"), span_id).as_py()
    return None if i is None or i < 0 else int(i)


# -- graph --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GraphData:
    graph: Any  # a networkx DiGraph/MultiDiGraph, or None when there is nothing to draw
    layout: Layout | None
    note: str = ""
    compact: GraphData | None = None  # the same with topics folded into agent-to-agent edges


def load_graph(store: Store, run_id: str) -> GraphData:
    """The run's coordination graph (``tracer.analysis``), laid out."""
    try:
        from tracer.analysis import coordination_graph
    except ImportError:
        return GraphData(None, None, "the coordination graph needs tracer.analysis")
    graph = coordination_graph(store, run_id)
    if graph is None or graph.number_of_nodes() == 0:
        return GraphData(graph, None, "no agents recorded in this run")
    folded = collapse_topics(graph)
    compact = None
    if folded.number_of_nodes() < graph.number_of_nodes():
        compact = GraphData(folded, layout(folded), "topics folded into their edges")
    return GraphData(graph, layout(graph), compact=compact)


def collapse_topics(graph: Any) -> Any:
    """``graph`` with each topic that has publishers and subscribers folded away: an edge from
    every publisher to every subscriber, carrying the delivery's kind, count and outcomes and
    both hops' spans; from a publisher that only declared the topic and never published, a
    declared (unused) edge with no deliveries. A topic nobody reads (or nobody wrote) stays:
    what was lost is there."""
    import networkx as nx

    out = nx.MultiDiGraph()
    out.add_nodes_from(graph.nodes(data=True))
    multi = graph.is_multigraph()

    def edges(items: Any) -> list[tuple[Any, Any, dict[str, Any]]]:
        return [(e[0], e[1], e[-1]) for e in items]

    folded = set()
    for node, data in graph.nodes(data=True):
        if data.get("kind") != "topic":
            continue
        ins = edges(
            graph.in_edges(node, keys=True, data=True) if multi else graph.in_edges(node, data=True)
        )
        outs = edges(
            graph.out_edges(node, keys=True, data=True)
            if multi
            else graph.out_edges(node, data=True)
        )
        if not ins or not outs:
            continue
        folded.add(node)
        for p, _, d_in in ins:
            published = bool(d_in.get("observed", (d_in.get("count") or 0) > 0))
            for _, q, d_out in outs:
                attrs = dict(d_out)
                attrs["declared"] = bool(d_in.get("declared")) and bool(d_out.get("declared"))
                if published:
                    spans = [*(d_in.get("span_ids") or ()), *(d_out.get("span_ids") or ())]
                else:  # declared only: the deliveries came from another publisher
                    attrs.update(count=0, observed=False, outcomes={})
                    spans = []
                attrs["span_ids"] = spans
                out.add_edge(p, q, **attrs)
    for u, v, d in edges(graph.edges(keys=True, data=True) if multi else graph.edges(data=True)):
        if u not in folded and v not in folded:
            out.add_edge(u, v, **d)
    out.remove_nodes_from(folded)
    return out


def focus_graph(view: GraphData, node: str) -> GraphData:
    """``view`` cut to ``node``, its neighbours and, through a topic, the agents on its other
    side: the edges a person asks about when they pick an agent, laid out on their own."""
    graph = view.graph
    if graph is None or node not in graph:
        return view
    topics = {
        n
        for n in (*graph.predecessors(node), *graph.successors(node))
        if graph.nodes[n].get("kind") == "topic"
    }
    around = {node} | topics
    multi = graph.is_multigraph()
    edges = [
        e
        for e in (graph.edges(keys=True) if multi else graph.edges())
        if e[0] in around or e[1] in around
    ]
    sub = graph.edge_subgraph(edges).copy()
    sub.add_node(node, **graph.nodes[node])
    return GraphData(sub, layout(sub), f"focus on {node}")


def narrow_graph(view: GraphData) -> GraphData:
    """``view`` for a pane narrower than its picture: edges that were only declared (never
    used) and the topics they leave alone are dropped, and edges are labelled with their
    outcome marks alone (``layout(..., terse=True)``)."""
    graph = view.graph
    if graph is None:
        return view
    multi = graph.is_multigraph()
    sub = graph.copy()
    sub.remove_edges_from(
        [
            e[:-1]
            for e in (graph.edges(keys=True, data=True) if multi else graph.edges(data=True))
            if not e[-1].get("observed", (e[-1].get("count") or 0) > 0)
        ]
    )
    sub.remove_nodes_from(
        [n for n, k in graph.nodes(data="kind") if k == "topic" and sub.degree(n) == 0]
    )
    return GraphData(
        sub, layout(sub, terse=True), "narrowed: outcome marks only, unused edges hidden"
    )


def edges_for(view: GraphData, span_ids: Sequence[str]) -> set[int]:
    """Indices of the layout's edges that carry any of ``span_ids``."""
    if view.layout is None:
        return set()
    wanted = set(span_ids)
    return {e.index for e in view.layout.edges if e.span_ids & wanted}


# -- what the waterfall shows beside a span's name: kind, model, tokens, events ------------

# The attributes the waterfall needs of each span, read by DuckDB out of the JSON column
# (a page of spans at a time) rather than whole: ``tui._llm`` decides what they mean.
_FACT_KEYS = (
    "gen_ai.operation.name", "openinference.span.kind", "messaging.system",
    "messaging.operation.type", *MODEL_KEYS, *INPUT_TOKENS, *OUTPUT_TOKENS,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SpanFacts:
    kind: str | None  # agent, llm, tool, guardrail, message... (tui._llm.span_kind)
    model: str | None
    tokens: tuple[int, int] | None  # (input, output) of a model call
    events: tuple[int, ...] = ()  # times of the span's events (marks on its bar)


def _extract_sql(where: str) -> str:
    # One extraction with every path parses a span's attributes once: a call per key
    # parsed a 10 MB value once per key, side by side, past the debugger's memory limit.
    paths = ", ".join(f"'$.\"{k}\"'" for k in _FACT_KEYS)
    cols = ", ".join(f'facts[{i}] AS "{k}"' for i, k in enumerate(_FACT_KEYS, 1))
    return (
        f"SELECT span_id, {cols} FROM (SELECT span_id, start_ns,"
        f" json_extract_string(attributes, [{paths}]) AS facts"
        f" FROM spans WHERE trace_id = ? {where})"
    )


def span_facts(store: Store, run_id: str, span_ids: Sequence[str]) -> dict[str, SpanFacts]:
    """Kind, model, tokens and event times of ``span_ids`` (a waterfall page)."""
    if not span_ids:
        return {}
    ids = list(span_ids)
    rows = store.arrow(
        _extract_sql("AND list_contains(?::VARCHAR[], span_id)"), [run_id, ids]
    ).to_pylist()
    events: dict[str, tuple[int, ...]] = {}
    for r in store.arrow(
        """SELECT span_id, list(time_ns ORDER BY time_ns)[1:64] AS times FROM span_events
           WHERE trace_id = ? AND list_contains(?::VARCHAR[], span_id) GROUP BY span_id""",
        [run_id, ids],
    ).to_pylist():
        events[r["span_id"]] = tuple(r["times"])
    out = {}
    for r in rows:
        attrs = {k: v for k, v in r.items() if v is not None}
        out[r["span_id"]] = SpanFacts(
            span_kind(attrs), span_model(attrs), span_tokens(attrs), events.get(r["span_id"], ())
        )
    return out


def run_tokens(store: Store, run_ids: Iterable[str]) -> dict[str, Tokens]:
    """The tokens of each run's model calls, in all, by agent and by model: what
    ``agentrace runs --json`` reports. Runs without recorded usage get no entry."""
    return store.run_tokens(run_ids)


def filter_spans(store: Store, run_id: str, query: str) -> list[str]:
    """Ids of the spans matching every word of ``query`` (shell quoting for spaces):
    ``agent:NAME``, ``kind:KIND`` (llm,
    tool, agent, guardrail, message...), ``status:error`` (or ``ok``/``unset``), ``model:TEXT``,
    and plain words (in the name, agent or operation)."""
    wanted: dict[str, list[str]] = {}
    words: list[str] = []
    try:
        tokens = shlex.split(query)  # agent:'Billing agent' keeps its space
    except ValueError:
        tokens = query.split()
    for word in tokens:
        field_, sep, value = word.partition(":")
        if sep and field_.lower() in ("agent", "kind", "status", "model") and value:
            wanted.setdefault(field_.lower(), []).append(value.lower())
        else:
            words.append(word.lower())
    where, params = [], [run_id]
    for w in words:
        where.append(
            "(contains(lower(name), ?) OR contains(lower(coalesce(agent, '')), ?)"
            " OR contains(lower(coalesce(operation, '')), ?))"
        )
        params += [w, w, w]
    for v in wanted.get("agent", []):
        where.append("lower(coalesce(agent, '')) = ?")
        params.append(v)
    for v in wanted.get("status", []):
        where.append("lower(status_code) = ?")
        params.append(v)
    rows = store.arrow(
        _extract_sql(("AND " + " AND ".join(where)) if where else "")
        + " ORDER BY start_ns, span_id",
        params,
    ).to_pylist()
    out = []
    for r in rows:
        attrs = {k: v for k, v in r.items() if v is not None}
        if "kind" in wanted and (span_kind(attrs) or "") not in wanted["kind"]:
            continue
        if "model" in wanted:
            model = (span_model(attrs) or "").lower()
            if not all(m in model for m in wanted["model"]):
                continue
        out.append(r["span_id"])
    return out


def filtered_tree(tree: pa.Table, keep: Iterable[int]) -> pa.Table:
    """``tree`` (a ``span_tree`` table) cut to positions ``keep`` and their ancestors, with
    depths and descendant counts recomputed: a waterfall of the matches, in context."""
    depth = tree.column("depth").to_pylist()
    wanted = set(keep)
    kept: list[int] = []
    stack: list[int] = []  # ancestors of the current position
    marked: set[int] = set()
    for pos, d in enumerate(depth):
        while stack and depth[stack[-1]] >= d:
            stack.pop()
        if pos in wanted:
            marked.update(stack)
            marked.add(pos)
        stack.append(pos)
    kept = sorted(marked)
    new_depth: list[int] = []
    desc = [0] * len(kept)
    open_: list[int] = []  # indices into kept of the ancestors of the current one
    for i, pos in enumerate(kept):
        while open_ and depth[kept[open_[-1]]] >= depth[pos]:
            open_.pop()
        for j in open_:
            desc[j] += 1
        new_depth.append(len(open_))
        open_.append(i)
    ids = tree.column("span_id").take(pa.array(kept, pa.int64()))
    return pa.table(
        {
            "span_id": ids,
            "depth": pa.array(new_depth, tree.schema.field("depth").type),
            "descendants": pa.array(desc, tree.schema.field("descendants").type),
        }
    )
