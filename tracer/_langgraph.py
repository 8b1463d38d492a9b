"""LangGraph state as agentrace state versions, through the one ingest path.

The store is an index built from OTLP, so state from LangGraph becomes OTLP
first: spans carrying ``agentrace.state.commit`` events (the same hash chain as
the engine's, so ``agentrace verify`` and ``Store.state_at`` work), ingested
like any other request. Ids are derived from LangGraph's own ids, so importing
the same thing twice stores it once.

Two sources:

* A ``get_state_history`` dump (:func:`history_requests`): JSON holding the
  snapshots, either ``{"thread_id": ..., "graph": ..., "snapshots": [...]}``, a
  bare list of snapshots, or a single snapshot; each snapshot an object with
  LangGraph's field names (``values``, ``next``, ``config``, ``metadata``,
  ``created_at``, ``parent_config``, ``tasks``) or the ``StateSnapshot`` tuple
  as ``json.dumps`` writes it (a list in field order). Every (thread,
  checkpoint namespace) becomes a run whose trace id is derived from the thread
  id. The oldest snapshot is the root span (``invoke_workflow {graph}``) and
  version 1; each later snapshot is a span for the node(s) that wrote it (the
  tasks of its parent checkpoint) and the next version, in chronological order.
  ``state_versions.source`` says ``langgraph:{metadata.source}`` (input, loop,
  update, fork) and the span holds ``agentrace.agent.step`` = LangGraph's step.
  A snapshot whose parent is not the version before it (time travel) is a
  ``fork`` whose ``base_version`` is its parent's version. A later dump of a
  thread that grew only adds the new versions.

* An OpenInference trace of a LangGraph graph (:func:`derive_trace_state`),
  already in the store: the graph's root span holds the input and the final
  state, and each node's span (``metadata.langgraph_node`` equal to the span
  name, a direct child of the root) holds the update the node returned. The
  state is rebuilt by applying the updates in step order: one version per
  node, on a synthetic span under the node's span, ``source`` =
  ``langgraph-trace``. The trace does not say which keys have reducers; list
  keys are appended to (by message id when the items carry one, as LangGraph's
  ``add_messages`` does), other keys replaced, and a list key whose appending
  does not reproduce the final state the root span recorded is replaced instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest as PB2ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PB2Span

from . import conventions as c
from ._errors import DecodeError
from ._mapping import langgraph_metadata
from ._otlp import fill_attrs
from ._state import JSON, canonical_json, chain_hash, changed_keys, diff
from ._store._models import IngestResult
from ._store._store import Store

SCOPE: Final = "agentrace.langgraph"
SOURCE_TRACE: Final = "langgraph-trace"
_SNAPSHOT_EVERY: Final = 16  # a whole document every 16 versions keeps state_at() short
_FIELDS: Final = (
    "values",
    "next",
    "config",
    "metadata",
    "created_at",
    "parent_config",
    "tasks",
    "interrupts",
)
_TASK_FIELDS: Final = ("id", "name", "path", "error", "interrupts", "state", "result")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_INTERNAL = 1  # SpanKind INTERNAL
_STATUS_ERROR = 2

# LangGraph facts on the spans we synthesise.
LG_THREAD: Final = "langgraph.thread_id"
LG_CHECKPOINT: Final = "langgraph.checkpoint.id"
LG_PARENT: Final = "langgraph.checkpoint.parent_id"
LG_NS: Final = "langgraph.checkpoint.ns"
LG_STEP: Final = "langgraph.step"
LG_SOURCE: Final = "langgraph.source"
LG_NEXT: Final = "langgraph.next"
LG_WRITERS: Final = "langgraph.writers"


def _id(nbytes: int, *parts: str) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.digest()[:nbytes]


def run_id_for_thread(thread_id: str, checkpoint_ns: str = "") -> str:
    """The run (trace) id a LangGraph thread's history is imported under."""
    return _id(16, "agentrace/langgraph/thread", thread_id, checkpoint_ns).hex()


# -- get_state_history dumps -----------------------------------------------------------------


def looks_like_history(head: bytes) -> bool:
    """Whether the first bytes of a JSON file look like a LangGraph state history dump."""
    text = head.lstrip()
    if text[:1] not in (b"{", b"["):
        return False
    if b'"resourceSpans"' in head:
        return False
    return (
        b'"snapshots"' in head
        or (b'"values"' in head and b'"checkpoint_id"' in head)
        or (text[:1] == b"[" and b'"configurable"' in head)
    )


