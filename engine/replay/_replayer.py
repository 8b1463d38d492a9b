"""Replay: run a recorded engine run again, feeding each agent its recorded output; fork it.

::

    from engine import Replayer

    replayer = Replayer(store)                  # replays are recorded into the same store
    result = replayer.replay(run_id)            # no agent is called; compared as it goes
    result.diverged, result.first_divergence    # inspect ...
    result.raise_on_divergence()                # ... or raise ReplayDivergence

    # A patched agent against the recording: it runs live, the others are replayed.
    result = replayer.replay(run_id, overrides={"pricing": new_pricing})

    # Replay up to version 3, then run live from there (with the fixed workflow).
    fork = replayer.fork(run_id, 3, workflow=fixed_workflow())

**The workflow** is found by the name and version the run records
(``agentrace.run.workflow_ref``, ``agentrace.run.workflow_version``) in the
registry the user's code fills (:func:`engine.workflow`; the bundled scenarios'
workflows are registered under ``agentrace.*``), or given (``workflow=``: a
:class:`~engine.Workflow` or :class:`~engine.Choreography`, a registered name, or
``MODULE:FACTORY`` typed by the user). A factory that takes ``seed`` gets the
run's recorded seed. Nothing read from a trace is ever imported or called.
The run's input is what its first step got, its initial state its version 1.

**A replay** runs that workflow on a fresh orchestrator (or choreographer) whose
agents are answered from the recording (see ``engine.replay._agents``): no
agent, and so no model, is called. A choreography is delivered by a
:class:`ScriptedBus` in the recorded order, faults included. The replay runs
on virtual time starting where the original started, each step taking the time
it took; nothing waits for real. It compares as it goes: the sequence of steps
and their outcomes, each agent's input, the versions its reads were served,
each state version (by the hash chain), compensations, deliveries, the final
status. **A fork** replays the steps that started before version ``k`` was
committed and runs every later step live: the real agents, or ``overrides``.
Both are recorded as new runs (``agentrace.run.parent``, and
``agentrace.run.fork_version`` for a fork), into the store by default.

The result is a frozen :class:`ReplayResult`; ``raise_on_divergence=True`` (or
``result.raise_on_divergence()``) raises :class:`ReplayDivergence` instead.

Limits, by design: breakers start closed (a run recorded while a breaker was
already open from earlier runs replays as a divergence at that step).
Concurrency is re-created as recorded: parallel branches read and commit in the
recorded order (``engine.replay._order``), so an unchanged replay of a fan-out
ends in the same versions, lost updates included.

Thread rules: a :class:`Replayer` may serve one replay at a time per thread; the
sync methods start their own event loop (in a worker thread when called from a
running loop).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest as PB2ExportTraceServiceRequest,
)

from tracer import FakeClock, IdGenerator, RandomIds, Recorder, SpanSink, Store
from tracer import conventions as c

from ..choreography._choreographer import Choreographer, Choreography, ChoreographyResult
from ..core._agent import Agent, as_agent
from ..core._errors import WorkflowError
from ..core._time import VirtualTime, run_blocking
from ..core._workflows import WorkflowRegistry, workflows
from ..orchestration._orchestrator import Orchestrator, RunResult
from ..orchestration._workflow import Workflow
from ._agents import ReplaySession
from ._bus import ScriptedBus
from ._explore import Exploration, Invariants, SchedulePlan, explore_schedules
from ._model import ReplayError, ReplayResult, load_ref
from ._order import RecordedOrder, concurrent
from ._recording import Recording, load_recording, load_recordings

Target = Workflow | Choreography
_BATCH = 16_384  # spans per write of a replay's recorder
WorkflowSpec = Workflow | Choreography | str
AgentSpec = Agent | Callable[..., Any] | str | Any


# Runs recorded before workflows were named record the import path of a bundled factory:
# each maps to the name that factory is registered under now. Nothing else is ever imported.
LEGACY_REFS = {
    "engine.scenarios.credit:workflow": "agentrace.credit",
    "engine.scenarios.credit:fixed_workflow": "agentrace.credit-fixed",
    "engine.scenarios.flaky:workflow": "agentrace.flaky",
    "engine.scenarios.low_confidence:workflow": "agentrace.low-confidence",
    "engine.scenarios.trading:workflow": "agentrace.trading-saga",
    "engine._choreo_scenarios:research_pipeline": "agentrace.research-pipeline",
    "engine._choreo_scenarios:double_consume": "agentrace.double-consume",
    "engine._choreo_scenarios:double_consume_fixed": "agentrace.double-consume-fixed",
    "engine._choreo_scenarios:checkout_saga": "agentrace.choreo-saga",
    "engine._worker_scenarios:build_double_consume": "agentrace.distributed.double-consume",
    "engine._worker_scenarios:build_double_consume_fixed": "agentrace.distributed.double-consume-fixed",
    "engine._worker_scenarios:build_resilient_pipeline": "agentrace.distributed.research-pipeline",
    "engine.scenarios.choreography:research_pipeline": "agentrace.research-pipeline",
    "engine.scenarios.choreography:double_consume": "agentrace.double-consume",
    "engine.scenarios.choreography:double_consume_fixed": "agentrace.double-consume-fixed",
    "engine.scenarios.choreography:checkout_saga": "agentrace.choreo-saga",
    "engine.scenarios.distributed:build_double_consume": "agentrace.distributed.double-consume",
    "engine.scenarios.distributed:build_double_consume_fixed": "agentrace.distributed.double-consume-fixed",
    "engine.scenarios.distributed:build_resilient_pipeline": "agentrace.distributed.research-pipeline",
}  # fmt: skip
# The bundled workflows register when their package is imported: a fixed module per prefix.
BUNDLED = (
    ("agentrace.distributed.", "engine.scenarios.distributed"),
    ("agentrace.", "engine.scenarios"),
)


def registered_factory(
    registry: WorkflowRegistry, name: str, version: str | None, run_id: str = ""
) -> Callable[..., Any]:
    """The factory ``name`` (``version``) is registered as, loading the bundled workflows when
    the name is one of theirs. ReplayError saying how to give the workflow otherwise."""
    name = LEGACY_REFS.get(name, name)
    if name not in registry:
        for prefix, module in BUNDLED:
            if name.startswith(prefix):
                importlib.import_module(module)  # our own package, never a name from the trace
                break
    try:
        return registry.factory(name, version)
    except WorkflowError as exc:
        run = f"run {run_id} records workflow {name!r}" if run_id else f"workflow {name!r}"
        raise ReplayError(
            f"{run}{f' version {version}' if version else ''}: {exc.detail}; register it "
            "(@engine.workflow) or give it (workflow=... or --workflow MODULE:FACTORY)"
        ) from None


def build_target(
    spec: WorkflowSpec | None, recording: Recording, registry: WorkflowRegistry | None = None
) -> Target:
    """The workflow to replay ``recording`` with: ``spec`` (a Workflow or Choreography, a
    registered name, or ``MODULE:FACTORY`` that the user typed), else the registered workflow
    the run names. A name read from the run is only ever looked up, never imported."""
    if isinstance(spec, (Workflow, Choreography)):
        return spec
    registry = registry or workflows
    if isinstance(spec, str) and ":" in spec:
        what = spec
        obj: Any = load_ref(spec)  # typed by the user, not read from the trace
    elif spec is not None:
        what = spec
        obj = registered_factory(registry, spec, None)
    else:
        name = recording.run.workflow_ref
        if not name:
            raise ReplayError(
                f"run {recording.run_id} records no workflow (agentrace.run.workflow_ref): "
                "give the workflow to replay it with (workflow=... or --workflow MODULE:FACTORY)"
            )
        version = recording.run.attributes.get(c.RUN_WORKFLOW_VERSION)
        what = name
        obj = registered_factory(
            registry, name, str(version) if version is not None else None, recording.run_id
        )
    if callable(obj) and not isinstance(obj, (Workflow, Choreography)):
        kwargs: dict[str, Any] = {}
        try:
            params = inspect.signature(obj).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        if "seed" in params and recording.seed is not None:
            kwargs["seed"] = recording.seed  # the factory rebuilds the run's seeded workflow
        try:
            obj = obj(**kwargs)
        except Exception as exc:
            raise ReplayError(
                f"workflow {what!r}: the factory raised {type(exc).__name__}: {exc}"
            ) from exc
    if not isinstance(obj, (Workflow, Choreography)):
        raise ReplayError(
            f"workflow {what!r} gave {type(obj).__name__}, not a Workflow or Choreography"
        )
    return obj


def live_agents(target: Target, overrides: Mapping[str, AgentSpec] | None) -> dict[str, Agent]:
    """The replacement agents: an :class:`Agent` as given (named as the one it replaces); a
    function or an object with ``execute`` (an import path loads one) keeps the replaced
    agent's name and policies."""
    agents = target.agents
    out: dict[str, Agent] = {}
    for name, spec in (overrides or {}).items():
        original = agents.get(name)
        if original is None:
            have = ", ".join(sorted(agents)) or "none"
            raise ReplayError(
                f"override for {name!r}: the workflow has no such agent (agents: {have})"
            )
        obj = load_ref(spec, f"override for {name!r}") if isinstance(spec, str) else spec
        if isinstance(obj, Agent):
            out[name] = obj if obj.name == name else obj.replace(name=name)
        elif callable(getattr(obj, "execute", None)):
            a = as_agent(obj)
            out[name] = original.replace(
                execute=a.execute, compensate=a.compensate or original.compensate
            )
        elif callable(obj):
            out[name] = original.replace(execute=obj)
        else:
            raise ReplayError(f"override for {name!r}: {obj!r} is not an agent or a function")
    return out


