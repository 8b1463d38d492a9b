"""The OTLP/HTTP receiver: ``POST /v1/traces`` into a store, on aiohttp.

What a client gets, per the OTLP/HTTP specification:

* 200 with an ``ExportTraceServiceResponse`` in the request's encoding
  (protobuf or JSON) once every span of the request is committed in DuckDB;
  with ``partial_success`` (``rejected_spans`` and an ``error_message`` naming
  them) when some spans could not be stored (a bad id, an end before the start,
  a span id already stored with other content): the others are stored;
* 400 for a body that does not decode as an OTLP trace request, 401 without the
  bearer token (when one is set), 404/405 elsewhere, 413 for a body over the
  cap (64 MiB, after decompression: a gzip bomb is stopped at the cap), 415 for
  a content type other than ``application/x-protobuf`` / ``application/json``
  or an unknown ``Content-Encoding`` (gzip, deflate, zstd and identity are
  known), 408 for a body that does not arrive in time, 429 with
  ``Retry-After`` when the bytes of bodies being read or waiting for the writer
  would pass a bound (decided from ``Content-Length`` before the body is read),
  503 with ``Retry-After`` while shutting down, when the store cannot be
  written, or when the connection cap is reached (then before anything is
  read). Every 4xx/5xx body is a ``google.rpc.Status`` in the request's
  encoding.

Bounds (tracer._guard): open connections, the time to send a request's
headers (which also closes idle keep-alive connections), the time between two
chunks of a body and for the whole body, the bytes in flight across requests.
Logs are one escaped line per event, rate-limited. ``Authorization: Bearer``
is compared in constant time, the scheme in any case. With an ``ssl_context``
it serves HTTPS.

Each request is one transaction: stored whole (or whole minus the spans its
partial success names) or not at all.

Threads: the HTTP side runs on the caller's asyncio loop and never blocks it;
bodies are decompressed, decoded and written by one writer thread, which takes
every request waiting for it into one group commit (so many small requests cost
one transaction) and falls back to one transaction per request when the group
fails. ``Receiver`` and ``start_receiver`` are for hosting inside another
asyncio program (the TUI); ``serve`` blocks, for the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import signal
import ssl
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import duckdb
import orjson
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest as PB2ExportTraceServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse as PB2ExportTraceServiceResponse,
)

from ._errors import AgentraceError, DecodeError
from ._files import _zstd
from ._guard import Connections, InFlight, install_log_filter
from ._otlp import decode_proto
from ._store._ingest import Batch, Parsed
from ._store._parallel import Decoded, Failed, Refused, decode_request
from ._store._store import Store
from ._store._workers import WorkerError, pool

log = logging.getLogger("agentrace.receiver")

MAX_BODY: Final = 64 * 1024 * 1024  # per the OTLP/HTTP guidance, after decompression
MAX_PENDING: Final = 256 * 1024 * 1024  # bytes read or waiting for the writer before 429
MAX_CONNECTIONS: Final = 256  # well under the usual 1024 file descriptors
HEADER_TIMEOUT: Final = 10.0  # seconds to send a request's headers (or idle keep-alive)
BODY_IDLE_TIMEOUT: Final = 15.0  # seconds between two chunks of a body
BODY_TIMEOUT: Final = 120.0  # seconds for a whole body (64 MiB at ~0.5 MB/s)
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 4318
TOKEN_ENV: Final = "AGENTRACE_TOKEN"
_GROUP_SPANS: Final = 50_000  # spans per group commit
_GROUP_REQUESTS: Final = 256
_GROUP_BYTES: Final = 32 * 1024 * 1024  # decompressed bodies per group commit
# Bodies this large are decoded in the pool's processes. Measured: a group of 512-span
# requests (about 100 KiB each) commits faster decoded here as one batch than as one
# pool batch per request (each written with its own statements), so only bodies of
# several thousand spans go to the pool.
POOL_MIN_BODY: Final = 1024 * 1024
_LINGER: Final = 0.002  # seconds the writer waits for a group to fill
# After this long with nothing to write, the writer gives the memory a burst left free
# back to the system (once per quiet spell).
IDLE_RELEASE: Final = 1.0
_RETRY_AFTER: Final = "1"
# Failures of the store, not of the request: the client should retry (503).
_TRANSIENT: Final = (
    OSError,
    duckdb.IOException,
    duckdb.OutOfMemoryException,
    duckdb.TransactionException,
)

_PROTO_TYPES: Final = frozenset({"application/x-protobuf", "application/protobuf"})
_JSON_TYPES: Final = frozenset({"application/json"})
_ENCODINGS: Final = frozenset({"", "identity", "gzip", "x-gzip", "deflate", "zstd"})

# google.rpc.Code values for the HTTP statuses we send.
_RPC_CODE: Final = {
    400: 3, 401: 16, 404: 5, 405: 12, 408: 4, 413: 8, 415: 3, 429: 8, 500: 13, 503: 14,
}  # fmt: skip

Encoding = Literal["proto", "json"]


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one request; ``status`` is the HTTP status."""

    status: int
    spans: int = 0  # spans stored (new)
    rejected: int = 0  # spans refused under partial success
    message: str = ""


