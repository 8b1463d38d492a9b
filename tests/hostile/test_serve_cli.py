"""``agentrace serve`` and ``tui --listen`` as a user runs them: hosts, tokens, TLS, a flood of clients."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

import tracer as t
from tui.cli import cli

from ..import_.helpers import ThreadedReceiver, post
from .test_receiver_bounds import BODY, JSON

SERVE = [sys.executable, "-c", "from tui.cli import main; main()", "serve"]


def test_an_empty_host_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    db = tmp_path / "a.duckdb"
    for args in (["serve", "--host", ""], ["tui", "--listen", "4318", "--host", " "]):
        r = CliRunner().invoke(cli, [*args, "--db", str(db)])
        assert r.exit_code == 2, r.output
        (line,) = r.stderr.splitlines()
        assert line.startswith('agentrace: --host "" would listen on every interface'), line
    assert not db.exists()


def test_tls_options_go_together_and_bad_files_are_one_line(tmp_path: Path) -> None:
    db = str(tmp_path / "a.duckdb")
    r = CliRunner().invoke(cli, ["serve", "--tls-cert", "c.pem", "--db", db, "--port", "0"])
    assert r.exit_code == 2 and "--tls-cert and --tls-key go together" in r.stderr
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    r = CliRunner().invoke(
        cli, ["serve", "--tls-cert", str(junk), "--tls-key", str(junk), "--db", db, "--port", "0"]
    )
    assert r.exit_code == 1
    (line,) = r.stderr.splitlines()
    assert line.startswith(f"agentrace: {junk} / {junk}: not a PEM certificate and its private key")


def test_off_loopback_warnings_and_a_token_on_the_command_line(tmp_path: Path) -> None:
    # 192.0.2.1 is TEST-NET-1: never this machine's, so nothing is bound; the warnings come first.
    db = str(tmp_path / "a.duckdb")
    r = CliRunner().invoke(
        cli, ["serve", "--host", "192.0.2.1", "--port", "0", "--token", "tok-on-argv", "--db", db]
    )
    assert r.exit_code == 1
    assert "--token on the command line is visible to other users (ps)" in r.stderr
    assert "without TLS: spans and the token cross the network in clear text" in r.stderr
    assert "cannot listen on 192.0.2.1:0" in r.stderr
    assert "tok-on-argv" not in r.stderr + r.stdout
    r = CliRunner(env={"AGENTRACE_TOKEN": "tok-in-env"}).invoke(
        cli, ["serve", "--host", "192.0.2.1", "--port", "0", "--db", db]
    )
    assert "visible to other users" not in r.stderr and "without a token" not in r.stderr
    r = CliRunner().invoke(cli, ["serve", "--host", "192.0.2.1", "--port", "0", "--db", db])
    assert "without a token: anyone who can reach it can write to" in r.stderr


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_tls(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    store = t.Store(tmp_path / "a.duckdb")
    from tracer._receiver import tls_context

    with ThreadedReceiver(store, ssl_context=tls_context(str(cert), str(key)), token="tk") as rx:
        assert rx.url.startswith("https://127.0.0.1:")
        trust = ssl.create_default_context(cafile=str(cert))
        req = urllib.request.Request(
            rx.url, data=BODY, headers={**JSON, "Authorization": "Bearer tk"}, method="POST"
        )
        with urllib.request.urlopen(req, timeout=30, context=trust) as resp:
            assert resp.status == 200
        # Plain HTTP to the TLS port is not answered as HTTP, and the server stays up.
        with socket.create_connection(("127.0.0.1", rx.receiver.port), timeout=30) as s:
            s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            assert not s.recv(65536).startswith(b"HTTP/1.1 200")
        with urllib.request.urlopen(req, timeout=30, context=trust) as resp:
            assert resp.status == 200
    assert store.sql("SELECT count(*) FROM spans").fetchall()[0][0] == 1
    store.close()


def _limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


def test_out_of_file_descriptors_the_server_logs_a_few_lines_and_stays_up(tmp_path: Path) -> None:
    env = {**os.environ, "AGENTRACE_TOKEN": "tok-in-env"}
    started = time.monotonic()
    proc = subprocess.Popen(
        [*SERVE, "--port", "0", "--max-connections", "1000", "--db", str(tmp_path / "a.duckdb")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=_limit_files,
    )  # fmt: skip
    clients: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("listening on http://127.0.0.1:"), line
        url = line.split()[-1]
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        # 200 connections at a server allowed 64 descriptors: accept() runs out of them.
        for _ in range(200):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=30))
        for c in clients:
            c.close()
        clients.clear()
        status, _, _ = post(url, BODY, {**JSON, "Authorization": "bearer tok-in-env"})
        assert status == 200
    finally:
        for c in clients:
            c.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    # The server's log filter lets five lines of a kind through per ten-second window; it
    # ran this long, so it had at most this many windows.
    windows = int((time.monotonic() - started) // 10) + 1
    text = err.decode()
    assert proc.returncode == 0, text
    assert "Traceback" not in text and "tok-in-env" not in text + out.decode()
    accept = [ln for ln in text.splitlines() if "out of system resource" in ln]
    held = sum(int(ln.rsplit("(", 1)[1].split()[0]) for ln in accept if "more like this" in ln)
    # Thousands of failed accepts: the first window's five lines, at most five in each
    # later one, and from the second window on, the ones not shown counted.
    assert 5 <= len(accept) <= 5 * windows, (windows, text[-2000:])
    assert (held > 0) == (len(accept) > 5), text[-2000:]
    # asyncio's own retries fail too ("Exception in callback ..."): a few lines as well.
    assert len(text.splitlines()) <= 60, text[-2000:]
    assert "1 request(s)" in text


def test_grpc_over_tls_with_a_lowercase_bearer(tmp_path: Path) -> None:
    import asyncio

    import grpc

    cert, key = _self_signed(tmp_path)
    store = t.Store(tmp_path / "g.duckdb")
    body = t.decode_json(BODY).SerializeToString()
    method = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

    async def main() -> None:
        rx = await t.start_receiver(store, "127.0.0.1", 0)
        server = await t.start_grpc_receiver(
            rx.writer, "127.0.0.1", 0, token="tok", tls=(key.read_bytes(), cert.read_bytes())
        )
        try:
            creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
            async with grpc.aio.secure_channel(f"127.0.0.1:{server.port}", creds) as channel:
                export = channel.unary_unary(method)
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await export(body, metadata=(("authorization", "bearer wrong"),))
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
                await export(body, metadata=(("authorization", "bearer tok"),))
        finally:
            await server.close()
            await rx.close()

    asyncio.run(main())
    assert store.sql("SELECT count(*) FROM spans").fetchall()[0][0] == 1
    store.close()
