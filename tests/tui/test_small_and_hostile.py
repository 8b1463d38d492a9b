"""Small and resized terminals, spans too big to lay out, and LLM spans read as conversations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracer import Store, import_file
from tracer._otlp import fill_attrs
from tui._llm import conversation, span_kind, span_model, span_tokens
from tui.app import AgentraceApp
from tui.screens.help import HelpScreen
from tui.screens.run import RunScreen
from tui.screens.text import TextScreen
from tui.widgets._lines import LineView
from tui.widgets.graph import CoordinationGraph
from tui.widgets.runs_table import columns_for
from tui.widgets.span_detail import SpanDetail
from tui.widgets.text_view import TextView

from .helpers import screen_text, settle, stale_read_run

FOREIGN = Path(__file__).parents[1] / "fixtures" / "foreign"
BIG = 10_000_000
MANY = 200_000


# -- small terminals --------------------------------------------------------------------------


async def test_at_80x24_the_panes_are_tabs_and_the_graph_loads(
    small_store: tuple[Store, str],
) -> None:
    store, run_id = small_store
    app = AgentraceApp(store, run_id=run_id)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, RunScreen) and screen.tabbed
        # The footer has no room for `?` here: the tabs line tells it, whole.
        assert "tab: next · ?: help" in screen_text(app)
        waterfall = screen.query_one("#waterfall")
        assert waterfall.display and waterfall.size.height >= 15
        assert not screen.query_one("#state").display
        # The slower loads do not wait for a pane that is not shown.
        graph = screen.query_one(CoordinationGraph)
        assert graph.data is not None and graph.data.layout is not None
        await pilot.press("1")
        assert graph.display and graph.size.height >= 15 and not waterfall.display
        await pilot.press("tab")
        assert screen.active == "waterfall" and waterfall.has_focus

        await pilot.resize_terminal(160, 48)
        await settle(app, pilot)
        assert not screen.tabbed
        for pane in ("graph", "waterfall", "state", "findings", "span"):
            widget = screen.query_one(f"#{pane}")
            assert widget.display and widget.size.height >= 5, pane
        await pilot.resize_terminal(100, 30)
        await settle(app, pilot)
        assert screen.tabbed and screen.query_one(f"#{screen.active}").size.height >= 15


def test_the_runs_list_drops_columns_by_priority() -> None:
    narrow = [c.key for c in columns_for(78)]
    assert narrow[:2] == ["run", "workflow"]
    assert {"status", "findings"} <= set(narrow) and "agents" not in narrow
    assert sum(c.width for c in columns_for(78)) <= 78
    wide = [c.key for c in columns_for(200)]
    assert {"scenario", "kinds", "spans", "versions", "agents", "pattern"} <= set(wide)


async def test_help_wraps_and_pages_at_80x24(small_store: tuple[Store, str]) -> None:
    store, run_id = small_store
    app = AgentraceApp(store, run_id=run_id)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        await settle(app, pilot)
        assert isinstance(app.screen, HelpScreen)
        view = app.screen.query_one(LineView)
        assert view.size.width <= 80 and all(ln.width <= view.size.width for ln in view.lines)
        assert len(view.lines) > view.size.height
        await pilot.press("pagedown")
        await settle(app, pilot)
        assert view.scroll_offset.y > 0


# -- hostile spans ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One run: a span with a 10 MB value, one with 200,000 attributes."""
    store = Store(Path(tmp_path_factory.mktemp("hostile")) / "h.duckdb")
    req = ExportTraceServiceRequest()
    spans = req.resource_spans.add().scope_spans.add().spans
    big = {"big.value": "x" * BIG, "gen_ai.input.messages": "[" * 5 + "oops"}
    many = {f"attr.{j:07d}": j for j in range(MANY)}
    for i, attrs in enumerate([big, many]):
        sp = spans.add()
        sp.trace_id, sp.span_id = bytes(range(16)), bytes([1, 2, 3, 4, 5, 6, 7, i + 1])
        sp.name = f"hostile {i}"
        sp.start_time_unix_nano = 1_700_000_000_000_000_000 + i
        sp.end_time_unix_nano = sp.start_time_unix_nano + 1_000
        fill_attrs(sp.attributes, attrs)
    store.ingest([req], source="test")
    yield store, store.runs()[0].run_id
    store.close()


