"""``agentrace serve``: an OTLP/HTTP receiver (and optionally OTLP/gRPC) writing into the store."""

from __future__ import annotations

import ipaddress
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from tracer import Store

from .._cli_base import cli, db_option, errors_to_exit, fail
from .ingest import make_redactor, redact_options

F = TypeVar("F", bound=Callable[..., Any])


def token_option(f: F) -> F:
    """``--token`` (or $AGENTRACE_TOKEN, preferred: a command line is visible to every user)."""
    return click.option(
        "--token", envvar="AGENTRACE_TOKEN", default=None, show_envvar=True,
        help="Require `Authorization: Bearer TOKEN` on every request "
        "(prefer the environment variable: other users can read a command line).",
    )(f)  # fmt: skip


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def listen_warnings(host: str, token: str | None, tls: bool, what: str) -> list[str]:
    """Refuse an empty host; what to say about listening on ``host`` (nothing on loopback)."""
    if not host.strip():
        fail('--host "" would listen on every interface; name one (0.0.0.0 for all of them)', 2)
    source = click.get_current_context().get_parameter_source("token")
    out = []
    if token is not None and source == click.core.ParameterSource.COMMANDLINE:
        out.append(
            "--token on the command line is visible to other users (ps); "
            "prefer AGENTRACE_TOKEN in the environment"
        )
    if is_loopback(host):
        return out
    if token is None:
        out.append(
            f"listening on {host} without a token: anyone who can reach it can write to {what}"
        )
    if not tls:
        out.append(
            f"listening on {host} without TLS: spans and the token cross the network in clear "
            "text (--tls-cert and --tls-key)"
        )
    return out


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
@token_option
@click.option(
    "--tls-cert", type=click.Path(dir_okay=False), default=None,
    help="Serve HTTPS (and gRPC over TLS) with this PEM certificate chain (with --tls-key).",
)  # fmt: skip
@click.option(
    "--tls-key", type=click.Path(dir_okay=False), default=None, help="The certificate's PEM key."
)
@click.option(
    "--max-connections", default=256, show_default=True, type=click.IntRange(1, 100_000),
    help="Open connections at most; over it a connection gets 503 and is closed.",
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
    tls_cert: str | None,
    tls_key: str | None,
    max_connections: int,
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
    if (tls_cert is None) != (tls_key is None):
        fail("--tls-cert and --tls-key go together", 2)
    warnings = listen_warnings(host, token, tls_cert is not None, db)
    redactor = make_redactor(redact_patterns, redact_keys, no_redact)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("agentrace serve: %(message)s"))
    logger = logging.getLogger("agentrace")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    from tracer import serve as run_receiver

    for warning in warnings:
        logger.warning("%s", warning)

    def ready(receiver: Any, grpc_server: Any) -> None:
        # One line on stdout that scripts can wait for: where to send spans.
        grpc_scheme = "grpcs" if tls_cert else "grpc"
        click.echo(
            f"listening on {receiver.url}"
            + (f" and {grpc_scheme}://{host}:{grpc_server.port}" if grpc_server else "")
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
                max_connections=max_connections,
                tls=(tls_cert, tls_key) if tls_cert and tls_key else None,
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
