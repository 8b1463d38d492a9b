"""``F`` on a run: fork it at the version the stepper is on, and open the fork.

The fork is the engine's (``Replayer.fork``), run in a thread worker; a store opened
read-only, a LangGraph run, a run that names no workflow and a fork that raises each
get one line saying what works instead. No sleeps: ``settle`` waits for the workers
and for their messages.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from textual.message import Message
from textual.notifications import Notify

from tracer import Store
from tracer import conventions as c
from tracer.testing import RunBuilder
from tui.app import AgentraceApp
from tui.cli import cli
from tui.messages import OpenRun
from tui.screens.run import RunScreen
from tui.screens.runs import RunsScreen

from .helpers import load_scenarios, screen_text, settle

SIZE = (120, 40)


class Notes:
    """The app's notifications, as the user reads them (the ``message_hook`` of ``run_test``)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, message: Message) -> None:
        if isinstance(message, Notify):
            self.seen.append((message.notification.severity, message.notification.message))

    def texts(self, severity: str | None = None) -> list[str]:
        return [text for sev, text in self.seen if severity is None or sev == severity]


def _credit_store(path: Path) -> str:
    """A store holding the bundled credit runs (workflow ``agentrace.credit``); one run id."""
    with Store(path) as store:
        return load_scenarios(store, ["credit"])["credit"][0]


async def _open_at(app: AgentraceApp, pilot: Any, run_id: str, version: int) -> RunScreen:
    """Open ``run_id`` from the runs screen and step the stepper back to ``version``."""
    await settle(app, pilot)
    app.post_message(OpenRun(run_id))
    await settle(app, pilot, until=lambda: isinstance(app.screen, RunScreen))
    await settle(app, pilot)
    screen = app.screen
    assert isinstance(screen, RunScreen) and screen.meta is not None
    for _ in range(screen.meta.last_version - version):
        await pilot.press("left_square_bracket")
    assert screen.version == version
    return screen


async def _opened_fork(app: AgentraceApp, pilot: Any, original: RunScreen) -> RunScreen:
    """The run screen the fork opened, once it replaced ``original`` and loaded."""
    await settle(
        app, pilot, until=lambda: isinstance(app.screen, RunScreen) and app.screen is not original
    )
    await settle(app, pilot)
    fork = app.screen
    assert isinstance(fork, RunScreen)
    return fork


async def test_F_forks_the_run_at_the_version_shown_and_opens_the_fork(tmp_path: Path) -> None:
    # `agentrace tui --listen` opens the store for writing: the fork is written into it.
    db = tmp_path / "live.duckdb"
    run = _credit_store(db)
    notes = Notes()
    app = AgentraceApp(db, listen=0)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        original = await _open_at(app, pilot, run, 3)
        await pilot.press("F")
        fork = await _opened_fork(app, pilot, original)
        assert fork.meta is not None
        assert fork.run_id != run and fork.meta.run.run_id == fork.run_id
        # The runs row says what it is: a fork of the original, at the version shown.
        row = app.store.run(fork.run_id)
        assert row.parent_run_id == run
        assert row.attributes[c.RUN_FORK_VERSION] == 3
        assert row.workflow_ref == "agentrace.credit"
        assert row.analysed  # live mode analyses what arrives, the fork too
        # Replayed up to v3 (the same hash chain), live after it.
        hashes = {v.version: v.hash for v in app.store.state_versions(run)}
        forked = {v.version: v.hash for v in app.store.state_versions(fork.run_id)}
        assert [forked[k] for k in (1, 2, 3)] == [hashes[k] for k in (1, 2, 3)]
        assert f"fork of {run[:8]} at v3" in screen_text(app)
        assert (
            f"forked run {run[:12]} at v3: new run {fork.run_id[:12]} (completed)" in notes.texts()
        )
        # Back on the runs screen, the fork is listed.
        await pilot.press("escape")
        await settle(app, pilot)
        runs = app.screen
        assert isinstance(runs, RunsScreen)
        assert fork.run_id in {r.run_id for r in runs.runs}
        assert notes.texts("error") == [] and notes.texts("warning") == []


async def test_a_read_only_store_says_the_command_that_forks_and_writes_nothing(
    tmp_path: Path,
) -> None:
    # Plain `agentrace tui` opens the store read-only.
    db = tmp_path / "read-only.duckdb"
    run = _credit_store(db)
    with Store(db, read_only=True) as store:
        before = [r.run_id for r in store.runs()]
    notes = Notes()
    app = AgentraceApp(db)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        screen = await _open_at(app, pilot, run, 4)
        await pilot.press("F")
        await settle(app, pilot)
        assert app.screen is screen  # nothing opened
    (said,) = notes.texts("warning")
    assert said.startswith("the store is open read-only: quit, then fork with agentrace replay ")
    assert "agentrace tui --listen PORT" in said
    assert "\n" not in said
    with Store(db, read_only=True) as store:
        assert [r.run_id for r in store.runs()] == before
    # The command it gives, once the debugger has quit, forks the run at that version.
    command = said.split("fork with ", 1)[1].split(";", 1)[0]
    argv = shlex.split(command)
    assert argv[:2] == ["agentrace", "replay"] and argv[argv.index("--from-version") + 1] == "4"
    result = CliRunner().invoke(cli, argv[1:])
    assert result.exit_code == 0, result.output
    with Store(db, read_only=True) as store:
        (new,) = [r for r in store.runs() if r.run_id not in before]
        assert new.parent_run_id == run and new.attributes[c.RUN_FORK_VERSION] == 4


