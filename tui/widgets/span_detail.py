"""The span detail pane: a span's conversation, attributes, events and links.

An LLM span reads as a chat (``tui._llm``): instructions, tools offered, each
message by role with its tool calls and results, then the answer; tokens and
model in the header. JSON values (in attributes, arguments, results) are
pretty-printed and foldable (Enter on a ``▾``/``▸`` line).

Trace data is hostile, so what is laid out is bounded whatever the span holds:
the first :data:`ATTR_PAGE` attributes in key order (Enter on the last line shows
more), each value cut at :data:`VALUE_CHARS` characters and :data:`VALUE_LINES`
lines. Enter on a cut value opens it whole in a screen of its own, which lays out
only the rows on screen. The sorting and parsing happen in the loading thread;
the UI thread only lays out what is bounded. Enter on a link goes to the linked
span (for a consumer, the producer whose message it processed); Enter on the
parent line goes to the parent.
"""

from __future__ import annotations

import textwrap
from typing import Any, ClassVar

from textual import work
from textual.binding import Binding, BindingType
from textual.worker import get_current_worker

from tracer import Store

from .._data import ATTR_PAGE, RunMeta, SpanView, load_span, prepare_span
from .._json_lines import json_lines, line_runs
from .._llm import ChatMessage, Conversation, parse_json, span_model, span_tokens
from .._text import clip, fmt_duration, short_id
from ..messages import FollowLink, OpenText, SpanLoaded
from ._lines import CHAT_ROLES, Line, LineView

VALUE_CHARS = 4_000  # characters of one value laid out in the pane
VALUE_LINES = 40  # wrapped lines of one value in the pane
JSON_LINES = 300  # lines of one pretty-printed JSON value in the pane


