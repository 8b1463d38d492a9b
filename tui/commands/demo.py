"""``agentrace demo``: record the bundled scenarios and open the debugger on them."""

from __future__ import annotations

import click

from tracer import DuckDBSink, Recorder, Store, chain_hash

from .._cli_base import cli, db_option, errors_to_exit
from .store import runs


def _record_smoke_run(store: Store) -> None:
    # A small two-agent run, until the bundled engine scenarios exist.
    rec = Recorder(DuckDBSink(store))
    root = rec.start_span(
        "invoke_workflow hello",
        attributes={"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": "hello",
                    "agentrace.run.pattern": "orchestration", "agentrace.run.status": "completed"},
    )  # fmt: skip
    doc: dict[str, object] = {"greeting": None}
    h = chain_hash("", doc)
    with rec.start_span("invoke_agent writer", parent=root, attributes={"gen_ai.agent.name": "writer"}) as s:
        s.commit_state(version=1, snapshot=doc, hash=h, kind="initial", agent="writer")
        new = {"greeting": "hello"}
        s.commit_state(version=2, snapshot=new, parent_snapshot=doc, parent_version=1, base_version=1,
                       hash=chain_hash(h, new), agent="writer")  # fmt: skip
    root.end()
    rec.close()


@cli.command()
@click.option("--scenario", default="all", show_default=True, help="A bundled scenario, or all.")
@db_option
@click.option("--no-tui", is_flag=True, help="Record only; do not open the debugger.")
@click.pass_context
@errors_to_exit
def demo(ctx: click.Context, scenario: str, db: str, no_tui: bool) -> None:
    """Record the bundled scenarios into the store and open the debugger on them."""
    with Store(db) as store:
        _record_smoke_run(store)
    ctx.invoke(runs, db=db, as_json=False)
