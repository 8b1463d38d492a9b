"""Hostile trace text, a store full of it, and a scan of the bytes a command wrote."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import tracer as t

# Each of these does something to a terminal when written raw.
OSC52 = "\x1b]52;c;cHduZWQ=\x07"  # writes the clipboard
TITLE = "\x1b]0;pwned\x1b\\"  # retitles the window (OSC, ST-terminated)
CSI = "\x1b[2J\x1b[H\x1b[8m"  # clears the screen, homes the cursor, hides text
DCS = "\x1bP1$qm\x1b\\"  # a device control string
C1 = "\x9b31m\x9d0;x\x9c\x90"  # single-byte CSI, OSC, ST, DCS
BIDI = "\u202eevil\u202c\u2066x\u2069\u200f"  # right-to-left override, isolates, RLM
CONTROL = "a\x08b\rc\x00d\x7f"

EVIL = OSC52 + TITLE + CSI + DCS + C1 + BIDI + CONTROL


def hostile_store(path: Path, *, value_size: int = 0) -> tuple[str, str]:
    """Two recorded runs whose names, agents, status and state are all hostile text; their ids."""
    ids = []
    with t.Store(path) as store:
        for seed in (1, 2):
            ids.append(_record(t.DuckDBSink(store), seed, value_size))
    return ids[0], ids[1]


def _record(sink: t.SpanSink, seed: int, value_size: int) -> str:
    rec = t.Recorder(sink, clock=t.FakeClock(tick_ns=1_000), ids=t.SeededIds(seed))
    root = rec.start_span(
        f"invoke_workflow {EVIL}",
        attributes={"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": f"wf{EVIL}",
                    "agentrace.run.pattern": f"p{EVIL}", "agentrace.run.status": f"s{EVIL}"},
    )  # fmt: skip
    writer, reader = f"writer{EVIL}", f"reader{EVIL}"
    prev: Any = None
    prev_hash = ""
    with rec.start_span(
        f"invoke_agent {writer}", parent=root, attributes={"gen_ai.agent.name": writer}
    ) as step:
        for v in (1, 2, 3):
            doc: dict[str, Any] = {f"k{EVIL}": f"v{v}{EVIL}", "n": v * seed}
            if value_size:
                doc["big"] = "x" * value_size
                doc["many"] = {f"a{i}": i for i in range(value_size // 100)}
            h = t.chain_hash(prev_hash, doc)
            step.commit_state(
                version=v, snapshot=doc, hash=h, parent_snapshot=prev, parent_version=v - 1 or None,
                base_version=v - 1 or None, kind="initial" if v == 1 else "commit", agent=writer,
            )  # fmt: skip
            prev, prev_hash = doc, h
    with rec.start_span(
        f"invoke_agent {reader}", parent=root, attributes={"gen_ai.agent.name": reader}
    ) as step:
        step.record_read(
            version=1,
            keys=[f"k{EVIL}"],
            via="cache",
            head_version=3,
            cache=f"c{EVIL}",
            agent=reader,
        )
        step.set_status("error", f"boom{EVIL}")
    root.end()
    rec.close()
    return root.trace_id


# What may reach a terminal: printable text, newlines and tabs; on a terminal, Rich's own
# colour sequences (SGR: ESC [ digits m) and nothing else starting with ESC.
_SGR = re.compile(rb"\x1b\[[0-9;]*m")
_C0 = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
_UNSAFE_TEXT = re.compile("[\x80-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def unsafe_bytes(data: bytes, *, styled: bool = False) -> list[str]:
    """What in ``data`` a terminal would obey (empty when nothing); ``styled`` allows SGR."""
    if styled:
        data = _SGR.sub(b"", data)
    found = [repr(m.group()) for m in _C0.finditer(data)]
    text = data.decode("utf-8", errors="replace")
    found += [repr(m.group()) for m in _UNSAFE_TEXT.finditer(text)]
    return found
