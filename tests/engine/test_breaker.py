"""Circuit breakers: a transition table over every state and event, and a model-based property test."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

import engine as e
import tracer as t

S = 1_000_000_000


def make(**kw: object) -> tuple[e.CircuitBreaker, t.FakeClock]:
    clock = t.FakeClock(0)
    cfg = e.BreakerConfig(**{"failure_threshold": 3, "cooldown": 10.0, **kw})  # type: ignore[arg-type]
    return e.CircuitBreaker("b", cfg, clock), clock


def to_open(b: e.CircuitBreaker) -> None:
    for _ in range(b.config.failure_threshold):
        adm = b.acquire()
        assert adm.permit is not None
        b.failure(adm.permit)
    assert b.state == "open"


def to_open_and_wait(b: e.CircuitBreaker, clock: t.FakeClock) -> None:
    to_open(b)
    clock.advance(b.config.cooldown)


def to_half_open(b: e.CircuitBreaker, clock: t.FakeClock) -> e.Permit:
    to_open(b)
    clock.advance(b.config.cooldown)
    adm = b.acquire()
    assert b.state == "half_open" and adm.permit is not None and adm.permit.trial
    return adm.permit


@dataclass
class Case:
    name: str
    setup: Callable[[e.CircuitBreaker, t.FakeClock], object]
    event: Callable[[e.CircuitBreaker, t.FakeClock, object], object]
    state: str
    moves: list[tuple[str, str]] = field(default_factory=list)
    config: dict = field(default_factory=dict)


def _acquire(b: e.CircuitBreaker, c: t.FakeClock, _: object) -> object:
    return b.acquire()


def _succeed(b: e.CircuitBreaker, c: t.FakeClock, permit: object) -> object:
    return b.success(permit)  # type: ignore[arg-type]


def _fail(b: e.CircuitBreaker, c: t.FakeClock, permit: object) -> object:
    return b.failure(permit)  # type: ignore[arg-type]


def _permit(b: e.CircuitBreaker, c: t.FakeClock) -> e.Permit:
    adm = b.acquire()
    assert adm.permit is not None
    return adm.permit


def _failures(n: int) -> Callable[[e.CircuitBreaker, t.FakeClock], e.Permit]:
    def setup(b: e.CircuitBreaker, c: t.FakeClock) -> e.Permit:
        for _ in range(n):
            b.failure(_permit(b, c))
        return _permit(b, c)

    return setup


def _open_then_permit_from_before(b: e.CircuitBreaker, c: t.FakeClock) -> e.Permit:
    early = _permit(b, c)  # a slow call let through while closed
    to_open(b)
    return early


def _half_open_trial(b: e.CircuitBreaker, c: t.FakeClock) -> e.Permit:
    return to_half_open(b, c)


def _half_open_full(b: e.CircuitBreaker, c: t.FakeClock) -> None:
    to_half_open(b, c)  # its one trial is taken


def _closed_again_with_old_permit(b: e.CircuitBreaker, c: t.FakeClock) -> e.Permit:
    early = _permit(b, c)  # let through in the first closed period
    b.success(to_half_open(b, c))  # open, cooldown, a trial succeeds: closed again
    return early


def _half_open_again_with_old_trial(b: e.CircuitBreaker, c: t.FakeClock) -> e.Permit:
    old = to_half_open(b, c)
    b.failure(_permit_after_cooldown(b, c, fail_first=old))
    return old


def _permit_after_cooldown(b: e.CircuitBreaker, c: t.FakeClock, fail_first: e.Permit) -> e.Permit:
    b.release(fail_first)  # the first trial hangs; its slot is freed...
    trial = _permit(b, c)  # ...a second trial fails: open again
    b.failure(trial)
    c.advance(b.config.cooldown)
    return _permit(b, c)  # a third period of half-open: this trial fails too


CASES = [
    Case("closed: a call is let through", lambda b, c: None, _acquire, "closed"),
    Case("closed: a success resets the count", _failures(2), _succeed, "closed"),
    Case("closed: a failure under the threshold", _failures(1), _fail, "closed"),
    Case(
        "closed: the threshold-th failure opens", _failures(2), _fail, "open", [("closed", "open")]
    ),
    Case("open: a call before the cooldown is refused", lambda b, c: to_open(b), _acquire, "open"),
    Case(
        "open: a call after the cooldown is a trial",
        lambda b, c: to_open_and_wait(b, c),
        _acquire,
        "half_open",
        [("open", "half_open")],
    ),
    Case(
        "open: an outcome from before it opened is ignored",
        _open_then_permit_from_before,
        _succeed,
        "open",
    ),
    Case(
        "open: a failure from before it opened is ignored",
        _open_then_permit_from_before,
        _fail,
        "open",
    ),
    Case(
        "half_open: a call past the trial limit is refused", _half_open_full, _acquire, "half_open"
    ),
    Case(
        "half_open: a trial success closes",
        _half_open_trial,
        _succeed,
        "closed",
        [("half_open", "closed")],
    ),
    Case(
        "half_open: one success of two needed stays half-open",
        _half_open_trial,
        _succeed,
        "half_open",
        config={"half_open_max_calls": 2, "success_threshold": 2},
    ),
    Case(
        "half_open: a trial failure opens again",
        _half_open_trial,
        _fail,
        "open",
        [("half_open", "open")],
    ),
    Case(
        "closed again: a failure let through in an earlier period is ignored",
        _closed_again_with_old_permit,
        _fail,
        "closed",
        config={"failure_threshold": 1},
    ),
    Case(
        "open again: a trial of an earlier half-open period is ignored",
        _half_open_again_with_old_trial,
        _succeed,
        "open",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_transition_table(case: Case) -> None:
    b, clock = make(**case.config)
    arg = case.setup(b, clock)
    got = case.event(b, clock, arg)
    transitions: tuple[e.Transition, ...] = got.transitions if isinstance(got, e.Admission) else got  # type: ignore[assignment]
    assert b.state == case.state
    assert [(tr.from_state, tr.to_state) for tr in transitions] == case.moves


def test_refused_calls_are_counted_and_told() -> None:
    heard: list[tuple[str, str]] = []

    class Listener:
        def state_change(self, tr: e.Transition) -> None:
            heard.append((tr.from_state, tr.to_state))

        def rejected(self, name: str, state: str) -> None:
            heard.append(("rejected", state))

    b, _clock = make()
    b.listeners.append(Listener())
    to_open(b)
    assert not b.acquire().allowed
    assert b.rejections == 1
    assert heard == [("closed", "open"), ("rejected", "open")]


def test_cooldown_restarts_when_a_trial_fails() -> None:
    b, clock = make()
    trial = to_half_open(b, clock)
    b.failure(trial)
    clock.advance(9.999)
    assert not b.acquire().allowed
    clock.advance(0.001)
    assert b.acquire().allowed and b.state == "half_open"


def test_a_cancelled_trial_frees_its_slot() -> None:
    b, clock = make()
    trial = to_half_open(b, clock)
    assert not b.acquire().allowed
    b.release(trial)
    assert b.acquire().allowed


def test_transition_reasons_and_times() -> None:
    b, clock = make()
    to_open(b)
    clock.advance(10)
    adm = b.acquire()
    (tr,) = adm.transitions
    assert (tr.breaker, tr.reason, tr.at_ns) == ("b", "cooldown of 10s elapsed", 10 * S)
    (closed,) = b.success(adm.permit)  # type: ignore[arg-type]
    assert closed.reason == "1 trial call succeeded"


def run_calls(b: e.CircuitBreaker, outcomes: str) -> list[e.Transition]:
    """Make one call per letter (F failed, S succeeded); the transitions they caused."""
    moves: list[e.Transition] = []
    for letter in outcomes:
        p = b.acquire().permit
        assert p is not None
        moves += b.failure(p) if letter == "F" else b.success(p)
    return moves


def test_rate_mode_waits_for_minimum_calls() -> None:
    b, _ = make(mode="rate", window=4, minimum_calls=4, failure_rate=0.5)
    assert run_calls(b, "FFF") == []  # 100 % failed, but only three calls
    (tr,) = run_calls(b, "S")  # 3/4 >= 50 %: judged after a success too, as resilience4j does
    assert (b.state, tr.reason) == ("open", "failure rate 3/4 (75%) >= 50%")


def test_rate_mode_stays_closed_under_the_rate() -> None:
    b, _ = make(mode="rate", window=4, minimum_calls=4, failure_rate=0.5)
    assert run_calls(b, "FSSSFSSS") == []
    assert b.state == "closed" and b.failure_count == 1


def test_rate_mode_window_slides() -> None:
    b, _ = make(mode="rate", window=3, minimum_calls=3, failure_rate=0.6)
    assert run_calls(b, "FSSFS") == []  # 2/5 overall, never 2 of the last 3
    (tr,) = run_calls(b, "F")  # the last three are F S F: 2/3; counted from the start, 3/6 = 50 %
    assert tr.reason == "failure rate 2/3 (67%) >= 60%"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"mode": "sometimes"}, "mode"),
        ({"minimum_calls": 11, "window": 10}, "minimum_calls <= window"),
        ({"success_threshold": 2}, "success_threshold <= half_open_max_calls"),
        ({"failure_rate": 0}, "failure_rate"),
    ],
)
def test_bad_configs_are_refused(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        e.BreakerConfig(**kw)


# -- a model of the rules, and a state machine that holds the breaker to it -------------------


@dataclass
class Model:
    """The breaker's rules, written plainly: who may call, and where each outcome leads."""

    mode: str
    threshold: int
    rate: float
    window: int
    minimum: int
    cooldown_ns: int
    max_trials: int
    needed: int
    state: str = "closed"
    epoch: int = 0
    history: list[bool] = field(default_factory=list)  # True = failed, oldest first
    streak: int = 0
    opened: int = 0
    trials: int = 0
    successes: int = 0

    def _go(self, to: str, now: int) -> tuple[str, str]:
        move = (self.state, to)
        self.state, self.epoch = to, self.epoch + 1
        self.history, self.streak, self.trials, self.successes = [], 0, 0, 0
        if to == "open":
            self.opened = now
        return move

    def call(self, now: int) -> tuple[bool, bool, list[tuple[str, str]]]:
        moves = []
        if self.state == "open" and now - self.opened >= self.cooldown_ns:
            moves.append(self._go("half_open", now))
        if self.state == "closed":
            return True, False, moves
        if self.state == "half_open" and self.trials < self.max_trials:
            self.trials += 1
            return True, True, moves
        return False, False, moves

    def outcome(self, epoch: int, trial: bool, failed: bool, now: int) -> list[tuple[str, str]]:
        if epoch != self.epoch:
            return []
        if self.state == "closed":
            if self.mode == "consecutive":
                self.streak = self.streak + 1 if failed else 0
                return [self._go("open", now)] if self.streak >= self.threshold else []
            self.history = ([*self.history, failed])[-self.window :]
            n = len(self.history)
            if n >= self.minimum and sum(self.history) / n >= self.rate:
                return [self._go("open", now)]
            return []
        if self.state == "half_open" and trial:
            if failed:
                return [self._go("open", now)]
            self.successes += 1
            return [self._go("closed", now)] if self.successes >= self.needed else []
        return []

    def cancel(self, epoch: int, trial: bool) -> None:
        if trial and epoch == self.epoch and self.state == "half_open":
            self.trials -= 1


