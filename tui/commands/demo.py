"""``agentrace demo``: record the bundled scenarios and open the debugger on them."""

from __future__ import annotations

import sys

import click

from tracer import IngestResult, InMemorySink, Store

from .._cli_base import cli, db_option, errors_to_exit
from .store import runs


def record_scenarios(db: str, which: str) -> dict[str, list[str]]:
    """Record scenario ``which`` (or all) into the store ``db``; run ids per scenario.

    The scenarios run on virtual time with seeded ids, so this takes a second or two and
    records the same runs as ``sample_traces/``; recording them again into the same
    store adds nothing (every span is already there).
    """
    from engine import scenarios  # the engine loads only for this command

    chosen = scenarios.names(which)  # an unknown name is refused before the store is touched
    recorded: dict[str, list[str]] = {}
    got = IngestResult()
    with Store(db) as store:
        for name in chosen:
            # Recorded in memory, then stored in one transaction: a scenario is stored whole or
            # not at all, and one ingest of 50 runs costs what one ingest of a single run does.
            sink = InMemorySink()
            recorded.update(scenarios.record(name, sink))
            got += store.ingest(sink.requests, source=f"scenario {name}")
    n_runs = sum(len(ids) for ids in recorded.values())
    again = f"; {got.skipped} already in the store" if got.skipped else ""
    click.echo(
        f"recorded {len(recorded)} scenario(s), {n_runs} run(s), {got.spans} new span(s){again} into {db}",
        err=True,
    )
    return recorded


def analyse(db: str, recorded: dict[str, list[str]]) -> str | None:
    """Store the findings of every recorded run; the first run with a stale read, if any.

    The debugger and ``agentrace runs`` show stored findings, so the demo analyses
    what it recorded (a few hundred milliseconds for all the scenarios).
    """
    from tracer.analysis import analyze

    first_stale = None
    with Store(db) as store:
        for ids in recorded.values():
            for run_id in ids:
                found = analyze(store, run_id)
                if first_stale is None and any(f.kind == "stale_read" for f in found):
                    first_stale = run_id
    return first_stale


def open_debugger(ctx: click.Context, db: str, run_id: str | None) -> None:
    """Open the debugger on the store (on ``run_id``); without a terminal, list the runs."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        ctx.invoke(runs, db=db, as_json=False)
        click.echo("no terminal here: open the debugger with `agentrace tui` in one", err=True)
        return
    from ..app import run_app  # Textual loads only now

    run_app(db, run_id=run_id)


@cli.command()
@click.option(
    "--scenario",
    default="all",
    show_default=True,
    help="credit, credit-fixed, trading-saga, flaky, low-confidence (and any other bundled one), or all.",
)
@db_option
@click.option("--no-tui", is_flag=True, help="Record and list the runs; do not open the debugger.")
@click.pass_context
@errors_to_exit
def demo(ctx: click.Context, scenario: str, db: str, no_tui: bool) -> None:
    """Record the bundled scenarios into the store and open the debugger on them."""
    recorded = record_scenarios(db, scenario)
    stale = analyse(db, recorded)
    if no_tui:
        ctx.invoke(runs, db=db, as_json=False)
    else:
        # Straight onto the credit story when it was recorded: press `f` for the stale read.
        open_debugger(ctx, db, stale)
