"""``agentrace import``: OTLP files and LangGraph dumps into the store, each file one transaction."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from tracer import DecodeError, IngestResult, Redactor, Store, expand_paths, import_file

from .._cli_base import cli, db_option, errors_to_exit, fail

F = TypeVar("F", bound=Callable[..., Any])

# Below this much input a progress bar would only flicker.
_PROGRESS_BYTES = 8 * 1024 * 1024


def redact_options(f: F) -> F:
    """``--redact REGEX``, ``--redact-key KEY`` and ``--no-redact``, shared by import and serve."""
    f = click.option(
        "--no-redact",
        is_flag=True,
        help="Store spans as sent, secrets included (redaction is on by default).",
    )(f)
    f = click.option(
        "--redact-key", "redact_keys", multiple=True, metavar="KEY",
        help="Also replace the whole value of this attribute key (repeatable).",
    )(f)  # fmt: skip
    return click.option(
        "--redact", "redact_patterns", multiple=True, metavar="REGEX",
        help="Also replace what this regular expression matches (repeatable; a group named 'secret' limits it).",
    )(f)  # fmt: skip


def make_redactor(patterns: tuple[str, ...], keys: tuple[str, ...], off: bool) -> Redactor | None:
    if off:
        if patterns or keys:
            fail("--no-redact cannot be combined with --redact or --redact-key", 2)
        return None
    if not patterns and not keys:
        return Redactor.default()
    try:
        return Redactor(patterns, keys)
    except ValueError as exc:
        fail(str(exc), 2)
        raise  # unreachable: fail exits


@cli.command("import")
@click.argument("files", nargs=-1, required=True)
@db_option
@click.option(
    "--format", "fmt", type=click.Choice(["auto", "otlp-json", "otlp-proto", "langgraph"]), default="auto",
    show_default=True, help="Force the input format (auto tells them apart by their first bytes).",
)  # fmt: skip
@click.option(
    "--skip-bad", is_flag=True, help="Store the good records of a bad file and report the bad ones."
)
@redact_options
@click.option(
    "--progress/--no-progress",
    "show_progress",
    default=None,
    help="A progress bar (default: on a terminal, for large inputs).",
)
@errors_to_exit
def import_(
    files: tuple[str, ...],
    db: str,
    fmt: str,
    skip_bad: bool,
    redact_patterns: tuple[str, ...],
    redact_keys: tuple[str, ...],
    no_redact: bool,
    show_progress: bool | None,
) -> None:
    """Import OTLP trace files and LangGraph state history dumps into the store.

    FILES may be files, folders (every file under them) and glob patterns. Read:
    OTLP/JSON lines as the collector's file exporter writes them, a single OTLP/JSON
    request, raw or 4-byte length-prefixed protobuf (the file exporter's `format:
    proto` and `compression: zstd`), gzip or zstd compressed; and LangGraph
    `get_state_history` dumps (JSON), whose snapshots become state versions.
    Each file is one transaction; secrets are redacted before anything is written.
    """
    redactor = make_redactor(redact_patterns, redact_keys, no_redact)
    paths = list(expand_paths(list(files)))
    total_bytes = sum(_size(p) for p in paths)
    console = Console(stderr=True)
    if show_progress is None:
        show_progress = console.is_terminal and total_bytes >= _PROGRESS_BYTES
    total = IngestResult()
    missing = [p for p in paths if not p.is_file()]
    for p in missing:
        click.echo(f"agentrace: {p}: no such file", err=True)
    if len(missing) == len(paths):
        # Nothing to read: refuse before the store is created or touched.
        raise SystemExit(1)
    named, bad_files = len(paths), len(missing)
    paths = [p for p in paths if p not in missing]
    sizes = [_size(p) for p in paths]
    with Store(db) as store:
        store.redactor = redactor
        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), console=console, disable=not show_progress, transient=True,
        )  # fmt: skip
        with progress:
            task = progress.add_task("importing", total=total_bytes or None)
            done_before = 0
            for path, size in zip(paths, sizes, strict=True):
                progress.update(task, description=_short(path), completed=done_before)
                base = done_before

                def advance(nbytes: int, base: int = base) -> None:
                    progress.update(task, completed=base + nbytes)

                try:
                    result = import_file(store, path, fmt=fmt, skip_bad=skip_bad, progress=advance)  # type: ignore[arg-type]
                except DecodeError as exc:
                    bad_files += 1
                    _say(progress, f"agentrace: {exc}")
                else:
                    for err in result.errors:
                        _say(progress, f"agentrace: skipped: {err}")
                    total += result
                done_before += size
    click.echo(
        f"imported {named - bad_files} of {named} file(s): {total.runs} run(s), {total.spans} span(s), "
        f"{total.versions} state version(s); {total.skipped} already stored, {len(total.errors)} bad record(s) skipped"
    )
    if bad_files or (total.errors and not total.spans and not total.skipped):
        # Skipping bad records that leaves nothing imported is a failure too.
        sys.exit(1)


def _say(progress: Progress, line: str) -> None:
    # One line per problem, never wrapped: scripts grep these.
    progress.console.print(line, markup=False, highlight=False, soft_wrap=True)


def _size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _short(path: Path) -> str:
    name = path.name
    return name if len(name) <= 32 else name[:14] + "…" + name[-17:]
