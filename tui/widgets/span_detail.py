"""The span detail pane: a span's attributes, events and links; a link can be followed.

Values are shown as text and wrapped to the pane's width; JSON-looking values
are shown compact. Enter on a link goes to the linked span (for a consumer, the
producer whose message it processed); Enter on the parent line goes to the parent.
"""

from __future__ import annotations

import textwrap
from typing import Any

from textual import work
from textual.worker import get_current_worker

from tracer import Store

from .._data import RunMeta, SpanData, load_span
from .._text import clip, fmt_duration, short_id
from ..messages import FollowLink, SpanLoaded
from ._lines import Line, LineView


class SpanDetail(LineView):
    """Shows the span given to :meth:`show`, loaded by a thread worker."""

    def __init__(self, store: Store, run_id: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.store = store
        self.run_id = run_id
        self.view: SpanData | None = None
        self.requested: str | None = None
        self.meta: RunMeta | None = None
        self.t0 = 0

    def set_meta(self, meta: RunMeta) -> None:
        """The run's metadata (its start is the zero of the times shown; versions by span)."""
        self.meta = meta
        self.t0 = meta.run.start_ns
        if self.view is not None:
            self.set_builder(self._build)

    def show(self, span_id: str, meta: RunMeta | None = None) -> None:
        if meta is not None:
            self.meta = meta
            self.t0 = meta.run.start_ns
        if span_id == self.requested:
            return
        self.requested = span_id
        self._load(span_id, self.meta)

    # A description of our own: the default one is the repr of the arguments, and the
    # run's metadata (every version) makes that cost more than the load itself.
    @work(thread=True, exclusive=True, group="span", exit_on_error=False, description="span")
    def _load(self, span_id: str, meta: RunMeta | None) -> None:
        view = load_span(self.store, self.run_id, span_id, meta)
        if not get_current_worker().is_cancelled:
            self.post_message(SpanLoaded(view))

    def on_span_loaded(self, message: SpanLoaded) -> None:
        message.stop()
        if message.view.span.span_id != self.requested:
            return
        self.view = message.view
        self.set_builder(self._build, keep_cursor=False)

    def _build(self, width: int) -> list[Line]:
        v = self.view
        if v is None:
            return [Line.of((" select a span in the waterfall", "dim"))]
        s = v.span
        out: list[Line] = []
        out.append(
            Line.of(
                (" " + clip(s.name, max(10, width - 2)), "name.error" if s.is_error else "title")
            )
        )
        status = s.status_code + (f": {s.status_message}" if s.status_message else "")
        out.append(
            Line.of(
                (f" {s.kind.lower()}", "dim"),
                ("  " + fmt_duration(s.duration_ns), "dur"),
                (f"  at +{fmt_duration(s.start_ns - self.t0)}", "dim"),
                ("  " + clip(status, 40), "error" if s.is_error else "ok"),
            )
        )
        out.append(
            Line.of(
                (" span ", "dim"),
                (s.span_id, "link"),
                ("  agent ", "dim"),
                (s.agent or "-", "agent"),
            )
        )
        if v.parent is not None:
            out.append(
                Line.of(
                    (" parent ", "dim"), (clip(v.parent.name, max(10, width - 30)), "link"),
                    (f"  {short_id(v.parent.span_id)}", "dim"), key=("span", s.trace_id, v.parent.span_id),
                )
            )  # fmt: skip
        # From the run's metadata as it is now: the span may have loaded before it did.
        versions = self.meta.spans_by_version.get(s.span_id, ()) if self.meta else v.versions
        if versions:
            out.append(
                Line.of((" commits ", "dim"), (", ".join(f"v{k}" for k in versions), "version"))
            )
        if v.links:
            out.append(Line.of((" links", "title")))
            for ln in v.links:
                target = ln.target
                name = target.name if target is not None else "(not in the store)"
                where = "" if ln.same_run else f" in run {short_id(ln.link.linked_trace_id, 12)}"
                out.append(
                    Line.of(
                        ("   → ", "link"), (clip(name, max(10, width - 40)), "link"),
                        (f"  {short_id(ln.link.linked_span_id)}{where}", "dim"),
                        ("  enter: follow" if target is not None else "", "dim"),
                        key=("span", ln.link.linked_trace_id, ln.link.linked_span_id) if target else None,
                    )
                )  # fmt: skip
                for k, val in sorted(ln.link.attributes.items()):
                    out += _kv(k, val, width, indent=6)
        out.append(Line.of((f" attributes ({len(s.attributes)})", "title")))
        for k, val in sorted(s.attributes.items()):
            out += _kv(k, val, width, indent=3)
        if s.resource:
            out.append(Line.of((" resource", "title")))
            for k, val in sorted(s.resource.items()):
                out += _kv(k, val, width, indent=3)
        out.append(Line.of((f" events ({len(v.events)})", "title")))
        for ev in v.events:
            role = "error" if ev.name == "exception" else "key"
            out.append(
                Line.of(
                    (f"   +{fmt_duration(ev.time_ns - self.t0):>9} ", "dim"),
                    (clip(ev.name, width - 16), role),
                )
            )
            for k, val in sorted(ev.attributes.items()):
                out += _kv(k, val, width, indent=6)
        return out

    def on_line_view_activated(self, message: LineView.Activated) -> None:
        message.stop()
        kind, trace_id, span_id = message.key
        if kind == "span":
            self.post_message(FollowLink(trace_id, span_id))


def _kv(key: str, value: Any, width: int, *, indent: int) -> list[Line]:
    text = (
        value
        if isinstance(value, str)
        else repr(value)
        if not isinstance(value, list | dict)
        else None
    )
    if text is None:
        import orjson

        text = orjson.dumps(value).decode()
    pad = " " * indent
    head = f"{key} = "
    room = max(16, width - indent - len(head) - 1)
    text = text.replace("\r", "").replace("\t", "    ")
    pieces: list[str] = []
    for para in text.split("\n"):
        pieces += textwrap.wrap(para, room, drop_whitespace=False, replace_whitespace=False) or [""]
    if len(pieces) > 40:
        pieces = [*pieces[:40], f"… ({len(text)} characters)"]
    out = [
        Line.of((pad, "dim"), (clip(head, width - indent), "key"), (clip(pieces[0], room), "str"))
    ]
    cont = " " * (indent + len(head))
    for p in pieces[1:]:
        out.append(Line.of((cont, "dim"), (clip(p, room), "str")))
    return out
