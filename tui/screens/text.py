"""A value shown whole (``OpenText``): JSON pretty-printed, the rest as written."""

from __future__ import annotations

from typing import ClassVar

import orjson
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer

from .._llm import parse_json
from ..widgets.text_view import TextView
from ..widgets.title_bar import TitleBar


class TextScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "app.pop_screen", "Back"),
    ]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text = title
        doc = parse_json(text)
        self.text = (
            orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() if doc is not None else text
        )

    def compose(self) -> ComposeResult:
        from rich.text import Text

        bar = TitleBar(id="text-title")
        bar.text = Text.assemble(
            (" value ", "bold reverse"),
            " ",
            (self.title_text, "bold"),
            f"  {len(self.text):,} characters",
        )
        yield bar
        yield TextView(self.text, id="text-view")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(TextView).focus()
