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

import mmap
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
# A request up to this size is one piece of work as it is; a larger one is cut between its
# spans first (cutting is Python work per span, and SDKs send requests of a few MiB at most).
SPLIT_BYTES = 4 * CHUNK_BYTES
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


def merged(chunks: list[Decoded]) -> Decoded | None:
    """``chunks`` as one chunk, their tables end to end; None when two share a trace (a span
    may then repeat, which only the writer's checks against the store can tell)."""
    traces: set[str] = set()
    for chunk in chunks:
        if not traces.isdisjoint(chunk.trace_ids):
            return None
        traces |= chunk.trace_ids
    names = dict.fromkeys(name for chunk in chunks for name in chunk.tables)
    return Decoded(
        {n: pa.concat_tables([c.tables[n] for c in chunks if n in c.tables]) for n in names},
        frozenset(traces),
        sum(c.duplicates for c in chunks),
        frozenset().union(*(c.langgraph for c in chunks)),
        frozenset().union(*(c.cross_links for c in chunks)),
        sum(c.requests for c in chunks),
        sum(c.spans for c in chunks),
        None,
        any(c.has_errors for c in chunks),
    )


def decode_chunk(records: list[Record], redactor: Redactor | None) -> Decoded | Failed:
    """Decode ``records`` into one batch; the agents of its traces are resolved over the
    chunk (the writer re-derives traces it has seen before). Runs in a worker."""
    from ._ingest import add_payload

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
            if rec.kind == "proto" and len(rec.data) > SPLIT_BYTES
            else None
        )
        parts: Iterable[Record]
        if pieces is not None:
            parts = (
                Record(rec.source, rec.line if i == 0 else -rec.line, "proto", p)
                for i, p in enumerate(pieces)
            )
        elif isinstance(rec.data, memoryview):  # a mapped file: the pool takes bytes
            parts = [Record(rec.source, rec.line, rec.kind, bytes(rec.data))]
        else:
            parts = [rec]
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
# the tags and lengths of these three levels are read, never a span's contents, and nothing
# is kept per span: the fields are walked by offset, twice (once to check the layout, once
# to cut), so memory holds a piece, not the request's spans.
#
# A request read from a mapped file (a memoryview of an mmap) gives its pages back as the
# walks pass them (madvise DONTNEED: a page read again is read again from the file), so
# neither walk leaves the file resident.

_LEN = 2
_RELEASE_STEP = 4 << 20  # bytes of a mapped file given back at a time


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


def _fields(data: memoryview, i: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """``(field number, field start, payload start, field end)`` of the fields in
    ``data[i:end]``, a message whose fields are all length-delimited; ValueError else."""
    while i < end:
        start = i
        tag, i = _varint(data, i)
        if tag & 7 != _LEN:
            raise ValueError("not a length-delimited field")
        n, i = _varint(data, i)
        if i + n > end:
            raise ValueError("field runs past its message")
        yield tag >> 3, start, i, i + n
        i += n


class _Pages:
    """Gives back the pages of a mapped request up to an offset, a few MiB at a time."""

    def __init__(self, view: memoryview, start: int = 0) -> None:
        obj = view.obj
        self.map = obj if isinstance(obj, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED") else None
        self.done = start - start % mmap.PAGESIZE

    def release(self, upto: int) -> None:
        if self.map is None or upto - self.done < _RELEASE_STEP:
            return
        upto -= upto % mmap.PAGESIZE
        self.map.madvise(mmap.MADV_DONTNEED, self.done, upto - self.done)
        self.done = upto


def _plain(view: memoryview, pages: _Pages) -> bool:
    """Whether a request has the plain layout (every field of the three levels where the
    splitter expects it), read without copying anything."""
    try:
        for num, _, p, end in _fields(view, 0, len(view)):
            if num != 1:
                return False
            for n2, _, p2, end2 in _fields(view, p, end):
                if n2 == 2:
                    for _, _, _, end3 in _fields(view, p2, end2):
                        pages.release(end3)
            pages.release(end)
    except (ValueError, IndexError):
        return False
    return True


def split_request(data: bytes | memoryview, limit: int) -> Iterator[bytes] | None:
    """``data`` (one encoded request) cut into requests of about ``limit`` bytes each, spans
    in order, made one at a time; None when its layout is not the plain one above (then it
    is decoded whole, and any error is found there)."""
    view = memoryview(data)
    if not _plain(view, _Pages(view)):
        return None
    return _pieces(view, limit, _Pages(view))


def _wrap(field_number: int, parts: list[memoryview | bytes]) -> bytes:
    body = b"".join(parts)
    return _encode_varint(field_number << 3 | _LEN) + _encode_varint(len(body)) + body


def _pieces(view: memoryview, limit: int, pages: _Pages) -> Iterator[bytes]:
    current: list[memoryview | bytes] = []
    size = 0
    for _, start, p, end in _fields(view, 0, len(view)):
        parts: Iterable[memoryview | bytes]
        parts = (
            (view[start:end],)
            if end - start <= limit
            else _split_resource(view, p, end, limit, pages)
        )
        for part in parts:
            if current and size + len(part) > limit:
                yield b"".join(current)
                current, size = [], 0
                pages.release(start)
            current.append(part)
            size += len(part)
    if current:
        yield b"".join(current)


def _split_resource(
    view: memoryview, p: int, end: int, limit: int, pages: _Pages
) -> Iterator[bytes]:
    rs_head = [view[s:e] for n2, s, _, e in _fields(view, p, end) if n2 != 2]
    for n2, s2, p2, end2 in _fields(view, p, end):
        if n2 != 2:
            continue
        if end2 - s2 <= limit:
            yield _wrap(1, [*rs_head, view[s2:end2]])
            continue
        # The scope's own fields may follow its spans: a first walk finds them.
        ss_head: list[memoryview] = []
        walk = _Pages(view, p2)
        for n3, s, _, e in _fields(view, p2, end2):
            if n3 != 2:
                ss_head.append(view[s:e])
            walk.release(e)
        pages = _Pages(view, p2)
        run: list[memoryview | bytes] = []
        run_size = 0
        spans = 0
        for n3, s3, _, e3 in _fields(view, p2, end2):
            if n3 != 2:
                continue
            spans += 1
            if run and run_size + (e3 - s3) > limit:
                yield _wrap(1, [*rs_head, _wrap(2, [*ss_head, *run])])
                run, run_size = [], 0
                pages.release(s3)
            run.append(view[s3:e3])
            run_size += e3 - s3
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
            batch.add_proto_wire(data, payload)
        batch.resolve(batch.trace_ids)
    except DecodeError as exc:
        return Failed(isinstance(exc, DuplicateSpanError), exc.detail, "request", None)
    return decoded_from(batch, 1)
