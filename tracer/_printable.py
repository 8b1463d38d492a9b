"""Trace text made safe for a terminal: every control character shown, none obeyed.

Span names, agent names, messages and values come from whoever sent the trace.
Written raw, an OSC sequence retitles the terminal or writes the clipboard, a CSI
moves the cursor over earlier output, a C1 control (U+0080..U+009F) acts as ESC on
some terminals and a bidi override shows text in another order than it is stored.
:func:`printable` replaces each such character by the escape Python would write
for it (``\\x1b``, ``\\x9b``, ``\\u202e``), so what it was stays readable and
nothing of it acts.

What is replaced: every character :meth:`str.isprintable` refuses (C0 and C1
controls, DEL, format characters such as the bidi overrides and isolates, line
and paragraph separators, unpaired surrogates, unassigned code points), except
the zero-width joiners, which only join emoji and letters. ``keep`` names
characters to leave alone (a multi-line message keeps its ``"\\n"``).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["json_printable", "printable"]

# Joiners change how glyphs combine, never the cursor or the order of text.
_HARMLESS: Final = frozenset("\u200c\u200d")


def _escape(ch: str) -> str:
    n = ord(ch)
    if ch == "\n":
        return "\\n"
    if ch == "\t":
        return "\\t"
    if ch == "\r":
        return "\\r"
    if n < 0x100:
        return f"\\x{n:02x}"
    if n < 0x10000:
        return f"\\u{n:04x}"
    return f"\\U{n:08x}"


def printable(text: str, keep: str = "") -> str:
    """``text`` with every control, format and bidi character written as a visible escape."""
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() or ch in _HARMLESS or ch in keep else _escape(ch) for ch in text
    )


_JSON_UNSAFE: Final = re.compile(r"[^\n -~]")


def _json_escape(m: re.Match[str]) -> str:
    ch = m.group()
    if ch.isprintable() or ch in _HARMLESS:
        return ch
    n = ord(ch)
    if n < 0x10000:
        return f"\\u{n:04x}"
    n -= 0x10000  # outside the BMP: a surrogate pair, as JSON writes it
    return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"


def json_printable(text: str) -> str:
    """JSON text (from ``json.dumps(..., ensure_ascii=False)``) with no character a terminal obeys.

    JSON already escapes C0 controls inside strings; DEL, C1 controls, bidi overrides
    and the line separators are legal in JSON strings and pass through raw. They are
    written ``\\uXXXX`` here, which decodes to the same value: the text stays valid
    JSON meaning the same thing. Outside strings JSON has only ASCII, so the
    indentation's newlines are kept.
    """
    if text.isascii() and "\x7f" not in text:
        return text
    return _JSON_UNSAFE.sub(_json_escape, text)
