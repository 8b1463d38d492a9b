"""The agents of a replay: each call answered from the recording, or run live and compared.

A :class:`ReplaySession` wraps every agent of the workflow being replayed
(``wrap``) in an agent with the same name and policies (retry, timeout,
breaker, contract) whose ``execute`` decides, call by call:

- **replayed** (the default): the call is matched to its recorded step (by step
  number, else the agent's next unmatched step) and attempt; the agent's input
  is compared with the recorded one; the recorded reads are made again through
  the view (so caches fill and serve as they did, and the reads are recorded
  again); the recorded duration passes on the replay's virtual clock; and the
  recorded result comes back: the output and the state changes of the version
  that attempt committed, or the recorded exception, timeout or rejected
  payload. The agent itself is not called.
- **live**: an overridden agent in a replay (its input and output are compared
  with the recording), or any agent once a fork has reached its version (nothing
  is compared: the fork is new history).

Compensations go the same way. After the run, :meth:`ReplaySession.finish`
compares what the engine returned (steps, outcomes, attempts, compensations,
the state ledger's hash chain, the run's status) with the recording and
returns every divergence, ordered by the replay clock.

Thread rules: a session belongs to one replay on one event loop.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import dataclasses
import sys
from collections.abc import Mapping
from typing import Any

from tracer import FakeClock, field_changes

from ..choreography._choreographer import Choreography, ChoreographyResult
from ..core._agent import Agent
from ..core._errors import EngineError
from ..core._ledger import JSON, StateLedger, Update, Version, json_copy
from ..core._time import VirtualTime
from ..core._view import AgentContext, StateView
from ..orchestration._orchestrator import RunResult, StepRecord
from ..orchestration._workflow import Workflow
from ._model import Divergence, DivergenceKind, ReplayGap
from ._recording import (
    RecordedAttempt,
    RecordedStep,
    RecordedVersion,
    Recording,
    parse_json,
)

_NS = 1_000_000_000
# Turns of the event loop a replayed step that was cancelled in the recording waits for the
# same cancellation before it gives up (the failing branch needs a few turns to get there).
_CANCEL_PATIENCE = 1_000
_dynamic_errors: dict[str, type[Exception]] = {}


def _handoff(result: Any) -> Any:
    """What the engine hands on for an agent's return value (see engine.orchestration._orchestrator)."""
    if type(result) is Update:
        return result.output if result.has_output else dict(result.changes)
    return result


def _same_text(recorded: str | None, value: Any) -> tuple[bool, JSON]:
    """Whether ``value`` is what ``recorded`` (canonical JSON text) says, and ``value`` as JSON."""
    try:
        plain = json_copy(value)
    except ValueError:
        return False, repr(value)
    if recorded is None:
        return plain is None, plain
    return same_json(parse_json(recorded), plain), plain


def same_json(a: JSON, b: JSON) -> bool:
    """Equal as JSON, types included (``1`` is not ``1.0`` nor ``True``): what comparing the
    canonical texts says, without writing them (a replayed step compares its input on the
    hot path)."""
    t = type(a)
    if t is not type(b):
        return False
    if t is dict:
        return a.keys() == b.keys() and all(same_json(v, b[k]) for k, v in a.items())
    if t is list:
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _changes(expected: JSON, actual: JSON) -> tuple[Any, ...]:
    if isinstance(expected, (dict, list)) and isinstance(actual, (dict, list)):
        return tuple(field_changes(expected, actual))
    return ()


