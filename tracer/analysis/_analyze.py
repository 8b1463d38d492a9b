"""The detector registry and the entry points: detect (read only) and analyze (detect and store)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from .._errors import StoreError
from .._store._models import Finding
from .._store._store import Store
from ._bus import detect_duplicate_deliveries, detect_lost_events
from ._context import RunContext
from ._edges import detect_undeclared_edges, detect_unused_edges
from ._model import Detector, Severity
from ._resilience import (
    detect_breaker_opens,
    detect_compensation_failures,
    detect_contract_violations,
    detect_incomplete_sagas,
)
from ._state_bugs import detect_stale_reads
from ._superstep import detect_all_lost_updates
from ._unfinished import detect_unfinished_consumers

_ALL = (
    Detector("stale_read", Severity.ERROR,
             "an agent read a version of keys after a later version of them was committed",
             "state_reads and state_versions", detect_stale_reads),
    Detector("lost_update", Severity.ERROR,
             "a commit overwrote keys changed since its base, without having read them, "
             "or parallel nodes of a super-step wrote one key and one write was kept",
             "state_versions with base_version; LangGraph super-steps", detect_all_lost_updates),
    Detector("duplicate_delivery", Severity.ERROR,
             "a message processed more than once by one consumer group",
             "process spans (messages)", detect_duplicate_deliveries),
    Detector("lost_event", Severity.ERROR,
             "a message never handled by a subscriber before the run ended",
             "send and process spans of an agentrace run", detect_lost_events),
    Detector("unfinished_consumer", Severity.ERROR,
             "a consumer did its work and died before publishing what followed or acking",
             "process spans (messages) and the state and spans below them", detect_unfinished_consumers),
    Detector("contract_violation", Severity.WARNING,
             "a handoff rejected at its boundary by a contract",
             "agentrace.contract.check events", detect_contract_violations),
    Detector("breaker_open", Severity.WARNING,
             "a circuit breaker opened, and the calls it refused",
             "agentrace.breaker.transition events", detect_breaker_opens),
    Detector("saga_incomplete", Severity.CRITICAL,
             "a rollback left a completed step uncompensated",
             "agentrace.saga.compensate events", detect_incomplete_sagas),
    Detector("compensation_failed", Severity.CRITICAL,
             "a compensation whose last attempt failed",
             "agentrace.saga.compensate events", detect_compensation_failures),
    Detector("undeclared_edge", Severity.WARNING,
             "traffic the declared graph does not allow",
             "agentrace.run.declared_graph", detect_undeclared_edges),
    Detector("unused_edge", Severity.INFO,
             "a declared edge never used in a completed run",
             "agentrace.run.declared_graph", detect_unused_edges),
)  # fmt: skip

DETECTORS: Mapping[str, Detector] = MappingProxyType({d.kind: d for d in _ALL})
"""Every detector by the kind of finding it makes, in the order analysis runs them."""


def _select(kinds: Iterable[str] | None) -> list[Detector]:
    if kinds is None:
        return list(_ALL)
    wanted = list(dict.fromkeys(kinds))
    unknown = [k for k in wanted if k not in DETECTORS]
    if unknown:
        raise ValueError(
            f"unknown finding kind(s) {', '.join(unknown)}; known: {', '.join(DETECTORS)}"
        )
    return [DETECTORS[k] for k in wanted]


def detect(store: Store, run_id: str, *, kinds: Iterable[str] | None = None) -> list[Finding]:
    """The findings of a run (every detector, or those of ``kinds``), without storing them.

    Findings come ordered by the time in the run they became observable (``detected_ns``),
    then kind, versions and id. Raises :class:`NotFoundError` for a run not in the store. Reads only.

    May be called from any thread (a TUI worker, say): it reads through that thread's
    cursor of ``store`` and shares nothing between calls.
    """
    ctx = RunContext(store, run_id)
    ctx.run  # noqa: B018  # a missing run fails here, once, with NotFoundError
    found: list[Finding] = []
    for detector in _select(kinds):
        found.extend(detector.run(ctx))
    found.sort(key=lambda f: (f.detected_ns, f.kind, f.versions, f.finding_id))
    return found


def analyze(
    store: Store, run_id: str, *, kinds: Iterable[str] | None = None, save: bool = True
) -> list[Finding]:
    """Detect a run's findings and (``save``) store them, replacing its earlier ones.

    Ids are stable, so analysing again replaces rather than adds. With ``kinds``, only
    the findings of those kinds are replaced; the run's other stored findings stay.
    The store must be writable when saving (:class:`StoreError` otherwise).
    """
    selected = [d.kind for d in _select(kinds)]
    found = detect(store, run_id, kinds=selected)
    if save:
        if store.read_only:
            raise StoreError(
                f"{store.path}: opened read-only; cannot store the findings of run {run_id}"
            )
        keep = (
            [f for f in store.findings(run_id) if f.kind not in selected]
            if kinds is not None
            else []
        )
        store.replace_findings(run_id, [*keep, *found])
    return found
