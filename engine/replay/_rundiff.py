"""Two runs compared: version by version (state diffs) and step by step (spans).

:func:`diff_runs` reads both runs through the store and returns a frozen
:class:`RunDiff` (pure data, for ``agentrace diff`` and the debugger alike):

- **versions**: version ``n`` of one run against version ``n`` of the other.
  Equal chain hashes mean equal documents up to there; otherwise the leaf
  changes (``tracer.FieldChange``, JSON Pointer paths) from A's document to B's.
  A version only one run has is ``only_a`` / ``only_b``.
- **steps**: spans matched by name and by their order among spans of that name
  (``invoke_agent pricing`` #2 of A against #2 of B; the root is left out). A
  span only B has is ``added``, one only A has ``missing``; a matched pair whose
  outcome, status, input or output differ is ``changed`` (``fields`` says which).

The outcome of a span is its ``agentrace.step.outcome`` (agent steps), the
outcome of its ack (bus deliveries), else ``ok`` or ``error`` from its status.
Inputs and outputs are ``agentrace.agent.input``/``output`` or, for imported
traces, ``input.value``/``output.value``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from tracer import FieldChange, Store, field_changes, reads
from tracer import conventions as c

from ..core._ledger import JSON, copy_out
from ._model import shorten

VersionStatus = Literal["same", "changed", "only_a", "only_b"]
StepStatus = Literal["same", "changed", "added", "missing"]


@dataclass(frozen=True, slots=True)
class VersionDiff:
    """Version ``version`` of run A against run B (see the module docstring)."""

    version: int
    status: VersionStatus
    agent_a: str | None = None
    agent_b: str | None = None
    kind_a: str | None = None
    kind_b: str | None = None
    changes: tuple[FieldChange, ...] = ()


@dataclass(frozen=True, slots=True)
class StepDiff:
    """A span of run A against its counterpart in run B (see the module docstring).

    ``occurrence`` counts spans of that ``name`` from 1; ``fields`` names what differs
    in a ``changed`` pair (``outcome``, ``status``, ``input``, ``output``)."""

    name: str
    occurrence: int
    status: StepStatus
    agent: str | None = None
    span_a: str | None = None
    span_b: str | None = None
    outcome_a: str | None = None
    outcome_b: str | None = None
    fields: tuple[str, ...] = ()
    output_a: JSON = None
    output_b: JSON = None

    @property
    def key(self) -> str:
        return f"{self.name} #{self.occurrence}"


@dataclass(frozen=True, slots=True, eq=False)
class RunDiff:
    """Run ``run_a`` against run ``run_b``: every version and every span (see the module docstring)."""

    run_a: str
    run_b: str
    workflow_a: str | None
    workflow_b: str | None
    status_a: str | None
    status_b: str | None
    versions: tuple[VersionDiff, ...]
    steps: tuple[StepDiff, ...]

    @property
    def same(self) -> bool:
        """No version and no span differs (and the runs ended alike)."""
        return (
            self.status_a == self.status_b
            and all(v.status == "same" for v in self.versions)
            and all(s.status == "same" for s in self.steps)
        )

    @property
    def changed_versions(self) -> tuple[VersionDiff, ...]:
        return tuple(v for v in self.versions if v.status != "same")

    @property
    def first_changed_version(self) -> VersionDiff | None:
        return next((v for v in self.versions if v.status != "same"), None)

    def steps_with(self, status: StepStatus) -> tuple[StepDiff, ...]:
        return tuple(s for s in self.steps if s.status == status)

    def summary(self) -> str:
        """One line: how many versions and spans differ."""
        if self.same:
            return f"runs {self.run_a[:12]} and {self.run_b[:12]} are the same"
        v = self.changed_versions
        first = f" (first: version {v[0].version})" if v else ""
        return (
            f"{len(v)} of {len(self.versions)} versions differ{first}; spans: "
            f"{len(self.steps_with('added'))} added, {len(self.steps_with('missing'))} missing, "
            f"{len(self.steps_with('changed'))} changed"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "run_a": self.run_a, "run_b": self.run_b, "workflow_a": self.workflow_a,
            "workflow_b": self.workflow_b, "status_a": self.status_a, "status_b": self.status_b,
            "same": self.same,
            "versions": [
                {"version": v.version, "status": v.status, "agent_a": v.agent_a, "agent_b": v.agent_b,
                 "changes": [{"path": ch.path, "change": ch.change, "old": ch.old, "new": ch.new}
                             for ch in v.changes]}
                for v in self.versions if v.status != "same"
            ],
            "steps": [
                {"name": s.name, "occurrence": s.occurrence, "status": s.status, "agent": s.agent,
                 "span_a": s.span_a, "span_b": s.span_b, "outcome_a": s.outcome_a,
                 "outcome_b": s.outcome_b, "fields": list(s.fields)}
                for s in self.steps if s.status != "same"
            ],
        }  # fmt: skip

    def describe(self, width: int = 100) -> list[str]:
        """Lines for people: the differing versions with their field changes, then the spans."""
        lines = [self.summary()]
        if self.status_a != self.status_b:
            lines.append(f"status: {self.status_a} → {self.status_b}")
        shown: set[tuple[str, str, str]] = set()
        for v in self.changed_versions:
            a, b = v.agent_a or "no agent", v.agent_b or "no agent"
            who = a if a == b else f"{a} / {b}"
            if v.status == "only_a":
                lines.append(f"version {v.version} ({a}): only in A")
                continue
            if v.status == "only_b":
                lines.append(f"version {v.version} ({b}): only in B")
                continue
            lines.append(f"version {v.version} ({who}):")
            # Documents carry earlier differences along: show each one where it first appears.
            fresh = []
            now: set[tuple[str, str, str]] = set()
            for ch in v.changes:
                sig = (ch.path, _text(ch.old), _text(ch.new))
                now.add(sig)
                if sig not in shown:
                    fresh.append(ch)
            carried = len(v.changes) - len(fresh)
            shown = now
            for ch in fresh:
                if ch.change == "added":
                    text = f"+ {ch.path} = {shorten(ch.new, width // 2)}"
                elif ch.change == "removed":
                    text = f"- {ch.path} (was {shorten(ch.old, width // 2)})"
                else:
                    text = f"~ {ch.path}: {shorten(ch.old, width // 3)} → {shorten(ch.new, width // 3)}"
                lines.append(f"    {text}")
            if carried:
                lines.append(
                    f"    ({carried} difference(s) carried over from version {v.version - 1})"
                )
        for s in self.steps:
            if s.status == "same":
                continue
            if s.status == "changed":
                what = ", ".join(s.fields)
                detail = f"{s.outcome_a} → {s.outcome_b}" if "outcome" in s.fields else what
                lines.append(f"changed  {s.key}: {detail}")
            else:
                lines.append(f"{s.status:<8} {s.key} ({s.outcome_a or s.outcome_b})")
        return lines


def diff_runs(store: Store, run_a: str, run_b: str) -> RunDiff:
    """Compare run ``run_a`` with run ``run_b`` (ids or unique prefixes) in ``store``."""
    a, b = store.resolve_run(run_a), store.resolve_run(run_b)
    ra, rb = store.run(a), store.run(b)
    return RunDiff(
        a, b, ra.workflow, rb.workflow, ra.status, rb.status,
        tuple(_versions(store, a, b)), tuple(_steps(store, a, b)),
    )  # fmt: skip


# -- versions ---------------------------------------------------------------------------------


def _versions(store: Store, a: str, b: str) -> list[VersionDiff]:
    rows = reads.state_versions(store, [a, b])
    rows_a = [r for r in rows if r.run_id == a]
    rows_b = [r for r in rows if r.run_id == b]
    # Both documents move forward in step (in place: only the current pair is compared).
    walk_a = reads.states(((r.version, r.snapshot, r.patch) for r in rows_a), a)
    walk_b = reads.states(((r.version, r.snapshot, r.patch) for r in rows_b), b)
    doc_a: JSON = None
    doc_b: JSON = None
    out = []
    for i in range(max(len(rows_a), len(rows_b))):
        ra = rows_a[i] if i < len(rows_a) else None
        rb = rows_b[i] if i < len(rows_b) else None
        if ra is not None:
            doc_a = next(walk_a)[1]
        if rb is not None:
            doc_b = next(walk_b)[1]
        n = i + 1
        if ra is None or rb is None:
            r = ra or rb
            assert r is not None
            status: VersionStatus = "only_a" if rb is None else "only_b"
            agent, kind = r.agent, r.kind
            out.append(
                VersionDiff(n, status, agent if ra else None, agent if rb else None,
                            kind if ra else None, kind if rb else None)
            )  # fmt: skip
            continue
        same_hash = ra.hash is not None and ra.hash == rb.hash
        # Copied out: the documents are patched in place as the loop moves on.
        changes = () if same_hash else tuple(
            FieldChange(ch.path, ch.change, copy_out(ch.old), copy_out(ch.new))
            for ch in field_changes(doc_a, doc_b)
        )  # fmt: skip
        same = not changes and ra.agent == rb.agent and ra.kind == rb.kind
        out.append(
            VersionDiff(
                n, "same" if same else "changed", ra.agent, rb.agent, ra.kind, rb.kind, changes
            )
        )
    return out


# -- steps ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SpanFacts:
    span_id: str
    name: str
    agent: str | None
    status: str
    outcome: str
    input: str | None
    output: str | None


def _spans(store: Store, run_id: str) -> dict[tuple[str, int], _SpanFacts]:
    acks: dict[str, str] = {}
    for m in reads.messages(store, [run_id]):
        if m.event == "ack" and m.outcome is not None:
            acks.setdefault(m.span_id, m.outcome)
    seen: dict[str, int] = defaultdict(int)
    out = {}
    for sp in reads.spans(store, [run_id]):
        span_id, parent, name, status, agent, a = (
            sp.span_id,
            sp.parent_span_id,
            sp.name,
            sp.status,
            sp.agent,
            sp.attributes,
        )
        if not parent and a.get(c.GEN_AI_OPERATION_NAME) == c.OP_INVOKE_WORKFLOW:
            continue  # the roots differ by nature (ids, parent links)
        seen[name] += 1
        outcome = a.get(c.STEP_OUTCOME) or acks.get(span_id)
        if not isinstance(outcome, str):
            outcome = "error" if status == "ERROR" else "ok"
        inp = a.get(c.AGENT_INPUT, a.get("input.value"))
        outp = a.get(c.AGENT_OUTPUT, a.get("output.value"))
        out[(name, seen[name])] = _SpanFacts(
            span_id, name, agent, status, outcome,
            inp if isinstance(inp, str) or inp is None else orjson.dumps(inp).decode(),
            outp if isinstance(outp, str) or outp is None else orjson.dumps(outp).decode(),
        )  # fmt: skip
    return out


def _steps(store: Store, a: str, b: str) -> list[StepDiff]:
    sa, sb = _spans(store, a), _spans(store, b)
    keys = list(sa)
    keys.extend(k for k in sb if k not in sa)
    out = []
    for key in keys:
        x, y = sa.get(key), sb.get(key)
        name, n = key
        if x is None:
            assert y is not None
            out.append(StepDiff(name, n, "added", y.agent, None, y.span_id, None, y.outcome))
            continue
        if y is None:
            out.append(StepDiff(name, n, "missing", x.agent, x.span_id, None, x.outcome, None))
            continue
        fields = tuple(
            f
            for f, p, q in (
                ("outcome", x.outcome, y.outcome),
                ("status", x.status, y.status),
                ("input", x.input, y.input),
                ("output", x.output, y.output),
            )
            if p != q
        )
        out.append(
            StepDiff(
                name, n, "changed" if fields else "same", x.agent, x.span_id, y.span_id,
                x.outcome, y.outcome, fields, _json(x.output), _json(y.output),
            )
        )  # fmt: skip
    return out


def _text(value: JSON) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _json(text: str | None) -> JSON:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
