"""``agentrace serve``'s receiver against the official OTLP/HTTP exporter, JSON bodies and bad requests."""

from __future__ import annotations

import gzip
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard
from google.rpc import status_pb2
from opentelemetry import trace as otel
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tracer as t
from tracer._receiver import Job, Writer

from .helpers import (
    DAMAGED,
    FOREIGN,
    FRAMEWORKS,
    ThreadedReceiver,
    counts,
    post,
    span_rows,
)

PROTO = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


def _make_spans(tracer: otel.Tracer, tag: str) -> None:
    """A small agent run through the OpenTelemetry API: nesting, every attribute type, events, links."""
    with tracer.start_as_current_span(
        f"invoke_workflow {tag}",
        attributes={"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": tag},
    ) as root:
        with tracer.start_as_current_span(
            "invoke_agent planner",
            kind=otel.SpanKind.INTERNAL,
            attributes={
                "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner", "ratio": 0.25,
                "count": 7, "ok": True, "tags": ("a", "b"), "nums": (1, 2, 3), "text": "ünïcödé ✓",
            },
        ) as step:  # fmt: skip
            step.add_event("thinking", {"depth": 2, "why": "because"})
            with tracer.start_as_current_span(
                "execute_tool search", attributes={"gen_ai.tool.name": "search"}
            ):
                pass
        with tracer.start_as_current_span(
            "send tasks", kind=otel.SpanKind.PRODUCER, links=[otel.Link(root.get_span_context(), {"why": "fan-out"})],
            attributes={"messaging.destination.name": "tasks", "messaging.message.id": "m1"},
        ):  # fmt: skip
            pass
        with tracer.start_as_current_span(
            "invoke_agent critic", attributes={"gen_ai.agent.name": "critic"}
        ) as bad:
            bad.set_status(otel.Status(otel.StatusCode.ERROR, "refused"))
            bad.record_exception(ValueError("nope"))


