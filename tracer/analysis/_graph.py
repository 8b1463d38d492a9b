"""The coordination graph: who handed off to whom, who published and consumed what, who was compensated."""

from __future__ import annotations

import collections
from dataclasses import asdict, dataclass
from typing import Any

import networkx as nx

from .. import conventions as c
from .._store._store import Store
from ._context import RunContext

# A delivery "happened" (a consumer got the message) when its outcome is one of these;
# lost and rejected traffic never reached anyone.
_REACHED = frozenset({"ok", "duplicate", "failed", "dead_lettered", "breaker_open", "timeout"})


@dataclass(frozen=True, slots=True)
class CoordinationMetrics:
    """How much coordination a run had.

    ``agents``: agents seen acting; ``topics``: topics seen; ``edges_used``: edges with
    traffic (all kinds); ``edges_declared``: edges the declared graph allows;
    ``agent_pairs_used``: unordered pairs of distinct acting agents that interacted,
    directly (a handoff that reached its target, a compensation) or through a topic (one
    published what the other consumed), so never more than ``potential_pairs``;
    ``potential_pairs``: n(n-1)/2 for n agents, what full pairwise coordination would need.
    """

    agents: int
    topics: int
    edges_used: int
    edges_declared: int
    agent_pairs_used: int
    potential_pairs: int

    @property
    def pair_density(self) -> float:
        """``agent_pairs_used / potential_pairs`` (0 with fewer than two agents)."""
        return self.agent_pairs_used / self.potential_pairs if self.potential_pairs else 0.0


def coordination_graph(store: Store, run_id: str) -> nx.MultiDiGraph:
    """The coordination graph of a run, observed traffic with the declared graph laid over it.

    A ``networkx.MultiDiGraph`` whose edge keys are the edge kinds, so ``g.edges[u, v, "handoff"]``.

    Graph attributes (``g.graph``): ``run_id``; ``pattern`` (orchestration, choreography,
    hybrid, imported); ``has_declared`` (the run declared a graph); ``inferred`` (the
    handoffs were inferred from span nesting and order: a foreign trace); ``metrics``
    (:class:`CoordinationMetrics` as a dict).

    Node attributes: ``kind`` (``agent`` or ``topic``); ``declared`` and ``observed``
    (bools); ``steps`` (agent steps recorded; 0 for topics); ``outcomes`` (a ``Counter``
    of step outcomes: ok, failed, rejected, breaker_open, timeout); ``span_ids`` (the
    agent's step spans, or for a topic its send spans); ``compensations`` (a ``Counter``
    of compensation outcomes: ok, failed, skipped).

    Edge attributes: ``kind``: ``handoff`` (agent → agent: a step received the other's
    output, or tried to and was rejected by a contract), ``publish`` (agent → topic),
    ``deliver`` (topic → consuming agent), ``compensate`` (the agent whose failure began
    a rollback → the agent compensated); ``count`` (traffic seen: steps, sends,
    deliveries, messages lost, compensations); ``outcomes`` (a ``Counter``: ok, failed,
    rejected (by a contract), duplicate (a message processed again by the same group,
    noticed or not), lost (never handled by that subscriber: its last delivery there, or
    the send when it never got there), unacked, dead_lettered,
    breaker_open, timeout); ``declared`` and ``observed`` (bools: allowed by the declared
    graph; traffic seen, ``count > 0``); ``span_ids`` (the spans that make up the traffic,
    in time order, to highlight); ``first_ns`` / ``last_ns`` (the traffic's first and last
    time, None when unused); ``inferred`` (the edge was told from nesting and order, not
    recorded); ``delegation`` (a foreign handoff told from nesting: the other agent ran
    inside this one's step, as a smolagents manager runs the agents it manages, or a
    pydantic-ai tool calls another agent); ``groups`` (deliver edges: the consumer groups).
    """
    return RunContext(store, run_id).graph