@dataclass
class ReceiverStats:
    """Counters since start; updated by the writer thread, read by anyone."""

    requests: int = 0  # requests answered 200
    spans: int = 0  # spans accepted (stored now, or already stored with the same content)
    stored: int = 0  # spans newly stored
    rejected_spans: int = 0  # spans refused under partial success
    refused: int = 0  # requests answered 4xx
    failed: int = 0  # requests answered 5xx
    versions: int = 0  # state versions derived from LangGraph traces
    commits: int = 0  # groups taken by the writer (requests / commits = the group size)
    started: float = field(default_factory=time.monotonic)


class _TooLarge(Exception):
    pass


class _Busy(Exception):
    pass


def bearer_ok(header: str, token: str) -> bool:
    """``header`` is ``Bearer <token>`` (the scheme in any case, per RFC 9110), compared in constant time."""
    scheme, _, credential = header.strip().partition(" ")
    ok_scheme = scheme.lower() == "bearer"
    return hmac.compare_digest(credential.strip().encode(), token.encode()) and ok_scheme


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def status_body(status: int, message: str, encoding: Encoding) -> bytes:
    """A ``google.rpc.Status`` for an HTTP error status (protobuf or JSON)."""
    code = _RPC_CODE.get(status, 2)
    if encoding == "json":
        return orjson.dumps({"code": code, "message": message})
    # Status has two scalar fields here (code = 1, message = 2): encoded by hand so the
    # receiver needs no googleapis-common-protos.
    msg = message.encode()
    return b"\x08" + _varint(code) + (b"\x12" + _varint(len(msg)) + msg if msg else b"")


def success_body(outcome: Outcome, encoding: Encoding) -> bytes:
    if encoding == "json":
        if not outcome.rejected:
            return b"{}"
        return orjson.dumps(
            {
                "partialSuccess": {
                    "rejectedSpans": str(outcome.rejected),
                    "errorMessage": outcome.message,
                }
            }
        )
    resp = PB2ExportTraceServiceResponse()
    if outcome.rejected:
        resp.partial_success.rejected_spans = outcome.rejected
        resp.partial_success.error_message = outcome.message
    return resp.SerializeToString()


# -- bodies ----------------------------------------------------------------------------------


def inflate(body: bytes, encoding: str, cap: int = MAX_BODY) -> bytes:
    """The body without its Content-Encoding, refusing (``_TooLarge``) past ``cap`` bytes.

    Decompression stops at the cap, so a small body that would expand without end
    costs at most ``cap`` bytes of memory.
    """
    if encoding in ("", "identity"):
        if len(body) > cap:
            raise _TooLarge
        return body
    if encoding == "zstd":
        return _unzstd(body, cap)
    if encoding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif body[:1] and body[0] & 0x0F == 8 and int.from_bytes(body[:2], "big") % 31 == 0:
        wbits = zlib.MAX_WBITS  # "deflate" as HTTP means it: a zlib stream
    else:
        wbits = -zlib.MAX_WBITS  # raw deflate, as some clients send it
    out = bytearray()
    data = body
    try:
        while data:
            d = zlib.decompressobj(wbits)
            out += d.decompress(data, cap + 1 - len(out))
            if len(out) > cap or d.unconsumed_tail:
                raise _TooLarge
            if not d.eof:
                raise DecodeError(f"the {encoding} body is truncated")
            # Concatenated gzip members decompress to the concatenation.
            data = d.unused_data if wbits > zlib.MAX_WBITS else b""
    except zlib.error as exc:
        raise DecodeError(f"the body is not valid {encoding} data ({exc})") from None
    return bytes(out)


def _unzstd(body: bytes, cap: int) -> bytes:
    zstd = _zstd()
    if zstd is None:
        raise DecodeError("zstd bodies need the zstandard package")
    try:
        reader = zstd.ZstdDecompressor().stream_reader(body, read_across_frames=True)
        out = reader.read(cap + 1)
        while len(out) <= cap:
            more = reader.read(cap + 1 - len(out))
            if not more:
                break
            out += more
    except zstd.ZstdError as exc:
        raise DecodeError(f"the body is not valid zstd data ({exc})") from None
    if len(out) > cap:
        raise _TooLarge
    return bytes(out)


