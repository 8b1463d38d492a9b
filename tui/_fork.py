"""Forking a run from the debugger (``F``): whether the debugger can, and what to type when not.

The debugger forks an engine run the way ``agentrace replay RUN --from-version K``
does: through :class:`engine.running.Replayer`, which finds the workflow by the
registered name the run records (never by importing anything the trace names).
It cannot fork every run, and says so in one line with the command that can:

- a run without state versions has nothing to fork from;
- a LangGraph run forks with the user's own compiled graph (``--graph MODULE:ATTR``,
  or :func:`engine.replay_graph`), which the debugger cannot know;
- a run that records no workflow name (an imported trace) needs the workflow given;
- a store opened read-only (plain ``agentrace tui``) cannot take the new run, and
  DuckDB lets no other process write it while the debugger has it open: quit and
  run the command, or reopen with ``--listen``, which opens the store for writing.

Pure text, no Textual: the app calls :func:`fork_refusal` before it starts the fork.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence

from tracer import DEFAULT_DB, AgentraceError, Run, StateVersion, printable

__all__ = ["fork_failure", "fork_refusal", "is_langgraph", "replay_command"]


def is_langgraph(versions: Sequence[StateVersion]) -> bool:
    """The run's state came from LangGraph (its checkpointer, or its trace's super-steps)."""
    return any((v.source or "").startswith("langgraph") for v in versions)


def replay_command(run_id: str, version: int, db: str, *extra: str) -> str:
    """The ``agentrace replay`` line that forks ``run_id`` at ``version`` (``--db`` only when
    the store is not the one the command opens by default)."""
    words = ["agentrace", "replay", run_id[:12], *extra, "--from-version", str(version)]
    if db != (os.environ.get("AGENTRACE_DB") or DEFAULT_DB):
        words += ["--db", shlex.quote(db)]
    return " ".join(words)


def fork_refusal(
    run: Run, versions: Sequence[StateVersion], version: int, *, read_only: bool, db: str
) -> str | None:
    """Why the debugger will not fork ``run`` at ``version``, as one line naming what works
    instead; None when it can. ``versions`` are the run's version metadata loaded so far
    (any one of a LangGraph run's says so)."""
    if version < 1:
        return f"run {run.run_id[:12]} has no state version to fork from"
    quit_first = " (quit the debugger first)" if read_only else ""
    if is_langgraph(versions):
        cmd = replay_command(run.run_id, version, db, "--graph", "MODULE:ATTR")
        return (
            f"a LangGraph run forks with its own graph, from the command line{quit_first}: "
            f"{cmd} (or engine.replay_graph)"
        )
    if not run.workflow_ref:
        cmd = replay_command(run.run_id, version, db, "--workflow", "MODULE:FACTORY")
        return (
            f"run {run.run_id[:12]} records no registered workflow to fork with: "
            f"give one{quit_first}: {cmd}"
        )
    if read_only:
        cmd = replay_command(run.run_id, version, db)
        return (
            f"the store is open read-only: quit, then fork with {cmd}; "
            "or open it with agentrace tui --listen PORT to fork here"
        )
    return None


def fork_failure(run_id: str, version: int, exc: BaseException) -> str:
    """One line for a fork that raised: the error's first line (agentrace's own errors say what
    to do; others are named by their type), control characters made visible."""
    lines = str(exc).strip().splitlines()
    what = lines[0] if lines else ""
    if not isinstance(exc, AgentraceError) or not what:
        what = f"{type(exc).__name__}: {what}" if what else type(exc).__name__
    what = printable(what)  # control, C1 and bidi characters shown as escapes
    if len(what) > 320:
        # A long error (the engine lists the registered workflows) keeps its start and its
        # end, which says what to do.
        what = f"{what[:200]} … {what[-110:]}"
    return f"cannot fork run {run_id[:12]} at v{version}: {what}"
