"""``python -m engine.scenarios [NAME ...]``: rewrite sample_traces/<name>.jsonl (all by default)."""

from __future__ import annotations

import sys

from . import DEFAULT_SEED, regenerate


def main(argv: list[str]) -> int:
    for path in regenerate(argv or "all", seed=DEFAULT_SEED):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
