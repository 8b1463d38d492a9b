"""Commands over the store: runs, state, export, verify."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from tracer import RunTokens, encode_json, json_printable

from .._cli_base import (
    TEXT_WIDTH,
    bounded,
    cell,
    cli,
    console,
    db_option,
    errors_to_exit,
    fail,
    json_option,
    open_store,
    print_json,
    raw_stream,
    short,
)
from .._output import OutputRefused, check_target, write_file
from .._text import error_counts, fmt_duration, fmt_when, shown_findings


def _tokens_json(tokens: RunTokens | None) -> dict[str, int]:
    t = tokens or RunTokens()
    return {"input": t.input, "output": t.output}


@cli.command()
@db_option
@json_option
@errors_to_exit
def runs(db: str, as_json: bool) -> None:
    """List the runs in the store."""
    with open_store(db) as store:
        all_runs = store.runs()
        tokens = store.run_tokens() if as_json else {}
    if as_json:
        print_json(
            [
                {
                    "run_id": r.run_id, "workflow": r.workflow, "pattern": r.pattern, "status": r.status,
                    "start_ns": r.start_ns, "duration_ns": r.duration_ns, "agents": list(r.agents),
                    "spans": r.span_count, "errors": r.error_count, "handled_errors": r.handled_error_count,
                    "tokens": _tokens_json(tokens.get(r.run_id)),
                    "versions": r.version_count, "findings": shown_findings(r), "scenario": r.scenario,
                    "parent_run_id": r.parent_run_id, "flow_id": r.flow_id,
                }
                for r in all_runs
            ]
        )  # fmt: skip
        return
    if not all_runs:
        click.echo(f"no runs in {db}")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    with_scenario = any(r.scenario for r in all_runs)
    cols = ["run", "workflow", *(["scenario"] if with_scenario else []), "pattern", "status",
            "errors", "started", "duration", "agents", "spans", "versions", "findings"]  # fmt: skip
    for col in cols:
        right = col in ("duration", "agents", "spans", "versions", "findings")
        table.add_column(col, justify="right" if right else "left", no_wrap=True)
    for r in all_runs:
        status = r.status or ""
        bad = status in ("failed", "error", "compensation_failed")
        style = "red" if bad else "yellow" if status == "compensated" else ""
        table.add_row(
            cell(short(r.run_id)), cell(r.workflow or ""),
            *([cell(r.scenario or "")] if with_scenario else []),
            cell(r.pattern or ""), f"[{style}]{cell(status)}[/]" if style else cell(status),
            error_counts(r.error_count, r.handled_error_count), fmt_when(r.start_ns),
            fmt_duration(r.duration_ns), str(len(r.agents)), str(r.span_count),
            str(r.version_count), "–" if shown_findings(r) is None else str(r.finding_count),
        )  # fmt: skip
    console().print(table)


@cli.command()
@click.argument("run_id")
@click.option(
    "--version", "-v", "version", type=int, required=True, help="The state version (1..N)."
)
@db_option
@json_option
@errors_to_exit
def state(run_id: str, version: int, db: str, as_json: bool) -> None:
    """Print a run's state document at a version (and what changed from the one before)."""
    with open_store(db) as store:
        run_id = store.resolve_run(run_id)
        doc = store.state_at(run_id, version)
        if as_json:
            print_json(doc)
            return
        meta = next(v for v in store.state_versions(run_id) if v.version == version)
        changes = store.diff(run_id, version - 1, version) if version > 1 else []
    out = console()
    out.print(
        f"[bold]run {cell(short(run_id))}  version {version}[/]  kind {cell(meta.kind)}"
        f"  by {cell(meta.agent or '-')}  span {cell(meta.span_id)}  base {meta.base_version or '-'}"
    )
    from rich.json import JSON

    # JSON escapes C0 controls; C1 and bidi characters too once written with ensure_ascii.
    out.print(JSON.from_data(bounded(doc), ensure_ascii=True))
    if changes:
        out.print(f"[bold]changed since version {version - 1}:[/]")
        for ch in changes:
            path = cell(ch.path, TEXT_WIDTH)
            old, new = cell(repr(ch.old), TEXT_WIDTH), cell(repr(ch.new), TEXT_WIDTH)
            if ch.change == "added":
                out.print(f"  [green]+ {path}[/] = {new}")
            elif ch.change == "removed":
                out.print(f"  [red]- {path}[/] (was {old})")
            else:
                out.print(f"  [yellow]~ {path}[/] {old} → {new}")


