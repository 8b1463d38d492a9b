"""Span sinks: in memory (tests), DuckDB, OTLP JSON lines file, OTLP protobuf file, OTLP/HTTP."""

from __future__ import annotations

import gzip
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal

from opentelemetry.proto.trace.v1.trace_pb2 import Span as PB2Span

from ._errors import StoreError
from ._otlp import PB2ExportTraceServiceRequest, encode_json
from ._recorder import SpanBatch, SpanData, spans_to_request
from ._store._models import IngestResult
from ._store._store import Store


class InMemorySink:
    """Keeps every exported request; for tests."""

    def __init__(self) -> None:
        self.requests: list[PB2ExportTraceServiceRequest] = []
        self.flushes = 0
        self.closed = False
        self._lock = threading.Lock()

    def export(self, request: PB2ExportTraceServiceRequest) -> None:
        copy = PB2ExportTraceServiceRequest()
        copy.CopyFrom(request)
        with self._lock:
            self.requests.append(copy)

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closed = True

    def spans(self) -> list[PB2Span]:
        """Every exported span, in export order."""
        with self._lock:
            return [
                sp
                for req in self.requests
                for rs in req.resource_spans
                for ss in rs.scope_spans
                for sp in ss.spans
            ]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()


class DuckDBSink:
    """Ingests each batch into a :class:`Store` (one transaction per batch)."""

    def __init__(self, store: Store, *, close_store: bool = False) -> None:
        self.store = store
        self.close_store = close_store
        self.result = IngestResult()

    def export(self, request: PB2ExportTraceServiceRequest) -> None:
        self.result += self.store.ingest([request], source="recorder")

    def export_spans(
        self, spans: Sequence[SpanData], resource: Mapping[str, Any], scope: tuple[str, str]
    ) -> None:
        # The recorder's spans go straight to rows: no protobuf built only to be parsed again.
        self.result += self.store.ingest([SpanBatch(spans, resource, scope)], source="recorder")

    def flush(self) -> None:
        pass  # every export is already committed

    def close(self) -> None:
        if self.close_store:
            self.store.close()


class OtlpJsonLinesSink:
    """One OTLP/JSON ExportTraceServiceRequest per line: the collector file exporter's format."""

    def __init__(self, path: str | Path, *, mode: Literal["w", "a"] = "w") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = open(self.path, mode + "b")  # noqa: SIM115  # closed in close()

    def export(self, request: PB2ExportTraceServiceRequest) -> None:
        self._file.write(encode_json(request) + b"\n")

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class OtlpProtoFileSink:
    """Protobuf requests, each preceded by its 4-byte big-endian length (the collector's proto file format)."""

    def __init__(self, path: str | Path, *, mode: Literal["w", "a"] = "w") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = open(self.path, mode + "b")  # noqa: SIM115  # closed in close()

    def export(self, request: PB2ExportTraceServiceRequest) -> None:
        data = request.SerializeToString()
        self._file.write(len(data).to_bytes(4, "big") + data)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class OtlpHttpSink:
    """POSTs each batch as protobuf to an OTLP/HTTP endpoint (``agentrace serve`` or a collector).

    A request the receiver refuses raises :class:`StoreError` naming the status and body.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        compress: bool = True,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        if not self.endpoint.endswith("/v1/traces"):
            self.endpoint += "/v1/traces"
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.compress = compress

    def export(self, request: PB2ExportTraceServiceRequest) -> None:
        body = request.SerializeToString()
        headers = {"Content-Type": "application/x-protobuf", **self.headers}
        if self.compress:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        req = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200]
            raise StoreError(f"{self.endpoint}: HTTP {exc.code}: {detail!r}") from None
        except urllib.error.URLError as exc:
            raise StoreError(f"{self.endpoint}: {exc.reason}") from None

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class TeeSink:
    """Sends every batch to several sinks, in order."""

    def __init__(self, *sinks: object) -> None:
        self.sinks = sinks

    def export(self, request: PB2ExportTraceServiceRequest) -> None:
        for s in self.sinks:
            s.export(request)  # type: ignore[attr-defined]

    def export_spans(
        self, spans: Sequence[SpanData], resource: Mapping[str, Any], scope: tuple[str, str]
    ) -> None:
        request = None  # built once, for the sinks that want the wire form
        for s in self.sinks:
            direct = getattr(s, "export_spans", None)
            if direct is not None:
                direct(spans, resource, scope)
            else:
                if request is None:
                    request = spans_to_request(spans, resource, scope)
                s.export(request)  # type: ignore[attr-defined]

    def flush(self) -> None:
        for s in self.sinks:
            s.flush()  # type: ignore[attr-defined]

    def close(self) -> None:
        for s in self.sinks:
            s.close()  # type: ignore[attr-defined]
