"""``agentrace replay`` and ``agentrace diff``: re-run a recorded run, fork it, compare two runs."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from .._cli_base import (
    cli,
    db_option,
    errors_to_exit,
    fail,
    json_option,
    open_store,
    print_json,
    short,
)

# Exit status when a replay diverges or a check fails: as `findings --fail-on`, apart from 1
# (agentrace's own errors) and 2 (usage), so CI can tell "behaviour changed" from "did not run".
EXIT_DIVERGED = 3


def _overrides(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        agent, sep, ref = v.partition("=")
        if not sep or not agent or ":" not in ref:
            raise click.BadParameter(
                f"{v!r}: use AGENT=MODULE:FUNC (e.g. pricing=myapp.fixes:pricing)",
                param_hint="--override",
            )
        out[agent] = ref
    return out


def _writable(db: str) -> None:
    if not os.path.exists(db):
        fail(f"{db}: no such store (record one with `agentrace demo` or `agentrace import`)")


@cli.command()
@click.argument("run_id")
@click.option(
    "--from-version",
    "from_version",
    type=click.IntRange(min=1),
    default=None,
    help="Fork: replay up to this state version, then run live from there.",
)
@click.option(
    "--override",
    "overrides",
    multiple=True,
    metavar="AGENT=MODULE:FUNC",
    help="Run AGENT as FUNC (live) instead of its recorded output; repeatable. For an imported "
    "trace: check FUNC against AGENT's recorded outputs.",
)
@click.option(
    "--workflow",
    "workflow",
    default=None,
    metavar="NAME|MODULE:FACTORY",
    help="Replay with this registered workflow, or the factory MODULE:FACTORY, instead of "
    "the one the run names (which is only looked up among registered workflows, never imported).",
)
@click.option(
    "--graph",
    "graph",
    default=None,
    metavar="MODULE:ATTR",
    help="A LangGraph run: replay it with this compiled graph, each node answered from its "
    "recorded writes (with --from-version K, a fork from checkpoint K).",
)
@click.option(
    "--explore",
    "explore",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Choreographies: run N delivery schedules (reordered, duplicated, dropped) and check "
    "the --invariant functions after each.",
)
@click.option(
    "--invariant",
    "invariants",
    multiple=True,
    metavar="MODULE:FUNC",
    help="With --explore: a function of the run's result that raises AssertionError (or returns "
    "False) when broken; repeatable.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="With --explore: the first schedule's seed (schedule i uses seed + i).",
)
@click.option("--no-record", is_flag=True, help="Do not record the new run into the store.")
@db_option
@json_option
@errors_to_exit
def replay(
    run_id: str, from_version: int | None, overrides: tuple[str, ...], workflow: str | None,
    graph: str | None, explore: int | None, invariants: tuple[str, ...], seed: int, no_record: bool, db: str,
    as_json: bool,
) -> None:  # fmt: skip
    """Replay a recorded run: its workflow again, each agent fed its recorded output.

    No agent (and no model) is called: the replay compares, as it goes, the steps, each
    agent's input, the reads and every state version with the recording, and prints the
    new run's id and the first divergence. With --override an agent runs live (a patched
    function) and is compared too; with --from-version the run is replayed up to that
    version and runs live from there (a fork). The new run is recorded into the store,
    linked to the original.

    A LangGraph run (imported from its checkpointer) replays with --graph MODULE:ATTR,
    the user's compiled graph: each node answered from the update it wrote in that
    super-step, no model called; --override NODE=MODULE:FUNC runs a node live, and
    --from-version K forks from checkpoint K (live from there).

    A run recorded without a workflow (an imported trace) is listed step by step
    instead; --override AGENT=MODULE:FUNC then checks FUNC(state, input) against
    AGENT's recorded outputs.

    Exits with status 3 when the replay diverges (a check fails, an explored schedule
    breaks an invariant), 1 when it cannot run.
    """
    from engine import Replayer, TraceReplay  # the engine loads only for this command

    _writable(db)
    chosen = _overrides(overrides)
    if invariants and explore is None:
        raise click.BadParameter("give --explore N with --invariant", param_hint="--invariant")
    with open_store(db, read_only=False) as store:
        replayer = Replayer(store, record=not no_record)
        rec_run = store.run(store.resolve_run(run_id))
        if graph is not None:
            from engine import replay_graph

            if workflow is not None or explore is not None:
                raise click.BadParameter(
                    "--graph replays a LangGraph run; leave out --workflow and --explore"
                )
            replayed = replay_graph(
                store, rec_run.run_id, graph, from_version=from_version, overrides=chosen,
                record=not no_record,
            )  # fmt: skip
            _replayed(replayed, chosen, as_json)
            return
        if not rec_run.workflow_ref and workflow is None:
            _trace(TraceReplay(store, rec_run.run_id), chosen, as_json)
            return
        if explore is not None:
            if not invariants:
                raise click.BadParameter("--explore needs at least one --invariant")
            found = replayer.explore(
                rec_run.run_id, list(invariants), schedules=explore, seed=seed, workflow=workflow
            )
            _explored(found, rec_run.run_id, as_json)
            return
        if from_version is not None:
            result = replayer.fork(
                rec_run.run_id, from_version, workflow=workflow, overrides=chosen
            )
        else:
            result = replayer.replay(rec_run.run_id, workflow=workflow, overrides=chosen)
    _replayed(result, chosen, as_json)


def _replayed(result: Any, overrides: dict[str, str], as_json: bool) -> None:
    if as_json:
        print_json(result.to_json())
    else:
        if result.mode == "fork":
            click.echo(
                f"forked run {short(result.parent_run_id)} ({result.workflow}) at version "
                f"{result.fork_version}: new run {result.run_id}"
            )
        else:
            click.echo(
                f"replayed run {short(result.parent_run_id)} ({result.workflow}): "
                f"new run {result.run_id}"
            )
        if not result.recorded:
            click.echo("(not recorded: --no-record)")
        for agent, ref in sorted(overrides.items()):
            click.echo(f"override: {agent} = {ref}")
        click.echo(
            f"status: {result.status} (recorded: {result.original_status}); "
            f"{len(result.steps)} steps, {len(result.ledger)} versions"
        )
        if result.mode == "fork":
            click.echo(f"live from version {result.fork_version} on; compared before it")
        if not result.diverged:
            click.echo("no divergence")
        else:
            d = result.first_divergence
            click.echo(f"DIVERGED at {d.summary(80)}")
            more = len(result.divergences) - 1
            if more:
                click.echo(f"({more} more divergence(s); --json lists them all)")
    if result.diverged:
        raise SystemExit(EXIT_DIVERGED)


def _explored(found: Any, run_id: str, as_json: bool) -> None:
    failure = found.failure
    if as_json:
        print_json(
            {
                "run_id": run_id, "seed": found.seed, "schedules": found.schedules,
                "budget": found.budget, "ok": found.ok,
                "failure": None if failure is None else {
                    "seed": failure.seed, "invariant": failure.invariant, "message": failure.message,
                    "status": failure.status, "run_id": failure.run_id,
                    "faults": [
                        {"kind": f.kind, "topic": f.topic, "group": f.group, "attempt": f.attempt}
                        for f in failure.faults
                    ],
                },
            }
        )  # fmt: skip
    elif failure is None:
        click.echo(
            f"{found.schedules} schedule(s) of run {short(run_id)} explored "
            f"(seeds {found.seed}..{found.seed + found.schedules - 1}): every invariant held"
        )
    else:
        click.echo(f"BROKEN after {found.schedules} schedule(s): {failure}")
        if failure.run_id:
            click.echo(f"recorded as run {failure.run_id}")
        click.echo(f"reproduce: --explore 1 --seed {failure.seed}")
    if failure is not None:
        raise SystemExit(EXIT_DIVERGED)


def _short(value: Any, width: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _trace(trace: Any, overrides: dict[str, str], as_json: bool) -> None:
    if not overrides:
        if as_json:
            print_json(
                [
                    {"index": s.index, "agent": s.agent, "span_id": s.span_id, "input": s.input,
                     "output": s.output, "version_before": s.version_before,
                     "version_after": s.version_after}
                    for s in trace
                ]
            )  # fmt: skip
            return
        click.echo(
            f"run {short(trace.run_id)} ({trace.run.workflow}) records no workflow to re-execute; "
            f"its {len(trace)} agent step(s):"
        )
        for s in trace:
            where = f"v{s.version_after}" if s.version_after else ""
            click.echo(
                f"  {s.index + 1:>3} {s.agent:<20} {where:>4}  {_short(s.input, 40)} → "
                f"{_short(s.output, 60)}"
            )
        click.echo("check a re-implementation with --override AGENT=MODULE:FUNC")
        return
    checks = [trace.check(agent, ref) for agent, ref in overrides.items()]
    if as_json:
        print_json(
            [
                {"agent": ch.agent, "ok": ch.ok, "steps": len(ch.checks),
                 "divergences": [d.to_json() for d in ch.divergences]}
                for ch in checks
            ]
        )  # fmt: skip
    else:
        for ch in checks:
            if ch.ok:
                click.echo(f"{ch.agent}: {len(ch.checks)} recorded step(s), every output the same")
            else:
                click.echo(
                    f"{ch.agent}: {len(ch.mismatches)} of {len(ch.checks)} recorded step(s) differ; "
                    f"first at {ch.divergences[0].summary(80)}"
                )
    if not all(ch.ok for ch in checks):
        raise SystemExit(EXIT_DIVERGED)


@cli.command()
@click.argument("run_a")
@click.argument("run_b")
@db_option
@json_option
@errors_to_exit
def diff(run_a: str, run_b: str, db: str, as_json: bool) -> None:
    """Compare two runs: state version by version, and span by span.

    Versions show the fields that differ from A to B (each difference once, where it
    first appears); spans are matched by name and order and listed as added, missing
    or changed (outcome, status, input, output).
    """
    from engine import diff_runs

    with open_store(db) as store:
        result = diff_runs(store, run_a, run_b)
    if as_json:
        print_json(result.to_json())
        return
    click.echo(
        f"A {result.run_a} ({result.workflow_a}, {result.status_a})\n"
        f"B {result.run_b} ({result.workflow_b}, {result.status_b})"
    )
    for line in result.describe():
        click.echo(line)