Payload = PB2ExportTraceServiceRequest | dict[str, Any]


def decode_body(data: bytes, encoding: Encoding) -> Payload:
    """A decompressed body as a request; a :class:`DecodeError` says why it is not one."""
    if encoding == "proto":
        return decode_proto(data, source="request")
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise DecodeError("not an OTLP trace request (not a JSON object)")
    if "resourceSpans" not in obj:
        if "resourceMetrics" in obj or "resourceLogs" in obj:
            raise DecodeError("an OTLP request of metrics or logs; this endpoint takes traces")
        if obj:
            raise DecodeError("not an OTLP trace request (no resourceSpans)")
    elif not isinstance(obj["resourceSpans"], list):
        raise DecodeError("resourceSpans is not a list")
    return obj


def _span_count(payload: Payload) -> int:
    if isinstance(payload, dict):
        n = 0
        for rs in payload.get("resourceSpans") or ():
            if isinstance(rs, dict):
                for ss in rs.get("scopeSpans") or ():
                    if isinstance(ss, dict) and isinstance(ss.get("spans"), list):
                        n += len(ss["spans"])
        return n
    return sum(len(ss.spans) for rs in payload.resource_spans for ss in rs.scope_spans)


_Single = tuple[tuple[str, str], Payload, bytes]  # (trace, span), one-span request, content


def _split(payload: Payload) -> list[_Single]:
    """One single-span request per span, keeping each span's resource and scope."""
    out: list[_Single] = []
    if isinstance(payload, dict):
        for rs in payload.get("resourceSpans") or ():
            if not isinstance(rs, dict):
                raise DecodeError("resourceSpans entry is not an object")
            for ss in rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or ():
                if not isinstance(ss, dict):
                    raise DecodeError("scopeSpans entry is not an object")
                for sp in ss.get("spans") or ():
                    single = {
                        "resourceSpans": [
                            {
                                "resource": rs.get("resource") or {},
                                "schemaUrl": rs.get("schemaUrl") or "",
                                "scopeSpans": [
                                    {
                                        "scope": ss.get("scope") or {},
                                        "schemaUrl": ss.get("schemaUrl") or "",
                                        "spans": [sp],
                                    }
                                ],
                            }
                        ]
                    }
                    key = (
                        (str(sp.get("traceId")), str(sp.get("spanId")))
                        if isinstance(sp, dict)
                        else ("?", "?")
                    )
                    out.append((key, single, orjson.dumps(sp, option=orjson.OPT_SORT_KEYS)))
        return out
    for prs in payload.resource_spans:
        for pss in prs.scope_spans:
            for psp in pss.spans:
                req = PB2ExportTraceServiceRequest()
                r = req.resource_spans.add()
                r.resource.CopyFrom(prs.resource)
                r.schema_url = prs.schema_url
                s = r.scope_spans.add()
                s.scope.CopyFrom(pss.scope)
                s.schema_url = pss.schema_url
                s.spans.add().CopyFrom(psp)
                out.append(
                    (
                        (psp.trace_id.hex(), psp.span_id.hex()),
                        req,
                        psp.SerializeToString(deterministic=True),
                    )
                )
    return out


def _combine(singles: list[Payload]) -> Payload:
    if singles and isinstance(singles[0], dict):
        return {"resourceSpans": [s["resourceSpans"][0] for s in singles if isinstance(s, dict)]}
    req = PB2ExportTraceServiceRequest()
    for s in singles:
        assert not isinstance(s, dict)
        req.resource_spans.append(s.resource_spans[0])
    return req


def _add(batch: Batch, payload: Payload) -> None:
    if isinstance(payload, dict):
        batch.add_json(payload)
    else:
        batch.add_proto(payload)


def _clashes(store: Store, singles: list[_Single]) -> set[tuple[str, str]]:
    """The spans of ``singles`` already stored with other content (as the store compares them)."""
    batch = Batch(store.redactor)
    for _, payload, _ in singles:
        _add(batch, payload)
    spans = batch.tables().get("spans")
    if spans is None:
        return set()
    cols = {
        n: spans.column(n).to_pylist()
        for n in ("trace_id", "span_id", "name", "start_ns", "end_ns", "attributes")
    }
    rows = store.sql(
        """SELECT s.trace_id, s.span_id FROM (
               SELECT unnest($t) AS trace_id, unnest($s) AS span_id, unnest($n) AS name,
                      unnest($a) AS start_ns, unnest($b) AS end_ns, unnest($j) AS attributes) s
           JOIN spans t ON t.trace_id = s.trace_id AND t.span_id = s.span_id
           WHERE s.name <> t.name OR s.start_ns <> t.start_ns OR s.end_ns <> t.end_ns
              OR s.attributes <> t.attributes::VARCHAR""",
        {"t": cols["trace_id"], "s": cols["span_id"], "n": cols["name"], "a": cols["start_ns"],
         "b": cols["end_ns"], "j": cols["attributes"]},
    ).fetchall()  # fmt: skip
    return {(r[0], r[1]) for r in rows}


