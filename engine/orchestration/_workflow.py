"""Workflows: a validated networkx DiGraph of agents.

Build one with a :class:`WorkflowBuilder`::

    wf = (WorkflowBuilder("trading")
          .chain(research, analysis)
          .route("analysis", pick_desk, {"equities": "equity_desk", "bonds": "bond_desk"})
          .build())

How a workflow runs (see :class:`~engine.Orchestrator`):

- It starts at its one entry agent (the agent nothing points to, or ``start(...)``).
- After a step, every successor runs with the step's output; several successors
  run concurrently (fan-out).
- A router (``route``) chooses some of the successors instead: ``router(state, output)``
  returns a label, a list of labels, or None for none; labels map to agents.
- An agent with several incoming edges is a join (fan-in). It needs an explicit
  ``merge(inputs) -> input``, where ``inputs`` maps each predecessor that delivered
  to its output (in the order the edges were declared). It runs once no running
  branch can still reach it, so branches a router did not take do not hold it up.
- Cycles are allowed only through a router edge (something must choose to loop);
  ``max_steps`` stops a run that loops too long.
- Contracts sit on edges (checked when a step hands its output along that edge)
  or on agents (their output, whatever follows).

Validation on ``build()`` names the workflow and the agent or edge at fault:
unknown agents, a missing or ambiguous entry, unreachable agents, cycles
without a router edge, joins without a merge, routes to agents that are not
edges of the router.
"""

from __future__ import annotations

import difflib
import inspect
import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import networkx as nx

from ..core._agent import Agent, as_agent
from ..core._cache import CachePolicy, Policy
from ..core._contracts import Contract
from ..core._errors import WorkflowError
from ..core._saga import SagaPolicy
from ..core._workflows import check_name

Router = Callable[..., Any]
Merge = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class Route:
    """A router on ``source``: ``labels`` maps what ``fn`` returns to successor agents."""

    source: str
    fn: Router
    labels: Mapping[str, str]
    is_async: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class Workflow:
    """A validated workflow (build it with :class:`WorkflowBuilder`). Treat as immutable."""

    name: str
    graph: nx.DiGraph
    agents: Mapping[str, Agent]
    start: str
    ref: str | None = None  # the registered name runs record, for replay (see engine.workflow)
    version: str | None = None
    routes: Mapping[str, Route] = field(default_factory=dict)
    merges: Mapping[str, Merge] = field(default_factory=dict)
    edge_contracts: Mapping[tuple[str, str], Contract] = field(default_factory=dict)
    caches: tuple[CachePolicy, ...] = ()
    saga: SagaPolicy = field(default_factory=SagaPolicy)
    max_steps: int = 10_000
    # Derived on build, for the orchestrator's hot path.
    successors: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    predecessors: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    reach: Mapping[str, frozenset[str]] = field(default_factory=dict, repr=False)
    declared: str = field(default="", repr=False)

    def declared_graph(self) -> dict[str, Any]:
        """The ``agentrace.run.declared_graph`` document (agents and edges, in declaration order)."""
        return json.loads(self.declared)

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, agents={list(self.agents)})"

    def registered(self, name: str, version: str) -> Workflow:
        """This workflow, recording ``name`` and ``version`` as what replay finds it by."""
        return replace(self, ref=check_name(name), version=check_name(version, "workflow version"))


