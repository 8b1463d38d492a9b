"""What keeps the receiver up when clients are slow, many or hostile.

* :class:`Connections` caps open connections (over the cap a connection is
  answered ``503`` with ``Retry-After`` and closed at once, before any of its
  bytes is read) and gives each connection a deadline to send a request's
  headers, which also bounds how long an idle keep-alive connection is held.
* :class:`InFlight` counts the bytes of request bodies being read or waiting
  for the writer, across requests; a request that would pass it is answered
  ``429`` with ``Retry-After`` before its body is read.
* :class:`OneLineLogs` turns the log records of asyncio, aiohttp and the
  receiver into one escaped line each (no traceback), at most ``burst`` per
  ``window`` seconds per kind, with a count of what was held back: running out
  of file descriptors under a flood of clients is a few lines, not tens of
  thousands of tracebacks.

* :func:`give_back_memory` returns the memory a burst left free to the system:
  the writer calls it, through ``Store.give_back_memory`` (which flushes
  DuckDB's allocator first), once it has had nothing to write for a moment.

All run on the receiver's event loop except :class:`InFlight`, which the
writer thread also releases into (it takes a lock), and :func:`give_back_memory`.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import pyarrow as pa

from ._printable import printable

_BUSY_BODY: Final = b"too many connections; retry later\n"
BUSY_RESPONSE: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\n"
    + f"Content-Length: {len(_BUSY_BODY)}\r\nConnection: close\r\n\r\n".encode()
    + _BUSY_BODY
)


class InFlight:
    """Bytes of request bodies held in memory, against a cap (thread-safe)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._used = 0
        self._cond = threading.Condition()

    @property
    def used(self) -> int:
        return self._used

    def reserve(self, n: int) -> bool:
        """Take ``n`` bytes; False (nothing taken) when that would pass the cap and others hold some."""
        with self._cond:
            if self._used and self._used + n > self.cap:
                return False
            self._used += n
            self._cond.notify_all()
            return True

    def release(self, n: int) -> None:
        with self._cond:
            self._used -= n
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[int], bool], timeout: float | None = None) -> bool:
        """Block until ``predicate(bytes in flight)`` holds (False on timeout)."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self._used), timeout)


class Connections:
    """Open connections, capped, each with a deadline for its next request's headers."""

    def __init__(self, cap: int, header_timeout: float) -> None:
        self.cap = cap
        self.header_timeout = header_timeout
        self.open = 0
        self.refused = 0
        self.timed_out = 0
        self._guards: dict[Any, _Guarded] = {}

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for ``loop.create_server`` wrapping aiohttp's."""
        return lambda: _Guarded(self, inner)

    def request_started(self, transport: Any) -> None:
        """The headers of a request on ``transport`` are in: its deadline stops."""
        guard = self._guards.get(transport)
        if guard is not None:
            guard.stop_clock()

    def request_done(self, transport: Any) -> None:
        """A request was handled: the next one's headers are due within the timeout."""
        guard = self._guards.get(transport)
        if guard is not None:
            guard.start_clock()


class _Guarded(asyncio.Protocol):
    def __init__(self, owner: Connections, inner: Callable[[], asyncio.Protocol]) -> None:
        self._owner = owner
        self._inner_factory = inner
        self._inner: asyncio.Protocol | None = None
        self._transport: Any = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        owner = self._owner
        if owner.open >= owner.cap:
            owner.refused += 1
            log.warning("refused a connection: %d are open (the cap)", owner.open)
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(BUSY_RESPONSE)
            transport.close()
            return
        owner.open += 1
        self._transport = transport
        owner._guards[transport] = self
        self._inner = self._inner_factory()
        self._inner.connection_made(transport)
        self.start_clock()

    def start_clock(self) -> None:
        self.stop_clock()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._owner.header_timeout, self._expire)

    def stop_clock(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            self._owner.timed_out += 1
            log.warning(
                "closed a connection from %s: no request within %gs",
                _peer(self._transport),
                self._owner.header_timeout,
            )
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_clock()
        if self._inner is None:
            return
        self._owner.open -= 1
        self._owner._guards.pop(self._transport, None)
        self._inner.connection_lost(exc)


def _peer(transport: Any) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"


_NUMBERS: Final = re.compile(r"0x[0-9a-fA-F]+|\d+(?:\.\d+)?")


class OneLineLogs(logging.Filter):
    """One escaped line per record, no traceback; at most ``burst`` per ``window`` s per message."""

    def __init__(
        self, burst: int = 5, window: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self.clock = clock
        self._seen: dict[tuple[str, str], list[float | int]] = {}  # key -> [window start, count]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        # Messages that differ only in numbers (ports, fds, times, addresses) are one kind.
        key = (record.name, _NUMBERS.sub("#", str(record.msg))[:80])
        now = self.clock()
        with self._lock:
            slot = self._seen.get(key)
            if slot is None or now - slot[0] >= self.window:
                held = int(slot[1]) - self.burst if slot is not None else 0
                slot = [now, 0]
                self._seen[key] = slot
                if len(self._seen) > 1024:  # many kinds of message: forget the oldest windows
                    for old in [k for k, v in self._seen.items() if now - v[0] >= self.window]:
                        del self._seen[old]
            else:
                held = 0
            slot[1] = int(slot[1]) + 1
            if slot[1] > self.burst:
                return False
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f": {type(exc).__name__}: {exc}"
        if held > 0:
            text += f" ({held} more like this in the last {self.window:g}s not shown)"
        record.msg = printable(" ".join(text.split()) if "\n" in text else text)
        record.args = None
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


# Loggers whose records reach the receiver's stderr: asyncio's (accept() failing when
# file descriptors run out), aiohttp's (bad requests, handler errors) and ours.
LOGGERS: Final = (
    "asyncio", "aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.internal",
    "agentrace.receiver", "agentrace.grpc",
)  # fmt: skip

_FILTER = OneLineLogs()


def install_log_filter() -> None:
    """Put the one-line filter on :data:`LOGGERS` (once)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


log = logging.getLogger("agentrace.receiver")


def give_back_memory() -> None:
    """Collect garbage cycles, then ask Arrow's allocator and the C one to hand their free
    pages back.

    A burst of requests leaves the decoded rows freed but their pages held by glibc's
    allocator, so the process stays at its peak; ``malloc_trim`` returns them. On a C
    library without it (musl, macOS) only the collection runs.
    """
    gc.collect()
    pa.default_memory_pool().release_unused()  # Arrow's own allocator (mimalloc or jemalloc)
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
