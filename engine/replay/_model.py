"""What a replay reports: divergences, the frozen result, and the errors of replay.

Errors (under the engine's :class:`~engine.EngineError`)::

    EngineError
    └── ReplayError                 a run that cannot be replayed (no workflow, no such version, ...)
        ├── ReplayDivergence        ``ReplayResult.raise_on_divergence()``: the first divergence
        ├── ScheduleViolation       ``Exploration.raise_on_failure()``: the first schedule that
        │                           broke an invariant, with the seed that reproduces it
        └── ReplayGap               raised inside a replayed step that has no recorded counterpart
                                    (the step fails; the divergence says where)

A :class:`Divergence` is one place where the replay did not do what the
recording did: ``kind`` says what differed, ``step`` and ``agent`` where
(the recorded step number, so it matches what the original run shows), and
``expected`` / ``actual`` the two values (plain JSON).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Self, TypeVar

from tracer import FieldChange, canonical_json

from ..core._errors import EngineError
from ..core._ledger import JSON, StateLedger
from ..orchestration._orchestrator import StepRecord

T = TypeVar("T")
DivergenceKind = Literal[
    "step",  # the replay ran a step the recording does not have, or missed one it has
    "attempt",  # a step took another number of attempts
    "input",  # an agent got another input
    "output",  # a live (overridden) agent handed on another output
    "outcome",  # a step ended otherwise (ok, failed, rejected, breaker_open, timeout, ...)
    "read",  # a read was served another version
    "version",  # a state version has other content (or is missing, or is extra)
    "delivery",  # the bus did not deliver or settle as recorded
    "compensation",  # a compensation ended otherwise
]


def shorten(value: JSON, width: int = 120) -> str:
    """``value`` as one line of canonical JSON, cut to ``width`` characters with an ellipsis."""
    text = value if isinstance(value, str) else _text(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def _text(value: JSON) -> str:
    try:
        return canonical_json(value)
    except (TypeError, ValueError):
        return repr(value)


@dataclass(frozen=True, slots=True)
class Divergence:
    """One place where a replay did not do what the recording did (see the module docstring).

    ``step`` is the recorded step number where there is one (else the replay's), ``attempt``
    the attempt, ``version`` the state version concerned; ``changes`` lists the leaf
    differences of two documents (for ``version``, and for ``input``/``output`` objects);
    ``at_ns`` is the replay's clock when it was noticed, which orders divergences.
    """

    kind: DivergenceKind
    step: int | None
    agent: str | None
    expected: JSON = None
    actual: JSON = None
    attempt: int | None = None
    version: int | None = None
    detail: str = ""
    changes: tuple[FieldChange, ...] = ()
    at_ns: int = 0

    @property
    def where(self) -> str:
        """``step 4 (pricing)``, ``version 5``, ``delivery``: where it happened, for people."""
        parts = []
        if self.step is not None:
            parts.append(f"step {self.step}")
        if self.attempt is not None and self.attempt > 1:
            parts.append(f"attempt {self.attempt}")
        if self.version is not None:
            parts.append(f"version {self.version}")
        where = ", ".join(parts) or self.kind
        return f"{where} ({self.agent})" if self.agent else where

    def summary(self, width: int = 80) -> str:
        """One line: where, what, and the expected and actual values shortened to ``width``."""
        line = f"{self.where}: {self.kind}"
        if self.detail:
            line += f": {self.detail}"
        if self.changes:
            shown = "; ".join(_change(c, width // 2) for c in self.changes[:3])
            more = f" (+{len(self.changes) - 3} more)" if len(self.changes) > 3 else ""
            return f"{line}: {shown}{more}"
        if self.expected is not None or self.actual is not None:
            line += f": expected {shorten(self.expected, width)}, got {shorten(self.actual, width)}"
        return line

    def __str__(self) -> str:
        return self.summary()

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "step": self.step, "agent": self.agent, "attempt": self.attempt,
            "version": self.version, "detail": self.detail, "expected": self.expected,
            "actual": self.actual, "changes": [
                {"path": c.path, "change": c.change, "old": c.old, "new": c.new} for c in self.changes
            ],
        }  # fmt: skip


def _change(c: FieldChange, width: int) -> str:
    path = c.path or "/"
    if c.change == "added":
        return f"{path} added {shorten(c.new, width)}"
    if c.change == "removed":
        return f"{path} removed (was {shorten(c.old, width)})"
    return f"{path} {shorten(c.old, width)} → {shorten(c.new, width)}"


class ReplayError(EngineError):
    """A run that cannot be replayed as asked: no workflow to rebuild, no such version, ..."""


class ReplayGap(ReplayError):
    """Raised inside a replayed step that has no recorded counterpart: the step fails there."""


class ReplayDivergence(ReplayError):
    """A replay (or a trace check) of ``run_id`` diverged; ``divergence`` is the first of
    ``divergences``, ``result`` the replay's result when there is one."""

    def __init__(
        self, run_id: str, divergences: Sequence[Divergence], result: Compared | None = None
    ) -> None:
        self.run_id = run_id
        self.divergences = tuple(divergences)
        self.divergence = self.divergences[0]
        self.result = result
        more = len(self.divergences) - 1
        tail = f" (and {more} more)" if more else ""
        super().__init__(f"replay of run {run_id} diverged at {self.divergence.summary(100)}{tail}")


class Compared:
    """What every replay result shares, whatever ran it (the engine, a LangGraph graph): the
    divergences found, the first of them, raising on them, and the JSON of the comparison."""

    __slots__ = ()
    run_id: str | None
    parent_run_id: str
    workflow: str
    mode: Literal["replay", "fork"]
    status: str
    original_status: str | None
    divergences: tuple[Divergence, ...]
    fork_version: int | None
    overrides: tuple[str, ...]
    recorded: bool

    @property
    def diverged(self) -> bool:
        return bool(self.divergences)

    @property
    def first_divergence(self) -> Divergence | None:
        return self.divergences[0] if self.divergences else None

    def raise_on_divergence(self) -> Self:
        """This result, or :class:`ReplayDivergence` naming the first divergence."""
        if self.divergences:
            raise ReplayDivergence(self.parent_run_id, self.divergences, self)
        return self

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "parent_run_id": self.parent_run_id, "workflow": self.workflow,
            "mode": self.mode, "fork_version": self.fork_version, "status": self.status,
            "original_status": self.original_status, "diverged": self.diverged,
            "overrides": list(self.overrides), "recorded": self.recorded,
            "divergences": [d.to_json() for d in self.divergences],
        }  # fmt: skip


