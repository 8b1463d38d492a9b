"""Choreography across processes: agents served by workers, a run started by a coordinator.

A choreographed run (:class:`~engine.Choreography`) can be spread over processes and
machines that share a Redis:

- a :class:`Worker` serves the subscriptions of some of a choreography's agents
  (all of them by default) for every run that reaches them, on a
  :class:`~engine.RedisBus`; several workers of one agent share its messages;
- a :class:`DistributedChoreographer` starts a run: it records the run's root span,
  creates the run's shared state (a :class:`~engine.RedisLedger`), declares the
  consumer groups, publishes the input, waits until nothing more can happen, and
  ends the run with the same status rules as :class:`~engine.Choreographer`.

Everything a worker does to a run goes through the choreography engine's own run
object (``engine.choreography._choreographer.ChoreographyRun``), so each delivery is handled, and recorded, exactly
as on the in-process bus: a ``process`` span child of the run's root (whose context
every message carries in ``agentrace-run``), linked to its ``send`` span, the agent's
step under it, state commits and reads, contract checks, acks. Only the run's state
(ordered by Redis), step numbers (a Redis counter) and what the coordinator needs to
decide the run's status (steps, failures and dead letters, reported to a Redis list)
are shared. Each process records with its own recorder; sent to one OTLP receiver
(``agentrace serve``) the spans make one trace.

What a networked bus adds: a delivery abandoned by a process that died (kill -9) is
recorded, when another worker claims the message, as the in-process bus records a
consumer that crashed before acking (a ``process`` span with an ``exception`` event
and status ERROR), for the attempt the dead process had.

Not supported across processes: choreographed sagas (their compensation bookkeeping
lives in one process) and hybrid runs' start step compensations.

Async rules: a worker and a coordinator each live on one event loop. The shared
ledger blocks that loop for a Redis round trip per commit and per head read.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import redis

from tracer import (
    ActiveSpan,
    AgentraceError,
    Clock,
    IdGenerator,
    RandomIds,
    Recorder,
    SpanContext,
    SystemClock,
    canonical_json,
)

from ..choreography._bus import RUN_CONTEXT, DeadLetter, Delivery, Message, Unsettled
from ..choreography._bus_tracer import BusTracer, ConsumerCrashed, context_of
from ..choreography._choreographer import (
    Choreographer,
    Choreography,
    ChoreographyResult,
    ChoreographyRun,
    DeliveryFailed,
    Subscription,
)
from ..choreography._faults import FaultRule, Faults
from ..core._cache import make_caches
from ..core._errors import EngineError, WorkflowError
from ..core._ledger import JSON, json_copy
from ..core._recording import RunScope
from ..core._step import StepRecord
from ..core._time import RealTime, TimeSource
from ._bus import Abandoned, RedisBus, run_context
from ._ledger import LedgerError, RedisLedger, call

_log = logging.getLogger("agentrace.worker")

TIME_SCALE: Final = 0.02  # agents' simulated work: 1.2 s of research takes 24 ms


@dataclass(frozen=True, slots=True)
class DistributedScenario:
    """A choreography with its run's input, and faults for the workers of some agents."""

    name: str
    choreography: Callable[[], Choreography]
    input: Any = None
    key: str | None = None
    faults: Mapping[str, tuple[FaultRule, ...]] = field(default_factory=dict)
    expect: str = "completed"  # the status the run ends with
    time_scale: float = TIME_SCALE

    def faults_for(self, agents: list[str]) -> list[FaultRule]:
        return [r for a in agents for r in self.faults.get(a, ())]


class ScaledTime:
    """Real time in which agents' sleeps and timeouts last ``scale`` times as long.

    For demonstrations and tests of multi-process runs whose agents simulate minutes
    of work with ``ctx.sleep``. The clock is the real one; ack timeouts and redelivery
    delays of the bus are not scaled (they are Redis's, in real milliseconds).
    """

    def __init__(self, scale: float, clock: Clock | None = None) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.scale = scale
        self.clock: Clock = clock or SystemClock()

    def now_ns(self) -> int:
        return self.clock.now_ns()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) * self.scale)

    @asynccontextmanager
    async def timeout(self, seconds: float) -> AsyncIterator[None]:
        async with asyncio.timeout(max(0.0, seconds) * self.scale):
            yield


