"""agentrace's benchmarks: ``python -m bench [NAME ...]`` (``make bench``).

Each ``bench/bench_<name>.py`` has ``run() -> list[Measure]``; every figure is
measured side by side with its anchor (the floor or the tool we compare to) in
the same process, so ratios hold even where absolute numbers move.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Measure:
    bench: str
    case: str
    value: float
    unit: str
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """The fastest of ``repeat`` timed calls of ``fn``, in seconds (GC off while timing)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        finally:
            gc.enable()
    return best
