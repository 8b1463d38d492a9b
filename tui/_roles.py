"""Role names -> Rich styles, computed from the current theme's colours.

The line-API panes colour their text by role (``added``, ``stale``, ``edge.failed``...).
The roles live here rather than as component classes in ``app.tcss``: Textual
makes a DOM node per component class per widget instance, and with ~50 roles on
five panes that was 240 nodes and about 0.4 s of style matching before the first
paint of a run. Here a theme's styles are computed once (a few hundred
microseconds) and shared by every widget.

Colours are theme variables, so every Textual theme works, and blended over the
panes' ``surface`` background, so translucent ones (``foreground`` at 55 %) come
out as the solid colour a terminal can show.
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.style import Style
from textual.color import Color

__all__ = ["ROLES", "role_styles"]

# role: (text colour variable, its opacity, background variable, its opacity, attributes)
ROLES: dict[str, tuple[str | None, float, str | None, float, str]] = {
    "title": (None, 1, None, 0, "bold"),
    "dim": ("foreground", 0.62, None, 0, ""),
    "key": ("text-primary", 1, None, 0, ""),
    "str": ("text-success", 1, None, 0, ""),
    "num": ("text-accent", 1, None, 0, ""),
    "lit": ("text-secondary", 1, None, 0, "italic"),
    "added": ("text-success", 1, None, 0, "bold"),
    "removed": ("text-error", 1, None, 0, "bold"),
    "changed": ("text-warning", 1, None, 0, "bold"),
    "error": ("text-error", 1, None, 0, ""),
    "ok": ("text-success", 1, None, 0, ""),
    "warn": ("text-warning", 1, None, 0, ""),
    "stale": ("background", 1, "error", 1, "bold"),
    "link": ("text-primary", 1, None, 0, "underline"),
    "agent": ("text-secondary", 1, None, 0, "bold"),
    "version": ("text-accent", 1, None, 0, "bold"),
    "hl": (None, 1, "primary", 0.2, ""),
    "cursor": (None, 1, "primary", 0.45, "bold"),
    "current": (None, 1, "accent", 0.25, ""),
    "tree": ("foreground", 0.62, None, 0, ""),
    "name": ("foreground", 1, None, 0, ""),
    "name.error": ("text-error", 1, None, 0, "bold"),
    "mark": ("text-accent", 1, None, 0, "bold"),
    "kind": ("text-secondary", 1, None, 0, "italic"),
    "dur": ("foreground", 0.65, None, 0, ""),
    "bar": ("primary", 1, None, 0, ""),
    "bar.error": ("error", 1, None, 0, ""),
    "bar.producer": ("secondary", 1, None, 0, ""),
    "bar.consumer": ("success", 1, None, 0, ""),
    "axis": ("foreground", 0.45, None, 0, ""),
    "axis.label": ("foreground", 0.65, None, 0, "bold"),
    "node": ("foreground", 1, None, 0, ""),
    "node.error": ("text-error", 1, None, 0, ""),
    "topic": ("text-secondary", 1, None, 0, ""),
    "node.hl": ("text-accent", 1, "accent", 0.18, "bold"),
    "edge": ("text-primary", 1, None, 0, ""),
    "edge.failed": ("text-error", 1, None, 0, "bold"),
    "edge.rejected": ("text-secondary", 1, None, 0, "bold"),
    "edge.compensate": ("text-warning", 1, None, 0, ""),
    "edge.breaker": ("text-error", 1, None, 0, "italic"),
    "edge.unused": ("foreground", 0.4, None, 0, ""),
    "edge.hl": ("text-accent", 1, None, 0, "bold"),
    # Finding severities (tracer.analysis: info < warning < error < critical).
    "sev.critical": ("text-error", 1, None, 0, "bold reverse"),
    "sev.error": ("text-error", 1, None, 0, "bold"),
    "sev.warning": ("text-warning", 1, None, 0, "bold"),
    "sev.info": ("foreground", 0.65, None, 0, ""),
}


def _color(variables: Mapping[str, str], name: str, fallback: str) -> Color:
    try:
        return Color.parse(variables.get(name) or fallback)
    except Exception:  # an odd theme value: use the fallback colour
        return Color.parse(fallback)


def role_styles(variables: Mapping[str, str]) -> dict[str, Style]:
    """Every role's style under the theme whose CSS variables are ``variables``."""
    surface = _color(variables, "surface", "#1e1e1e")
    foreground = _color(variables, "foreground", "#e0e0e0")
    out: dict[str, Style] = {}
    for role, (fg, fg_alpha, bg, bg_alpha, attrs) in ROLES.items():
        color = bgcolor = None
        if fg is not None:
            c = _color(variables, fg, foreground.hex)
            color = (surface + c.multiply_alpha(fg_alpha)).rich_color
        if bg is not None:
            c = _color(variables, bg, surface.hex)
            bgcolor = (surface + c.multiply_alpha(bg_alpha)).rich_color
        out[role] = Style(color=color, bgcolor=bgcolor) + Style.parse(attrs or "none")
    return out
