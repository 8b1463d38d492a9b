"""Replay and fork a LangGraph run with the user's own compiled graph, no model called.

``replay_graph(store, run_id, "myapp.graphs:claims")`` loads the graph the user names
(never one a trace names), rebuilds it with every node answered from the update that
node wrote in the recording at that super-step (:func:`tracer.langgraph_writes`), runs
it from the recorded input on an in-memory checkpointer, and compares each checkpoint
of the replay with the recorded one, in order. ``overrides`` run nodes live instead
(a patched function); ``from_version=K`` forks: every super-step up to version K's is
answered from the recording, every later one runs live (the graph's own functions,
overrides applied), and only versions up to K are compared (diff the two runs for the
rest). The new run is recorded like an imported checkpointer, linked to the original
(``agentrace.run.parent``, ``agentrace.run.fork_version``), unless ``record=False``.

The run must have its checkpoints (imported from the checkpointer, alone or joined
with its trace): the comparison is checkpoint against checkpoint, both decoded the
same way. LangChain messages in recorded updates become messages again (only the
message types LangChain defines; nothing is imported by a name in the data); other
objects stay plain data, so a channel holding a custom class compares as different.

Needs ``langgraph`` (the user's graph needs it anyway); imported only here.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson

from tracer import (
    FieldChange,
    StateVersion,
    Store,
    checkpoint_snapshots,
    checkpointer_requests,
    field_changes,
    langgraph_writes,
)
from tracer import conventions as c

from ._model import Compared, Divergence, ReplayError, load_ref

_MESSAGE_TYPES = frozenset(
    {"human", "ai", "system", "chat", "function", "tool", "remove",
     "HumanMessageChunk", "AIMessageChunk", "SystemMessageChunk", "ChatMessageChunk",
     "FunctionMessageChunk", "ToolMessageChunk"}
)  # fmt: skip


@dataclass(frozen=True, slots=True, eq=False)
class GraphReplayResult(Compared):
    """What a LangGraph replay or fork did (the shape of :class:`engine.ReplayResult`).

    ``steps`` are the (super-step, node) pairs the replay ran, ``ledger`` the state of each
    of its checkpoints (as stored), ``divergences`` ordered by version.
    """

    run_id: str | None
    parent_run_id: str
    workflow: str
    mode: Literal["replay", "fork"]
    status: str
    original_status: str | None
    divergences: tuple[Divergence, ...]
    steps: tuple[tuple[int, str], ...] = field(repr=False)
    ledger: tuple[Any, ...] = field(repr=False)
    fork_version: int | None = None
    overrides: tuple[str, ...] = ()
    recorded: bool = True
    error: BaseException | None = field(default=None, repr=False)

    @property
    def state(self) -> Any:
        return self.ledger[-1] if self.ledger else None


def _revive(value: Any) -> Any:
    """Recorded LangChain messages (either recorded form) as messages; the rest as it is."""
    from langchain_core.messages import messages_from_dict

    if isinstance(value, list):
        return [_revive(v) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get("type")
    described = value.get("__type__")
    if (
        isinstance(described, str)
        and described.startswith("langchain_core.messages.")
        and kind in _MESSAGE_TYPES
    ):
        data = {k: v for k, v in value.items() if k != "__type__"}
        return messages_from_dict([{"type": kind, "data": data}])[0]
    if (
        set(value) == {"type", "data"}
        and kind in _MESSAGE_TYPES
        and isinstance(value["data"], dict)
    ):
        return messages_from_dict([value])[0]
    return {k: _revive(v) for k, v in value.items()}


def _call(fn: Any, state: Any, config: Any) -> Any:
    if hasattr(fn, "invoke"):
        return fn.invoke(state, config)
    try:
        n = len(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        n = 1
    return fn(state, config) if n >= 2 else fn(state)


@dataclass
class _Answers:
    """The recorded updates, handed out node by node and step by step."""

    recorded: dict[tuple[str, int], list[dict[str, Any]]]
    live_after: int | None  # super-steps after this run live (a fork)
    live: dict[str, Any]  # node -> the function that runs it live
    overridden: frozenset[str]
    used: dict[tuple[str, int], int] = field(default_factory=dict)
    ran: list[tuple[int, str]] = field(default_factory=list)
    gaps: list[Divergence] = field(default_factory=list)

    def node(self, name: str) -> Callable[[Any, Any], Any]:
        def run(state: Any, config: Any) -> Any:
            step = (config.get("metadata") or {}).get("langgraph_step")
            step = step if isinstance(step, int) else -1
            self.ran.append((step, name))
            if name in self.overridden or (self.live_after is not None and step > self.live_after):
                return _call(self.live[name], state, config)
            key = (name, step)
            i = self.used.get(key, 0)
            queue = self.recorded.get(key, [])
            if i >= len(queue):
                self.gaps.append(
                    Divergence(
                        "step", step, name,
                        detail="ran in the replay; the recording has no update of it in this super-step",
                    )
                )  # fmt: skip
                raise ReplayError(
                    f"{name} ran in super-step {step}, which the recording does not have"
                )
            self.used[key] = i + 1
            return _revive(queue[i])

        from langchain_core.runnables import RunnableConfig

        # LangGraph passes the config (which tells the super-step) to a node whose second
        # parameter is annotated as a RunnableConfig.
        run.__annotations__ = {"state": Any, "config": RunnableConfig, "return": Any}
        return run


def _graph(ref: str) -> Any:
    graph = load_ref(ref, "graph")
    builder = getattr(graph, "builder", None)
    if builder is None or not isinstance(getattr(builder, "nodes", None), dict):
        raise ReplayError(f"graph {ref!r}: not a compiled LangGraph graph (no .builder.nodes)")
    return graph


def _checkpoints(store: Store, run_id: str) -> list[StateVersion]:
    versions = store.state_versions(run_id)
    line: list[StateVersion] = []
    for v in versions:
        if not (v.source or "").startswith("langgraph:") or v.step is None:
            continue
        if v.kind == "fork" or (line and v.base_version != line[-1].version):
            break  # the recorded line ends where time travel begins
        line.append(v)
    if not line:
        raise ReplayError(
            f"run {run_id} has no LangGraph checkpoints to replay against: import its "
            "checkpointer (agentrace import FILE.sqlite | postgresql://...)"
        )
    return line


def _thread_of(run: Any) -> str:
    for key in ("session.id", "langgraph.thread_id", c.GEN_AI_CONVERSATION_ID):
        value = run.attributes.get(key)
        if isinstance(value, str) and value:
            return value
    return str(run.run_id)


def replay_graph(
    store: Store,
    run_id: str,
    graph_ref: str,
    *,
    from_version: int | None = None,
    overrides: Mapping[str, str] | None = None,
    record: bool = True,
) -> GraphReplayResult:
    """Replay (or fork from ``from_version``) LangGraph run ``run_id`` with the graph
    ``graph_ref`` names (``module:attr``); see the module docstring. Raises
    :class:`engine.ReplayError` when it cannot run (no checkpoints, no such graph, node,
    version)."""
    from langgraph.checkpoint.memory import InMemorySaver

    run = store.run(store.resolve_run(run_id))
    line = _checkpoints(store, run.run_id)
    graph = _graph(graph_ref)
    builder = graph.builder
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(builder.nodes))
    if unknown:
        raise ReplayError(
            f"graph {graph_ref!r} has no node {', '.join(unknown)} (nodes: {', '.join(builder.nodes)})"
        )
    fork_step = None
    if from_version is not None:
        at = [v for v in line if v.version == from_version]
        if not at:
            raise ReplayError(
                f"run {run.run_id} has no checkpoint version {from_version} on its line "
                f"(1..{line[-1].version})"
            )
        fork_step = at[0].step
    recorded: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for w in langgraph_writes(store, run.run_id):
        recorded.setdefault((w.node, w.step), []).append(w.update)
    live = {name: spec.runnable for name, spec in builder.nodes.items()}
    for name, ref in overrides.items():
        live[name] = load_ref(ref, "override")
    answers = _Answers(recorded, fork_step, live, frozenset(overrides))
    # The user's graph rebuilt with every node answered by the recording.
    patched = replace_nodes(builder, {name: answers.node(name) for name in builder.nodes})
    saver = InMemorySaver()
    app = patched.compile(checkpointer=saver)
    docs = [store.state_at(run.run_id, v.version) for v in line]
    start = next((i for i, v in enumerate(line) if v.step == 0), 0)
    thread = (
        f"{_thread_of(run)}#{'fork' if fork_step is not None else 'replay'}-{secrets.token_hex(4)}"
    )
    config = {"configurable": {"thread_id": thread}}
    error: BaseException | None = None
    try:
        app.invoke(_revive(docs[start]), config)
    except Exception as exc:  # a node raised, or a step the recording lacks: reported below
        error = exc
    snaps = _replay_snapshots(app, saver, config, thread)
    divergences = list(answers.gaps)
    upto = from_version if from_version is not None else line[-1].version
    for i, v in enumerate(line):
        if v.version > upto:
            break
        if i >= len(snaps):
            divergences.append(
                Divergence("version", v.step, v.agent, version=v.version,
                           detail="recorded; the replay never reached it")
            )  # fmt: skip
            break
        got = snaps[i]
        step = (got.get("metadata") or {}).get("step")
        if step != v.step or got["values"] != docs[i]:
            changes: tuple[FieldChange, ...] = tuple(field_changes(docs[i], got["values"]))
            writers = ", ".join(t["name"] for t in (snaps[i - 1]["tasks"] if i else ()))
            divergences.append(
                Divergence("version", v.step, v.agent or writers or None, version=v.version,
                           detail="" if step == v.step else f"replay at super-step {step}",
                           changes=changes)
            )  # fmt: skip
    if from_version is None and len(snaps) > len(line):
        extra = snaps[len(line)]
        divergences.append(
            Divergence("version", (extra.get("metadata") or {}).get("step"), None,
                       version=len(line) + 1, detail="the replay made a checkpoint the recording does not have")
        )  # fmt: skip
    for (node, step), queue in sorted(recorded.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if fork_step is not None and step > fork_step:
            continue
        if node in answers.overridden or node not in builder.nodes:
            continue
        if answers.used.get((node, step), 0) < len(queue):
            divergences.append(
                Divergence("step", step, node, detail="recorded, but did not run in the replay")
            )
    new_run = None
    if record and snaps:
        attrs: dict[str, Any] = {c.RUN_PARENT: run.run_id}
        if from_version is not None:
            attrs[c.RUN_FORK_VERSION] = from_version
        source = f"replay of {run.run_id}"
        result = store.ingest(
            checkpointer_requests([snaps], source=source, graph=run.workflow, run_attributes=attrs),
            source=source,
        )
        new_run = next(iter(result.run_ids), None)
    return GraphReplayResult(
        run_id=new_run,
        parent_run_id=run.run_id,
        workflow=graph_ref,
        mode="fork" if from_version is not None else "replay",
        status="error" if error is not None else "ok",
        original_status=run.status,
        divergences=tuple(sorted(divergences, key=lambda d: (d.version or 0, d.step or 0))),
        steps=tuple(answers.ran),
        ledger=tuple(s["values"] for s in snaps),
        fork_version=from_version,
        overrides=tuple(f"{k}={v}" for k, v in sorted(overrides.items())),
        recorded=new_run is not None,
        error=error,
    )


def replace_nodes(builder: Any, functions: Mapping[str, Any]) -> Any:
    """A copy of a LangGraph ``StateGraph`` whose nodes run ``functions`` instead (their
    edges, retry and cache policies kept); the original is left as it was."""
    import copy

    patched = copy.copy(builder)
    patched.nodes = {
        name: replace(spec, runnable=functions.get(name, spec.runnable))
        for name, spec in builder.nodes.items()
    }
    return patched


def _replay_snapshots(app: Any, saver: Any, config: Any, thread: str) -> list[dict[str, Any]]:
    """The replay's checkpoints (oldest first), decoded exactly as an imported checkpointer's
    (serialized by the graph's own serializer, read back by tracer's safe reader)."""
    names = {}
    for snap in app.get_state_history(config):
        for task in snap.tasks:
            names[task.id] = task.name
    serde = saver.serde
    ckpts, writes = [], []
    for tup in saver.list(config):
        conf = tup.config["configurable"]
        ns = conf.get("checkpoint_ns", "")
        parent = (tup.parent_config or {}).get("configurable", {}).get("checkpoint_id")
        type_, blob = serde.dumps_typed(tup.checkpoint)
        meta = orjson.dumps(tup.metadata, default=str)
        ckpts.append((thread, ns, conf["checkpoint_id"], parent, type_, blob, meta))
        for idx, (task_id, channel, value) in enumerate(tup.pending_writes or ()):
            vtype, vblob = serde.dumps_typed(value)
            path = f"~__pregel_pull, {names.get(task_id, task_id)}"
            writes.append(
                (thread, ns, conf["checkpoint_id"], task_id, path, idx, channel, vtype, vblob)
            )
    threads = checkpoint_snapshots(ckpts, writes, source=thread)
    return threads[0] if threads else []
