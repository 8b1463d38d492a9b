"""The recorded order of a run's reads and commits, enforced on its replay.

Parallel branches of a workflow read the state and commit to it in an order the
event loop chose while the run was recorded. A replay answers each step from the
recording, in no time, so left alone its branches would interleave otherwise: a
branch that read version 1 and committed after its sibling would now read the
sibling's version, diverge, and lose the very lost update the recording shows.

The recording holds the order: each attempt's span starts right before it takes
its view of the state (its read), and each version's ``committed_ns`` is when it
was committed, both on one clock that moves at every reading. :class:`RecordedOrder`
sorts these events and, as the step runner's gate, holds each read and commit of
the replay until every earlier event has happened. A replay that takes another
path (a patched agent, a fork) meets events that never come: when nothing moves
for ``PATIENCE`` turns of the event loop, the gate lets the waiting step go, and
the comparison reports whatever differs.

Thread rules: one gate per replay, on the replay's event loop.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ._recording import Recording

if TYPE_CHECKING:
    from ._agents import ReplaySession

PATIENCE = 1_000  # turns of the event loop without any event happening: nothing will come


def concurrent(recording: Recording) -> bool:
    """Whether any two of the recording's attempts overlapped in time (parallel branches):
    without, steps run one after another in replay as they did, and need no gate."""
    latest = None
    for start, end in sorted((a.start_ns, a.end_ns) for s in recording.steps for a in s.attempts):
        if latest is not None and start < latest:
            return True
        latest = end if latest is None else max(latest, end)
    return False


class RecordedOrder:
    """A gate (``engine.core._step.Gate``) that lets reads and commits happen in the recorded order."""

    def __init__(
        self, session: ReplaySession, recording: Recording, until_ns: int | None = None
    ) -> None:
        self.session = session
        events: list[tuple[int, str, int, int]] = []
        for s in recording.steps:
            for a in s.attempts:
                if a.outcome == "breaker_open":
                    continue  # refused before it read anything
                events.append((a.start_ns, "read", s.step, a.attempt))
                if a.version is not None:
                    at = recording.version(a.version).committed_ns
                    events.append((at, "commit", s.step, a.attempt))
        events.sort()
        if until_ns is not None:
            events = [e for e in events if e[0] <= until_ns]
        self.index = {(kind, step, attempt): i for i, (_, kind, step, attempt) in enumerate(events)}
        self.done: set[int] = set()
        self.next = 0  # every event before it has happened (or was given up on)

    async def before_read(self, agent: str, step: int, attempt: int) -> None:
        await self._turn("read", agent, step, attempt)

    async def before_commit(self, agent: str, step: int, attempt: int) -> None:
        await self._turn("commit", agent, step, attempt)

    async def _turn(self, kind: str, agent: str, step: int, attempt: int) -> None:
        rs = self.session.match(agent, step)
        i = self.index.get((kind, rs.step, attempt)) if rs is not None else None
        if i is None:
            return  # not in the recording: nothing to keep it in order with
        idle, seen = 0, self.next
        while self.next < i:
            if self.next != seen:
                idle, seen = 0, self.next
            elif idle >= PATIENCE:
                self.next = i  # the events before it will not come: stop waiting for them
                break
            idle += 1
            await asyncio.sleep(0)
        self.done.add(i)
        while self.next in self.done:
            self.next += 1
