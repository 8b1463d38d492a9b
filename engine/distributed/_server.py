"""A real ``redis-server`` started from its binary: for tests, benchmarks and trying workers by hand.

:class:`RedisServer` runs one server bound to 127.0.0.1 on a free port, in its own
directory, and stops it (``stop``, or leaving its ``with`` block). By default
nothing is persisted (``--save ""``, ``--appendonly no``), so no earlier server's
data is loaded. With ``durable=True`` it writes an append-only file fsynced on
every write (``appendfsync always``), so :meth:`restart` (and :meth:`kill` then
:meth:`start`) brings back everything a client saw acknowledged: that is what the
"Redis restarted mid-run" fault needs.

The binary is ``$AGENTRACE_REDIS_SERVER``, else ``redis-server`` on ``PATH``, else
Debian's ``/usr/bin/redis-server``; :func:`find_redis_server` returns ``None``
when there is none (``scripts/redis.sh install`` installs one).

Thread rules: one thread drives a server; the methods block (at most ``timeout``
seconds) and are not for an event loop's thread unless a short block is fine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from ..core._errors import EngineError

_CANDIDATES = ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server")


class RedisServerError(EngineError):
    """A redis-server that could not be found, or did not start or stop."""


def find_redis_server() -> str | None:
    """The redis-server binary to use, or ``None`` when there is none."""
    env = os.environ.get("AGENTRACE_REDIS_SERVER")
    if env:
        return env if os.access(env, os.X_OK) else None
    found = shutil.which("redis-server")
    if found:
        return found
    return next((p for p in _CANDIDATES if os.access(p, os.X_OK)), None)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process on 127.0.0.1:``port`` with its data in ``dir``."""

    def __init__(
        self,
        *,
        binary: str | None = None,
        port: int | None = None,
        dir: str | Path | None = None,
        durable: bool = False,
        timeout: float = 10.0,
    ) -> None:
        found = binary or find_redis_server()
        if found is None:
            raise RedisServerError(
                "no redis-server binary (install one: scripts/redis.sh install, "
                "or set AGENTRACE_REDIS_SERVER)"
            )
        self.binary = found
        self.port = port or free_port()
        self._own_dir = dir is None
        self.dir = (
            Path(dir) if dir is not None else Path(tempfile.mkdtemp(prefix="agentrace-redis-"))
        )
        self.durable = durable
        self.timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _args(self) -> list[str]:
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.dir),
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.dir / "redis.log"),
            # Enough clients for a benchmark's workers plus their reconnects.
            "--maxclients", "1000",
        ]  # fmt: skip
        if self.durable:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        return args

    def start(self) -> RedisServer:
        """Start the server and return once it answers PING (RedisServerError otherwise)."""
        if self.running:
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            self._args(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # Nothing to await across processes: poll PING until the deadline.
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self._proc = None
                raise RedisServerError(
                    f"redis-server exited at start: {err.strip() or self.log_tail()}"
                )
            if _ping(self.port):
                return self
            time.sleep(0.02)
        self.kill()
        raise RedisServerError(
            f"redis-server did not answer on port {self.port} within {self.timeout} s"
        )

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``). Its directory stays."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(self.timeout)
        if proc.stderr:
            proc.stderr.close()

    def kill(self) -> None:
        """SIGKILL the server: no shutdown save, as a crash would leave it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(self.timeout)
        if proc.stderr:
            proc.stderr.close()

    def restart(self, *, crash: bool = False) -> None:
        """Stop (or with ``crash`` kill -9) and start again on the same port and directory."""
        if crash:
            self.kill()
        else:
            self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory when this object made it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.dir / "redis.log").read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
