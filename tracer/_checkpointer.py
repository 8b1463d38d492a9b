"""LangGraph checkpointers read directly: SqliteSaver files and PostgresSaver databases.

A checkpointer holds every checkpoint of every thread, the writes each task made
(``writes`` / ``checkpoint_writes``: task id, node, channel, value) and, in each
checkpoint, which channel versions each node had seen (``versions_seen``). This
module turns one thread's checkpoints into the snapshot dicts of a
``get_state_history`` dump (:mod:`tracer._langgraph` stores them), with two more
facts a dump lacks: the writes of each task channel by channel, and the
checkpoint each node read (``reads``).

Checkpoint blobs are hostile data. LangGraph's own serializer may import modules
and build the classes a msgpack ext type names; here nothing is ever imported or
built. :func:`decode_msgpack` turns every ext type into a plain description
(``{"__type__": "langchain_core.messages.ai.AIMessage", **fields}``); ``json``
blobs are parsed as JSON; ``pickle`` and every other serializer type is refused
with one line, nothing written. So is a database that is not a checkpointer, one
of an unknown schema, or a checkpoint of an unknown format version.

Credentials in a Postgres URL are never shown: :func:`safe_url` is the name a URL
goes by in every message and in the store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import ormsgpack

from ._errors import CheckpointerError

SQLITE_MAGIC: Final = b"SQLite format 3\x00"
# Checkpoint format versions ("v" in a checkpoint) this reader knows.
KNOWN_CHECKPOINT_FORMATS: Final = frozenset({1, 2, 3, 4})
# PostgresSaver's migrations (checkpoint_migrations.v) known to this reader: 0..9.
KNOWN_PG_MIGRATION: Final = 9
_MAX_DEPTH: Final = 64  # ext types nest; a hostile blob may nest them without end

# msgpack ext codes of LangGraph's serializer (langgraph.checkpoint.serde.jsonplus).
_EXT_CONSTRUCTOR_SINGLE_ARG: Final = 0
_EXT_CONSTRUCTOR_POS_ARGS: Final = 1
_EXT_CONSTRUCTOR_KW_ARGS: Final = 2
_EXT_METHOD_SINGLE_ARG: Final = 3
_EXT_PYDANTIC_V1: Final = 4
_EXT_PYDANTIC_V2: Final = 5
_EXT_NUMPY_ARRAY: Final = 6
_EXT_DELTA_SNAPSHOT: Final = 7


# -- safe decoding ---------------------------------------------------------------------------


def _unpack(data: bytes, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise ValueError(f"ext types nested deeper than {_MAX_DEPTH}")

    def hook(code: int, payload: bytes) -> Any:
        return _describe(code, _unpack(payload, depth + 1))

    return ormsgpack.unpackb(data, ext_hook=hook, option=ormsgpack.OPT_NON_STR_KEYS)


def _jsonable(value: Any) -> Any:
    """msgpack may hold what JSON cannot: bytes, non-string keys. Make it JSON."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return {"__bytes__": len(value)}
    return value


def _describe(code: int, tup: Any) -> Any:
    """An ext value as a plain description: the type it names, and its data. Nothing imported."""
    if code == _EXT_DELTA_SNAPSHOT:
        return tup
    if code == _EXT_NUMPY_ARRAY and isinstance(tup, list) and len(tup) >= 2:
        return {"__type__": "numpy.ndarray", "dtype": str(tup[0]), "shape": _jsonable(tup[1])}
    if not (isinstance(tup, list) and len(tup) >= 3):
        return {"__type__": f"<msgpack ext {code}>"}
    module, name, arg = tup[0], tup[1], tup[2]
    qual = f"{module}.{name}" if isinstance(module, str) and isinstance(name, str) else "?"
    if qual == "uuid.UUID" and isinstance(arg, str) and len(arg) == 32:
        return f"{arg[:8]}-{arg[8:12]}-{arg[12:16]}-{arg[16:20]}-{arg[20:]}"
    if qual in ("builtins.set", "builtins.frozenset", "collections.deque") and isinstance(
        arg, list
    ):
        return _jsonable(arg)
    if (qual.startswith("datetime.") or qual in ("decimal.Decimal", "pathlib.Path")) and isinstance(
        arg, str | int | float
    ):
        return arg
    if isinstance(arg, dict):
        return {"__type__": qual, **_jsonable(arg)}
    if code == _EXT_CONSTRUCTOR_POS_ARGS and isinstance(arg, list):
        return {"__type__": qual, "args": _jsonable(arg)}
    return {"__type__": qual, "value": _jsonable(arg)}