def _provider(exporter: Any) -> tuple[TracerProvider, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "receiver-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_the_official_exporter_spans_arrive_whole(tmp_path: Path, compression: Compression) -> None:
    store = t.Store(tmp_path / "r.duckdb")
    with ThreadedReceiver(store) as rx:
        provider, memory = _provider(OTLPSpanExporter(endpoint=rx.url, compression=compression))
        for i in range(3):
            _make_spans(provider.get_tracer("test"), f"run-{i}")
        provider.shutdown()
        assert rx.receiver.stats.requests == len(memory.get_finished_spans())  # one POST per span
    # What the exporter sent, encoded by its own encoder and stored directly, is what arrived.
    reference = t.Store(":memory:")
    reference.ingest([encode_spans(memory.get_finished_spans())])
    assert span_rows(store) == span_rows(reference)
    assert len(store.runs()) == 3
    # "send tasks" is sent from the root, under no agent: its service sent it.
    assert {a for r in store.runs() for a in r.agents} == {"planner", "critic", "receiver-test"}


def test_fixture_traces_post_as_protobuf_and_as_json_like_an_import(tmp_path: Path) -> None:
    via_pb, via_json = t.Store(tmp_path / "pb.duckdb"), t.Store(tmp_path / "json.duckdb")
    with ThreadedReceiver(via_pb) as rx:
        for name in FRAMEWORKS:
            status, headers, body = post(rx.url, (FOREIGN / f"{name}.pb").read_bytes(), PROTO)
            assert status == 200 and headers["Content-Type"] == "application/x-protobuf"
            resp = ExportTraceServiceResponse()
            resp.ParseFromString(body)
            assert not resp.HasField("partial_success")
    with ThreadedReceiver(via_json) as rx:
        for name in FRAMEWORKS:
            for line in (FOREIGN / f"{name}.jsonl").read_bytes().splitlines():
                status, headers, body = post(rx.url, line, JSON)
                assert (status, body) == (200, b"{}") and headers["Content-Type"].startswith(
                    "application/json"
                )
    imported = t.Store(":memory:")
    for name in FRAMEWORKS:
        t.import_file(imported, FOREIGN / f"{name}.pb")
    assert span_rows(via_pb) == span_rows(via_json) == span_rows(imported)
    # LangGraph state rebuilt for the traces that came in over HTTP, as on import.
    assert counts(via_pb)["state_versions"] == counts(imported)["state_versions"] > 0


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd", "identity"])
def test_compressed_bodies(tmp_path: Path, encoding: str) -> None:
    body = (FOREIGN / "pydantic_ai.pb").read_bytes()
    packed = {
        "gzip": gzip.compress, "deflate": zlib.compress, "zstd": zstandard.ZstdCompressor().compress,
        "identity": lambda b: b,
    }[encoding](body)  # fmt: skip
    store = t.Store(tmp_path / "s.duckdb")
    with ThreadedReceiver(store) as rx:
        status, _, _ = post(rx.url, packed, {**PROTO, "Content-Encoding": encoding})
    assert status == 200 and counts(store)["spans"] == 8


def _status(body: bytes, json: bool) -> tuple[int, str]:
    if json:
        obj = orjson.loads(body)
        return obj["code"], obj["message"]
    st = status_pb2.Status()
    st.ParseFromString(body)
    return st.code, st.message


def test_spans_that_cannot_be_stored_are_a_partial_success(tmp_path: Path) -> None:
    store = t.Store(tmp_path / "s.duckdb")
    line = (DAMAGED / "end_before_start.jsonl").read_bytes().strip()
    with ThreadedReceiver(store) as rx:
        status, _, body = post(rx.url, line, JSON)
        assert status == 200
        partial = orjson.loads(body)["partialSuccess"]
        assert partial["rejectedSpans"] == "1"
        assert (
            "execute_tool ask_researcher" in partial["errorMessage"]
            and "ends before it starts" in partial["errorMessage"]
        )
        assert counts(store)["spans"] == 7  # the seven good spans, once
        # The same span id with other content than the stored one: refused, the rest skipped.
        conflict = (DAMAGED / "duplicate_conflict.jsonl").read_bytes().splitlines()[1]
        status, _, body = post(rx.url, conflict, JSON)
        partial = orjson.loads(body)["partialSuccess"]
        assert status == 200 and partial["rejectedSpans"] == "1"
        assert "already stored with different content" in partial["errorMessage"]
        # In protobuf, the response is an ExportTraceServiceResponse with partial_success.
        other_trace = t.decode_json(
            line.replace(b"f33a8df06150f69aa099de241054a283", b"0" * 31 + b"1")
        )
        status, _, body = post(rx.url, other_trace.SerializeToString(), PROTO)
        resp = ExportTraceServiceResponse()
        resp.ParseFromString(body)
        assert status == 200 and resp.partial_success.rejected_spans == 1
        assert "ends before it starts" in resp.partial_success.error_message
        assert counts(store)["spans"] == 14
        # Ids in base64 (protobuf's JSON mapping, not OTLP/JSON): every span is refused, by name.
        status, _, body = post(rx.url, (DAMAGED / "base64_ids.jsonl").read_bytes().strip(), JSON)
        partial = orjson.loads(body)["partialSuccess"]
        assert status == 200 and partial["rejectedSpans"] == "8"
        assert (
            "looks like base64" in partial["errorMessage"]
            and "and 3 more" in partial["errorMessage"]
        )
    assert counts(store)["spans"] == 14


def test_refused_requests_get_a_status_and_store_nothing(tmp_path: Path) -> None:
    store = t.Store(tmp_path / "s.duckdb")
    cases: list[tuple[str, bytes, dict[str, str], int, str]] = [
        (
            "truncated protobuf",
            (DAMAGED / "truncated.pb").read_bytes(),
            PROTO,
            400,
            "not a valid OTLP protobuf",
        ),
        ("garbage JSON", b"garbage {this is not json", JSON, 400, "not JSON"),
        (
            "metrics to the traces endpoint",
            (DAMAGED / "metrics.json").read_bytes(),
            JSON,
            400,
            "metrics or logs",
        ),
        ("JSON that is not OTLP", b'{"hello": "world"}', JSON, 400, "no resourceSpans"),
        (
            "wrong content type",
            (FOREIGN / "pydantic_ai.pb").read_bytes(),
            {"Content-Type": "text/plain"},
            415,
            "unsupported Content-Type",
        ),
        (
            "unknown content encoding",
            b"...",
            {**PROTO, "Content-Encoding": "br"},
            415,
            "unsupported Content-Encoding",
        ),
        (
            "gzip bomb",
            (DAMAGED / "bomb.gz").read_bytes(),
            {**PROTO, "Content-Encoding": "gzip"},
            413,
            "once decompressed",
        ),
        (
            "truncated gzip",
            gzip.compress(bytes(range(256)) * 64)[:-12],
            {**PROTO, "Content-Encoding": "gzip"},
            400,
            "truncated",
        ),
        (
            "not gzip at all",
            b"plain bytes",
            {**PROTO, "Content-Encoding": "gzip"},
            400,
            "not valid gzip",
        ),
    ]
    with ThreadedReceiver(store) as rx:
        for label, body, headers, want, words in cases:
            status, resp_headers, resp = post(rx.url, body, headers)
            assert status == want, label
            json = resp_headers["Content-Type"].startswith("application/json")
            assert json == (headers["Content-Type"] != "application/x-protobuf"), label
            code, message = _status(resp, json)
            assert words in message and code != 0, label
        assert post(rx.url, b"", PROTO, method="GET")[0] == 405
        assert post(rx.base + "/v1/metrics", b"", PROTO)[0] == 404
        assert counts(store)["spans"] == 0
        # Still up and well.
        assert post(rx.url, (FOREIGN / "pydantic_ai.pb").read_bytes(), PROTO)[0] == 200
    assert counts(store)["spans"] == 8
    assert rx.receiver.stats.refused == len(cases) + 1  # and the GET


def test_the_body_cap_holds_before_and_after_decompression(tmp_path: Path) -> None:
    store = t.Store(tmp_path / "s.duckdb")
    body = (FOREIGN / "langgraph_openinference.pb").read_bytes()  # ~100 KB
    with ThreadedReceiver(store, max_body=64 * 1024) as rx:
        assert post(rx.url, body, PROTO)[0] == 413
        assert post(rx.url, gzip.compress(body), {**PROTO, "Content-Encoding": "gzip"})[0] == 413
        assert post(rx.url, (FOREIGN / "pydantic_ai.pb").read_bytes(), PROTO)[0] == 200
    assert counts(store)["spans"] == 8


def test_bearer_token(tmp_path: Path) -> None:
    store = t.Store(tmp_path / "s.duckdb")
    body = (FOREIGN / "pydantic_ai.pb").read_bytes()
    with ThreadedReceiver(store, token="s3cret") as rx:
        assert post(rx.url, body, PROTO)[0] == 401
        assert post(rx.url, body, {**PROTO, "Authorization": "Bearer wrong"})[0] == 401
        assert counts(store)["spans"] == 0
        provider, _ = _provider(
            OTLPSpanExporter(endpoint=rx.url, headers={"Authorization": "Bearer s3cret"})
        )
        _make_spans(provider.get_tracer("t"), "auth")
        provider.shutdown()
    assert counts(store)["spans"] == 5


class GatedStore(t.Store):
    """A store whose writes wait for a gate: the writer is busy for as long as the test wants."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.entered = threading.Event()
        self.gate = threading.Event()

    def ingest(
        self, payloads: Any, *, source: str = "<input>", skip_bad: bool = False
    ) -> t.IngestResult:
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        return super().ingest(payloads, source=source, skip_bad=skip_bad)

    def ingest_group(self, chunks: Any, *, source: str = "<input>") -> t.IngestResult:
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        return super().ingest_group(chunks, source=source)


def test_a_writer_too_far_behind_answers_429_with_retry_after(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "s.duckdb")
    body = (FOREIGN / "pydantic_ai.pb").read_bytes()
    first: list[int] = []
    with ThreadedReceiver(store, max_pending=len(body) + 10) as rx:
        sender = threading.Thread(target=lambda: first.append(post(rx.url, body, PROTO)[0]))
        sender.start()
        assert store.entered.wait(30)
        status, headers, resp = post(rx.url, body, PROTO)
        assert status == 429 and headers["Retry-After"] == "1"
        assert "behind" in _status(resp, json=False)[1]
        store.gate.set()
        sender.join(30)
    assert first == [200]
    assert counts(store)["spans"] == 8


def test_shutdown_writes_what_was_received(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "s.duckdb")
    body = (FOREIGN / "openai_agents.pb").read_bytes()
    rx = ThreadedReceiver(store).__enter__()
    answers: list[int] = []
    sender = threading.Thread(target=lambda: answers.append(post(rx.url, body, PROTO)[0]))
    sender.start()
    assert store.entered.wait(30)
    closer = threading.Thread(target=rx.close)
    closer.start()  # closing while the request waits for the writer
    store.gate.set()
    closer.join(60)
    sender.join(60)
    assert answers == [200]
    assert counts(store)["spans"] == 12
    assert not rx.receiver.writer.try_submit(Job(b"", "proto", "", lambda o: None))


def test_grpc_receiver(tmp_path: Path) -> None:
    import asyncio

    import grpc

    store = t.Store(tmp_path / "s.duckdb")
    body = (FOREIGN / "pydantic_ai.pb").read_bytes()

    async def main() -> None:
        rx = await t.start_receiver(store, "127.0.0.1", 0)
        server = await t.start_grpc_receiver(rx.writer, "127.0.0.1", 0, token="tok")
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                export = channel.unary_unary(
                    "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
                )
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await export(body)
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
                meta = (("authorization", "Bearer tok"),)
                resp = ExportTraceServiceResponse()
                resp.ParseFromString(await export(body, metadata=meta))
                assert not resp.HasField("partial_success")
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await export((DAMAGED / "truncated.pb").read_bytes(), metadata=meta)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "not a valid OTLP protobuf" in (err.value.details() or "")
                line = (DAMAGED / "end_before_start.jsonl").read_bytes().strip()
                other = t.decode_json(
                    line.replace(b"f33a8df06150f69aa099de241054a283", b"0" * 31 + b"1")
                )
                resp.ParseFromString(await export(other.SerializeToString(), metadata=meta))
                assert resp.partial_success.rejected_spans == 1
        finally:
            await server.close()
            await rx.close()

    asyncio.run(main())
    assert counts(store)["spans"] == 8 + 7


def test_grpc_calls_hold_the_receivers_bytes_in_flight(tmp_path: Path) -> None:
    """Both ports spend one budget: with it spent, an export is refused retryably and
    nothing is stored; once freed, the same export lands and gives its bytes back."""
    import asyncio

    import grpc

    store = t.Store(tmp_path / "s.duckdb")
    body = (FOREIGN / "pydantic_ai.pb").read_bytes()

    async def main() -> None:
        rx = await t.start_receiver(store, "127.0.0.1", 0, max_pending=len(body))
        server = await t.start_grpc_receiver(rx.writer, "127.0.0.1", 0, in_flight=rx.in_flight)
        budget = rx.in_flight
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                export = channel.unary_unary(
                    "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
                )
                assert budget.reserve(len(body))  # an HTTP body being read
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await export(body)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
                assert counts(store)["spans"] == 0
                budget.release(len(body))
                await export(body)
                assert budget.used == 0
        finally:
            await server.close()
            await rx.close()

    asyncio.run(main())
    assert counts(store)["spans"] == 8


def test_a_bad_request_does_not_spoil_the_requests_committed_with_it(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "s.duckdb")
    good = [(FOREIGN / f"{name}.pb").read_bytes() for name in ("pydantic_ai", "openai_agents")]
    future = t.decode_proto((FOREIGN / "langgraph_openinference.pb").read_bytes())
    spans = [sp for rs in future.resource_spans for ss in rs.scope_spans for sp in ss.spans]
    spans[3].end_time_unix_nano = (1 << 64) - 1  # past 2262: cannot be stored
    answers: dict[str, tuple[int, bytes]] = {}

    def send(key: str, body: bytes) -> None:
        status, _, resp = post(rx.url, body, PROTO)
        answers[key] = (status, resp)

    with ThreadedReceiver(store) as rx:
        first = threading.Thread(target=send, args=("first", good[0]))
        first.start()
        assert store.entered.wait(30)  # the writer holds the first request at the gate
        others = [
            threading.Thread(target=send, args=("bad", future.SerializeToString())),
            threading.Thread(target=send, args=("good", good[1])),
        ]
        for th in others:
            th.start()
        # Both wait for the writer: they go into the next commit together.
        assert rx.receiver.writer.wait_queued(2, timeout=30)
        store.gate.set()
        for th in (first, *others):
            th.join(60)
    assert answers["first"][0] == answers["good"][0] == 200
    status, body = answers["bad"]
    resp = ExportTraceServiceResponse()
    resp.ParseFromString(body)
    assert status == 200 and resp.partial_success.rejected_spans == 1
    assert "outside the years 1970-2262" in resp.partial_success.error_message
    stored = store.sql(
        "SELECT count(*) FROM spans WHERE scope_name <> 'agentrace.langgraph'"
    ).fetchall()
    assert stored == [(8 + 12 + 39,)]
    assert rx.receiver.stats.commits == 2


def test_stopping_the_writer_writes_every_request_already_queued(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "s.duckdb")
    writer = Writer(store)
    outcomes: list[int] = []
    lock = threading.Lock()

    def done(outcome: Any) -> None:
        with lock:
            outcomes.append(outcome.status)

    bodies = [(FOREIGN / f"{name}.pb").read_bytes() for name in FRAMEWORKS]
    assert writer.try_submit(Job(bodies[0], "proto", "", done))
    assert store.entered.wait(30)  # the writer is busy with the first
    for body in bodies[1:]:
        assert writer.try_submit(Job(body, "proto", "", done))
    stopper = threading.Thread(target=writer.stop)
    stopper.start()
    # Once stopping, nothing more is taken in; keep offering until refused.
    accepted = 0
    while writer.try_submit(Job(b"", "proto", "", done)):
        accepted += 1
    store.gate.set()
    stopper.join(60)
    assert not stopper.is_alive()
    assert outcomes == [200] * (len(bodies) + accepted)
    # Exactly the spans sent: the LangGraph state is derived rows, not invented spans.
    assert counts(store)["spans"] == 40 + 8 + 12
    assert counts(store)["state_versions"] == 16


def test_serve_stops_when_its_stop_event_is_set(tmp_path: Path) -> None:
    """``serve`` from a thread: it answers once ready, and setting ``stop`` ends it (the loop
    is woken, not polled) with the counters of what it took."""
    store = t.Store(tmp_path / "s.duckdb")
    ready: list[Any] = []
    listening, stop = threading.Event(), threading.Event()
    out: list[t.ReceiverStats] = []

    def on_ready(receiver: Any, grpc_server: Any) -> None:
        ready.append(receiver)
        listening.set()

    thread = threading.Thread(
        target=lambda: out.append(t.serve(store, "127.0.0.1", 0, on_ready=on_ready, stop=stop)),
        daemon=True,
    )
    thread.start()
    assert listening.wait(60)
    body = (FOREIGN / "pydantic_ai.pb").read_bytes()
    status, _, _ = post(
        ready[0].url, body, {"Content-Type": "application/x-protobuf"}
    )  # fmt: skip
    assert status == 200
    stop.set()
    thread.join(60)
    assert not thread.is_alive()
    (stats,) = out
    assert (stats.requests, stats.stored) == (1, 8)
    assert counts(store)["spans"] == 8


def test_the_writer_gives_memory_back_once_a_burst_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a quiet moment following a write, freed memory goes back to the system: once
    per quiet spell, after the burst's requests are answered, never while idle from the
    start."""
    from tracer import _receiver

    events: list[str] = []
    released = threading.Semaphore(0)

    def give_back() -> None:
        events.append("release")
        released.release()

    store = t.Store(tmp_path / "s.duckdb")
    monkeypatch.setattr(store, "give_back_memory", give_back)
    monkeypatch.setattr(_receiver, "IDLE_RELEASE", 0.05)
    writer = Writer(store)
    body = (FOREIGN / f"{FRAMEWORKS[0]}.pb").read_bytes()
    for burst in range(2):
        for _ in range(3):
            assert writer.try_submit(Job(body, "proto", "", lambda o: events.append(str(o.status))))
        assert released.acquire(timeout=60)
        assert events == (["200"] * 3 + ["release"]) * (burst + 1)
    # Absence cannot be awaited: ten quiet periods pass with no second release.
    assert not released.acquire(timeout=10 * 0.05)
    writer.stop(60)
    assert events.count("release") == 2


# Run in a fresh interpreter: what a long test process's allocators hold depends on the
# tests before it (in one full run it left 32 KB to give back, so the figure is taken
# where nothing else has run).
_BURST_THEN_GIVE_BACK = """
import os, sys
sys.path.insert(0, sys.argv[2])
import tracer as t
from tracer._guard import give_back_memory
from helpers import otlp_load

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

store = t.Store(sys.argv[1])
load = otlp_load()
for k in range(12):  # 49,152 spans, 8 requests of 512 a commit
    store.ingest([load.build_request(3, sender, k, 512) for sender in range(8)])
give_back_memory()
before = rss()
store.give_back_memory()
print(before - rss())
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc")
def test_the_store_gives_back_what_duckdb_kept_after_a_burst_and_keeps_its_limit(
    tmp_path: Path,
) -> None:
    """After a burst of group commits DuckDB's allocator holds the pages it freed; the
    store's give-back flushes them (Python's collection and ``malloc_trim`` alone do not)
    and leaves the memory limit as it was, the default or one the user set."""
    out = subprocess.run(
        [sys.executable, "-c", _BURST_THEN_GIVE_BACK, str(tmp_path / "burst.duckdb"),
         str(Path(__file__).parent)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert int(out.stdout) > 10 << 20  # about 24 MB measured; nothing without the flush
    store = t.Store(tmp_path / "s.duckdb")
    limit = store.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
    store.give_back_memory()
    assert store.sql("SELECT current_setting('memory_limit')").fetchall()[0][0] == limit
    store.sql("SET memory_limit = '3GB'")  # printed 2.7 GiB: set again, it must not drift
    for _ in range(3):
        store.give_back_memory()
        assert store.sql("SELECT current_setting('memory_limit')").fetchall()[0][0] == "2.7 GiB"
