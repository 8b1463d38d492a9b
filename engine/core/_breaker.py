"""Circuit breakers: stop calling an agent that keeps failing, and try it again later.

States and what moves them (``at`` is the injected clock; nothing here reads the
wall clock or sleeps):

    closed ──(failures reach the threshold)──▶ open
    open ──(a call arrives ≥ cooldown after opening)──▶ half_open   (that call is a trial)
    half_open ──(success_threshold trials succeed)──▶ closed
    half_open ──(a trial fails)──▶ open

Two ways to count failures while closed:

- ``consecutive`` (like pybreaker): ``failure_threshold`` failures in a row open it;
  a success resets the count.
- ``rate`` (like resilience4j's count-based sliding window): the outcomes of the last
  ``window`` calls are kept; after each call, once at least ``minimum_calls`` are in,
  a failure rate ≥ ``failure_rate`` opens it.

While open, calls are refused without running (``acquire`` says no). In half-open, at
most ``half_open_max_calls`` trial calls are let through per half-open period; more
are refused until the trials decide. The outcome of a call let through in an
earlier state (a slow call finishing after the breaker moved) is ignored.

``acquire``, ``success`` and ``failure`` return the :class:`Transition` objects they
caused, so a caller can record each on the step that caused it; listeners hear
the same. Thread rules: every method takes the breaker's lock; listeners run
inside no lock, on the calling thread.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from tracer import Clock

BreakerState = Literal["closed", "open", "half_open"]
STATES: Final = ("closed", "open", "half_open")
_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """How a breaker counts and how long it stays open (see the module docstring)."""

    mode: Literal["consecutive", "rate"] = "consecutive"
    failure_threshold: int = 5
    failure_rate: float = 0.5
    window: int = 10
    minimum_calls: int = 10
    cooldown: float = 30.0  # seconds
    half_open_max_calls: int = 1
    success_threshold: int = 1

    def __post_init__(self) -> None:
        if self.mode not in ("consecutive", "rate"):
            raise ValueError(f"breaker mode must be 'consecutive' or 'rate', got {self.mode!r}")
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if not 0 < self.failure_rate <= 1:
            raise ValueError(f"failure_rate must be within (0, 1], got {self.failure_rate}")
        if self.window < 1 or not 1 <= self.minimum_calls <= self.window:
            raise ValueError(
                f"need 1 <= minimum_calls <= window, got minimum_calls={self.minimum_calls}, window={self.window}"
            )
        if self.cooldown < 0:
            raise ValueError("cooldown cannot be negative")
        if not 1 <= self.success_threshold <= self.half_open_max_calls:
            raise ValueError(
                "need 1 <= success_threshold <= half_open_max_calls, got "
                f"success_threshold={self.success_threshold}, half_open_max_calls={self.half_open_max_calls}"
            )


@dataclass(frozen=True, slots=True)
class Transition:
    """A breaker moving from one state to another, and why."""

    breaker: str
    from_state: BreakerState
    to_state: BreakerState
    reason: str
    at_ns: int


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to make one call; hand it back to ``success``, ``failure`` or ``release``."""

    generation: int  # the breaker's transition count when it was given
    trial: bool  # a half-open trial call


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer of ``acquire``: a permit, or None when refused; and the transitions it caused."""

    permit: Permit | None
    state: BreakerState  # the state that decided
    transitions: tuple[Transition, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.permit is not None


class BreakerListener(Protocol):
    """Hears a breaker's transitions and refusals (duck-typed; implement what you need)."""

    def state_change(self, transition: Transition) -> None: ...

    def rejected(self, breaker: str, state: BreakerState) -> None: ...


