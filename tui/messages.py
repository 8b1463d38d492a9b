"""Messages the debugger's widgets and screens exchange: attributes go down, these go up.

Messages posted from thread workers carry what the worker was asked for (a
version, a span id) so the receiver can drop an answer that arrived after the
user moved on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

from tracer import Finding, Run

from ._data import GraphData, RunMeta, SpanView, StateData

if TYPE_CHECKING:  # the engine loads only when a run is forked
    from engine.running import ReplayResult


class StoreChanged(Message):
    """New spans were committed (live mode). Floods coalesce: the receiver reads the pending set."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StoreChanged)


class RunsLoaded(Message):
    def __init__(self, runs: list[Run], kinds: dict[str, tuple[str, ...]] | None = None) -> None:
        super().__init__()
        self.runs = runs
        self.kinds = kinds or {}  # run id -> its findings' kinds, most frequent first


class OpenRun(Message):
    def __init__(self, run_id: str, span_id: str | None = None) -> None:
        super().__init__()
        self.run_id = run_id
        self.span_id = span_id


class MetaLoaded(Message):
    def __init__(self, meta: RunMeta) -> None:
        super().__init__()
        self.meta = meta


class GraphLoaded(Message):
    def __init__(self, view: GraphData) -> None:
        super().__init__()
        self.view = view


class StateLoaded(Message):
    """A state view, asked for (``base`` as asked: None is "the version before") or prefetched."""

    def __init__(
        self, view: StateData, base: int | None, identity: object, *, prefetched: bool = False
    ) -> None:
        super().__init__()
        self.view = view
        self.base = base
        self.identity = identity  # of the run metadata it was loaded with (cache validity)
        self.prefetched = prefetched


class SpanLoaded(Message):
    def __init__(self, view: SpanView) -> None:
        super().__init__()
        self.view = view


class OpenText(Message):
    """Show a value whole (it was cut in a pane): ``title`` and the text."""

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title = title
        self.text = text


class SpanSelected(Message):
    """The waterfall's cursor is on a span (coalesces while the cursor moves)."""

    def __init__(self, span_id: str) -> None:
        super().__init__()
        self.span_id = span_id

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SpanSelected)


class VersionRequested(Message):
    """A pane asks the screen to show another version (and optionally diff against ``base``)."""

    def __init__(self, version: int, base: int | None = None, *, set_base: bool = False) -> None:
        super().__init__()
        self.version = version
        self.base = base
        self.set_base = set_base


class FindingSelected(Message):
    def __init__(self, finding: Finding) -> None:
        super().__init__()
        self.finding = finding


class FindingsDetected(Message):
    """Findings computed by the debugger for a run that had none stored (not saved)."""

    def __init__(self, run_id: str, findings: list[Finding]) -> None:
        super().__init__()
        self.run_id = run_id
        self.findings = findings


class FindingsStored(Message):
    """Live mode: the app analysed these runs and stored their findings."""

    def __init__(self, run_ids: frozenset[str]) -> None:
        super().__init__()
        self.run_ids = run_ids


class FollowLink(Message):
    """Go to a linked span (a consumer's producer), in this run or another."""

    def __init__(self, trace_id: str, span_id: str) -> None:
        super().__init__()
        self.trace_id = trace_id
        self.span_id = span_id


class RunForked(Message):
    """A fork (``F``) finished: ``result`` is the engine's ``ReplayResult``, its ``run_id`` the
    new run's."""

    def __init__(self, result: ReplayResult) -> None:
        super().__init__()
        self.result = result


class ForkFailed(Message):
    """A fork raised: ``text`` says so in one line."""

    def __init__(self, run_id: str, text: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.text = text
