"""The orchestrator: runs a :class:`~engine.Workflow` on asyncio and records every fact of it.

One call of :meth:`Orchestrator.run` is one run (one trace). For each step:

1. the agent's breaker is asked (an open breaker refuses: the step fails fast,
   the agent is not called);
2. the agent runs on a view of the state's head (its ``base_version``), in a
   thread if it is sync, under its timeout;
3. its output is checked against the agent's contract and the contracts of the
   edges it is handed along (a router picks those edges first, seeing the
   step's changes as if committed); a rejection stops the handoff;
4. its :class:`~engine.Update`, if any, is committed as the next version;
5. a failed attempt is retried per the agent's :class:`~engine.RetryPolicy`
   (one ``invoke_agent`` span per attempt, the same step number).

Successors of a step run concurrently; joins wait as the workflow describes.
The first step that fails for good fails the run: other branches are
cancelled, and the :class:`~engine.Saga` compensates the completed steps. The
run's status is ``completed``, ``compensated``, ``compensation_failed`` or
``failed``; :meth:`Orchestrator.run` returns a :class:`RunResult` either way
and raises only for cancellation and the engine's own faults (the caller
chooses: ``result.raise_for_status()``).

Breakers belong to the orchestrator, one per agent name, and last across the
runs it makes. Thread rules: one orchestrator may run many workflows
concurrently on one event loop; it is not meant to be shared across loops.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable, Coroutine, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tracer import IdGenerator, RandomIds, Recorder

from ..core._agent import Agent
from ..core._breaker import BreakerListener, CircuitBreaker
from ..core._errors import (
    AgentError,
    EngineError,
    OutputError,
    StepError,
)
from ..core._ledger import JSON, StateLedger, json_copy
from ..core._recording import RunScope, Span
from ..core._saga import Compensation, CompletedStep, Saga
from ..core._step import Breakers, Gate, RunOutcome, StepRecord, StepRunner
from ..core._time import RealTime, TimeSource
from ._workflow import Route, Workflow


@dataclass(frozen=True, slots=True, eq=False)
class RunResult(RunOutcome):
    """What a run did. ``ledger`` holds every state version."""

    run_id: str
    workflow: str
    status: str  # completed | failed | compensated | compensation_failed
    output: JSON
    steps: tuple[StepRecord, ...]
    compensations: tuple[Compensation, ...]
    ledger: StateLedger
    error: StepError | None = None


class Orchestrator:
    """Runs workflows; records through ``recorder`` (or nothing, when it is None).

    ``time`` gives the clock, sleeps and timeouts (by default real time on the
    recorder's clock); ``ids`` the run ids when not recording; ``seed`` makes
    backoff jitter and ``ctx.rng`` repeatable and is recorded on each run.
    """

    def __init__(
        self,
        recorder: Recorder | None = None,
        *,
        time: TimeSource | None = None,
        ids: IdGenerator | None = None,
        seed: int | None = None,
        breaker_listeners: Iterable[BreakerListener] = (),
        gate: Gate | None = None,
    ) -> None:
        self.recorder = recorder
        # Orders the reads and commits of concurrent branches (replay, schedule exploration).
        self.gate = gate
        self.time: TimeSource = time or RealTime(recorder.clock if recorder is not None else None)
        self.ids: IdGenerator = ids or (recorder.ids if recorder is not None else RandomIds())
        self.seed = seed
        self._breakers = Breakers(self.time.clock, breaker_listeners)
        self.breakers = self._breakers.by_agent  # agent name -> its breaker, kept across runs

    def breaker(self, agent: Agent) -> CircuitBreaker | None:
        """The breaker of ``agent`` (made on first use from its config), or None if it has none."""
        return self._breakers.of(agent)

    async def run(
        self,
        workflow: Workflow,
        input: Any = None,
        *,
        state: Mapping[str, Any] | None = None,
        scenario: str | None = None,
        run_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Run ``workflow`` on ``input`` from the initial ``state``; see the module docstring."""
        if not isinstance(workflow, Workflow):
            raise TypeError(
                f"not a Workflow: {workflow!r} (build one with WorkflowBuilder(...).build())"
            )
        try:
            value = json_copy(input, "input")
            initial = json_copy(dict(state), "state") if state else None
        except ValueError as exc:
            raise EngineError(f"workflow {workflow.name!r}: the run's {exc}") from None
        scope = RunScope(
            self.recorder, workflow=workflow.name, clock=self.time.clock, ids=self.ids,
            initial_state=initial, ref=workflow.ref, version=workflow.version,
            declared_graph=workflow.declared if self.recorder is not None else None,
            scenario=scenario, seed=self.seed, attributes=attributes, caches=workflow.caches, run_id=run_id,
        )  # fmt: skip
        run = _Run(self, workflow, scope)
        saga = run.saga
        compensations: tuple[Compensation, ...] = ()
        try:
            await run.execute(value)
            if run.failure is None:
                status = "completed"
            else:
                status, compensations = await saga.compensate()
        except BaseException as exc:  # cancelled (or a fault of the engine): the run still ends
            run.cancel_all()
            scope.finish("failed", exc)
            raise
        scope.finish(status, run.failure)
        outputs = run.outputs
        output = (
            next(iter(outputs.values()))
            if len(outputs) == 1
            else (dict(outputs) if outputs else None)
        )
        if run.failure is not None:
            output = None
        return RunResult(
            scope.run_id,
            workflow.name,
            status,
            output,
            tuple(run.records),
            compensations,
            scope.ledger,
            run.failure,
        )

    def run_sync(self, workflow: Workflow, input: Any = None, **kw: Any) -> RunResult:
        """``run`` from synchronous code (starts an event loop; not from inside one)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run(workflow, input, **kw))
        raise RuntimeError(
            "run_sync called from a running event loop: use `await orchestrator.run(...)`"
        )


class _Resumed(Coroutine[Any, None, None]):
    """A branch that ran eagerly to its first wait, as the coroutine of the task that goes on with it.

    It does what ``await`` does from that wait on: the task's first ``send`` gets what the
    branch already waits on, every later ``send`` and ``throw`` goes to the branch. An
    ``async def`` wrapper would not do: when a task is cancelled before its first turn, the
    cancellation is thrown into a coroutine that has not started, so none of the wrapper's
    code runs: the branch is never resumed (its step's span never ends) and whatever cleanup
    the wrapper holds is skipped. Here the cancellation reaches the branch, which has started,
    however early it comes, and ``on_end`` runs once when the branch ends, however it ends.
    """

    __slots__ = ("_coro", "_fresh", "_waiting_on", "on_end")

    def __init__(self, coro: Coroutine[Any, Any, None], waiting_on: Any) -> None:
        self._coro = coro
        self._waiting_on: Any = waiting_on
        self._fresh = True
        self.on_end: Callable[[], None] | None = None

    def send(self, value: None) -> Any:
        if self._fresh:  # the task's first turn: the branch waits already
            self._fresh = False
            waiting_on, self._waiting_on = self._waiting_on, None
            return waiting_on
        return self._resume(self._coro.send, value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        exc = typ if val is None else val
        if tb is not None:
            exc = exc.with_traceback(tb)
        if self._fresh:
            # Cancelled before the task's first turn. Task.cancel() cancels the future a task
            # waits on; this task never saw it, so that is done here, and the cancellation
            # goes in where the branch waits.
            self._fresh = False
            waiting_on, self._waiting_on = self._waiting_on, None
            cancelled = isinstance(exc, asyncio.CancelledError) or (
                isinstance(exc, type) and issubclass(exc, asyncio.CancelledError)
            )
            if cancelled and asyncio.isfuture(waiting_on):
                waiting_on.cancel()
        return self._resume(self._coro.throw, exc)

    def close(self) -> None:
        try:
            self._coro.close()
        finally:
            self._end()

    def __await__(self) -> Generator[Any, None, None]:
        raise TypeError("a resumed branch is driven by its own task; it is not awaited")

    def _resume(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        try:
            return fn(arg)
        except BaseException:  # StopIteration included: the branch has ended
            self._end()
            raise

    def _end(self) -> None:
        on_end, self.on_end = self.on_end, None
        if on_end is not None:
            on_end()


class _Run:
    """The moving parts of one run: branches, joins, failure. Lives on one event loop."""

    __slots__ = (
        "active", "failure", "fault", "host", "host_cancelled", "idle", "orch", "outputs", "records", "runner", "saga", "scope", "seed", "steps_run",
        "tasks", "time", "waiting", "wf",
    )  # fmt: skip

    def __init__(self, orch: Orchestrator, wf: Workflow, scope: RunScope) -> None:
        self.orch = orch
        self.wf = wf
        self.scope = scope
        self.time = orch.time
        self.seed = orch.seed
        self.active: dict[str, int] = {}  # node -> activations queued or running there
        self.waiting: dict[str, dict[str, Any]] = {}  # join -> {source: output} delivered so far
        self.tasks: set[asyncio.Task[None]] = set()
        self.failure: StepError | None = None
        self.fault: BaseException | None = None  # an unexpected exception in a branch (a bug)
        self.outputs: dict[str, Any] = {}
        self.records: list[StepRecord] = []
        self.steps_run = 0
        self.idle: asyncio.Future[None] | None = None  # set when the last branch task ends
        # The caller's task, while it runs the first branch.
        self.host: asyncio.Task[Any] | None = None
        self.host_cancelled = False
        self.runner = StepRunner(
            scope, orch.time, orch.seed, orch._breakers,
            lambda: str(self.failure) if self.failure is not None else "the run was cancelled",
            orch.gate,
        )  # fmt: skip
        self.saga = Saga(self.runner, wf.saga)

    # -- branches ------------------------------------------------------------------------------

    async def execute(self, value: JSON) -> None:
        start = self.wf.start
        self.active[start] = 1
        # The first branch runs in the caller's task (a task per run would cost ~8 µs). When
        # another branch fails, it is cancelled as asyncio.TaskGroup cancels its parent task:
        # cancel() now, uncancel() here, so a cancellation from outside still goes through.
        host = asyncio.current_task()
        self.host = host
        try:
            await self._branch(start, value, ())
        except asyncio.CancelledError:
            if not (self.host_cancelled and host is not None and host.uncancel() == 0):
                raise
        finally:
            self.host = None
        if self.tasks:
            self.idle = asyncio.get_running_loop().create_future()
            await self.idle
        if self.fault is not None:
            raise self.fault

    def _spawn(self, node: str, value: Any, sources: tuple[str, ...]) -> None:
        """Start a branch eagerly: it runs now, in its own context, until it first waits.

        A branch that finishes without waiting (quick agents) costs no task; one that
        waits is handed, suspended, to a task and runs concurrently from there. This is
        asyncio's eager task start (Python 3.12), done by hand for 3.11.
        """
        coro = self._task_branch(node, value, sources)
        context = contextvars.copy_context()
        try:
            waiting_on = context.run(coro.send, None)
        except StopIteration:
            return
        resumed = _Resumed(coro, waiting_on)
        task = asyncio.get_running_loop().create_task(resumed, context=context)
        self.tasks.add(task)
        # In the task's last turn, whether the branch ran to its end or was cancelled before
        # the task first ran: a done callback would cost the host one more turn of the loop.
        resumed.on_end = functools.partial(self._task_ended, task)

    async def _task_branch(self, node: str, value: Any, sources: tuple[str, ...]) -> None:
        try:
            await self._branch(node, value, sources)
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except BaseException as exc:  # a fault of the engine itself: stop the run, re-raise in it
            if self.fault is None:
                self.fault = exc
                self.cancel_all()

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        """A branch task has ended: it leaves the task set, and the last one wakes the host."""
        self.tasks.discard(task)
        idle = self.idle
        if not self.tasks and idle is not None and not idle.done():
            idle.set_result(None)

    def cancel_all(self) -> None:
        current = asyncio.current_task()
        for t in list(self.tasks):
            if t is not current:
                t.cancel()
        host = self.host
        if host is not None and host is not current and not self.host_cancelled:
            self.host_cancelled = True
            host.cancel()

    def _fail(self, err: StepError) -> None:
        if self.failure is None:
            self.failure = err
            self.cancel_all()

    async def _branch(self, node: str, value: Any, sources: tuple[str, ...]) -> None:
        wf = self.wf
        active = self.active
        while True:
            if self.failure is not None:
                return
            try:
                handoff, chosen = await self._step(node, value, sources)
            except StepError as err:
                self._fail(err)
                return
            nexts: list[tuple[str, Any, tuple[str, ...]]] = []
            for t in chosen:
                if t in wf.merges:
                    self.waiting.setdefault(t, {})[node] = handoff
                else:
                    active[t] = active.get(t, 0) + 1
                    nexts.append((t, handoff, (node,)))
            if not chosen:
                self.outputs[node] = handoff
            left = active[node] - 1
            if left:
                active[node] = left
            else:
                del active[node]
            if self.waiting:
                nexts.extend(self._ready_joins())
            if not nexts or self.failure is not None:
                return
            for t, v, src in nexts[1:]:
                self._spawn(t, v, src)
            node, value, sources = nexts[0]

    def _ready_joins(self) -> list[tuple[str, Any, tuple[str, ...]]]:
        """Joins with inputs that no running branch can still reach: they run now."""
        ready = []
        reach = self.wf.reach
        active = self.active
        for j in list(self.waiting):
            if any(j in reach[a] for a in active):
                continue
            inputs = self.waiting.pop(j)
            ordered = {p: inputs[p] for p in self.wf.predecessors[j] if p in inputs}
            active[j] = active.get(j, 0) + 1
            ready.append((j, ordered, tuple(ordered)))
        return ready

    # -- steps ---------------------------------------------------------------------------------

    async def _step(
        self, node: str, value: Any, sources: tuple[str, ...]
    ) -> tuple[JSON, tuple[str, ...]]:
        """Run one step to its end (all attempts); its handoff and the successors it goes to."""
        wf = self.wf
        scope = self.scope
        agent = wf.agents[node]
        step = scope.next_step()
        self.steps_run += 1
        if self.steps_run > wf.max_steps:
            err = StepError(
                node, step, 0, f"the run passed max_steps={wf.max_steps} (a router loops too long?)"
            )
            self._record(step, node, err.outcome, 0, value, None, sources, None, str(err))
            raise err
        merge = wf.merges.get(node)
        if merge is not None:
            try:
                value = json_copy(merge(value), "merged input")
            except Exception as exc:
                span = scope.agent_span(node, step, 1, value, sources)
                err = AgentError(
                    node,
                    step,
                    1,
                    f"merge of {', '.join(sources)} failed: {type(exc).__name__}: {exc}",
                )
                err.__cause__ = exc
                scope.end_failed(span, err.outcome, err)
                self._record(step, node, err.outcome, 1, value, None, sources, None, str(err))
                raise err from exc

        async def checks(
            handoff: Any, changes: dict[str, Any] | None, delete: tuple[str, ...], view: Any,
            span: Span, attempt: int,
        ) -> tuple[str, ...]:  # fmt: skip
            route = wf.routes.get(node)
            chosen = wf.successors[node] if route is None else await self._route(
                route, node, step, attempt, span, handoff, changes, delete
            )  # fmt: skip
            contracts = wf.edge_contracts
            if contracts:
                for t in chosen:
                    contract = contracts.get((node, t))
                    if contract is not None:
                        self.runner.check(contract, handoff, node, t, step, attempt, span)
            return chosen

        out = await self.runner.run(agent, step, value, sources=sources, checks=checks)
        failed = out.error
        if failed is not None:
            self._record(
                step, node, failed.outcome, out.attempts, value, getattr(failed, "payload", None),
                sources, None, str(failed),
            )  # fmt: skip
            raise failed
        self.records.append(
            StepRecord(
                step, node, "ok", out.attempts, value, out.handoff, sources, out.version, None
            )
        )
        if agent.compensate is not None:
            self.saga.completed(CompletedStep(step, agent, out.handoff, out.version))
        return out.handoff, out.extra

    def _record(
        self, step: int, node: str, outcome: str, attempts: int, value: Any, output: Any,
        sources: tuple[str, ...], version: int | None, error: str | None,
    ) -> None:  # fmt: skip
        self.records.append(
            StepRecord(step, node, outcome, attempts, value, output, sources, version, error)
        )

    async def _route(
        self, route: Route, node: str, step: int, attempt: int, span: Span, handoff: Any,
        changes: dict[str, Any] | None, delete: tuple[str, ...],
    ) -> tuple[str, ...]:  # fmt: skip
        doc = None
        if changes or delete:
            doc = dict(self.scope.ledger.head.doc)
            doc.update(changes or {})
            for k in delete:
                doc.pop(k, None)
        view = self.scope.view(span, node, doc=doc)
        try:
            picked = route.fn(view, handoff)
            if route.is_async or asyncio.iscoroutine(picked):
                picked = await picked
        except Exception as exc:
            raise AgentError(
                node, step, attempt, f"router raised {type(exc).__name__}: {exc}"
            ) from exc
        labels = [] if picked is None else [picked] if isinstance(picked, str) else list(picked)
        targets: list[str] = []
        for label in labels:
            t = route.labels.get(str(label))
            if t is None:
                known = ", ".join(repr(k) for k in route.labels)
                raise OutputError(
                    node, step, attempt, f"router returned {label!r}; its labels are {known}"
                )
            if t not in targets:
                targets.append(t)
        return tuple(targets)