def decode_msgpack(data: bytes) -> Any:
    """msgpack from LangGraph's serializer as JSON-able data, building no object.

    Raises ``ValueError`` for data that is not msgpack.
    """
    try:
        return _jsonable(_unpack(data, 0))
    except (ormsgpack.MsgpackDecodeError, RecursionError) as exc:
        raise ValueError(f"not msgpack: {exc}") from None


def decode_typed(type_: Any, data: Any, where: str, source: str = "<input>") -> Any:
    """A ``(type, bytes)`` pair as a checkpointer stores it, decoded safely, or a
    :class:`CheckpointerError` naming ``where``."""
    if type_ in (None, "null", "empty"):
        return None
    if isinstance(data, memoryview):
        data = bytes(data)
    if type_ in ("bytes", "bytearray"):
        return {"__bytes__": len(data or b"")}
    if not isinstance(data, bytes):
        raise CheckpointerError(source=source, detail=f"{where}: a {type_} value that is not bytes")
    try:
        if type_ == "msgpack":
            return decode_msgpack(data)
        if type_ == "json":
            return _jsonable(orjson.loads(data))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise CheckpointerError(
            source=source, detail=f"{where}: {type_} value that does not decode: {exc}"
        ) from None
    raise CheckpointerError(
        source=source,
        detail=f"{where}: serializer type {str(type_)[:40]!r} is not read (only msgpack and json; "
        "pickle and encrypted values are never decoded)",
    )


# -- the neutral form ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    """One checkpoint row, decoded."""

    thread: str
    ns: str
    checkpoint_id: str
    parent_id: str | None
    checkpoint: dict[str, Any]
    metadata: dict[str, Any]
    # (task_id, task_path, idx, channel, value) written by the tasks run from this checkpoint.
    writes: tuple[tuple[str, str, int, str, Any], ...]


def is_internal_channel(channel: str) -> bool:
    """LangGraph's bookkeeping channels (triggers, joins, errors), not state keys."""
    return channel.startswith(("__", "branch:", "join:", "start:"))


def _node_of(task_path: str, fallback: str) -> str:
    # task_path is "~__pregel_pull, NODE" (a node) or "~__pregel_push, ..." (a Send).
    parts = [p.strip() for p in task_path.split(",")]
    if len(parts) >= 2 and parts[0] == "~__pregel_pull" and parts[1]:
        return parts[1]
    return fallback


