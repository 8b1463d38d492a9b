"""Pilot tests: every screen and pane driven with keys, asserting on the app's state.

No sleeps: ``settle`` waits for the workers and for their messages to land.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tracer import OtlpHttpSink, Recorder, SeededIds, Store
from tracer.testing import RunBuilder
from tui.app import AgentraceApp
from tui.screens.help import HelpScreen
from tui.screens.prompt import Prompt
from tui.screens.run import RunScreen
from tui.screens.runs import RunsScreen
from tui.widgets.findings import FindingsList
from tui.widgets.graph import CoordinationGraph
from tui.widgets.runs_table import RunsTable
from tui.widgets.span_detail import SpanDetail
from tui.widgets.state import StatePane
from tui.widgets.waterfall import Waterfall

from .helpers import screen_text, settle, stale_read_run

SIZE = (120, 40)
Scenarios = tuple[Store, dict[str, list[str]]]


def _stale_credit_run(store: Store, runs: dict[str, list[str]]) -> str:
    return next(r for r in runs["credit"] if any(f.kind == "stale_read" for f in store.findings(r)))


def _run_screen(app: AgentraceApp) -> RunScreen:
    assert isinstance(app.screen, RunScreen)
    return app.screen


# -- runs screen -----------------------------------------------------------------------------


async def test_the_runs_screen_sorts_filters_searches_and_opens(scenario_store: Scenarios) -> None:
    store, runs = scenario_store
    app = AgentraceApp(store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        table = app.screen.query_one(RunsTable)
        total = sum(len(v) for v in runs.values())
        assert len(table.shown) == total == table.row_count
        starts = [r.start_ns for r in table.shown]
        assert starts == sorted(starts, reverse=True)  # newest first

        await pilot.press("s")  # sort by the next column: duration
        assert screen.sort_key == "duration"
        durations = [r.duration_ns for r in table.shown]
        assert durations == sorted(durations, reverse=True)
        await pilot.press("r")
        assert [r.duration_ns for r in table.shown] == sorted(durations)

        await pilot.press("p")  # orchestration only
        assert screen.pattern == "orchestration"
        assert {r.pattern for r in table.shown} == {"orchestration"}
        await pilot.press("p")
        assert {r.pattern for r in table.shown} == {"choreography"}
        for _ in range(3):  # hybrid, imported, all
            await pilot.press("p")
        assert screen.pattern == "all" and len(table.shown) == total

        await pilot.press("x")
        assert table.shown and all(r.finding_count for r in table.shown)
        await pilot.press("x")

        await pilot.press("slash")
        await pilot.press(*"stale")  # a finding kind
        assert table.shown and all("stale_read" in screen.kinds[r.run_id] for r in table.shown)
        await pilot.press(*["backspace"] * 5, *"trading")
        assert [r.scenario for r in table.shown] == ["trading-saga"]
        await pilot.press("enter", "enter")  # leave the search box, open the run
        await settle(app, pilot)
        run_screen = _run_screen(app)
        assert run_screen.run_id == runs["trading-saga"][0]

        await pilot.press("escape")
        await settle(app, pilot)
        assert app.screen is screen


async def test_clicking_a_header_sorts_by_it(scenario_store: Scenarios) -> None:
    store, _ = scenario_store
    app = AgentraceApp(store)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        table = screen.query_one(RunsTable)
        x = 0
        for key, column in table.columns.items():
            if key.value == "duration":
                break
            x += column.get_render_width(table)
        await pilot.click(RunsTable, offset=(x + 1, 0))
        assert (screen.sort_key, screen.sort_reverse) == ("duration", True)
        assert [r.duration_ns for r in table.shown] == sorted(
            (r.duration_ns for r in table.shown), reverse=True
        )
        await pilot.click(RunsTable, offset=(x + 1, 0))
        assert not screen.sort_reverse
        assert [r.duration_ns for r in table.shown] == sorted(r.duration_ns for r in table.shown)


# -- run screen: the stepper -----------------------------------------------------------------


async def test_stepping_moves_state_graph_and_waterfall_together(
    small_store: tuple[Store, str],
) -> None:
    store, run_id = small_store
    app = AgentraceApp(store, run_id=run_id)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = _run_screen(app)
        state = app.screen.query_one(StatePane)
        assert screen.version == 4 and state.view is not None and state.view.version == 4

        await pilot.press("left_square_bracket")
        await settle(app, pilot)
        assert screen.version == 3
        view = state.view
        assert view is not None and view.version == 3 and view.reads[0].stale
        vm = screen.meta.version(3)  # type: ignore[union-attr]
        assert vm is not None
        assert app.screen.query_one(Waterfall).current_span == vm.span_id
        assert app.screen.query_one(CoordinationGraph).nodes == {"rater"}
        assert "STALE" in screen_text(app)

        await pilot.press("3", "home")
        await settle(app, pilot)
        assert screen.version == 1 and state.view.version == 1
        await pilot.press("right", "right")
        await settle(app, pilot)
        assert screen.version == 3
        await pilot.press("end")
        await settle(app, pilot)
        assert screen.version == 4
        await pilot.press("right")  # past the end stays at the end
        await settle(app, pilot)
        assert screen.version == 4


async def test_the_neighbours_are_prefetched_so_a_step_shows_at_once(
    small_store: tuple[Store, str],
) -> None:
    store, run_id = small_store
    app = AgentraceApp(store, run_id=run_id)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        state = app.screen.query_one(StatePane)
        assert (3, None) in state._cache  # v4 is shown; v3 was loaded beside it
        await pilot.press("left_square_bracket")
        # No waiting on workers: the view came from the cache in the key's own handler.
        assert state.view is not None and state.view.version == 3
        await settle(app, pilot)
        assert (2, None) in state._cache and (4, None) in state._cache


async def test_go_to_a_version_and_diff_any_two(small_store: tuple[Store, str]) -> None:
    store, run_id = small_store
    app = AgentraceApp(store, run_id=run_id)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = _run_screen(app)
        await pilot.press("g")
        assert isinstance(app.screen, Prompt)
        await pilot.press("2", "enter")
        await settle(app, pilot)
        assert screen.version == 2

        await pilot.press("d")
        await pilot.press(*"1 4", "enter")
        await settle(app, pilot)
        state = app.screen.query_one(StatePane)
        assert (screen.base, screen.version) == (1, 4)
        assert state.view is not None and state.view.base == 1
        assert {c.path for c in state.view.changes} == {
            "/score",
            "/rating",
            "/decision",
            "/applicant/checked",
        }

        await pilot.press("3", "B")  # back to "against the version before"
        await settle(app, pilot)
        assert screen.base is None and state.view.base == 3
        await pilot.press("left", "b")  # pin v3 as the base, then step on
        await settle(app, pilot)
        assert screen.base == 3
        await pilot.press("right")
        await settle(app, pilot)
        assert state.view.version == 4 and state.view.base == 3


async def test_folding_the_state_tree_survives_stepping(small_store: tuple[Store, str]) -> None:
    store, run_id = small_store
    app = AgentraceApp(store, run_id=run_id)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        state = app.screen.query_one(StatePane)
        await pilot.press("3")
        assert state.move_to_key(("fold", "/applicant"))
        await pilot.press("enter")
        assert "/applicant" in state.folded
        assert not any(ln.key == ("fold", "/applicant/checked") for ln in state.lines)
        await pilot.press("left")
        await settle(app, pilot)
        assert "/applicant" in state.folded
        assert any("{… 1 key}" in "".join(t for t, _ in ln.runs) for ln in state.lines)


# -- waterfall and span detail ---------------------------------------------------------------


async def test_the_waterfall_moves_folds_and_feeds_the_span_detail(
    small_store: tuple[Store, str],
) -> None:
    store, run_id = small_store
    app = AgentraceApp(store, run_id=run_id)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        wf = app.screen.query_one(Waterfall)
        detail = app.screen.query_one(SpanDetail)
        assert wf.has_focus and wf.rows is not None and wf.rows.visible == 5
        assert detail.view is not None and detail.view.span.name.startswith("invoke_workflow")

        await pilot.press("down", "down")
        await settle(app, pilot)
        assert wf.cursor == 2
        assert detail.view.span.name == "invoke_agent scorer"
        assert detail.view.data.versions == (2,)

        await pilot.press("home", "enter")  # fold the root
        assert wf.rows.visible == 1
        await pilot.press("right")  # unfold
        assert wf.rows.visible == 5
        await pilot.press("minus")  # fold every agent step (none has children here)
        assert wf.rows.visible == 5
        await pilot.press("left")  # on the root: fold it
        assert wf.rows.visible == 1
        await pilot.press("plus")
        assert wf.rows.visible == 5
        await pilot.press("end")
        await settle(app, pilot)
        assert detail.view.span.name == "invoke_agent decider"
        await pilot.press("left")  # a leaf: go to its parent
        await settle(app, pilot)
        assert wf.cursor == 0


async def test_errors_and_searches_reach_spans_anywhere_in_the_run(tmp_path: Path) -> None:
    with Store(tmp_path / "errors.duckdb") as store:
        with RunBuilder(store, seed=31, initial={"i": 0}) as run:
            for i in range(30):
                with run.step(f"agent{i % 3}") as s:
                    for j in range(5):
                        with run.step(
                            "tool", parent=s, operation="execute_tool", name=f"tool {i}.{j}"
                        ) as t:
                            if (i, j) in ((7, 2), (25, 4)):
                                t.fail("boom")
        app = AgentraceApp(store, run_id=run.run_id)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            wf = app.screen.query_one(Waterfall)
            detail = app.screen.query_one(SpanDetail)
            await pilot.press("minus")  # fold every step: the errors are hidden inside
            assert wf.rows is not None and wf.rows.visible == 31
            await pilot.press("e")
            await settle(app, pilot)
            assert detail.view is not None and detail.view.span.name == "tool 7.2"
            await pilot.press("e")
            await settle(app, pilot)
            assert detail.view.span.name == "tool 25.4"
            await pilot.press("e")  # wraps to the first
            await settle(app, pilot)
            assert detail.view.span.name == "tool 7.2"
            assert "error 1 of 2" in str(wf.border_subtitle)

            await pilot.press("slash", *"tool 1", "enter")
            await settle(app, pilot)
            assert len(wf.matches) == 5 + 10 * 5  # tool 1.x and tool 10.x .. 19.x
            assert detail.view.span.name.startswith("tool 1")
            first = detail.view.span.name
            await pilot.press("n")
            await settle(app, pilot)
            assert detail.view.span.name != first
            await pilot.press("N")
            await settle(app, pilot)
            assert detail.view.span.name == first
            assert wf.has_focus


async def test_following_a_link_goes_from_consumer_to_producer(scenario_store: Scenarios) -> None:
    store, runs = scenario_store
    (run_id,) = runs["double-consume"]
    consumer = next(s for s in store.spans(run_id) if s.kind == "CONSUMER")
    producer = store.links(run_id, consumer.span_id)[0].linked_span_id
    app = AgentraceApp(store, run_id=run_id)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        wf = app.screen.query_one(Waterfall)
        assert wf.select_span(consumer.span_id)
        await settle(app, pilot)
        detail = app.screen.query_one(SpanDetail)
        assert detail.view is not None and detail.view.span.span_id == consumer.span_id
        await pilot.press("5")
        assert detail.move_to_key(("span", run_id, producer))
        await pilot.press("enter")
        await settle(app, pilot)
        assert wf.cursor_span == producer
        assert detail.view.span.span_id == producer and detail.view.span.kind == "PRODUCER"

        await pilot.press("backspace")  # back to where the link was followed from
        await settle(app, pilot)
        assert wf.cursor_span == consumer.span_id
        assert detail.view.span.span_id == consumer.span_id


# -- findings --------------------------------------------------------------------------------


async def test_selecting_the_stale_read_jumps_every_pane_to_it(scenario_store: Scenarios) -> None:
    store, runs = scenario_store
    run_id = _stale_credit_run(store, runs)
    (finding,) = [f for f in store.findings(run_id) if f.kind == "stale_read"]
    app = AgentraceApp(store, run_id=run_id)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = _run_screen(app)
        await pilot.press("4", "enter")
        await settle(app, pilot)
        meta = screen.meta
        assert meta is not None and screen.finding == finding.finding_id
        vm = meta.version(screen.version)
        assert (
            vm is not None and vm.span_id in finding.span_ids
        )  # the version the stale reader wrote
        state = app.screen.query_one(StatePane)
        assert state.view is not None and any(r.stale for r in state.view.reads)
        stale = next(r for r in state.view.reads if r.stale)
        assert stale.version in finding.versions and stale.head in finding.versions
        assert app.screen.query_one(Waterfall).cursor_span == finding.span_ids[0]
        graph = app.screen.query_one(CoordinationGraph)
        assert set(finding.agents) <= graph.nodes
        assert graph.edges  # the edge where it happened is lit
        lit = {(e.source, e.target) for e in graph.data.layout.edges if e.index in graph.edges}  # type: ignore[union-attr]
        # The handoff into the stale reader, from the agent whose newer version it missed.
        assert lit == {("credit_score", "risk_assessment")}
        text = screen_text(app)
        assert "STALE" in text and "stale_read" in text


async def test_the_mouse_selects_rows_findings_and_folds(scenario_store: Scenarios) -> None:
    store, runs = scenario_store
    run_id = _stale_credit_run(store, runs)
    (finding,) = [f for f in store.findings(run_id) if f.kind == "stale_read"]
    app = AgentraceApp(store, run_id=run_id)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = _run_screen(app)
        wf = app.screen.query_one(Waterfall)
        await pilot.click(Waterfall, offset=(20, 3))  # the axis is line 0: row 2
        await settle(app, pilot)
        assert wf.cursor == 2
        await pilot.click(FindingsList, offset=(10, 1))  # the finding's first line
        await settle(app, pilot)
        assert screen.finding == finding.finding_id
        assert wf.cursor_span == finding.span_ids[0]
        await pilot.click(Waterfall, offset=(1, 1))  # the root's fold marker
        assert wf.rows is not None and wf.rows.visible == 1


async def test_f_cycles_through_the_findings(scenario_store: Scenarios) -> None:
    store, runs = scenario_store
    (run_id,) = runs["double-consume"]
    app = AgentraceApp(store, run_id=run_id)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = _run_screen(app)
        ids = [f.finding_id for f in app.screen.query_one(FindingsList).findings]
        assert ids
        await pilot.press("f")
        await settle(app, pilot)
        assert screen.finding == ids[0]
        await pilot.press("left_square_bracket")  # stepping leaves the finding
        await settle(app, pilot)
        assert screen.finding is None


# -- help, zoom, palette, theme --------------------------------------------------------------


async def test_help_zoom_theme_and_pane_keys(small_store: tuple[Store, str]) -> None:
    store, run_id = small_store
    app = AgentraceApp(store, run_id=run_id, theme="agentrace-dark")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = _run_screen(app)
        await pilot.press("question_mark")
        await settle(app, pilot)
        assert isinstance(app.screen, HelpScreen)
        assert "fold every agent step" in screen_text(app)
        await pilot.press("escape")
        assert app.screen is screen
        for key, pane in zip(
            "12345", ("graph", "waterfall", "state", "findings", "span"), strict=True
        ):
            await pilot.press(key)
            assert app.focused is not None and app.focused.id == pane
        await pilot.press("3", "z")
        assert screen.maximized is app.screen.query_one(StatePane)
        await pilot.press("tab")
        assert screen.maximized is app.screen.query_one(FindingsList)
        await pilot.press("z")
        assert screen.maximized is None
        await pilot.press("ctrl+t")
        assert app.theme == "agentrace-light"
        await pilot.press("ctrl+t")
        assert app.theme == "agentrace-dark"


async def test_the_command_palette_jumps_to_a_finding(scenario_store: Scenarios) -> None:
    store, runs = scenario_store
    run_id = _stale_credit_run(store, runs)
    app = AgentraceApp(store, run_id=run_id)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        screen = _run_screen(app)
        await pilot.press("ctrl+p")
        await pilot.press(*"stale_read")
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        assert screen.finding is not None
        await pilot.press("ctrl+p", *"2")
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        assert screen.version == 2


# -- live mode -------------------------------------------------------------------------------


async def test_live_mode_shows_runs_and_spans_as_they_arrive(tmp_path: Path) -> None:
    store = Store(tmp_path / "live.duckdb")
    first = stale_read_run(store, seed=11)
    app = AgentraceApp(store, listen=0)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            assert app.receiver is not None and app.listen
            assert f"live on 127.0.0.1:{app.listen}" in screen_text(app)
            table = app.screen.query_one(RunsTable)
            assert [r.run_id for r in table.shown] == [first]

            def send() -> str:
                sink = OtlpHttpSink(f"http://127.0.0.1:{app.listen}")
                with (
                    RunBuilder(sink, workflow="arrived", seed=12, initial={"n": 1}) as run,
                    run.step("late") as s,
                ):
                    s.commit({"n": 2})
                return run.run_id

            second = await asyncio.to_thread(send)
            await settle(app, pilot, until=lambda: len(table.shown) == 2)
            assert {r.run_id for r in table.shown} == {first, second}

            # Open the new run, then more of its spans arrive: the waterfall grows.
            await pilot.press("end", "enter")
            await settle(app, pilot)
            screen = _run_screen(app)
            assert screen.run_id in {first, second}
            wf = app.screen.query_one(Waterfall)
            before = wf.rows.visible if wf.rows else 0

            def more() -> None:
                sink = OtlpHttpSink(f"http://127.0.0.1:{app.listen}")
                rec = Recorder(sink, ids=SeededIds(99))
                span = rec.start_span("late spans", trace_id=bytes.fromhex(screen.run_id))
                span.end()
                rec.close()

            await asyncio.to_thread(more)
            await settle(
                app, pilot, until=lambda: wf.rows is not None and wf.rows.visible == before + 1
            )
            assert app.ingested_spans >= 1
    finally:
        store.close()


async def test_opened_from_a_path_the_store_has_a_memory_cap_and_a_private_spill_dir(
    tmp_path: Path,
) -> None:
    db = tmp_path / "capped.duckdb"
    with Store(db) as store:
        stale_read_run(store)
    app = AgentraceApp(db, memory_mb=100)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        limit = app.store.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
        assert limit.startswith(("95", "100"))  # DuckDB reports MiB
        spill = app._spill_dir
        assert spill is not None and Path(spill).is_dir()
    assert not Path(spill).exists()


# -- markup stays text -----------------------------------------------------------------------

MARKUP = "[bold red]boom[/]"
LINK = "[link=https://example.com]click[/link]"
UNCLOSED = "[link=https://unclosed"


async def test_markup_in_traces_is_shown_literally(tmp_path: Path) -> None:
    with Store(tmp_path / "inject.duckdb") as store:
        with (
            RunBuilder(store, workflow=MARKUP, scenario=LINK, initial={MARKUP: LINK}) as run,
            run.step(LINK, output={"note": MARKUP}) as s,
        ):
            s.read([MARKUP])
            s.commit({"[i]x[/i]": "[reverse]y"})
            s.contract(MARKUP, target=LINK, outcome="rejected", errors=[MARKUP])
            s.fail(MARKUP)
        # Half a tag: textual.markup.escape leaves it alone and the markup parser fails on it.
        stale_read_run(store, workflow=UNCLOSED, seed=2)
        app = AgentraceApp(store)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            runs_text = screen_text(app)
            assert MARKUP in runs_text
            assert "no findings stored" in runs_text  # nothing analysed these runs yet
            table = app.screen.query_one(RunsTable)
            cells = [table.get_row_at(i)[1] for i in range(table.row_count)]
            cell = next(c for c in cells if c.plain == MARKUP)
            assert not cell.spans

            table.move_cursor(row=cells.index(cell))
            await pilot.press("enter")
            await settle(app, pilot)
            text = screen_text(app)
            assert MARKUP in text  # header, waterfall root, state
            assert "[link=https://example.com]" in text  # the agent's box, span names
            await pilot.press("3", "z")
            await settle(app, pilot)
            text = screen_text(app)
            assert '"[reverse]y"' in text and "[i]x[/i]" in text
            await pilot.press("2", "down")  # the agent's step: its events and attributes
            await settle(app, pilot)
            await pilot.press("5", "z", "end")
            await settle(app, pilot)
            text = screen_text(app)
            assert "exception.message = [bold red]boom[/]" in text

            # This run had no findings stored: the debugger found them itself, and says so.
            findings = app.screen.query_one(FindingsList)
            assert findings.findings and "not stored" in str(findings.border_title)

            await pilot.press("ctrl+p", *"boom")
            await settle(app, pilot)
            assert MARKUP in screen_text(app)
            await pilot.press("escape", "escape", "escape")  # the palette, the zoom, the run
            await settle(app, pilot)
            assert isinstance(app.screen, RunsScreen)
            assert UNCLOSED in screen_text(app)
            await pilot.press("ctrl+p", *"unclosed")
            await settle(app, pilot)
            assert UNCLOSED in screen_text(app)


# -- scale -----------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_big_run_is_read_a_page_at_a_time(tmp_path: Path) -> None:
    with Store(tmp_path / "big.duckdb") as store:
        with RunBuilder(store, seed=21, batch_size=5000, initial={"i": 0}) as run:
            for i in range(400):
                with run.step(f"agent{i % 7}") as s:
                    for j in range(9):
                        with run.step(
                            "tool", parent=s, operation="execute_tool", name=f"tool {i}.{j}"
                        ):
                            pass
                    if i % 40 == 0:
                        s.commit({"i": i})
        total = store.span_count(run.run_id)
        assert total == 4001
        app = AgentraceApp(store, run_id=run.run_id)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            wf = app.screen.query_one(Waterfall)
            assert wf.rows is not None and wf.rows.visible == total
            assert len(wf._spans) < 200  # only what was on screen, and a page around it
            await pilot.press("end")
            await settle(app, pilot)
            assert app.screen.query_one(SpanDetail).view.span.name == "tool 399.8"  # type: ignore[union-attr]
            assert len(wf._spans) < 400
            await pilot.press("minus")
            assert wf.rows.visible == 401