def ingest_partial(store: Store, payload: Payload, source: str = "request") -> Outcome:
    """Store what can be stored of a request whose whole failed; one transaction.

    Spans that do not validate, repeat another span of the request with other
    content, or clash with a stored span are refused; a request whose structure
    cannot be split into spans is a :class:`DecodeError`.
    """
    problems: list[str] = []
    seen: dict[tuple[str, str], bytes] = {}
    accepted: list[_Single] = []
    for key, single, content in _split(payload):
        try:
            _add(Batch(), single)
        except DecodeError as exc:
            problems.append(exc.detail)
            continue
        prior = seen.get(key)
        if prior is not None:
            if prior != content:
                problems.append(
                    f"span {key[1]} of trace {key[0]}: seen twice in the request with different content"
                )
            continue
        seen[key] = content
        accepted.append((key, single, content))
    clash = _clashes(store, accepted) if accepted else set()
    if clash:
        for key in sorted(clash):
            problems.append(
                f"span {key[1]} of trace {key[0]}: already stored with different content"
            )
        accepted = [a for a in accepted if a[0] not in clash]
    if accepted:
        store.ingest([_combine([a[1] for a in accepted])], source=source)
    rejected = len(problems)
    message = "; ".join(problems[:5]) + (f"; and {rejected - 5} more" if rejected > 5 else "")
    return Outcome(200, spans=len(accepted), rejected=rejected, message=message)


# -- the writer ------------------------------------------------------------------------------


@dataclass(slots=True)
class Job:
    """One request for the writer: a body, how it is encoded, and whom to tell."""

    body: bytes
    encoding: Encoding
    content_encoding: str
    done: Callable[[Outcome], None]
    source: str = "request"
    # Large bodies are decoded by the pool's processes as soon as they are taken in.
    decoded: Future[Decoded | Failed | Refused] | None = None