def _snapshots(rows: list[_Row], source: str) -> list[dict[str, Any]]:
    """One thread's checkpoint rows as ``get_state_history`` snapshot dicts (oldest first)."""
    by_id = {r.checkpoint_id: r for r in rows}
    # Which checkpoint a trigger version first appeared in: a node that saw that version
    # read the state of that checkpoint.
    first_with: dict[tuple[str, str], str] = {}
    ordered = sorted(rows, key=lambda r: r.checkpoint_id)  # LangGraph's ids sort by time
    for r in ordered:
        for ch, ver in (r.checkpoint.get("channel_versions") or {}).items():
            first_with.setdefault((str(ch), str(ver)), r.checkpoint_id)
    out = []
    for r in ordered:
        fmt = r.checkpoint.get("v", 1)
        if fmt not in KNOWN_CHECKPOINT_FORMATS:
            raise CheckpointerError(
                source=source,
                detail=f"thread {r.thread!r} checkpoint {r.checkpoint_id}: checkpoint format "
                f"v{fmt} is not known (known: {', '.join(map(str, sorted(KNOWN_CHECKPOINT_FORMATS)))})",
            )
        values = r.checkpoint.get("channel_values") or {}
        if not isinstance(values, dict):
            raise CheckpointerError(
                source=source,
                detail=f"thread {r.thread!r} checkpoint {r.checkpoint_id}: channel_values is not a map",
            )
        tasks: dict[str, dict[str, Any]] = {}
        for task_id, task_path, _idx, channel, value in sorted(
            r.writes, key=lambda w: (w[0], w[2])
        ):
            t = tasks.setdefault(
                task_id,
                {"id": task_id, "name": _node_of(task_path, task_id), "error": None,
                 "interrupts": [], "result": None, "writes": []},
            )  # fmt: skip
            if channel == "__error__":
                t["error"] = value if isinstance(value, str) else orjson.dumps(value).decode()
            elif channel == "__interrupt__":
                t["interrupts"].append(value)
            elif not is_internal_channel(channel):
                t["writes"].append([channel, value])
                t["result"] = {**(t["result"] or {}), channel: value}
        # A task that wrote no state and did not fail still ran (its triggers are internal).
        seen = r.checkpoint.get("versions_seen") or {}
        reads = []
        parent = by_id.get(r.parent_id) if r.parent_id else None
        for node, versions in sorted(seen.items()) if isinstance(seen, dict) else ():
            if node.startswith("__") or not isinstance(versions, dict) or not versions:
                continue
            # Only the nodes that ran in the step that made this checkpoint read anew.
            if (
                parent is not None
                and (parent.checkpoint.get("versions_seen") or {}).get(node) == versions
            ):
                continue
            cids = [first_with.get((str(ch), str(v))) for ch, v in versions.items()]
            cid = max((x for x in cids if x is not None), default=None)
            if cid is not None:
                reads.append({"node": node, "checkpoint_id": cid, "channels": sorted(versions)})
        config = {"configurable": {"thread_id": r.thread, "checkpoint_ns": r.ns,
                                   "checkpoint_id": r.checkpoint_id}}  # fmt: skip
        parent_config = (
            {
                "configurable": {
                    "thread_id": r.thread,
                    "checkpoint_ns": r.ns,
                    "checkpoint_id": r.parent_id,
                }
            }
            if r.parent_id
            else None
        )
        task_list = list(tasks.values())
        out.append(
            {
                "values": {k: v for k, v in values.items() if not is_internal_channel(str(k))},
                "next": [t["name"] for t in task_list],
                "config": config,
                "metadata": r.metadata,
                "created_at": r.checkpoint.get("ts"),
                "parent_config": parent_config,
                "tasks": task_list,
                "reads": reads,
            }
        )
    return out


# -- SQLite ----------------------------------------------------------------------------------

_SQLITE_TABLES: Final = {
    "checkpoints": {"thread_id", "checkpoint_ns", "checkpoint_id", "parent_checkpoint_id",
                    "type", "checkpoint", "metadata"},
    "writes": {"thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx", "channel",
               "type", "value"},
}  # fmt: skip


def is_sqlite(head: bytes) -> bool:
    return head.startswith(SQLITE_MAGIC)


def _open_sqlite(path: Path, source: str) -> sqlite3.Connection:
    try:
        # Read only: nothing is written to the user's file. (Not `immutable`: SqliteSaver
        # writes in WAL mode, and the newest checkpoints may still be in the WAL.)
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        tables = {
            name: {row[1] for row in con.execute(f"PRAGMA table_info({name})")}
            for name in _SQLITE_TABLES
        }
    except sqlite3.DatabaseError as exc:
        raise CheckpointerError(
            source=source, detail=f"not a readable SQLite database: {exc}"
        ) from None
    if not tables["checkpoints"] and not tables["writes"]:
        con.close()
        raise CheckpointerError(
            source=source,
            detail="a SQLite database but not a LangGraph checkpointer (no checkpoints/writes tables)",
        )
    for name, need in _SQLITE_TABLES.items():
        missing = need - tables[name]
        if missing:
            con.close()
            raise CheckpointerError(
                source=source,
                detail=f"unknown LangGraph checkpointer schema: table {name} lacks {', '.join(sorted(missing))}",
            )
    return con


