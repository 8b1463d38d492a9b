"""The state pane: the version stepper, the diff with its writers, the writer's reads, the document.

The screen owns the ``version``; this pane asks for another one with
:class:`~tui.messages.VersionRequested` and shows what a thread worker loads for
it (``tui._data.load_state``). A read served older than the ledger's head is
marked STALE with the version that was already committed, by whom and when.
Folds of the JSON tree are kept by path, so they survive stepping.
"""

from __future__ import annotations

import textwrap
import time
from collections import OrderedDict
from typing import Any, ClassVar

from textual import work
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.strip import Strip
from textual.worker import get_current_worker

from tracer import Store

from .._data import NodeStep, RunMeta, StateData, SuperStep, load_state
from .._json_lines import json_lines, line_runs
from .._llm import ChatMessage, langchain_messages
from .._text import clip, compact_json, fmt_duration, short_id
from ..messages import FollowLink, StateLoaded, VersionRequested
from ._lines import CHAT_ROLES, Line, LineView

_FOLD_BIG = 400  # documents with more lines than this open with their second level folded
_CACHE_VIEWS = 64  # loaded views kept (the last steps and the prefetched neighbours)


class StatePane(LineView):
    """Shows one version of the run's state; left/right/home/end step through the versions."""

    class Shown(Message):
        """The first version is on screen (the screen then starts its slower loads)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left,comma", "step(-1)", "Prev version"),
        Binding("right,full_stop", "step(1)", "Next version"),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
        Binding("b", "pin_base", "Diff base here"),
        Binding("B", "unpin_base", "Diff vs previous", show=False),
        Binding("enter,space", "activate", "Fold/go", show=False),
    ]

    def __init__(self, store: Store, run_id: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.store = store
        self.run_id = run_id
        self.meta: RunMeta | None = None
        self.view: StateData | None = None
        self.requested: tuple[int, int | None] | None = None
        self.folded: set[str] = set()
        self._auto_folded = False
        self.painted: tuple[int, float] = (0, 0.0)
        self._cache: OrderedDict[tuple[int, int | None], StateData] = OrderedDict()

    # -- loading ---------------------------------------------------------------------------

    def show(self, version: int, base: int | None, meta: RunMeta) -> None:
        """Show ``version`` diffed against ``base`` (None: the version before it).

        From the cache of prefetched views when the step is to a neighbour (no wait on
        the store), else loaded by a thread worker.
        """
        if self.meta is None or _identity(meta) != _identity(self.meta):
            self._cache.clear()  # new findings or versions (live mode): views may differ
        self.meta = meta
        self.requested = (version, base)
        if version <= 0:
            self.view = None
            self.set_lines([Line.of((" no state versions in this run", "dim"))])
            return
        cached = self._cache.get((version, base))
        if cached is not None:
            self._cache.move_to_end((version, base))
            self._display(cached)
            return
        self._load(version, base, meta)

    # A description of our own: the default one is the repr of the arguments, and the
    # run's metadata (10,000 versions) made it 60 ms of every step.
    @work(thread=True, exclusive=True, group="state", exit_on_error=False, description="state")
    def _load(self, version: int, base: int | None, meta: RunMeta) -> None:
        view = load_state(self.store, self.run_id, version, base, meta)
        if not get_current_worker().is_cancelled:
            self.post_message(StateLoaded(view, base, _identity(meta)))

    @work(thread=True, exclusive=True, group="state-next", exit_on_error=False, description="next")
    def _prefetch(self, keys: list[tuple[int, int | None]], meta: RunMeta) -> None:
        """Load the views one step away, so that the next step shows at once."""
        for version, base in keys:
            if get_current_worker().is_cancelled:
                return
            view = load_state(self.store, self.run_id, version, base, meta)
            self.post_message(StateLoaded(view, base, _identity(meta), prefetched=True))

    def on_state_loaded(self, message: StateLoaded) -> None:
        message.stop()
        view = message.view
        if self.meta is not None and _identity(self.meta) == message.identity:
            self._cache[(view.version, message.base)] = view
            while len(self._cache) > _CACHE_VIEWS:
                self._cache.popitem(last=False)
        if message.prefetched or self.requested != (view.version, message.base):
            return  # a neighbour for later, or the user has stepped on
        self._display(view)

    def _display(self, view: StateData) -> None:
        first = self.view is None
        self.view = view
        if first:
            self.post_message(self.Shown())
        if not self._auto_folded:
            self._auto_folded = True
            if len(json_lines(view.doc, limit=_FOLD_BIG + 1)) > _FOLD_BIG:
                self.folded = _second_level(view.doc)
        self.set_builder(self._build)
        meta = self.meta
        if meta is not None and self.requested is not None:
            version, base = self.requested
            keys = [(k, base) for k in (version + 1, version - 1) if 1 <= k <= meta.last_version]
            keys = [k for k in keys if k not in self._cache]
            if keys:
                self._prefetch(keys, meta)

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        view = self.view
        if view is not None and self.painted[0] != view.version:
            # For the benchmark: when each version first reached the screen.
            self.painted = (view.version, time.perf_counter())
        return strip

    # -- lines -----------------------------------------------------------------------------

    def _build(self, width: int) -> list[Line]:
        view, meta = self.view, self.meta
        if view is None or meta is None:
            return [Line.of((" loading state…", "dim"))]
        out: list[Line] = []
        t0 = meta.run.start_ns
        vm = view.meta
        head = [(f" v{view.version}", "version"), (f" / {meta.last_version}", "dim")]
        if vm is not None:
            head += [
                (f"  {vm.kind}", "title"),
                ("  by ", "dim"),
                (clip(vm.agent or _nodes_of(view.superstep) or "-", 32), "agent"),
                (f"  +{fmt_duration(vm.committed_ns - t0)}", "dim"),
                ("  span ", "dim"),
                (short_id(vm.span_id), "link"),
            ]
        out.append(Line(tuple(head), key=("span", vm.span_id) if vm and vm.span_id else None))
        if (
            vm is not None
            and vm.base_version
            and vm.parent_version
            and vm.base_version < vm.parent_version
        ):
            # The writer read an older version than the one it committed on top of.
            out.append(
                Line.of(
                    ("   ⚠ written on base ", "warn"),
                    (f"v{vm.base_version}", "version"),
                    (" while the head was ", "warn"),
                    (f"v{vm.parent_version}", "version"),
                    key=("version", vm.parent_version),
                )
            )
        if view.superstep is not None:
            out += _superstep_lines(view.superstep, width)
        for r in view.reads:
            runs: list[tuple[str, str]] = [
                ("   read ", "dim"),
                (clip(", ".join(r.keys) or "*", 28), "key"),
                (f" v{r.version}", "version"),
                (f" via {r.via}", "dim"),
            ]
            if r.cache:
                runs.append((f" {clip(r.cache, 20)}", "dim"))
            if r.stale:
                runs += [("  ", "dim"), (" STALE ", "stale")]
                out.append(Line(tuple(runs), key=("version", r.head)))
                for name, got, newest in r.values:
                    out.append(
                        Line(
                            (
                                ("     ", "dim"), (clip(name, 24), "key"), (": ", "dim"),
                                (compact_json(got, 24), "removed"), (f" (v{r.version})", "dim"),
                                (" → ", "dim"), (compact_json(newest, 24), "added"), (f" (v{r.head})", "dim"),
                            ),
                            key=("version", r.head),
                        )
                    )  # fmt: skip
                # The version already committed: by whom, and how long before this read.
                more: list[tuple[str, str]] = [("     newer: ", "error"), (f"v{r.head}", "version")]
                hm = r.head_meta
                if hm is not None:
                    more += [(" by ", "error"), (clip(hm.agent or "-", 20), "agent")]
                    ahead = r.time_ns - hm.committed_ns
                    if ahead >= 0:
                        more.append((f", {fmt_duration(ahead)} earlier", "error"))
                out.append(Line(tuple(more), key=("version", r.head)))
                continue
            if r.head is not None:
                runs.append(("  fresh", "ok"))
            out.append(Line(tuple(runs)))
        for ct in view.contracts:
            role = "ok" if ct.outcome == "passed" else "error"
            runs = [
                ("   contract ", "dim"),
                (clip(ct.name, 24), "title"),
                (f" {clip(ct.source, 16)} → {clip(ct.target, 16)} ", "dim"),
                (ct.outcome or "?", role),
            ]
            if ct.errors:
                runs.append(("  " + clip("; ".join(ct.errors), max(10, width - 60)), "error"))
            out.append(Line(tuple(runs)))
        for f in view.findings:
            out.append(
                Line.of(
                    ("   ⚑ ", f"sev.{f.severity}" if f.severity in _SEVS else "warn"),
                    (f.kind, "title"),
                    (" " + clip(f.message, max(10, width - len(f.kind) - 8)), "dim"),
                    key=("finding", f.finding_id),
                )
            )
        label = "version before" if view.base == view.version - 1 else "pinned base"
        out.append(
            Line.of(
                (f" ── diff v{view.base} → v{view.version} ", "title"),
                (
                    f"({len(view.changes)} change{'s' if len(view.changes) != 1 else ''}, {label}) ",
                    "dim",
                ),
            )
        )
        if not view.changes:
            out.append(Line.of(("   no changes", "dim")))
        for ch in view.changes:
            w = ch.writer
            who: list[tuple[str, str]] = []
            if w is not None:
                writer = w.agent or _step_writers(view.superstep, ch.path, w.version, view.version)
                who = [
                    ("  by ", "dim"),
                    (clip(writer or "-", 24), "agent"),
                    (f" v{w.version}", "version"),
                ]
            path = clip(ch.path, 32)
            room = max(12, width - 4 - len(path) - sum(len(t) for t, _ in who) - 3)
            if ch.change == "added":
                runs = [
                    (" + ", "added"),
                    (path, "added"),
                    ("  ", "dim"),
                    *_value_runs(ch.new, room),
                ]
            elif ch.change == "removed":
                runs = [(" - ", "removed"), (path, "removed"), ("  was ", "dim"),
                        (compact_json(ch.old, room - 4), "dim")]  # fmt: skip
            else:
                half = max(6, (room - 3) // 2)
                runs = [(" ~ ", "changed"), (path, "changed"), ("  ", "dim"), (compact_json(ch.old, half), "removed"),
                        (" → ", "dim"), (compact_json(ch.new, half), "added")]  # fmt: skip
            out.append(Line(tuple(runs + who), key=("span", w.span_id) if w is not None else None))
        out.append(Line.of((f" ── state at v{view.version} ", "title")))
        marks = {ch.path: ch.change for ch in view.changes if ch.change != "removed"}
        for jl in json_lines(view.doc, folded=self.folded, changes=marks):
            key = ("fold", jl.path) if jl.kind in ("object", "array") else None
            out.append(Line(tuple(line_runs(jl, width)), key=key))
        return out

    # -- actions ---------------------------------------------------------------------------

    def on_line_view_activated(self, message: LineView.Activated) -> None:
        key: Any = message.key
        message.stop()
        kind, value = key
        if kind == "fold":
            self.folded.symmetric_difference_update({value})
            self.set_builder(self._build)
        elif kind == "version" and value:
            self.post_message(VersionRequested(int(value)))
        elif kind == "span":
            self.post_message(FollowLink(self.run_id, str(value)))
        elif kind == "finding" and self.meta is not None:
            from ..messages import FindingSelected

            for f in self.meta.findings:
                if f.finding_id == value:
                    self.post_message(FindingSelected(f))

    def action_step(self, delta: int) -> None:
        if self.meta is not None and self.requested is not None and self.meta.last_version:
            k = max(1, min(self.meta.last_version, self.requested[0] + delta))
            self.post_message(VersionRequested(k))

    def action_first(self) -> None:
        if self.meta is not None and self.meta.last_version:
            self.post_message(VersionRequested(1))

    def action_last(self) -> None:
        if self.meta is not None and self.meta.last_version:
            self.post_message(VersionRequested(self.meta.last_version))

    def action_pin_base(self) -> None:
        """Diff later versions against this one (until ``B``)."""
        if self.requested is not None:
            self.post_message(VersionRequested(self.requested[0], self.requested[0], set_base=True))

    def action_unpin_base(self) -> None:
        if self.requested is not None:
            self.post_message(VersionRequested(self.requested[0], None, set_base=True))


_SEVS = {"critical", "error", "warning", "info"}
_COLUMN_MIN = 30  # narrower than this per node, the nodes of a step stack instead
_MESSAGE_LINES = 4  # lines of one message's text shown in a step's writes


def _superstep_lines(ss: SuperStep, width: int) -> list[Line]:
    """The super-step a version came from: its nodes side by side (stacked when the pane is
    narrow), each node's write to each channel, messages as a conversation; the next nodes."""
    if ss.step <= 0 and not ss.nodes:
        label = " ── input" if ss.step < 0 else f" ── step {ss.step}: input"
        head: list[tuple[str, str]] = [(label, "title")]
    else:
        head = [(f" ── step {ss.step}: ", "title")]
        for i, n in enumerate(ss.nodes):
            if i:
                head.append((" ‖ ", "warn"))
            head.append((clip(n.node, 24), "agent"))
        if not ss.nodes:
            head.append(("no node wrote", "dim"))
    head += [("   next: ", "dim"), (clip(", ".join(ss.next) or "END", 40), "key")]
    out = [Line(tuple(head))]
    if not ss.nodes:
        return out
    cols = len(ss.nodes)
    cw = (width - 3 - 3 * (cols - 1)) // cols
    if cols == 1 or cw < _COLUMN_MIN:
        for n in ss.nodes:
            out += [Line((("   ", "dim"), *ln.runs), ln.key) for ln in _node_lines(n, width - 3)]
        return out
    # One band per channel, so that the nodes' writes to the same channel sit side by side.
    channels = list(dict.fromkeys(ch for n in ss.nodes for ch in n.update))
    bands = [[[_node_head(n, cw)] for n in ss.nodes]]
    bands += [
        [_channel_lines(ch, n.update[ch], cw) if ch in n.update else [] for n in ss.nodes]
        for ch in channels
    ]
    for band in bands:
        for row in range(max(len(c) for c in band)):
            runs: list[tuple[str, str]] = [("   ", "dim")]
            key = None
            for i, col in enumerate(band):
                line = col[row] if row < len(col) else Line(())
                if i:
                    runs.append((" │ ", "dim"))
                runs += line.runs
                if i < cols - 1:
                    runs.append((" " * max(0, cw - line.width), "dim"))
                key = key or line.key
            out.append(Line(tuple(runs), key))
    return out