class SpanDetail(LineView):
    """Shows the span given to :meth:`show`, loaded by a thread worker."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("c", "copy", "Copy")]

    def __init__(self, store: Store, run_id: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.store = store
        self.run_id = run_id
        self.view: SpanView | None = None
        self.requested: str | None = None
        self.meta: RunMeta | None = None
        self.t0 = 0
        self.folded: set[tuple[str, str]] = set()
        # Line key ("text", n) -> (title, the whole value): Enter shows it whole, c copies it.
        self._texts: dict[int, tuple[str, Any]] = {}

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
    def _load(self, span_id: str, meta: RunMeta | None, shown: int = ATTR_PAGE) -> None:
        data = load_span(self.store, self.run_id, span_id, meta)
        if get_current_worker().is_cancelled:
            return
        view = prepare_span(data, shown)
        if not get_current_worker().is_cancelled:
            self.post_message(SpanLoaded(view))

    def on_span_loaded(self, message: SpanLoaded) -> None:
        message.stop()
        view = message.view
        assert isinstance(view, SpanView)
        if view.data.span.span_id != self.requested:
            return
        same = self.view is not None and self.view.data.span.span_id == view.data.span.span_id
        if not same:
            self.folded = set(view.folded)
        self.view = view
        self.set_builder(self._build, keep_cursor=same)

    def _build(self, width: int) -> list[Line]:
        self._texts = {}
        sv = self.view
        if sv is None:
            return [Line.of((" select a span in the waterfall", "dim"))]
        v = sv.data
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
                (clip(s.agent or "-", 30), "agent"),
            )
        )
        model, tokens = span_model(s.attributes), span_tokens(s.attributes)
        if model or tokens:
            runs: list[tuple[str, str]] = []
            if model:
                runs += [(" model ", "dim"), (clip(model, 40), "key")]
            if tokens:
                runs += [("  tokens ", "dim"), (f"{tokens[0]:,} in · {tokens[1]:,} out", "num")]
            out.append(Line.of(*runs))
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
                for k, val in sorted(ln.link.attributes.items())[:ATTR_PAGE]:
                    out += self._kv(k, val, width, indent=6)
        if sv.chat is not None:
            out += self._chat(sv.chat, width)
        more = sv.total_attrs - len(sv.attrs)
        out.append(Line.of((f" attributes ({sv.total_attrs:,})", "title")))
        for k, val in sv.attrs:
            doc = sv.json.get(k)
            if doc is not None:
                out += self._json(k, doc, width, indent=3, whole=val)
            else:
                out += self._kv(k, val, width, indent=3)
        if more > 0:
            out.append(
                Line.of(
                    (f"   … {more:,} more attributes", "dim"),
                    (f"  enter: show {min(more, ATTR_PAGE):,} more", "link"),
                    key=("more", len(sv.attrs) + ATTR_PAGE),
                )
            )
        if s.resource:
            out.append(Line.of((" resource", "title")))
            for k, val in sorted(s.resource.items())[:ATTR_PAGE]:
                out += self._kv(k, val, width, indent=3)
        out.append(Line.of((f" events ({len(v.events)})", "title")))
        for ev in v.events[:ATTR_PAGE]:
            role = "error" if ev.name == "exception" else "key"
            out.append(
                Line.of(
                    (f"   +{fmt_duration(ev.time_ns - self.t0):>9} ", "dim"),
                    (clip(ev.name, width - 16), role),
                )
            )
            for k, val in sorted(ev.attributes.items())[:ATTR_PAGE]:
                out += self._kv(k, val, width, indent=6)
        if len(v.events) > ATTR_PAGE:
            out.append(Line.of((f"   … {len(v.events) - ATTR_PAGE:,} more events", "dim")))
        return out

    # -- pieces ----------------------------------------------------------------------------

    def _chat(self, chat: Conversation, width: int) -> list[Line]:
        out = [Line.of((" conversation", "title"))]
        for text in chat.system:
            out += self._message("system", text, width)
        if chat.tools:
            out += self._message("tools", ", ".join(chat.tools), width, role="dim")
        for m in chat.input:
            out += self._chat_message(m, width)
        if chat.output:
            out.append(Line.of(("   ── answer", "dim")))
            for m in chat.output:
                out += self._chat_message(m, width)
        if chat.tool_call is not None:
            call = chat.tool_call
            out.append(Line.of(("   call ", "dim"), (clip(call.name, width - 10), "key")))
            out += self._value("arguments", call.arguments, width, indent=5)
            if chat.tool_result is not None:
                out += self._value("result", chat.tool_result, width, indent=5)
        return out

    def _chat_message(self, m: ChatMessage, width: int) -> list[Line]:
        label = m.role if m.tool_call_id is None else f"{m.role} ({clip(m.tool_call_id, 16)})"
        role = CHAT_ROLES.get(m.role, "key")
        out = (
            self._message(label, m.content, width, role=role)
            if m.content or not m.tool_calls
            else []
        )
        for call in m.tool_calls:
            head = f"   {m.role:<10} → " if not out else " " * 13 + "→ "
            out.append(
                Line.of((head, role if not out else "dim"), (clip(call.name, width - 20), "key"))
            )
            out += self._value("arguments", call.arguments, width, indent=15)
        return out

    def _message(self, label: str, text: str, width: int, role: str = "key") -> list[Line]:
        """One chat message: its role in a column, its text wrapped beside it (bounded)."""
        pad = 13
        room = max(16, width - pad - 1)
        pieces, cut = _wrap(text, room)
        first = f"   {clip(label, 9):<10}"
        out = [Line.of((first, role), (pieces[0], "str"))]
        out += [Line.of((" " * pad, "dim"), (p, "str")) for p in pieces[1:]]
        if cut:
            out.append(self._cut_line(pad, label, text))
        return out

    def _cut_line(self, indent: int, title: str, text: str) -> Line:
        n = len(self._texts)
        self._texts[n] = (title, text)
        return Line.of(
            (" " * indent + f"… {len(text):,} characters in all", "dim"),
            ("  enter: show it whole", "link"),
            key=("text", n),
        )

    def _value(self, label: str, value: Any, width: int, *, indent: int) -> list[Line]:
        doc = parse_json(value)
        if doc is not None:
            return self._json(label, doc, width, indent=indent, whole=value)
        return self._kv(label, value, width, indent=indent)

    def _json(self, key: str, doc: Any, width: int, *, indent: int, whole: Any) -> list[Line]:
        """A JSON value pretty-printed, its containers foldable (Enter)."""
        folded = {p for k, p in self.folded if k == key}
        lines = json_lines(doc, folded=folded, limit=JSON_LINES)
        n = len(self._texts)
        self._texts[n] = (key, whole)  # made text only when asked for (a copy, a view)
        out = [
            Line.of(
                (" " * indent, "dim"),
                (clip(key, width - indent - 2), "key"),
                (" =", "dim"),
                key=("text", n),
            )
        ]
        pad = " " * max(0, indent - 2)
        for ln in lines:
            runs = line_runs(ln, max(20, width - len(pad)))
            fold_key = ("fold", key, ln.path) if ln.kind in ("object", "array") else None
            out.append(Line(((pad, "dim"), *runs), fold_key))
        if len(lines) >= JSON_LINES:
            text = whole if isinstance(whole, str) else _dump(doc)
            out.append(self._cut_line(indent + 2, key, text))
        return out

    def _kv(self, key: str, value: Any, width: int, *, indent: int) -> list[Line]:
        text = (
            value
            if isinstance(value, str)
            else _dump(value)
            if isinstance(value, list | dict)
            else repr(value)
        )
        pad = " " * indent
        head = f"{key} = "
        head_w = min(len(head), max(8, width // 3))
        room = max(16, width - indent - head_w - 1)
        pieces, cut = _wrap(text, room)
        n = len(self._texts)
        self._texts[n] = (key, text)
        out = [
            Line.of((pad, "dim"), (clip(head, head_w), "key"), (pieces[0], "str"), key=("text", n))
        ]
        cont = " " * (indent + head_w)
        out += [Line.of((cont, "dim"), (p, "str")) for p in pieces[1:]]
        if cut:
            out.append(self._cut_line(indent + head_w, key, text))
        return out

    # -- keys ------------------------------------------------------------------------------

    def action_copy(self) -> None:
        """Copy the value under the cursor (the span id when the cursor is on no value)."""
        key = self.key_at_cursor()
        app: Any = self.app
        if key is not None and key[0] == "text" and key[1] in self._texts:
            title, value = self._texts[key[1]]
            app.copy_text(value if isinstance(value, str) else _dump(value), title)
        elif self.view is not None:
            app.copy_text(self.view.span.span_id, "the span id")

    def on_line_view_activated(self, message: LineView.Activated) -> None:
        message.stop()
        key = message.key
        if key[0] == "span":
            self.post_message(FollowLink(key[1], key[2]))
        elif key[0] == "fold":
            self.folded ^= {(key[1], key[2])}
            self.set_builder(self._build)
        elif key[0] == "text" and key[1] in self._texts:
            title, value = self._texts[key[1]]
            self.post_message(OpenText(title, value if isinstance(value, str) else _dump(value)))
        elif key[0] == "more" and self.requested is not None:
            self._load(self.requested, self.meta, key[1])


def _dump(value: Any) -> str:
    import orjson

    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except TypeError:
        return repr(value)


def _wrap(text: str, room: int) -> tuple[list[str], bool]:
    """``text`` wrapped to ``room`` cells, at most :data:`VALUE_LINES` lines; True when cut.

    Only the first :data:`VALUE_CHARS` characters are looked at: wrapping a 10 MB value
    whole would hold the UI thread for minutes.
    """
    cut = len(text) > VALUE_CHARS
    head = text[:VALUE_CHARS].replace("\r", "").replace("\t", "    ")
    pieces: list[str] = []
    for para in head.split("\n"):
        pieces += textwrap.wrap(para, room, drop_whitespace=False, replace_whitespace=False) or [""]
        if len(pieces) > VALUE_LINES:
            break
    if len(pieces) > VALUE_LINES:
        pieces, cut = pieces[:VALUE_LINES], True
    return [clip(p, room) for p in pieces], cut
