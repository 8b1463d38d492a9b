"""Decoding in worker processes: OTLP requests become Arrow tables off the writer's core.

The store's write path has two halves. Decoding (protobuf or JSON → validated
rows → Arrow columns, with redaction) is pure Python per span and costs most of
an ingest; writing (the insert, the duplicate checks, the derive phase) happens
in DuckDB inside the writer's one transaction. This module runs the first half
in a pool of worker processes, so a machine's cores decode in parallel while the
one writer inserts what they hand back:

* :func:`decode_chunk` turns a list of records into a :class:`Decoded` (the
  batch's tables and what the writer needs to know about them);
* :func:`decode_records` streams a file's records through the pool, a few chunks
  in flight at a time, in order, so memory holds a window of the file, not all
  of it; a request larger than a chunk is split on its wire boundaries first
  (:func:`split_request`), every piece keeping its resource and scope;
* :func:`decode_bodies` does the same for receiver bodies.

Every piece of a file is written by :meth:`Store.ingest_decoded` in the file's
single transaction, in file order: a trace cut across chunks is new in its first
chunk and known in the next, so the duplicate rules and the derive phase apply
exactly as they do within one batch. A worker resolves agents over its own
chunk; the writer re-derives every trace it had already seen (``rederive_stored``).

Errors cross the process boundary as :class:`Failed` (the error class and its
fields) and are raised again in the caller, naming the same file and line.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

import pyarrow as pa

from .._errors import DecodeError, DuplicateSpanError
from .._otlp import Record
from .._redact import Redactor
from ._ingest import Batch
from ._workers import pool

# A chunk is about this many bytes of encoded requests: ~3,000 spans of protobuf, fewer
# of JSON. Small enough that the writer starts early and a window of them stays a few
# MiB, large enough that the pool's per-task cost (pickling, a pipe round trip: ~0.2 ms)
# and the writer's per-batch statements are noise.
CHUNK_BYTES = 1 << 20
# Below this much input, decoding in this process is cheaper than a round trip to the pool.
PARALLEL_MIN_BYTES = 8 << 20


@dataclass(frozen=True, slots=True)
class Decoded:
    """One decoded chunk, ready for the writer: the batch's Arrow tables and its facts."""

    tables: dict[str, pa.Table]
    trace_ids: frozenset[str]
    duplicates: int
    langgraph: frozenset[str]
    cross_links: frozenset[tuple[str, str]]
    requests: int
    spans: int = field(default=0)
    lines: tuple[int, int] | None = None  # the first and last line (record) of a file's chunk
    has_errors: bool = False  # a span with status ERROR is in it

    def placed(self, exc: DecodeError, source: str) -> DecodeError:
        """``exc`` (raised while writing this chunk) placed in ``source`` and this chunk's lines."""
        if self.lines is None:
            return exc.at(source)
        first, last = self.lines
        if first == last:
            return exc.at(source, first)
        return type(exc)(f"{exc.detail} (in lines {first}-{last})", source=source, line=None)


@dataclass(frozen=True, slots=True)
class Failed:
    """A decode error raised in a worker, carried back to be raised in the caller."""

    duplicate: bool
    detail: str
    source: str
    line: int | None

    def error(self) -> DecodeError:
        cls = DuplicateSpanError if self.duplicate else DecodeError
        return cls(self.detail, source=self.source, line=self.line)


def decoded_from(batch: Batch, requests: int = 0, lines: tuple[int, int] | None = None) -> Decoded:
    """The batch as the writer takes it (its rows resolved as far as the caller wanted)."""
    return Decoded(
        batch.tables() if batch.spans else {},
        frozenset(batch.trace_ids),
        batch.duplicates,
        frozenset(batch.langgraph_traces()),
        frozenset(batch.cross_trace_links()),
        requests,
        len(batch.spans),
        lines,
        batch.has_errors,
    )


def decode_chunk(records: list[Record], redactor: Redactor | None) -> Decoded | Failed:
    """Decode ``records`` into one batch; the agents of its traces are resolved over the
    chunk (the writer re-derives traces it has seen before). Runs in a worker."""
    from ._store import add_payload  # the store imports this module

    batch = Batch(redactor)
    requests = 0
    try:
        for rec in records:
            if rec.line > 0:  # pieces of a split request after the first carry -line
                requests += 1
            add_payload(batch, Record(rec.source, abs(rec.line), rec.kind, rec.data), "", 0)
        batch.resolve(batch.trace_ids)
        lines = (abs(records[0].line), abs(records[-1].line)) if records else None
        return decoded_from(batch, requests, lines)
    except DecodeError as exc:
        return Failed(isinstance(exc, DuplicateSpanError), exc.detail, exc.source, exc.line)


def _result(futures: deque[Future[Decoded | Failed]]) -> Decoded:
    out = futures.popleft().result()
    if isinstance(out, Failed):
        raise out.error()
    return out


def decode_records(
    records: Iterable[Record], redactor: Redactor | None, *, window: int | None = None
) -> Iterator[Decoded]:
    """The records decoded by the pool, chunk by chunk, in order.

    At most ``window`` chunks (twice the workers by default) are in flight, so a file
    is read only as fast as it is written. A bad record raises its :class:`DecodeError`
    when its chunk comes up; chunks still in flight are cancelled.
    """
    executor = pool()
    if executor is None:  # no pool: the same work, here
        for chunk in _chunks(records):
            out = decode_chunk(chunk, redactor)
            if isinstance(out, Failed):
                raise out.error()
            yield out
        return
    limit = window or 2 * executor.n
    futures: deque[Future[Decoded | Failed]] = deque()
    try:
        for chunk in _chunks(records):
            futures.append(executor.submit("chunk", chunk, redactor))
            if len(futures) >= limit:
                yield _result(futures)
        while futures:
            yield _result(futures)
    finally:
        for f in futures:
            f.cancel()