def _as_snapshot(item: Any, i: int, source: str) -> dict[str, Any]:
    if isinstance(item, list) and len(item) >= 6 and isinstance(item[2], dict):
        return dict(zip(_FIELDS, item, strict=False))
    if isinstance(item, dict) and "config" in item:
        return item
    raise DecodeError(
        f"snapshot {i + 1} is not a LangGraph StateSnapshot (no config)", source=source
    )


def _configurable(cfg: Any) -> dict[str, Any]:
    if isinstance(cfg, dict):
        conf = cfg.get("configurable")
        if isinstance(conf, dict):
            return conf
    return {}


def _ns(created_at: Any, fallback: int) -> int:
    if isinstance(created_at, str):
        try:
            dt = datetime.fromisoformat(created_at)
        except ValueError:
            return fallback
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return (dt - _EPOCH) // timedelta(microseconds=1) * 1_000
    return fallback


def _meta(snap: dict[str, Any]) -> dict[str, Any]:
    meta = snap.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _task(t: Any) -> dict[str, Any]:
    if isinstance(t, list):
        return dict(zip(_TASK_FIELDS, t, strict=False))
    return t if isinstance(t, dict) else {}


def history_requests(doc: Any, *, source: str = "<input>") -> list[PB2ExportTraceServiceRequest]:
    """OTLP requests (one per thread and namespace) for a parsed ``get_state_history`` dump.

    Raises :class:`DecodeError` naming ``source`` and the snapshot when the dump is not one.
    """
    graph = None
    thread_default = None
    if isinstance(doc, dict) and isinstance(doc.get("snapshots"), list):
        items = doc["snapshots"]
        graph = doc.get("graph") if isinstance(doc.get("graph"), str) else None
        thread_default = doc.get("thread_id") if isinstance(doc.get("thread_id"), str) else None
    elif isinstance(doc, list):
        items = doc
    elif isinstance(doc, dict) and "values" in doc and "config" in doc:
        items = [doc]
    else:
        raise DecodeError(
            'not a LangGraph state history: expected {"snapshots": [...]}, a list of snapshots or one snapshot',
            source=source,
        )
    if not items:
        raise DecodeError("the LangGraph state history holds no snapshot", source=source)
    groups: dict[tuple[str, str], list[tuple[int, str, int, dict[str, Any]]]] = {}
    for i, item in enumerate(items):
        snap = _as_snapshot(item, i, source)
        conf = _configurable(snap.get("config"))
        cid = conf.get("checkpoint_id")
        if not isinstance(cid, str) or not cid:
            raise DecodeError(
                f"snapshot {i + 1} has no config.configurable.checkpoint_id", source=source
            )
        thread = conf.get("thread_id") if isinstance(conf.get("thread_id"), str) else thread_default
        if not isinstance(thread, str) or not thread:
            raise DecodeError(
                f"snapshot {i + 1} has no config.configurable.thread_id", source=source
            )
        ns = conf.get("checkpoint_ns")
        ns = ns if isinstance(ns, str) else ""
        meta = _meta(snap)
        step = meta.get("step")
        step = step if isinstance(step, int) else i
        # Newest first is LangGraph's order; sort by time, then checkpoint id (time-ordered UUIDs).
        when = _ns(snap.get("created_at"), i)
        groups.setdefault((thread, ns), []).append((when, cid, step, snap))
    out = []
    for (thread, ns), snaps in groups.items():
        snaps.sort(key=lambda s: (s[0], s[1]))
        out.append(_thread_request(thread, ns, graph, snaps, source))
    return out


