"""``agentrace findings``: analyse runs, store their findings, list them; an exit code for CI."""

from __future__ import annotations

import collections
import os
from collections.abc import Callable
from typing import Any

import click
from rich.table import Table

from tracer import Finding
from tracer.analysis import DETECTORS, Severity, analyze

from .._cli_base import (
    TEXT_WIDTH,
    cell,
    cli,
    console,
    db_option,
    errors_to_exit,
    fail,
    json_option,
    open_store,
    print_json,
    short,
)
from .._text import fmt_duration

# Exit status when a finding reaches --fail-on: apart from 1 (agentrace's own errors)
# and 2 (usage), so a pipeline can tell "bugs found" from "the check did not run".
EXIT_FINDINGS = 3

_STYLE = {"critical": "bold red", "error": "red", "warning": "yellow", "info": "dim"}

Column = tuple[str, Callable[[Finding], str], str]  # header, cell, justify


def _ev(key: str, prefix: str = "") -> Callable[[Finding], str]:
    def cell(f: Finding) -> str:
        value = f.evidence.get(key)
        if isinstance(value, list):  # several agents (a super-step's lost writers)
            return ", ".join(f"{prefix}{v}" for v in value)
        return "" if value is None else f"{prefix}{value}"

    return cell


def _via(f: Finding) -> str:
    via, cache = f.evidence.get("via") or "", f.evidence.get("cache")
    return f"{via} {cache}" if via == "cache" and cache else via


def _keys(f: Finding) -> str:
    return ", ".join(str(k) for k in f.evidence.get("keys") or ())


def _before(f: Finding) -> str:
    ns = f.evidence.get("committed_before_read_ns")
    return fmt_duration(int(ns)) if isinstance(ns, int) else ""


_RUN: Column = ("run", lambda f: short(f.run_id), "left")
_SEVERITY: Column = (
    "severity", lambda f: f"[{_STYLE.get(f.severity, '')}]{cell(f.severity)}[/]", "left"
)  # fmt: skip
_WHAT: Column = ("what", lambda f: f.message, "left")
CELL = 80  # cells other than the message

# Kinds with a table of their own: what a person needs to act on them, in columns.
_COLUMNS: dict[str, list[Column]] = {
    "stale_read": [
        _RUN,
        ("reader", _ev("reader"), "left"),
        ("read", _ev("read_version", "v"), "right"),
        ("via", _via, "left"),
        ("writer", _ev("writer"), "left"),
        ("committed", _ev("committed_version", "v"), "right"),
        ("before the read", _before, "right"),
        ("keys", _keys, "left"),
    ],
    "lost_update": [
        _RUN,
        ("base", _ev("base_version", "v"), "right"),
        ("lost", _ev("lost_version", "v"), "right"),
        ("by", _ev("lost_by"), "left"),
        ("overwritten in", _ev("overwriting_version", "v"), "right"),
        ("by", _ev("overwritten_by"), "left"),
        ("keys", _keys, "left"),
    ],
}
_GENERIC: list[Column] = [
    _RUN,
    _SEVERITY,
    ("agents", lambda f: ", ".join(f.agents), "left"),
    ("versions", lambda f: ", ".join(f"v{v}" for v in f.versions), "left"),
    _WHAT,
]


def _as_dict(f: Finding) -> dict[str, Any]:
    return {
        "run_id": f.run_id, "finding_id": f.finding_id, "kind": f.kind, "severity": f.severity,
        "message": f.message, "agents": list(f.agents), "versions": list(f.versions),
        "span_ids": list(f.span_ids), "detected_ns": f.detected_ns, "evidence": f.evidence,
    }  # fmt: skip


def _print_tables(found: list[Finding], runs: int) -> None:
    out = console()
    by_kind: dict[str, list[Finding]] = collections.defaultdict(list)
    for f in found:
        by_kind[f.kind].append(f)
    order = [k for k in DETECTORS if k in by_kind] + sorted(
        k for k in by_kind if k not in DETECTORS
    )
    for i, kind in enumerate(order):
        items = by_kind[kind]
        worst = max((Severity.parse(f.severity) for f in items), default=Severity.INFO).label
        if i:
            out.print()
        out.print(f"[bold]{cell(kind)}[/]  [{_STYLE[worst]}]{len(items)} × {worst}[/]")
        columns = _COLUMNS.get(kind, _GENERIC)
        table = Table(box=None, header_style="bold", pad_edge=False)
        for header, _, justify in columns:
            table.add_column(header, justify=justify)  # type: ignore[arg-type]  # "left" | "right"
        for f in items:
            cells = [cell(f) for _, cell, _ in columns]
            # Severity cells carry their own markup; every other cell is data and escaped.
            table.add_row(
                *(
                    c if col is _SEVERITY else cell(c, TEXT_WIDTH if col is _WHAT else CELL)
                    for c, col in zip(cells, columns, strict=True)
                )
            )
        out.print(table)
    counts = collections.Counter(f.severity for f in found)
    summary = ", ".join(
        f"{counts[s.label]} {s.label}" for s in sorted(Severity, reverse=True) if counts[s.label]
    )
    out.print(f"\n{len(found)} finding(s) in {runs} run(s): {summary}")


@cli.command()
@click.argument("run_id", required=False)
@db_option
@json_option
@click.option(
    "--fail-on",
    "fail_on",
    type=click.Choice([s.label for s in Severity], case_sensitive=False),
    default=None,
    help=f"Exit with status {EXIT_FINDINGS} when any finding is at or above this severity.",
)
@errors_to_exit
def findings(run_id: str | None, db: str, as_json: bool, fail_on: str | None) -> None:
    """Find the coordination bugs in a run (or in every run), store them and list them.

    Stale reads, lost updates, duplicate deliveries, lost events, contract violations,
    open breakers, incomplete sagas, failed compensations, undeclared and unused edges:
    docs/findings.md says what each means. A run without findings prints nothing.
    """
    if not os.path.exists(db):
        fail(f"{db}: no such store (record one with `agentrace demo` or `agentrace import`)")
    # Writable: analysing stores the findings (replacing the run's earlier ones).
    with open_store(db, read_only=False) as store:
        ids = (
            [store.resolve_run(run_id)] if run_id is not None else [r.run_id for r in store.runs()]
        )
        found = [f for rid in ids for f in analyze(store, rid)]
    if as_json:
        print_json([_as_dict(f) for f in found])
    elif found:
        _print_tables(found, len({f.run_id for f in found}))
    if fail_on is not None:
        threshold = Severity.parse(fail_on)
        over = [f for f in found if Severity.parse(f.severity) >= threshold]
        if over:
            fail(f"{len(over)} finding(s) at or above {threshold.label}", EXIT_FINDINGS)
