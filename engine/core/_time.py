"""Time for the engine: a clock to read, a way to sleep and a way to time out.

Backoff waits, step timeouts and breaker cooldowns all go through a
:class:`TimeSource`, so tests and sample traces never wait for real:

- :class:`RealTime` is the wall clock with ``asyncio.sleep`` and ``asyncio.timeout``.
- :class:`VirtualTime` drives a :class:`tracer.FakeClock`: a sleep moves the clock
  forward by its duration at once, and a sleep that would cross the deadline of an
  enclosing :meth:`TimeSource.timeout` moves the clock to that deadline and raises
  :class:`TimeoutError` there. Virtual time counts time spent in ``sleep`` only:
  concurrent sleeps add up instead of overlapping, and work done without sleeping
  takes no virtual time (an agent simulates latency with ``await ctx.sleep(s)``).

Both are safe to share between runs and coroutines of one event loop; the
deadline of a timeout lives in a context variable, so it follows the coroutine
(and the tasks it starts) that opened it.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, TypeVar

from tracer import Clock, FakeClock, SystemClock

T = TypeVar("T")

_NS = 1_000_000_000
_deadline: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "engine_deadline", default=None
)


class TimeSource(Protocol):
    """What the engine needs of time. ``clock`` is also what the recorder should use."""

    @property
    def clock(self) -> Clock: ...

    def now_ns(self) -> int: ...

    async def sleep(self, seconds: float) -> None: ...

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[None]:
        """Raise :class:`TimeoutError` in the ``async with`` body once ``seconds`` have passed."""
        ...


class RealTime:
    """The wall clock (or any ``clock``), real sleeps and real timeouts."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()

    def now_ns(self) -> int:
        return self.clock.now_ns()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    @asynccontextmanager
    async def timeout(self, seconds: float) -> AsyncIterator[None]:
        async with asyncio.timeout(seconds):
            yield


class VirtualTime:
    """Time that passes only when someone sleeps; exact and instant (see the module docstring)."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock: FakeClock = clock or FakeClock()

    def now_ns(self) -> int:
        return self.clock.now_ns()

    async def sleep(self, seconds: float) -> None:
        if seconds < 0:
            seconds = 0.0
        ns = int(seconds * _NS)
        deadline = _deadline.get()
        if deadline is not None:
            now = self.clock.now_ns()
            if now + ns >= deadline:
                self._move_to(deadline)
                # Give the loop a turn, as a real timeout would, before raising.
                await asyncio.sleep(0)
                raise TimeoutError()
        if ns:
            self.clock.advance(ns=ns)
        await asyncio.sleep(0)

    def _move_to(self, when_ns: int) -> None:
        now = self.clock.now_ns()
        if when_ns > now:
            self.clock.advance(ns=when_ns - now)

    @asynccontextmanager
    async def timeout(self, seconds: float) -> AsyncIterator[None]:
        deadline = self.clock.now_ns() + int(max(0.0, seconds) * _NS)
        outer = _deadline.get()
        token = _deadline.set(deadline if outer is None else min(outer, deadline))
        try:
            yield
        finally:
            _deadline.reset(token)


def run_blocking(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to its end from synchronous code (in a worker thread if a loop runs)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(make))
    box: dict[str, Any] = {}

    def worker() -> None:
        try:
            box["value"] = asyncio.run(_await(make))
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=worker, name="agentrace-blocking")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


async def _await(make: Callable[[], Awaitable[T]]) -> T:
    return await make()
