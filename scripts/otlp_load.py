"""Load an OTLP/HTTP receiver with pre-encoded protobuf requests from concurrent senders.

    python scripts/otlp_load.py http://127.0.0.1:4318/v1/traces --senders 8 --spans 50000

Every request is built before the clock starts: sender ``s`` sends ``spans /
batch`` requests, request ``i`` holding one trace of ``batch`` spans whose ids
are derived from ``(seed, s, i)``, so anyone can tell afterwards which spans a
request carried (:func:`trace_id`). Senders keep one connection each, retry 429
and 503 after the ``Retry-After`` they are given, and retry connection errors a
bounded number of times, then give up: the run always ends.

Each request answered 200 is printed as ``ack <sender> <index> <trace id>`` on
stdout, flushed, the moment its answer arrives (the kill test reads these); the
last line is a JSON summary. Loopback only: the URL must name 127.0.0.1.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import json
import sys
import threading
import time
import urllib.parse

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def trace_id(seed: int, sender: int, index: int) -> bytes:
    return hashlib.sha256(f"otlp-load/{seed}/{sender}/{index}".encode()).digest()[:16]


def build_request(seed: int, sender: int, index: int, batch: int) -> ExportTraceServiceRequest:
    """One trace of ``batch`` spans: an agent workflow's worth of nested spans."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for key, value in (("service.name", f"load-{sender}"), ("deployment.environment", "load")):
        kv = rs.resource.attributes.add()
        kv.key = key
        kv.value.string_value = value
    ss = rs.scope_spans.add()
    ss.scope.name = "otlp-load"
    tid = trace_id(seed, sender, index)
    base = 1_700_000_000_000_000_000 + index * 1_000_000
    root = b""
    for j in range(batch):
        sp = ss.spans.add()
        sp.trace_id = tid
        sp.span_id = hashlib.blake2b(tid + j.to_bytes(4, "big"), digest_size=8).digest()
        if j:
            sp.parent_span_id = root
        else:
            root = sp.span_id
        agent = f"agent-{j % 7}"
        sp.name = f"invoke_agent {agent}" if j else "invoke_workflow load"
        sp.kind = 1  # type: ignore[assignment]  # INTERNAL
        sp.start_time_unix_nano = base + j * 1_000
        sp.end_time_unix_nano = base + j * 1_000 + 900
        for key, value in (
            ("gen_ai.operation.name", "invoke_agent" if j else "invoke_workflow"),
            ("gen_ai.agent.name", agent),
            ("gen_ai.provider.name", "load"),
            ("gen_ai.request.model", "fake-model"),
        ):
            kv = sp.attributes.add()
            kv.key = key
            kv.value.string_value = value
        kv = sp.attributes.add()
        kv.key = "gen_ai.usage.input_tokens"
        kv.value.int_value = 100 + j % 50
        if j % 10 == 0:
            ev = sp.events.add()
            ev.name = "tool.result"
            ev.time_unix_nano = base + j * 1_000 + 500
            ekv = ev.attributes.add()
            ekv.key = "ok"
            ekv.value.bool_value = True
    return req


class Sender(threading.Thread):
    def __init__(
        self,
        url: str,
        index: int,
        bodies: list[bytes],
        headers: dict[str, str],
        args: argparse.Namespace,
        out: Out,
    ) -> None:
        super().__init__(daemon=True)
        self.url = urllib.parse.urlsplit(url)
        self.index = index
        self.bodies = bodies
        self.headers = headers
        self.args = args
        self.out = out
        self.acked = 0
        self.failed = 0
        self.retries = 0
        self.start_gate = threading.Event()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(
            self.url.hostname, self.url.port, timeout=self.args.timeout
        )

    def run(self) -> None:
        self.start_gate.wait()
        conn = self._connect()
        for i, body in enumerate(self.bodies):
            errors = 0
            while True:
                try:
                    conn.request("POST", self.url.path, body=body, headers=self.headers)
                    resp = conn.getresponse()
                    resp.read()
                except (OSError, http.client.HTTPException):
                    conn.close()
                    errors += 1
                    if errors > self.args.max_errors:
                        self.failed += len(self.bodies) - i
                        return  # the receiver is gone; stop, bounded
                    time.sleep(min(0.05 * errors, 1.0))  # back off before reconnecting
                    conn = self._connect()
                    continue
                if resp.status == 200:
                    self.acked += 1
                    self.out.ack(self.index, i, trace_id(self.args.seed, self.index, i).hex())
                    break
                if resp.status in (429, 503) and self.retries < self.args.max_retries:
                    self.retries += 1
                    time.sleep(float(resp.getheader("Retry-After") or 1))  # as the exporter would
                    continue
                self.failed += 1
                print(f"request {self.index}/{i}: HTTP {resp.status}", file=sys.stderr)
                break
        conn.close()


class Out:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.lock = threading.Lock()

    def ack(self, sender: int, index: int, tid: str) -> None:
        if not self.quiet:
            with self.lock:
                sys.stdout.write(f"ack {sender} {index} {tid}\n")
                sys.stdout.flush()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("--senders", type=int, default=8)
    p.add_argument("--spans", type=int, default=50_000, help="spans per sender")
    p.add_argument("--batch", type=int, default=500, help="spans per request")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--gzip", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no ack lines, only the summary")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument(
        "--max-errors", type=int, default=20, help="connection errors per request before giving up"
    )
    p.add_argument(
        "--max-retries", type=int, default=1000, help="429/503 answers per sender before giving up"
    )
    args = p.parse_args(argv)
    host = urllib.parse.urlsplit(args.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        p.error("loopback only: the URL must name 127.0.0.1")
    headers = {"Content-Type": "application/x-protobuf"}
    if args.gzip:
        headers["Content-Encoding"] = "gzip"
    out = Out(args.quiet)
    t0 = time.perf_counter()
    senders = []
    for s in range(args.senders):
        bodies = []
        for i in range(args.spans // args.batch):
            data = build_request(args.seed, s, i, args.batch).SerializeToString()
            bodies.append(gzip.compress(data, compresslevel=1) if args.gzip else data)
        senders.append(Sender(args.url, s, bodies, headers, args, out))
    built = time.perf_counter() - t0
    for sender in senders:
        sender.start()
    t1 = time.perf_counter()
    for sender in senders:
        sender.start_gate.set()
    for sender in senders:
        sender.join()
    elapsed = time.perf_counter() - t1
    acked = sum(s.acked for s in senders)
    summary = {
        "requests_acked": acked, "spans_acked": acked * args.batch, "failed": sum(s.failed for s in senders),
        "retries": sum(s.retries for s in senders), "elapsed_s": elapsed, "build_s": built,
        "spans_per_s": acked * args.batch / elapsed if elapsed else 0.0,
    }  # fmt: skip
    print(json.dumps(summary))
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
