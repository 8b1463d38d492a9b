"""A recorded engine run, read back from the store for replay: steps, versions, messages.

:func:`load_recording` reads one run through the tracer's read API (the store's
documented tables, docs/store.md) in five queries, whatever the run's size:
its spans, their ``exception`` events, and the ``state_versions``,
``state_reads`` and ``messages`` rows. It rebuilds every state version from
its snapshot or patch once, keeping for each the top-level values it wrote:
what a replayed step hands back to the ledger.

Everything here is frozen; a :class:`Recording` may be shared by replays and threads.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from tracer import Run, Store, StoreError, reads
from tracer import conventions as c

from ..core._ledger import JSON, copy_out
from ._model import ReplayError


class RecordedRead(NamedTuple):
    """One ``agentrace.state.read`` of a recorded step."""

    version: int
    head_version: int | None
    keys: tuple[str, ...]
    via: str
    cache: str | None


class RecordedAttempt(NamedTuple):
    """One ``invoke_agent`` (or ``compensate``) span: an attempt of a step.

    ``input`` and ``output`` are the canonical JSON texts as recorded (None when absent);
    ``version`` the state version the attempt committed, if any. A NamedTuple, as the
    engine's per-step records are: one is read per span, and it builds 4x faster.
    """

    span_id: str
    parent_span_id: str
    agent: str
    step: int
    attempt: int
    input: str | None
    output: str | None
    outcome: str
    error_type: str | None
    error_message: str | None
    reads: tuple[RecordedRead, ...]
    version: int | None
    start_ns: int
    end_ns: int
    sources: tuple[str, ...] = ()

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    @property
    def input_value(self) -> JSON:
        return parse_json(self.input)

    @property
    def output_value(self) -> JSON:
        return parse_json(self.output)


class RecordedStep(NamedTuple):
    """A step of a recorded run: every attempt of one agent at one step number."""

    step: int
    agent: str
    attempts: tuple[RecordedAttempt, ...]

    @property
    def outcome(self) -> str:
        return self.attempts[-1].outcome

    @property
    def called(self) -> bool:
        """Whether the agent was called at all (every attempt refused by a breaker: not)."""
        return any(a.outcome != "breaker_open" for a in self.attempts)

    @property
    def start_ns(self) -> int:
        return self.attempts[0].start_ns

    def attempt(self, n: int) -> RecordedAttempt | None:
        for a in self.attempts:
            if a.attempt == n:
                return a
        return None


class RecordedVersion(NamedTuple):
    """A recorded state version, with the top-level values it wrote (``changes``) and the
    keys it removed (``deleted``): enough to commit it again. A NamedTuple: one per version."""

    version: int
    parent_version: int | None
    base_version: int | None
    kind: str
    agent: str | None
    span_id: str
    hash: str | None
    keys: tuple[str, ...]
    changes: Mapping[str, JSON]
    deleted: tuple[str, ...]
    committed_ns: int


@dataclass(frozen=True, slots=True)
class RecordedMessage:
    """A published message: its ``send`` span, and its place among the run's messages on
    its topic (``ordinal``, from 0), which is how a replay finds it again (ids differ)."""

    message_id: str
    topic: str
    ordinal: int
    key: str | None
    publisher: str | None
    span_id: str
    parent_span_id: str
    time_ns: int


@dataclass(frozen=True, slots=True)
class RecordedDelivery:
    """One ``process`` span: a delivery (``kind="deliver"``) and how it ended (``outcome`` of
    its ack event; None when the consumer died first), or a message the bus dead-lettered
    on its own (``kind="dead_letter"``)."""

    span_id: str
    message_id: str
    topic: str
    ordinal: int | None
    group: str
    consumer: str | None
    attempt: int
    fault: str | None
    outcome: str | None
    kind: str
    time_ns: int


@dataclass(frozen=True, slots=True, eq=False)
class Recording:
    """An engine run as replay needs it (see the module docstring)."""

    run: Run
    steps: tuple[RecordedStep, ...]
    compensations: tuple[RecordedAttempt, ...]
    versions: tuple[RecordedVersion, ...]
    messages: tuple[RecordedMessage, ...] = ()
    deliveries: tuple[RecordedDelivery, ...] = ()
    process_parent: Mapping[str, str] = field(default_factory=dict)  # step span -> process span

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def attributes(self) -> dict[str, Any]:
        return self.run.attributes

    @property
    def seed(self) -> int | None:
        v = self.run.attributes.get(c.RUN_SEED)
        return v if isinstance(v, int) else None

    @property
    def pattern(self) -> str:
        return self.run.pattern or "orchestration"

    @property
    def initial_state(self) -> dict[str, JSON]:
        if not self.versions:
            return {}
        return copy_out(dict(self.versions[0].changes))

    def version(self, n: int) -> RecordedVersion:
        if not 1 <= n <= len(self.versions):
            raise ReplayError(
                f"run {self.run_id} has no state version {n} (it has 1..{len(self.versions)})"
            )
        return self.versions[n - 1]

    def step(self, n: int) -> RecordedStep:
        for s in self.steps:
            if s.step == n:
                return s
        raise ReplayError(f"run {self.run_id} has no step {n}")

    def version_of_step(self, n: int) -> int | None:
        """The version step ``n`` committed (on its last attempt), if any."""
        return self.step(n).attempts[-1].version

    def document(self, n: int) -> dict[str, JSON]:
        """A copy of the state at version ``n``: every version's writes folded up to it."""
        doc: dict[str, JSON] = {}
        for v in self.versions[: self.version(n).version]:
            doc.update(v.changes)
            for k in v.deleted:
                doc.pop(k, None)
        return copy_out(doc)

    def first_input(self, entry_topic: str | None = None) -> JSON:
        """The run's input: what its first step got (for a choreography with an entry
        topic, the first step that handled a message of that topic)."""
        if entry_topic is not None:
            first = {
                m.message_id for m in self.messages if m.topic == entry_topic and m.ordinal == 0
            }
            for s in self.steps:
                proc = self.process_parent.get(s.attempts[0].span_id)
                for d in self.deliveries:
                    if d.span_id == proc and d.message_id in first:
                        return s.attempts[0].input_value
            return None
        return self.steps[0].attempts[0].input_value if self.steps else None

    def entry_key(self, entry_topic: str | None) -> str | None:
        """The ordering key of the run's first message (on ``entry_topic`` when given)."""
        for m in self.messages:
            if entry_topic is None or m.topic == entry_topic:
                return m.key
        return None


