"""The ``agentrace`` command group and what every command shares.

Commands live one group per module in ``tui/commands/``; each registers itself
on :data:`cli`. Errors agentrace raises on purpose become one line on stderr
and exit status 1; usage errors are click's (status 2).

Trace text is hostile (span names with OSC or CSI sequences, bidi overrides, C1
controls). While a command runs, ``sys.stdout`` and ``sys.stderr`` are streams
that write every control character as a visible escape (:func:`tracer.printable`),
so ``click.echo``, logging and error lines cannot reach the terminal raw, piped
or not. Rich tables on a terminal bring their own styles and write past that
stream (:func:`console`): every trace string given to them goes through
:func:`cell` first. ``--json`` is escaped by :func:`print_json` (valid JSON, same
values). :func:`bounded` caps what a human view prints of a huge value.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, Final, TextIO, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from tracer import DEFAULT_DB, AgentraceError, Store, json_printable, printable

from ._text import clip

F = TypeVar("F", bound=Callable[..., Any])


# Commands that hand the terminal to the Textual debugger, which escapes what it draws.
_DRAWS_ITSELF: Final = frozenset({"tui", "demo"})


class PrintableStream(io.TextIOBase):
    """A text stream writing to ``raw`` with every control character escaped (newlines and tabs kept)."""

    def __init__(self, raw: TextIO) -> None:
        self.raw = raw

    @property
    def encoding(self) -> str:  # type: ignore[override]  # read-only here
        return getattr(self.raw, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]  # read-only here
        return getattr(self.raw, "errors", None)

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.raw.write(printable(s, keep="\n\t"))
        return len(s)

    def flush(self) -> None:
        self.raw.flush()

    def isatty(self) -> bool:
        return self.raw.isatty()

    def fileno(self) -> int:
        return self.raw.fileno()


def _guard_output(ctx: click.Context) -> None:
    raw_out, raw_err = sys.stdout, sys.stderr
    if isinstance(raw_out, PrintableStream) or isinstance(raw_err, PrintableStream):
        return
    sys.stdout, sys.stderr = PrintableStream(raw_out), PrintableStream(raw_err)

    def restore() -> None:
        sys.stdout, sys.stderr = raw_out, raw_err

    ctx.call_on_close(restore)


def raw_stream(*, stderr: bool = False) -> TextIO:
    """The stream under the escaping one: for Rich's own styles and for bytes asked for on purpose."""
    stream = sys.stderr if stderr else sys.stdout
    return stream.raw if isinstance(stream, PrintableStream) else stream


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="agentrace", prog_name="agentrace")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Record, analyse, step through and replay multi-agent runs."""
    if ctx.invoked_subcommand not in _DRAWS_ITSELF:
        _guard_output(ctx)


def console(*, stderr: bool = False) -> Console:
    """A Rich console for tables: the terminal's width, or 200 columns through a pipe.

    On a terminal it writes its styles past the escaping stream, so every trace
    string in what it prints must come through :func:`cell` (or :func:`printable`).
    Through a pipe it has no styles and writes to the escaping stream like the rest.
    """
    probe = Console(file=raw_stream(stderr=stderr), highlight=False, soft_wrap=True)
    if probe.is_terminal:
        return probe
    # Piped output is for files and pagers: no 80-column wrapping there.
    return Console(
        file=sys.stderr if stderr else sys.stdout, highlight=False, soft_wrap=True, width=200
    )


# What a human view prints of one value; --json prints everything.
CELL_WIDTH: Final = 60
TEXT_WIDTH: Final = 500
MAX_ITEMS: Final = 100
MAX_DEPTH: Final = 40


def cell(value: object, width: int = CELL_WIDTH) -> str:
    """Trace text for Rich markup: control characters escaped, clipped to ``width``, markup escaped."""
    return escape(clip(value if isinstance(value, str) else str(value), width))


def bounded(value: Any, depth: int = 0) -> Any:
    """A JSON value cut for a human to read: long strings, many items and deep nesting marked as cut."""
    if isinstance(value, str):
        if len(value) <= TEXT_WIDTH:
            return value
        return value[:TEXT_WIDTH] + f"… ({len(value) - TEXT_WIDTH} more characters)"
    if isinstance(value, dict | list) and depth >= MAX_DEPTH:
        return f"… (nested {MAX_DEPTH} levels deep; --json prints it whole)"
    if isinstance(value, dict):
        out = {k: bounded(v, depth + 1) for k, v in itertools.islice(value.items(), MAX_ITEMS)}
        if len(value) > MAX_ITEMS:
            out["…"] = f"{len(value) - MAX_ITEMS} more key(s); --json prints them all"
        return out
    if isinstance(value, list):
        items = [bounded(v, depth + 1) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            items.append(f"… {len(value) - MAX_ITEMS} more item(s); --json prints them all")
        return items
    return value


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
    click.echo(f"agentrace: {printable(message)}", err=True)
    sys.exit(code)


def errors_to_exit(f: F) -> F:
    """Turn agentrace's own errors into one line on stderr and a non-zero exit."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except AgentraceError as exc:
            fail(str(exc))
        except RecursionError:
            fail("the data is nested too deeply to handle (more than a few hundred levels)")
        except BrokenPipeError:
            sys.exit(0)

    return wrapper  # type: ignore[return-value]


def open_store(db: str, *, read_only: bool = True) -> Store:
    """Open ``db``; reading commands refuse a missing file rather than creating an empty one."""
    if read_only and not os.path.exists(db):
        fail(f"{db}: no such store (record one with `agentrace demo` or `agentrace import`)")
    return Store(db, read_only=read_only)


def print_json(value: Any) -> None:
    """``value`` as JSON on stdout, C1, DEL and bidi characters written ``\\uXXXX`` (the same JSON)."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    raw_stream().write(json_printable(text) + "\n")


def short(run_id: str) -> str:
    return run_id[:12]
