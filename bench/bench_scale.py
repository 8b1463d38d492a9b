"""How agentrace grows with a run: 10k, 100k and 1M spans (10M with AGENTRACE_BENCH_10M=1).

For each size, one orchestrated run (bench_tui.make_run: agent steps committing
state versions, one per ten spans, tools under them, every 97th tool failing)
written as a length-prefixed protobuf file, then:

- import: ``import_file`` of that file into a new store (decoded by the worker
  pool, written in one transaction), and its rate;
- store size: the DuckDB file on disk after the import (and a checkpoint);
- first paint: the debugger opened on the run, to its waterfall's and state
  pane's first rows (bench_tui._first_paint);
- findings: ``analyze`` of the run, every detector, findings stored.

Each figure is printed with its ratio per span to the 10k row, so "grows linearly
or better" reads as a ratio near or under 1. The 10M row takes about six minutes on
two cores (making the 2 GB file is more than one of them), hence the variable.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench import Measure
from bench.bench_tui import _first_paint, make_run
from tracer import Store, import_file
from tracer.analysis import analyze

SIZES = (10_000, 100_000, 1_000_000)
BIG = 10_000_000


class _FileOut:
    """Stands in for the store in make_run: its requests go to a length-prefixed file."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "wb")  # noqa: SIM115  # closed by close()

    def ingest(self, requests: list[ExportTraceServiceRequest], *, source: str = "") -> None:
        for r in requests:
            data = r.SerializeToString()
            self.file.write(len(data).to_bytes(4, "big") + data)

    def close(self) -> None:
        self.file.close()


def _one(n: int, tmp: Path) -> dict[str, Any]:
    path = tmp / f"run-{n}.lpb"
    out = _FileOut(path)
    t = time.perf_counter()
    run_id = make_run(cast(Store, out), n, max(1, n // 10), per_request=5_000)
    out.close()
    made = time.perf_counter() - t
    db = tmp / f"run-{n}.duckdb"
    with Store(db) as store:
        t = time.perf_counter()
        result = import_file(store, path)
        imported = time.perf_counter() - t
        assert result.spans == n, (result, n)
        store.sql("CHECKPOINT")
    size = db.stat().st_size
    with Store(db) as store:
        first, _, _, _ = asyncio.run(_first_paint(store, run_id))
        t = time.perf_counter()
        found = analyze(store, run_id)
        findings = time.perf_counter() - t
    path.unlink()
    db.unlink()
    return {"n": n, "made": made, "import": imported, "size": size, "first": first,
            "findings": findings, "found": len(found), "file": path.name}  # fmt: skip


def run() -> list[Measure]:
    sizes = SIZES + ((BIG,) if os.environ.get("AGENTRACE_BENCH_10M") == "1" else ())
    out: list[Measure] = []
    with tempfile.TemporaryDirectory() as d:
        rows = [_one(n, Path(d)) for n in sizes]
    base = rows[0]

    def per(row: dict[str, Any], key: str) -> str:
        ratio = (row[key] / row["n"]) / (base[key] / base["n"])
        return f"{ratio:.2f}x the 10k row per span"

    for r in rows:
        n = f"{r['n']:,} spans"
        out += [
            Measure("scale", f"{n}: import (file -> store)", r["import"], "s",
                    f"{r['n'] / r['import']:,.0f} spans/s; {per(r, 'import')}; file made in {r['made']:.0f} s"),
            Measure("scale", f"{n}: store size on disk", r["size"] / 1e6, "MB", per(r, "size")),
            Measure("scale", f"{n}: first paint", r["first"], "s", per(r, "first")),
            Measure("scale", f"{n}: find all findings (analyze)", r["findings"], "s",
                    f"{r['found']:,} findings; {per(r, 'findings')}"),
        ]  # fmt: skip
    if BIG not in sizes:
        out.append(
            Measure("scale", "10,000,000 spans: not run", 0, "", "set AGENTRACE_BENCH_10M=1")
        )
    return out
