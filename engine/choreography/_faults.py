"""Fault injection for the bus: seeded, by rule or by probability.

A :class:`Faults` plan is a list of :class:`FaultRule` s and a seed. For a run,
``plan.injector()`` gives a fresh :class:`FaultInjector`, which a bus asks once
per delivery attempt (``decide``); the first rule that matches the delivery, and
whose coin comes up (``probability``), gives the fault. The coins come from a
generator seeded with the plan's seed and are drawn in delivery order, which the
bus decides, so the same plan on the same program injects the same faults.

Fault kinds, and who applies them:

- ``delay``: the bus holds the delivery back ``delay`` seconds (of its time source);
- ``reorder``: the bus hands out the next ready delivery first (never across the
  order of one key: a keyed message is only ready when its predecessors are settled);
- ``duplicate``: the bus delivers the message twice (the second with ``attempt`` + 1);
- ``drop``: the delivery is lost before the consumer; the consumer records it, does
  not process it and does not ack: the message is redelivered after the ack
  timeout, or stays in flight for good;
- ``crash``: the consumer processes the message (its state commits stand), then
  dies before publishing its results and acking;
- ``crash_during``: the consumer dies while processing: its step is cut short before
  it commits, so nothing is committed, published or acked;
- ``ack_lost``: the consumer processes and acks, and the ack never reaches the bus.

``FaultRule.drop(topic="orders", attempt=1)``, ``FaultRule.delay(2.0, nth=3)``,
``FaultRule.crash(group="analysis")`` build rules; ``Faults.chaos(seed, drop=0.1, ...)``
gives every kind a probability on every delivery.

Thread rules: an injector belongs to one bus on one event loop.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, TypedDict, Unpack

from ._bus import Message

FaultKind = Literal["drop", "duplicate", "delay", "reorder", "crash", "crash_during", "ack_lost"]
FAULT_KINDS: Final = ("drop", "duplicate", "delay", "reorder", "crash", "crash_during", "ack_lost")
BUS_FAULTS: Final = frozenset({"delay", "reorder", "duplicate"})  # applied by the bus
CONSUMER_FAULTS: Final = frozenset(
    {"drop", "crash", "crash_during", "ack_lost"}
)  # handed to the consumer


class Match(TypedDict, total=False):
    """The conditions of a :class:`FaultRule`, for its constructors."""

    topic: str
    group: str
    key: str
    attempt: int
    nth: int
    probability: float
    limit: int


@dataclass(frozen=True, slots=True)
class FaultRule:
    """Inject ``kind`` into deliveries that match every condition given.

    ``topic``, ``group``, ``key`` and ``attempt`` (1 = a message's first delivery to the
    group) narrow the deliveries; ``nth`` picks only the n-th delivery that matches
    them (1-based); ``probability`` is the chance per matching delivery; ``limit`` caps
    how many times the rule fires. ``seconds`` is the hold-back of a ``delay``.

    The class methods build one rule of each kind: ``FaultRule.drop(topic="orders")``,
    ``FaultRule.delay(2.0, nth=3)``, ``FaultRule.crash(group="analysis", attempt=1)``.
    """

    kind: FaultKind
    topic: str | None = None
    group: str | None = None
    key: str | None = None
    attempt: int | None = None
    nth: int | None = None
    probability: float = 1.0
    limit: int | None = None
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (one of {', '.join(FAULT_KINDS)})")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"fault probability must be within 0..1, got {self.probability}")
        if self.kind == "delay" and self.seconds <= 0:
            raise ValueError("a delay fault needs a positive delay (seconds)")
        if self.nth is not None and self.nth < 1:
            raise ValueError(f"nth is 1-based, got {self.nth}")
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"limit cannot be negative, got {self.limit}")

    @classmethod
    def drop(cls, **match: Unpack[Match]) -> FaultRule:
        """Lose deliveries before they reach the consumer."""
        return cls("drop", **match)

    @classmethod
    def duplicate(cls, **match: Unpack[Match]) -> FaultRule:
        """Deliver messages twice."""
        return cls("duplicate", **match)

    @classmethod
    def delay(cls, seconds: float, **match: Unpack[Match]) -> FaultRule:
        """Hold deliveries back ``seconds``."""
        return cls("delay", seconds=seconds, **match)

    @classmethod
    def reorder(cls, **match: Unpack[Match]) -> FaultRule:
        """Let the next ready delivery overtake."""
        return cls("reorder", **match)

    @classmethod
    def crash(cls, *, during: bool = False, **match: Unpack[Match]) -> FaultRule:
        """Kill the consumer after it processed a delivery, before it publishes and acks
        (``during=True``: while it processes, before it commits anything)."""
        return cls("crash_during" if during else "crash", **match)

    @classmethod
    def lose_ack(cls, **match: Unpack[Match]) -> FaultRule:
        """Lose the consumer's ack on its way to the bus."""
        return cls("ack_lost", **match)

    def matches(self, message: Message, group: str, attempt: int) -> bool:
        return (
            (self.topic is None or self.topic == message.topic)
            and (self.group is None or self.group == group)
            and (self.key is None or self.key == message.key)
            and (self.attempt is None or self.attempt == attempt)
        )


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault: its kind, the hold-back for ``delay``, and the rule that gave it."""

    kind: FaultKind
    delay: float = 0.0
    rule: int = 0  # index in the plan


@dataclass(frozen=True, slots=True)
class AppliedFault:
    """A fault the injector handed out, for tests and reports."""

    kind: FaultKind
    message_id: str
    topic: str
    group: str
    attempt: int


class Faults:
    """A fault plan: rules tried in order, coins from ``seed``. Immutable; reusable across runs."""

    __slots__ = ("rules", "seed")

    def __init__(self, rules: Iterable[FaultRule] = (), *, seed: int = 0) -> None:
        self.rules = tuple(rules)
        self.seed = seed

    def __repr__(self) -> str:
        return f"Faults({list(self.rules)!r}, seed={self.seed})"

    def __bool__(self) -> bool:
        return bool(self.rules)

    @classmethod
    def chaos(
        cls,
        seed: int,
        *,
        drop: float = 0.0,
        duplicate: float = 0.0,
        delay: float = 0.0,
        reorder: float = 0.0,
        crash: float = 0.0,
        crash_during: float = 0.0,
        ack_lost: float = 0.0,
        delay_seconds: float = 1.0,
    ) -> Faults:
        """Every kind with its probability on every delivery (each kind a coin of its own,
        tried in the order of the arguments)."""
        odds: list[tuple[FaultKind, float]] = [
            ("drop", drop), ("duplicate", duplicate), ("delay", delay), ("reorder", reorder),
            ("crash", crash), ("crash_during", crash_during), ("ack_lost", ack_lost),
        ]  # fmt: skip
        rules = [
            FaultRule(kind, probability=p, seconds=delay_seconds if kind == "delay" else 0.0)
            for kind, p in odds
            if p > 0
        ]
        return cls(rules, seed=seed)

    def injector(self) -> FaultInjector:
        """A fresh injector for one run (counts and coins start over)."""
        return FaultInjector(self)


class FaultInjector:
    """A plan's state in one run: which rules matched how often, and the coins."""

    __slots__ = ("_fired", "_matched", "_rng", "applied", "plan")

    def __init__(self, plan: Faults) -> None:
        self.plan = plan
        self._rng = random.Random(plan.seed)
        self._matched = [0] * len(plan.rules)
        self._fired = [0] * len(plan.rules)
        self.applied: list[AppliedFault] = []

    def decide(self, message: Message, group: str, attempt: int) -> Fault | None:
        """The fault for this delivery attempt, if any (called once per attempt, in delivery order)."""
        for i, rule in enumerate(self.plan.rules):
            if not rule.matches(message, group, attempt):
                continue
            self._matched[i] += 1
            if rule.nth is not None and self._matched[i] != rule.nth:
                continue
            if rule.limit is not None and self._fired[i] >= rule.limit:
                continue
            # Draw only for real coins, so adding a certain rule does not shift the others' draws.
            if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                continue
            self._fired[i] += 1
            self.applied.append(AppliedFault(rule.kind, message.id, message.topic, group, attempt))
            return Fault(rule.kind, rule.seconds, i)
        return None