def run_key(namespace: str, run_id: str, what: str) -> str:
    return f"{namespace}:run:{run_id}:{what}"


class SharedRunScope(RunScope):
    """A :class:`~engine.RunScope` whose ledger and step numbers are the run's in Redis.

    ``create=True`` (the coordinator) records the root span and creates the shared
    ledger from ``initial_state``; ``create=False`` (a worker, ``recorder=None``,
    ``run_id`` given) joins the run's ledger.
    """

    def __init__(
        self,
        recorder: Recorder | None,
        *,
        client: redis.Redis,
        namespace: str,
        create: bool,
        reconnect_timeout: float = 30.0,
        caches: Iterable[Any] = (),
        **kw: Any,
    ) -> None:
        policies = list(caches)
        super().__init__(recorder, caches=(), **kw)
        self._client = client
        self._namespace = namespace
        self._timeout = reconnect_timeout
        self.ledger = RedisLedger(
            client, namespace=namespace, run_id=self.run_id, clock=self.clock,
            initial=kw.get("initial_state"), create=create, span_id=self.root.span_id,
            reconnect_timeout=reconnect_timeout,
        )  # fmt: skip
        self.caches = make_caches(policies, self.ledger)

    def next_step(self) -> int:
        key = run_key(self._namespace, self.run_id, "steps")
        return int(call(lambda: self._client.incr(key), "number a step", self._timeout))


# -- what workers tell the coordinator -----------------------------------------------------------


def _record_json(r: StepRecord) -> dict[str, Any]:
    return {"kind": "step", "record": list(r)}


def _failure_json(err: EngineError) -> dict[str, Any]:
    if isinstance(err, DeliveryFailed):
        return {
            "kind": "failure", "type": "DeliveryFailed", "message_id": err.message_id,
            "topic": err.topic, "group": err.group, "detail": err.detail,
        }  # fmt: skip
    return {"kind": "failure", "type": type(err).__name__, "text": str(err)}


def _dead_json(d: DeadLetter) -> dict[str, Any]:
    return {
        "kind": "dead_letter", "message": d.message.to_json().decode(), "group": d.group,
        "consumer": d.consumer, "attempts": d.attempts, "reason": d.reason,
    }  # fmt: skip


class RemoteFailure(EngineError):
    """A failure a worker reported (its one line, as the worker's engine wrote it)."""


@dataclass(slots=True)
class _Reports:
    records: list[StepRecord]
    failures: list[EngineError]
    dead_letters: list[DeadLetter]
    published: int = 0


def _parse_reports(rows: Iterable[bytes | str]) -> _Reports:
    out = _Reports([], [], [])
    for raw in rows:
        r = orjson.loads(raw)
        kind = r.get("kind")
        if kind == "step":
            f = r["record"]
            out.records.append(
                StepRecord(f[0], f[1], f[2], f[3], f[4], f[5], tuple(f[6]), f[7], f[8])
            )
        elif kind == "failure":
            if r.get("type") == "DeliveryFailed":
                out.failures.append(
                    DeliveryFailed(r["message_id"], r["topic"], r["group"], r["detail"])
                )
            else:
                out.failures.append(RemoteFailure(r.get("text", "")))
        elif kind == "published":
            out.published += int(r["n"])
        elif kind == "dead_letter":
            out.dead_letters.append(
                DeadLetter(
                    Message.from_json(r["message"]), r["group"], r["consumer"], int(r["attempts"]),
                    r["reason"],
                )
            )  # fmt: skip
    out.records.sort(key=lambda x: (x.step, x.attempts))
    return out


# -- the worker ----------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _WorkerRun:
    scope: SharedRunScope
    run: ChoreographyRun
    handlers: dict[tuple[str, str], Any]
    reported: tuple[int, int, int, int] = (0, 0, 0, 0)


