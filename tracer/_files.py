"""Reading OTLP trace files: what the collector's file exporter and our sinks write.

One file holds one or many ExportTraceServiceRequests, in one of these layouts:

* OTLP/JSON lines, one request per line (the file exporter's default, our
  ``OtlpJsonLinesSink``); blank lines are skipped;
* one OTLP/JSON request, on one line or pretty-printed over many;
* one raw protobuf request (the body an OTLP/HTTP exporter POSTs);
* 4-byte big-endian length-prefixed records, each a protobuf or JSON request
  (the file exporter with ``format: proto``, or with ``compression``, in which
  case each record may itself be a zstd frame);
* any of these gzip- or zstd-compressed as a whole (``.gz``, ``.zst``; the
  file exporter's newer ``compression: zstd`` writes one zstd stream).

Files are read as streams, one record at a time, so a large import holds one
request in memory, not the file. A record's ``line`` is its 1-based line (JSON
lines, and 1 for a whole-file request) or its record number (length-prefixed).
Decoding is left to the store, which names the file and line of a bad record.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import mmap
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, cast

from ._errors import DecodeError

Format = Literal["auto", "otlp-json", "otlp-proto"]
Progress = Callable[[int], None]  # called with the bytes of the file read so far

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# A request starts with field 1 (resource_spans), wire type 2; a length prefix below
# 16 MiB starts with a zero byte. Nothing else is a trace file.
_PROTO_HEAD = 0x0A
_BOM = b"\xef\xbb\xbf"
MAX_RECORD = 1 << 28  # 256 MiB: no collector writes a request that large


@dataclass(frozen=True, slots=True)
class Record:
    """One request read from a file: JSON text or protobuf bytes, and where it was."""

    source: str
    line: int  # 1-based line (JSON lines) or record number (length-prefixed protobuf)
    kind: Literal["json", "proto"]
    data: (
        bytes | memoryview
    )  # a memoryview of the mapped file for a whole-file request (mapped=True)


def _zstd() -> Any:
    try:
        import zstandard
    except ImportError:  # pragma: no cover - installed with aiohttp; kept optional
        return None
    return zstandard


def open_stream(path: str | Path, source: str | None = None) -> tuple[IO[bytes], IO[bytes]]:
    """``(content, raw)``: the file's decompressed content as a stream, and the file itself
    (whose ``tell()`` says how far the read has got on disk). Close ``content`` then ``raw``."""
    source = source or str(path)
    try:
        raw: IO[bytes] = open(path, "rb")  # noqa: SIM115  # returned to the caller, who closes it
    except OSError as exc:
        raise DecodeError(f"cannot read: {exc.strerror}", source=source) from None
    head = raw.read(4)
    raw.seek(0)
    if head[:2] == GZIP_MAGIC:
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb")), raw
    if head == ZSTD_MAGIC:
        zstd = _zstd()
        if zstd is None:
            raw.close()
            raise DecodeError(
                "zstd-compressed, and the zstandard package is not installed", source=source
            )
        reader = zstd.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=False)
        return io.BufferedReader(reader), raw
    return raw, raw


def _decompress_error(exc: BaseException, source: str, line: int | None = None) -> DecodeError:
    return DecodeError(f"bad compressed data: {exc}", source=source, line=line)


def sniff(path: str | Path, size: int = 65_536) -> bytes:
    """Up to ``size`` bytes from the start of the file's decompressed content."""
    content, raw = open_stream(path)
    try:
        return content.read(size)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise _decompress_error(exc, str(path)) from None
    finally:
        content.close()
        raw.close()


def read_records(
    path: str | Path,
    fmt: Format = "auto",
    *,
    progress: Progress | None = None,
    mapped: bool = False,
) -> Iterator[Record]:
    """The requests in one file, in order; see the module docstring for the layouts.

    ``fmt`` forces JSON or protobuf; ``auto`` looks at the first bytes. A file that
    is none of the layouts, a truncated record or bad compressed data is a
    :class:`DecodeError` naming the file (and record). Not thread-safe; one
    generator per thread.

    With ``mapped``, an uncompressed file holding one protobuf request is not read
    into memory: its record's ``data`` is a memoryview of the file mapped read-only,
    valid until the generator moves on (for a reader that walks it piece by piece,
    giving pages back as it goes: tracer._store._parallel).
    """
    source = str(path)
    if fmt not in ("auto", "otlp-json", "otlp-proto"):
        raise DecodeError(f"unknown format {fmt!r}", source=source)
    content, raw = open_stream(path, source)
    try:
        try:
            yield from _records(content, raw, source, fmt, progress, mapped)
        except (OSError, EOFError, zlib.error) as exc:
            raise _decompress_error(exc, source) from None
        except Exception as exc:
            # zstandard raises its own ZstdError (a plain Exception subclass).
            if type(exc).__name__ == "ZstdError":
                raise _decompress_error(exc, source) from None
            raise
    finally:
        content.close()
        raw.close()


