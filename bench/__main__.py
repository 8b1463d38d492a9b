"""Run the benchmarks and print one table; results also go to bench/results/latest.json."""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path

import bench


def main(argv: list[str]) -> int:
    names = sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules(bench.__path__)
        if m.name.startswith("bench_")
    )
    wanted = argv or names
    unknown = [n for n in wanted if n not in names]
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; have: {', '.join(names)}", file=sys.stderr
        )
        return 2
    rows = []
    for name in wanted:
        module = importlib.import_module(f"bench.bench_{name}")
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        for m in module.run():
            rows.append(m.as_dict())
            print(f"  {m.case:<58} {m.value:>14,.2f} {m.unit:<10} {m.note}", flush=True)
        print(f"  ({time.perf_counter() - t0:.1f} s)", flush=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
