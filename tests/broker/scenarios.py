"""The three runs of the broker tests, each a few real processes of :mod:`tests.broker.apps`.

- ``duplicate``: ``order-service`` publishes invoice ``inv-dup-1``; a ``billing-worker``
  charges it and loses its ack (its connection closes first); the broker redelivers it and a
  second ``billing-worker`` charges it again and acks. One message, two deliveries, the work
  done twice.
- ``lost``: ``order-service`` publishes ``inv-lost-1`` to ``invoices`` and ``audit-lost-1`` to
  ``audit-log``; a ``billing-worker`` handles the invoice; nobody consumes ``audit-log``.
- ``control``: one invoice, published, charged once, acked.

Every run is one trace: the consumer's span is a child of the producer's, through the
``traceparent`` header the instrumentation puts in the message. The root span,
``place order``, carries ``order.run`` = the run's name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("duplicate", "lost", "control")
TIMEOUT = 120  # seconds for one process, far beyond the second or two each takes

# (queue, message id) published by each run, and the consumers run after it: (queue, lose ack).
PUBLISH: dict[str, list[tuple[str, str]]] = {
    "duplicate": [("invoices", "inv-dup-1")],
    "lost": [("invoices", "inv-lost-1"), ("audit-log", "audit-lost-1")],
    "control": [("invoices", "inv-ok-1")],
}
CONSUMERS: dict[str, list[tuple[str, bool]]] = {
    "duplicate": [("invoices", True), ("invoices", False)],
    "lost": [("invoices", False)],
    "control": [("invoices", False)],
}


def _app(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.broker.apps", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(
            f"tests.broker.apps {args[0]} exited {done.returncode}: {done.stderr.strip()[-2000:]}"
        )
    return done


def run(name: str, amqp_url: str, otlp_endpoint: str) -> list[dict[str, Any]]:
    """Run scenario ``name`` against the broker; the deliveries its consumers handled, in order."""
    publish = [f"{queue}={message_id}" for queue, message_id in PUBLISH[name]]
    _app(
        "produce", "--url", amqp_url, "--otlp", otlp_endpoint, "--run", name,
        *[arg for p in publish for arg in ("--publish", p)],
    )  # fmt: skip
    deliveries: list[dict[str, Any]] = []
    for queue, lose_ack in CONSUMERS[name]:
        args = ["consume", "--url", amqp_url, "--otlp", otlp_endpoint, "--queue", queue]
        out = _app(*args, *(["--lose-ack"] if lose_ack else []))
        deliveries.extend(json.loads(line) for line in out.stdout.splitlines() if line.strip())
    return deliveries
