"""``agentrace demo``: record the bundled scenarios and open the debugger on them."""

from __future__ import annotations

import click

from tracer import IngestResult, InMemorySink, Store

from .._cli_base import cli, db_option, errors_to_exit, short
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


def open_debugger(ctx: click.Context, db: str, recorded: dict[str, list[str]]) -> None:
    """Show what was recorded. The debugger is wired in here; until then, the run list."""
    ctx.invoke(runs, db=db, as_json=False)
    first = next((ids[0] for ids in recorded.values() if ids), None)
    if first is not None:
        click.echo(
            f"step through a run with `agentrace tui --db {db} --run {short(first)}`", err=True
        )


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
    if no_tui:
        ctx.invoke(runs, db=db, as_json=False)
    else:
        open_debugger(ctx, db, recorded)
