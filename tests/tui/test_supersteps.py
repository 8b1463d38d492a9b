"""A LangGraph run in the debugger steps by super-step: the version's step, the nodes that ran in
it side by side with their writes, the next nodes, and messages read as a conversation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tracer import Store
from tui._data import load_meta, load_state, load_superstep
from tui._llm import ChatMessage, ToolCall, langchain_messages
from tui.app import AgentraceApp
from tui.screens.run import RunScreen
from tui.widgets.state import StatePane

from .helpers import claims_runs, screen_text, settle


def _step_of(store: Store, run_id: str, version: int) -> Any:
    meta = load_meta(store, run_id)
    return load_superstep(store, run_id, meta.version(version))


def test_the_parallel_step_lists_both_nodes_their_writes_and_the_next(
    claims_store: tuple[Store, dict[str, str]],
) -> None:
    store, runs = claims_store
    ss = _step_of(store, runs["claim-1"], 4)
    assert ss.step == 2
    assert [n.node for n in ss.nodes] == ["damage_assessor", "fraud_check"]
    writes = {n.node: dict(n.update) for n in ss.nodes}
    assert writes["damage_assessor"]["reserve"] == 3500
    assert writes["fraud_check"]["reserve"] == 1500
    assert ss.next == ("settle",)
    last = _step_of(store, runs["claim-1"], 5)
    assert (last.step, [n.node for n in last.nodes], last.next) == (3, ["settle"], ())
    start = _step_of(store, runs["claim-1"], 2)
    assert (start.step, start.nodes, start.next) == (0, (), ("intake",))


def test_a_version_not_from_langgraph_has_no_step(small_store: tuple[Store, str]) -> None:
    store, run_id = small_store
    meta = load_meta(store, run_id)
    assert load_state(store, run_id, 2, None, meta).superstep is None


def test_langchain_messages_in_each_recorded_shape() -> None:
    decoded = {"__type__": "langchain_core.messages.human.HumanMessage", "type": "human",
               "content": "claim C-1", "id": "m-1"}  # fmt: skip
    serialized = {"type": "ai", "data": {"content": "", "type": "ai", "tool_calls": [
        {"name": "lookup", "args": {"id": "C-1"}, "id": "call-1"}]}}  # fmt: skip
    dumped = {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "ToolMessage"],
              "kwargs": {"content": "found", "tool_call_id": "call-1"}}  # fmt: skip
    assert langchain_messages([decoded, serialized, dumped]) == (
        ChatMessage("user", "claim C-1"),
        ChatMessage("assistant", "", (ToolCall("lookup", {"id": "C-1"}, "call-1"),)),
        ChatMessage("tool", "found", tool_call_id="call-1"),
    )
    # Anything else stays a value: a list that is not all messages, a bare map.
    assert langchain_messages([decoded, {"type": "human"}]) is None
    assert langchain_messages([{"role": "user", "content": "x"}]) is None
    assert langchain_messages(decoded) is None
    assert langchain_messages([]) is None


async def _at_version(app: AgentraceApp, pilot: Any, version: int) -> StatePane:
    await settle(app, pilot)
    screen = app.screen
    assert isinstance(screen, RunScreen)
    state = screen.query_one(StatePane)
    await pilot.press("3", "end")
    for _ in range((screen.version or 0) - version):
        await pilot.press("left")
        await settle(app, pilot)
    assert screen.version == version
    return state


async def test_stepping_to_the_parallel_version_shows_the_step_side_by_side(
    claims_store: tuple[Store, dict[str, str]],
) -> None:
    store, runs = claims_store
    app = AgentraceApp(store, run_id=runs["claim-1"])
    async with app.run_test(size=(160, 48)) as pilot:
        state = await _at_version(app, pilot, 4)
        await pilot.press("z")
        await settle(app, pilot)
        assert state.view is not None and state.view.superstep is not None
        assert state.view.superstep.step == 2
        text = screen_text(app)
        assert "step 2: damage_assessor ‖ fraud_check" in text
        assert "next: settle" in text
        # Side by side: both nodes' reserve writes on one line.
        row = next(ln for ln in text.splitlines() if "reserve: 3500" in ln)
        assert "reserve: 1500" in row
        # The assessor's message reads as a conversation, not LangChain's dict.
        assert "assistant" in text and "damage assessed: 2500" in text
        assert '"data"' not in text.split("── diff")[0]
        # The diff reads the same: the message as a message, each change by the nodes that
        # wrote its channel in the step, and the version by both.
        diff = " ".join(text.split("── diff")[1].split("── state")[0].split())
        assert "/messages/1assistant damage assessed: 2500 by damage_assessor v4" in diff
        assert "__type__" not in diff and "by - " not in diff
        assert "/fraud_score0.82 by fraud_check v4" in diff
        assert "commit by damage_assessor ‖ fraud_check" in " ".join(text.split())


async def test_a_narrow_pane_stacks_the_nodes_and_the_input_shows_what_runs_first(
    claims_store: tuple[Store, dict[str, str]],
) -> None:
    store, runs = claims_store
    app = AgentraceApp(store, run_id=runs["claim-2"])
    async with app.run_test(size=(80, 24)) as pilot:
        state = await _at_version(app, pilot, 4)
        assert "step 2: damage_assessor ‖ fraud_check" in screen_text(app)
        state.styles.width = 50  # narrower than two columns of writes
        await settle(app, pilot)
        rows = ["".join(t for t, _ in ln.runs) for ln in state.lines]
        # Stacked: each node's writes under its name, no column rule.
        assert not any("│" in r for r in rows)
        assert rows.index("   damage_assessor") < rows.index("   fraud_check")
        assert (
            "   reserve: 2800"
            in rows[rows.index("   damage_assessor") : rows.index("   fraud_check")]
        )
        await pilot.press("home")
        await settle(app, pilot)
        assert "── input   next: intake" in screen_text(app)
        await pilot.press("right")
        await settle(app, pilot)
        assert "step 0: input   next: intake" in screen_text(app)


async def test_from_the_checkpointer_alone_the_messages_read_as_a_conversation(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "c.duckdb")
    runs = claims_runs(store, trace=False)
    try:
        ss = _step_of(store, runs["claim-1"], 4)
        assert [n.node for n in ss.nodes] == ["damage_assessor", "fraud_check"]
        messages = dict(ss.nodes[0].update)["messages"]
        assert langchain_messages(messages) == (ChatMessage("assistant", "damage assessed: 2500"),)
    finally:
        store.close()


def test_stepping_reads_the_node_writes_once_per_load(
    claims_store: tuple[Store, dict[str, str]], monkeypatch: Any
) -> None:
    import tui._data as data

    store, runs = claims_store
    calls: list[str] = []
    real = data.langgraph_writes

    def counted(store: Store, run_id: str) -> Any:
        calls.append(run_id)
        return real(store, run_id)

    monkeypatch.setattr(data, "langgraph_writes", counted)
    meta = load_meta(store, runs["claim-1"])
    steps = [load_state(store, runs["claim-1"], k, None, meta).superstep for k in range(1, 6)]
    assert len(calls) == 1  # with the full load, not once per version
    assert [s.step if s else None for s in steps][-2:] == [2, 3]
