"""The ``agentrace`` fixture's helper: recorded runs in a store, and what tests do with them.

See :mod:`engine.testing.pytest_plugin` for the fixtures, which hand out an :class:`Agentrace`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from tracer import (
    Finding,
    IdGenerator,
    Run,
    Store,
    decode_proto,
    import_file,
    read_records,
)

from ..core._ledger import JSON
from ..replay._explore import Exploration, Invariants, SchedulePlan
from ..replay._model import Divergence, ReplayResult
from ..replay._replayer import AgentSpec, Replayer, WorkflowSpec
from ..replay._rundiff import RunDiff, diff_runs
from ..replay._trace import TraceReplay

if TYPE_CHECKING:
    from ..replay._langgraph import GraphReplayResult

RunRef = str | ReplayResult | Run


def _run_id(run: RunRef) -> str:
    if isinstance(run, ReplayResult):
        return run.run_id
    if isinstance(run, Run):
        return run.run_id
    return run


def _trace_ids(path: Path) -> list[str]:
    """The trace ids an OTLP file holds, in file order (none for other formats)."""
    ids: dict[str, None] = {}
    try:
        records = list(read_records(path))
    except Exception:
        return []
    for rec in records:
        if rec.kind == "json":
            try:
                obj = orjson.loads(rec.data)
            except orjson.JSONDecodeError:
                continue
            for rs in obj.get("resourceSpans") or ():
                for ss in rs.get("scopeSpans") or ():
                    for sp in ss.get("spans") or ():
                        tid = sp.get("traceId")
                        if isinstance(tid, str):
                            ids[tid.lower()] = None
        else:
            for rs in decode_proto(rec.data).resource_spans:
                for ss in rs.scope_spans:
                    for sp in ss.spans:
                        ids[sp.trace_id.hex()] = None
    return list(ids)


class Agentrace:
    """The ``agentrace`` fixture: recorded runs in ``store``, and what tests do with them.

    ``ids`` makes the ids of new runs (seeded per test by default, so a failing test
    names the same run ids on every try).
    """

    def __init__(self, store: Store, *, ids: IdGenerator | None = None) -> None:
        self._store = store
        self.replayer = Replayer(store, ids=ids)
        self._loaded: dict[Path, list[str]] = {}
        # One batch for the whole test: new runs reach the store together, when the test
        # next reads it through this helper (or at the end), not one transaction per run.
        self._batch = self.replayer.batch()
        self._batch.__enter__()

    def close(self) -> None:
        """Write what is still held back to the store (the fixture does this after the test)."""
        self._batch.__exit__(None, None, None)

    @property
    def store(self) -> Store:
        """The store, with every run recorded so far written to it."""
        self.replayer.commit()
        return self._store

    # -- loading ------------------------------------------------------------------------------

    def load(self, path: str | Path) -> list[str]:
        """Import an OTLP file (or LangGraph dump) into the store, once; its runs' ids, oldest
        first (runs that replay others left out)."""
        p = Path(path).resolve()
        if p not in self._loaded:
            store = self.store
            before = {r.run_id for r in store.runs()}
            import_file(store, p)
            runs = store.runs()
            wanted = set(_trace_ids(p)) | ({r.run_id for r in runs} - before)
            ids = [r.run_id for r in runs if r.run_id in wanted and r.parent_run_id is None]
            self.replayer.preload(ids)
            self._loaded[p] = ids
        return list(self._loaded[p])

    def runs(
        self,
        *,
        scenario: str | None = None,
        workflow: str | None = None,
        parent: RunRef | None = None,
    ) -> list[Run]:
        """The store's runs, oldest first, narrowed to a scenario, a workflow, or the replays
        and forks of ``parent``."""
        out = self.store.runs()
        if scenario is not None:
            out = [r for r in out if r.scenario == scenario]
        if workflow is not None:
            out = [r for r in out if r.workflow == workflow]
        if parent is not None:
            pid = _run_id(parent)
            out = [r for r in out if r.parent_run_id == pid]
        return out

    # -- replaying ----------------------------------------------------------------------------

    def replay(
        self,
        run: RunRef,
        *,
        workflow: WorkflowSpec | None = None,
        overrides: Mapping[str, AgentSpec] | None = None,
        raise_on_divergence: bool = False,
    ) -> ReplayResult:
        """Replay ``run`` (see :meth:`engine.Replayer.areplay`)."""
        return self.replayer.replay(
            _run_id(run), workflow=workflow, overrides=overrides,
            raise_on_divergence=raise_on_divergence,
        )  # fmt: skip

    def fork(
        self,
        run: RunRef,
        from_version: int,
        *,
        workflow: WorkflowSpec | None = None,
        overrides: Mapping[str, AgentSpec] | None = None,
    ) -> ReplayResult:
        """Replay ``run`` up to ``from_version``, then run live (see :meth:`engine.Replayer.afork`)."""
        return self.replayer.fork(
            _run_id(run), from_version, workflow=workflow, overrides=overrides
        )

    def replay_graph(
        self,
        run: RunRef,
        graph: str,
        *,
        from_version: int | None = None,
        overrides: Mapping[str, str] | None = None,
    ) -> GraphReplayResult:
        """Replay (or fork) a LangGraph run with the compiled graph ``graph`` names
        (``module:attr``), each node answered from its recorded update (see
        ``agentrace replay --graph``)."""
        from ..replay._langgraph import replay_graph

        return replay_graph(
            self.store, _run_id(run), graph, from_version=from_version, overrides=overrides
        )

    def explore(
        self,
        run: RunRef,
        invariants: Invariants,
        *,
        schedules: int = 20,
        seed: int = 0,
        plan: SchedulePlan | None = None,
        workflow: WorkflowSpec | None = None,
    ) -> Exploration:
        """Explore delivery schedules of a choreographed run (see :meth:`engine.Replayer.aexplore`)."""
        return self.replayer.explore(
            _run_id(run), invariants, schedules=schedules, seed=seed, plan=plan, workflow=workflow
        )

    def diff(self, a: RunRef, b: RunRef) -> RunDiff:
        """Run ``a`` against run ``b``, version by version and span by span."""
        return diff_runs(self.store, _run_id(a), _run_id(b))

    def trace(self, run: RunRef) -> TraceReplay:
        """Step through ``run`` (any trace, imported ones included)."""
        return TraceReplay(self.store, _run_id(run))

    # -- facts to assert on -------------------------------------------------------------------

    def state(self, run: RunRef, version: int | None = None) -> JSON:
        """The state of ``run`` at ``version`` (its last version by default)."""
        if isinstance(run, ReplayResult) and run.recorded is False:
            return run.state if version is None else run.state_at(version)
        store = self.store
        run_id = store.resolve_run(_run_id(run))
        if version is None:
            version = store.run(run_id).version_count
        return store.state_at(run_id, version)

    def findings(
        self, runs: RunRef | Iterable[RunRef], kind: str | Sequence[str] | None = None
    ) -> list[Finding]:
        """What the detectors find in ``runs`` now (of ``kind`` only, when given)."""
        from tracer.analysis import detect

        store = self.store
        kinds = [kind] if isinstance(kind, str) else kind
        out: list[Finding] = []
        for r in _many(runs):
            out.extend(detect(store, store.resolve_run(_run_id(r)), kinds=kinds))
        return out

    @staticmethod
    def divergences(results: ReplayResult | Iterable[ReplayResult]) -> list[Divergence]:
        """Every divergence of ``results``."""
        items = [results] if isinstance(results, ReplayResult) else list(results)
        return [d for r in items for d in r.divergences]


def _many(runs: RunRef | Iterable[RunRef]) -> Iterator[RunRef]:
    if isinstance(runs, (str, ReplayResult, Run)):
        yield runs
    else:
        yield from runs
