"""Processes for the multi-process tests: `agentrace serve`, `agentrace worker`, and how to read them.

Each process is started from the installed `agentrace` script and waited for by the one
line it prints when ready (read by a thread, so the wait has a deadline); stderr goes to
a file that failures show.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import networkx as nx

from tracer import Store
from tracer.analysis import coordination_graph, detect

AGENTRACE = str(Path(sys.executable).with_name("agentrace"))
READY_S = 60.0  # generous: a cold start imports the engine in each process


class Proc:
    """A child process whose stdout lines are collected as they come."""

    def __init__(self, args: Sequence[str], log: Path, *, ready: str | None = None) -> None:
        self.args = list(args)
        self.log = log
        self._err = open(log, "wb")  # noqa: SIM115  # closed in wait()
        self.popen = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=self._err, text=True, bufsize=1
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.out: list[str] = []
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        self.ready_line = self.expect(ready) if ready is not None else ""

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, text: str, timeout: float = READY_S) -> str:
        """The first new stdout line containing ``text``; AssertionError with stderr otherwise."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"{self.args}: no {text!r} within {timeout} s\n{self.stderr()}"
                ) from None
            if line is None:
                raise AssertionError(
                    f"{self.args} exited ({self.popen.wait()}) before {text!r}\n{self.stderr()}"
                )
            self.out.append(line)
            if text in line:
                return line

    def stderr(self) -> str:
        if not self._err.closed:
            self._err.flush()
        return self.log.read_text(errors="replace")[-4000:]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill9(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.wait()

    def stop(self, timeout: float = 30.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 120.0) -> int:
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            code = self.popen.wait()
        self._pump_thread.join(timeout)  # it ends at the pipe's end of file
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._err.close()
        return code


def serve(db: Path, logs: Path) -> tuple[Proc, str]:
    """`agentrace serve` on a free port; the process and its OTLP/HTTP URL."""
    p = Proc(
        [AGENTRACE, "serve", "--db", str(db), "--port", "0"],
        logs / "serve.err",
        ready="listening on",
    )
    return p, p.ready_line.split("listening on ", 1)[1].strip()


def worker(
    target: str, redis_url: str, otlp: str, logs: Path, *extra: str, wait: bool = True
) -> Proc:
    """`agentrace worker TARGET`, waited for (``wait=False``: call :func:`ready` later)."""
    name = target.rsplit(":", 1)[-1].replace(".", "-")
    n = len(list(logs.glob(f"worker-{name}*.err")))
    args = [AGENTRACE, "worker", target, "--bus", redis_url, "--otlp", otlp, *extra]
    return Proc(args, logs / f"worker-{name}-{n}.err", ready="ready:" if wait else None)


def ready(*procs: Proc) -> list[Proc]:
    """Wait for workers started with ``wait=False`` (they start side by side)."""
    for p in procs:
        p.ready_line = p.expect("ready:")
    return list(procs)


def start_run(
    target: str, redis_url: str, otlp: str, logs: Path, *extra: str
) -> tuple[int, str, str]:
    """`agentrace worker TARGET --start`: its exit code, run id and status."""
    args = [AGENTRACE, "worker", target, "--start", "--bus", redis_url, "--otlp", otlp, *extra]
    p = Proc(args, logs / "start.err")
    line = p.expect("run ")
    code = p.wait()
    _, run_id, status = line.split()
    return code, run_id, status


def instance_of(p: Proc) -> str:
    """The Redis instance name a worker printed in its ready line."""
    return p.ready_line.split()[1]


# -- what a run looks like, without ids and times ------------------------------------------------


def graph_shape(g: nx.MultiDiGraph) -> dict[str, Any]:
    """Nodes and edges with their kinds, counts and outcomes: what two runs of one program share."""
    nodes = {
        n: (
            d["kind"],
            d.get("declared"),
            d.get("observed"),
            d.get("steps"),
            dict(d.get("outcomes") or {}),
        )
        for n, d in g.nodes(data=True)
    }
    edges = {
        (u, v, k): (d.get("count"), dict(d.get("outcomes") or {}), d.get("declared"), d.get("observed"),
                    tuple(sorted(d.get("groups") or ())))
        for u, v, k, d in g.edges(keys=True, data=True)
    }  # fmt: skip
    return {"pattern": g.graph.get("pattern"), "nodes": nodes, "edges": edges}


def findings_shape(store: Store, run_id: str) -> list[tuple[str, str, tuple[str, ...], int]]:
    return sorted(
        (f.kind, str(f.severity), tuple(sorted(f.agents)), len(f.versions))
        for f in detect(store, run_id)
    )


def run_shape(db: Path, run_id: str) -> dict[str, Any]:
    with Store(str(db), read_only=True) as store:
        return {
            "graph": graph_shape(coordination_graph(store, run_id)),
            "findings": findings_shape(store, run_id),
        }
