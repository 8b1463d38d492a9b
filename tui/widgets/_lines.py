"""A line-API widget over prepared lines of (text, role) runs, with a cursor.

The base of every text pane (state, findings, span detail): it renders only the
rows on screen (``render_line``), keeps a small cache of built strips, and maps
roles to component classes styled in ``app.tcss`` with theme variables, so the
same lines read well under the dark and the light theme. Text from traces is put
into ``Segment`` objects as it is: nothing here parses markup.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .._roles import role_styles
from .._text import clip

Run = tuple[str, str]  # (text, role)
# The role a chat message's sender is styled with (in a conversation, a step's writes).
CHAT_ROLES = {"user": "agent", "assistant": "ok", "tool": "num"}


def overlay(strip: Strip, style: Style) -> Strip:
    """``strip`` with ``style`` laid over every segment (a cursor's background wins)."""
    return Strip(Segment.apply_style(iter(strip), post_style=style), strip.cell_length)


@dataclass(frozen=True, slots=True)
class Line:
    """One line: its runs and, when the cursor can act on it, a key (a fold path, a link...)."""

    runs: tuple[Run, ...]
    key: Any = None

    @classmethod
    def of(cls, *runs: Run, key: Any = None) -> Line:
        return cls(tuple(runs), key)

    @property
    def width(self) -> int:
        return sum(cell_len(t) for t, _ in self.runs)


class RoleStyles:
    """Mixin for widgets: role name -> the widget's style with the role's laid over it.

    The role styles come from ``tui._roles`` for the app's current theme; the cache is
    dropped when the widget's styles change (a theme switch calls
    ``notify_style_update``).
    """

    _role_cache: dict[str, Style]

    def role_style(self, role: str) -> Style:
        cache = self.__dict__.setdefault("_role_cache", {})
        style = cache.get(role)
        if style is None:
            widget: Any = self
            roles = theme_roles(widget.app)
            style = widget.rich_style + roles.get(role, Style())
            cache[role] = style
        return style

    def overlay_style(self, role: str) -> Style:
        """Only the background (and boldness) of ``role``: laid over a line, keeping its colours."""
        cache = self.__dict__.setdefault("_role_cache", {})
        key = "\0" + role
        style = cache.get(key)
        if style is None:
            widget: Any = self
            full = theme_roles(widget.app).get(role, Style())
            style = Style(bgcolor=full.bgcolor, bold=full.bold)
            cache[key] = style
        return style

    def clear_role_styles(self) -> None:
        self.__dict__["_role_cache"] = {}


def theme_roles(app: Any) -> dict[str, Style]:
    """The role styles of ``app``'s current theme (computed once per theme, kept on the app)."""
    cache: dict[str, dict[str, Style]] = app.__dict__.setdefault("_agentrace_roles", {})
    theme = str(getattr(app, "theme", ""))
    roles = cache.get(theme)
    if roles is None:
        roles = cache[theme] = role_styles(app.get_css_variables())
    return roles


class LineView(RoleStyles, ScrollView, can_focus=True):
    """Scrollable lines with a cursor; Enter (or a click) on a line with a key posts ``Activated``."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "cursor_to(0)", "First", show=False),
        Binding("end", "cursor_to(-1)", "Last", show=False),
        Binding("enter", "activate", "Open", show=False),
    ]

    cursor: reactive[int] = reactive(0, init=False)

    class Activated(Message):
        """The cursor's line was activated (Enter or a click)."""

        def __init__(self, view: LineView, key: Any) -> None:
            super().__init__()
            self.view = view
            self.key = key

        @property
        def control(self) -> LineView:
            return self.view

    def __init__(
        self, *, name: str | None = None, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._lines: list[Line] = []
        self._builder: Callable[[int], Sequence[Line]] | None = None
        self._built_width = -1
        self._strips: dict[int, Strip] = {}
        self.show_cursor = True

    # -- content ---------------------------------------------------------------------------

    @property
    def lines(self) -> list[Line]:
        return self._lines

    def set_lines(self, lines: Sequence[Line], *, keep_cursor: bool = True) -> None:
        """Show ``lines`` (built once, whatever the width)."""
        self._builder = None
        self._apply(list(lines), keep_cursor)

    def set_builder(
        self, builder: Callable[[int], Sequence[Line]], *, keep_cursor: bool = True
    ) -> None:
        """Show what ``builder(width)`` returns, rebuilt when the width changes (for wrapping)."""
        self._builder = builder
        width = self.scrollable_content_region.width or self.size.width or 80
        self._built_width = width
        self._apply(list(builder(width)), keep_cursor)

    def _apply(self, lines: list[Line], keep_cursor: bool) -> None:
        if self._builder is not None:
            lines = [
                ln if ln.width <= self._built_width else _clip_line(ln, self._built_width)
                for ln in lines
            ]
        self._lines = lines
        self._strips.clear()
        # Built for a width: no sideways scrolling (and no scrollbar eating a row).
        width = (
            self._built_width
            if self._builder is not None
            else max((ln.width for ln in lines), default=0)
        )
        self.virtual_size = Size(width, len(lines))
        if not keep_cursor:
            self.set_reactive(LineView.cursor, 0)
            self.scroll_to(y=0, animate=False, immediate=True)
        self.cursor = min(self.cursor, max(0, len(lines) - 1))
        self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        if self._builder is not None:
            width = self.scrollable_content_region.width
            if width and width != self._built_width:
                self._built_width = width
                self._apply(list(self._builder(width)), True)
        self._strips.clear()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self.clear_role_styles()
        self._strips.clear()

    # -- rendering -------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        row = scroll_y + y
        width = self.scrollable_content_region.width
        base = self.rich_style
        if row >= len(self._lines):
            return Strip.blank(width, base)
        strip = self._strips.get(row)
        if strip is None:
            strip = Strip(
                [Segment(text, self.role_style(role)) for text, role in self._lines[row].runs]
            )
            if len(self._strips) > 512:
                self._strips.clear()
            self._strips[row] = strip
        cursor = self.show_cursor and row == self.cursor and self.has_focus_within
        line = strip.crop_extend(scroll_x, scroll_x + width, base)
        if cursor:
            line = overlay(line, self.overlay_style("cursor"))
        return line

    @property
    def has_focus_within(self) -> bool:
        return self.has_focus

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    # -- cursor ----------------------------------------------------------------------------

    def watch_cursor(self, old: int, new: int) -> None:
        self._refresh_row(old)
        self._refresh_row(new)
        self.scroll_to_row(new)

    def _refresh_row(self, row: int) -> None:
        y = row - self.scroll_offset.y
        if 0 <= y < self.size.height:
            self.refresh_line(y)

    def scroll_to_row(self, row: int) -> None:
        height = self.scrollable_content_region.height
        top = self.scroll_offset.y
        if row < top:
            self.scroll_to(y=row, animate=False, immediate=True)
        elif height and row >= top + height:
            self.scroll_to(y=row - height + 1, animate=False, immediate=True)

    def action_cursor(self, delta: int) -> None:
        if self._lines:
            self.cursor = max(0, min(len(self._lines) - 1, self.cursor + delta))

    def action_cursor_to(self, row: int) -> None:
        if self._lines:
            self.cursor = row % len(self._lines)

    def action_page(self, delta: int) -> None:
        page = max(1, self.scrollable_content_region.height - 1)
        if not self.show_cursor:  # a text to read (the help): the page moves, not a cursor
            self.scroll_to(y=self.scroll_offset.y + delta * page, animate=False, immediate=True)
            return
        self.action_cursor(delta * page)

    def action_activate(self) -> None:
        if 0 <= self.cursor < len(self._lines):
            key = self._lines[self.cursor].key
            if key is not None:
                self.post_message(self.Activated(self, key))

    def on_click(self, event: events.Click) -> None:
        row = self.scroll_offset.y + event.y
        if 0 <= row < len(self._lines):
            self.cursor = row
            if event.chain >= 1 and self._lines[row].key is not None:
                self.action_activate()

    def key_at_cursor(self) -> Any:
        if 0 <= self.cursor < len(self._lines):
            return self._lines[self.cursor].key
        return None

    def move_to_key(self, key: Any) -> bool:
        """Put the cursor on the first line whose key is ``key``."""
        for i, ln in enumerate(self._lines):
            if ln.key == key:
                self.cursor = i
                return True
        return False


def _clip_line(line: Line, width: int) -> Line:
    out: list[Run] = []
    used = 0
    for text, role in line.runs:
        w = cell_len(text)
        if used + w > width:
            room = width - used
            if room > 0:
                out.append((clip(text, room), role))
            break
        out.append((text, role))
        used += w
    return Line(tuple(out), line.key)