class Writer:
    """The one thread that decodes requests and writes them to the store.

    ``try_submit`` is thread-safe and never blocks; ``done`` callbacks run on the writer
    thread and must only hand the outcome over (e.g. ``loop.call_soon_threadsafe``).
    ``stop`` drains every submitted job before it returns.
    """

    def __init__(
        self, store: Store, *, max_body: int = MAX_BODY, max_pending: int = MAX_PENDING
    ) -> None:
        self.store = store
        self.max_body = max_body
        self.max_pending = max_pending
        self.stats = ReceiverStats()
        self._jobs: deque[Job] = deque()
        self._cond = threading.Condition()
        self._pending = 0
        # The largest of the last groups: about how many clients are sending at once.
        self._recent_groups: deque[int] = deque([1], maxlen=16)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="agentrace-writer", daemon=True)
        self._thread.start()

    @property
    def pending_bytes(self) -> int:
        return self._pending

    def try_submit(self, job: Job) -> bool:
        """Queue ``job``; False (and nothing queued) when the writer is too far behind or stopping."""
        with self._cond:
            if self._stopping or (
                self._pending and self._pending + len(job.body) > self.max_pending
            ):
                return False
            self._pending += len(job.body)
            if len(job.body) >= POOL_MIN_BODY and (decoders := pool()) is not None:
                job.decoded = decoders.submit(
                    "request", job.body, job.content_encoding, job.encoding, self.max_body,
                    self.store.redactor,
                )  # fmt: skip
            self._jobs.append(job)
            self._cond.notify_all()
        return True

    def wait_queued(self, n: int, timeout: float | None = None) -> bool:
        """Block until at least ``n`` requests wait for the writer (False on timeout)."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._jobs) >= n, timeout)

    def stop(self, timeout: float | None = None) -> None:
        """Take no more jobs, write every job already taken in, end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _take(self, idle: float | None = None) -> list[Job] | None:
        """The next group of jobs; None once stopping with nothing left; ``[]`` when
        ``idle`` seconds passed with nothing to take."""
        with self._cond:
            while not self._jobs:
                if self._stopping:
                    return None
                if not self._cond.wait(idle) and not self._jobs:
                    return []
            # Clients answered together by the last commit send their next requests
            # together: wait a moment for as many as have lately been sending at once, so
            # the next commit holds them all rather than one now and the rest after it (a
            # commit costs tens of ms; the wait, 2 ms at most).
            deadline = time.monotonic() + _LINGER
            target = max(self._recent_groups)
            while len(self._jobs) < target and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            jobs: list[Job] = []
            while self._jobs and len(jobs) < _GROUP_REQUESTS:
                jobs.append(self._jobs.popleft())
            self._recent_groups.append(len(jobs))
            self.stats.commits += 1
            return jobs

    def _run(self) -> None:
        wrote = False
        while True:
            jobs = self._take(IDLE_RELEASE if wrote else None)
            if jobs is None:
                return
            if not jobs:  # quiet since the last write
                self.store.give_back_memory()
                wrote = False
                continue
            wrote = True
            try:
                self._process(jobs)
            except Exception:  # never let the writer die: answer, log, go on
                log.exception("the writer failed on a group of %d request(s)", len(jobs))
                for job in jobs:
                    self._finish(
                        job, Outcome(500, message="internal error in the receiver; see its log")
                    )
            finally:
                with self._cond:
                    self._pending -= sum(len(j.body) for j in jobs)

    def count(self, source: str, outcome: Outcome) -> None:
        """Count and log an outcome (thread-safe)."""
        with self._cond:
            s = self.stats
            if outcome.status == 200:
                s.requests += 1
                s.spans += outcome.spans
                s.rejected_spans += outcome.rejected
            elif outcome.status < 500:
                s.refused += 1
            else:
                s.failed += 1
        if outcome.status == 200:
            if outcome.rejected:
                log.warning("%s: %d span(s) refused: %s", source, outcome.rejected, outcome.message)
        elif outcome.status < 500:
            log.warning("%s: HTTP %d: %s", source, outcome.status, outcome.message)
        else:
            log.error("%s: HTTP %d: %s", source, outcome.status, outcome.message)

    def _finish(self, job: Job, outcome: Outcome) -> None:
        self.count(job.source, outcome)
        try:
            job.done(outcome)
        except Exception:
            log.exception("could not hand an outcome back")

    def _process(self, jobs: list[Job]) -> None:
        if any(job.decoded is not None for job in jobs):
            self._process_decoded(jobs)
            return
        # Decoded requests weigh several times their bodies: a group is committed once it
        # holds _GROUP_SPANS spans or _GROUP_BYTES of bodies, so memory stays bounded.
        group: list[tuple[Job, Payload, int, bytes]] = []
        spans = size = 0
        for job in jobs:
            too_large = f"the body is over {self.max_body} bytes once decompressed"
            try:
                data = inflate(job.body, job.content_encoding, self.max_body)
                payload = decode_body(data, job.encoding)
            except _TooLarge:
                self._finish(job, Outcome(413, message=too_large))
                continue
            except DecodeError as exc:
                self._finish(job, Outcome(400, message=exc.detail))
                continue
            n = _span_count(payload)
            if group and (spans + n > _GROUP_SPANS or size + len(data) > _GROUP_BYTES):
                self._commit(group)
                group, spans, size = [], 0, 0
            group.append((job, payload, n, data))
            spans += n
            size += len(data)
        if group:
            self._commit(group)

    def _process_decoded(self, jobs: list[Job]) -> None:
        """A group whose large bodies the pool decoded (small ones are decoded here the same
        way): committed together in one transaction, each answered after the commit."""
        group: list[tuple[Job, Decoded]] = []
        for job in jobs:
            try:
                out = (
                    job.decoded.result()
                    if job.decoded is not None
                    else decode_request(
                        job.body, job.content_encoding, job.encoding, self.max_body,
                        self.store.redactor,
                    )
                )  # fmt: skip
            except WorkerError:
                log.exception("%s: decoding failed; decoding it here", job.source)
                out = None
            if isinstance(out, Refused):
                self._finish(job, Outcome(out.status, message=out.message))
            elif isinstance(out, Decoded):
                group.append((job, out))
            else:  # a bad span (or a lost worker): the request on its own, as ever
                self._alone(job)
        if not group:
            return
        try:
            result = self.store.ingest_group([d for _, d in group], source="receiver")
        except (AgentraceError, *_TRANSIENT) as exc:
            if not isinstance(exc, DecodeError):
                for job, _ in group:
                    self._finish(job, Outcome(503, message=f"the store cannot be written: {exc}"))
                return
            for job, _ in group:
                self._alone(job)
        except Exception:
            log.exception("a group of %d request(s) failed; writing them one by one", len(group))
            for job, _ in group:
                self._alone(job)
        else:
            self.stats.stored += result.spans
            for job, d in group:
                self._finish(job, Outcome(200, spans=d.spans + d.duplicates))

    def _alone(self, job: Job) -> None:
        """Decode ``job`` here and write it in its own transaction (what can be stored of it)."""
        try:
            payload = decode_body(
                inflate(job.body, job.content_encoding, self.max_body), job.encoding
            )
        except _TooLarge:
            self._finish(
                job,
                Outcome(413, message=f"the body is over {self.max_body} bytes once decompressed"),
            )
            return
        except DecodeError as exc:
            self._finish(job, Outcome(400, message=exc.detail))
            return
        self._finish(job, self._one(job, payload))

    def _commit(self, group: list[tuple[Job, Payload, int, bytes]]) -> None:
        store = self.store
        try:
            result = store.ingest(
                [p if isinstance(p, dict) else Parsed(d, p) for _, p, _, d in group],
                source="receiver",
            )
        except (AgentraceError, *_TRANSIENT) as exc:
            if not isinstance(exc, DecodeError):
                for job, _, _, _ in group:
                    self._finish(job, Outcome(503, message=f"the store cannot be written: {exc}"))
                return
            # One request spoiled the group: nothing of it was written. Each request
            # again on its own, so the good ones commit and the bad one is explained.
            for job, payload, _, _ in group:
                self._finish(job, self._one(job, payload, tried=len(group) == 1))
        except Exception:
            # Not an error agentrace raises on purpose: maybe one request holds what the
            # store cannot take. Each on its own, so only that one fails.
            log.exception("a group of %d request(s) failed; writing them one by one", len(group))
            for job, payload, _, _ in group:
                self._finish(job, self._one(job, payload))
        else:
            self.stats.stored += result.spans
            for job, _, n, _ in group:
                self._finish(job, Outcome(200, spans=n))

    def _one(self, job: Job, payload: Payload, *, tried: bool = False) -> Outcome:
        """One request in its own transaction; what can be stored of it when it fails."""
        try:
            if not tried:
                try:
                    result = self.store.ingest([payload], source=job.source)
                except DecodeError:
                    pass  # below: what can be stored of it
                else:
                    self.stats.stored += result.spans
                    return Outcome(200, spans=_span_count(payload))
            return ingest_partial(self.store, payload, job.source)
        except DecodeError as exc:
            return Outcome(400, message=exc.detail)
        except (AgentraceError, *_TRANSIENT) as exc:
            return Outcome(503, message=f"the store cannot be written: {exc}")
        except Exception as exc:
            # 500 is not retryable in OTLP: the exporter drops the request instead of
            # sending it again and again.
            log.exception("%s could not be stored", job.source)
            return Outcome(
                500, message=f"the request could not be stored: {type(exc).__name__}: {exc}"
            )