class WorkflowBuilder:
    """Collects agents, edges, routes, merges, contracts and caches; ``build()`` validates."""

    def __init__(
        self,
        name: str,
        *,
        ref: str | None = None,
        version: str | None = None,
        saga: SagaPolicy | None = None,
        max_steps: int = 10_000,
    ) -> None:
        if not name:
            raise WorkflowError("?", "a workflow needs a name")
        self.name = name
        self.ref = ref
        self.version = version
        self.saga = saga or SagaPolicy()
        self.max_steps = max_steps
        self._agents: dict[str, Agent] = {}
        self._edges: list[tuple[str, str]] = []
        self._edge_contracts: dict[tuple[str, str], Contract] = {}
        self._routes: dict[str, Route] = {}
        self._merges: dict[str, Merge] = {}
        self._caches: dict[str, CachePolicy] = {}
        self._start: str | None = None

    def _fail(self, detail: str) -> WorkflowError:
        return WorkflowError(self.name, detail)

    # -- agents and edges ----------------------------------------------------------------------

    def add(self, *agents: Any) -> WorkflowBuilder:
        """Add agents (Agents, functions, or objects with ``execute``)."""
        for obj in agents:
            try:
                a = as_agent(obj)
            except (TypeError, ValueError) as exc:
                raise self._fail(str(exc)) from None
            prior = self._agents.get(a.name)
            if prior is not None and prior is not a:
                raise self._fail(f"two different agents are named {a.name!r}")
            self._agents[a.name] = a
        return self

    def _name(self, ref: Any) -> str:
        if isinstance(ref, str):
            return ref
        a = as_agent(ref)
        self.add(a)
        return a.name

    def edge(
        self, source: Any, target: Any, *, contract: Contract | None = None
    ) -> WorkflowBuilder:
        """``source`` hands its output to ``target`` (checked by ``contract`` when given)."""
        s, t = self._name(source), self._name(target)
        if (s, t) in self._edges:
            raise self._fail(f"edge {s} → {t} declared twice")
        self._edges.append((s, t))
        if contract is not None:
            self._edge_contracts[(s, t)] = contract
        return self

    def chain(
        self, *agents: Any, contracts: Mapping[tuple[str, str], Contract] | None = None
    ) -> WorkflowBuilder:
        """Add agents (or names) and an edge between each one and the next."""
        names = [self._name(a) for a in agents]
        for s, t in itertools.pairwise(names):
            self.edge(s, t, contract=(contracts or {}).get((s, t)))
        return self

    def fan_out(
        self, source: Any, targets: Iterable[Any], *, contract: Contract | None = None
    ) -> WorkflowBuilder:
        """``source`` hands its output to every target; they run concurrently."""
        s = self._name(source)
        for t in targets:
            self.edge(s, t, contract=contract)
        return self

    def fan_in(self, sources: Iterable[Any], target: Any, merge: Merge) -> WorkflowBuilder:
        """Every source hands its output to ``target``, which runs once on ``merge(inputs)``."""
        t = self._name(target)
        for s in sources:
            self.edge(s, t)
        return self.merge(t, merge)

    def merge(self, target: Any, merge: Merge) -> WorkflowBuilder:
        """How join ``target`` combines its inputs: ``merge({source: output, ...}) -> input``."""
        if not callable(merge):
            raise self._fail(f"merge for {target!r} must be callable")
        self._merges[self._name(target)] = merge
        return self

    def route(
        self, source: Any, router: Router, targets: Mapping[str, Any] | Sequence[Any],
        *, contracts: Mapping[str, Contract] | None = None,
    ) -> WorkflowBuilder:  # fmt: skip
        """Conditional edges: ``router(state, output)`` picks labels; ``targets`` maps labels to agents
        (a list of agents means each agent's name is its label)."""
        s = self._name(source)
        if s in self._routes:
            raise self._fail(f"agent {s!r} already has a router")
        if not callable(router):
            raise self._fail(f"router of {s!r} must be callable")
        if isinstance(targets, Mapping):
            labels = {str(k): self._name(v) for k, v in targets.items()}
        else:
            labels = {n: n for n in (self._name(v) for v in targets)}
        if not labels:
            raise self._fail(f"router of {s!r} has no targets")
        for t in dict.fromkeys(labels.values()):
            self.edge(s, t, contract=(contracts or {}).get(t))
        self._routes[s] = Route(s, router, labels, inspect.iscoroutinefunction(router))
        return self

    def start(self, agent: Any) -> WorkflowBuilder:
        """Declare the entry agent (needed only when several agents have no predecessor)."""
        self._start = self._name(agent)
        return self

    def cache(
        self, name: str, invalidation: Policy = "on_commit", *, ttl: float | None = None
    ) -> WorkflowBuilder:
        """Declare a cache agents can read through (``state.cache(name)``); one per run."""
        try:
            self._caches[name] = CachePolicy(name, invalidation, ttl)
        except ValueError as exc:
            raise self._fail(str(exc)) from None
        return self

    # -- validation ----------------------------------------------------------------------------

    def _unknown(self, name: str, where: str) -> WorkflowError:
        close = difflib.get_close_matches(name, self._agents, n=1)
        hint = (
            f"; did you mean {close[0]!r}?"
            if close
            else f" (agents: {', '.join(self._agents) or 'none'})"
        )
        return self._fail(f"{where}: no agent {name!r}{hint}")

    def build(self) -> Workflow:
        """Validate and freeze; :class:`WorkflowError` says what is wrong."""
        if not self._agents:
            raise self._fail("no agents")
        if self.ref is not None:
            check_name(self.ref)
        if self.version is not None:
            check_name(self.version, "workflow version")
        if self.max_steps < 1:
            raise self._fail("max_steps must be at least 1")
        for s, t in self._edges:
            for n in (s, t):
                if n not in self._agents:
                    raise self._unknown(n, f"edge {s} → {t}")
            if s == t and s not in self._routes:
                raise self._fail(f"edge {s} → {s} is a loop without a router")
        g = nx.DiGraph()
        g.add_nodes_from(self._agents)
        g.add_edges_from(self._edges)

        # The entry.
        if self._start is not None:
            if self._start not in self._agents:
                raise self._unknown(self._start, "start")
            start = self._start
        else:
            roots = [n for n in g.nodes if g.in_degree(n) == 0]
            if not roots:
                raise self._fail(
                    "no entry agent: every agent has a predecessor; declare one with start()"
                )
            if len(roots) > 1:
                raise self._fail(
                    f"several entry agents ({', '.join(roots)}): declare one with start()"
                )
            start = roots[0]

        # Everything reachable from the entry.
        reachable = nx.descendants(g, start) | {start}
        lost = [n for n in g.nodes if n not in reachable]
        if lost:
            raise self._fail(f"unreachable from {start!r}: {', '.join(lost)}")

        # Cycles must pass through a router edge.
        routed = {(r.source, t) for r in self._routes.values() for t in r.labels.values()}
        forward = nx.DiGraph()
        forward.add_nodes_from(g.nodes)
        forward.add_edges_from(e for e in g.edges if e not in routed)
        try:
            cycle = nx.find_cycle(forward)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            path = " → ".join([cycle[0][0], *(e[1] for e in cycle)])
            raise self._fail(
                f"cycle {path} has no router edge: it would never end (route one of its edges)"
            )

        # Routers, merges, joins.
        for src in self._routes:
            if src not in self._agents:
                raise self._unknown(src, "route")
        for target in self._merges:
            if target not in self._agents:
                raise self._unknown(target, "merge")
        preds = {n: tuple(s for s, t in self._edges if t == n) for n in g.nodes}
        for n, ps in preds.items():
            if len(ps) > 1 and n not in self._merges:
                raise self._fail(
                    f"agent {n!r} has {len(ps)} incoming edges ({', '.join(ps)}): it is a join and needs an "
                    f"explicit merge (fan_in(..., merge=...) or merge({n!r}, fn))"
                )
            if len(ps) <= 1 and n in self._merges:
                raise self._fail(
                    f"merge given for {n!r}, which has {len(ps)} incoming edge(s): not a join"
                )

        succ = {n: tuple(t for s, t in self._edges if s == n) for n in g.nodes}
        reach = {n: frozenset(nx.descendants(g, n)) for n in g.nodes}
        declared = json.dumps(
            {"agents": list(self._agents), "edges": [list(e) for e in self._edges],
             "subscriptions": [], "publishes": []},
            separators=(",", ":"),
        )  # fmt: skip
        nx.freeze(g)
        return Workflow(
            name=self.name, graph=g, agents=dict(self._agents), start=start, ref=self.ref, version=self.version,
            routes=dict(self._routes), merges=dict(self._merges), edge_contracts=dict(self._edge_contracts),
            caches=tuple(self._caches.values()), saga=self.saga, max_steps=self.max_steps,
            successors=succ, predecessors=preds, reach=reach, declared=declared,
        )  # fmt: skip


def chain(name: str, *agents: Any, ref: str | None = None) -> Workflow:
    """A workflow that runs ``agents`` one after another."""
    return WorkflowBuilder(name, ref=ref).chain(*agents).build()