class ReplaySession:
    """One replay's bookkeeping: matching, feeding, comparing (see the module docstring)."""

    def __init__(
        self,
        recording: Recording,
        *,
        time: VirtualTime,
        live: Mapping[str, Agent] | None = None,
        fork_version: int | None = None,
        latency: bool = True,
    ) -> None:
        self.rec = recording
        self.time = time
        self.clock: FakeClock = time.clock
        self.live = dict(live or {})
        self.fork_version = fork_version
        self.latency = latency
        self.divergences: list[Divergence] = []
        self._by_number = {s.step: s for s in recording.steps}
        self._by_agent: dict[str, list[RecordedStep]] = {}
        for s in recording.steps:
            self._by_agent.setdefault(s.agent, []).append(s)
        self._matched: set[int] = set()
        self.match_of: dict[tuple[str, int], RecordedStep | None] = {}
        self._versions_by_span = {v.span_id: v for v in recording.versions}
        self._compensations = {(a.agent, a.step, a.attempt): a for a in recording.compensations}
        self.live_steps: set[tuple[str, int]] = set()
        self._input_checked: set[tuple[str, int]] = set()
        self._flagged: set[tuple[str, int]] = set()  # replay steps already reported as extra
        self._at: dict[tuple[str, int], int] = {}  # replay step -> clock when it last ended
        self._emits: dict[tuple[str | None, str], str | None] = {}
        self._payloads: dict[str, str | None] | None = None
        # In a fork, the recorded steps that started before version k was committed are
        # replayed (and compared); the rest is new history.
        self.pre_fork: frozenset[int] | None = None
        if fork_version is not None:
            cut = recording.version(fork_version).committed_ns
            self.pre_fork = frozenset(s.step for s in recording.steps if s.start_ns <= cut)

    # -- divergences -----------------------------------------------------------------------

    def diverge(
        self, kind: DivergenceKind, step: int | None, agent: str | None, expected: JSON = None,
        actual: JSON = None, *, attempt: int | None = None, version: int | None = None,
        detail: str = "", changes: tuple[Any, ...] = (), at_ns: int | None = None,
    ) -> None:  # fmt: skip
        self.divergences.append(
            Divergence(
                kind, step, agent, expected, actual, attempt, version, detail, changes,
                self.clock.now_ns() if at_ns is None else at_ns,
            )
        )  # fmt: skip

    # -- wrapping ----------------------------------------------------------------------------

    def wrap_workflow(self, wf: Workflow) -> Workflow:
        agents = {name: self.wrap(a) for name, a in wf.agents.items()}
        return dataclasses.replace(wf, agents=agents)

    def wrap_choreography(self, choreo: Choreography) -> Choreography:
        wrapped: dict[str, Agent] = {}

        def one(a: Agent) -> Agent:
            if a.name not in wrapped:
                wrapped[a.name] = self.wrap(a)
            return wrapped[a.name]

        out = copy.copy(choreo)
        out.subscriptions = [
            dataclasses.replace(s, agent=one(s.agent)) for s in choreo.subscriptions
        ]
        for s in choreo.subscriptions:
            self._emits[(s.topic, s.agent.name)] = s.emits
        if choreo.start_step is not None:
            out.start_step = dataclasses.replace(
                choreo.start_step, agent=one(choreo.start_step.agent)
            )
            self._emits[(None, choreo.start_step.agent.name)] = choreo.start_step.emits
        out.contracts = dict(choreo.contracts)
        out.caches = dict(choreo.caches)
        return out

    def wrap(self, agent: Agent) -> Agent:
        """``agent`` with its calls answered by this session (same name and policies)."""
        session = self

        async def execute(state: StateView, value: Any, ctx: AgentContext) -> Any:
            return await session._step(agent, state, value, ctx)

        compensate = None
        live = self.live.get(agent.name)
        if agent.compensate is not None or (live is not None and live.compensate is not None):

            async def compensate(state: StateView, output: Any, ctx: AgentContext) -> Any:
                return await session._compensate(agent, state, output, ctx)

        return agent.replace(execute=execute, compensate=compensate)

    def is_live(self, name: str, state: StateView) -> bool:
        if self.fork_version is not None:
            return state.version >= self.fork_version
        return name in self.live

    # -- matching ----------------------------------------------------------------------------

    def match(self, agent: str, step: int, *, called: bool = True) -> RecordedStep | None:
        """The recorded step that the replay's step ``step`` of ``agent`` stands for (once)."""
        key = (agent, step)
        if key in self.match_of:
            return self.match_of[key]
        rs = self._by_number.get(step)
        if rs is None or rs.agent != agent or rs.step in self._matched:
            # Numbering differs once the replay took another path (or branches interleaved
            # otherwise): the agent's next step that nobody matched yet.
            rs = next(
                (
                    s
                    for s in self._by_agent.get(agent, ())
                    if s.step not in self._matched and s.called == called
                ),
                None,
            )
        if rs is not None:
            self._matched.add(rs.step)
        self.match_of[key] = rs
        return rs

    # -- steps -------------------------------------------------------------------------------

    async def _step(self, agent: Agent, state: StateView, value: Any, ctx: AgentContext) -> Any:
        name, step, attempt = agent.name, ctx.step, ctx.attempt
        key = (name, step)
        try:
            if self.is_live(name, state):
                self.live_steps.add(key)
                live = self.live.get(name, agent)
                if self.fork_version is not None:
                    return await live.run(state, value, ctx)  # new history: nothing to compare
                rs = self.match(name, step)
                if rs is None:
                    self._extra(name, step, attempt, value)
                    return await live.run(state, value, ctx)
                self._check_input(rs, attempt, value)
                result = await live.run(state, value, ctx)
                self._check_output(rs, attempt, result)
                return result
            rs = self.match(name, step)
            if rs is None:
                self._extra(name, step, attempt, value)
                raise ReplayGap(f"no recorded step of agent {name!r} for its call at step {step}")
            self._check_input(rs, attempt, value)
            rec = rs.attempt(attempt)
            if rec is None:
                self.diverge(
                    "attempt", rs.step, name, len(rs.attempts), attempt, attempt=attempt,
                    detail=f"the recording has {len(rs.attempts)} attempt(s) of this step",
                )  # fmt: skip
                raise ReplayGap(
                    f"no recorded attempt {attempt} of agent {name!r} at step {rs.step}"
                )
            return await self._feed(agent, rs, rec, state, ctx)
        finally:
            self._at[key] = self.clock.now_ns()

    def _extra(self, name: str, step: int, attempt: int, value: Any) -> None:
        if (name, step) in self._flagged:
            return
        self._flagged.add((name, step))
        _, plain = _same_text(None, value)
        self.diverge(
            "step", step, name, None, {"agent": name, "input": plain}, attempt=attempt,
            detail="the replay ran a step the recording does not have",
        )  # fmt: skip

    def _check_input(self, rs: RecordedStep, attempt: int, value: Any) -> None:
        key = (rs.agent, rs.step)
        if key in self._input_checked:
            return
        self._input_checked.add(key)
        rec = rs.attempt(attempt) or rs.attempts[0]
        expected = rec.input_value
        # The engine hands agents plain JSON already: compared as it is, copied only to report.
        if not same_json(expected, value):
            _, plain = _same_text(None, value)
            self.diverge(
                "input", rs.step, rs.agent, expected, plain, attempt=attempt,
                changes=_changes(expected, plain),
            )  # fmt: skip

    def _check_output(self, rs: RecordedStep, attempt: int, result: Any) -> None:
        rec = rs.attempt(attempt)
        if rec is None or rec.outcome not in ("ok", "rejected"):
            return  # the outcome check after the run reports it
        same, plain = _same_text(rec.output, _handoff(result))
        if not same:
            expected = rec.output_value
            self.diverge(
                "output", rs.step, rs.agent, expected, plain, attempt=attempt,
                changes=_changes(expected, plain),
            )  # fmt: skip

    async def _feed(
        self, agent: Agent, rs: RecordedStep, rec: RecordedAttempt, state: StateView,
        ctx: AgentContext,
    ) -> Any:  # fmt: skip
        self._reads(rs.step, rec, state)
        outcome = rec.outcome
        if outcome == "timeout":
            # Sleep the agent's own timeout: virtual time raises TimeoutError at its deadline,
            # and an agent that lost its timeout since fails otherwise (a divergence).
            await self.time.sleep(agent.timeout if agent.timeout is not None else 0.0)
            raise TimeoutError()
        await self._pass(agent, rec)
        if outcome in ("ok", "rejected"):
            self._publish_extra(rec, ctx)
            return self._result(rec)
        if outcome == "failed":
            raise self._exception(agent, rec)
        if outcome == "cancelled":
            for _ in range(_CANCEL_PATIENCE):
                await asyncio.sleep(
                    0
                )  # cancelled here, as in the recording, once the other branch fails
        self.diverge(
            "outcome", rs.step, agent.name, outcome, "called", attempt=rec.attempt,
            detail=f"the recording did not call the agent here ({outcome})",
        )  # fmt: skip
        raise ReplayGap(f"agent {agent.name!r} at step {rs.step}: the recording has {outcome}")

    async def _pass(self, agent: Agent, rec: RecordedAttempt) -> None:
        """Let the recorded duration pass on the replay's clock (breaker cooldowns, cache TTLs
        and ack timeouts see the time they saw)."""
        if not self.latency or rec.duration_ns <= 0:
            return
        if agent.timeout is not None and rec.duration_ns >= agent.timeout * _NS:
            await self.time.sleep(
                rec.duration_ns / _NS
            )  # now past its timeout: virtual time says so
            return
        # Moving the clock without a loop turn: a replayed step costs no scheduling.
        self.clock.advance(ns=rec.duration_ns)

    def _result(self, rec: RecordedAttempt) -> Any:
        output = rec.output_value
        v = self._versions_by_span.get(rec.span_id)
        if v is None:
            return Update(output=output)
        return Update(dict(v.changes), delete=v.deleted, output=output)

    def _reads(self, step: int, rec: RecordedAttempt, state: StateView) -> None:
        """Make the recorded reads again through ``state`` (and compare the versions served)."""
        for r in rec.reads:
            if r.via == "cache" and r.cache:
                try:
                    view = state.cache(r.cache)
                except EngineError as exc:
                    self.diverge("read", step, rec.agent, r.cache, None, detail=str(exc))
                    continue
                for k in r.keys:
                    try:
                        got = view.read(k).version
                    except KeyError:
                        got = None
                    if got != r.version:
                        self.diverge(
                            "read", step, rec.agent, r.version, got, attempt=rec.attempt,
                            detail=f"{k!r} through cache {r.cache!r} was served another version",
                        )  # fmt: skip
            elif r.via == "store":
                for k in r.keys:
                    _ = k in state  # noted as read, as the agent did
                if state.version != r.version:
                    self.diverge(
                        "read", step, rec.agent, r.version, state.version, attempt=rec.attempt,
                        detail=f"{', '.join(r.keys)} read from another version",
                    )  # fmt: skip

    def _publish_extra(self, rec: RecordedAttempt, ctx: AgentContext) -> None:
        """Stage again what a choreographed step published besides its ``emits``."""
        publish = getattr(ctx, "publish", None)
        if publish is None or not self.rec.messages:
            return
        message = getattr(ctx, "message", None)
        parent = self.rec.process_parent.get(rec.span_id)
        if message is not None:
            sends = [m for m in self.rec.messages if m.parent_span_id == parent]
        else:  # a hybrid's start step: its outbox leaves under the root, before any delivery
            first = min((d.time_ns for d in self.rec.deliveries), default=None)
            sends = [
                m
                for m in self.rec.messages
                if m.parent_span_id == parent
                and m.time_ns >= rec.start_ns
                and (first is None or m.time_ns < first)
            ]
        emits = self._emits.get((message.topic if message is not None else None, rec.agent))
        if emits is not None and rec.output is not None and rec.output != "null":
            # The engine stages the emitted output first: the first recorded send was it, on
            # whatever topic the recorded code emitted to (the engine publishes the new one).
            sends = sends[1:]
        for m in sends:
            publish(m.topic, self._payload(m.message_id), key=m.key)

    def _payload(self, message_id: str) -> JSON:
        """A message's payload, as the first step that handled it got it (None if none did)."""
        if self._payloads is None:
            by_process = {
                self.rec.process_parent.get(s.attempts[0].span_id): s.attempts[0].input
                for s in self.rec.steps
            }
            self._payloads = {}
            for d in self.rec.deliveries:
                if d.message_id not in self._payloads and d.span_id in by_process:
                    self._payloads[d.message_id] = by_process[d.span_id]
        return parse_json(self._payloads.get(message_id))

    def _exception(self, agent: Agent, rec: RecordedAttempt) -> Exception:
        """The recorded exception again: its class when the agent's module (or builtins) has
        one by that name, else a stand-in class of that name; with the recorded message."""
        name = rec.error_type or "Exception"
        message = rec.error_message or ""
        cls = _exception_class(agent, name)
        if cls is not None:
            try:
                return cls(message)
            except Exception:  # a constructor that wants more than a message
                pass
        return _stand_in(name)(message)

    # -- compensations -----------------------------------------------------------------------

    async def _compensate(
        self, agent: Agent, state: StateView, output: Any, ctx: AgentContext
    ) -> Any:
        name = agent.name
        rs = self.match_of.get((name, ctx.step))
        if self.is_live(name, state) or (name, ctx.step) in self.live_steps:
            live = self.live.get(name, agent)
            if live.compensate is None:
                return None
            return await live.run_compensate(state, output, ctx)
        rec = self._compensations.get((name, rs.step, ctx.attempt)) if rs is not None else None
        if rec is None:
            self.diverge(
                "compensation", rs.step if rs is not None else ctx.step, name, None, "compensated",
                attempt=ctx.attempt, detail="the recording has no such compensation",
            )  # fmt: skip
            raise ReplayGap(f"no recorded compensation of agent {name!r} (attempt {ctx.attempt})")
        self._reads(rec.step, rec, state)
        await self._pass(agent, rec)
        if rec.outcome != "ok":
            raise self._exception(agent, rec)
        v = self._versions_by_span.get(rec.span_id)
        if v is None:
            return None
        return Update(dict(v.changes), delete=v.deleted)

    # -- after the run -----------------------------------------------------------------------

    def finish(self, result: RunResult | ChoreographyResult) -> tuple[Divergence, ...]:
        """Compare what the run returned with the recording; every divergence, in replay order."""
        end = self.clock.now_ns()
        self._steps(result.steps, end)
        self._compensation_outcomes(result, end)
        self._versions(result.ledger)
        if (
            self.fork_version is None
            and not self.divergences
            and result.status != self.rec.run.status
        ):
            self.diverge(
                "outcome", None, None, self.rec.run.status, result.status,
                detail="the run ended otherwise", at_ns=end,
            )  # fmt: skip
        return tuple(sorted(self.divergences, key=lambda d: d.at_ns))

    def _compared(self, recorded_step: int) -> bool:
        return self.pre_fork is None or recorded_step in self.pre_fork

    def _steps(self, steps: tuple[StepRecord, ...], end: int) -> None:
        seen: set[int] = set()
        for r in steps:
            key = (r.agent, r.step)
            if self.fork_version is not None and key in self.live_steps:
                continue
            rs = self.match(r.agent, r.step, called=r.outcome != "breaker_open")
            at = self._at.get(key, end)
            if rs is None:
                # A fork's extra steps after its version are its own history, not divergences.
                if key not in self._flagged and self.fork_version is None:
                    self._flagged.add(key)
                    self.diverge(
                        "step", r.step, r.agent, None, {"agent": r.agent, "outcome": r.outcome},
                        detail="the replay ran a step the recording does not have", at_ns=at,
                    )  # fmt: skip
                continue
            seen.add(rs.step)
            if not self._compared(rs.step):
                continue
            if r.outcome != rs.outcome:
                self.diverge(
                    "outcome", rs.step, r.agent, rs.outcome, r.outcome, attempt=r.attempts,
                    detail=r.error or "", at_ns=at,
                )  # fmt: skip
            elif r.attempts != rs.attempts[-1].attempt:
                self.diverge(
                    "attempt", rs.step, r.agent, rs.attempts[-1].attempt, r.attempts,
                    detail=f"ended {r.outcome} after another number of attempts", at_ns=at,
                )  # fmt: skip
        for rs in self.rec.steps:
            if rs.outcome == "cancelled":
                # Cut short by another branch's failure: the engine reports no step for it, and
                # how far it got before the cancellation is the scheduler's business.
                continue
            if rs.step not in seen and rs.step not in self._matched and self._compared(rs.step):
                self.diverge(
                    "step", rs.step, rs.agent, {"agent": rs.agent, "outcome": rs.outcome}, None,
                    detail="the replay never ran this recorded step", at_ns=end,
                )  # fmt: skip
            elif rs.step not in seen and self._compared(rs.step):
                # Matched while running, but the engine did not report it (cannot happen
                # unless the run was cut short); say so rather than pass over it.
                self.diverge(
                    "step", rs.step, rs.agent, {"agent": rs.agent, "outcome": rs.outcome}, None,
                    detail="the replay started this step but never finished it", at_ns=end,
                )  # fmt: skip

    def _compensation_outcomes(self, result: RunResult | ChoreographyResult, end: int) -> None:
        recorded: dict[tuple[str, int], list[RecordedAttempt]] = {}
        for a in self.rec.compensations:
            recorded.setdefault((a.agent, a.step), []).append(a)
        done: set[tuple[str, int]] = set()
        for comp in result.compensations:
            rs = self.match_of.get((comp.agent, comp.step))
            if rs is None or (comp.agent, comp.step) in self.live_steps:
                continue
            key = (comp.agent, rs.step)
            if not self._compared(rs.step):
                continue
            atts = recorded.get(key)
            if atts is None:
                if comp.outcome != "skipped":
                    self.diverge(
                        "compensation", rs.step, comp.agent, None, comp.outcome, at_ns=end,
                        detail="the replay compensated a step the recording did not",
                    )  # fmt: skip
                continue
            done.add(key)
            want = atts[-1].outcome
            if comp.outcome != want or comp.attempts != len(atts):
                self.diverge(
                    "compensation", rs.step, comp.agent, f"{want} after {len(atts)} attempt(s)",
                    f"{comp.outcome} after {comp.attempts} attempt(s)", at_ns=end,
                )  # fmt: skip
        for key, atts in recorded.items():
            if key not in done and self._compared(key[1]):
                self.diverge(
                    "compensation", key[1], key[0], atts[-1].outcome, None, at_ns=end,
                    detail="the replay never ran this recorded compensation",
                )  # fmt: skip

    def _versions(self, ledger: StateLedger) -> None:
        rec = self.rec
        last = len(rec.versions) if self.fork_version is None else self.fork_version
        replayed = len(ledger) if self.fork_version is None else min(len(ledger), last)
        step_of = {a.span_id: s.step for s in rec.steps for a in s.attempts}
        step_of.update({a.span_id: a.step for a in rec.compensations})
        for n in range(1, max(last, replayed) + 1):
            want = rec.versions[n - 1] if n <= last else None
            got = ledger.version(n) if n <= replayed else None
            if want is not None and got is not None and _same_version(want, got):
                continue
            step = step_of.get(want.span_id) if want is not None else None
            agent = want.agent if want is not None else got.agent if got is not None else None
            expected = rec.document(n) if want is not None else None
            actual = got.document() if got is not None else None
            if got is None:
                detail = "the replay never committed this version"
            elif want is None:
                detail = "the replay committed a version the recording does not have"
            else:
                who = (
                    ""
                    if want.agent == got.agent
                    else f" (written by {got.agent}, not {want.agent})"
                )
                detail = f"content differs{who}"
            self.diverge(
                "version", step, agent, expected, actual, version=n, detail=detail,
                changes=_changes(expected, actual) if want and got else (),
                at_ns=got.committed_ns if got is not None else self.clock.now_ns(),
            )  # fmt: skip
            # Every later document carries this difference: the first one is the one to show.
            return


def _same_version(want: RecordedVersion, got: Version) -> bool:
    """Whether ``got`` wrote what ``want`` wrote. With every earlier version alike, that makes
    the documents alike (their hash chains too), at the cost of the keys written, not of the
    whole document, which hashing each version would take."""
    if set(want.keys) != set(got.keys):
        return False
    doc = got.doc
    for k in want.keys:
        if k in want.changes:
            if k not in doc or not same_json(want.changes[k], doc[k]):
                return False
        elif k in doc:
            return False
    return True


def _exception_class(agent: Agent, qualname: str) -> type[Exception] | None:
    module = sys.modules.get(getattr(agent.execute, "__module__", "") or "")
    for root in (module, builtins):
        obj: Any = root
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, type) and issubclass(obj, Exception):
            return obj
    return None


def _stand_in(qualname: str) -> type[Exception]:
    """An exception class named as the recorded one, for replays that cannot import it."""
    cls = _dynamic_errors.get(qualname)
    if cls is None:
        cls = type(qualname.rsplit(".", 1)[-1], (Exception,), {"__module__": "engine.replay"})
        cls.__qualname__ = qualname
        _dynamic_errors[qualname] = cls
    return cls
