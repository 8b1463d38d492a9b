"""Spans as a forest of numbers: what the re-derivation and the span tree both need.

A span is its position ``i`` in an array; ``parent[i]`` is its parent's position, or
-1 for a root or a parent that never arrived. Everything here is pointer doubling:
``log2(n) + 1`` passes over n numbers, whatever the depth, so a chain a million spans
deep costs what a wide tree does.
"""

from __future__ import annotations

import numpy as np


def parents(keys: np.ndarray, wanted: np.ndarray, has: np.ndarray) -> np.ndarray | None:
    """Each span's parent position: the span whose key is ``wanted`` (where ``has``), else
    -1. None when two spans share a key, as then the keys cannot tell them apart."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(keys)
    ordered = keys[order]
    if np.any(ordered[1:] == ordered[:-1]):
        return None
    at = np.searchsorted(ordered, wanted).clip(0, len(keys) - 1)
    return np.where(has & (ordered[at] == wanted), order[at], -1)


def passes(n: int) -> int:
    """Doublings enough for any chain of ``n`` spans: ``2**passes > n``."""
    return max(1, int(n).bit_length()) + 1


def far_ancestors(parent: np.ndarray) -> np.ndarray:
    """Each span's ancestor at least n steps up: -1 when its chain ends at a root; on or
    below a cycle, a span on that cycle. On a cycle the map is one to one, so the
    ancestors found are exactly the spans on cycles."""
    far = parent.copy()
    for _ in range(passes(len(parent))):
        up = far >= 0
        far[up] = far[far[up]]
    return far


def on_cycles(far: np.ndarray) -> np.ndarray:
    """The spans on a cycle (a mask), from :func:`far_ancestors`."""
    cycle = np.zeros(len(far), dtype=bool)
    cycle[far[far >= 0]] = True
    return cycle


def nearest(parent: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Each span's nearest stop at or above it: every chain of non-stops must end at one
    (roots and spans on cycles are stops)."""
    nxt = np.where(stop, np.arange(len(parent)), parent)
    for _ in range(passes(len(parent))):
        nxt = nxt[nxt]
    return nxt


def path_sums(parent: np.ndarray, value: np.ndarray) -> np.ndarray:
    """For every span, the sum of ``value`` over it and its ancestors."""
    total = value.copy()
    up = parent.copy()
    for _ in range(passes(len(parent))):
        going = up >= 0
        if not going.any():
            break
        nxt = up[going]
        total[going] += total[nxt]
        up[going] = up[nxt]
    return total
