"""Severities, the detector record, and how a finding is made (stable id, clipped evidence)."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from .._store._models import Finding

if TYPE_CHECKING:
    from ._context import RunContext


class Severity(enum.IntEnum):
    """How bad a finding is; ordered, so ``--fail-on`` can compare.

    ``info`` < ``warning`` < ``error`` < ``critical``. Findings store the lower-case
    name (``Severity.ERROR.label == "error"``).
    """

    INFO = 1
    WARNING = 2
    ERROR = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str | Severity) -> Severity:
        """``"error"``, ``"ERROR"`` or ``Severity.ERROR``; ValueError naming the choices otherwise."""
        if isinstance(value, Severity):
            return value
        try:
            return cls[value.strip().upper()]
        except KeyError:
            choices = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {value!r} (one of {choices})") from None


@dataclass(frozen=True, slots=True)
class Detector:
    """One kind of coordination bug: how to find it in a run, and what it needs.

    ``run`` reads the run through the shared :class:`RunContext` and returns that
    kind's findings, without storing them. ``severity`` is the kind's usual
    severity; docs/findings.md says where a finding of the kind may differ.
    """

    kind: str
    severity: Severity
    summary: str
    needs: str
    run: Callable[[RunContext], list[Finding]]


# Evidence goes into a JSON column and onto a terminal: a value the size of a document
# (a message history, say) is cut, with the cut said, rather than stored whole.
_MAX_VALUE_CHARS = 2_000


def clip(value: Any) -> Any:
    """``value`` as it is when its JSON is short, else ``{"clipped": <the first 2,000 characters>}``."""
    text = orjson.dumps(value, default=str).decode()
    if len(text) <= _MAX_VALUE_CHARS:
        return value
    return {"clipped": text[:_MAX_VALUE_CHARS], "chars": len(text)}


def finding_id(run_id: str, kind: str, identity: Iterable[object]) -> str:
    """A stable id: the same bug in the same run gets the same id on every analysis."""
    h = hashlib.sha256(f"{run_id}\0{kind}".encode())
    for part in identity:
        h.update(b"\0" + str(part).encode())
    return h.hexdigest()[:20]


def unique(items: Iterable[str | None]) -> tuple[str, ...]:
    """Non-empty items, first occurrence kept, in order."""
    seen: dict[str, None] = {}
    for item in items:
        if item:
            seen.setdefault(item, None)
    return tuple(seen)


def make_finding(
    ctx: RunContext,
    kind: str,
    severity: Severity,
    message: str,
    *,
    identity: Iterable[object],
    at_ns: int,
    agents: Iterable[str | None] = (),
    versions: Iterable[int] = (),
    span_ids: Iterable[str | None] = (),
    evidence: dict[str, Any] | None = None,
) -> Finding:
    """A :class:`Finding` of ``ctx``'s run; ``at_ns`` (stored as ``detected_ns``) is the time in
    the run at which the bug became observable, so findings place on the run's timeline."""
    return Finding(
        run_id=ctx.run_id,
        finding_id=finding_id(ctx.run_id, kind, identity),
        kind=kind,
        severity=severity.label,
        message=message,
        agents=unique(agents),
        versions=tuple(dict.fromkeys(int(v) for v in versions)),
        span_ids=unique(span_ids),
        evidence=evidence or {},
        detected_ns=int(at_ns),
    )


def fmt_ns(ns: int) -> str:
    """A duration for a one-line message: ``850 ns``, ``12.5 µs``, ``40.0 ms``, ``1.25 s``."""
    if ns < 1_000:
        return f"{ns} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.1f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.1f} ms"
    return f"{ns / 1_000_000_000:.2f} s"


def fmt_list(items: Iterable[object], limit: int = 4) -> str:
    """``a, b, c`` or ``a, b, c, d and 3 more``."""
    seq = [str(i) for i in items]
    if len(seq) <= limit:
        return ", ".join(seq)
    return f"{', '.join(seq[:limit])} and {len(seq) - limit} more"
