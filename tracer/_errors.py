"""Errors raised by the tracer.

    AgentraceError
    ├── StoreError
    │   ├── StoreLockedError        another process holds the DuckDB file
    │   ├── SchemaError             the file's schema is newer than this agentrace
    │   └── NotFoundError           a run, span or version that is not in the store
    ├── DecodeError                 bad input: names the source, the line and what is wrong
    │   ├── DuplicateSpanError      a span id seen again with different content
    │   └── CheckpointerError       a LangGraph checkpointer that cannot be read
    └── ChainError                  a state-version hash chain that does not verify

Every error carries the fields a user interface shows (``source``, ``line``,
``detail``), and ``str()`` of it is the one line the command line prints.
"""

from __future__ import annotations


class AgentraceError(Exception):
    """Base of every error agentrace raises on purpose."""


class StoreError(AgentraceError):
    """The store could not be opened, read or written."""


class StateChainError(StoreError):
    """A run's state versions do not make a document: ``version`` is the first that fails,
    ``reason`` says why (missing, no snapshot to start from, a patch that does not apply)."""

    def __init__(self, run_id: str, version: int, reason: str) -> None:
        super().__init__(f"run {run_id}: version {version} {reason}")
        self.version = version
        self.reason = reason


class StoreLockedError(StoreError):
    """Another process holds the write lock on the DuckDB file."""

    def __init__(self, path: str, pid: int | None, command: str | None) -> None:
        self.path = path
        self.pid = pid
        self.command = command
        holder = f"process {pid}" if pid else "another process"
        if command:
            # A command line may hold newlines (``python -c`` with a script): the message is one line.
            holder += f" ({' '.join(command.split())})"
        super().__init__(
            f"{path}: the store is locked by {holder}; stop it, or point this command at the "
            f"same data through that process (e.g. `agentrace tui --listen`), or use another --db"
        )


class SchemaError(StoreError):
    """The store's schema cannot be used by this version of agentrace."""


class NotFoundError(StoreError):
    """A run, span or state version that the store does not hold."""


class DecodeError(AgentraceError):
    """Input that is not valid OTLP (or not what its format promises).

    ``source`` names the file or request, ``line`` the 1-based line or record
    number where known, ``detail`` what is wrong.
    """

    def __init__(self, detail: str, *, source: str = "<input>", line: int | None = None) -> None:
        self.detail = detail
        self.source = source
        self.line = line
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {detail}")

    def at(self, source: str, line: int | None = None) -> DecodeError:
        """The same error, placed in ``source`` (and ``line`` when it had none)."""
        return type(self)(self.detail, source=source, line=self.line if line is None else line)


class DuplicateSpanError(DecodeError):
    """A (trace_id, span_id) pair seen again with different content."""


class CheckpointerError(DecodeError):
    """A LangGraph checkpointer that cannot be read: not one, an unknown schema or serializer,
    a refused connection or credentials, a thread that is not there (``source`` never holds
    a password)."""


class ChainError(AgentraceError):
    """A state version whose hash does not follow from its parent and its content."""

    def __init__(self, run_id: str, version: int, detail: str) -> None:
        self.run_id = run_id
        self.version = version
        self.detail = detail
        super().__init__(f"run {run_id}: version {version} does not verify: {detail}")
