"""The debugger: first paint of a big run, stepping a version, memory with a million spans.

Cases, all in one process except the memory ones (each in a fresh interpreter, so
its peak resident size is its own):

- first paint of a run with 100,000 spans and 10,000 state versions, from
  constructing the app to the waterfall's first rows and the state pane's first
  version on screen (the coordination graph is drawn after, and timed too);
  anchor: Textual's ``DataTable`` given the same 100,000 rows, to its first paint.
  Goal <= 0.5 s.
- stepping one version (``[``) until the state pane shows it: median and slowest
  of 50 steps. Goal <= 50 ms.
- peak memory of the debugger on a run of 1,000,000 spans (first paint, a jump to
  the middle and to the end of the waterfall, 10 steps), opened as ``agentrace tui``
  opens it (DuckDB's working memory capped at 160 MB), against the same
  interpreter with the store open and nothing shown, and against reading the
  run's light span columns whole under the same cap (what a waterfall that loads
  the run would hold at the least).

Runs are generated straight as OTLP protobuf (the recorder's per-span cost would
dominate the setup) and ingested through the store like any trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench import Measure
from tracer import Store, canonical_json, chain_hash, diff
from tracer import conventions as c
from tracer._otlp import fill_attrs

SPANS = 100_000
VERSIONS = 10_000
BIG_SPANS = 1_000_000
STEPS = 50
SIZE = (120, 40)
T0 = 1_700_000_000_000_000_000


def make_run(
    store: Store, n_spans: int, n_versions: int, *, seed: int = 1, per_request: int = 50_000
) -> str:
    """One orchestrated run: a root, ``n_versions`` agent steps (each committing a version),
    each with tool spans under it, ``n_spans`` in all; every 97th tool fails."""
    rng = random.Random(seed)
    trace_id = rng.getrandbits(128).to_bytes(16, "big")

    def sid() -> bytes:
        return rng.getrandbits(64).to_bytes(8, "big") or b"\x01" * 8

    agents = ["intake", "credit_score", "risk_assessment", "pricing", "decision"]
    steps = max(1, n_versions)
    base, extra = divmod(n_spans - 1, steps)  # spans per step (itself and its tools)
    req = ExportTraceServiceRequest()
    spans_in_req = 0

    def container() -> Any:
        nonlocal req, spans_in_req
        if spans_in_req >= per_request:
            # Ingested as it fills: the generator never holds more than one request.
            store.ingest([req], source="bench")
            req = ExportTraceServiceRequest()
            spans_in_req = 0
        if not req.resource_spans:
            rs = req.resource_spans.add()
            fill_attrs(rs.resource.attributes, {c.SERVICE_NAME: "bench"})
            rs.scope_spans.add().scope.name = "bench"
        spans_in_req += 1
        return req.resource_spans[0].scope_spans[0].spans

    root_id = sid()
    made = 1
    t = T0 + 1_000
    doc: dict[str, Any] = {"counter": 0, "items": {}}
    prev_hash = ""
    for step in range(steps):
        if made >= n_spans:
            break
        agent = agents[step % len(agents)]
        step_id = sid()
        start = t
        n_tools = base + (1 if step < extra else 0) - 1
        for i in range(max(0, n_tools)):
            sp = container().add()
            sp.trace_id, sp.span_id, sp.parent_span_id = trace_id, sid(), step_id
            sp.name = f"execute_tool lookup_{i % 5}"
            sp.kind = 1
            sp.start_time_unix_nano, sp.end_time_unix_nano = t, t + 800
            fill_attrs(
                sp.attributes,
                {c.GEN_AI_OPERATION_NAME: c.OP_EXECUTE_TOOL, c.GEN_AI_TOOL_NAME: f"lookup_{i % 5}"},
            )
            if (made + i) % 97 == 0:
                sp.status.code = 2
                sp.status.message = "upstream timeout"
            t += 1_000
        made += max(0, n_tools)
        sp = container().add()
        sp.trace_id, sp.span_id, sp.parent_span_id = trace_id, step_id, root_id
        sp.name = f"invoke_agent {agent}"
        sp.kind = 1
        sp.start_time_unix_nano, sp.end_time_unix_nano = start, t
        fill_attrs(sp.attributes, {c.GEN_AI_OPERATION_NAME: c.OP_INVOKE_AGENT, c.GEN_AI_AGENT_NAME: agent,
                                   c.AGENT_STEP: step + 1})  # fmt: skip
        made += 1
        if step < n_versions:
            version = step + 1
            new = {"counter": version, "items": {**doc["items"], f"k{version % 50}": version}}
            h = chain_hash(prev_hash, new)
            attrs: dict[str, Any] = {
                c.STATE_VERSION: version, c.STATE_PARENT_VERSION: version - 1, c.STATE_BASE_VERSION: version - 1,
                c.STATE_KIND: "initial" if version == 1 else "commit", c.STATE_AGENT: agent, c.STATE_HASH: h,
                c.STATE_KEYS: ["counter", "items"],
            }  # fmt: skip
            if version % 32 == 1:
                attrs[c.STATE_SNAPSHOT] = canonical_json(new)
            else:
                attrs[c.STATE_PATCH] = canonical_json(diff(doc, new))
            ev = sp.events.add()
            ev.time_unix_nano = t - 10
            ev.name = c.EV_STATE_COMMIT
            fill_attrs(ev.attributes, attrs)
            doc, prev_hash = new, h
        t += 1_000
    root = container().add()
    root.trace_id, root.span_id = trace_id, root_id
    root.name = "invoke_workflow bench"
    root.kind = 1
    root.start_time_unix_nano, root.end_time_unix_nano = T0, t
    fill_attrs(root.attributes, {c.GEN_AI_OPERATION_NAME: c.OP_INVOKE_WORKFLOW, c.GEN_AI_WORKFLOW_NAME: "bench",
                                 c.RUN_PATTERN: "orchestration", c.RUN_STATUS: "completed"})  # fmt: skip
    store.ingest([req], source="bench")
    return trace_id.hex()


# -- first paint and stepping ------------------------------------------------------------------


async def _idle(app: Any, pilot: Any) -> None:
    from textual.worker import WorkerCancelled

    with contextlib.suppress(WorkerCancelled):  # replaced by a newer worker of its group
        await app.workers.wait_for_complete()
    await pilot.pause()


async def _first_paint(
    store: Store, run_id: str, *, steps: int = 0, size: tuple[int, int] = SIZE
) -> tuple[float, float, list[float], list[float]]:
    from tui.app import AgentraceApp
    from tui.widgets.graph import CoordinationGraph
    from tui.widgets.state import StatePane
    from tui.widgets.waterfall import Waterfall

    t0 = time.perf_counter()
    app = AgentraceApp(store, run_id=run_id, theme="agentrace-dark")
    async with app.run_test(size=size) as pilot:
        while True:
            wf, st = app.screen.query(Waterfall), app.screen.query(StatePane)
            # On a small terminal the panes are tabs: the state is not on screen to wait for.
            state_shown = bool(st) and st.first().display
            if wf and st and wf.first().first_paint and (st.first().painted[1] or not state_shown):
                break
            await pilot.pause()
        first = max(wf.first().first_paint or 0.0, st.first().painted[1]) - t0
        graph = app.screen.query_one(CoordinationGraph)
        # As tabs the graph is not drawn until shown: time until its layout is ready then.
        while graph.first_paint is None and not (not graph.display and graph.picture is not None):
            await pilot.pause()
        graph_at = (graph.first_paint or time.perf_counter()) - t0
        state = st.first()
        screen: Any = app.screen
        times, jumps = [], []
        for _ in range(steps):
            await _idle(app, pilot)
            k = screen.version
            t1 = time.perf_counter()
            screen.action_step(-1)
            while state.painted[0] != k - 1:
                await pilot.pause()
            times.append(state.painted[1] - t1)
        # Jumps to versions far apart: nothing prefetched, a state document rebuilt each time.
        rng = random.Random(3)
        for _ in range(steps // 2):
            await _idle(app, pilot)
            k = rng.randrange(1, VERSIONS)
            if k in (screen.version, screen.version - 1, screen.version + 1):
                continue
            t1 = time.perf_counter()
            screen.version = k
            while state.painted[0] != k:
                await pilot.pause()
            jumps.append(state.painted[1] - t1)
    return first, graph_at, times, jumps


async def _datatable_first_paint(store: Store, run_id: str) -> float:
    from textual.app import App, ComposeResult
    from textual.widgets import DataTable

    painted: list[float] = []

    class Table(DataTable[str]):
        def render_line(self, y: int) -> Any:
            if self.row_count and not painted:
                painted.append(time.perf_counter())
            return super().render_line(y)

    class TableApp(App[None]):
        def compose(self) -> ComposeResult:
            yield Table()

        def on_mount(self) -> None:
            table = self.query_one(Table)
            table.add_columns("span", "kind", "duration", "status", "agent")
            rows = store.span_index(run_id).to_pylist()
            table.add_rows(
                (
                    r["name"],
                    r["kind"],
                    str(r["end_ns"] - r["start_ns"]),
                    r["status_code"],
                    r["agent"] or "",
                )
                for r in rows
            )

    t0 = time.perf_counter()
    app = TableApp()
    async with app.run_test(size=SIZE) as pilot:
        while not painted:
            await pilot.pause()
    return painted[0] - t0


# -- hostile spans ------------------------------------------------------------------------------

HOSTILE = {"0102030405060701": "a 10 MB value", "0102030405060702": "a million attributes"}


def make_hostile_run(store: Store) -> str:
    """A run of two spans: one with a 10 MB attribute value, one with a million attributes."""
    req = ExportTraceServiceRequest()
    spans = req.resource_spans.add().scope_spans.add().spans
    many = {f"attr.{j:07d}": j for j in range(1_000_000)}
    for i, attrs in enumerate([{"big.value": "x" * 10_000_000}, many]):
        sp = spans.add()
        sp.trace_id, sp.span_id = bytes(range(16)), bytes([1, 2, 3, 4, 5, 6, 7, i + 1])
        sp.name = f"hostile {i}"
        sp.start_time_unix_nano = T0 + i
        sp.end_time_unix_nano = T0 + i + 1_000
        fill_attrs(sp.attributes, attrs)
    store.ingest([req], source="bench")
    return bytes(range(16)).hex()


async def _open_span(store: Store, run_id: str, span_id: str) -> tuple[float, int]:
    """Seconds from asking the span pane for ``span_id`` to its lines on screen."""
    from tui.app import AgentraceApp
    from tui.widgets.span_detail import SpanDetail

    app = AgentraceApp(store, run_id=run_id, theme="agentrace-dark")
    async with app.run_test(size=(160, 48)) as pilot:
        await _idle(app, pilot)
        detail = app.screen.query_one(SpanDetail)
        t0 = time.perf_counter()
        detail.show(span_id)
        while detail.view is None or detail.view.span.span_id != span_id:
            await pilot.pause()
        await pilot.pause()
        return time.perf_counter() - t0, len(detail.lines)


# -- memory, each case in a fresh interpreter ---------------------------------------------------


def _child(mode: str, db: str, run_id: str) -> None:
    """Run one memory case and print its peak resident size in bytes."""
    store = Store(db, read_only=True)
    if mode == "tui":
        store.close()  # the debugger opens the store itself, as `agentrace tui` does

        async def drive() -> None:
            from tui.app import AgentraceApp
            from tui.widgets.state import StatePane
            from tui.widgets.waterfall import Waterfall

            app = AgentraceApp(db, run_id=run_id, theme="agentrace-dark")
            async with app.run_test(size=SIZE) as pilot:
                for _ in range(200):
                    await _idle(app, pilot)
                    wf = app.screen.query(Waterfall)
                    if wf and wf.first().first_paint and app.screen.query_one(StatePane).painted[1]:
                        break
                waterfall = app.screen.query_one(Waterfall)
                assert waterfall.rows is not None
                waterfall.cursor = waterfall.rows.visible // 2
                await _idle(app, pilot)
                await pilot.press("end")
                await _idle(app, pilot)
                for _ in range(10):
                    await pilot.press("left_square_bracket")
                    await _idle(app, pilot)

        asyncio.run(drive())
        store = Store(db, read_only=True)
    elif mode == "whole":
        # Under the same cap on DuckDB's memory as the debugger.
        spill = tempfile.mkdtemp(prefix="bench-tui-")
        store.sql(f"SET temp_directory = '{spill}'")
        store.sql("SET memory_limit = '160MB'")
        table = store.span_index(run_id)
        assert table.num_rows > 0
        store.close()
        shutil.rmtree(spill, ignore_errors=True)
        store = Store(db, read_only=True)
    elif mode == "baseline":
        import textual.app  # noqa: F401  # the same imports as the debugger

        import tui.app  # noqa: F401

        store.run(run_id)
    store.close()
    # VmHWM, not getrusage: ru_maxrss survives exec and would report the parent's peak.
    status = Path("/proc/self/status").read_text()
    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    print(int(hwm.split()[1]) * 1024)


def _peak(mode: str, db: Path, run_id: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", f"from bench.bench_tui import _child; _child({mode!r}, {str(db)!r}, {run_id!r})"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(out.stdout.strip().splitlines()[-1]) / 1e6


def run() -> list[Measure]:
    out: list[Measure] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "tui.duckdb"
        with Store(db) as store:
            t = time.perf_counter()
            run_id = make_run(store, SPANS, VERSIONS)
            made = time.perf_counter() - t
            assert store.span_count(run_id) == SPANS and store.run(run_id).version_count == VERSIONS
            firsts, graphs = [], []
            steps: list[float] = []
            jumps: list[float] = []
            for i in range(3):
                first, graph_at, times, far = asyncio.run(
                    _first_paint(store, run_id, steps=STEPS if i == 0 else 0)
                )
                firsts.append(first)
                graphs.append(graph_at)
                steps += times
                jumps += far
            table = asyncio.run(_datatable_first_paint(store, run_id))
            sized = {
                size: min(asyncio.run(_first_paint(store, run_id, size=size))[0] for _ in range(3))
                for size in ((80, 24), (160, 48))
            }
        out += [
            Measure("tui", f"first paint, run of {SPANS:,} spans / {VERSIONS:,} versions", min(firsts), "s",
                    f"best of 3 (all: {', '.join(f'{x:.2f}' for x in firsts)}); goal <= 0.5 s; run made in {made:.1f} s"),
            Measure("tui", "  then the coordination graph drawn", min(graphs), "s", "after the first paint, by design"),
            Measure("tui", f"anchor: DataTable with the same {SPANS:,} rows, first paint", table, "s",
                    f"{table / min(firsts):.0f}x the debugger"),
            *(
                Measure("tui", f"  first paint at {w}x{h}", t, "s",
                        "best of 3; tabs below 110x34 (only the waterfall waited for)")
                for (w, h), t in sized.items()
            ),
            Measure("tui", f"step one version, median of {len(steps)}", statistics.median(steps) * 1000, "ms",
                    "goal <= 50 ms"),
            Measure("tui", "step one version, slowest", max(steps) * 1000, "ms", ""),
            Measure("tui", f"jump to a far version, median of {len(jumps)}", statistics.median(jumps) * 1000,
                    "ms", "not prefetched: the document rebuilt from its snapshot and patches"),
        ]  # fmt: skip
        hostile = Path(tmp) / "hostile.duckdb"
        with Store(hostile) as store:
            run_id = make_hostile_run(store)
            opened = {sid: asyncio.run(_open_span(store, run_id, sid)) for sid in HOSTILE}
        out += [
            Measure("tui", f"open a span with {what}", opened[sid][0], "s",
                    f"to its detail on screen ({opened[sid][1]} lines laid out); goal about 1 s")
            for sid, what in HOSTILE.items()
        ]  # fmt: skip
        big = Path(tmp) / "big.duckdb"
        with Store(big) as store:
            t = time.perf_counter()
            big_run = make_run(store, BIG_SPANS, VERSIONS, seed=2)
            made = time.perf_counter() - t
            assert store.span_count(big_run) == BIG_SPANS
        base, tui, whole = (_peak(m, big, big_run) for m in ("baseline", "tui", "whole"))
        out += [
            Measure("tui", f"peak memory, debugger on a run of {BIG_SPANS:,} spans", tui, "MB",
                    f"first paint, middle, end, 10 steps; run made in {made:.1f} s"),
            Measure("tui", "  anchor: same imports and store, nothing shown", base, "MB",
                    f"the debugger adds {tui - base:.0f} MB"),
            Measure("tui", "  anchor: the run's light span columns read whole", whole, "MB",
                    "what loading the run would hold at the least"),
        ]  # fmt: skip
    return out


if __name__ == "__main__":
    for m in run():
        print(json.dumps(m.as_dict()))
