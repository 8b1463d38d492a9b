"""``agentrace``: the command line. See ``agentrace --help``."""

from __future__ import annotations

from ._cli_base import cli
from .commands import demo as _demo  # noqa: F401  # registers demo
from .commands import findings as _findings  # noqa: F401  # registers findings
from .commands import ingest as _ingest  # noqa: F401  # registers import
from .commands import replay as _replay  # noqa: F401  # registers replay, diff
from .commands import serve as _serve  # noqa: F401  # registers serve
from .commands import store as _store  # noqa: F401  # registers runs, state, export, verify
from .commands import tui as _tui  # noqa: F401  # registers tui
from .commands import worker as _worker  # noqa: F401  # registers worker


def main() -> None:
    cli(prog_name="agentrace")


__all__ = ["cli", "main"]