@cli.command()
@click.argument("run_id")
@click.option(
    "--format", "fmt", type=click.Choice(["otlp-json", "otlp-proto", "parquet"]), required=True
)
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(allow_dash=True),
    required=True,
    help="A new file (a folder, for parquet); - for standard output.",
)
@click.option(
    "--force", is_flag=True, help="Replace an existing file (never a link, device or folder)."
)
@db_option
@errors_to_exit
def export(run_id: str, fmt: str, output: str, force: bool, db: str) -> None:
    """Export a run as OTLP (JSON lines or protobuf) or as Parquet tables."""
    to_stdout = output == "-"
    if to_stdout and fmt == "parquet":
        fail("parquet is a folder of files: -o - cannot take it; name a folder", 2)
    if to_stdout and fmt == "otlp-proto" and raw_stream().isatty():
        fail("protobuf is binary: redirect standard output to a file, or use -o FILE", 2)
    try:
        if not to_stdout:
            check_target(Path(output), force=force, directory=fmt == "parquet")
    except OutputRefused as exc:
        fail(str(exc))
    with open_store(db) as store:
        run_id = store.resolve_run(run_id)
        if fmt == "parquet":
            try:
                written = store.export_parquet(run_id, output)
            except OSError as exc:
                fail(_cannot_write(output, exc))
            click.echo(f"wrote {len(written)} Parquet file(s) to {output}")
            return
        req = store.export_request(run_id)
    data = encode_json(req) + b"\n" if fmt == "otlp-json" else req.SerializeToString()
    n = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
    if to_stdout:
        if fmt == "otlp-json":
            # The same JSON, with C1 and bidi characters written \uXXXX for a terminal or a pager.
            data = json_printable(data.decode()).encode()
        out = raw_stream()
        out.flush()
        out.buffer.write(data)
        out.buffer.flush()
        click.echo(f"wrote {n} span(s) of run {short(run_id)} to standard output", err=True)
        return
    try:
        write_file(Path(output), data, force=force)
    except OutputRefused as exc:
        fail(str(exc))
    except OSError as exc:
        fail(_cannot_write(output, exc))
    click.echo(f"wrote {n} span(s) of run {short(run_id)} to {output}")


def _cannot_write(output: str, exc: OSError) -> str:
    return f"{output}: cannot write: {exc.strerror or exc}"


@cli.command()
@click.argument("run_id", required=False)
@db_option
@json_option
@errors_to_exit
def verify(run_id: str | None, db: str, as_json: bool) -> None:
    """Check the hash chain of state versions (every run, or one)."""
    with open_store(db) as store:
        if run_id is not None:
            run_id = store.resolve_run(run_id)
        results = store.verify(run_id)
    if as_json:
        print_json([
            {"run_id": r.run_id, "versions": r.versions, "ok": r.ok, "first_bad_version": r.first_bad_version, "detail": r.detail}
            for r in results
        ])  # fmt: skip
    else:
        for r in results:
            if r.ok:
                click.echo(f"ok   {short(r.run_id)}  {r.versions} version(s)")
            else:
                click.echo(f"BAD  {short(r.run_id)}  version {r.first_bad_version}: {r.detail}")
        bad = sum(not r.ok for r in results)
        click.echo(f"{len(results) - bad} of {len(results)} chain(s) verify")
    if any(not r.ok for r in results):
        fail(f"{sum(not r.ok for r in results)} chain(s) do not verify")
