"""The findings pane: the run's findings; Enter (or a click) jumps the other panes to one."""

from __future__ import annotations

from collections.abc import Sequence

from tracer import Finding

from .._text import clip
from ..messages import FindingSelected
from ._lines import Line, LineView

_ORDER = {"critical": 0, "error": 1, "warning": 2, "info": 3}
_SEVS = set(_ORDER)


class FindingsList(LineView):
    """Two lines per finding: severity, kind, versions and agents; then the message."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.findings: tuple[Finding, ...] = ()
        self.selected: str | None = None

    def set_findings(self, findings: Sequence[Finding]) -> None:
        self.findings = tuple(
            sorted(findings, key=lambda f: (_ORDER.get(f.severity, 5), f.finding_id))
        )
        self.border_title = f"4 Findings ({len(self.findings)})"
        self.set_builder(self._build)

    def mark_selected(self, finding_id: str | None) -> None:
        self.selected = finding_id
        self.set_builder(self._build)

    def _build(self, width: int) -> list[Line]:
        if not self.findings:
            return [Line.of((" no findings for this run", "dim"))]
        out = []
        for f in self.findings:
            sev = f"sev.{f.severity}" if f.severity in _SEVS else "warn"
            versions = ",".join(f"v{v}" for v in f.versions[:4]) + (
                "…" if len(f.versions) > 4 else ""
            )
            agents = ", ".join(f.agents[:3]) + ("…" if len(f.agents) > 3 else "")
            pointer = "▶ " if f.finding_id == self.selected else "  "
            head = [(pointer, "version"), (f"{f.severity:<8}", sev), (clip(f.kind, 22), "title"),
                    (f"  {versions}" if versions else "", "version")]  # fmt: skip
            used = sum(len(t) for t, _ in head)
            if agents:
                head.append((f"  {clip(agents, max(8, width - used - 3))}", "agent"))
            out.append(Line(tuple(head), key=f.finding_id))
            out.append(
                Line.of(
                    ("    ", "dim"), (clip(f.message, max(10, width - 5)), "dim"), key=f.finding_id
                )
            )
        return out

    def on_line_view_activated(self, message: LineView.Activated) -> None:
        message.stop()
        for f in self.findings:
            if f.finding_id == message.key:
                self.post_message(FindingSelected(f))
                return
