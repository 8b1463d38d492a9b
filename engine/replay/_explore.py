"""Schedule exploration: run a choreography under many delivery orders, or a workflow under
many interleavings of its parallel branches, and check invariants.

For a :class:`~engine.Workflow`, schedule ``i`` lets each read and commit of a step
wait a number of event-loop turns drawn from seed ``seed + i`` (the step runner's
gate), so parallel branches read and commit in another order; an interleaving
equivalent to one tried already (the same order of reads and commits) is not
checked again. The rest of this docstring is about choreographies.

A choreography is correct only if it is correct under every order the bus may
deliver in. :func:`explore_schedules` runs it ``schedules`` times on the
in-process bus, each time with a seeded fault plan (:class:`SchedulePlan`)
that reorders, duplicates, drops or delays deliveries, and checks the
invariants the test gives after each run. Schedule ``i`` uses seed
``seed + i``: the same seed gives the same schedule (same faults on the same
deliveries), so the first schedule that breaks an invariant is reported with
its seed and reproduced by ``explore_schedules(..., seed=that, schedules=1)``
(or :meth:`Exploration.reproduce`).

An invariant is a callable taking the :class:`~engine.ChoreographyResult`; it
breaks by raising ``AssertionError`` (its message is reported) or returning
``False``; any other exception breaks it too (the exception is reported).

Each schedule runs on its own virtual time and seeded ids, with the agents
live (the recorded outputs belong to the recorded order only). Nothing is
recorded unless a ``recorder`` factory is given (the failing schedule is then
recorded once more, as a run of its own).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracer import FakeClock, Recorder, SeededIds, conventions

from ..choreography._choreographer import Choreographer, Choreography, ChoreographyResult
from ..choreography._faults import AppliedFault, FaultKind, FaultRule, Faults
from ..core._ledger import JSON
from ..core._time import VirtualTime, run_blocking
from ..orchestration._orchestrator import Orchestrator
from ..orchestration._workflow import Workflow
from ._model import ReplayError, load_ref

Invariant = Callable[[ChoreographyResult], object]
Invariants = Mapping[str, Invariant | str] | Sequence[Invariant | str]
RecorderFactory = Callable[[FakeClock, int], Recorder]

# Where each schedule's virtual time starts (as the bundled scenarios' does) and how far
# each clock reading moves it.
START_NS = 1_700_000_000_000_000_000
TICK_NS = 1_000
RUN_SCHEDULE_SEED = conventions.RUN_SCHEDULE_SEED  # on a recorded schedule's root span


@dataclass(frozen=True, slots=True)
class SchedulePlan:
    """How schedules are perturbed: per delivery, the chance of each fault kind.

    ``topics`` (and ``groups``) narrow the deliveries that may be perturbed; by default
    every delivery may be. A ``drop`` is recovered only where the subscription has an
    ack timeout (else the message stays in flight: a lost event, which an invariant
    may well be checking for). ``delay`` holds a delivery back ``delay_seconds``.
    """

    reorder: float = 0.3
    duplicate: float = 0.1
    drop: float = 0.0
    delay: float = 0.0
    delay_seconds: float = 1.0
    topics: tuple[str, ...] | None = None
    groups: tuple[str, ...] | None = None

    def faults(self, seed: int) -> Faults:
        """The fault plan of the schedule seeded ``seed``."""
        odds: list[tuple[FaultKind, float]] = [
            ("drop", self.drop), ("duplicate", self.duplicate), ("delay", self.delay),
            ("reorder", self.reorder),
        ]  # fmt: skip
        rules = []
        for kind, p in odds:
            if p <= 0:
                continue
            for topic in self.topics or (None,):
                for group in self.groups or (None,):
                    rules.append(
                        FaultRule(
                            kind, topic=topic, group=group, probability=p,
                            seconds=self.delay_seconds if kind == "delay" else 0.0,
                        )
                    )  # fmt: skip
        return Faults(rules, seed=seed)


@dataclass(frozen=True, slots=True)
class ScheduleRun:
    """One explored schedule: its seed, how the run ended, the faults it got, and the
    invariants it broke (name, message)."""

    seed: int
    status: str
    faults: tuple[AppliedFault, ...]
    broken: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.broken


@dataclass(frozen=True, slots=True)
class ScheduleFailure:
    """The first schedule that broke an invariant, and how to get it again (``seed``)."""

    seed: int
    index: int
    invariant: str
    message: str
    status: str
    faults: tuple[AppliedFault, ...]
    state: dict[str, JSON] = field(repr=False)
    run_id: str | None = None  # the schedule recorded again as a run, when a recorder was given

    def __str__(self) -> str:
        faults = ", ".join(
            f"{f.kind} {f.topic}→{f.group} (attempt {f.attempt})" for f in self.faults
        )
        return (
            f"invariant {self.invariant!r} broke on schedule {self.index} (seed {self.seed}): "
            f"{self.message}; faults: {faults or 'none'}"
        )


class ScheduleViolation(ReplayError):
    """An explored schedule broke an invariant; ``failure`` says which and its seed."""

    def __init__(self, failure: ScheduleFailure) -> None:
        self.failure = failure
        super().__init__(
            f"{failure}; reproduce with explore_schedules(..., seed={failure.seed}, schedules=1)"
        )


ScheduleViolation.__module__ = "engine"  # as imported, in tracebacks


@dataclass(frozen=True, slots=True, eq=False)
class Exploration:
    """What :func:`explore_schedules` found: the schedules run (in order) and the first
    failure, if any. ``raise_on_failure()`` raises :class:`ScheduleViolation` instead."""

    seed: int
    budget: int
    runs: tuple[ScheduleRun, ...]
    failure: ScheduleFailure | None
    _again: Callable[[int], Any] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def schedules(self) -> int:
        """How many schedules ran (fewer than the budget when one failed early)."""
        return len(self.runs)

    def raise_on_failure(self) -> Exploration:
        if self.failure is not None:
            raise ScheduleViolation(self.failure)
        return self

    def reproduce(self) -> Exploration:
        """Run the failing schedule again (from its seed alone); ReplayError if none failed."""
        if self.failure is None or self._again is None:
            raise ReplayError("no schedule failed: nothing to reproduce")
        result: Exploration = self._again(self.failure.seed)
        return result


def _named(invariants: Invariants) -> list[tuple[str, Invariant]]:
    """Each invariant with its name (an import path loads the function it names)."""
    given = (
        list(invariants.items())
        if isinstance(invariants, Mapping)
        else [(f if isinstance(f, str) else getattr(f, "__name__", repr(f)), f) for f in invariants]
    )
    if not given:
        raise ReplayError("give at least one invariant to check")
    items: list[tuple[str, Invariant]] = []
    for name, f in given:
        fn = load_ref(f, "invariant") if isinstance(f, str) else f
        if not callable(fn):
            raise ReplayError(f"invariant {name!r} is not callable")
        items.append((name, fn))
    return items


def _check(
    result: ChoreographyResult, invariants: list[tuple[str, Invariant]]
) -> list[tuple[str, str]]:
    broken = []
    for name, f in invariants:
        try:
            verdict = f(result)
        except AssertionError as exc:
            broken.append((name, str(exc) or "assertion failed"))
            continue
        except Exception as exc:
            broken.append((name, f"raised {type(exc).__name__}: {exc}"))
            continue
        if verdict is False:
            broken.append((name, "returned False"))
    return broken


async def explore_schedules(
    choreography: Choreography | Workflow,
    input: Any = None,
    *,
    invariants: Invariants,
    schedules: int = 20,
    seed: int = 0,
    plan: SchedulePlan | None = None,
    state: Mapping[str, Any] | None = None,
    key: str | None = None,
    agent_seed: int | None = None,
    recorder: RecorderFactory | None = None,
    attributes: Mapping[str, Any] | None = None,
    stop_at_first: bool = True,
) -> Exploration:
    """Run ``choreography`` on ``input`` under ``schedules`` seeded schedules (see the module
    docstring). ``agent_seed`` seeds the agents' ``ctx.rng`` alike in every schedule;
    ``recorder(clock, seed)`` makes the recorder the failing schedule is recorded with."""
    if isinstance(choreography, Workflow):
        return await _explore_interleavings(
            choreography, input, invariants=invariants, schedules=schedules, seed=seed,
            state=state, agent_seed=agent_seed, attributes=attributes, recorder=recorder,
            stop_at_first=stop_at_first,
        )  # fmt: skip
    if not isinstance(choreography, Choreography):
        raise ReplayError(
            "schedule exploration needs a Choreography or a Workflow, got "
            f"{type(choreography).__name__}"
        )
    if schedules < 1:
        raise ReplayError(f"schedules must be at least 1, got {schedules}")
    checks = _named(invariants)
    plan = plan or SchedulePlan()

    async def one(s: int, rec: Recorder | None, clock: FakeClock) -> ChoreographyResult:
        runner = Choreographer(
            rec, time=VirtualTime(clock), ids=SeededIds(s), seed=agent_seed, faults=plan.faults(s)
        )
        attrs = {**(attributes or {}), RUN_SCHEDULE_SEED: s} if rec is not None else None
        return await runner.run(choreography, input, state=state, key=key, attributes=attrs)

    runs: list[ScheduleRun] = []
    failure: ScheduleFailure | None = None
    for i in range(schedules):
        s = seed + i
        result = await one(s, None, FakeClock(START_NS, TICK_NS))
        broken = _check(result, checks)
        runs.append(ScheduleRun(s, result.status, result.faults, tuple(broken)))
        if broken and failure is None:
            run_id = None
            if recorder is not None:
                clock = FakeClock(START_NS, TICK_NS)
                rec = recorder(clock, s)
                try:
                    recorded = await one(s, rec, clock)
                finally:
                    rec.flush()
                run_id = recorded.run_id
            name, message = broken[0]
            failure = ScheduleFailure(
                s, i, name, message, result.status, result.faults, result.state, run_id
            )
            if stop_at_first:
                break

    async def again(s: int) -> Exploration:
        return await explore_schedules(
            choreography, input, invariants=invariants, schedules=1, seed=s, plan=plan,
            state=state, key=key, agent_seed=agent_seed, attributes=attributes,
        )  # fmt: skip

    def reproduce(s: int) -> Exploration:
        return run_blocking(lambda: again(s))

    return Exploration(seed, schedules, tuple(runs), failure, reproduce)


class Interleaving:
    """A gate (``engine.core._step.Gate``) that lets each read and commit of a step wait a
    seeded number of event-loop turns, so parallel branches interleave in another order,
    and logs the order they took (``order``: (read|commit, agent) pairs)."""

    def __init__(self, seed: int, max_turns: int = 3) -> None:
        self.rng = random.Random(seed)
        self.max_turns = max_turns
        self.order: list[tuple[str, str]] = []

    async def before_read(self, agent: str, step: int, attempt: int) -> None:
        await self._wait()
        self.order.append(("read", agent))

    async def before_commit(self, agent: str, step: int, attempt: int) -> None:
        await self._wait()
        self.order.append(("commit", agent))

    async def _wait(self) -> None:
        for _ in range(self.rng.randrange(self.max_turns + 1)):
            await asyncio.sleep(0)


async def _explore_interleavings(
    workflow: Workflow, input: Any, *, invariants: Invariants, schedules: int, seed: int,
    state: Mapping[str, Any] | None, agent_seed: int | None, attributes: Mapping[str, Any] | None,
    recorder: RecorderFactory | None, stop_at_first: bool,
) -> Exploration:  # fmt: skip
    """Orchestration: schedule ``i`` interleaves the reads and commits of parallel branches as
    seed ``seed + i`` says; an interleaving equivalent to one tried already (the same order of
    reads and commits) is not checked again (its run is listed with its seed, nothing broken)."""
    if schedules < 1:
        raise ReplayError(f"schedules must be at least 1, got {schedules}")
    checks = _named(invariants)

    async def one(s: int, rec: Recorder | None, clock: FakeClock) -> tuple[Any, tuple[Any, ...]]:
        gate = Interleaving(s)
        orch = Orchestrator(
            rec, time=VirtualTime(clock), ids=SeededIds(s), seed=agent_seed, gate=gate
        )
        attrs = {**(attributes or {}), RUN_SCHEDULE_SEED: s} if rec is not None else None
        result = await orch.run(workflow, input, state=state, attributes=attrs)
        return result, tuple(gate.order)

    runs: list[ScheduleRun] = []
    failure: ScheduleFailure | None = None
    tried: set[tuple[Any, ...]] = set()
    for i in range(schedules):
        s = seed + i
        result, order = await one(s, None, FakeClock(START_NS, TICK_NS))
        if order in tried:
            runs.append(ScheduleRun(s, result.status, ()))
            continue
        tried.add(order)
        broken = _check(result, checks)
        runs.append(ScheduleRun(s, result.status, (), tuple(broken)))
        if broken and failure is None:
            run_id = None
            if recorder is not None:
                clock = FakeClock(START_NS, TICK_NS)
                rec = recorder(clock, s)
                try:
                    run_id = (await one(s, rec, clock))[0].run_id
                finally:
                    rec.flush()
            name, message = broken[0]
            failure = ScheduleFailure(s, i, name, message, result.status, (), result.state, run_id)
            if stop_at_first:
                break

    def reproduce(s: int) -> Exploration:
        return run_blocking(
            lambda: _explore_interleavings(
                workflow, input, invariants=invariants, schedules=1, seed=s, state=state,
                agent_seed=agent_seed, attributes=attributes, recorder=None, stop_at_first=True,
            )
        )  # fmt: skip

    return Exploration(seed, schedules, tuple(runs), failure, reproduce)