# -- HTTP ------------------------------------------------------------------------------------


def _response(status: int, body: bytes, encoding: Encoding, retry: bool = False) -> web.Response:
    headers = {"Retry-After": _RETRY_AFTER} if retry else None
    ctype = "application/json" if encoding == "json" else "application/x-protobuf"
    return web.Response(status=status, body=body, content_type=ctype, headers=headers)


class Receiver:
    """An OTLP/HTTP receiver bound to ``host:port`` (port 0 picks a free one).

    Create it, ``await start()`` on the loop that should serve it, ``await close()``
    to stop: new requests are then refused with 503, requests already received are
    written and answered, and the writer thread ends. The store stays open (the
    caller owns it).
    """

    def __init__(
        self,
        store: Store,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        token: str | None = None,
        max_body: int = MAX_BODY,
        max_pending: int = MAX_PENDING,
        max_connections: int = MAX_CONNECTIONS,
        header_timeout: float = HEADER_TIMEOUT,
        body_idle_timeout: float = BODY_IDLE_TIMEOUT,
        body_timeout: float = BODY_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.store = store
        self.host = host
        self._port = port
        self.token = token or None
        self.max_body = max_body
        self.max_pending = max_pending
        self.body_idle_timeout = body_idle_timeout
        self.body_timeout = body_timeout
        self.ssl_context = ssl_context
        self.connections = Connections(max_connections, header_timeout)
        self.in_flight = InFlight(max_pending)
        self._writer: Writer | None = None
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        self._closing = False

    @property
    def port(self) -> int:
        """The bound port (known after ``start``)."""
        return self._port

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self._port}/v1/traces"

    @property
    def stats(self) -> ReceiverStats:
        return self._writer.stats if self._writer is not None else ReceiverStats()

    @property
    def writer(self) -> Writer:
        if self._writer is None:
            raise RuntimeError("the receiver is not started")
        return self._writer

    async def start(self) -> None:
        if not self.host.strip():
            # An empty host would bind every interface: say which one.
            raise OSError("an empty host binds every interface; name one (0.0.0.0 for all)")
        install_log_filter()
        self._writer = Writer(self.store, max_body=self.max_body, max_pending=self.max_pending)
        # The cap applies to the body as sent; decompression is ours, capped again.
        app = web.Application(client_max_size=self.max_body, middlewares=[self._deadline])
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_route("*", "/v1/traces", self._not_allowed)
        runner = web.AppRunner(app, auto_decompress=False, access_log=None, shutdown_timeout=30.0)
        await runner.setup()
        loop = asyncio.get_running_loop()
        handlers = runner.server
        if handlers is None:
            raise RuntimeError("the HTTP runner did not set up")
        try:
            # Our own listening socket (not web.TCPSite) so that every connection goes
            # through the cap and the header deadline before aiohttp reads a byte of it.
            self._server = await loop.create_server(
                self.connections.factory(handlers), self.host, self._port,
                ssl=self.ssl_context, reuse_address=True, backlog=128,
            )  # fmt: skip
        except OSError:
            await runner.cleanup()
            self._writer.stop()
            raise
        self._runner = runner
        sockets = self._server.sockets
        if sockets:
            self._port = int(sockets[0].getsockname()[1])
        log.info("listening on %s", self.url)

    @web.middleware
    async def _deadline(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.connections.request_started(request.transport)
        try:
            response: web.StreamResponse = await handler(request)
            return response
        finally:
            self.connections.request_done(request.transport)

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._writer is not None:
            await asyncio.to_thread(self._writer.stop)

    async def __aenter__(self) -> Receiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _not_allowed(self, request: web.Request) -> web.Response:
        return self._refuse(request, 405, "use POST", "json")

    def _refuse(
        self, request: web.Request, status: int, message: str, encoding: Encoding
    ) -> web.Response:
        """An error answer without the writer: counted and logged like the writer's."""
        self.writer.count(f"request from {request.remote or '?'}", Outcome(status, message=message))
        response = _response(
            status, status_body(status, message, encoding), encoding, retry=status in (429, 503)
        )
        if status in (408, 413, 429, 503):
            # The body may be unread: end the connection rather than read it to the end.
            response.force_close()
        return response

    async def _read_body(self, request: web.Request, held: int) -> tuple[bytes, int]:
        """The body, within the timeouts and the bytes in flight; ``held`` (reserved) grows with it.

        Raises ``TimeoutError``, :class:`_TooLarge` or :class:`_Busy`; whatever was
        reserved here beyond ``held`` is then released (``held`` is the caller's).
        """
        start = held
        body = bytearray()
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    chunk = await asyncio.wait_for(
                        request.content.readany(), self.body_idle_timeout
                    )
                    if not chunk:
                        return bytes(body), held
                    body += chunk
                    if len(body) > self.max_body:
                        raise _TooLarge
                    if len(body) > held:
                        more = max(len(body) - held, 1024 * 1024)
                        if not self.in_flight.reserve(more):
                            raise _Busy
                        held += more
        except BaseException:
            if held > start:
                self.in_flight.release(held - start)
            raise
        raise AssertionError("unreachable")  # the loop returns

    async def _traces(self, request: web.Request) -> web.StreamResponse:
        ctype = request.content_type
        encoding: Encoding = "proto" if ctype in _PROTO_TYPES else "json"
        if self._closing:
            return self._refuse(request, 503, "the receiver is shutting down", encoding)
        if self.token is not None and not bearer_ok(
            request.headers.get("Authorization", ""), self.token
        ):
            return self._refuse(request, 401, "a bearer token is required", encoding)
        if ctype not in _PROTO_TYPES and ctype not in _JSON_TYPES:
            message = f"unsupported Content-Type {ctype!r}; send application/x-protobuf or application/json"
            return self._refuse(request, 415, message, "json")
        content_encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if content_encoding not in _ENCODINGS:
            message = f"unsupported Content-Encoding {content_encoding!r}; use gzip, deflate, zstd or none"
            return self._refuse(request, 415, message, encoding)
        too_large = f"the body is over {self.max_body} bytes"
        if request.content_length is not None and request.content_length > self.max_body:
            return self._refuse(request, 413, too_large, encoding)
        # Bytes in flight are counted before the body is read: Content-Length when sent,
        # else a first chunk's worth, grown as the body arrives.
        held = request.content_length if request.content_length is not None else 64 * 1024
        if not self.in_flight.reserve(held):
            return self._refuse(request, 429, "the receiver is behind; retry later", encoding)
        handed_over = False
        try:
            try:
                body, held = await self._read_body(request, held)
            except _TooLarge:
                return self._refuse(request, 413, too_large, encoding)
            except _Busy:
                return self._refuse(request, 429, "the receiver is behind; retry later", encoding)
            except TimeoutError:
                return self._refuse(request, 408, "the body did not arrive in time", encoding)
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[Outcome] = loop.create_future()
            release = functools.partial(self.in_flight.release, held)

            def done(outcome: Outcome) -> None:
                release()
                loop.call_soon_threadsafe(settle, fut, outcome)

            job = Job(
                body,
                encoding,
                content_encoding,
                done,
                source=f"request from {request.remote or '?'}",
            )
            if not self.writer.try_submit(job):
                if self._closing:
                    return self._refuse(request, 503, "the receiver is shutting down", encoding)
                return self._refuse(request, 429, "the receiver is behind; retry later", encoding)
            handed_over = True
        finally:
            if not handed_over:
                self.in_flight.release(held)
        # If the client goes away, the request is still written; only the answer is lost.
        outcome = await asyncio.shield(fut)
        if outcome.status == 200:
            return _response(200, success_body(outcome, encoding), encoding)
        error = status_body(outcome.status, outcome.message, encoding)
        return _response(outcome.status, error, encoding, retry=outcome.status in (429, 503))


def settle(fut: asyncio.Future[Outcome], outcome: Outcome) -> None:
    """Resolve ``fut`` unless it is already done (on the loop's thread)."""
    if not fut.done():
        fut.set_result(outcome)


async def start_receiver(
    store: Store,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    **kwargs: Any,
) -> Receiver:
    """A started :class:`Receiver` on the running loop; ``await receiver.close()`` to stop it."""
    receiver = Receiver(store, host, port, token=token, **kwargs)
    await receiver.start()
    return receiver


def serve(
    store: Store,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    *,
    grpc_port: int | None = None,
    on_ready: Callable[[Receiver, Any], None] | None = None,
    stop: threading.Event | None = None,
    tls: tuple[str, str] | None = None,
    **kwargs: Any,
) -> ReceiverStats:
    """Receive until SIGINT/SIGTERM (or ``stop`` is set), then flush and return the counters.

    Blocks; runs its own event loop. ``on_ready(receiver, grpc_server)`` is called once
    listening (``grpc_server`` is None without ``grpc_port``). ``tls`` is a PEM
    certificate (chain) file and its key file: both ports then serve over TLS.
    """
    if tls is not None:
        kwargs["ssl_context"] = tls_context(*tls)
        kwargs["_grpc_tls"] = _read_pem(tls[1]), _read_pem(tls[0])
    return asyncio.run(_serve(store, host, port, token, grpc_port, on_ready, stop, kwargs))


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2 or later) from PEM files; a bad file is one :class:`AgentraceError`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except FileNotFoundError as exc:
        raise AgentraceError(f"{exc.filename}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise AgentraceError(
            f"{cert_file} / {key_file}: not a PEM certificate and its private key ({reason})"
        ) from None
    return ctx