@dataclass(frozen=True, slots=True, eq=False)
class ReplayResult(Compared):
    """What a replay or a fork did: the new run, linked to the original, and how it compares.

    ``run_id`` is the new run (recorded with ``agentrace.run.parent`` = ``parent_run_id``, and
    ``agentrace.run.fork_version`` for a fork); ``divergences`` are ordered as they happened,
    in the replayed part only (after a fork's ``fork_version`` everything runs live and
    nothing is compared: diff the two runs for that). ``steps`` and ``ledger`` are the new
    run's, as the engine returned them. The caller chooses between inspecting
    (``diverged``, ``first_divergence``) and raising (:meth:`raise_on_divergence`).
    """

    run_id: str
    parent_run_id: str
    workflow: str
    mode: Literal["replay", "fork"]
    status: str
    original_status: str | None
    divergences: tuple[Divergence, ...]
    steps: tuple[StepRecord, ...] = field(repr=False)
    ledger: StateLedger = field(repr=False)
    fork_version: int | None = None
    overrides: tuple[str, ...] = ()
    recorded: bool = True
    error: BaseException | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """No divergence, and the new run ended as the original did."""
        return not self.divergences and self.status == self.original_status

    @property
    def state(self) -> dict[str, JSON]:
        """A copy of the new run's final state."""
        return self.ledger.document()

    def state_at(self, version: int) -> dict[str, JSON]:
        """A copy of the new run's state at ``version``."""
        return self.ledger.document(version)

    def report(self, width: int = 100) -> str:
        """A few lines for people: the new run, the mode, and the first divergences."""
        lines = [f"{self.mode} of run {self.parent_run_id}: new run {self.run_id}"]
        if self.fork_version is not None:
            lines.append(f"forked at version {self.fork_version}; live from there")
        if self.overrides:
            lines.append(f"overridden: {', '.join(self.overrides)}")
        lines.append(
            f"status {self.status} (recorded: {self.original_status}), "
            f"{len(self.steps)} steps, {len(self.ledger)} versions"
        )
        if not self.divergences:
            lines.append("no divergence")
        else:
            lines.append(f"DIVERGED: {len(self.divergences)} divergence(s); the first:")
            lines.extend(f"  {d.summary(width)}" for d in self.divergences[:1])
            lines.extend(f"  then {d.summary(width)}" for d in self.divergences[1:3])
        return "\n".join(lines)


def load_ref(ref: str, what: str = "workflow") -> Any:
    """The object an import path ``package.module:attr.path`` names (ReplayError if none).

    Only for paths a user typed (``--workflow``, ``--override``, ``--invariant``): never
    for a name read from a trace."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ReplayError(f"{what} {ref!r}: give an import path like 'package.module:name'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ReplayError(f"{what} {ref!r}: cannot import {module_name!r}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ReplayError(f"{what} {ref!r}: {module_name!r} has no {attr!r}") from None
    return obj


# Shown as ``engine.ReplayDivergence`` (where users import them from) in tracebacks.
for _cls in (ReplayError, ReplayGap, ReplayDivergence):
    _cls.__module__ = "engine"