class CircuitBreaker:
    """One breaker (one per agent in an orchestrator). See the module docstring."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig,
        clock: Clock,
        listeners: Iterable[BreakerListener] = (),
    ) -> None:
        self.name = name
        self.config = config
        self.clock = clock
        self.listeners = list(listeners)
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._generation = 0
        self._failures = 0  # consecutive mode
        self._window: deque[bool] = deque(maxlen=config.window)  # rate mode: True = failed
        self._opened_ns = 0
        self._trials = 0  # trial calls let through in this half-open period
        self._trial_successes = 0
        self.rejections = 0

    # -- reading -----------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The state as of the last call (open stays open until a call arrives after the cooldown)."""
        return self._state

    @property
    def failure_count(self) -> int:
        """Failures counted toward opening: in a row (consecutive) or in the window (rate)."""
        return self._failures if self.config.mode == "consecutive" else sum(self._window)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, {self._state})"

    # -- the protocol ------------------------------------------------------------------------

    def acquire(self) -> Admission:
        """Ask to make a call. Refused calls must not run; they are counted in ``rejections``."""
        out: list[Transition] = []
        with self._lock:
            if self._state == "open":
                cooldown_ns = int(self.config.cooldown * _NS)
                if self.clock.now_ns() - self._opened_ns >= cooldown_ns:
                    self._move(
                        "half_open", f"cooldown of {_secs(self.config.cooldown)} elapsed", out
                    )
            state = self._state
            if state == "closed":
                permit: Permit | None = Permit(self._generation, False)
            elif state == "half_open" and self._trials < self.config.half_open_max_calls:
                self._trials += 1
                permit = Permit(self._generation, True)
            else:
                permit = None
                self.rejections += 1
        self._tell(out)
        if permit is None:
            for listener in self.listeners:
                fn = getattr(listener, "rejected", None)
                if fn is not None:
                    fn(self.name, state)
        return Admission(permit, state, tuple(out))

    def success(self, permit: Permit) -> tuple[Transition, ...]:
        """The call made under ``permit`` succeeded."""
        out: list[Transition] = []
        with self._lock:
            if permit.generation == self._generation:
                if self._state == "closed":
                    self._failures = 0
                    if self.config.mode == "rate":
                        # As resilience4j: the rate is judged after every call, a success too.
                        self._window.append(False)
                        self._judge_rate(out)
                elif self._state == "half_open" and permit.trial:
                    self._trial_successes += 1
                    if self._trial_successes >= self.config.success_threshold:
                        n = self._trial_successes
                        self._move("closed", f"{n} trial call{'s' if n > 1 else ''} succeeded", out)
        self._tell(out)
        return tuple(out)

    def failure(self, permit: Permit) -> tuple[Transition, ...]:
        """The call made under ``permit`` failed (raised or timed out)."""
        out: list[Transition] = []
        cfg = self.config
        with self._lock:
            if permit.generation == self._generation:
                if self._state == "closed":
                    if cfg.mode == "consecutive":
                        self._failures += 1
                        if self._failures >= cfg.failure_threshold:
                            self._move("open", f"{self._failures} consecutive failures", out)
                    else:
                        self._window.append(True)
                        self._judge_rate(out)
                elif self._state == "half_open" and permit.trial:
                    self._move("open", "trial call failed", out)
        self._tell(out)
        return tuple(out)

    def release(self, permit: Permit) -> None:
        """The call made under ``permit`` ended without an outcome (cancelled): free its trial slot."""
        with self._lock:
            if (
                permit.trial
                and permit.generation == self._generation
                and self._state == "half_open"
            ):
                self._trials -= 1

    def reset(self) -> tuple[Transition, ...]:
        """Force the breaker closed (an operator's action)."""
        out: list[Transition] = []
        with self._lock:
            if self._state != "closed":
                self._move("closed", "reset", out)
        self._tell(out)
        return tuple(out)

    # -- internals ---------------------------------------------------------------------------

    def _judge_rate(self, out: list[Transition]) -> None:
        cfg = self.config
        n = len(self._window)
        if n >= cfg.minimum_calls:
            failed = sum(self._window)
            if failed / n >= cfg.failure_rate:
                reason = f"failure rate {failed}/{n} ({failed / n:.0%}) >= {cfg.failure_rate:.0%}"
                self._move("open", reason, out)

    def _move(self, to: BreakerState, reason: str, out: list[Transition]) -> None:
        now = self.clock.now_ns()
        out.append(Transition(self.name, self._state, to, reason, now))
        self._state = to
        self._generation += 1
        self._failures = 0
        self._window.clear()
        self._trials = 0
        self._trial_successes = 0
        if to == "open":
            self._opened_ns = now

    def _tell(self, transitions: list[Transition]) -> None:
        for t in transitions:
            for listener in self.listeners:
                fn = getattr(listener, "state_change", None)
                if fn is not None:
                    fn(t)


def _secs(s: float) -> str:
    return f"{s:g}s"
