"""What tests that need a real service share: skipping or failing when it is missing, and an
``agentrace serve`` process to send spans to."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest

AGENTRACE = Path(sys.executable).parent / "agentrace"
WAIT = 60  # seconds for serve to start or stop: a bound against hangs, not a timing


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def missing(reason: str, what: str) -> NoReturn:
    """Skip a test whose service is not installed; under CI fail it, since CI installs it."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}: CI must run the {what}", pytrace=False)
    pytest.skip(reason)


def mark_folder(items: list[pytest.Item], folder: str, marker: pytest.MarkDecorator) -> None:
    """Give every test collected under ``folder`` the ``marker``."""
    for item in items:
        if str(item.path).startswith(folder):
            item.add_marker(marker)


@contextmanager
def agentrace_serve(db: Path, err: Path) -> Iterator[str]:
    """``agentrace serve`` on a free port writing to ``db``; yields its OTLP/HTTP endpoint.

    On leaving, serve is stopped with SIGTERM (it then finishes its writes) and must exit 0;
    its stderr is in ``err``.
    """
    with open(err, "w") as err_file:
        serve = subprocess.Popen(
            [str(AGENTRACE), "serve", "--db", str(db), "--port", "0"],
            stdout=subprocess.PIPE, stderr=err_file, text=True,
        )  # fmt: skip
    try:
        assert serve.stdout is not None
        line = serve.stdout.readline()  # printed once listening, or EOF if serve exited
        assert line.startswith("listening on "), err.read_text()
        yield line.split()[2]
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(WAIT)
        if serve.stdout is not None:
            serve.stdout.close()
    assert serve.returncode == 0, err.read_text()