def _records(
    content: IO[bytes],
    raw: IO[bytes],
    source: str,
    fmt: Format,
    progress: Progress | None,
    mapped: bool = False,
) -> Iterator[Record]:
    buffered = (
        content if isinstance(content, io.BufferedReader) else io.BufferedReader(cast(Any, content))
    )
    head = buffered.peek(64)[:64]
    if head.startswith(_BOM):  # some Windows tools start UTF-8 text with one
        buffered.read(len(_BOM))
        head = buffered.peek(64)[:64]
    first = head.lstrip()[:1]
    if not head:
        if progress is not None:
            progress(raw.tell())
        return
    if head[:1] == b"\x00":
        yield from _length_prefixed(buffered, raw, source, progress)
    elif fmt == "otlp-json" or (fmt == "auto" and first in (b"{", b"[", b"")):
        yield from _json(buffered, raw, source, progress)
    elif fmt == "otlp-proto" or head[0] == _PROTO_HEAD:
        if mapped and content is raw and buffered.tell() == 0:
            yield from _mapped(raw, source, progress)
            return
        data = buffered.read()
        if progress is not None:
            progress(raw.tell())
        yield Record(source, 1, "proto", data)
    else:
        raise DecodeError(
            f"not an OTLP trace file: it starts with {head[:8]!r}; expected OTLP/JSON, protobuf, "
            "length-prefixed protobuf, gzip or zstd",
            source=source,
        )


def _mapped(raw: IO[bytes], source: str, progress: Progress | None) -> Iterator[Record]:
    """The whole file as one protobuf record, mapped rather than read."""
    size = os.fstat(raw.fileno()).st_size
    mm = mmap.mmap(raw.fileno(), size, access=mmap.ACCESS_READ)
    view = memoryview(mm)
    try:
        if progress is not None:
            progress(size)
        yield Record(source, 1, "proto", view)
    finally:
        # Views of the map may outlive this (a consumer's pieces); then the map is closed
        # when the last of them goes.
        with contextlib.suppress(BufferError):
            view.release()
            mm.close()


def _lines(stream: IO[bytes], source: str) -> Iterator[tuple[int, bytes]]:
    """Numbered lines, each at most MAX_RECORD bytes (a bigger one is no request)."""
    lineno = 0
    while True:
        line = stream.readline(MAX_RECORD + 1)
        if not line:
            return
        lineno += 1
        if len(line) > MAX_RECORD:
            raise DecodeError(
                f"line {lineno} is longer than {MAX_RECORD >> 20} MiB; not OTLP/JSON",
                source=source,
                line=lineno,
            )
        yield lineno, line


def _json(
    stream: IO[bytes], raw: IO[bytes], source: str, progress: Progress | None
) -> Iterator[Record]:
    lines = _lines(stream, source)
    first = next((numbered for numbered in lines if numbered[1].strip()), None)
    if first is None:
        if progress is not None:
            progress(raw.tell())
        return
    lineno, line = first
    stripped = line.strip()
    # A pretty-printed request spans many lines; a JSON-lines file holds a whole object
    # on each. The first line tells them apart.
    if not (stripped.startswith(b"{") and stripped.endswith(b"}")):
        rest = stream.read(MAX_RECORD + 1 - len(line))
        if len(line) + len(rest) > MAX_RECORD:
            raise DecodeError(
                f"a JSON document over {MAX_RECORD >> 20} MiB; not OTLP/JSON", source=source
            )
        if progress is not None:
            progress(raw.tell())
        yield Record(source, lineno, "json", line + rest)
        return
    yield Record(source, lineno, "json", stripped)
    for lineno, line in lines:
        if line.strip():
            if progress is not None:
                progress(raw.tell())
            yield Record(source, lineno, "json", line.strip())
    if progress is not None:
        progress(raw.tell())


def _length_prefixed(
    stream: IO[bytes], raw: IO[bytes], source: str, progress: Progress | None
) -> Iterator[Record]:
    n = 0
    while True:
        prefix = stream.read(4)
        if not prefix:
            break
        n += 1
        if len(prefix) < 4:
            raise DecodeError(
                f"record {n}: the file ends inside its 4-byte length prefix", source=source, line=n
            )
        size = int.from_bytes(prefix, "big")
        if size == 0:
            raise DecodeError(
                f"record {n} has a length prefix of 0; not a length-prefixed OTLP file",
                source=source,
                line=n,
            )
        if size > MAX_RECORD:
            raise DecodeError(
                f"record {n}: length prefix {size} is beyond any request; not a length-prefixed OTLP file",
                source=source,
                line=n,
            )
        data = stream.read(size)
        if len(data) < size:
            raise DecodeError(
                f"record {n} is truncated: {len(data)} of {size} bytes", source=source, line=n
            )
        data = _unwrap(data, source, n)
        if progress is not None:
            progress(raw.tell())
        yield Record(source, n, "json" if data.lstrip()[:1] == b"{" else "proto", data)


def _unwrap(data: bytes, source: str, n: int) -> bytes:
    """A record compressed on its own (older collectors' ``compression: zstd``)."""
    if data[:4] == ZSTD_MAGIC:
        zstd = _zstd()
        if zstd is None:
            raise DecodeError(
                "zstd-compressed record, and zstandard is not installed", source=source, line=n
            )
        try:
            return zstd.ZstdDecompressor().decompressobj().decompress(data)
        except Exception as exc:
            raise _decompress_error(exc, source, n) from None
    if data[:2] == GZIP_MAGIC:
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise _decompress_error(exc, source, n) from None
    return data
