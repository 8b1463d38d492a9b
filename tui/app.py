"""The agentrace debugger: a Textual app over a store.

``AgentraceApp(store)`` shows the runs screen, or a run's screen when given
``run_id``. With ``listen`` it hosts the OTLP/HTTP receiver in its own event loop
and opens the store for writing: DuckDB allows one writing process, so a live
view must read through the process that writes. New spans reach the screens as
:class:`~tui.messages.StoreChanged` messages, posted from the ingesting thread
(``post_message`` is thread-safe) and coalesced while they flood in.

Errors raised in thread workers come back through one ``Worker.StateChanged``
handler and are shown as notifications (as text, never as markup).

``F`` on a run forks it at the version shown (:meth:`AgentraceApp.fork_run`): the
engine's :class:`~engine.running.Replayer` runs in a thread worker, writing the new
run into the store, and its screen opens. Only a writable store takes it (``--listen``,
or a :class:`Store` opened for writing and handed in); otherwise the user is told, in
one line, the command that forks it (see ``tui._fork``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.theme import Theme
from textual.worker import Worker, WorkerState

from tracer import IngestResult, Store

from ._data import RunMeta
from ._fork import fork_failure, fork_refusal
from ._text import clip
from .messages import FindingsStored, ForkFailed, OpenRun, OpenText, RunForked, StoreChanged
from .palette import AgentraceCommands
from .screens.help import HelpScreen
from .screens.run import RunScreen
from .screens.runs import RunsScreen
from .screens.text import TextScreen

# Two themes with the same roles: colours chosen to keep their contrast on their own
# background (errors and successes are darker on the light one).
DARK = Theme(
    name="agentrace-dark", primary="#5FA8D3", secondary="#B48EAD", accent="#E5A84B",
    warning="#E5C07B", error="#F7768E", success="#9ECE6A", foreground="#D8DEE9",
    background="#15171C", surface="#1C1F26", panel="#262A33", dark=True,
)  # fmt: skip
LIGHT = Theme(
    name="agentrace-light", primary="#1F5F8B", secondary="#6B3FA0", accent="#A04E00",
    warning="#7A5A00", error="#B3122E", success="#1E6B24", foreground="#1B1D22",
    background="#FAFAF7", surface="#F1F1EC", panel="#E1E3DC", dark=False,
)  # fmt: skip


DEFAULT_MEMORY_MB = 160
OSC52_LIMIT = 74_000  # bytes of text: base64 makes it ~99 KB, under what terminals accept


def default_theme(env: dict[str, str] | None = None) -> str:
    """``AGENTRACE_THEME`` if set; else light when the terminal says its background is light."""
    env = dict(os.environ) if env is None else env
    chosen = env.get("AGENTRACE_THEME", "").strip().lower()
    if chosen in ("light", "dark"):
        return f"agentrace-{chosen}"
    if chosen:
        return chosen
    # COLORFGBG is "fg;bg" (rxvt, Konsole, iTerm2...): background 7 or 15 is a light one.
    bg = env.get("COLORFGBG", "").split(";")[-1]
    return "agentrace-light" if bg in ("7", "15") else "agentrace-dark"


class AgentraceApp(App[None]):
    """The debugger. Give it a :class:`Store` (kept open by the caller) or a path (opened here)."""

    CSS_PATH = "app.tcss"
    TITLE = "agentrace"
    COMMANDS: ClassVar = App.COMMANDS | {AgentraceCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Help"),
        Binding("ctrl+t", "toggle_theme", "Theme", show=False),
        Binding("ctrl+s", "screenshot", "Screenshot", show=False),
        Binding("q", "quit", "Quit"),
        # Quits even while a worker is busy (Textual's default only says how to quit).
        Binding("ctrl+c", "quit", "Quit", show=False),
    ]

    def __init__(
        self,
        store: Store | str | Path,
        *,
        run_id: str | None = None,
        listen: int | None = None,
        host: str = "127.0.0.1",
        token: str | None = None,
        theme: str | None = None,
        memory_mb: int | None = None,
    ) -> None:
        super().__init__()
        self._own_store = not isinstance(store, Store)
        self._spill_dir: str | None = None
        self._memory_mb = memory_mb
        self.store = store if isinstance(store, Store) else Store(store, read_only=listen is None)
        try:
            self.start_run = self.store.resolve_run(run_id) if run_id else None
        except BaseException:
            if self._own_store:
                self.store.close()
            raise
        self.listen = listen
        self.host = host
        self.token = token
        self.receiver: Any = None
        self._pending: set[str] = set()
        self._pending_lock = threading.Lock()
        self.ingested_spans = 0
        self.live_runs: set[str] = set()  # runs that received spans since the app started
        self.marked_run: str | None = None  # ``m``: the run the next ``C`` compares with
        self.register_theme(DARK)
        self.register_theme(LIGHT)
        self.theme = theme or default_theme()

    def _cap_memory(self, memory_mb: int | None) -> None:
        """Cap DuckDB's working memory in this process; bigger work spills to a private temp dir.

        Building the waterfall's tree of a million-span run takes DuckDB ~400 MB of working
        memory uncapped (0.9 s); capped at 160 MB it spills to disk and the process peaks
        ~350 MB (1.9 s). Runs of 100,000 spans stay under the cap and lose nothing.
        ``AGENTRACE_TUI_MEMORY_MB`` (or ``memory_mb``) sets the cap; 0 removes it.
        """
        if memory_mb is None:
            memory_mb = int(os.environ.get("AGENTRACE_TUI_MEMORY_MB") or DEFAULT_MEMORY_MB)
        if memory_mb <= 0:
            return
        self._spill_dir = tempfile.mkdtemp(prefix="agentrace-tui-")
        self.store.sql(f"SET temp_directory = '{self._spill_dir.replace(chr(39), chr(39) * 2)}'")
        self.store.sql(f"SET memory_limit = '{int(memory_mb)}MB'")

    # -- lifecycle -------------------------------------------------------------------------

    async def on_mount(self) -> None:
        if self._own_store:
            self._cap_memory(self._memory_mb)
        # Opened on a run, the runs screen is built only when the user goes back to it: the
        # run's first paint does not wait for it.
        if self.start_run is not None:
            await self.push_screen(RunScreen(self.store, self.start_run))
        else:
            await self.push_screen(RunsScreen(self.store))
        if self.listen is not None:
            await self._start_receiver()

    async def _start_receiver(self) -> None:
        from tracer import start_receiver

        assert self.listen is not None
        self.store.on_ingest(self._on_ingest)
        try:
            self.receiver = await start_receiver(self.store, self.host, self.listen, self.token)
        except OSError as exc:
            self.notify(
                f"cannot listen on {self.host}:{self.listen}: {exc}", severity="error", markup=False
            )
            return
        self.listen = int(self.receiver.port)  # the port bound (when asked for port 0)
        for screen in self.screen_stack:
            if isinstance(screen, RunsScreen):
                screen.reload()  # its title says where spans are received
        url = f"http://{self.host}:{self.listen}/v1/traces"
        self.sub_title = f"live on {url}"
        self.notify(f"receiving OTLP on {url}", markup=False)

    async def on_unmount(self) -> None:
        if self.receiver is not None:
            result = self.receiver.close()
            if hasattr(result, "__await__"):
                await result
        if self._own_store:
            self.store.close()
        if self._spill_dir is not None:
            shutil.rmtree(self._spill_dir, ignore_errors=True)

    # -- live updates ----------------------------------------------------------------------

    def _on_ingest(self, result: IngestResult, run_ids: frozenset[str]) -> None:
        # Called on the writing thread: only thread-safe calls here.
        with self._pending_lock:
            self._pending |= run_ids
            self.ingested_spans += result.spans
        self.post_message(StoreChanged())

    def on_store_changed(self, message: StoreChanged) -> None:
        with self._pending_lock:
            runs, self._pending = frozenset(self._pending), set()
        if not runs:
            return
        self.live_runs |= runs
        self._refresh_screens(runs, spans=True)
        self._analyze(runs)

    def _refresh_screens(self, runs: frozenset[str], *, spans: bool) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, RunsScreen):
                screen.reload()
            elif isinstance(screen, RunScreen):
                screen.store_changed(runs, spans=spans)

    @work(thread=True, group="analyze", exit_on_error=False, description="analyze")
    def _analyze(self, runs: frozenset[str]) -> None:
        """Live mode: find the coordination bugs of the runs that grew, and store them."""
        from tracer.analysis import analyze

        for run_id in sorted(runs):
            analyze(self.store, run_id)
        self.post_message(FindingsStored(runs))

    def on_findings_stored(self, message: FindingsStored) -> None:
        self._refresh_screens(message.run_ids, spans=False)

    # -- navigation ------------------------------------------------------------------------

    def on_open_run(self, message: OpenRun) -> None:
        try:
            run_id = self.store.resolve_run(message.run_id)
        except Exception as exc:  # shown to the user, not fatal
            self.notify(str(exc), severity="error", markup=False)
            return
        self.push_screen(RunScreen(self.store, run_id, span_id=message.span_id))

    def mark_run(self, run_id: str) -> None:
        self.marked_run = run_id
        self.notify(f"run {run_id[:12]} marked: C on another run compares them", markup=False)

    def compare_with_marked(self, run_id: str) -> None:
        """Two runs side by side at their first divergence: the marked one (A) and ``run_id``."""
        from .screens.compare import CompareScreen

        if self.marked_run is None or self.marked_run == run_id:
            self.notify("mark a run first (m), then press C on another", severity="warning")
            return
        self.push_screen(CompareScreen(self.store, self.marked_run, run_id))

    def fork_run(self, meta: RunMeta, version: int) -> None:
        """Fork ``meta``'s run at ``version`` in a thread worker, then open the new run; or say
        in one line why the debugger cannot, and the command that can."""
        run = meta.run
        refusal = fork_refusal(
            run, meta.versions, version, read_only=self.store.read_only, db=self.store.path
        )
        if refusal is not None:
            self.notify(refusal, severity="warning", timeout=12, markup=False)
            return
        if any(w.group == "fork" and w.is_running for w in self.workers):
            self.notify("a fork is running already: its run opens when it ends", severity="warning")
            return
        self.notify(f"forking run {run.run_id[:12]} at v{version}…", markup=False)
        self._fork(run.run_id, version)

    @work(thread=True, group="fork", exit_on_error=False, description="fork")
    def _fork(self, run_id: str, version: int) -> None:
        """Replay ``run_id`` up to ``version`` and run live from there, recorded into the store."""
        from engine.running import Replayer  # the engine loads only when a run is forked

        replayer = Replayer(self.store)
        try:
            # One transaction at the end, however many spans (the recorder alone writes every
            # 16,384), and so one StoreChanged in live mode.
            with replayer.batch():
                result = replayer.fork(run_id, version)
        except Exception as exc:  # said in one line (a ReplayError says what to do)
            self.post_message(ForkFailed(run_id, fork_failure(run_id, version, exc)))
            return
        self.post_message(RunForked(result))

    def on_run_forked(self, message: RunForked) -> None:
        r = message.result
        first = r.first_divergence
        how = f"diverged at {clip(first.summary(60), 80)}" if first is not None else r.status
        self.notify(
            f"forked run {r.parent_run_id[:12]} at v{r.fork_version}: new run {r.run_id[:12]} "
            f"({how})",
            severity="warning" if first is not None else "information",
            markup=False,
        )
        for screen in self.screen_stack:
            if isinstance(screen, RunsScreen):
                screen.reload()
        self.push_screen(RunScreen(self.store, r.run_id))

    def on_fork_failed(self, message: ForkFailed) -> None:
        self.notify(message.text, severity="error", timeout=12, markup=False)

    def on_open_text(self, message: OpenText) -> None:
        self.push_screen(TextScreen(message.title, message.text))

    def action_show_runs(self) -> None:
        """Back to the runs screen (popping every run screen above it)."""
        if not any(isinstance(s, RunsScreen) for s in self.screen_stack):
            self.switch_screen(RunsScreen(self.store))
            return
        while not isinstance(self.screen, RunsScreen):
            self.pop_screen()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        """Write an SVG of the screen into the current directory (the palette's command too)."""
        try:
            written = self.save_screenshot(filename, path or os.getcwd())
        except OSError as exc:
            self.notify(f"cannot write the screenshot: {exc}", severity="error", markup=False)
            return
        self.notify(f"screenshot written to {written}", markup=False)

    def copy_text(self, text: str, what: str) -> None:
        """Copy ``text``: to the terminal's clipboard (OSC 52) when it is small enough for
        terminals to take (xterm and tmux cap the sequence near 100 KB), else to a file in the
        current directory. Either way the user is told where it went."""
        if len(text.encode()) <= OSC52_LIMIT and os.environ.get("TERM") != "linux":
            self.copy_to_clipboard(text)
            self.notify(f"copied {what} to the clipboard", markup=False)
            return
        fd, name = tempfile.mkstemp(prefix="agentrace-copy-", suffix=".txt", dir=os.getcwd())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        self.notify(f"{what} is too big for the clipboard: written to {name}", markup=False)

    def action_toggle_theme(self) -> None:
        self.theme = "agentrace-light" if self.theme == "agentrace-dark" else "agentrace-dark"

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            err = event.worker.error
            self.notify(
                f"{type(err).__name__}: {err}", title="error", severity="error", markup=False
            )


def run_app(
    db_path: str | Path,
    run_id: str | None = None,
    listen: int | None = None,
    *,
    host: str = "127.0.0.1",
    token: str | None = None,
) -> None:
    """Open the debugger on the store at ``db_path`` (on run ``run_id``; live on port ``listen``)."""
    AgentraceApp(db_path, run_id=run_id, listen=listen, host=host, token=token).run()
