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
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._receiver import MAX_BODY, Job, Outcome, Writer, bearer_ok, settle, success_body

_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
DEFAULT_GRPC_PORT = 4317


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
) -> GrpcReceiver:
    """Serve OTLP/gRPC on ``host:port`` (0 picks a free port) into ``writer``."""
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

        def done(outcome: Outcome) -> None:
            loop.call_soon_threadsafe(settle, fut, outcome)

        peer = context.peer() or "?"
        if not writer.try_submit(
            Job(body, "proto", "identity", done, source=f"gRPC export from {peer}")
        ):
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, "the receiver is behind or stopping; retry later"
            )
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
    ]
    server = grpc.aio.server(options=options)
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
