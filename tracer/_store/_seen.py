"""Which spans one transaction has already written, as 64-bit fingerprints.

A large file is written in one transaction, chunk by chunk, and a trace may be cut
across many chunks. A span that a later chunk repeats must be skipped when it is the
same and refused when it differs, and telling needs the stored spans of the trace.
Reading them for every chunk costs what the trace has grown to: a 10M-span trace,
read 2,000 times over. :class:`SeenSpans` answers the question first: a chunk none
of whose spans has a fingerprint seen before repeats nothing, and is written without
reading the store. A fingerprint match is only a *may*: the exact check in SQL
decides, so a collision costs time, never a wrong answer.

Fingerprints are kept as sorted arrays whose sizes fall by more than half from one
to the next (merged as a binary counter carries), so a check costs a binary search
in each of at most log2(n) arrays and each fingerprint is merged log2(n) times: the
whole file, n log n in numpy instead of n² in the store. Memory: 8 bytes a span.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Odd 64-bit constants: ids that differ by small steps (sequential ids, as some
# exporters make them) do not cancel out when the words are mixed.
_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F))


def fingerprints(spans: pa.Table) -> np.ndarray:
    """One 64-bit fingerprint per row of ``spans`` from its ``trace_id`` and ``span_id``."""
    trace = _hex_words(spans.column("trace_id"), 2)
    span = _hex_words(spans.column("span_id"), 1)
    if trace is None or span is None:  # ids not in OTLP's hex form: Python's hash of them
        pairs = zip(
            spans.column("trace_id").to_pylist(), spans.column("span_id").to_pylist(), strict=True
        )
        return np.fromiter((hash(p) for p in pairs), dtype=np.int64, count=spans.num_rows).view(
            np.uint64
        )
    return mix(trace[:, 0], trace[:, 1], span[:, 0])


def mix(trace_hi: np.ndarray, trace_lo: np.ndarray, span: np.ndarray) -> np.ndarray:
    """A span's 64-bit key from the two words of its trace id and its span id."""
    return (trace_hi * _MIX[0] + trace_lo) * _MIX[1] + span


def _hex_words(column: pa.ChunkedArray, words: int) -> np.ndarray | None:
    """The column's ids as ``words`` big-endian 64-bit words each; None unless every id is
    exactly ``16 * words`` hex digits."""
    width = 16 * words
    ids = column.combine_chunks().cast(pa.string())
    if len(ids) == 0:
        return np.zeros((0, words), dtype=np.uint64)
    if ids.null_count or pc.min_max(pc.utf8_length(ids)).as_py() != {"min": width, "max": width}:
        return None
    offsets, data = ids.buffers()[1:3]
    assert offsets is not None and data is not None
    start = int(np.frombuffer(offsets, dtype=np.int32)[ids.offset])
    try:
        raw = bytes.fromhex(data[start : start + width * len(ids)].to_pybytes().decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(ids), words)


class SeenSpans:
    """The fingerprints of every span added so far."""

    def __init__(self) -> None:
        self._levels: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(level) for level in self._levels)

    def add(self, keys: np.ndarray) -> bool:
        """Add ``keys``; True when one of them may have been added before (by an earlier call:
        repeats within ``keys`` are the caller's to know)."""
        if not len(keys):
            return False
        keys = np.sort(keys)
        seen = any(_any_in(level, keys) for level in self._levels)
        levels = self._levels
        levels.append(keys)
        while len(levels) > 1 and len(levels[-2]) <= 2 * len(levels[-1]):
            top = levels.pop()
            # Two sorted runs: the stable sort (a timsort for integers) merges them in one pass.
            levels[-1] = np.sort(np.concatenate((levels[-1], top)), kind="stable")
        return seen


def _any_in(level: np.ndarray, keys: np.ndarray) -> bool:
    at = np.searchsorted(level, keys)
    at[at == len(level)] = 0
    return bool(np.any(level[at] == keys))