async def _open_span(app: AgentraceApp, pilot: Any, span_id: str) -> SpanDetail:
    await settle(app, pilot)
    detail = app.screen.query_one(SpanDetail)
    detail.show(span_id)
    await settle(
        app, pilot, until=lambda: detail.view is not None and detail.view.span.span_id == span_id
    )
    return detail


async def test_the_waterfall_reads_a_10_mb_span_within_the_debuggers_memory_cap(
    hostile_store: Any,
) -> None:
    """The waterfall's page of facts (kind, model, tokens) is read out of the attributes
    by DuckDB under the cap the debugger sets: a 10 MB value must not run it out of
    memory and leave its row loading for ever."""
    from tui.app import DEFAULT_MEMORY_MB
    from tui.widgets.waterfall import Waterfall

    store, run_id = hostile_store
    store.sql(f"SET memory_limit = '{DEFAULT_MEMORY_MB}MB'")
    try:
        app = AgentraceApp(store, run_id=run_id)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(app, pilot)
            waterfall = app.screen.query_one(Waterfall)
            await settle(app, pilot, until=lambda: waterfall.pages_fetched > 0)
            assert {"0102030405060701", "0102030405060702"} <= set(waterfall._spans)
            assert "hostile 0" in screen_text(app)
    finally:
        store.sql("RESET memory_limit")


