"""Both themes keep text readable on the panes' background; the default follows the terminal."""

from __future__ import annotations

import pytest
from textual.color import Color

from tracer import Store
from tui._roles import ROLES, role_styles
from tui.app import AgentraceApp, default_theme

# Dimmed on purpose: a declared edge nothing used, the empty part of the time axis.
RECEDING = {"edge.unused", "axis"}


def _luminance(rgb: tuple[int, int, int]) -> float:
    def channel(v: int) -> float:
        c = v / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = rgb
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def _contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


@pytest.mark.parametrize("theme", ["agentrace-dark", "agentrace-light"])
async def test_every_role_meets_the_contrast_of_body_text(theme: str) -> None:
    app = AgentraceApp(Store(":memory:"), theme=theme)
    async with app.run_test():
        variables = app.get_css_variables()
    surface = Color.parse(variables["surface"])
    styles = role_styles(variables)
    assert set(styles) == set(ROLES)
    for role, style in styles.items():
        if style.color is None:
            continue
        fg = style.color.get_truecolor()
        bg = style.bgcolor.get_truecolor() if style.bgcolor else surface.rgb
        ratio = _contrast((fg.red, fg.green, fg.blue), (bg[0], bg[1], bg[2]))
        assert ratio >= (2.0 if role in RECEDING else 4.5), f"{theme} {role}: {ratio:.2f}"


@pytest.mark.parametrize(
    ("env", "theme"),
    [
        ({}, "agentrace-dark"),
        ({"COLORFGBG": "0;15"}, "agentrace-light"),
        ({"COLORFGBG": "15;0"}, "agentrace-dark"),
        ({"AGENTRACE_THEME": "light", "COLORFGBG": "15;0"}, "agentrace-light"),
        ({"AGENTRACE_THEME": "textual-ansi"}, "textual-ansi"),
    ],
)
def test_the_default_theme_follows_the_terminal(env: dict[str, str], theme: str) -> None:
    assert default_theme(env) == theme