def coordination_metrics(graph: nx.MultiDiGraph) -> CoordinationMetrics:
    """The :class:`CoordinationMetrics` of a graph made by :func:`coordination_graph`."""
    agents = [n for n, d in graph.nodes(data=True) if d["kind"] == "agent" and d["observed"]]
    topics = [n for n, d in graph.nodes(data=True) if d["kind"] == "topic" and d["observed"]]
    pairs: set[frozenset[str]] = set()
    publishers: dict[str, set[str]] = collections.defaultdict(set)
    consumers: dict[str, set[str]] = collections.defaultdict(set)
    used = declared = 0
    acting = set(agents)
    for u, v, d in graph.edges(data=True):
        used += d["observed"]
        declared += d["declared"]
        if not d["observed"]:
            continue
        if d["kind"] in ("handoff", "compensate"):
            # A handoff a contract stopped never reached its target: no interaction.
            reached = any(n for o, n in d["outcomes"].items() if o not in ("rejected", "lost"))
            if reached and u != v and u in acting and v in acting:
                pairs.add(frozenset((u, v)))
        elif d["kind"] == "publish" and d["outcomes"]["ok"]:
            publishers[v].add(u)
        elif d["kind"] == "deliver" and any(d["outcomes"][o] for o in _REACHED):
            consumers[u].add(v)
    for topic, pubs in publishers.items():
        for p in pubs:
            for q in consumers.get(topic, ()):
                if p != q and p in acting and q in acting:
                    pairs.add(frozenset((p, q)))
    n = len(agents)
    return CoordinationMetrics(n, len(topics), used, declared, len(pairs), n * (n - 1) // 2)


class _Builder:
    def __init__(self, ctx: RunContext) -> None:
        self.g = nx.MultiDiGraph(
            run_id=ctx.run_id,
            pattern=ctx.run.pattern,
            has_declared=ctx.declared is not None,
            inferred=not ctx.is_agentrace,
        )
        # The attribute dicts networkx keeps, by key: one dict lookup per observation
        # instead of a walk through networkx's views (a third of the build on 40k steps).
        self._nodes: dict[str, dict[str, Any]] = {}
        self._edges: dict[tuple[str, str, str], dict[str, Any]] = {}

    def node(self, name: str, kind: str) -> dict[str, Any]:
        attrs = self._nodes.get(name)
        if attrs is None:
            self.g.add_node(
                name, kind=kind, declared=False, observed=False, steps=0,
                outcomes=collections.Counter(), span_ids=[], compensations=collections.Counter(),
            )  # fmt: skip
            attrs = self._nodes[name] = self.g.nodes[name]
        return attrs

    def edge(
        self, u: str, v: str, kind: str, u_kind: str = "agent", v_kind: str = "agent"
    ) -> dict[str, Any]:
        attrs = self._edges.get((u, v, kind))
        if attrs is None:
            self.node(u, u_kind)
            self.node(v, v_kind)
            self.g.add_edge(
                u, v, key=kind, kind=kind, count=0, outcomes=collections.Counter(), declared=False,
                observed=False, span_ids=[], first_ns=None, last_ns=None, inferred=False,
            )  # fmt: skip
            attrs = self._edges[(u, v, kind)] = self.g.edges[u, v, kind]
            if kind == "deliver":
                attrs["groups"] = set()
        return attrs

    def observe(
        self, attrs: dict[str, Any], outcome: str, span_id: str | None, time_ns: int
    ) -> None:
        attrs["count"] += 1
        attrs["outcomes"][outcome] += 1
        attrs["observed"] = True
        if span_id:
            attrs["span_ids"].append(span_id)
        attrs["first_ns"] = (
            time_ns if attrs["first_ns"] is None else min(attrs["first_ns"], time_ns)
        )
        attrs["last_ns"] = time_ns if attrs["last_ns"] is None else max(attrs["last_ns"], time_ns)


def build_graph(ctx: RunContext) -> nx.MultiDiGraph:
    b = _Builder(ctx)
    declared = ctx.declared
    topics = ctx.topics

    # Agents, and their steps' outcomes.
    for s in ctx.steps:
        n = b.node(s.agent, "agent")
        n["observed"] = True
        n["steps"] += 1
        n["outcomes"][s.outcome] += 1
        n["span_ids"].append(s.span_id)

    # Contract rejections: a handoff (or a publish) that stopped at its boundary.
    rejected_own_output: set[str] = set()
    for ev in ctx.events(c.EV_CONTRACT_CHECK):
        a = ev.attributes
        if a.get(c.CONTRACT_OUTCOME) != "rejected":
            continue
        source = str(a.get(c.CONTRACT_SOURCE) or ev.agent or "")
        target = str(a.get(c.CONTRACT_TARGET) or "")
        if not source or not target:
            continue
        if source == ev.agent:
            rejected_own_output.add(ev.span_id)
        if target in topics:
            b.observe(
                b.edge(source, target, "publish", v_kind="topic"),
                "rejected",
                ev.span_id,
                ev.time_ns,
            )
        else:
            b.observe(b.edge(source, target, "handoff"), "rejected", ev.span_id, ev.time_ns)

    # Handoffs: recorded (agentrace.agent.from) or, in foreign traces, inferred.
    if ctx.is_agentrace:
        for s in ctx.steps:
            # A step whose own output a contract rejected ran fine on what it received.
            outcome = (
                "ok" if s.outcome == "rejected" and s.span_id in rejected_own_output else s.outcome
            )
            for src in s.from_:
                b.observe(b.edge(src, s.agent, "handoff"), outcome, s.span_id, s.start_ns)
    else:
        for src, dst, outcome, span_id, time_ns, how in ctx.inferred_handoffs:
            e = b.edge(src, dst, "handoff")
            e["inferred"] = True
            if how == "delegation":
                # A step inside another agent's step: a manager calling the agent it manages.
                e["delegation"] = True
            b.observe(e, outcome, span_id, time_ns)

    # The bus.
    for p in ctx.publishes:
        if p.topic is None:
            continue
        t = b.node(p.topic, "topic")
        t["observed"] = True
        t["span_ids"].append(p.span_id)
        if p.agent:
            b.node(p.agent, "agent")["observed"] = True
            b.observe(
                b.edge(p.agent, p.topic, "publish", v_kind="topic"), "ok", p.span_id, p.time_ns
            )
    fates = ctx.message_fates
    # A lost message counts once per subscriber that never handled it: as its last delivery
    # there, when it had one, else as the send.
    delivery_outcome = dict(fates.edge_outcome)
    never_delivered = []
    for lost in fates.lost:
        for sub in lost.missing:
            theirs = [d for d in lost.deliveries if d.serves(sub)]
            if theirs:
                delivery_outcome[theirs[-1].span_id] = "lost"
            else:
                never_delivered.append((lost.publish, sub))
    for d in ctx.deliveries:
        if d.topic is None:
            continue
        b.node(d.topic, "topic")["observed"] = True
        consumer = d.agent or d.consumer or d.group
        if consumer:
            e = b.edge(d.topic, consumer, "deliver", u_kind="topic")
            b.node(consumer, "agent")["observed"] = True
            e["groups"].add(d.group_key)
            b.observe(e, delivery_outcome.get(d.span_id, d.fate), d.span_id, d.start_ns)
    for publish, sub in never_delivered:
        if publish.topic is None:  # never so: lost messages are those of publishes with a topic
            continue
        e = b.edge(publish.topic, sub, "deliver", u_kind="topic")
        b.observe(e, "lost", publish.span_id, ctx.end_ns)

    # Compensations: from the agent whose failure began the rollback to the one undone.
    failed = [s for s in ctx.steps if s.outcome != "ok" or s.error]
    for ev in ctx.events(c.EV_SAGA_COMPENSATE):
        agent = str(ev.attributes.get(c.SAGA_AGENT) or ev.agent or "")
        if not agent:
            continue
        outcome = str(ev.attributes.get(c.SAGA_OUTCOME) or "ok")
        b.node(agent, "agent")["compensations"][outcome] += 1
        trigger = next((s for s in reversed(failed) if s.start_ns <= ev.span_start_ns), None)
        if trigger is not None and outcome != "skipped":  # a skip is no traffic
            b.observe(b.edge(trigger.agent, agent, "compensate"), outcome, ev.span_id, ev.time_ns)

    # The declared graph, laid over what was seen.
    if declared is not None:
        for agent in declared.agents:
            b.node(agent, "agent")["declared"] = True
        for u, v in declared.edges:
            b.edge(u, v, "handoff")["declared"] = True
        for agent, topic in declared.publishes:
            b.edge(agent, topic, "publish", v_kind="topic")["declared"] = True
            b.node(agent, "agent")["declared"] = b.node(topic, "topic")["declared"] = True
        for topic, agent in declared.subscriptions:
            b.edge(topic, agent, "deliver", u_kind="topic")["declared"] = True
            b.node(agent, "agent")["declared"] = b.node(topic, "topic")["declared"] = True

    g = b.g
    for _u, _v, d in g.edges(data=True):
        if "groups" in d:
            d["groups"] = tuple(sorted(d["groups"]))
    g.graph["metrics"] = asdict(coordination_metrics(g))
    return g
