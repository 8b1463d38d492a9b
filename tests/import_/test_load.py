"""Load and faults: concurrent exporters lose nothing and store nothing twice; kill -9 loses no ack.

Both run ``agentrace serve`` as a process and load it with real HTTP posts from
scripts/otlp_load.py (pre-encoded protobuf, one trace of ``batch`` spans per
request, ids derived from the sender and the request number).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import tracer as t

from .helpers import LOAD

AGENTRACE = Path(sys.executable).parent / "agentrace"
# Every step waits on the work itself: a line from the child, or the child's exit (its
# stdout closes either way, so a reader never waits on a dead process). This limit is
# only a guard against a hang, far above what the work costs even on a loaded machine
# (the heaviest step, 400,000 spans through the receiver, takes seconds alone).
GUARD = 3600
# An exporter's per-request timeout, as generous: a commit delayed by a busy machine is
# slow, not lost, and a sender that timed out would post again.
HTTP_TIMEOUT = "600"

pytestmark = pytest.mark.slow


class Proc:
    """A child process: stdout read line by line (with a timeout), stderr kept in a file."""

    def __init__(self, args: list[str], err: Path) -> None:
        self.err_path = err
        with open(err, "w") as err_file:
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err_file, text=True)
        self.q: queue.Queue[str | None] = queue.Queue()
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def next(self) -> str | None:
        return self.q.get(timeout=GUARD)

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait(self) -> int:
        code = self.proc.wait(GUARD)
        self._pump.join(GUARD)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()


def _serve(db: Path, tmp: Path) -> tuple[Proc, str]:
    proc = Proc(
        [str(AGENTRACE), "serve", "--db", str(db), "--port", "0"],
        tmp / f"serve-{os.urandom(4).hex()}.err",
    )
    line = proc.next()
    assert line and line.startswith("listening on http://127.0.0.1:"), (line, proc.stderr)
    return proc, line.split()[2]


def _stop(server: Proc) -> str:
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.stderr
    return server.stderr


def _load(url: str, tmp: Path, *args: str) -> Proc:
    return Proc(
        [sys.executable, str(LOAD), url, "--timeout", HTTP_TIMEOUT, *args], tmp / "load.err"
    )


def test_eight_concurrent_exporters_store_every_span_exactly_once(tmp_path: Path) -> None:
    db = tmp_path / "load.duckdb"
    server, url = _serve(db, tmp_path)
    try:
        loader = _load(
            url, tmp_path, "--senders", "8", "--spans", "50000", "--batch", "500", "--quiet"
        )
        summary = loader.next()
        assert loader.wait() == 0, loader.stderr
        assert summary is not None and '"spans_acked": 400000' in summary
    finally:
        log = _stop(server)
    assert "800 request(s), 400000 span(s) accepted (400000 new)" in log
    with t.Store(db, read_only=True) as store:
        total, distinct, traces = store.sql(
            "SELECT count(*), count(DISTINCT (trace_id, span_id)), count(DISTINCT trace_id) FROM spans"
        ).fetchall()[0]
        assert (total, distinct, traces) == (400_000, 400_000, 800)
        sizes = {n for (n,) in store.sql("SELECT count(*) FROM spans GROUP BY trace_id").fetchall()}
        assert sizes == {500}
        assert len(store.runs()) == 800


def test_kill_9_in_the_middle_of_a_load_loses_no_acknowledged_batch(tmp_path: Path) -> None:
    db = tmp_path / "kill.duckdb"
    server, url = _serve(db, tmp_path)
    loader = _load(
        url, tmp_path, "--senders", "4", "--spans", "40000", "--batch", "200", "--max-errors", "5"
    )
    acked: list[str] = []
    try:
        while len(acked) < 40:
            line = loader.next()
            assert line is not None, loader.stderr
            if line.startswith("ack "):
                acked.append(line.split()[3])
        os.kill(server.proc.pid, signal.SIGKILL)  # in the middle: senders are still posting
        server.wait()
        while (line := loader.next()) is not None:  # the loader gives up by itself, bounded
            if line.startswith("ack "):
                acked.append(line.split()[3])
        assert loader.wait() == 1  # it could not deliver everything: the server died
    finally:
        server.kill()
        loader.kill()
    assert len(acked) < 4 * 40000 // 200
    # Restart on the same file: DuckDB replays its log; then stop cleanly.
    server, _ = _serve(db, tmp_path)
    _stop(server)
    with t.Store(db, read_only=True) as store:
        stored = dict(
            store.sql("SELECT trace_id, count(*) FROM spans GROUP BY trace_id").fetchall()
        )
    assert all(stored.get(tid) == 200 for tid in acked), "an acknowledged batch is missing"
    assert set(stored.values()) == {200}, "a request was half written"
    assert len(stored) >= len(acked)  # committed but not yet answered when the server died
