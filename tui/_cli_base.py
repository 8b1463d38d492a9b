"""The ``agentrace`` command group and what every command shares.

Commands live one group per module in ``tui/commands/``; each registers itself
on :data:`cli`. Errors agentrace raises on purpose become one line on stderr
and exit status 1; usage errors are click's (status 2).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from tracer import DEFAULT_DB, AgentraceError, Store

F = TypeVar("F", bound=Callable[..., Any])


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="agentrace", prog_name="agentrace")
def cli() -> None:
    """Record, analyse, step through and replay multi-agent runs."""


def db_option(f: F) -> F:
    """``--db PATH``, defaulting to $AGENTRACE_DB or ./agentrace.duckdb."""
    return click.option(
        "--db",
        "db",
        type=click.Path(dir_okay=False),
        default=lambda: os.environ.get("AGENTRACE_DB") or DEFAULT_DB,
        show_default="$AGENTRACE_DB or ./agentrace.duckdb",
        help="The store (a DuckDB file).",
    )(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(f)


def fail(message: str, code: int = 1) -> None:
    click.echo(f"agentrace: {message}", err=True)
    sys.exit(code)


def errors_to_exit(f: F) -> F:
    """Turn agentrace's own errors into one line on stderr and a non-zero exit."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except AgentraceError as exc:
            fail(str(exc))
        except BrokenPipeError:
            sys.exit(0)

    return wrapper  # type: ignore[return-value]


def open_store(db: str, *, read_only: bool = True) -> Store:
    """Open ``db``; reading commands refuse a missing file rather than creating an empty one."""
    if read_only and not os.path.exists(db):
        fail(f"{db}: no such store (record one with `agentrace demo` or `agentrace import`)")
    return Store(db, read_only=read_only)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def short(run_id: str) -> str:
    return run_id[:12]