def _value_runs(value: Any, room: int) -> list[tuple[str, str]]:
    """A value in a diff line: a chat message (LangChain's serialised form) as ``role: text``,
    anything else as compact JSON."""
    chat = langchain_messages([value]) if isinstance(value, dict) else None
    if chat is None:
        return [(compact_json(value, room), "str")]
    (m,) = chat
    text = m.content.replace("\n", " ") or ", ".join(f"→ {c.name}" for c in m.tool_calls)
    role = clip(m.role, 9)
    return [
        (role + " ", CHAT_ROLES.get(m.role, "key")),
        (clip(text, max(4, room - len(role) - 1)), "str"),
    ]


def _step_writers(ss: SuperStep | None, path: str, written: int, shown: int) -> str | None:
    """The nodes of the shown version's super-step that wrote the channel of ``path`` (a
    version of several nodes names no one agent): ``a ‖ b``."""
    if ss is None or written != shown:
        return None
    channel = path.lstrip("/").split("/", 1)[0].replace("~1", "/").replace("~0", "~")
    nodes = [n.node for n in ss.nodes if channel in n.update]
    return " ‖ ".join(nodes) or None


def _nodes_of(ss: SuperStep | None) -> str | None:
    """The nodes of a super-step, ``a ‖ b``: who wrote a version no one agent wrote."""
    return " ‖ ".join(n.node for n in ss.nodes) or None if ss is not None else None


