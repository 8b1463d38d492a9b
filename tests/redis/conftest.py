"""A real redis-server for the tests in this folder, started from its binary.

The session fixture :func:`redis_server` starts one server on 127.0.0.1 on a free
port (no persistence) and stops it at the end of the session; :func:`redis_url`
hands each test that server emptied (FLUSHALL). Tests that restart or kill Redis
start their own :class:`RedisServer`.

Without a redis-server binary every test here is skipped with the reason, so the
rest of the suite still runs; under CI (``CI=true``) a missing binary fails them
instead: CI installs one (``.ci/run`` calls ``scripts/redis.sh install``) and must
run these tests, not skip them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from engine.distributed._server import RedisServer, find_redis_server

from ..services import mark_folder, missing

NO_SERVER = "no redis-server binary (scripts/redis.sh install installs Debian's)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_folder(items, os.path.dirname(__file__), pytest.mark.redis)


def require_redis_server() -> str:
    """The binary's path; skips the test without one (fails it under CI)."""
    binary = find_redis_server()
    if binary is None:
        missing(NO_SERVER, "Redis tests")
    return binary


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    binary = require_redis_server()
    with RedisServer(binary=binary) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    if not redis_server.running:  # a test may have stopped it; give the next one a live server
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    yield redis_server.url
