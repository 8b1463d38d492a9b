"""The bundled scenarios and their registry (see ``_registry`` for the rules).

``SCENARIOS`` maps each name to its :class:`Scenario`; :func:`record` records
scenarios into any sink (a ``DuckDBSink`` for ``agentrace demo``), :func:`render`
gives one as OTLP JSON lines, :func:`regenerate` rewrites ``sample_traces/``
(``python -m engine.scenarios [NAME ...]``).

Orchestrated: ``credit``, ``credit-fixed``, ``trading-saga``, ``flaky``,
``low-confidence``, ``lost-update``, ``lost-update-fixed`` (``claims``). Choreographed (``choreography``): ``research-pipeline``,
``double-consume``, ``double-consume-fixed``, ``lost-event``, ``choreo-saga``.
Other modules add theirs with :func:`register`.
"""

from __future__ import annotations

from . import choreography, claims, credit, flaky, low_confidence, trading
from ._registry import (
    DEFAULT_SEED,
    SAMPLE_DIR,
    SCENARIOS,
    START_NS,
    TICK_NS,
    Scenario,
    arecord,
    get,
    names,
    record,
    regenerate,
    register,
    render,
    sample_path,
    scenario_recorder,
    scenario_seed,
)

__all__ = [
    "DEFAULT_SEED",
    "SAMPLE_DIR",
    "SCENARIOS",
    "START_NS",
    "TICK_NS",
    "Scenario",
    "arecord",
    "choreography",
    "claims",
    "credit",
    "flaky",
    "get",
    "low_confidence",
    "names",
    "record",
    "regenerate",
    "register",
    "render",
    "sample_path",
    "scenario_recorder",
    "scenario_seed",
    "trading",
]
