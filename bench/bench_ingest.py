"""OTLP → DuckDB ingest: 100,000 spans with 8 attributes each, protobuf and JSON lines.

Anchors in the same run: the floor (protobuf ParseFromString alone, no store) and
the naive path (google.protobuf.json_format.Parse of the same JSON lines).
Goals: protobuf ingest >= 300,000 spans/s, JSON lines >= 150,000 spans/s.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import orjson
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import tracer
from bench import Measure, best_of
from tracer._otlp import fill_attrs

SPANS = 100_000
PER_REQUEST = 1_000


def make_requests(
    n_spans: int = SPANS, per_request: int = PER_REQUEST, seed: int = 1
) -> list[ExportTraceServiceRequest]:
    """Agent-like spans: 8 attributes each (strings, ints, a double, a bool), 1,000 per request."""
    rng = random.Random(seed)
    agents = ["intake", "score", "risk", "pricing", "decision"]
    requests = []
    t0 = 1_700_000_000_000_000_000
    for r in range(n_spans // per_request):
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        fill_attrs(rs.resource.attributes, {"service.name": "bench"})
        ss = rs.scope_spans.add()
        ss.scope.name = "bench"
        trace_id = rng.getrandbits(128).to_bytes(16, "big")
        parent = b""
        for i in range(per_request):
            sp = ss.spans.add()
            sp.trace_id = trace_id
            sp.span_id = rng.getrandbits(64).to_bytes(8, "big") or b"\x01" * 8
            sp.parent_span_id = parent
            if i == 0:
                parent = sp.span_id
            agent = agents[i % 5]
            sp.name = f"invoke_agent {agent}"
            sp.kind = 1
            sp.start_time_unix_nano = t0 + (r * per_request + i) * 1000
            sp.end_time_unix_nano = sp.start_time_unix_nano + 900
            fill_attrs(sp.attributes, {
                "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent,
                "gen_ai.provider.name": "agentrace", "gen_ai.conversation.id": trace_id.hex(),
                "agentrace.agent.step": i, "agentrace.agent.attempt": 1, "score": rng.random(),
                "ok": True,
            })  # fmt: skip
        requests.append(req)
    return requests


def run() -> list[Measure]:
    requests = make_requests()
    blobs = [r.SerializeToString() for r in requests]
    lines = [tracer.encode_json(r) for r in requests]

    def floor() -> None:
        for b in blobs:
            ExportTraceServiceRequest().ParseFromString(b)

    def naive_json() -> None:
        for line in lines:
            json_format.Parse(line, ExportTraceServiceRequest(), ignore_unknown_fields=True)

    tmp = Path(tempfile.mkdtemp())
    counter = iter(range(1_000))

    def ingest_proto() -> None:
        with tracer.Store(tmp / f"p{next(counter)}.duckdb") as store:
            store.ingest(tracer.decode_proto(b) for b in blobs)

    def ingest_json() -> None:
        with tracer.Store(tmp / f"j{next(counter)}.duckdb") as store:
            store.ingest(orjson.loads(line) for line in lines)

    t_floor = best_of(floor)
    t_naive = best_of(naive_json, repeat=1)
    t_proto = best_of(ingest_proto)
    t_json = best_of(ingest_json)
    rate = lambda t: SPANS / t  # noqa: E731
    return [
        Measure("ingest", "floor: protobuf ParseFromString only", rate(t_floor), "spans/s"),
        Measure("ingest", "naive: json_format.Parse only (no store)", rate(t_naive), "spans/s"),
        Measure("ingest", "protobuf -> DuckDB", rate(t_proto), "spans/s",
                f"{t_floor / t_proto:.2f}x floor; goal 300,000"),
        Measure("ingest", "OTLP JSON lines -> DuckDB", rate(t_json), "spans/s",
                f"{t_floor / t_json:.2f}x floor, {t_naive / t_json:.1f}x faster than naive parse; goal 150,000"),
    ]  # fmt: skip
