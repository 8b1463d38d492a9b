"""``agentrace serve``: an OTLP/HTTP receiver (and optionally OTLP/gRPC) writing into the store."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from tracer import Store

from .._cli_base import cli, db_option, errors_to_exit, fail
from .ingest import make_redactor, redact_options


@cli.command()
@db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=4318,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="OTLP/HTTP port (0: any free one).",
)
@click.option(
    "--grpc-port", type=click.IntRange(0, 65535), default=None,
    help="Also receive OTLP/gRPC on this port (4317 is the usual one; needs grpcio).",
)  # fmt: skip
@click.option(
    "--token", envvar="AGENTRACE_TOKEN", default=None, show_envvar=True,
    help="Require `Authorization: Bearer TOKEN` on every request.",
)  # fmt: skip
@click.option(
    "--max-body-mib", default=64, show_default=True, type=click.IntRange(1, 1024),
    help="Largest request body accepted, after decompression (413 above it).",
)  # fmt: skip
@redact_options
@errors_to_exit
def serve(
    db: str,
    host: str,
    port: int,
    grpc_port: int | None,
    token: str | None,
    max_body_mib: int,
    redact_patterns: tuple[str, ...],
    redact_keys: tuple[str, ...],
    no_redact: bool,
) -> None:
    """Receive OTLP traces over HTTP (POST /v1/traces, protobuf or JSON) into the store.

    Point an OpenTelemetry exporter or collector at http://HOST:PORT (the
    exporter appends /v1/traces). A request is answered once its spans are
    committed; Ctrl-C (or SIGTERM) stops taking requests, writes what was
    received, and exits.
    """
    redactor = make_redactor(redact_patterns, redact_keys, no_redact)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("agentrace serve: %(message)s"))
    logger = logging.getLogger("agentrace")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    from tracer import serve as run_receiver

    if token is None and host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning(
            "listening on %s without --token: anyone who can reach it can write to %s", host, db
        )

    def ready(receiver: Any, grpc_server: Any) -> None:
        # One line on stdout that scripts can wait for: where to send spans.
        click.echo(
            f"listening on {receiver.url}"
            + (f" and grpc://{host}:{grpc_server.port}" if grpc_server else "")
        )
        sys.stdout.flush()

    with Store(db) as store:
        store.redactor = redactor
        try:
            stats = run_receiver(
                store,
                host,
                port,
                token,
                grpc_port=grpc_port,
                on_ready=ready,
                max_body=max_body_mib * 1024 * 1024,
            )
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
            return
        except RuntimeError as exc:
            fail(str(exc))
            return
    click.echo(
        f"stopped: {stats.requests} request(s), {stats.spans} span(s) accepted ({stats.stored} new), "
        f"{stats.rejected_spans} refused, {stats.refused} request(s) refused, {stats.failed} failed",
        err=True,
    )