async def test_a_langgraph_run_is_forked_from_the_command_line(
    claims_store: tuple[Store, dict[str, str]],
) -> None:
    store, runs = claims_store
    before = len(store.runs())
    notes = Notes()
    app = AgentraceApp(store, run_id=runs["claim-1"])
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, RunScreen) and screen.version == 5
        await pilot.press("left_square_bracket", "F")
        await settle(app, pilot)
        assert app.screen is screen
    (said,) = notes.texts("warning")
    assert said.startswith("a LangGraph run forks with its own graph, from the command line: ")
    assert f"agentrace replay {runs['claim-1'][:12]} --graph MODULE:ATTR --from-version 4" in said
    assert "engine.replay_graph" in said
    assert len(store.runs()) == before


async def test_a_run_naming_no_workflow_says_how_to_give_one(
    small_store: tuple[Store, str],
) -> None:
    store, run = small_store
    notes = Notes()
    app = AgentraceApp(store, run_id=run)
    async with app.run_test(size=SIZE, message_hook=notes) as pilot:
        await settle(app, pilot)
        await pilot.press("F")
        await settle(app, pilot)
    (said,) = notes.texts("warning")
    assert said.startswith(
        f"run {run[:12]} records no registered workflow to fork with: give one: "
    )
    assert f"agentrace replay {run[:12]} --workflow MODULE:FACTORY --from-version 4" in said
    assert [r.run_id for r in store.runs()] == [run]


async def test_a_fork_that_raises_is_one_line_and_the_run_stays_open(tmp_path: Path) -> None:
    # A run naming a workflow nobody registered: the replayer raises before it records anything.
    store = Store(tmp_path / "unregistered.duckdb")
    try:
        with RunBuilder(store, workflow="loans", initial={"n": 0}) as built:
            built.root.set_attribute(c.RUN_WORKFLOW_REF, "myapp.loans\x1b[2J")
            with built.step("a") as s:
                s.commit({"n": 1})
            with built.step("b") as s:
                s.commit({"n": 2})
        run = built.run_id
        notes = Notes()
        app = AgentraceApp(store, run_id=run)
        async with app.run_test(size=SIZE, message_hook=notes) as pilot:
            await settle(app, pilot)
            screen = app.screen
            await pilot.press("left_square_bracket", "F")
            await settle(app, pilot)
            assert app.screen is screen
        (said,) = notes.texts("error")
        assert said.startswith(f"cannot fork run {run[:12]} at v2: run {run} records workflow ")
        assert "register it" in said and "--workflow MODULE:FACTORY" in said
        assert "\x1b" not in said and "\n" not in said and "Traceback" not in said
        assert [r.run_id for r in store.runs()] == [run]
    finally:
        store.close()


async def test_the_palette_forks_too_and_the_runs_list_shows_the_fork(tmp_path: Path) -> None:
    # A store handed in open for writing (not live): the app itself refreshes the runs list.
    from tui.screens.help import KEYS

    assert any(key == "F" and "fork" in what for _, keys in KEYS for key, what in keys)
    store = Store(tmp_path / "handed-in.duckdb")
    try:
        run = load_scenarios(store, ["credit"])["credit"][0]
        app = AgentraceApp(store)
        async with app.run_test(size=SIZE) as pilot:
            original = await _open_at(app, pilot, run, 2)
            await pilot.press("ctrl+p", *"fork this")
            await settle(app, pilot)
            await pilot.press("enter")
            fork = await _opened_fork(app, pilot, original)
            assert fork.run_id != run
            assert store.run(fork.run_id).attributes[c.RUN_FORK_VERSION] == 2
            await pilot.press("escape")
            await settle(app, pilot)
            runs = app.screen
            assert isinstance(runs, RunsScreen)
            assert fork.run_id in {r.run_id for r in runs.runs}
    finally:
        store.close()


def test_a_fork_error_is_one_printable_line_that_keeps_what_to_do() -> None:
    from engine.running import ReplayError
    from tui._fork import fork_failure

    run = "ab" * 16
    said = fork_failure(run, 3, ValueError("bad \x1b[2J\u202evalue\nsecond line"))
    assert said.startswith(f"cannot fork run {run[:12]} at v3: ValueError: bad ")
    assert said.endswith("value") and "second line" not in said
    assert "\x1b" not in said and "\u202e" not in said
    # A long error keeps its start and its end (the engine's say what to do there).
    long = ReplayError(
        "run x records workflow 'w': not registered (have: " + "a, " * 300 + "z); do this"
    )
    said = fork_failure(run, 3, long)
    assert said.startswith(f"cannot fork run {run[:12]} at v3: run x records workflow 'w'")
    assert said.endswith("z); do this") and len(said) < 400
    assert not fork_failure(run, 3, KeyError()).endswith(": ")
