"""agentrace's terminal: the ``agentrace`` command line and the Textual debugger.

Importing ``tui`` (which the command line does for every command) loads no
Textual: the debugger is imported when it is opened. ``run_app`` is the one
entry point other commands call (``agentrace demo`` opens the debugger with it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import AgentraceApp

__all__ = ["AgentraceApp", "run_app"]


def run_app(
    db_path: str | Path,
    run_id: str | None = None,
    listen: int | None = None,
    *,
    host: str = "127.0.0.1",
) -> None:
    """Open the debugger on the store at ``db_path``; blocks until the user quits.

    ``run_id`` (a prefix is enough) opens that run's screen; ``listen`` hosts the
    OTLP/HTTP receiver on that port and shows spans as they arrive.
    """
    from .app import run_app as _run

    _run(db_path, run_id=run_id, listen=listen, host=host)


def __getattr__(name: str) -> Any:
    if name == "AgentraceApp":
        from .app import AgentraceApp

        return AgentraceApp
    raise AttributeError(name)
