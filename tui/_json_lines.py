"""A JSON document as foldable lines: pure, so folding and diff marks are tested without the app.

Each container is one line (``key: {3 keys}`` when folded, ``key: {`` when open);
each scalar is one line. Paths are JSON Pointers, the same as the store's field
changes, so a change at ``/applicant/score`` marks that line and every open
container above it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ._text import clip

__all__ = ["JsonLine", "ancestors", "json_lines", "line_runs", "scalar_role"]


@dataclass(frozen=True, slots=True)
class JsonLine:
    path: str  # JSON Pointer of the value on this line
    depth: int
    key: str | None  # object key or "[i]"; None for the document itself
    kind: str  # "object", "array", "value", "close"
    text: str  # scalar text, or the folded summary
    folded: bool = False
    change: str | None = None  # "added", "changed", or "inner" (a change below a folded container)
    value_role: str = "str"


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def ancestors(path: str) -> Iterator[str]:
    """``/a/b/c`` -> ``/a/b``, ``/a``, ``""``."""
    while path:
        path = path.rsplit("/", 1)[0]
        yield path


def scalar_role(value: Any) -> str:
    if isinstance(value, str):
        return "str"
    if isinstance(value, bool) or value is None:
        return "lit"
    if isinstance(value, int | float):
        return "num"
    return "str"


def _scalar(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)


def json_lines(
    doc: Any,
    *,
    folded: set[str] | frozenset[str] = frozenset(),
    changes: Mapping[str, str] | None = None,
    limit: int = 200_000,
) -> list[JsonLine]:
    """Lines of ``doc`` with the containers at ``folded`` paths closed.

    ``changes`` maps a changed path to ``added``/``changed``; the line of that path
    carries it, and a folded container holding one carries ``inner``. At most
    ``limit`` lines (a last line says how many more there were).
    """
    changes = changes or {}
    cut = False
    inner: set[str] = set()
    for p in changes:
        inner.update(ancestors(p))
    out: list[JsonLine] = []

    def walk(value: Any, path: str, depth: int, key: str | None) -> None:
        nonlocal cut
        if len(out) >= limit:
            cut = True
            return
        change = changes.get(path)
        if isinstance(value, dict | list):
            is_obj = isinstance(value, dict)
            n = len(value)
            if n == 0:
                out.append(
                    JsonLine(
                        path,
                        depth,
                        key,
                        "value",
                        "{}" if is_obj else "[]",
                        change=change,
                        value_role="lit",
                    )
                )
                return
            if path in folded:
                summary = (
                    f"{{… {n} key{'s' if n != 1 else ''}}}"
                    if is_obj
                    else f"[… {n} item{'s' if n != 1 else ''}]"
                )
                mark = change or ("inner" if path in inner else None)
                out.append(
                    JsonLine(
                        path,
                        depth,
                        key,
                        "object" if is_obj else "array",
                        summary,
                        True,
                        mark,
                        "dim",
                    )
                )
                return
            out.append(
                JsonLine(
                    path,
                    depth,
                    key,
                    "object" if is_obj else "array",
                    "{" if is_obj else "[",
                    False,
                    change,
                    "dim",
                )
            )
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for k, v in items:
                if len(out) >= limit:
                    cut = True
                    return
                token = _escape(str(k))
                walk(v, f"{path}/{token}", depth + 1, str(k) if is_obj else f"[{k}]")
            if cut:
                return
            out.append(
                JsonLine(path, depth, None, "close", "}" if is_obj else "]", value_role="dim")
            )
            return
        out.append(
            JsonLine(
                path,
                depth,
                key,
                "value",
                _scalar(value),
                change=change,
                value_role=scalar_role(value),
            )
        )

    walk(doc, "", 0, None)
    if cut:
        out.append(
            JsonLine(
                "",
                0,
                None,
                "close",
                f"… (more than {limit} lines; fold something)",
                value_role="dim",
            )
        )
    return out


_MARKS = {"added": ("+ ", "added"), "changed": ("~ ", "changed"), "inner": ("· ", "changed")}


def line_runs(line: JsonLine, width: int = 200) -> list[tuple[str, str]]:
    """(text, role) runs for one line: change mark, indent, fold marker, key, value."""
    mark, mark_role = _MARKS.get(line.change or "", ("  ", "dim"))
    runs: list[tuple[str, str]] = [(mark, mark_role), ("  " * line.depth, "dim")]
    if line.kind in ("object", "array"):
        runs.append(("▸ " if line.folded else "▾ ", "tree"))
    elif line.kind == "value":
        runs.append(("  ", "dim"))
    if line.key is not None:
        key_role = line.change if line.change in ("added", "changed") else "key"
        runs.append((clip(line.key, 40), key_role))
        runs.append((": ", "dim"))
    used = sum(len(t) for t, _ in runs)
    runs.append((clip(line.text, max(8, width - used)), line.value_role))
    return runs
