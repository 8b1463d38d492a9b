"""Analysis of recorded runs: the coordination graph and the coordination-bug detectors.

Reads only through the store (SQL over its tables); knows no engine. ::

    from tracer.analysis import analyze, coordination_graph
    findings = analyze(store, run_id)          # detected and stored in `findings`
    g = coordination_graph(store, run_id)      # networkx.MultiDiGraph, see its docstring

Each finding kind is described in docs/findings.md: what it means, its evidence and
its severity.
"""

from __future__ import annotations

from ._analyze import DETECTORS, analyze, detect
from ._graph import CoordinationMetrics, coordination_graph, coordination_metrics
from ._model import Detector, Severity

__all__ = [
    "DETECTORS",
    "CoordinationMetrics",
    "Detector",
    "Severity",
    "analyze",
    "coordination_graph",
    "coordination_metrics",
    "detect",
]