async def test_a_10_mb_value_is_cut_and_shown_whole_on_request(hostile_store: Any) -> None:
    store, run_id = hostile_store
    app = AgentraceApp(store, run_id=run_id)
    async with app.run_test(size=(160, 48)) as pilot:
        detail = await _open_span(app, pilot, "0102030405060701")
        assert len(detail.lines) < 100
        assert max(ln.width for ln in detail.lines) <= detail.size.width
        assert not detail.move_to_key(("more", 0))
        texts = ["".join(t for t, _ in ln.runs) for ln in detail.lines]
        cut = next(i for i, t in enumerate(texts) if "characters in all" in t)
        assert "10,000,000 characters" in texts[cut] and detail.lines[cut].key[0] == "text"
        detail.focus()
        detail.cursor = cut
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, TextScreen)
        view = app.screen.query_one(TextView)
        width = view.scrollable_content_region.width
        assert view.rows == -(-BIG // width)
        await pilot.press("end")
        await settle(app, pilot)
        assert view.row_text(view.rows - 1) == "x" * (BIG - (view.rows - 1) * width)
        await pilot.press("escape")
        assert isinstance(app.screen, RunScreen)


async def test_a_span_with_many_attributes_shows_a_page_of_them(hostile_store: Any) -> None:
    store, run_id = hostile_store
    app = AgentraceApp(store, run_id=run_id)
    async with app.run_test(size=(160, 48)) as pilot:
        detail = await _open_span(app, pilot, "0102030405060702")
        view = detail.view
        assert view is not None and view.total_attrs == MANY and len(view.attrs) == 500
        assert [k for k, _ in view.attrs[:2]] == ["attr.0000000", "attr.0000001"]
        assert len(detail.lines) < 1_000
        detail.focus()
        assert detail.move_to_key(("more", 1_000))
        await pilot.press("enter")
        await settle(app, pilot, until=lambda: len(detail.view.attrs) == 1_000)  # type: ignore[union-attr]
        await pilot.press("q")
        await settle(app, pilot, until=lambda: not app.is_running)


# -- conversations ----------------------------------------------------------------------------


def _spans(tmp_path: Path, name: str) -> list[Any]:
    store = Store(tmp_path / "f.duckdb")
    import_file(store, FOREIGN / name)
    out = [s for r in store.runs() for s in store.spans(r.run_id)]
    store.close()
    return out


def test_pydantic_ai_chat_reads_as_a_conversation(tmp_path: Path) -> None:
    spans = _spans(tmp_path, "pydantic_ai.jsonl")
    chat = next(s for s in spans if s.name == "chat scripted-coordinator")
    conv = conversation(chat.attributes)
    assert conv is not None
    assert conv.system == ("You coordinate. Delegate research questions to the researcher.",)
    assert conv.tools == ("ask_researcher",)
    assert next((m.role, m.content) for m in conv.input) == (
        "user",
        "Explain OpenTelemetry in one line.",
    )
    calls = [c for m in conv.output for c in m.tool_calls]
    assert calls and calls[0].name == "ask_researcher"
    assert calls[0].arguments == {"question": "What is OpenTelemetry?"}
    assert span_tokens(chat.attributes) == (56, 7)
    assert span_model(chat.attributes) == "scripted-coordinator"
    assert span_kind(chat.attributes) == "llm"
    tool = next(s for s in spans if s.name == "execute_tool ask_researcher")
    tconv = conversation(tool.attributes)
    assert tconv is not None and tconv.tool_call is not None
    assert tconv.tool_result == "OpenTelemetry defines traces, metrics and logs."
    # An agent span's aggregated usage is not a model call of its own.
    agent = next(s for s in spans if s.name == "invoke_agent coordinator")
    assert span_tokens(agent.attributes) is None and span_kind(agent.attributes) == "agent"


def test_openinference_messages_read_in_order(tmp_path: Path) -> None:
    spans = _spans(tmp_path, "langgraph_openinference.jsonl")
    llm = next(s for s in spans if s.attributes.get("llm.model_name") == "fake-supervisor")
    conv = conversation(llm.attributes)
    assert conv is not None
    assert conv.system[0].startswith("You are a supervisor")
    assert [m.role for m in conv.input] == ["user"]
    assert [m.content for m in conv.output] == ["researcher"]
    assert span_tokens(llm.attributes) == (42, 1)

    spans = _spans(tmp_path / "..", "openai_agents.jsonl")
    response = next(s for s in spans if s.name == "response" and "transfer" in str(s.attributes))
    conv = conversation(response.attributes)
    assert conv is not None
    assert conv.output[0].tool_calls[0].name == "transfer_to_billing_agent"
    assert "transfer_to_billing_agent" in conv.tools


async def test_the_span_pane_shows_the_chat(tmp_path: Path) -> None:
    store = Store(tmp_path / "p.duckdb")
    import_file(store, FOREIGN / "pydantic_ai.jsonl")
    run_id = store.runs()[0].run_id
    chat = next(s for s in store.spans(run_id) if s.name == "chat scripted-coordinator")
    app = AgentraceApp(store, run_id=run_id)
    async with app.run_test(size=(120, 40)) as pilot:
        detail = await _open_span(app, pilot, chat.span_id)
        text = "\n".join("".join(t for t, _ in ln.runs) for ln in detail.lines)
        assert "conversation" in text and "Explain OpenTelemetry in one line." in text
        assert "→ ask_researcher" in text and "56 in · 7 out" in text
        # JSON values fold: the tool definitions start open (short), Enter folds them.
        key = ("fold", "gen_ai.tool.definitions", "")
        detail.focus()
        assert detail.move_to_key(key)
        before = len(detail.lines)
        await pilot.press("enter")
        assert len(detail.lines) < before
    store.close()


def test_a_stale_read_run_is_not_an_llm_run(small_store: tuple[Store, str]) -> None:
    store, run_id = small_store
    assert stale_read_run is not None
    for s in store.spans(run_id):
        assert conversation(s.attributes) is None


# -- the span pane, copy, screenshots ---------------------------------------------------------


async def test_the_span_pane_follows_the_stepper(small_store: tuple[Store, str]) -> None:
    store, run_id = small_store
    versions = {v.version: v.span_id for v in store.state_versions(run_id)}
    app = AgentraceApp(store, run_id=run_id)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, RunScreen)
        detail = screen.query_one(SpanDetail)
        await pilot.press("left_square_bracket")
        await settle(app, pilot)
        assert detail.view is not None
        assert detail.view.span.span_id == versions[screen.version]
        await pilot.press("left_square_bracket")
        await settle(app, pilot)
        assert detail.view.span.span_id == versions[screen.version]


