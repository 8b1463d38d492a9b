"""The OTLP/gRPC receiver (``TraceService/Export`` on 4317): an optional extra (grpcio).

It shares the HTTP receiver's writer, so both ports feed one thread and one
transaction stream. Bodies arrive as bytes (grpc has already undone its own
compression) and are decoded by the writer. An export is answered after its
spans are committed: OK with ``partial_success`` when some spans were refused,
INVALID_ARGUMENT for a request that does not decode, RESOURCE_EXHAUSTED for one
over the size cap, UNAVAILABLE (retryable) when the writer is behind or the
store cannot be written, UNAUTHENTICATED without the bearer token when one is
set (the scheme in any case). With ``tls`` (PEM key and certificate chain) it
serves over TLS. Runs on the caller's asyncio loop (grpc.aio).

Bounded as the HTTP receiver is: a message over the size cap is refused by grpc
itself, at most ``MAX_CONNECTIONS`` calls run at once (grpc answers the rest
RESOURCE_EXHAUSTED), each call's bytes count against the bytes-in-flight budget
(``in_flight``: share the HTTP receiver's so the two ports hold one budget;
UNAVAILABLE when it is spent), and a connection idle for a minute is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._guard import InFlight
from ._receiver import (
    MAX_BODY,
    MAX_CONNECTIONS,
    MAX_PENDING,
    Job,
    Outcome,
    Writer,
    bearer_ok,
    settle,
    success_body,
)

_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
DEFAULT_GRPC_PORT = 4317
IDLE_MS = 60_000  # a connection with no call for this long is closed


class GrpcReceiver:
    """A started gRPC server feeding ``writer``; ``await close()`` stops it (after in-flight calls)."""

    def __init__(self, server: Any, port: int) -> None:
        self._server = server
        self.port = port

    async def close(self, grace: float = 10.0) -> None:
        await self._server.stop(grace)


async def start_grpc_receiver(
    writer: Writer,
    host: str = "127.0.0.1",
    port: int = DEFAULT_GRPC_PORT,
    *,
    token: str | None = None,
    tls: tuple[bytes, bytes] | None = None,
    in_flight: InFlight | None = None,
    max_calls: int = MAX_CONNECTIONS,
) -> GrpcReceiver:
    """Serve OTLP/gRPC on ``host:port`` (0 picks a free port) into ``writer``; bodies count
    against ``in_flight`` (a budget of its own unless given one)."""
    budget = in_flight if in_flight is not None else InFlight(MAX_PENDING)
    try:
        import grpc
    except ImportError as exc:  # pragma: no cover - the extra is installed in development
        raise RuntimeError("the gRPC receiver needs grpcio: pip install 'agentrace[grpc]'") from exc

    codes = {400: grpc.StatusCode.INVALID_ARGUMENT, 413: grpc.StatusCode.RESOURCE_EXHAUSTED}

    async def export(body: bytes, context: Any) -> bytes:
        if token is not None:
            sent = dict(context.invocation_metadata() or ()).get("authorization", "")
            if not bearer_ok(str(sent), token):
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a bearer token is required")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Outcome] = loop.create_future()

        held = len(body)

        def done(outcome: Outcome) -> None:
            budget.release(held)
            loop.call_soon_threadsafe(settle, fut, outcome)

        peer = context.peer() or "?"
        behind = "the receiver is behind or stopping; retry later"
        if not budget.reserve(held):
            await context.abort(grpc.StatusCode.UNAVAILABLE, behind)
        job = Job(body, "proto", "identity", done, source=f"gRPC export from {peer}")
        if not writer.try_submit(job):
            budget.release(held)
            await context.abort(grpc.StatusCode.UNAVAILABLE, behind)
        outcome = await asyncio.shield(fut)
        if outcome.status == 200:
            return success_body(outcome, "proto")
        await context.abort(codes.get(outcome.status, grpc.StatusCode.UNAVAILABLE), outcome.message)
        raise AssertionError("unreachable")  # abort raises

    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(export)},
    )
    options = [
        ("grpc.max_receive_message_length", MAX_BODY),
        ("grpc.max_send_message_length", 4 * 1024 * 1024),
        ("grpc.max_connection_idle_ms", IDLE_MS),
    ]
    server = grpc.aio.server(options=options, maximum_concurrent_rpcs=max_calls)
    server.add_generic_rpc_handlers((handler,))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if tls is not None:
        bound = server.add_secure_port(address, grpc.ssl_server_credentials([tls]))
    else:
        bound = server.add_insecure_port(address)
    if not bound:
        raise OSError(f"cannot listen on {host}:{port}")
    await server.start()
    return GrpcReceiver(server, bound)


__all__ = ["DEFAULT_GRPC_PORT", "GrpcReceiver", "start_grpc_receiver"]
