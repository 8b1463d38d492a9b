"""Command palette entries (ctrl+p): open a run, go to a version, jump to a finding, focus a pane.

Runs and findings carry strings from traces. The palette parses markup in a
``str`` prompt, and ``textual.markup.escape`` does not make every string safe
(an unclosed ``[link=https://…`` still fails to parse), so prompts are built as
``Content`` from the plain text, with the fuzzy match highlighted by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.fuzzy import Matcher

from ._text import clip

if TYPE_CHECKING:
    from .app import AgentraceApp


class AgentraceCommands(Provider):
    """Commands that depend on where the user is: the runs list, or a run's screen."""

    def _commands(self) -> list[tuple[str, Callable[[], Any], str]]:
        from .messages import OpenRun, VersionRequested
        from .screens.run import PANES, RunScreen
        from .screens.runs import RunsScreen

        app: AgentraceApp = self.app  # type: ignore[assignment]
        out: list[tuple[str, Callable[[], Any], str]] = []
        screen = self.screen  # the screen the palette was opened from (app.screen is the palette)
        runs_screen = next((s for s in app.screen_stack if isinstance(s, RunsScreen)), None)
        if isinstance(screen, RunScreen):
            for pane in PANES:
                out.append(
                    (f"Focus the {pane} pane", partial(screen.action_pane, pane), "move the focus")
                )
            meta = screen.meta
            if meta is not None:
                for f in meta.findings:
                    text = f"Finding: {f.kind} — {clip(f.message, 70)}"
                    out.append(
                        (
                            text,
                            partial(screen.select_finding, f),
                            "jump stepper, graph and waterfall",
                        )
                    )
                out.append(
                    (
                        "Go to the first version",
                        lambda: screen.post_message(VersionRequested(1)),
                        "state",
                    )
                )
                last = meta.last_version
                out.append(
                    (
                        "Go to the last version",
                        lambda: screen.post_message(VersionRequested(last)),
                        "state",
                    )
                )
            out.append(("Diff two versions…", screen.action_diff, "changes from A to B"))
            if meta is not None and meta.last_version:
                out.append(
                    (
                        f"Fork this run at v{screen.version}",
                        screen.action_fork,
                        "replayed up to the version, live after it (F)",
                    )
                )
            out.append(("Back to the runs", app.action_show_runs, "runs screen"))
        if runs_screen is not None:
            for r in runs_screen.runs[:500]:
                text = f"Open run {r.run_id[:12]} {clip(r.workflow or '', 30)} ({r.status or '-'})"
                out.append((text, partial(app.post_message, OpenRun(r.run_id)), "open this run"))
        out.append(
            (
                "Switch dark / light theme",
                app.action_toggle_theme,
                "agentrace-dark, agentrace-light",
            )
        )
        out.append(("Keys", app.action_help, "every key binding"))
        return out

    async def discover(self) -> Hits:
        for text, callback, help_text in self._commands():
            yield DiscoveryHit(Content(text), callback, text=text, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        stripped = query.strip().lower().lstrip("v")
        from .screens.run import RunScreen

        screen = self.screen
        if isinstance(screen, RunScreen) and stripped.isdigit():
            from .messages import VersionRequested

            k = int(stripped)
            yield Hit(
                1.0,
                f"Go to version {k}",
                partial(screen.post_message, VersionRequested(k)),
                help="state",
            )
            return  # a number is a version: run ids that happen to contain it would only get in the way
        for text, callback, help_text in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, _highlight(matcher, text), callback, text=text, help=help_text)


def _highlight(matcher: Matcher, text: str) -> Content:
    """``text`` as literal content with the characters the query matched highlighted."""
    content = Content(text)
    _score, offsets = matcher.fuzzy_search.match(matcher.query, text)
    for offset in offsets:
        if not text[offset].isspace():
            content = content.stylize(matcher.match_style, offset, offset + 1)
    return content