async def test_copy_goes_to_the_clipboard_or_a_file(
    small_store: tuple[Store, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, run_id = small_store
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TERM", "xterm-256color")
    app = AgentraceApp(store, run_id=run_id)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("c")  # in the waterfall: the span id
        wf_span = app.screen.query_one(SpanDetail).view
        assert wf_span is not None and app.clipboard == wf_span.span.span_id
        assert not list(tmp_path.glob("agentrace-copy-*"))
        big = "y" * 200_000
        app.copy_text(big, "a value")
        (written,) = tmp_path.glob("agentrace-copy-*.txt")
        assert written.read_text() == big and app.clipboard != big

        await pilot.press("ctrl+s")
        (svg,) = tmp_path.glob("*.svg")
        assert "<svg" in svg.read_text()[:200]


# -- the waterfall: kind, model, tokens, filter, axis -----------------------------------------


def test_round_ticks_and_the_filtered_tree() -> None:
    import pyarrow as pa

    from tui._data import filtered_tree
    from tui._waterfall_model import axis_ticks, nice_step

    assert nice_step(620_000_000, 60) == 200_000_000
    ticks = axis_ticks(0, 620_000_000, 60)
    assert [label for _, label in ticks] == ["0 ns", "200.0 ms", "400.0 ms", "600.0 ms"]
    assert [x for x, _ in ticks] == [0, 19, 38, 58]
    # root > a > (a1, a2), root > b > b1: keep a2 and b1 with their ancestors.
    tree = pa.table(
        {
            "span_id": ["r", "a", "a1", "a2", "b", "b1"],
            "depth": pa.array([0, 1, 2, 2, 1, 2], pa.int32()),
            "descendants": pa.array([5, 2, 0, 0, 1, 0], pa.int64()),
        }
    )
    cut = filtered_tree(tree, [3, 5]).to_pylist()
    assert [(r["span_id"], r["depth"], r["descendants"]) for r in cut] == [
        ("r", 0, 4), ("a", 1, 1), ("a2", 2, 0), ("b", 1, 1), ("b1", 2, 0),
    ]  # fmt: skip


async def test_the_waterfall_shows_kinds_models_tokens_and_filters(tmp_path: Path) -> None:
    from tui._data import run_tokens
    from tui.widgets.waterfall import Waterfall

    store = Store(tmp_path / "lg.duckdb")
    import_file(store, FOREIGN / "langgraph_openinference.jsonl")
    run_id = store.runs()[0].run_id
    tokens = run_tokens(store, [run_id])[run_id]
    llm = [s for s in store.spans(run_id) if s.attributes.get("openinference.span.kind") == "LLM"]
    assert tokens.input == sum(int(s.attributes["llm.token_count.prompt"]) for s in llm) > 0
    assert sum(i for i, _ in tokens.by_model.values()) == tokens.input
    app = AgentraceApp(store, run_id=run_id)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(app, pilot)
        await pilot.press("2", "z")
        await settle(app, pilot)
        text = screen_text(app)
        assert "llm" in text and "fake-supervisor" in text and "in/out" in text
        wf = app.screen.query_one(Waterfall)
        total = wf.rows.visible if wf.rows else 0
        wf.set_filter("kind:llm")
        await settle(app, pilot)
        assert wf.rows is not None and len(llm) < wf.rows.visible < total
        names = {s.span_id: s for s in store.spans(run_id)}
        shown = {wf.rows.span_id(p) for p in range(wf.rows.total)}
        assert {s.span_id for s in llm} <= shown
        # Every span shown is an LLM span or the ancestor of one.
        context: set[str] = set()
        for s in llm:
            p = s.parent_span_id
            while p in names:
                context.add(p)
                p = names[p].parent_span_id
        assert shown == {s.span_id for s in llm} | context
        wf.set_filter("")
        await settle(app, pilot)
        assert wf.rows.visible == total
    store.close()


# -- tokens and cost --------------------------------------------------------------------------


def test_prices_from_a_toml_file(tmp_path: Path) -> None:
    from tui._prices import PriceError, load_prices

    assert load_prices(tmp_path / "none.toml") is None
    path = tmp_path / "prices.toml"
    path.write_text(
        '[models."fake-supervisor"]\ninput = 1.0\noutput = 2.0\n'
        '[models."fake-*"]\ninput = 10.0\noutput = 20.0\n'
    )
    prices = load_prices(path)
    assert prices is not None
    assert prices.price_of("fake-supervisor") == (1.0, 2.0)
    assert prices.price_of("fake-writer") == (10.0, 20.0) and prices.price_of("gpt") is None
    usd, unpriced = prices.cost({"fake-supervisor": (1_000_000, 500_000), "gpt": (7, 3)})
    assert usd == pytest.approx(2.0) and unpriced == 10
    path.write_text('[models."x"]\ninput = "cheap"\n')
    with pytest.raises(PriceError, match=r"prices\.toml: models\.x"):
        load_prices(path)


def test_runs_json_reports_tokens(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from tui.cli import cli

    db = tmp_path / "p.duckdb"
    with Store(db) as store:
        import_file(store, FOREIGN / "pydantic_ai.jsonl")
    out = CliRunner().invoke(cli, ["runs", "--db", str(db), "--json"])
    assert out.exit_code == 0, out.output
    (run,) = json.loads(out.output)
    # The two chat calls of each agent; the agents' aggregated usage is not added again.
    assert run["tokens"] == {"input": 229, "output": 42}


async def test_the_run_header_shows_tokens_and_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."scripted-coordinator"]\ninput = 1000.0\noutput = 1000.0\n')
    monkeypatch.setenv("AGENTRACE_PRICES", str(prices))
    store = Store(tmp_path / "p.duckdb")
    import_file(store, FOREIGN / "pydantic_ai.jsonl")
    app = AgentraceApp(store, run_id=store.runs()[0].run_id)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(app, pilot)
        header = screen_text(app).splitlines()[0]
        # 119 + 25 tokens of the coordinator's model at $1000 a million; the researcher's unpriced.
        assert "229 in/42 out tokens" in header and "$0.1440 (+127 unpriced)" in header
    store.close()


# -- the graph: pick an agent, focus on it, filter the waterfall ------------------------------


async def test_picking_an_agent_focuses_the_graph_and_filters_the_waterfall(
    scenario_store: Any,
) -> None:
    from tui.widgets.waterfall import Waterfall

    store, runs = scenario_store
    run_id = runs["trading-saga"][0]
    app = AgentraceApp(store, run_id=run_id)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(app, pilot)
        graph = app.screen.query_one(CoordinationGraph)
        full = graph.data
        assert full is not None and full.graph is not None
        await pilot.press("1", "a")
        agent = graph.selected
        assert agent is not None and full.graph.nodes[agent].get("kind") != "topic"
        await pilot.press("o")
        assert graph.focused_on == agent and graph.data is not None
        focus = graph.data.graph
        assert agent in focus and focus.number_of_nodes() <= full.graph.number_of_nodes()
        assert all(agent in (u, v) or focus.nodes[u].get("kind") == "topic"
                   or focus.nodes[v].get("kind") == "topic" for u, v in focus.edges())  # fmt: skip
        await pilot.press("o")
        assert graph.focused_on is None and graph.data is full
        await pilot.press("enter")
        await settle(app, pilot)
        wf = app.screen.query_one(Waterfall)
        assert wf.filter_text.startswith("agent:") and wf.rows is not None
        agents = {s.span_id: s.agent for s in store.spans(run_id)}
        shown = [wf.rows.span_id(p) for p in range(wf.rows.total)]
        assert any(agents[sid] == agent for sid in shown)
        assert wf.rows.total < len(agents)


# -- compare ----------------------------------------------------------------------------------


async def test_two_runs_side_by_side_at_their_first_divergence(scenario_store: Any) -> None:
    from engine import diff_runs
    from tui.screens.compare import CompareScreen
    from tui.screens.runs import RunsScreen
    from tui.widgets.runs_table import RunsTable

    store, runs = scenario_store
    a, b = runs["credit"][:2]
    expected = diff_runs(store, a, b)
    first = expected.first_changed_version
    assert first is not None
    app = AgentraceApp(store)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        table = screen.query_one(RunsTable)
        table.move_cursor(row=[r.run_id for r in table.shown].index(a))
        await pilot.press("m")
        assert app.marked_run == a
        table.move_cursor(row=[r.run_id for r in table.shown].index(b))
        await pilot.press("C")
        await settle(app, pilot)
        compare = app.screen
        assert isinstance(compare, CompareScreen) and compare.version == first.version
        left = compare.query_one("#compare-a", LineView)
        right = compare.query_one("#compare-b", LineView)
        marked = [ln for ln in left.lines if ln.runs and ln.runs[0][1] == "changed"]
        assert marked and len(marked) == len(
            [ln for ln in right.lines if ln.runs and ln.runs[0][1] == "changed"]
        )
        assert a[:12] in str(left.border_title) and b[:12] in str(right.border_title)
        steps = compare.query_one("#compare-steps", LineView)
        if any(s.status != "same" for s in expected.steps):
            assert any(ln.key for ln in steps.lines)
            await pilot.press("end", "enter")
            await settle(app, pilot)
            assert isinstance(app.screen, RunScreen)


def test_topics_fold_into_agent_edges(story_store: Any) -> None:
    from tui._data import load_graph

    store, runs = story_store
    data = load_graph(store, runs["hybrid"])
    assert data.compact is not None and data.layout is not None
    full, folded = data.graph, data.compact.graph
    topics = {n for n, k in full.nodes(data="kind") if k == "topic"}
    kept = {n for n, k in folded.nodes(data="kind") if k == "topic"}
    # A topic stays only when nobody wrote it or nobody read it.
    assert kept < topics
    assert all(not full.in_edges(t) or not full.out_edges(t) for t in kept)
    spans = {s for _, _, d in full.edges(data=True) for s in d.get("span_ids") or ()}
    assert {s for _, _, d in folded.edges(data=True) for s in d.get("span_ids") or ()} == spans
    assert data.compact.layout is not None and data.compact.layout.width < data.layout.width
    # Deliveries are counted from the publishers that published: one that only declared a
    # topic (shipping never sent checkout.compensate) gets an unused edge, not a delivery.
    delivered = sum(
        d["count"] for t, _, d in full.edges(data=True) if t in topics and full.in_edges(t)
    )
    observed = {(u, v): d for u, v, d in folded.edges(data=True) if d.get("kind") == "deliver"}
    assert not observed[("shipping", "checkout")]["observed"]
    assert observed[("shipping", "checkout")]["count"] == 0
    assert observed[("inventory", "checkout")]["count"] == 1
    assert sum(d["count"] for d in observed.values()) == delivered


def test_a_sagas_compensations_are_their_own_kind_and_filter(tmp_path: Path) -> None:
    from tui._data import filter_spans

    store = Store(tmp_path / "saga.duckdb")
    import_file(store, Path(__file__).parents[2] / "sample_traces" / "choreo-saga.jsonl")
    run_id = next(r.run_id for r in store.runs() if r.status == "compensated")
    spans = store.spans(run_id)
    undo = {s.span_id for s in spans if s.name.startswith("compensate ")}
    assert undo and all(span_kind(s.attributes) == "undo" for s in spans if s.span_id in undo)
    assert set(filter_spans(store, run_id, "kind:undo")) == undo


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_the_hybrid_graph_fits_a_small_terminal_and_keeps_counts_on_a_large_one(
    story_store: Any, size: tuple[int, int]
) -> None:
    store, runs = story_store
    app = AgentraceApp(store, run_id=runs["hybrid"], theme="agentrace-dark")
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        await pilot.press("1", "z")
        await settle(app, pilot)
        graph = app.screen.query_one(CoordinationGraph)
        pic = graph.picture
        assert pic is not None
        agents = {"checkout", "inventory", "shipping", "payment"}
        assert agents <= set(pic.boxes)
        text = pic.text()
        if size == (80, 24):
            # Narrowed: everything in view, outcome marks kept, counts dropped.
            assert pic.width <= graph.scrollable_content_region.width
            assert "↯✗" in text and "×1" not in text
        else:
            assert "×2" in text and "unused" in text  # the whole story, counts and all
        await pilot.resize_terminal(*((160, 48) if size == (80, 24) else (80, 24)))
        await settle(app, pilot)
        assert graph.picture is not None
        assert ("×1" in graph.picture.text()) is (size == (80, 24))  # redrawn for the new size
