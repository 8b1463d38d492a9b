"""The test server itself: bound to 127.0.0.1 on its port, nothing persisted, stopped for good."""

from __future__ import annotations

import socket

import redis

from engine.distributed._server import RedisServer

from .conftest import require_redis_server


def test_fixture_server_answers_and_persists_nothing(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping()
        config = client.config_get("*")
        assert config["bind"] == "127.0.0.1"
        assert config["save"] == ""
        assert config["appendonly"] == "no"
        assert str(redis_url).endswith(f":{config['port']}")
    finally:
        client.close()


def test_stop_frees_the_port_and_durable_restart_keeps_data() -> None:
    binary = require_redis_server()
    with RedisServer(binary=binary, durable=True) as server:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        client.close()
        server.restart(crash=True)  # kill -9: only the fsynced append-only file survives
        client = redis.Redis.from_url(server.url)
        assert client.get("k") == b"v"
        client.close()
        port, data = server.port, server.dir
    assert not data.exists()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # nobody listens there any more
