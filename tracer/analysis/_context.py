"""What the detectors read of one run: loaded from the store once, lazily, and shared.

Everything comes through SQL over the store's tables (``spans``, ``span_events``,
``state_versions``, ``state_reads``, ``messages``); nothing here knows the engine.
A run is *agentrace's own* when its root carries ``agentrace.run.pattern``
(orchestration, choreography, hybrid): then the conventions hold and, for example,
``agentrace.agent.from`` names each step's upstream agents. Any other run is
*foreign* (pattern ``imported``) and gets only what its spans allow: steps from the
GenAI, OpenInference and LangGraph conventions, handoffs inferred from nesting and
order, no declared graph, no subscriptions.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import orjson

from .. import conventions as c
from .._store._models import Run
from .._store._store import Store

if TYPE_CHECKING:
    import networkx as nx

AGENTRACE_PATTERNS = frozenset({"orchestration", "choreography", "hybrid"})

# What an ack outcome says about a delivery. "dropped" is the bus losing the message;
# "dead_lettered" is an explicit, recorded parking of it: handled, not lost.
_ACK_FATE = {
    "acked": "ok",
    "duplicate": "duplicate",
    "nacked": "failed",
    "dead_lettered": "dead_lettered",
    "dropped": "lost",
}
HANDLED_FATES = frozenset({"ok", "duplicate", "dead_lettered"})


def json_or_text(text: Any) -> Any:
    """JSON text decoded; anything else (already a value, or not JSON) as it is."""
    if not isinstance(text, str):
        return text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class DeclaredGraph:
    """``agentrace.run.declared_graph``: who may hand off to whom, who publishes and subscribes where."""

    agents: tuple[str, ...] = ()
    edges: frozenset[tuple[str, str]] = frozenset()
    subscriptions: frozenset[tuple[str, str]] = frozenset()  # (topic, agent)
    publishes: frozenset[tuple[str, str]] = frozenset()  # (agent, topic)

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(t for t, _ in self.subscriptions) | frozenset(t for _, t in self.publishes)

    @classmethod
    def parse(cls, value: Any) -> DeclaredGraph | None:
        """The declared graph from the root attribute (JSON text or an object); None when absent or unreadable."""
        doc = json_or_text(value) if isinstance(value, str) else value
        if not isinstance(doc, dict):
            return None

        def pairs(key: str) -> frozenset[tuple[str, str]]:
            out = set()
            for item in doc.get(key) or ():
                if (
                    isinstance(item, list | tuple)
                    and len(item) == 2
                    and all(isinstance(x, str) for x in item)
                ):
                    out.add((item[0], item[1]))
            return frozenset(out)

        agents = tuple(str(a) for a in doc.get("agents") or () if isinstance(a, str))
        return cls(agents, pairs("edges"), pairs("subscriptions"), pairs("publishes"))


@dataclass(frozen=True, slots=True)
class Present:
    """How much of each kind of record a run has."""

    reads: int
    versions: int
    messages: int
    events: frozenset[str]  # names of the agentrace.* span events it has


@dataclass(frozen=True, slots=True)
class StepRow:
    """An agent step: an ``invoke_agent`` span (or, in a foreign trace, what stands for one)."""

    span_id: str
    parent_span_id: str
    agent: str
    start_ns: int
    end_ns: int
    error: bool
    outcome: str  # ok | failed | rejected | breaker_open | timeout
    from_: tuple[str, ...] = ()
    attempt: int | None = None
    breaker_rejected: bool = False
    breaker: str | None = None  # the breaker that refused it, when the span names one


@dataclass(frozen=True, slots=True)
class PublishRow:
    span_id: str
    message_id: str | None
    topic: str | None
    key: str | None
    agent: str | None
    time_ns: int


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One ``process {topic}`` span: a delivery of a message to a consumer group, and its fate.

    ``fate``: ``ok`` (acked; in a foreign trace, which records no acks, completed
    without error), ``duplicate`` (the consumer saw it had processed it already),
    ``failed`` (nacked or errored), ``unacked`` (an agentrace delivery never acked),
    ``dead_lettered``, ``lost`` (dropped by the bus).
    """

    span_id: str
    message_id: str | None
    topic: str | None
    group: str | None
    consumer: str | None
    agent: str | None
    attempt: int | None
    start_ns: int
    end_ns: int
    ack: str | None
    fault: str | None
    error: bool
    fate: str

    @property
    def group_key(self) -> str:
        """The consumer group, or the consumer where a trace names no group."""
        return self.group or self.consumer or self.agent or ""

    def serves(self, subscriber: str) -> bool:
        return subscriber in (self.group, self.agent, self.consumer)


