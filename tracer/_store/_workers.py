"""A small pool of decoding processes, fed over pipes.

Not :mod:`multiprocessing`: its ``spawn`` runs the parent's main script again in
every child (a script without an ``if __name__ == "__main__"`` guard would import
its files twice), and ``fork`` copies a process that holds DuckDB's and the
receiver's threads mid-flight. These workers are plain child processes started
from ``sys.executable``; they import only the decoder and run the functions named
in :data:`TASKS`, nothing a message could name otherwise.

Frames are an 8-byte length and a pickle. Pickle is safe here: both ends are this
module, over the pipes of a process we started; trace data only ever travels as
bytes inside a frame. Each worker has a feeder thread (writes tasks, so a caller
never blocks on a full pipe) and a reader thread (hands results to futures in the
order the tasks went in). A worker that dies fails its pending futures; the next
task starts a new one.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import pickle
import queue
import subprocess
import sys
import threading
from concurrent.futures import Future, InvalidStateError
from typing import IO, Any

_HEAD = 8


def _write_frame(out: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(len(data).to_bytes(_HEAD, "big"))
    out.write(data)
    out.flush()


def _read_frame(inp: IO[bytes]) -> Any:
    head = inp.read(_HEAD)
    if len(head) < _HEAD:
        raise EOFError
    n = int.from_bytes(head, "big")
    data = inp.read(n)
    if len(data) < n:
        raise EOFError
    return pickle.loads(data)


class WorkerError(RuntimeError):
    """A decoding process failed in a way that is not the input's fault (a bug, or it died)."""


class _Worker:
    def __init__(self) -> None:
        env = dict(os.environ, AGENTRACE_DECODERS="0")  # a worker never starts workers
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from tracer._store._workers import _main; _main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.tasks: queue.SimpleQueue[tuple[str, tuple[Any, ...]] | None] = queue.SimpleQueue()
        self.pending: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()
        self.inflight = 0
        self.alive = True
        self.lock = threading.Lock()
        threading.Thread(target=self._feed, name="agentrace-decoder-feed", daemon=True).start()
        threading.Thread(target=self._read, name="agentrace-decoder-read", daemon=True).start()

    def submit(self, name: str, args: tuple[Any, ...]) -> Future[Any]:
        fut: Future[Any] = Future()
        with self.lock:
            self.inflight += 1
            self.pending.put(fut)
            self.tasks.put((name, args))
        return fut

    def _feed(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            while (task := self.tasks.get()) is not None:
                _write_frame(stdin, task)
        except (OSError, ValueError):
            pass  # the worker is gone; the reader fails what is pending
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while True:
                ok, value = _read_frame(stdout)
                with self.lock:
                    self.inflight -= 1
                    fut = self.pending.get()
                # A future its caller cancelled (a chunk before it failed) takes nothing.
                with contextlib.suppress(InvalidStateError):
                    if ok:
                        fut.set_result(value)
                    else:
                        fut.set_exception(WorkerError(f"a decoding process failed: {value}"))
        except (EOFError, OSError, pickle.UnpicklingError):
            pass
        with contextlib.suppress(OSError):
            stdout.close()
        self.tasks.put(None)  # the feeder closes stdin and ends
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(60)  # its output ended: it is exiting (reaped, not a zombie)
        with self.lock:
            self.alive = False
            while not self.pending.empty():
                with contextlib.suppress(InvalidStateError):
                    self.pending.get().set_exception(
                        WorkerError("a decoding process ended before answering")
                    )

    def close(self) -> None:
        self.tasks.put(None)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Pool:
    """``n`` decoding processes; :meth:`submit` is thread-safe and returns a future."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._next = itertools.count()

    def submit(self, name: str, *args: Any) -> Future[Any]:
        if name not in TASKS:
            raise ValueError(f"no decoding task {name!r}")
        with self._lock:
            self._workers = [w for w in self._workers if w.alive]
            if len(self._workers) < self.n:
                self._workers.append(_Worker())
            # The least busy worker; ties go round the pool.
            start = next(self._next)
            order = [
                self._workers[(start + i) % len(self._workers)] for i in range(len(self._workers))
            ]
            worker = min(order, key=lambda w: w.inflight)
        return worker.submit(name, args)

    def close(self) -> None:
        with self._lock:
            workers, self._workers = self._workers, []
        for w in workers:
            w.close()


def _tasks() -> dict[str, Any]:
    from ._parallel import decode_chunk, decode_request

    return {"chunk": decode_chunk, "request": decode_request}


TASKS = frozenset({"chunk", "request"})

_pool: Pool | None = None
_pool_lock = threading.Lock()


def workers() -> int:
    """How many decoding processes: one per core (``AGENTRACE_DECODERS`` to change; 0 = none)."""
    env = os.environ.get("AGENTRACE_DECODERS", "").strip()
    if env.isdigit():
        return int(env)
    return max(1, os.cpu_count() or 1)


def pool() -> Pool | None:
    """The process's decoding pool (its processes start on first use); None when it is off."""
    global _pool
    n = workers()
    if n < 1:
        return None
    with _pool_lock:
        if _pool is None:
            _pool = Pool(n)
            atexit.register(shutdown)
        return _pool


def shutdown() -> None:
    """Stop the decoding processes (new ones start on next use)."""
    global _pool
    with _pool_lock:
        p, _pool = _pool, None
    if p is not None:
        p.close()


def _main() -> None:
    inp = sys.stdin.buffer
    # Frames go to the real stdout; anything a library prints goes to stderr instead.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr
    tasks = _tasks()
    while True:
        try:
            name, args = _read_frame(inp)
        except EOFError:
            return
        try:
            reply: tuple[bool, Any] = (True, tasks[name](*args))
        except Exception as exc:  # a bug, not bad input (decoders return those as values)
            reply = (False, f"{type(exc).__name__}: {exc}")
        _write_frame(out, reply)
