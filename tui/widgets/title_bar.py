"""A one-line header whose text changes without a layout pass.

``Static.update`` refreshes the screen's layout (its size may change); a header of
fixed height does not need that, and stepping a version rewrites it every time.
"""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget


class TitleBar(Widget):
    """Shows ``text`` (a ``Text`` built by the screen from trace strings, never markup)."""

    DEFAULT_CSS = """
    TitleBar {
        height: 1;
    }
    """

    text: reactive[Text] = reactive(Text, layout=False)

    def render(self) -> Text:
        return self.text