def parse_json(text: str | None) -> JSON:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _int(v: Any, default: int = 0) -> int:
    return v if isinstance(v, int) else default


def load_recording(store: Store, run_id: str) -> Recording:
    """Read run ``run_id`` from ``store`` (NotFoundError if it is not there)."""
    return load_recordings(store, [run_id])[run_id]


def load_recordings(store: Store, run_ids: Iterable[str]) -> dict[str, Recording]:
    """Read several runs at once: the same six queries for one run or for thousands."""
    ids = list(dict.fromkeys(run_ids))
    if not ids:
        return {}
    wanted = set(ids)
    if len(ids) <= 8:  # a few: one row each (NotFoundError, worded by the store, if missing)
        runs = {run_id: store.run(run_id) for run_id in ids}
    else:  # many: one listing
        runs = {r.run_id: r for r in store.runs() if r.run_id in wanted}
        for run_id in ids:
            if run_id not in runs:
                store.run(run_id)
    errors = reads.exceptions(store, ids)
    read_rows: dict[str, list[RecordedRead]] = defaultdict(list)
    for r in reads.state_reads(store, ids):
        read_rows[r.span_id].append(RecordedRead(r.version, r.head_version, r.keys, r.via, r.cache))
    versions = _versions(store, ids)
    steps: dict[str, dict[int, list[RecordedAttempt]]] = defaultdict(lambda: defaultdict(list))
    compensations: dict[str, list[RecordedAttempt]] = defaultdict(list)
    parent_of: dict[str, dict[str, str]] = defaultdict(dict)
    committed = {v.span_id: v.version for vs in versions.values() for v in vs if v.version > 1}
    for sp in reads.spans(store, ids, name_prefixes=("invoke_agent ", "compensate ")):
        run_id, span_id, parent, start, end, status = (
            sp.trace_id,
            sp.span_id,
            sp.parent_span_id,
            sp.start_ns,
            sp.end_ns,
            sp.status,
        )
        a = sp.attributes
        agent = a.get(c.GEN_AI_AGENT_NAME)
        step = a.get(c.AGENT_STEP)
        if not isinstance(agent, str) or not isinstance(step, int):
            continue  # not a step of an engine run
        err_type, err_msg = errors.get(span_id, (None, None))
        compensating = a.get(c.GEN_AI_OPERATION_NAME) == c.OP_COMPENSATE
        if compensating:
            outcome = "failed" if status == "ERROR" else "ok"
        else:
            outcome = a.get(c.STEP_OUTCOME) or ("failed" if status == "ERROR" else "ok")
        sources = a.get(c.AGENT_FROM)
        att = RecordedAttempt(
            span_id, parent, agent, step, _int(a.get(c.AGENT_ATTEMPT), 1), a.get(c.AGENT_INPUT),
            a.get(c.AGENT_OUTPUT), str(outcome), err_type, err_msg, tuple(read_rows.get(span_id, ())),
            committed.get(span_id), start, end, tuple(map(str, sources)) if sources else (),
        )  # fmt: skip
        parent_of[run_id][span_id] = parent
        if compensating:
            compensations[run_id].append(att)
        else:
            steps[run_id][step].append(att)
    messages = _messages(store, ids)
    out = {}
    for run_id in ids:
        ordered = []
        for n, atts in sorted(steps[run_id].items()):
            if len(atts) > 1:
                atts.sort(key=lambda x: (x.attempt, x.start_ns))
            ordered.append(RecordedStep(n, atts[0].agent, tuple(atts)))
        msgs, deliveries = messages.get(run_id, ((), ()))
        out[run_id] = Recording(
            runs[run_id], tuple(ordered), tuple(compensations[run_id]),
            versions.get(run_id, ()), msgs, deliveries, parent_of[run_id],
        )  # fmt: skip
    return out


