"""The help screen (``?``): every key, by screen and pane."""

from __future__ import annotations

import textwrap
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen

from ..widgets._lines import Line, LineView

KEYS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("Everywhere", (
        ("?", "this help"), ("ctrl+p", "command palette: runs, versions, findings, panes, themes"),
        ("ctrl+t", "switch between the dark and the light theme"),
        ("ctrl+s", "write an SVG screenshot into the current directory"), ("q / ctrl+c", "quit"),
    )),
    ("Runs", (
        ("↑ ↓  enter", "move, open the run (newest first; ● marks runs receiving spans)"),
        ("/", "search (words in workflow, scenario, agents, status, finding kinds, id)"),
        ("s  r", "sort by the next column, reverse the order (or click a header)"),
        ("p", "filter by pattern: orchestration, choreography, hybrid, imported"),
        ("x", "only runs with findings"), ("escape", "clear the search"),
        ("m  C", "mark a run; compare the run under the cursor with the marked one, side by side"),
    )),
    ("Run", (
        ("1 2 3 4 5  tab", "graph, waterfall, state, findings, span detail (tabs on small terminals)"),
        ("z", "zoom the focused pane to the whole screen (again to restore)"),
        ("[  ]", "previous / next state version, from any pane"),
        ("g", "go to a version"), ("d", "diff any two versions"),
        ("f", "next finding: jumps stepper, graph and waterfall to it"),
        ("backspace", "back to where you were before following a link or a STALE line"),
        ("m  C", "mark this run; compare it with the marked one (n / p: next / previous difference)"),
        ("F", "fork the run at the version shown (replayed up to it, live after) and open the fork"),
        ("escape", "back to the runs"),
    )),
    ("Waterfall", (
        ("↑ ↓ pgup pgdn home end", "move"), ("enter / space", "fold or unfold a span's children"),
        ("← →", "fold, go to parent / unfold, go to first child"),
        ("-  +", "fold every agent step / unfold all"), ("e", "next span with an error, anywhere in the run"),
        ("/  n  N", "find spans by name, agent or operation; next / previous match"),
        ("x", "filter: words, agent:NAME kind:llm|tool|agent|guardrail|message status:error model:TEXT"),
        ("c", "copy the span id"),
    )),
    ("Graph", (
        ("← → ↑ ↓  home end", "scroll"), ("a  A", "next / previous agent"),
        ("o", "focus: only the agent's edges"), ("enter", "filter the waterfall to the agent's spans"),
        ("t", "topics as boxes, or folded into agent-to-agent edges"),
    )),
    ("State", (
        ("← →  home end", "step versions"), ("b  B", "diff later versions against this one / against the previous"),
        ("enter", "fold a JSON node; on a change: go to its writer's span; on a STALE read: go to the version that was committed"),
    )),
    ("Findings, span detail", (
        ("enter / click", "jump to the finding; follow a link (consumer → producer) or go to the parent"),
        ("enter on a value", "fold or unfold JSON; show a value whole (cut ones say how long they are)"),
        ("c", "copy the value under the cursor (to the clipboard, or a file when too big)"),
    )),
)  # fmt: skip


def help_lines(width: int) -> list[Line]:
    """The keys, their descriptions wrapped to ``width`` (beside the key, or under it when narrow)."""
    lines: list[Line] = []
    key_w = 24 if width >= 70 else 0
    for section, keys in KEYS:
        lines.append(Line.of((f" {section}", "title")))
        for key, what in keys:
            room = max(12, width - key_w - 4)
            pieces = textwrap.wrap(what, room) or [""]
            if key_w:
                lines.append(Line.of((f"   {key:<{key_w - 2}}  ", "key"), (pieces[0], "dim")))
            else:
                lines.append(Line.of((f"   {key}", "key")))
                lines.append(Line.of(("     ", "dim"), (pieces[0], "dim")))
            pad = " " * (key_w + 3 if key_w else 5)
            lines += [Line.of((pad, "dim"), (p, "dim")) for p in pieces[1:]]
        lines.append(Line.of(("", "dim")))
    return lines


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            view = LineView(id="help-lines")
            view.show_cursor = False
            view.border_title = "agentrace keys"
            yield view

    def on_mount(self) -> None:
        view = self.query_one(LineView)
        view.set_builder(help_lines)
        view.focus()

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