def _read_pem(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise AgentraceError(f"{path}: cannot read: {exc.strerror or exc}") from None


async def _serve(
    store: Store,
    host: str,
    port: int,
    token: str | None,
    grpc_port: int | None,
    on_ready: Callable[[Receiver, Any], None] | None,
    stop: threading.Event | None,
    kwargs: dict[str, Any],
) -> ReceiverStats:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(
            NotImplementedError, RuntimeError
        ):  # not on Windows / not main thread
            loop.add_signal_handler(sig, done.set)
    grpc_tls = kwargs.pop("_grpc_tls", None)
    receiver = await start_receiver(store, host, port, token, **kwargs)
    grpc_server = None
    try:
        if grpc_port is not None:
            from ._grpc import start_grpc_receiver

            grpc_server = await start_grpc_receiver(
                receiver.writer, host, grpc_port, token=token, tls=grpc_tls,
                in_flight=receiver.in_flight,
            )  # fmt: skip
        if on_ready is not None:
            on_ready(receiver, grpc_server)
        if stop is not None:
            # A threading.Event cannot wake a loop: a thread waits on it and wakes the loop.
            def relay() -> None:
                stop.wait()
                with contextlib.suppress(RuntimeError):  # the loop has closed already
                    loop.call_soon_threadsafe(done.set)

            threading.Thread(target=relay, name="agentrace-serve-stop", daemon=True).start()
        await done.wait()
    finally:
        if grpc_server is not None:
            await grpc_server.close()
        await receiver.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    return receiver.stats
