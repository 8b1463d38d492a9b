"""A long text (a whole attribute value, megabytes of it) shown a screenful at a time.

Nothing is wrapped up front: on each width the widget keeps only where each
paragraph starts in rows (one ``split`` and one running sum, a few tens of ms for
10 MB), and ``render_line`` cuts the row it is asked for. Control characters are
shown as escapes, never sent to the terminal.
"""

from __future__ import annotations

import bisect
import itertools
from typing import ClassVar

from rich.segment import Segment
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .._text import clip
from ._lines import RoleStyles


class TextView(RoleStyles, ScrollView, can_focus=True):
    """Shows ``text`` wrapped to the width; scrolls with the arrows, pages, home and end."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "scroll_up", "Up", show=False),
        Binding("down,j", "scroll_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown,space", "page_down", "Page down", show=False),
        Binding("home", "scroll_home", "Top", show=False),
        Binding("end", "scroll_end", "Bottom", show=False),
    ]

    def __init__(self, text: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.paragraphs = text.replace("\r\n", "\n").split("\n")
        self._starts: list[int] = [0]
        self._width = 0
        self.rows = 0

    def _layout(self, width: int) -> None:
        width = max(1, width)
        if width == self._width:
            return
        self._width = width
        counts = (max(1, -(-len(p) // width)) for p in self.paragraphs)
        self._starts = [0, *itertools.accumulate(counts)]
        self.rows = self._starts[-1]
        self.virtual_size = Size(width, self.rows)

    def on_resize(self, event: events.Resize) -> None:
        self._layout(self.scrollable_content_region.width)
        self.refresh()

    def on_mount(self) -> None:
        self._layout(self.scrollable_content_region.width or 80)

    def row_text(self, row: int) -> str:
        """The text of wrapped row ``row`` (the width last laid out)."""
        i = bisect.bisect_right(self._starts, row) - 1
        if i < 0 or i >= len(self.paragraphs):
            return ""
        j = row - self._starts[i]
        return self.paragraphs[i][j * self._width : (j + 1) * self._width]

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        self._layout(width)
        row = int(self.scroll_offset.y) + y
        if row >= self.rows:
            return Strip.blank(width, self.rich_style)
        text = clip(self.row_text(row), width)
        return Strip([Segment(text, self.role_style("str"))]).crop_extend(0, width, self.rich_style)
