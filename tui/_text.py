"""Strings from traces, made safe and short for the screen.

Everything a trace carries (names, attribute values, messages, JSON) is shown as
text, never as markup: a span named ``[bold red]x`` shows those characters. The
helpers here build :class:`rich.text.Text` objects directly (``Text(s)`` does not
parse markup) and never call ``Text.from_markup`` or Textual's markup on trace
data. No Textual import here: the pure renderers use these too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from rich.cells import cell_len
from rich.text import Text

from tracer import Run, printable

__all__ = ["clip", "compact_json", "fmt_duration", "fmt_when", "plain", "short_id"]


def plain(value: object, style: str = "") -> Text:
    """``value`` as literal text (no markup, no emoji codes), on one line."""
    text = value if isinstance(value, str) else str(value)
    return Text(_one_line(text), style=style, no_wrap=True, end="")


def _one_line(text: str) -> str:
    # Control, C1 and bidi characters would act on the terminal: show them as escapes.
    return printable(text)


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` cells, with an ellipsis when cut."""
    text = _one_line(text)
    if width <= 0:
        return ""
    if cell_len(text) <= width:
        return text
    out = []
    used = 0
    for ch in text:
        w = cell_len(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def compact_json(value: Any, width: int = 60) -> str:
    """A one-line rendering of a JSON value, clipped to ``width`` cells."""
    if isinstance(value, str):
        text = orjson.dumps(value).decode()
    else:
        try:
            text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        except TypeError:
            text = repr(value)
    return clip(text, width)


def short_id(span_or_run_id: str | None, n: int = 8) -> str:
    return (span_or_run_id or "")[:n]


def fmt_duration(ns: int) -> str:
    """A duration in the unit that keeps it short: ``850 ns``, ``12.5 µs``, ``3.2 ms``, ``1.25 s``."""
    if ns < 0:
        return "-" + fmt_duration(-ns)
    if ns < 1_000:
        return f"{ns} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.1f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.1f} ms"
    if ns < 600_000_000_000:
        return f"{ns / 1_000_000_000:.2f} s"
    return f"{ns / 60_000_000_000:.1f} min"


def fmt_when(ns: int) -> str:
    """A wall-clock time in UTC, to the second."""
    if ns <= 0:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def error_counts(errors: int, handled: int) -> str:
    """A run's errors with the handled ones apart: ``2``, ``0 (+1 handled)``, ``-`` for none."""
    if not errors and not handled:
        return "-"
    return f"{errors} (+{handled} handled)" if handled else str(errors)


def shown_findings(run: Run) -> int | None:
    """A run's finding count as shown: None ("not analysed", not 0) when analysis has not run
    since the run last changed and no finding is stored for it."""
    return None if not run.analysed and not run.finding_count else run.finding_count