def _thread_request(
    thread: str,
    ns: str,
    graph: str | None,
    snaps: list[tuple[int, str, int, dict[str, Any]]],
    source: str,
) -> PB2ExportTraceServiceRequest:
    run_id = run_id_for_thread(thread, ns)
    trace_id = bytes.fromhex(run_id)
    req = PB2ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    fill_attrs(rs.resource.attributes, {c.SERVICE_NAME: "langgraph"})
    ss = rs.scope_spans.add()
    ss.scope.name = SCOPE
    by_checkpoint = {cid: (k + 1, snap) for k, (_, cid, _, snap) in enumerate(snaps)}
    root_sid = b""
    prev_doc: JSON = None
    prev_hash = ""
    prev_cid = None
    prev_when = snaps[0][0]
    workflow = graph or "langgraph"
    for k, (when, cid, step, snap) in enumerate(snaps):
        version = k + 1
        meta = _meta(snap)
        lg_source = meta.get("source")
        lg_source = lg_source if isinstance(lg_source, str) else "loop"
        parent_cid = _configurable(snap.get("parent_config")).get("checkpoint_id")
        parent = by_checkpoint.get(parent_cid) if isinstance(parent_cid, str) else None
        writers: list[str] = []
        if parent is not None:
            tasks = map(_task, parent[1].get("tasks") or ())
            writers = [t["name"] for t in tasks if isinstance(t.get("name"), str)]
        # LangGraph's bookkeeping tasks (__start__ applies the input) are not agents.
        agents = [w for w in writers if not w.startswith("__")]
        doc = snap.get("values")
        h = chain_hash(prev_hash, doc)
        sid = _id(8, "agentrace/langgraph/checkpoint", thread, ns, cid)
        attrs: dict[str, Any] = {
            LG_THREAD: thread, LG_CHECKPOINT: cid, LG_NS: ns, LG_STEP: step, LG_SOURCE: lg_source,
            c.AGENT_STEP: step, c.GEN_AI_CONVERSATION_ID: thread, c.GEN_AI_WORKFLOW_NAME: workflow,
        }  # fmt: skip
        if isinstance(parent_cid, str):
            attrs[LG_PARENT] = parent_cid
        nxt = snap.get("next")
        if isinstance(nxt, list):
            attrs[LG_NEXT] = [str(x) for x in nxt]
        agent: str | None = None
        if version == 1:
            name = f"invoke_workflow {workflow}"
            attrs[c.GEN_AI_OPERATION_NAME] = c.OP_INVOKE_WORKFLOW
        elif len(writers) == 1 and agents:
            agent = agents[0]
            name = f"invoke_agent {agent}"
            attrs[c.GEN_AI_OPERATION_NAME] = c.OP_INVOKE_AGENT
            attrs[c.GEN_AI_AGENT_NAME] = agent
        elif writers:
            name = f"step {step}: {', '.join(writers)}"
            attrs[LG_WRITERS] = writers
        else:
            name = f"step {step}: {lg_source}"
        if agent is not None and parent is not None:
            result = _task((parent[1].get("tasks") or [None])[0]).get("result")
            if result is not None:
                attrs[c.AGENT_OUTPUT] = canonical_json(result)
        if version == 1:
            kind = "initial"
            base = None
        elif parent is not None and parent_cid != prev_cid:
            kind = "fork"
            base = parent[0]
        else:
            kind = "commit" if lg_source != "fork" else "fork"
            base = version - 1
        start = min(prev_when, when) if version > 1 else when
        sp = ss.spans.add()
        _fill_span(sp, trace_id, sid, root_sid, name, start, when, attrs)
        ev_attrs = _commit_attrs(
            version,
            doc,
            prev_doc,
            h,
            kind=kind,
            base=base,
            agent=agent,
            source=f"langgraph:{lg_source}",
        )
        ev = sp.events.add()
        ev.time_unix_nano = when
        ev.name = c.EV_STATE_COMMIT
        fill_attrs(ev.attributes, ev_attrs)
        if len(writers) > 1 and parent is not None:
            for t in map(_task, parent[1].get("tasks") or ()):
                if not isinstance(t.get("name"), str) or t["name"].startswith("__"):
                    continue
                child = ss.spans.add()
                cattrs: dict[str, Any] = {
                    c.GEN_AI_OPERATION_NAME: c.OP_INVOKE_AGENT, c.GEN_AI_AGENT_NAME: t["name"], c.AGENT_STEP: step,
                }  # fmt: skip
                if t.get("result") is not None:
                    cattrs[c.AGENT_OUTPUT] = canonical_json(t["result"])
                _fill_span(
                    child, trace_id, _id(8, "agentrace/langgraph/task", thread, ns, cid, str(t.get("id") or t["name"])),
                    sid, f"invoke_agent {t['name']}", start, when, cattrs,
                )  # fmt: skip
        if version == 1:
            root_sid = sid
        prev_doc, prev_hash, prev_cid, prev_when = doc, h, cid, when
    # Tasks of the newest snapshot that failed or were interrupted have no checkpoint
    # after them: they are spans without a version, so the failure is still seen.
    last_when, last_cid, last_step, last = snaps[-1]
    for t in map(_task, last.get("tasks") or ()):
        if not isinstance(t.get("name"), str) or not (t.get("error") or t.get("interrupts")):
            continue
        sp = ss.spans.add()
        tattrs: dict[str, Any] = {
            c.GEN_AI_OPERATION_NAME: c.OP_INVOKE_AGENT, c.GEN_AI_AGENT_NAME: t["name"], c.AGENT_STEP: last_step + 1,
        }  # fmt: skip
        if t.get("interrupts"):
            tattrs["langgraph.interrupts"] = canonical_json(t["interrupts"])
        _fill_span(
            sp, trace_id, _id(8, "agentrace/langgraph/task", thread, ns, last_cid, str(t.get("id") or t["name"])),
            root_sid, f"invoke_agent {t['name']}", last_when, last_when, tattrs,
        )  # fmt: skip
        if t.get("error"):
            sp.status.code = _STATUS_ERROR
            sp.status.message = str(t["error"])
    return req