def _versions(store: Store, ids: list[str]) -> dict[str, tuple[RecordedVersion, ...]]:
    by_run: dict[str, list[reads.VersionRow]] = defaultdict(list)
    for row in reads.state_versions(store, ids):
        by_run[row.run_id].append(row)
    out: dict[str, tuple[RecordedVersion, ...]] = {}
    for run_id, rows in by_run.items():
        kept = []
        walk = reads.states(((r.version, r.snapshot, r.patch) for r in rows), run_id)
        try:
            for r, (_, doc) in zip(rows, walk, strict=True):
                if not isinstance(doc, dict):
                    raise ReplayError(
                        f"run {run_id}: state version {r.version} is not a JSON object"
                    )
                # Copied out: the document is patched in place as the walk moves on.
                changes = {k: copy_out(doc[k]) for k in r.keys if k in doc}
                deleted = tuple(k for k in r.keys if k not in doc)
                kept.append(
                    RecordedVersion(
                        r.version, r.parent_version, r.base_version, r.kind, r.agent, r.span_id,
                        r.hash, r.keys, changes, deleted, r.committed_ns,
                    )
                )  # fmt: skip
        except StoreError as exc:
            raise ReplayError(str(exc)) from None
        out[run_id] = tuple(kept)
    return out


def _messages(
    store: Store, ids: list[str]
) -> dict[str, tuple[tuple[RecordedMessage, ...], tuple[RecordedDelivery, ...]]]:
    rows = reads.messages(store, ids)
    if not rows:
        return {}
    parents = {
        sp.span_id: sp.parent_span_id for sp in reads.spans(store, ids, name_prefixes=("send ",))
    }
    by_run: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for r in rows:
        by_run[r[0]].append(r)
    return {run_id: _run_messages(rs, parents) for run_id, rs in by_run.items()}


def _run_messages(
    rows: list[tuple[Any, ...]], parents: dict[str, str]
) -> tuple[tuple[RecordedMessage, ...], tuple[RecordedDelivery, ...]]:
    messages: list[RecordedMessage] = []
    ordinal: dict[str, tuple[str, int]] = {}
    per_topic: dict[str, int] = defaultdict(int)
    # One process span is one delivery: its deliver event, then (maybe) its ack event.
    by_span: dict[str, dict[str, Any]] = {}
    for (
        _run,
        span_id,
        event,
        mid,
        topic,
        key,
        group,
        consumer,
        agent,
        attempt,
        outcome,
        fault,
        at,
    ) in rows:
        if mid is None:
            continue
        if event == "publish":
            if topic is None or mid in ordinal:
                continue
            n = per_topic[topic]
            per_topic[topic] += 1
            ordinal[mid] = (topic, n)
            messages.append(
                RecordedMessage(mid, topic, n, key, agent, span_id, parents.get(span_id, ""), at)
            )
            continue
        d = by_span.setdefault(span_id, {"time": at})
        fact = (mid, topic, group, consumer, attempt, outcome, fault)
        if event == "deliver":
            d["deliver"] = fact
            d["time"] = at
        elif event == "ack":
            d.setdefault("ack", fact)
    deliveries = []
    for span_id, d in by_span.items():
        dv, ack = d.get("deliver"), d.get("ack")
        mid, topic, group, consumer, attempt, _, _ = dv if dv is not None else d["ack"]
        where: tuple[str, int | None] = ordinal.get(mid, (topic or "", None))
        deliveries.append(
            RecordedDelivery(
                span_id, mid, where[0], where[1], group or "", consumer, attempt or 1,
                dv[6] if dv is not None else None, ack[5] if ack is not None else None,
                "deliver" if dv is not None else "dead_letter", d["time"],
            )
        )  # fmt: skip
    deliveries.sort(key=lambda x: (x.time_ns, x.span_id))
    return tuple(messages), tuple(deliveries)