class Worker:
    """Serves ``agents`` of ``choreography`` (all by default) for every run, on ``bus``.

    ``client`` is a synchronous Redis client for the runs' shared state (the same
    Redis and namespace as the bus). ``recorder`` records what this process does
    (flushed after each delivery, so a process killed later loses nothing it
    finished); ``time`` is what agents sleep on; ``seed`` seeds ``ctx.rng``.
    ``runs_kept`` runs stay in memory; an older one is joined again from Redis.
    """

    def __init__(
        self,
        choreography: Choreography,
        *,
        bus: RedisBus,
        client: redis.Redis,
        recorder: Recorder | None = None,
        agents: Iterable[str] | None = None,
        time: TimeSource | None = None,
        seed: int | None = None,
        ids: IdGenerator | None = None,
        runs_kept: int = 64,
    ) -> None:
        choreography.validate()
        if choreography.saga is not None:
            raise WorkflowError(
                choreography.name, "choreographed sagas cannot run across processes (yet)"
            )
        self.choreography = choreography
        self.bus = bus
        self.client = client
        self.recorder = recorder
        self.time: TimeSource = time or RealTime()
        self.ids: IdGenerator = ids or (recorder.ids if recorder is not None else RandomIds())
        self.owner = Choreographer(recorder, time=self.time, ids=self.ids, seed=seed)
        known = set(choreography.agents)
        wanted = set(agents) if agents is not None else known
        unknown = wanted - known
        if unknown:
            raise WorkflowError(
                choreography.name,
                f"no agent(s) {', '.join(sorted(unknown))} (have: {', '.join(sorted(known))})",
            )
        self.subscriptions = [
            s for s in choreography._all_subscriptions() if s.agent.name in wanted
        ]
        if not self.subscriptions:
            raise WorkflowError(
                choreography.name, f"agent(s) {', '.join(sorted(wanted))} subscribe to nothing"
            )
        self.runs_kept = runs_kept
        self._runs: OrderedDict[str, _WorkerRun] = OrderedDict()
        self._flush_lock = asyncio.Lock()
        self.handled = 0
        self.flush_errors = 0
        bus.on_abandoned = self._on_abandoned

    @property
    def agents(self) -> list[str]:
        return sorted({s.agent.name for s in self.subscriptions})

    async def start(self) -> None:
        """Join the consumer groups (deliveries start with :meth:`serve`)."""
        for sub in self.subscriptions:
            await self.bus.subscribe(
                sub.topic, sub.group, self._handler(sub), consumer=sub.agent.name,
                policy=sub.policy or self.choreography.policy,
                on_dead_letter=self._dead_letter_listener(sub),
            )  # fmt: skip

    async def serve(self) -> None:
        """Deliver until :meth:`stop` (or cancellation)."""
        await self.bus.serve()

    def stop(self) -> None:
        self.bus.stop()

    async def close(self, grace: float = 10.0) -> None:
        """Let deliveries under way finish (up to ``grace`` seconds), flush, close the bus."""
        await self.bus.drain(grace)
        await self.bus.close()
        await self._flush()

    # -- runs ----------------------------------------------------------------------------------

    def _run_of(self, message: Message) -> _WorkerRun:
        root = context_of(message.headers.get(RUN_CONTEXT))
        if root is None:
            raise LedgerError(f"message {message.id} names no run (no {RUN_CONTEXT} header)")
        run_id = root.trace_id_hex
        wr = self._runs.get(run_id)
        if wr is not None:
            self._runs.move_to_end(run_id)
            return wr
        choreo = self.choreography
        scope = SharedRunScope(
            None, client=self.client, namespace=self.bus.namespace, create=False,
            reconnect_timeout=self.bus.reconnect_timeout, caches=choreo.caches.values(),
            workflow=choreo.name, clock=self.time.clock, ids=self.ids, pattern=choreo.pattern,
            run_id=run_id,
        )  # fmt: skip
        run = ChoreographyRun(
            self.owner, choreo, scope, self.bus, BusTracer(self.recorder, root=root, ids=self.ids)
        )
        handlers = {
            (s.topic, s.group): run._compensation_handler(s) if s.compensation else run._handler(s)
            for s in self.subscriptions
        }
        wr = _WorkerRun(scope, run, handlers)
        self._runs[run_id] = wr
        while len(self._runs) > self.runs_kept:
            _, old = self._runs.popitem(last=False)
            old.scope.finish("completed")  # closes its caches; records nothing (no recorder)
        return wr

    def _handler(self, sub: Subscription) -> Any:
        async def handle(delivery: Delivery) -> None:
            try:
                wr = self._run_of(delivery.message)
            except LedgerError as exc:
                # A message of a run this Redis knows nothing of will never be handled here.
                await self.bus.nack(delivery, requeue=False, reason=str(exc))
                return
            try:
                await wr.handlers[(sub.topic, sub.group)](delivery)
            finally:
                self.handled += 1
                await self._report(wr)
                await self._flush()

        return handle

    def _dead_letter_listener(self, sub: Subscription) -> Any:
        async def on_dead_letter(dead: DeadLetter) -> None:
            try:
                wr = self._run_of(dead.message)
            except LedgerError:
                return
            await wr.run._dead_letter_listener(sub)(dead)
            await self._report(wr)
            await self._flush()

        return on_dead_letter

    async def _on_abandoned(self, a: Abandoned) -> None:
        """Record the delivery a dead process left, as a consumer crash before its ack."""
        sub = next(
            (s for s in self.subscriptions if s.topic == a.message.topic and s.group == a.group),
            None,
        )
        if sub is None or self.recorder is None:
            return
        try:
            wr = self._run_of(a.message)
        except LedgerError:
            return
        d = Delivery(a.message, a.group, a.consumer, a.attempt, "", None, a.delivered_ns)
        span = wr.run.tracer.start_process(d, sub.agent.name)
        exc = ConsumerCrashed(
            f"consumer {a.consumer!r} (process {a.instance}) died holding message "
            f"{a.message.id}, attempt {a.attempt}, before its ack"
        )
        span.record_exception(exc, escaped=True)
        span.set_status("error", str(exc))
        span.end()

    async def _report(self, wr: _WorkerRun) -> None:
        run = wr.run
        nr, nf, nd, npub = wr.reported
        rows = [orjson.dumps(_record_json(r)) for r in run.records[nr:]]
        rows += [orjson.dumps(_failure_json(f)) for f in run.failures[nf:]]
        rows += [orjson.dumps(_dead_json(d)) for d in run.dead_letters[nd:]]
        if run.published > npub:
            rows.append(orjson.dumps({"kind": "published", "n": run.published - npub}))
        wr.reported = (len(run.records), len(run.failures), len(run.dead_letters), run.published)
        if rows:
            key = run_key(self.bus.namespace, wr.scope.run_id, "reports")
            await asyncio.to_thread(
                call, lambda: self.client.rpush(key, *rows), "report", self.bus.reconnect_timeout
            )

    async def _flush(self) -> None:
        if self.recorder is None:
            return
        # The sink may be a network call: off the loop, one at a time.
        async with self._flush_lock:
            try:
                await asyncio.to_thread(self.recorder.flush)
            except AgentraceError as exc:
                # The receiver is away: say so and go on delivering (those spans are lost).
                self.flush_errors += 1
                _log.warning("spans not sent: %s", exc)


