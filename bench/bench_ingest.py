"""OTLP → DuckDB ingest: 100,000 spans with 8 attributes each, protobuf and JSON lines.

Anchors in the same run: the floor (protobuf ParseFromString alone, no store) and
the naive path (google.protobuf.json_format.Parse of the same JSON lines).
Goals: protobuf ingest >= 300,000 spans/s, JSON lines >= 150,000 spans/s.

Cases: ``Store.ingest`` decoding in the writer's thread, and ``import_file`` of the
same requests as files (length-prefixed protobuf, JSON lines), decoded by the
worker pool (one process per core) while the writer inserts. The pool is started
before timing (a process starts it once). Memory: a 50 MiB file holding one
protobuf request, imported in a fresh interpreter; its peak resident size, with
the decoding processes' peaks added, against the file's size (goal <= 3x) and
against a bare ``ParseFromString`` of the file in another fresh interpreter.
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import tracer
from bench import Measure, best_of
from tracer._otlp import fill_attrs
from tracer._store import _workers
from tracer._store._ingest import Batch, Parsed

MEMORY_FILE = 50 << 20

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
        # Bodies as the receiver hands them over: upb's message with its wire bytes.
        with tracer.Store(tmp / f"p{next(counter)}.duckdb") as store:
            store.ingest(Parsed(b, tracer.decode_proto(b)) for b in blobs)

    def ingest_json() -> None:
        with tracer.Store(tmp / f"j{next(counter)}.duckdb") as store:
            store.ingest(orjson.loads(line) for line in lines)

    proto_file = tmp / "bench.lpb"
    proto_file.write_bytes(b"".join(len(b).to_bytes(4, "big") + b for b in blobs))
    json_file = tmp / "bench.jsonl"
    json_file.write_bytes(b"\n".join(lines) + b"\n")
    pool = _workers.pool()
    if pool is not None:  # started once per process, not per import
        pool.submit("chunk", [], None).result()

    def import_proto() -> None:
        with tracer.Store(tmp / f"fp{next(counter)}.duckdb") as store:
            assert tracer.import_file(store, proto_file).spans == SPANS

    def import_json() -> None:
        with tracer.Store(tmp / f"fj{next(counter)}.duckdb") as store:
            assert tracer.import_file(store, json_file).spans == SPANS

    # The store's own floor: DuckDB inserting the rows of the same spans, already made into
    # Arrow tables, and committing them (no decoding, no derive phase).
    batch = Batch()
    for b in blobs:
        batch.add_proto_wire(b, tracer.decode_proto(b))
    batch.resolve(batch.trace_ids)
    tables = batch.tables()

    def duckdb_only() -> None:
        with tracer.Store(tmp / f"d{next(counter)}.duckdb") as store:
            con = store._cur()
            con.execute("BEGIN TRANSACTION")
            for name, table in tables.items():
                con.from_arrow(table).insert_into(name)
            con.execute("COMMIT")

    t_floor = best_of(floor)
    t_duckdb = best_of(duckdb_only)
    t_naive = best_of(naive_json, repeat=1)
    t_proto = best_of(ingest_proto)
    t_json = best_of(ingest_json)
    t_fproto = best_of(import_proto)
    t_fjson = best_of(import_json)
    rate = lambda t: SPANS / t  # noqa: E731
    decoders = pool.n if pool is not None else 0
    mem = _memory(tmp)
    return [
        Measure("ingest", "floor: protobuf ParseFromString only", rate(t_floor), "spans/s"),
        Measure("ingest", "naive: json_format.Parse only (no store)", rate(t_naive), "spans/s"),
        Measure("ingest", "store floor: DuckDB inserting and committing the rows (Arrow)",
                rate(t_duckdb), "spans/s", f"{t_floor / t_duckdb:.3f}x the parse floor"),
        Measure("ingest", "protobuf -> DuckDB, decoded in the writer", rate(t_proto), "spans/s",
                f"{t_floor / t_proto:.3f}x floor, {t_duckdb / t_proto:.2f}x the store floor"),
        Measure("ingest", "OTLP JSON lines -> DuckDB, decoded in the writer", rate(t_json), "spans/s",
                f"{t_floor / t_json:.3f}x floor, {t_naive / t_json:.1f}x faster than naive parse"),
        Measure("ingest", f"protobuf file import, {decoders} decoding processes", rate(t_fproto),
                "spans/s", f"{t_floor / t_fproto:.3f}x floor, {t_duckdb / t_fproto:.2f}x the store floor, {t_proto / t_fproto:.2f}x the writer alone; goal 300,000"),
        Measure("ingest", f"JSON lines file import, {decoders} decoding processes", rate(t_fjson),
                "spans/s", f"{t_floor / t_fjson:.3f}x floor, {t_json / t_fjson:.2f}x the writer alone; goal 150,000"),
        *mem,
    ]  # fmt: skip


def _memory_child(mode: str, path: str) -> None:
    """Import (or only parse) ``path`` and print the peak resident bytes of this process
    and of its decoding processes."""
    import time

    from tracer import Store, decode_proto, import_file

    workers = 0
    if mode == "baseline":
        with Store(Path(path).with_suffix(".base.duckdb")):
            pass
        pool = _workers.pool()  # the decoding processes started, given nothing to decode
        if pool is not None:
            for f in [pool.submit("chunk", [], None) for _ in range(pool.n)]:
                f.result()
            for w in pool._workers:
                workers += _hwm(w.proc.pid)
    elif mode == "parse":
        with open(path, "rb") as f:
            decode_proto(f.read())
    else:
        with Store(Path(path).with_suffix(".duckdb")) as store:
            import_file(store, path)
        pool = _workers._pool
        if pool is not None:
            for w in pool._workers:
                workers += _hwm(w.proc.pid)
    time.sleep(0)
    print(_hwm(None), workers)


def _hwm(pid: int | None) -> int:
    # VmHWM, not getrusage: ru_maxrss is kept across exec, so a child started from a big
    # parent would report the parent's peak.
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1]) * 1024


def _memory(tmp: Path) -> list[Measure]:
    per = PER_REQUEST * 10
    reqs = make_requests(per, per, seed=7)
    one = reqs[0]
    spans = one.resource_spans[0].scope_spans[0].spans
    size = one.ByteSize()
    template = list(spans)
    i = 0
    while size < MEMORY_FILE:
        sp = spans.add()
        sp.CopyFrom(template[i % len(template)])
        sp.span_id = (i + 1).to_bytes(8, "big")
        sp.parent_span_id = b""
        size += sp.ByteSize() + 4
        i += 1
    path = tmp / "big.pb"
    path.write_bytes(one.SerializeToString())
    n_spans = len(spans)
    del one, reqs, template
    size = path.stat().st_size

    def child(mode: str) -> tuple[int, int]:
        out = subprocess.run(
            [sys.executable, "-c", f"from bench.bench_ingest import _memory_child; _memory_child({mode!r}, {str(path)!r})"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        own, workers = out.stdout.split()
        return int(own), int(workers)

    own, workers = child("import")
    parse, _ = child("parse")
    base, idle = child("baseline")
    mb = 1e6
    return [
        Measure("ingest", f"memory: import of a {size / mb:.0f} MB protobuf file (one request), peak", (own + workers) / mb,
                "MB", f"{(own + workers) / size:.2f}x the file (goal <= 3x): importer {own / mb:.0f} MB + decoders {workers / mb:.0f} MB; {n_spans:,} spans"),
        Measure("ingest", "  anchor: ParseFromString of the same file, peak", parse / mb, "MB",
                f"{parse / size:.2f}x the file; {(parse - base) / size:.2f}x above the interpreter"),
        Measure("ingest", "  anchor: the interpreter with agentrace and a store open, peak", base / mb, "MB",
                f"the import adds {(own - base) / size:.2f}x the file in the importer"),
        Measure("ingest", "  anchor: the decoding processes started, nothing decoded, peak", idle / mb, "MB",
                f"the import adds {(workers - idle) / size:.2f}x the file in the decoders; "
                f"{(own - base + workers - idle) / size:.2f}x in all"),
    ]  # fmt: skip