@dataclass(frozen=True, slots=True)
class EventRow:
    """A span event with the facts of its span that detectors need."""

    span_id: str
    seq: int
    time_ns: int
    attributes: dict[str, Any]
    agent: str | None
    span_start_ns: int
    span_end_ns: int
    operation: str | None


@dataclass(frozen=True, slots=True)
class LostMessage:
    publish: PublishRow
    missing: tuple[str, ...]  # subscribers that never handled it
    deliveries: tuple[DeliveryRow, ...]


@dataclass(slots=True)
class MessageFates:
    """Per message: who processed it how often, and which subscribers never handled it."""

    # (topic, message id, group) -> the deliveries that processed the message, in time order
    processed: dict[tuple[str | None, str, str], list[DeliveryRow]] = field(default_factory=dict)
    lost: list[LostMessage] = field(default_factory=list)
    # span id of a delivery -> the outcome its deliver edge counts
    edge_outcome: dict[str, str] = field(default_factory=dict)
    # span id of a delivery -> (version, keys) it committed, for the deliveries looked at
    effects: dict[str, list[tuple[int, tuple[str, ...]]]] = field(default_factory=dict)

    @property
    def duplicates(self) -> list[tuple[tuple[str | None, str, str], list[DeliveryRow]]]:
        return [(k, ds) for k, ds in self.processed.items() if len(ds) > 1]


