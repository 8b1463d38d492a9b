"""State documents: canonical JSON, the hash chain, JSON Patch diffs.

A run's state is a JSON document; each version is stored either whole or as an
RFC 6902 JSON Patch against its parent. ``hash`` of a version is
``sha256(parent_hash + canonical_json(snapshot))`` in hex, the parent hash of
version 1 being the empty string: change one byte of any version and every
later hash stops verifying.

Canonical JSON here is sorted keys, no whitespace and UTF-8 text, floats in
Python's shortest repr: stable across Python versions, which is all the chain
needs.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

import orjson

JSON = Any  # a JSON-compatible value: dict, list, str, int, float, bool or None


def canonical_json(doc: JSON) -> str:
    """The canonical text of a JSON document: sorted keys, no whitespace, UTF-8 as is,
    numbers as orjson writes them (shortest round-trip floats, ``1e-07`` as ``1e-7``).

    orjson is on every step's hot path (inputs, outputs, snapshots, hashes) and about
    ten times faster than ``json.dumps``; Python's encoder takes over only for what
    orjson refuses (integers beyond 64 bits). NaN and infinities are not JSON and
    raise ValueError.
    """
    try:
        out = orjson.dumps(doc, option=_CANONICAL)
    except TypeError:
        return json.dumps(
            doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    if b"null" in out and _has_non_finite(doc):
        raise ValueError("NaN and infinities are not JSON")
    return out.decode()


_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _has_non_finite(doc: JSON) -> bool:
    if isinstance(doc, float):
        return doc != doc or doc in (float("inf"), float("-inf"))
    if isinstance(doc, dict):
        return any(_has_non_finite(v) for v in doc.values())
    if isinstance(doc, (list, tuple)):
        return any(_has_non_finite(v) for v in doc)
    return False


def chain_hash(parent_hash: str, doc: JSON) -> str:
    """The hash of a version whose snapshot is ``doc`` and whose parent hash is ``parent_hash``."""
    h = hashlib.sha256()
    h.update(parent_hash.encode("ascii"))
    h.update(canonical_json(doc).encode("utf-8"))
    return h.hexdigest()


# -- JSON Pointer / JSON Patch ---------------------------------------------------------------


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def pointer(*tokens: str | int) -> str:
    """A JSON Pointer from path tokens: ``pointer("a", 0)`` is ``/a/0``."""
    return "".join("/" + _escape(str(t)) for t in tokens)


def split_pointer(ptr: str) -> list[str]:
    if ptr == "":
        return []
    if not ptr.startswith("/"):
        raise ValueError(f"JSON pointer must start with '/': {ptr!r}")
    return [_unescape(t) for t in ptr[1:].split("/")]


def diff(old: JSON, new: JSON) -> list[dict[str, Any]]:
    """A JSON Patch that turns ``old`` into ``new`` (add, remove, replace only).

    Objects are compared key by key, lists element by element (a list that
    grows at the end gets ``add`` operations), anything else is replaced.
    """
    ops: list[dict[str, Any]] = []
    _diff(old, new, "", ops)
    return ops


def _diff(old: JSON, new: JSON, path: str, ops: list[dict[str, Any]]) -> None:
    if type(old) is type(new) and old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for k in old:
            if k not in new:
                ops.append({"op": "remove", "path": path + "/" + _escape(k)})
        for k, v in new.items():
            p = path + "/" + _escape(k)
            if k in old:
                _diff(old[k], v, p, ops)
            else:
                ops.append({"op": "add", "path": p, "value": v})
        return
    if isinstance(old, list) and isinstance(new, list):
        common = min(len(old), len(new))
        for i in range(common):
            _diff(old[i], new[i], f"{path}/{i}", ops)
        for i in range(len(old) - 1, common - 1, -1):
            ops.append({"op": "remove", "path": f"{path}/{i}"})
        for i in range(common, len(new)):
            ops.append({"op": "add", "path": f"{path}/{i}", "value": new[i]})
        return
    ops.append({"op": "replace", "path": path, "value": new})


def apply_patch(doc: JSON, patch: list[dict[str, Any]], *, in_place: bool = False) -> JSON:
    """``doc`` with ``patch`` applied; ``doc`` itself is changed only when ``in_place``."""
    result = doc if in_place else copy.deepcopy(doc)
    for op in patch:
        result = _apply_op(result, op)
    return result


def _apply_op(doc: JSON, op: dict[str, Any]) -> JSON:
    kind = op.get("op")
    tokens = split_pointer(op["path"])
    if not tokens:
        if kind in ("add", "replace"):
            return copy.deepcopy(op["value"])
        raise ValueError(f"cannot {kind} the whole document")
    parent = doc
    for t in tokens[:-1]:
        parent = parent[int(t)] if isinstance(parent, list) else parent[t]
    last = tokens[-1]
    if isinstance(parent, list):
        idx = len(parent) if last == "-" else int(last)
        if kind == "add":
            parent.insert(idx, copy.deepcopy(op["value"]))
        elif kind == "remove":
            del parent[idx]
        elif kind == "replace":
            parent[idx] = copy.deepcopy(op["value"])
        else:
            raise ValueError(f"unsupported patch op {kind!r}")
    else:
        if kind in ("add", "replace"):
            parent[last] = copy.deepcopy(op["value"])
        elif kind == "remove":
            del parent[last]
        else:
            raise ValueError(f"unsupported patch op {kind!r}")
    return doc


def changed_keys(patch: list[dict[str, Any]]) -> list[str]:
    """The top-level keys a patch touches, in first-touched order."""
    seen: dict[str, None] = {}
    for op in patch:
        tokens = split_pointer(op["path"])
        if tokens:
            seen.setdefault(tokens[0], None)
    return list(seen)


# -- Diffs for people ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One leaf that differs between two versions of a document."""

    path: str  # JSON Pointer
    change: Literal["added", "removed", "changed"]
    old: JSON = None
    new: JSON = None


def field_changes(old: JSON, new: JSON) -> list[FieldChange]:
    """Leaf-level changes from ``old`` to ``new``, for display."""
    out: list[FieldChange] = []
    _leaf_changes(old, new, "", out)
    return out


def _leaf_changes(old: JSON, new: JSON, path: str, out: list[FieldChange]) -> None:
    if type(old) is type(new) and old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for k in old:
            if k not in new:
                out.append(FieldChange(path + "/" + _escape(k), "removed", old=old[k]))
        for k, v in new.items():
            p = path + "/" + _escape(k)
            if k in old:
                _leaf_changes(old[k], v, p, out)
            else:
                out.append(FieldChange(p, "added", new=v))
        return
    if isinstance(old, list) and isinstance(new, list):
        common = min(len(old), len(new))
        for i in range(common):
            _leaf_changes(old[i], new[i], f"{path}/{i}", out)
        for i in range(common, len(old)):
            out.append(FieldChange(f"{path}/{i}", "removed", old=old[i]))
        for i in range(common, len(new)):
            out.append(FieldChange(f"{path}/{i}", "added", new=new[i]))
        return
    out.append(FieldChange(path, "changed", old=old, new=new))
