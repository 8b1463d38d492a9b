"""The scenario registry: named, seeded, repeatable recordings of the bundled workflows.

A :class:`Scenario` is a name, a description, the run pattern it shows, and an
``async run(recorder, time, seed) -> run ids`` that records its runs through
``recorder`` on virtual ``time`` (backoffs, timeouts and cooldowns take no real
time) and flushes the recorder after each run (one OTLP request per run). A
module adds its scenarios with :func:`register` when imported; the package
imports its own modules and every ``engine.choreography._choreographer*`` module on first use.

Recording a scenario (:func:`record`) gives it a recorder of its own: a
:class:`~tracer.FakeClock` from :data:`START_NS` moving :data:`TICK_NS` per
reading, and :class:`~tracer.SeededIds` seeded from the scenario's name and the
seed. The same name and seed therefore give the same bytes, whether the
scenario is recorded alone or with others, into a file or into a store; that is
what ``sample_traces/<name>.jsonl`` holds (:func:`regenerate` rewrites them, a
test compares them byte for byte).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tracer import (
    FakeClock,
    InMemorySink,
    OtlpJsonLinesSink,
    Recorder,
    SeededIds,
    SpanSink,
    encode_json,
)

from ..core._errors import ScenarioError
from ..core._time import VirtualTime, run_blocking

DEFAULT_SEED = 7
START_NS = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
TICK_NS = 1_000  # each clock reading moves fake time by 1 µs: every timestamp distinct
SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_traces"

RunFn = Callable[[Recorder, VirtualTime, int], Awaitable[list[str]]]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A bundled scenario (see the module docstring)."""

    name: str
    description: str
    run: RunFn
    pattern: str = "orchestration"


SCENARIOS: dict[str, Scenario] = {}
_lock = threading.Lock()


def register(scenario: Scenario) -> Scenario:
    """Add ``scenario`` to :data:`SCENARIOS`; a second scenario under the same name is an error."""
    with _lock:
        prior = SCENARIOS.get(scenario.name)
        if prior is not None and prior.run is not scenario.run:
            raise ScenarioError(f"two scenarios are named {scenario.name!r}")
        SCENARIOS[scenario.name] = scenario
    return scenario


def get(name: str) -> Scenario:
    """The scenario ``name``, or :class:`ScenarioError` listing the known ones."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ScenarioError(
            f"no scenario {name!r} (have: {', '.join(sorted(SCENARIOS))})"
        ) from None


def names(which: str | Iterable[str] = "all") -> list[str]:
    """Scenario names: ``"all"`` (every one, sorted), one name, or several; unknown ones are refused."""
    if which == "all":
        return sorted(SCENARIOS)
    wanted = [which] if isinstance(which, str) else list(which)
    for n in wanted:
        get(n)
    return wanted


def scenario_seed(name: str, seed: int) -> int:
    """The id seed of scenario ``name`` under ``seed`` (distinct scenarios never share run ids)."""
    return int.from_bytes(hashlib.sha256(f"{name}/{seed}".encode()).digest()[:8], "big")


def scenario_recorder(
    name: str, sink: SpanSink, seed: int = DEFAULT_SEED
) -> tuple[Recorder, VirtualTime]:
    """The recorder and virtual time a scenario records with (see the module docstring)."""
    clock = FakeClock(START_NS, TICK_NS)
    rec = Recorder(sink, clock=clock, ids=SeededIds(scenario_seed(name, seed)))
    return rec, VirtualTime(clock)


async def arecord(
    name: str, sink: SpanSink, *, seed: int = DEFAULT_SEED, close: bool = False
) -> list[str]:
    """Record scenario ``name`` into ``sink``; returns its run ids. ``close`` closes the sink after."""
    scenario = get(name)
    rec, time = scenario_recorder(name, sink, seed)
    try:
        run_ids = await scenario.run(rec, time, seed)
    finally:
        if close:
            rec.close()
        else:
            rec.flush()
    return run_ids


def record(
    which: str | Iterable[str], sink: SpanSink, *, seed: int = DEFAULT_SEED
) -> dict[str, list[str]]:
    """Record scenarios (``"all"``, a name, or names) into ``sink``; returns run ids per scenario.

    Starts its own event loop, in a worker thread when the caller already runs one.
    """

    async def go() -> dict[str, list[str]]:
        return {n: await arecord(n, sink, seed=seed) for n in names(which)}

    return run_blocking(go)


def render(name: str, *, seed: int = DEFAULT_SEED) -> bytes:
    """Scenario ``name`` as OTLP JSON lines (what ``sample_traces/<name>.jsonl`` holds)."""
    sink = InMemorySink()
    run_blocking(lambda: arecord(name, sink, seed=seed))
    return b"".join(encode_json(req) + b"\n" for req in sink.requests)


def sample_path(name: str, directory: Path | str = SAMPLE_DIR) -> Path:
    return Path(directory) / f"{name}.jsonl"


def regenerate(
    which: str | Iterable[str] = "all",
    *,
    directory: Path | str = SAMPLE_DIR,
    seed: int = DEFAULT_SEED,
) -> list[Path]:
    """Rewrite ``<directory>/<name>.jsonl`` for each scenario; returns the paths written."""
    out = []
    for n in names(which):
        path = sample_path(n, directory)
        tmp = path.with_name(f".{path.name}.tmp")

        def write(name: str = n, target: Path = tmp) -> Awaitable[list[str]]:
            return arecord(name, OtlpJsonLinesSink(target), seed=seed, close=True)

        run_blocking(write)
        tmp.replace(path)  # a failed run leaves the old file whole
        out.append(path)
    return out