class Replayer:
    """Replays and forks the runs of ``store`` (see the module docstring).

    ``sink`` receives the new runs' spans (by default the store itself; ``record=False``
    records nothing: faster, but the new run cannot be analysed). ``ids`` makes the new
    runs' ids (random by default; ``SeededIds`` for repeatable tests). ``latency=False``
    replays every step in no time instead of its recorded duration. ``registry`` is where
    the names runs record are looked up (default :data:`engine.workflows`).
    """

    def __init__(
        self,
        store: Store,
        *,
        sink: SpanSink | None = None,
        record: bool = True,
        ids: IdGenerator | None = None,
        latency: bool = True,
        tick_ns: int = 1_000,
        registry: WorkflowRegistry | None = None,
    ) -> None:
        self.store = store
        self.registry = registry or workflows
        self.record = record
        self._sink = sink
        self.ids: IdGenerator = ids or RandomIds()
        self.latency = latency
        self.tick_ns = tick_ns
        self._recordings: dict[str, Recording] = {}
        self._lock = threading.Lock()
        self._store_sink = _StoreSink(store)

    @property
    def sink(self) -> SpanSink:
        return self._sink if self._sink is not None else self._store_sink

    @contextlib.contextmanager
    def batch(self) -> Iterator[Replayer]:
        """Within the block, new runs are written to the store together at its end (or at
        :meth:`commit`, or before this replayer next reads the store): one transaction
        instead of one per run, which is most of a small replay's cost."""
        self._store_sink.deferred += 1
        try:
            yield self
        finally:
            self._store_sink.deferred -= 1
            if not self._store_sink.deferred:
                self.commit()

    def commit(self) -> None:
        """Write the new runs recorded in a :meth:`batch` so far to the store."""
        self._store_sink.commit()

    def resolve(self, run: str) -> str:
        """The full id of ``run`` (a run id, or a unique prefix of one)."""
        if run in self._recordings:
            return run
        self.commit()  # the run may be one recorded in this batch
        return self.store.resolve_run(run)

    def preload(self, runs: Iterable[str]) -> None:
        """Read the recordings of ``runs`` (full ids) at once, for replays to come."""
        self.commit()
        todo = [r for r in runs if r not in self._recordings]
        found = load_recordings(self.store, todo)
        with self._lock:
            self._recordings.update(found)

    def recording(self, run: str) -> Recording:
        """The recording of ``run`` (read once, then kept: recorded runs never change)."""
        run_id = self.resolve(run)
        with self._lock:
            rec = self._recordings.get(run_id)
        if rec is None:
            rec = load_recording(self.store, run_id)
            with self._lock:
                self._recordings[run_id] = rec
        return rec

    # -- replay and fork ---------------------------------------------------------------------

    async def areplay(
        self,
        run: str,
        *,
        workflow: WorkflowSpec | None = None,
        overrides: Mapping[str, AgentSpec] | None = None,
        raise_on_divergence: bool = False,
    ) -> ReplayResult:
        """Replay ``run``; ``overrides`` run live (and are compared). See the module docstring."""
        result = await self._run(self.recording(run), workflow, overrides, None)
        return result.raise_on_divergence() if raise_on_divergence else result

    async def afork(
        self,
        run: str,
        from_version: int,
        *,
        workflow: WorkflowSpec | None = None,
        overrides: Mapping[str, AgentSpec] | None = None,
        raise_on_divergence: bool = False,
    ) -> ReplayResult:
        """Replay ``run`` up to version ``from_version``, then run live (with ``overrides``)."""
        rec = self.recording(run)
        if isinstance(from_version, bool) or not isinstance(from_version, int):
            raise ReplayError(f"fork version must be an int, got {from_version!r}")
        rec.version(from_version)  # ReplayError naming the versions the run has
        result = await self._run(rec, workflow, overrides, from_version)
        return result.raise_on_divergence() if raise_on_divergence else result

    def replay(self, run: str, **kw: Any) -> ReplayResult:
        """:meth:`areplay` from synchronous code."""
        return run_blocking(lambda: self.areplay(run, **kw))

    def fork(self, run: str, from_version: int, **kw: Any) -> ReplayResult:
        """:meth:`afork` from synchronous code."""
        return run_blocking(lambda: self.afork(run, from_version, **kw))

    async def aexplore(
        self,
        run: str,
        invariants: Invariants,
        *,
        schedules: int = 20,
        seed: int = 0,
        plan: SchedulePlan | None = None,
        workflow: WorkflowSpec | None = None,
        raise_on_failure: bool = False,
    ) -> Exploration:
        """Explore delivery schedules of the choreographed run ``run`` (its choreography, input,
        state and key as recorded): see :func:`explore_schedules`. The first failing schedule
        is recorded as a run of its own (linked to ``run``) when this replayer records."""
        rec = self.recording(run)
        target = build_target(workflow, rec, self.registry)
        if not isinstance(target, Choreography):
            raise ReplayError(
                f"run {rec.run_id} is an orchestrated run: schedules exist only on a bus"
            )
        entry = target.entry if target.start_step is None else None

        def recorder(clock: FakeClock, _seed: int) -> Recorder:
            return Recorder(self.sink, clock=clock, ids=self.ids)

        found = await explore_schedules(
            target, rec.first_input(entry), invariants=invariants, schedules=schedules,
            seed=seed, plan=plan, state=rec.initial_state, key=rec.entry_key(entry),
            agent_seed=rec.seed, recorder=recorder if self.record else None,
            attributes={c.RUN_PARENT: rec.run_id},
        )  # fmt: skip
        return found.raise_on_failure() if raise_on_failure else found

    def explore(self, run: str, invariants: Invariants, **kw: Any) -> Exploration:
        """:meth:`aexplore` from synchronous code."""
        return run_blocking(lambda: self.aexplore(run, invariants, **kw))

    async def _run(
        self,
        rec: Recording,
        spec: WorkflowSpec | None,
        overrides: Mapping[str, AgentSpec] | None,
        fork_version: int | None,
    ) -> ReplayResult:
        target = build_target(spec, rec, self.registry)
        choreographed = isinstance(target, Choreography)
        if choreographed != (rec.pattern in ("choreography", "hybrid")):
            kind = type(target).__name__
            raise ReplayError(
                f"run {rec.run_id} is a {rec.pattern} run; it cannot be replayed with a {kind}"
            )
        live = live_agents(target, overrides)
        clock = FakeClock(rec.run.start_ns, self.tick_ns)
        time = VirtualTime(clock)
        # One transaction per replay where it fits: the run is flushed whole at its end anyway.
        recorder = (
            Recorder(self.sink, clock=clock, ids=self.ids, batch_size=_BATCH)
            if self.record
            else None
        )
        session = ReplaySession(
            rec, time=time, live=live, fork_version=fork_version, latency=self.latency
        )
        attrs: dict[str, Any] = {c.RUN_PARENT: rec.run_id}
        if fork_version is not None:
            attrs[c.RUN_FORK_VERSION] = fork_version
        state = rec.initial_state
        result: RunResult | ChoreographyResult
        try:
            if isinstance(target, Workflow):
                cut = rec.version(fork_version).committed_ns if fork_version is not None else None
                # Sequential runs keep their order by themselves: a gate only where branches ran in parallel.
                order = RecordedOrder(session, rec, cut) if concurrent(rec) else None
                orch = Orchestrator(recorder, time=time, ids=self.ids, seed=rec.seed, gate=order)
                result = await orch.run(
                    session.wrap_workflow(target), rec.first_input(), state=state,
                    scenario=rec.run.scenario, attributes=attrs,
                )  # fmt: skip
            else:
                choreo = session.wrap_choreography(target)
                entry = choreo.entry if choreo.start_step is None else None

                def bus(t: Any, _faults: Any) -> ScriptedBus:
                    return ScriptedBus(t, rec, session.diverge, policy=choreo.policy)

                runner = Choreographer(recorder, time=time, ids=self.ids, seed=rec.seed, bus=bus)
                result = await runner.run(
                    choreo, rec.first_input(entry), state=state, key=rec.entry_key(entry),
                    scenario=rec.run.scenario, attributes=attrs,
                )  # fmt: skip
        finally:
            if recorder is not None:
                recorder.flush()
        divergences = session.finish(result)
        return ReplayResult(
            run_id=result.run_id, parent_run_id=rec.run_id, workflow=result.workflow,
            mode="fork" if fork_version is not None else "replay", status=result.status,
            original_status=rec.run.status, divergences=divergences, steps=result.steps,
            ledger=result.ledger, fork_version=fork_version, overrides=tuple(sorted(live)),
            recorded=recorder is not None, error=result.error,
        )  # fmt: skip


class _StoreSink:
    """Spans into the store: each flush one transaction, or held back while ``deferred``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.deferred = 0
        self.pending: list[PB2ExportTraceServiceRequest] = []
        self._lock = threading.Lock()

    def export(self, request: PB2ExportTraceServiceRequest) -> None:
        if not self.deferred:
            self.store.ingest([request], source="replay")
            return
        held = PB2ExportTraceServiceRequest()
        held.CopyFrom(request)  # the recorder reuses nothing, but the sink contract says copy
        with self._lock:
            self.pending.append(held)

    def commit(self) -> None:
        with self._lock:
            pending, self.pending = self.pending, []
        if pending:
            self.store.ingest(pending, source="replay")

    def flush(self) -> None:
        pass  # written on export, or on commit

    def close(self) -> None:
        self.commit()
