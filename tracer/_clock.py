"""Clocks and id generators, injectable so a run can be made exactly repeatable.

Nothing in agentrace reads the wall clock or the random module directly: the
recorder and the engine take a :class:`Clock` and an :class:`IdGenerator`.
With :class:`FakeClock` and :class:`SeededIds` two runs give byte-identical
output.
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Nanoseconds since the Unix epoch. Must be safe to call from any thread."""

    def now_ns(self) -> int: ...


class SystemClock:
    """The wall clock (``time.time_ns``)."""

    def now_ns(self) -> int:
        return time.time_ns()


class FakeClock:
    """A clock that moves only when told to, or by ``tick_ns`` on every reading.

    ``tick_ns`` > 0 gives every reading a distinct, increasing time, which keeps
    span starts and ends ordered without any real waiting.
    """

    def __init__(self, start_ns: int = 1_700_000_000_000_000_000, tick_ns: int = 0) -> None:
        self._now = start_ns
        self._tick = tick_ns
        self._lock = threading.Lock()

    def now_ns(self) -> int:
        with self._lock:
            now = self._now
            self._now += self._tick
            return now

    def advance(self, seconds: float = 0.0, *, ns: int = 0) -> None:
        """Move the clock forward by ``seconds`` plus ``ns`` nanoseconds."""
        if seconds < 0 or ns < 0:
            raise ValueError("a clock only moves forward")
        with self._lock:
            self._now += int(seconds * 1_000_000_000) + ns

    def set(self, now_ns: int) -> None:
        with self._lock:
            if now_ns < self._now:
                raise ValueError("a clock only moves forward")
            self._now = now_ns


class IdGenerator(Protocol):
    """Trace ids (16 bytes) and span ids (8 bytes), never all zeros."""

    def trace_id(self) -> bytes: ...

    def span_id(self) -> bytes: ...


class RandomIds:
    """Ids from the operating system's randomness."""

    def trace_id(self) -> bytes:
        while True:
            b = os.urandom(16)
            if any(b):
                return b

    def span_id(self) -> bytes:
        while True:
            b = os.urandom(8)
            if any(b):
                return b


class SeededIds:
    """Ids from a seeded generator: the same seed gives the same sequence."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def _bits(self, n: int) -> bytes:
        with self._lock:
            while True:
                v = self._rng.getrandbits(n * 8)
                if v:
                    return v.to_bytes(n, "big")

    def trace_id(self) -> bytes:
        return self._bits(16)

    def span_id(self) -> bytes:
        return self._bits(8)