def _fill_span(
    sp: PB2Span,
    trace_id: bytes,
    sid: bytes,
    parent: bytes,
    name: str,
    start: int,
    end: int,
    attrs: dict[str, Any],
) -> None:
    sp.trace_id = trace_id
    sp.span_id = sid
    if parent:
        sp.parent_span_id = parent
    sp.name = name
    sp.kind = _INTERNAL  # type: ignore[assignment]  # int enum value
    sp.start_time_unix_nano = start
    sp.end_time_unix_nano = max(start, end)
    fill_attrs(sp.attributes, attrs)


def _commit_attrs(
    version: int,
    doc: JSON,
    prev: JSON,
    h: str,
    *,
    kind: str,
    base: int | None,
    agent: str | None,
    source: str,
) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        c.STATE_VERSION: version,
        c.STATE_PARENT_VERSION: version - 1,
        c.STATE_BASE_VERSION: base or 0,
        c.STATE_KIND: kind,
        c.STATE_HASH: h,
        c.STATE_SOURCE: source,
    }
    if agent:
        attrs[c.STATE_AGENT] = agent
    if version == 1 or version % _SNAPSHOT_EVERY == 1 or prev is None:
        attrs[c.STATE_SNAPSHOT] = canonical_json(doc)
        attrs[c.STATE_KEYS] = sorted(doc) if isinstance(doc, dict) else []
    else:
        patch = diff(prev, doc)
        attrs[c.STATE_PATCH] = canonical_json(patch)
        attrs[c.STATE_KEYS] = changed_keys(patch)
    return attrs


def import_history(store: Store, doc: Any, *, source: str = "<input>") -> IngestResult:
    """Store a parsed ``get_state_history`` dump: one transaction for all its threads."""
    return store.ingest(history_requests(doc, source=source), source=source)


# -- state rebuilt from OpenInference traces ---------------------------------------------------

LANGCHAIN_SCOPE_PREFIX: Final = "openinference.instrumentation.lang"


def derive_trace_state(store: Store, run_ids: Iterable[str] | None = None) -> IngestResult:
    """Rebuild the state of stored LangGraph (OpenInference) runs from their spans.

    Every write already does this for the traces it touches (see docs/store.md); this
    recomputes ``run_ids`` (or every run with LangChain-instrumented spans) on demand,
    for a store written by an older agentrace. Returns how many versions they have.
    """
    return store.rederive(run_ids, langgraph=True)