def _node_head(n: NodeStep, width: int) -> Line:
    return Line.of((clip(n.node, width), "agent"), key=("span", n.span_id) if n.span_id else None)


def _node_lines(n: NodeStep, width: int) -> list[Line]:
    """One node's write in a step, each line at most ``width`` cells."""
    out = [_node_head(n, width)]
    for channel, value in n.update.items():
        out += _channel_lines(channel, value, width)
    return out


def _channel_lines(channel: str, value: Any, width: int) -> list[Line]:
    """A node's write to one channel: the value, or its messages as a conversation."""
    name = clip(str(channel), max(4, width // 3))
    chat = langchain_messages(value)
    if chat is None:
        room = max(4, width - len(name) - 2)
        return [Line.of((name, "key"), (": ", "dim"), (compact_json(value, room), "str"))]
    out = [Line.of((name, "key"), (f": {len(chat)} message{'s' * (len(chat) != 1)}", "dim"))]
    for m in chat:
        out += _chat_lines(m, width)
    return out


def _chat_lines(m: ChatMessage, width: int) -> list[Line]:
    """One message as the span pane's conversation shows it: its role in a column, its text
    wrapped beside it (a few lines), then its tool calls."""
    role = CHAT_ROLES.get(m.role, "key")
    pad = 12
    room = max(8, width - pad)
    text = m.content.replace("\r", "").replace("\t", "    ")[: room * _MESSAGE_LINES * 2]
    pieces = [p for para in text.split("\n") for p in (textwrap.wrap(para, room) or [""])]
    if m.content or not m.tool_calls:
        more = len(pieces) > _MESSAGE_LINES
        pieces = pieces[:_MESSAGE_LINES]
        if more:
            pieces[-1] = clip(pieces[-1] + " …", room)
        out = [Line.of((f"  {clip(m.role, 9):<10}", role), (clip(pieces[0], room), "str"))]
        out += [Line.of((" " * pad, "dim"), (clip(p, room), "str")) for p in pieces[1:]]
    else:
        out = [Line.of((f"  {clip(m.role, 9):<10}", role))]
    for call in m.tool_calls:
        out.append(
            Line.of(
                (" " * pad + "→ ", "dim"), (clip(call.name, max(4, room // 2)), "key"),
                (" " + compact_json(call.arguments, max(4, room - len(call.name) - 3)), "str"),
            )
        )  # fmt: skip
    return out


def _second_level(doc: Any) -> set[str]:
    out = set()
    if isinstance(doc, dict):
        for k, v in doc.items():
            if isinstance(v, dict | list) and v:
                out.add("/" + str(k).replace("~", "~0").replace("/", "~1"))
    return out


def _identity(meta: RunMeta) -> tuple[int, tuple[str, ...]]:
    """What a cached view depends on beyond its version: the versions and the findings."""
    return (meta.last_version, tuple(f.finding_id for f in meta.findings))
