"""A real RabbitMQ broker for the tests in this folder, started by ``scripts/rabbitmq.sh``.

The session fixture :func:`rabbitmq_url` starts one node on free ports in a temp dir and
stops it at the end of the session. Without a RabbitMQ install every test here is skipped
with the reason; under CI (``CI=true``) it fails instead: CI installs one (``.ci/run``
calls ``scripts/rabbitmq.sh install``) and must run these tests, not skip them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "rabbitmq.sh"
NO_BROKER = "no rabbitmq-server (scripts/rabbitmq.sh install installs Debian's)"
NOT_INSTALLED = 4  # scripts/rabbitmq.sh start's exit status when nothing is installed


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.broker)


@pytest.fixture(scope="session")
def rabbitmq_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``amqp://`` URL of a broker of our own for this session."""
    home = tmp_path_factory.mktemp("rabbitmq")
    started = subprocess.run(
        ["bash", str(SCRIPT), "start", str(home)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if started.returncode == NOT_INSTALLED:
        if _in_ci():
            pytest.fail(f"CI=true and {NO_BROKER}: CI must run the broker tests", pytrace=False)
        pytest.skip(NO_BROKER)
    if started.returncode != 0:
        subprocess.run(["bash", str(SCRIPT), "stop", str(home)], timeout=60, check=False)
        pytest.fail(f"scripts/rabbitmq.sh start failed: {started.stderr.strip()}", pytrace=False)
    url = started.stdout.split()[0]
    try:
        yield url
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(home)], timeout=60, check=False)