def _json_obj(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def trace_versions(trace_id: str, spans: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The ``state_versions`` rows of a LangGraph run rebuilt from its stored spans.

    ``spans``: ``(span_id, parent_span_id, name, start_ns, end_ns, attributes JSON)`` of
    the run's root and node spans. Version 1 (the input) points at the root span, each
    later version at the node span whose returned update made it. No root, or a root
    without an input value: no versions.
    """
    roots = sorted((r for r in spans if not r[1]), key=lambda r: (r[3], r[0]))
    if not roots:
        return []
    root_sid, _, _, root_start, _, root_text = roots[0]
    root_attrs = orjson.loads(root_text)
    initial = _json_obj(root_attrs.get("input.value"))
    if not isinstance(initial, dict):
        return []
    final = _json_obj(root_attrs.get("output.value"))
    final = final if isinstance(final, dict) else None
    nodes: list[tuple[int, int, str, str, int, dict[str, Any]]] = []
    for sid, pid, name, start, end, attrs_text in spans:
        if pid != root_sid:
            continue
        attrs = orjson.loads(attrs_text)
        meta = langgraph_metadata(attrs)
        if meta is None or meta["langgraph_node"] != name:
            continue
        update = _json_obj(attrs.get("output.value"))
        if not isinstance(update, dict):
            continue
        step = meta.get("langgraph_step")
        nodes.append((step if isinstance(step, int) else 0, start, sid, name, end, update))
    if not nodes:
        return []
    nodes.sort(key=lambda n: (n[0], n[1], n[2]))
    modes = _infer_modes(initial, [n[5] for n in nodes], final)
    doc: JSON = initial
    h = chain_hash("", doc)
    out = [_version_row(trace_id, 1, None, root_sid, root_start, doc, None, h, None)]
    for version, (step, _start, sid, node, end, update) in enumerate(nodes, start=2):
        new = _merge(doc, update, modes, final)
        h_new = chain_hash(h, new)
        out.append(_version_row(trace_id, version, node, sid, end, new, doc, h_new, step))
        doc, h = new, h_new
    return out


def _version_row(
    run_id: str, version: int, agent: str | None, span_id: str, when: int, doc: JSON,
    prev: JSON, h: str, step: int | None,
) -> tuple[Any, ...]:  # fmt: skip
    a = _commit_attrs(
        version, doc, prev, h, kind="initial" if version == 1 else "commit",
        base=None if version == 1 else version - 1, agent=agent, source=SOURCE_TRACE,
    )  # fmt: skip
    return (
        run_id, version, version - 1 or None, None if version == 1 else version - 1, a[c.STATE_KIND],
        agent, span_id, when, a.get(c.STATE_SNAPSHOT), a.get(c.STATE_PATCH), h, a[c.STATE_KEYS],
        SOURCE_TRACE, SOURCE_TRACE, step,
    )  # fmt: skip


def _item_id(item: Any) -> Any:
    if isinstance(item, dict):
        if isinstance(item.get("id"), str):
            return item["id"]
        data = item.get("data")
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            return data["id"]
    return None


def _without_id(item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    out = {k: v for k, v in item.items() if k != "id"}
    data = out.get("data")
    if isinstance(data, dict):
        out["data"] = {k: v for k, v in data.items() if k != "id"}
    return out


def _append(old: list[Any], new: list[Any], final: list[Any] | None = None) -> list[Any]:
    out = list(old)
    where = {i: n for n, item in enumerate(out) if (i := _item_id(item)) is not None}
    for item in new:
        i = _item_id(item)
        if i is not None and i in where:
            out[where[i]] = item  # add_messages replaces a message that has the same id
            continue
        if i is None and final is not None and len(out) < len(final):
            # add_messages gives a message without an id a fresh one; the final state
            # the root span recorded says which.
            known = final[len(out)]
            if _item_id(known) is not None and _without_id(known) == _without_id(item):
                item, i = known, _item_id(known)
        if i is not None:
            where[i] = len(out)
        out.append(item)
    return out


def _merge(
    doc: dict[str, Any],
    update: dict[str, Any],
    modes: dict[str, str],
    final: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out = dict(doc)
    for k, v in update.items():
        old = out.get(k)
        if modes.get(k) == "append" and isinstance(old, list) and isinstance(v, list):
            fin = final.get(k) if final is not None else None
            out[k] = _append(old, v, fin if isinstance(fin, list) else None)
        else:
            out[k] = v
    return out


def _infer_modes(
    initial: dict[str, Any], updates: list[dict[str, Any]], final: dict[str, Any] | None
) -> dict[str, str]:
    modes = {k: "append" for u in updates for k, v in u.items() if isinstance(v, list)}
    if final is None or not modes:
        return modes

    def run(m: dict[str, str]) -> dict[str, Any]:
        doc = initial
        for u in updates:
            doc = _merge(doc, u, m, final)
        return doc

    got = run(modes)
    for k in list(modes):
        if k in final and got.get(k) != final[k]:
            trial = {**modes, k: "replace"}
            if run(trial).get(k) == final[k]:
                modes = trial
    return modes
