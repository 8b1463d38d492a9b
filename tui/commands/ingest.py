"""``agentrace import``: OTLP files into the store, each file one transaction."""

from __future__ import annotations

import click

from tracer import DecodeError, IngestResult, Store, expand_paths, import_file

from .._cli_base import cli, db_option, errors_to_exit


@cli.command("import")
@click.argument("files", nargs=-1, required=True)
@db_option
@click.option(
    "--format", "fmt", type=click.Choice(["auto", "otlp-json", "otlp-proto", "langgraph"]), default="auto",
    show_default=True, help="Force the input format.",
)  # fmt: skip
@click.option("--skip-bad", is_flag=True, help="Store the good records of a bad file and report the bad ones.")
@errors_to_exit
def import_(files: tuple[str, ...], db: str, fmt: str, skip_bad: bool) -> None:
    """Import OTLP files (JSON lines, JSON, protobuf; gzip; folders and globs) into the store."""
    paths = list(expand_paths(list(files)))
    total = IngestResult()
    bad_files = 0
    with Store(db) as store:
        for path in paths:
            try:
                result = import_file(store, path, fmt=fmt, skip_bad=skip_bad)  # type: ignore[arg-type]
            except DecodeError as exc:
                bad_files += 1
                click.echo(f"agentrace: {exc}", err=True)
                continue
            for err in result.errors:
                click.echo(f"agentrace: skipped: {err}", err=True)
            total += result
    click.echo(
        f"imported {len(paths) - bad_files} of {len(paths)} file(s): {total.runs} run(s), {total.spans} span(s), "
        f"{total.versions} state version(s); {total.skipped} already stored, {len(total.errors)} bad record(s) skipped"
    )
    if bad_files:
        raise SystemExit(1)