class BreakerMachine(RuleBasedStateMachine):
    permits = Bundle("permits")

    def __init__(self) -> None:
        super().__init__()
        self.breaker: e.CircuitBreaker | None = None

    @precondition(lambda self: self.breaker is None)
    @rule(
        mode=st.sampled_from(["consecutive", "rate"]),
        threshold=st.integers(1, 4),
        window=st.integers(1, 6),
        data=st.data(),
    )
    def configure(self, mode: str, threshold: int, window: int, data: st.DataObject) -> None:
        minimum = data.draw(st.integers(1, window))
        rate = data.draw(st.sampled_from([0.25, 0.5, 0.75, 1.0]))
        max_trials = data.draw(st.integers(1, 3))
        needed = data.draw(st.integers(1, max_trials))
        cfg = e.BreakerConfig(
            mode=mode, failure_threshold=threshold, failure_rate=rate, window=window,  # type: ignore[arg-type]
            minimum_calls=minimum, cooldown=5.0, half_open_max_calls=max_trials, success_threshold=needed,
        )  # fmt: skip
        self.clock = t.FakeClock(0)
        self.breaker = e.CircuitBreaker("m", cfg, self.clock)
        self.model = Model(mode, threshold, rate, window, minimum, 5 * S, max_trials, needed)

    @precondition(lambda self: self.breaker is not None)
    @rule(target=permits)
    def call(self) -> object:
        assert self.breaker is not None
        now = self.clock.now_ns()
        allowed, trial, moves = self.model.call(now)
        adm = self.breaker.acquire()
        assert adm.allowed == allowed
        assert [(tr.from_state, tr.to_state) for tr in adm.transitions] == moves
        if adm.permit is not None:
            assert adm.permit.trial == trial
        return (adm.permit, self.model.epoch, trial) if adm.permit is not None else None

    @precondition(lambda self: self.breaker is not None)
    @rule(held=consumes(permits), failed=st.booleans())
    def finish(self, held: tuple[e.Permit, int, bool] | None, failed: bool) -> None:
        assert self.breaker is not None
        if held is None:
            return
        permit, epoch, trial = held
        moves = self.model.outcome(epoch, trial, failed, self.clock.now_ns())
        got = self.breaker.failure(permit) if failed else self.breaker.success(permit)
        assert [(tr.from_state, tr.to_state) for tr in got] == moves

    @precondition(lambda self: self.breaker is not None)
    @rule(held=consumes(permits))
    def cancel(self, held: tuple[e.Permit, int, bool] | None) -> None:
        assert self.breaker is not None
        if held is None:
            return
        permit, epoch, trial = held
        self.model.cancel(epoch, trial)
        self.breaker.release(permit)

    @precondition(lambda self: self.breaker is not None)
    @rule(seconds=st.sampled_from([0.5, 2.0, 5.0, 7.0]))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def same_state(self) -> None:
        if self.breaker is not None:
            assert self.breaker.state == self.model.state


BreakerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestBreakerAgainstModel = BreakerMachine.TestCase
