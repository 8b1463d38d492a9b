"""``agentrace tui``: the terminal debugger (Textual is imported only when it runs)."""

from __future__ import annotations

import os

import click

from .._cli_base import cli, db_option, errors_to_exit, fail
from .serve import listen_warnings, token_option


@cli.command("tui")
@db_option
@click.option("--run", "run_id", default=None, help="Open this run (an id prefix is enough).")
@click.option("--listen", type=click.IntRange(1, 65535), default=None, metavar="PORT",
              help="Host the OTLP/HTTP receiver on PORT and show runs as their spans arrive.")  # fmt: skip
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface for --listen.")
@token_option
@errors_to_exit
def tui_command(
    db: str, run_id: str | None, listen: int | None, host: str, token: str | None
) -> None:
    """Step through runs: coordination graph, waterfall, state versions, findings."""
    if listen is None and not os.path.exists(db):
        fail(f"{db}: no such store (record one with `agentrace demo` or `agentrace import`)")
    if listen is not None:
        for warning in listen_warnings(host, token, False, db):
            click.echo(f"agentrace tui: {warning}", err=True)
    from ..app import run_app

    run_app(db, run_id=run_id, listen=listen, host=host, token=token)