def _chunks(records: Iterable[Record]) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    size = 0
    for rec in records:
        pieces = (
            split_request(rec.data, CHUNK_BYTES)
            if rec.kind == "proto" and len(rec.data) > CHUNK_BYTES
            else None
        )
        parts: Iterable[Record] = (
            [rec]
            if pieces is None
            else (
                Record(rec.source, rec.line if i == 0 else -rec.line, "proto", p)
                for i, p in enumerate(pieces)
            )
        )
        for part in parts:
            if chunk and size + len(part.data) > CHUNK_BYTES:
                yield chunk
                chunk, size = [], 0
            chunk.append(part)
            size += len(part.data)
    if chunk:
        yield chunk


# -- splitting a request on its wire boundaries -------------------------------------------------
#
# An ExportTraceServiceRequest is field 1 (ResourceSpans) repeated; a ResourceSpans is its
# resource (1), ScopeSpans (2, repeated) and schema URL (3); a ScopeSpans is its scope (1),
# spans (2, repeated) and schema URL (3). A large request is cut between spans: each piece
# is a request of its own with the same resource and scope around a run of the spans. Only
# the tags and lengths of these three levels are read, never a span's contents.

_LEN = 2


def _varint(data: memoryview, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _fields(data: memoryview) -> Iterator[tuple[int, memoryview]]:
    """``(field number, raw bytes of the whole field, tag included)`` of a message whose fields
    are all length-delimited; ValueError for anything else."""
    i, end = 0, len(data)
    while i < end:
        start = i
        tag, i = _varint(data, i)
        if tag & 7 != _LEN:
            raise ValueError("not a length-delimited field")
        n, i = _varint(data, i)
        if i + n > end:
            raise ValueError("field runs past its message")
        i += n
        yield tag >> 3, data[start:i]


def _payload(f: memoryview) -> memoryview:
    _, i = _varint(f, 0)
    _, i = _varint(f, i)
    return f[i:]


def _wrap(field_number: int, parts: list[memoryview | bytes]) -> bytes:
    body = b"".join(parts)
    return _encode_varint(field_number << 3 | _LEN) + _encode_varint(len(body)) + body


def _plain(view: memoryview) -> bool:
    """Whether a request has the plain layout (every field of the three levels where the
    splitter expects it), read without copying anything."""
    try:
        for num, rs in _fields(view):
            if num != 1:
                return False
            for n2, f2 in _fields(_payload(rs)):
                if n2 == 2:
                    for _ in _fields(_payload(f2)):
                        pass
    except (ValueError, IndexError):
        return False
    return True


def split_request(data: bytes, limit: int) -> Iterator[bytes] | None:
    """``data`` (one encoded request) cut into requests of about ``limit`` bytes each, spans
    in order, made one at a time; None when its layout is not the plain one above (then it
    is decoded whole, and any error is found there)."""
    view = memoryview(data)
    if not _plain(view):
        return None
    return _pieces(view, limit)


def _pieces(view: memoryview, limit: int) -> Iterator[bytes]:
    current: list[memoryview | bytes] = []
    size = 0
    for _, rs in _fields(view):
        parts: Iterable[memoryview | bytes]
        parts = (rs,) if len(rs) <= limit else _split_resource(rs, limit)
        for part in parts:
            if current and size + len(part) > limit:
                yield b"".join(current)
                current, size = [], 0
            current.append(part)
            size += len(part)
    if current:
        yield b"".join(current)


def _split_resource(rs: memoryview, limit: int) -> Iterator[bytes]:
    rs_head: list[memoryview] = []
    scopes: list[memoryview] = []
    for n2, f2 in _fields(_payload(rs)):
        (scopes if n2 == 2 else rs_head).append(f2)
    for ss in scopes:
        if len(ss) <= limit:
            yield _wrap(1, [*rs_head, ss])
            continue
        ss_head: list[memoryview] = []
        spans: list[memoryview] = []
        for n3, f3 in _fields(_payload(ss)):
            (spans if n3 == 2 else ss_head).append(f3)
        run: list[memoryview] = []
        run_size = 0
        for sp in spans:
            if run and run_size + len(sp) > limit:
                yield _wrap(1, [*rs_head, _wrap(2, [*ss_head, *run])])
                run, run_size = [], 0
            run.append(sp)
            run_size += len(sp)
        if run or not spans:
            yield _wrap(1, [*rs_head, _wrap(2, [*ss_head, *run])])


@dataclass(frozen=True, slots=True)
class Refused:
    """A receiver body refused as a whole: its HTTP status and why."""

    status: int
    message: str


def decode_request(
    body: bytes, content_encoding: str, encoding: str, max_body: int, redactor: Redactor | None
) -> Decoded | Failed | Refused:
    """One receiver body, inflated and decoded (in a worker): a :class:`Refused` when it is
    too large or not a request at all, a :class:`Failed` when a span in it is bad (the
    receiver then stores what it can of it), else its batch."""
    from .._receiver import _TooLarge, decode_body, inflate  # the receiver imports this module

    try:
        data = inflate(body, content_encoding, max_body)
        payload = decode_body(data, encoding)  # type: ignore[arg-type]
    except _TooLarge:
        return Refused(413, f"the body is over {max_body} bytes once decompressed")
    except DecodeError as exc:
        return Refused(400, exc.detail)
    batch = Batch(redactor)
    try:
        if isinstance(payload, dict):
            batch.add_json(payload)
        else:
            batch.add_proto(payload)
        batch.resolve(batch.trace_ids)
    except DecodeError as exc:
        return Failed(isinstance(exc, DuplicateSpanError), exc.detail, "request", None)
    return decoded_from(batch, 1)
