"""What ``--db`` may name, and the one line for a store that cannot be opened or read.

A store is a DuckDB file or a path that does not exist yet. DuckDB opens much
else without a word (given a JSON or CSV file it starts an in-memory database
that reads it as a view, and every write is then lost), so the file's first
bytes are checked before DuckDB sees it: a DuckDB file carries ``DUCK`` at byte
8. Anything else is refused with what it looks like, before anything is written.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Final

from .._errors import StoreError

_MAGIC_AT: Final = 8
_MAGIC: Final = b"DUCK"
_TAKES: Final = "--db takes an agentrace store (a DuckDB file) or a path that does not exist yet"

# What a file that is not a store most often is, by its first bytes.
_LOOKS: Final = (
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"PAR1", "a Parquet file"),
    (b"\x1f\x8b", "a gzip file"),
    (b"\x28\xb5\x2f\xfd", "a zstd file"),
    (b"PK\x03\x04", "a zip file"),
    (b"\x89PNG", "a PNG image"),
)


def check_store_file(path: str) -> None:
    """Refuse (:class:`StoreError`) a path that exists and is not a DuckDB file."""
    if path == ":memory:":
        return
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"{path}: cannot open the store: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise StoreError(f"{path} is a directory; {_TAKES}")
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"{path} is not a regular file; {_TAKES}")
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise StoreError(f"{path}: cannot open the store: {exc.strerror or exc}") from None
    if head[_MAGIC_AT : _MAGIC_AT + len(_MAGIC)] == _MAGIC:
        return
    raise StoreError(f"{path} is {_looks_like(head)}, not an agentrace store; {_TAKES}")


def _looks_like(head: bytes) -> str:
    if not head:
        return "an empty file"
    for magic, what in _LOOKS:
        if head.startswith(magic):
            return what
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] in (b"{", b"["):
        return "a JSON file"
    try:
        text.decode()
    except UnicodeDecodeError:
        return "a file of another kind"
    if b"\x00" in text:
        return "a file of another kind"
    return "a text file (CSV?)" if b"," in text else "a text file"


def damaged(path: str, exc: Exception, done: str = "read") -> StoreError:
    """The one line for a DuckDB error opening a store or escaping its reads and writes."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return StoreError(
        f"{path}: the store cannot be {done} ({first}); if it is damaged, restore it from a "
        "backup, or move it aside and import the traces again"
    )


_SECRET_FLAG: Final = re.compile(r"(--(?:token|password|api-key)(?:=|\s+))(\S+)")


def masked(command: str) -> str:
    """A command line with the value of ``--token`` (and the like) shown as ``***``."""
    return _SECRET_FLAG.sub(r"\1***", command)
