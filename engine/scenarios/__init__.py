"""The bundled scenarios and their registry (see ``_registry`` for the rules).

``SCENARIOS`` maps each name to its :class:`Scenario`; :func:`record` records
scenarios into any sink (a ``DuckDBSink`` for ``agentrace demo``), :func:`render`
gives one as OTLP JSON lines, :func:`regenerate` rewrites ``sample_traces/``
(``python -m engine.scenarios [NAME ...]``).

Orchestrated: ``credit``, ``credit-fixed``, ``trading-saga``, ``flaky``,
``low-confidence``. Other modules add theirs with :func:`register`; this package
imports every ``engine._choreo*`` module so that theirs are here too.
"""

from __future__ import annotations

import importlib
import pkgutil

import engine

from . import credit, flaky, low_confidence, trading
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

for _mod in pkgutil.iter_modules(engine.__path__):
    if _mod.name.startswith("_choreo"):
        importlib.import_module(f"engine.{_mod.name}")

__all__ = [
    "DEFAULT_SEED",
    "SAMPLE_DIR",
    "SCENARIOS",
    "START_NS",
    "TICK_NS",
    "Scenario",
    "arecord",
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