def _metadata(type_: Any, raw: Any, where: str, source: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, dict):
        meta: Any = raw
    elif isinstance(raw, str | bytes | memoryview):
        data = bytes(raw) if isinstance(raw, memoryview) else raw
        try:
            meta = orjson.loads(data)
        except orjson.JSONDecodeError:
            meta = decode_typed(
                type_, data if isinstance(data, bytes) else data.encode(), where, source
            )
    else:
        meta = None
    if not isinstance(meta, dict):
        raise CheckpointerError(source=source, detail=f"{where}: metadata is not a map")
    return _jsonable(meta)


def read_sqlite(path: str | Path, thread: str | None = None) -> list[list[dict[str, Any]]]:
    """Every thread (and namespace) of a SqliteSaver file, or only ``thread``: a list of
    snapshot lists, oldest first. Reads only; raises :class:`CheckpointerError`."""
    path = Path(path)
    source = str(path)
    con = _open_sqlite(path, source)
    try:
        q = "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata FROM checkpoints"
        wq = "SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, {path}, idx, channel, type, value FROM writes"
        cols = {row[1] for row in con.execute("PRAGMA table_info(writes)")}
        wq = wq.format(path="task_path" if "task_path" in cols else "''")
        args: tuple[Any, ...] = ()
        if thread is not None:
            q += " WHERE thread_id = ?"
            wq += " WHERE thread_id = ?"
            args = (thread,)
        try:
            ckpts = con.execute(q, args).fetchall()
            writes = con.execute(wq, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise CheckpointerError(
                source=source, detail=f"cannot read the checkpoints: {exc}"
            ) from None
    finally:
        con.close()
    return _threads(ckpts, writes, {}, source, thread)


def _threads(
    ckpts: Iterable[tuple[Any, ...]],
    writes: Iterable[tuple[Any, ...]],
    blobs: dict[tuple[str, str, str, str], tuple[Any, Any]],
    source: str,
    thread: str | None,
) -> list[list[dict[str, Any]]]:
    by_ckpt: dict[tuple[str, str, str], list[tuple[str, str, int, str, Any]]] = {}
    for t_id, ns, cid, task_id, task_path, idx, channel, type_, value in writes:
        where = f"thread {t_id!r} checkpoint {cid} write {task_id}/{idx} ({channel})"
        by_ckpt.setdefault((t_id, ns, cid), []).append(
            (
                str(task_id),
                str(task_path or ""),
                int(idx),
                str(channel),
                decode_typed(type_, value, where, source),
            )
        )
    groups: dict[tuple[str, str], list[_Row]] = {}
    for t_id, ns, cid, parent, type_, blob, meta in ckpts:
        where = f"thread {t_id!r} checkpoint {cid}"
        if isinstance(blob, dict):  # Postgres: JSONB, channel values of other types in blobs
            doc = _jsonable(blob)
            values = dict(doc.get("channel_values") or {})
            for ch, ver in (doc.get("channel_versions") or {}).items():
                stored = blobs.get((t_id, ns, str(ch), str(ver)))
                if stored is not None:
                    values[ch] = decode_typed(stored[0], stored[1], f"{where} channel {ch}", source)
            doc["channel_values"] = values
        else:
            doc = decode_typed(type_, blob, where, source)
        if not isinstance(doc, dict):
            raise CheckpointerError(source=source, detail=f"{where}: the checkpoint is not a map")
        groups.setdefault((t_id, ns), []).append(
            _Row(str(t_id), str(ns or ""), str(cid), parent, doc, _metadata(type_, meta, where, source),
                 tuple(by_ckpt.get((t_id, ns, cid), ())))
        )  # fmt: skip
    if thread is not None and not groups:
        raise CheckpointerError(source=source, detail=f"no thread {thread!r} in this checkpointer")
    if not groups:
        raise CheckpointerError(source=source, detail="the checkpointer holds no checkpoint")
    return [_snapshots(rows, source) for _, rows in sorted(groups.items())]


# -- Postgres --------------------------------------------------------------------------------


def is_postgres_url(text: str) -> bool:
    return text.startswith(("postgresql://", "postgres://"))


_SECRET_PARAMS: Final = frozenset({"password", "sslpassword", "passfile", "sslkey"})


def safe_url(url: str) -> str:
    """The URL without its password (nor password-like query parameters): the name it goes by."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return f"{url.split('://', 1)[0]}://<unparsable url>"
    netloc = host if ":" not in host else f"[{host}]"
    if port:
        netloc += f":{port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    query = urlencode(
        [(k, v) for k, v in parse_qsl(parts.query) if k.lower() not in _SECRET_PARAMS]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _scrub(text: str, url: str) -> str:
    """A driver's message with any secret of ``url`` taken out (they do not echo it; be sure)."""
    try:
        parts = urlsplit(url)
        secrets = [parts.password or ""] + [
            v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_PARAMS
        ]
    except ValueError:
        secrets = []
    for s in secrets:
        if s:
            text = text.replace(s, "[REDACTED]")
    return " ".join(text.split())


def read_postgres(url: str, thread: str | None = None) -> list[list[dict[str, Any]]]:
    """Every thread of a PostgresSaver database, or only ``thread`` (see :func:`read_sqlite`).

    Reads in one read-only transaction. Needs psycopg (``pip install 'agentrace[postgres]'``).
    """
    source = safe_url(url)
    try:
        import psycopg
    except ImportError:
        raise CheckpointerError(
            source=source,
            detail="reading a Postgres checkpointer needs psycopg: pip install 'agentrace[postgres]'",
        ) from None
    try:
        with psycopg.connect(url, connect_timeout=10, autocommit=False) as con:
            con.read_only = True
            return _read_pg(con, source, thread)
    except psycopg.Error as exc:
        raise CheckpointerError(
            source=source, detail=f"{_scrub(str(exc), url) or type(exc).__name__}"
        ) from None


def _read_pg(con: Any, source: str, thread: str | None) -> list[list[dict[str, Any]]]:
    tables = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    }
    need = {"checkpoints", "checkpoint_blobs", "checkpoint_writes", "checkpoint_migrations"}
    if not need & tables:
        raise CheckpointerError(
            source=source, detail="not a LangGraph checkpointer (no checkpoints tables)"
        )
    if need - tables:
        raise CheckpointerError(
            source=source,
            detail=f"unknown LangGraph checkpointer schema: no table {', '.join(sorted(need - tables))}",
        )
    (mig,) = con.execute("SELECT max(v) FROM checkpoint_migrations").fetchone()
    if mig is None or mig > KNOWN_PG_MIGRATION:
        raise CheckpointerError(
            source=source,
            detail=f"unknown LangGraph checkpointer schema version {mig} (known: up to {KNOWN_PG_MIGRATION})",
        )
    where, args = ("WHERE thread_id = %s", (thread,)) if thread is not None else ("", ())
    ckpts = con.execute(
        "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata "
        f"FROM checkpoints {where}",
        args,
    ).fetchall()
    has_path = mig >= 9
    writes = con.execute(
        f"SELECT thread_id, checkpoint_ns, checkpoint_id, task_id, {'task_path' if has_path else chr(39) * 2}, "
        f"idx, channel, type, blob FROM checkpoint_writes {where}",
        args,
    ).fetchall()
    blobs = {
        (t, ns, ch, ver): (type_, blob)
        for t, ns, ch, ver, type_, blob in con.execute(
            f"SELECT thread_id, checkpoint_ns, channel, version, type, blob FROM checkpoint_blobs {where}",
            args,
        )
    }
    return _threads(ckpts, writes, blobs, source, thread)


def checkpoint_snapshots(
    checkpoints: Iterable[tuple[Any, ...]], writes: Iterable[tuple[Any, ...]], *, source: str
) -> list[list[dict[str, Any]]]:
    """Checkpoints given as a SqliteSaver stores them, as snapshot lists (one per thread,
    oldest first), decoded as safely as a file is.

    ``checkpoints``: ``(thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type,
    checkpoint bytes, metadata JSON bytes)``; ``writes``: ``(thread_id, checkpoint_ns,
    checkpoint_id, task_id, task_path, idx, channel, type, value bytes)``, ``task_path``
    naming the node as LangGraph does (``~__pregel_pull, NODE``). Raises
    :class:`CheckpointerError` naming ``source``.
    """
    return _threads(checkpoints, writes, {}, source, None)