# -- the coordinator -----------------------------------------------------------------------------


class DistributedChoreographer:
    """Starts choreographed runs whose agents are served by :class:`Worker` s (see the module
    docstring). Records the run's root span and entry through ``recorder``.

    ``url`` and ``namespace`` name the Redis the workers use; ``timeout`` bounds how long
    a run waits for the workers (None: for ever).
    """

    def __init__(
        self,
        recorder: Recorder | None,
        *,
        url: str,
        namespace: str = "agentrace",
        time: TimeSource | None = None,
        ids: IdGenerator | None = None,
        seed: int | None = None,
        timeout: float | None = 120.0,
        reconnect_timeout: float = 30.0,
    ) -> None:
        self.recorder = recorder
        self.url = url
        self.namespace = namespace
        self.time: TimeSource = time or RealTime(recorder.clock if recorder is not None else None)
        self.ids: IdGenerator = ids or (recorder.ids if recorder is not None else RandomIds())
        self.seed = seed
        self.timeout = timeout
        self.reconnect_timeout = reconnect_timeout

    async def run(
        self,
        choreography: Choreography,
        input: Any = None,
        *,
        state: Mapping[str, Any] | None = None,
        key: str | None = None,
        scenario: str | None = None,
        run_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> ChoreographyResult:
        """Publish ``input`` on the entry topic (or run the start step) and wait until the
        workers are done; the result as :meth:`Choreographer.run` gives it."""
        choreography.validate()
        if choreography.saga is not None:
            raise WorkflowError(
                choreography.name, "choreographed sagas cannot run across processes (yet)"
            )
        try:
            value = json_copy(input, "input")
            initial: dict[str, JSON] = json_copy(dict(state or {}), "state")
        except ValueError as exc:
            raise EngineError(f"choreography {choreography.name!r}: the run's {exc}") from None
        declared = (
            canonical_json(choreography.declared_graph()) if self.recorder is not None else None
        )
        client = redis.Redis.from_url(self.url)
        bus = RedisBus.from_url(
            self.url, namespace=self.namespace, time=self.time,
            reconnect_timeout=self.reconnect_timeout,
        )  # fmt: skip
        try:
            scope = SharedRunScope(
                self.recorder, client=client, namespace=self.namespace, create=True,
                reconnect_timeout=self.reconnect_timeout, caches=choreography.caches.values(),
                workflow=choreography.name, clock=self.time.clock, ids=self.ids,
                pattern=choreography.pattern, initial_state=initial, ref=choreography.ref, version=choreography.version,
                declared_graph=declared, scenario=scenario, seed=self.seed,
                attributes=attributes, run_id=run_id,
            )  # fmt: skip
            return await self._run(choreography, scope, bus, client, value, key)
        finally:
            await bus.close()
            client.close()

    async def _run(
        self,
        choreo: Choreography,
        scope: SharedRunScope,
        bus: RedisBus,
        client: redis.Redis,
        value: JSON,
        key: str | None,
    ) -> ChoreographyResult:
        root = scope.root.context if isinstance(scope.root, ActiveSpan) else None
        if root is None:
            # Unrecorded: workers still need a run context to find the run's state.
            root = SpanContext(bytes.fromhex(scope.run_id), self.ids.span_id())
        owner = Choreographer(self.recorder, time=self.time, ids=self.ids, seed=self.seed)
        run = ChoreographyRun(
            owner, choreo, scope, bus, BusTracer(self.recorder, root=root, ids=self.ids)
        )
        try:
            # The groups exist before the first message, so none is missed by a worker that
            # starts later.
            for sub in choreo._all_subscriptions():
                await bus.declare(sub.topic, sub.group, policy=sub.policy or choreo.policy)
            start = choreo.start_step
            # Unrecorded runs carry their context too: workers find the run's state by it.
            with run_context(root.traceparent):
                if start is None:
                    assert choreo.entry is not None
                    msg = run._message(choreo.entry, value, key, choreo.source, [])
                    await run._publish(msg, scope.root)
                else:
                    await run._start(start, value, key)
            async with _deadline(self.timeout):
                await bus.run_until_idle()
            unsettled = tuple(u for u in await bus.unsettled() if _run_of(u) == scope.run_id)
            rows = await asyncio.to_thread(
                call,
                lambda: client.lrange(run_key(self.namespace, scope.run_id, "reports"), 0, -1),
                "read reports",
                self.reconnect_timeout,
            )
        except TimeoutError:
            late = EngineError(
                f"choreography {choreo.name!r}: the workers were not done after {self.timeout:g} s"
                " (are workers running for every agent?)"
            )
            scope.finish("failed", late)
            raise late from None
        except BaseException as exc:
            scope.finish("failed", exc)
            raise
        reports = _parse_reports(rows)
        run.records.extend(reports.records)
        run.failures.extend(reports.failures)
        run.dead_letters.extend(reports.dead_letters)
        run.records.sort(key=lambda r: (r.step, r.attempts))
        status, error = run.outcome(unsettled)
        scope.finish(status, error)
        return ChoreographyResult(
            scope.run_id, choreo.name, status, tuple(run.records), (), scope.ledger,
            run.published + reports.published, unsettled,
            tuple(run.dead_letters), (), error,
        )  # fmt: skip


@asynccontextmanager
async def _deadline(seconds: float | None) -> AsyncIterator[None]:
    if seconds is None:
        yield
        return
    async with asyncio.timeout(seconds):
        yield


def _run_of(u: Unsettled) -> str:
    ctx = context_of(u.message.headers.get(RUN_CONTEXT))
    return ctx.trace_id_hex if ctx is not None else ""


def faults_from_specs(specs: Iterable[str], seed: int = 0) -> Faults | None:
    """Fault rules from ``KIND[:field=value,...]`` specs (``lose_ack:topic=orders,attempt=1``);
    the fields are :class:`~engine.FaultRule`'s. None for no specs."""
    rules = []
    for spec in specs:
        kind, _, rest = spec.partition(":")
        kw: dict[str, Any] = {}
        for part in filter(None, rest.split(",")):
            name, eq, raw = part.partition("=")
            if not eq:
                raise ValueError(f"fault {spec!r}: {part!r} is not field=value")
            name = name.strip()
            if name in ("attempt", "nth", "limit"):
                kw[name] = int(raw)
            elif name in ("probability", "seconds"):
                kw[name] = float(raw)
            else:
                kw[name] = raw
        kind = {"lose_ack": "ack_lost"}.get(kind.strip(), kind.strip())
        try:
            rules.append(FaultRule(kind, **kw))  # type: ignore[arg-type]  # checked by FaultRule
        except TypeError as exc:
            raise ValueError(f"fault {spec!r}: {exc}") from None
    return Faults(rules, seed=seed) if rules else None


# -- naming what a worker serves -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerTarget:
    """What ``MODULE:ATTR[.AGENT]`` names: a choreography, the agents picked (None: all), and the
    distributed scenario it came from, if any (its input, key and per-agent faults)."""

    choreography: Choreography
    agents: tuple[str, ...] | None
    scenario: DistributedScenario | None = None


def resolve_worker_target(target: str) -> WorkerTarget:
    """Resolve ``MODULE:ATTR[.AGENT]``: ATTR is a :class:`~engine.Choreography`, a function
    returning one, or a distributed scenario; a last ``.AGENT`` that is not an attribute
    picks that agent. WorkflowError saying what is wrong otherwise."""
    module_name, colon, path = target.partition(":")
    if not colon or not module_name or not path:
        raise WorkflowError(target, "name it as MODULE:CHOREOGRAPHY or MODULE:CHOREOGRAPHY.AGENT")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise WorkflowError(target, f"cannot import {module_name}: {exc}") from None
    parts = path.split(".")
    obj: Any = module
    agent: str | None = None
    for i, part in enumerate(parts):
        if hasattr(obj, part):
            obj = getattr(obj, part)
        elif i == len(parts) - 1 and i > 0:
            agent = part
        else:
            raise WorkflowError(target, f"{module_name} has no {'.'.join(parts[: i + 1])}")
    scenario = obj if isinstance(obj, DistributedScenario) else None
    made: Any = scenario.choreography() if scenario is not None else obj
    if not isinstance(made, Choreography) and callable(made) and not hasattr(made, "execute"):
        try:
            inspect.signature(made).bind()
        except TypeError:
            raise WorkflowError(
                target,
                f"names a {type(made).__name__} that takes arguments, not a choreography "
                "(or a function of no arguments returning one)",
            ) from None
        except ValueError:
            pass  # no signature to check (a builtin): call it and see
        made = made()
    if not isinstance(made, Choreography):
        raise WorkflowError(
            target,
            f"names a {type(made).__name__}, not a choreography (or a function returning one); "
            "an agent alone subscribes to nothing: name the choreography it belongs to, "
            "then .AGENT",
        )
    if agent is not None and agent not in made.agents:
        raise WorkflowError(
            target, f"no agent {agent!r} in {made.name!r} (have: {', '.join(made.agents)})"
        )
    return WorkerTarget(made, (agent,) if agent is not None else None, scenario)