class RunContext:
    """One run of a store, as the detectors see it. Properties load on first use and are kept.

    Not thread-safe; one analysis uses one context.
    """

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self._events: dict[str, list[EventRow]] = {}

    @cached_property
    def run(self) -> Run:
        return self.store.run(self.run_id)

    @cached_property
    def is_agentrace(self) -> bool:
        """Recorded by agentrace's engine (or anyone following its conventions), not imported."""
        return (self.run.pattern or "") in AGENTRACE_PATTERNS

    @cached_property
    def declared(self) -> DeclaredGraph | None:
        return DeclaredGraph.parse(self.run.attributes.get(c.RUN_DECLARED_GRAPH))

    @cached_property
    def flow_runs(self) -> list[str]:
        """The runs of this run's flow (joined by span links; docs/store.md), this one first
        when it heads the flow. A run no link joins is a flow of one."""
        flow = self.run.flow_id or self.run_id
        rows = self.store.sql(
            "SELECT run_id FROM runs WHERE flow_id = ? ORDER BY start_ns, run_id", [flow]
        ).fetchall()
        ids = [r[0] for r in rows]
        return ids if self.run_id in ids else [self.run_id]

    @cached_property
    def heads_flow(self) -> bool:
        """The bus of a flow is analysed once, in its first run (its ``flow_id``)."""
        return (self.run.flow_id or self.run_id) == self.run_id

    @cached_property
    def present(self) -> Present:
        """What the run has at all, in one query, so detectors with nothing to read skip theirs
        (a store of a hundred small runs is analysed in a hundred times a few queries)."""
        row = self.store.sql(
            """SELECT (SELECT count(*) FROM state_reads WHERE run_id = $run),
                      (SELECT count(*) FROM state_versions WHERE run_id = $run),
                      (SELECT count(*) FROM messages WHERE run_id IN (SELECT unnest($flow))),
                      (SELECT list(DISTINCT name) FROM span_events
                       WHERE trace_id = $run AND starts_with(name, 'agentrace.'))""",
            {"run": self.run_id, "flow": self.flow_runs if self.heads_flow else []},
        ).fetchall()[0]
        return Present(row[0], row[1], row[2], frozenset(row[3] or ()))

    @cached_property
    def end_ns(self) -> int:
        return self.run.end_ns

    @cached_property
    def topics(self) -> frozenset[str]:
        """Topics declared or seen on the bus."""
        seen = {p.topic for p in self.publishes if p.topic} | {
            d.topic for d in self.deliveries if d.topic
        }
        return frozenset(seen) | (self.declared.topics if self.declared else frozenset())

    # -- steps ---------------------------------------------------------------------------------

    @cached_property
    def steps(self) -> list[StepRow]:
        """Agent steps in start order."""
        if self.is_agentrace:
            rows = self.store.sql(
                """SELECT span_id, parent_span_id, agent, start_ns, end_ns, status_code = 'ERROR',
                          attributes->>$outcome,
                          CASE json_type(attributes->$from)
                              WHEN 'ARRAY' THEN CAST(attributes->$from AS VARCHAR[])
                              WHEN 'VARCHAR' THEN [attributes->>$from] END,
                          attributes->>$attempt,
                          attributes->>$rejected, attributes->>$breaker
                   FROM spans WHERE trace_id = $run AND operation = 'invoke_agent' AND agent IS NOT NULL
                   ORDER BY start_ns, span_id""",
                {
                    "run": self.run_id,
                    "outcome": c.STEP_OUTCOME,
                    "from": c.AGENT_FROM,
                    "attempt": c.AGENT_ATTEMPT,
                    "rejected": c.BREAKER_REJECTED,
                    "breaker": c.BREAKER_NAME,
                },
            ).fetchall()
            out = []
            for (
                sid,
                pid,
                agent,
                start,
                end,
                error,
                outcome,
                from_,
                attempt,
                rejected,
                breaker,
            ) in rows:
                rejected_flag = rejected == "true"
                if not outcome:
                    outcome = "breaker_open" if rejected_flag else "failed" if error else "ok"
                out.append(
                    StepRow(sid, pid, agent, start, end, bool(error), outcome, tuple(from_ or ()),
                            _int_or_none(attempt), rejected_flag or outcome == "breaker_open", breaker)
                )  # fmt: skip
            return out
        # Foreign traces: the importer has mapped GenAI, OpenInference (LangGraph nodes,
        # OpenAI Agents SDK agents) and OpenLLMetry spans onto operation and agent.
        rows = self.store.sql(
            """SELECT span_id, parent_span_id, agent, start_ns, end_ns, status_code = 'ERROR'
               FROM spans WHERE trace_id = $run AND operation = 'invoke_agent' AND agent IS NOT NULL
               ORDER BY start_ns, span_id""",
            {"run": self.run_id},
        ).fetchall()
        return [
            StepRow(sid, pid, agent, start, end, bool(error), "failed" if error else "ok")
            for sid, pid, agent, start, end, error in rows
        ]

    @cached_property
    def inferred_handoffs(self) -> list[tuple[str, str, str, str, int, str]]:
        """Foreign traces: handoffs as ``(from, to, outcome, span id, time, how)``, told by the
        spans; ``how`` is ``recorded``, ``delegation`` (nested) or ``sequence``.

        A recorded handoff span (``operation=handoff``, the OpenAI Agents SDK's
        ``handoff to {agent}``) is one. A step nested (through any spans) inside another
        agent's step was handed off by that agent (a delegation: a tool that calls an
        agent). Where a trace records no handoff spans, a top-level step follows the
        previous top-level step when that was another agent's and had ended before it
        began (a graph's nodes one after another).
        """
        steps = self.steps
        explicit = self.store.sql(
            """SELECT span_id, agent, coalesce(attributes->>'output.value', regexp_replace(name, '^handoff to ', '')),
                      start_ns, status_code = 'ERROR'
               FROM spans WHERE trace_id = ? AND operation = 'handoff' AND agent IS NOT NULL
               ORDER BY start_ns, span_id""",
            [self.run_id],
        ).fetchall()
        out = [
            (src, dst, "failed" if err else "ok", sid, t, "recorded")
            for sid, src, dst, t, err in explicit
            if dst
        ]
        if not steps:
            return out
        by_id = {s.span_id: s for s in steps}
        parent = dict(
            self.store.sql(
                "SELECT span_id, parent_span_id FROM spans WHERE trace_id = ?", [self.run_id]
            ).fetchall()
        )

        def enclosing(s: StepRow) -> StepRow | None:
            hops = 0
            p = s.parent_span_id
            while p and hops < 10_000:  # a cycle in bad input must not hang the analysis
                if p in by_id:
                    return by_id[p]
                p = parent.get(p, "")
                hops += 1
            return None

        prev: StepRow | None = None
        for s in steps:
            outer = enclosing(s)
            if outer is not None:
                if outer.agent != s.agent:
                    out.append(
                        (outer.agent, s.agent, s.outcome, s.span_id, s.start_ns, "delegation")
                    )
                continue
            if (
                not explicit
                and prev is not None
                and prev.agent != s.agent
                and prev.end_ns <= s.start_ns
            ):
                out.append((prev.agent, s.agent, s.outcome, s.span_id, s.start_ns, "sequence"))
            prev = s
        out.sort(key=lambda h: (h[4], h[3]))
        return out

    # -- events ----------------------------------------------------------------------------------

    def events(self, name: str) -> list[EventRow]:
        """Every span event called ``name``, in time order, with its span's agent and times."""
        cached = self._events.get(name)
        if cached is None and name.startswith("agentrace.") and name not in self.present.events:
            cached = self._events[name] = []
        if cached is None:
            rows = self.store.sql(
                """SELECT e.span_id, e.seq, e.time_ns, e.attributes, s.agent, s.start_ns, s.end_ns, s.operation
                   FROM span_events e JOIN spans s ON s.trace_id = e.trace_id AND s.span_id = e.span_id
                   WHERE e.trace_id = $run AND e.name = $name
                   ORDER BY e.time_ns, e.span_id, e.seq""",
                {"run": self.run_id, "name": name},
            ).fetchall()
            cached = [
                EventRow(r[0], r[1], r[2], orjson.loads(r[3]), r[4], r[5], r[6], r[7]) for r in rows
            ]
            self._events[name] = cached
        return cached

    # -- the bus -------------------------------------------------------------------------------

    @cached_property
    def publishes(self) -> list[PublishRow]:
        """Messages published in the flow (this run's alone when it is not part of one).

        From a foreign trace, one message per publish: a PRODUCER span inside another of the
        same destination (pika opens two per publish) is the same message, kept once, and a
        message whose producer set no id is known by its producer span's id.
        """
        if not self.present.messages:
            return []
        rows = self.store.sql(
            """SELECT m.span_id, coalesce(m.message_id, m.span_id), m.topic, m.msg_key, m.agent,
                      m.time_ns
               FROM messages m
               WHERE m.run_id IN (SELECT unnest($flow)) AND m.event = 'publish'
                 AND NOT (m.derived IS NOT NULL AND EXISTS (
                     SELECT 1 FROM spans c JOIN messages cm
                         ON cm.run_id = c.trace_id AND cm.span_id = c.span_id AND cm.event = 'publish'
                     WHERE c.trace_id = m.run_id AND c.parent_span_id = m.span_id
                       AND cm.topic IS NOT DISTINCT FROM m.topic
                       AND (m.message_id IS NULL OR cm.message_id = m.message_id)))
               ORDER BY m.time_ns, m.span_id""",
            {"flow": self.flow_runs},
        ).fetchall()
        return [PublishRow(*r) for r in rows]

    @cached_property
    def deliveries(self) -> list[DeliveryRow]:
        if not self.present.messages:
            return []
        # A consumer carries its producer's context as its parent or as a link: where the
        # message has no id of its own, it is known by that producer span (see publishes).
        rows = self.store.sql(
            """WITH m AS (
                   SELECT run_id, span_id,
                          any_value(message_id) AS message_id, any_value(topic) AS topic,
                          any_value(consumer_group) AS grp, any_value(consumer) AS consumer,
                          any_value(agent) AS agent, max(attempt) AS attempt,
                          arg_max(outcome, time_ns) FILTER (WHERE event = 'ack') AS ack,
                          any_value(fault) FILTER (WHERE fault IS NOT NULL) AS fault,
                          bool_or(derived IS NOT NULL) AS derived
                   FROM messages WHERE run_id IN (SELECT unnest($flow)) AND event IN ('deliver', 'ack')
                   GROUP BY run_id, span_id),
               producer AS (
                   SELECT s.trace_id, s.span_id, s.parent_span_id AS pid, s.trace_id AS ptid
                   FROM spans s SEMI JOIN m ON m.run_id = s.trace_id AND m.span_id = s.span_id
                   UNION ALL
                   SELECT l.trace_id, l.span_id, l.linked_span_id, l.linked_trace_id
                   FROM span_links l SEMI JOIN m ON m.run_id = l.trace_id AND m.span_id = l.span_id),
               origin AS (
                   SELECT p.trace_id, p.span_id, min(p.pid) AS pid FROM producer p
                   JOIN spans ps ON ps.trace_id = p.ptid AND ps.span_id = p.pid AND ps.kind = 'PRODUCER'
                   GROUP BY p.trace_id, p.span_id)
               SELECT m.span_id,
                      CASE WHEN m.message_id IS NOT NULL OR NOT m.derived THEN m.message_id
                           ELSE o.pid END,
                      m.topic, m.grp, m.consumer, m.agent, m.attempt,
                      s.start_ns, s.end_ns, m.ack, m.fault, s.status_code = 'ERROR'
               FROM m JOIN spans s ON s.trace_id = m.run_id AND s.span_id = m.span_id
               LEFT JOIN origin o ON o.trace_id = m.run_id AND o.span_id = m.span_id
               ORDER BY s.start_ns, m.span_id""",
            {"flow": self.flow_runs},
        ).fetchall()
        out = []
        for sid, mid, topic, grp, consumer, agent, attempt, start, end, ack, fault, error in rows:
            if ack:
                fate = _ACK_FATE.get(ack, "failed")
            elif error:
                fate = "failed"
            else:
                # Our bus acks every delivery it settles: none means the consumer never
                # did. Foreign traces record no acks, so there a clean span is a processing.
                fate = "unacked" if self.is_agentrace else "ok"
            out.append(
                DeliveryRow(
                    sid,
                    mid,
                    topic,
                    grp,
                    consumer,
                    agent,
                    attempt,
                    start,
                    end,
                    ack,
                    fault,
                    bool(error),
                    fate,
                )
            )
        return out

    @cached_property
    def subscribers(self) -> dict[str, frozenset[str]]:
        """Who must handle each message of a topic: the declared subscriptions, or (for
        runs that declare none, foreign ones included) the groups seen consuming the topic
        anywhere in the flow."""
        subs: dict[str, set[str]] = collections.defaultdict(set)
        if self.declared is not None and self.declared.subscriptions:
            for topic, agent in self.declared.subscriptions:
                subs[topic].add(agent)
        else:
            for d in self.deliveries:
                if d.topic is not None and d.group_key:
                    subs[d.topic].add(d.group_key)
        return {t: frozenset(s) for t, s in subs.items()}

    def commits_under(self, roots: Iterable[str]) -> dict[str, list[tuple[int, tuple[str, ...]]]]:
        """For each span of ``roots``: the ``(version, keys)`` committed by it or any span below it."""
        roots = sorted(set(roots))
        if not roots:
            return {}
        rows = self.store.sql(
            """WITH RECURSIVE sub(root, span_id) AS (
                   SELECT span_id, span_id FROM spans
                   WHERE trace_id = $run AND span_id IN (SELECT unnest($roots))
                   UNION ALL
                   SELECT sub.root, s.span_id FROM spans s JOIN sub ON s.parent_span_id = sub.span_id
                   WHERE s.trace_id = $run)
               SELECT sub.root, v.version, v.keys FROM sub
               JOIN state_versions v ON v.run_id = $run AND v.span_id = sub.span_id
               ORDER BY v.version""",
            {"run": self.run_id, "roots": roots},
        ).fetchall()
        out: dict[str, list[tuple[int, tuple[str, ...]]]] = collections.defaultdict(list)
        for root, version, keys in rows:
            out[root].append((version, tuple(keys)))
        return dict(out)

    @cached_property
    def message_fates(self) -> MessageFates:
        """Which deliveries processed their message, which were duplicates, which messages were lost.

        A delivery *processed* its message when it was acked (or, in a foreign trace with
        no acks, completed without error), or when it committed state (in its span or
        below) whatever its ack: an effect applied and never acked is still applied. A
        consumer that acked ``duplicate`` noticed and did not process it again.
        """
        fates = MessageFates()
        by_message: dict[tuple[str | None, str], list[DeliveryRow]] = collections.defaultdict(list)
        by_group: dict[tuple[str | None, str, str], list[DeliveryRow]] = collections.defaultdict(
            list
        )
        for d in self.deliveries:
            if d.message_id is None:
                fates.edge_outcome[d.span_id] = d.fate
                continue
            by_message[(d.topic, d.message_id)].append(d)
            by_group[(d.topic, d.message_id, d.group_key)].append(d)
        # Effects are looked up only where they decide something: a delivery not already
        # known as processed, or one of several deliveries to one group.
        unsure = [
            d.span_id
            for ds in by_group.values()
            for d in ds
            if d.ack != "duplicate" and (len(ds) > 1 or d.fate not in HANDLED_FATES)
        ]
        fates.effects = self.commits_under(unsure)

        def processed(d: DeliveryRow) -> bool:
            return d.ack != "duplicate" and (d.fate == "ok" or bool(fates.effects.get(d.span_id)))

        for d in self.deliveries:
            if d.message_id is None:
                continue
            if processed(d):
                seen = fates.processed.setdefault((d.topic, d.message_id, d.group_key), [])
                seen.append(d)
                # The second processing of a message by the same group is the duplicate,
                # whether or not the consumer noticed.
                fates.edge_outcome[d.span_id] = "duplicate" if len(seen) > 1 else "ok"
            else:
                fates.edge_outcome[d.span_id] = d.fate
        subscribers = self.subscribers
        published: set[tuple[str, str]] = set()
        for p in self.publishes:
            if p.message_id is None or p.topic is None or (p.topic, p.message_id) in published:
                continue
            published.add((p.topic, p.message_id))
            ds = by_message.get((p.topic, p.message_id), [])
            missing = tuple(
                sorted(
                    s
                    for s in subscribers.get(p.topic, ())
                    if not any(
                        d.serves(s) and (d.fate in HANDLED_FATES or processed(d)) for d in ds
                    )
                )
            )
            if missing:
                fates.lost.append(LostMessage(p, missing, tuple(ds)))
            elif not self.is_agentrace and not ds and p.topic not in subscribers:
                # A foreign message nobody in the flow ever consumed, on a destination no one
                # consumes: published into the void (or to consumers that record nothing).
                fates.lost.append(LostMessage(p, (), ()))
        return fates

    # -- the graph -----------------------------------------------------------------------------

    @cached_property
    def graph(self) -> nx.MultiDiGraph:
        from ._graph import build_graph

        return build_graph(self)
