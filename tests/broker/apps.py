"""Two small services on RabbitMQ, traced by OpenTelemetry's official pika instrumentation.

``order-service`` publishes invoices; ``billing-worker`` consumes them and charges each
one. Each is its own process with its own ``TracerProvider``, exporting through the SDK's
OTLP/HTTP exporter (``--otlp URL``) exactly as a production service would; the trace
context travels in the AMQP message headers, so a consumer's span is a child of the
producer's span in another process.

    python -m tests.broker.apps produce --url AMQP --otlp URL --publish QUEUE=MESSAGE_ID ...
    python -m tests.broker.apps consume --url AMQP --otlp URL --queue QUEUE --expect N [--lose-ack]

``consume`` prints one JSON line per delivery it handled (``message_id``, ``redelivered``,
``acked``) and exits 0 once it has handled ``--expect`` deliveries, 3 if they did not come
within ``--timeout`` seconds. ``--lose-ack`` does the work and then closes the connection
before ``basic_ack``: the broker puts the message back and delivers it again, as it does
when a worker dies between its work and its ack.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import pika
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.pika import PikaInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

PRODUCER = "order-service"
CONSUMER = "billing-worker"


def tracing(service: str, endpoint: str) -> TracerProvider:
    """A provider that batches spans and exports them at shutdown, pika instrumented through it."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    PikaInstrumentor().instrument(tracer_provider=provider)
    return provider


def produce(url: str, endpoint: str, publish: list[tuple[str, str]], run: str) -> int:
    provider = tracing(PRODUCER, endpoint)
    tracer = provider.get_tracer("order-service")
    try:
        connection = pika.BlockingConnection(pika.URLParameters(url))
        channel = connection.channel()
        channel.confirm_delivery()  # basic_publish returns once the broker has the message
        with tracer.start_as_current_span("place order", attributes={"order.run": run}):
            for queue, message_id in publish:
                channel.queue_declare(queue=queue)
                body = json.dumps({"invoice": message_id, "amount_cents": 4200})
                channel.basic_publish(
                    exchange="",
                    routing_key=queue,
                    body=body.encode(),
                    properties=pika.BasicProperties(
                        message_id=message_id, content_type="application/json", headers={}
                    ),
                )
        connection.close()
    finally:
        provider.shutdown()
    return 0


def consume(
    url: str, endpoint: str, queue: str, expect: int, lose_ack: bool, timeout: float
) -> int:
    provider = tracing(CONSUMER, endpoint)
    tracer = provider.get_tracer("billing-worker")
    handled: list[dict[str, Any]] = []
    try:
        connection = pika.BlockingConnection(pika.URLParameters(url))
        channel = connection.channel()
        channel.queue_declare(queue=queue)
        channel.basic_qos(prefetch_count=1)

        def on_message(ch: Any, method: Any, properties: pika.BasicProperties, body: bytes) -> None:
            # The instrumentation's CONSUMER span is current here: the work is its child.
            with tracer.start_as_current_span("charge invoice") as span:
                span.set_attribute("invoice.id", str(properties.message_id))
            acked = not lose_ack
            if acked:
                ch.basic_ack(delivery_tag=method.delivery_tag)
            handled.append(
                {"message_id": properties.message_id, "redelivered": bool(method.redelivered),
                 "acked": acked}
            )  # fmt: skip
            print(json.dumps(handled[-1]), flush=True)
            if len(handled) >= expect:
                ch.stop_consuming()

        channel.basic_consume(queue=queue, on_message_callback=on_message)
        connection.call_later(timeout, channel.stop_consuming)
        channel.start_consuming()
        # With --lose-ack the unacked delivery is still out: closing the connection hands it
        # back to the broker, which redelivers it with the redelivered flag set.
        connection.close()
    finally:
        provider.shutdown()
    return 0 if len(handled) >= expect else 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.broker.apps")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("produce")
    p.add_argument("--url", required=True)
    p.add_argument("--otlp", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--publish", action="append", required=True, metavar="QUEUE=MESSAGE_ID")
    c = sub.add_parser("consume")
    c.add_argument("--url", required=True)
    c.add_argument("--otlp", required=True)
    c.add_argument("--queue", required=True)
    c.add_argument("--expect", type=int, default=1)
    c.add_argument("--lose-ack", action="store_true")
    c.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.command == "produce":
        pairs = [tuple(p.split("=", 1)) for p in args.publish]
        if any(len(pair) != 2 for pair in pairs):
            parser.error("--publish takes QUEUE=MESSAGE_ID")
        return produce(args.url, args.otlp, pairs, args.run)  # type: ignore[arg-type]
    return consume(args.url, args.otlp, args.queue, args.expect, args.lose_ack, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
