"""A real sync server process for tests: ``python -m datasync server`` on a free port.

Example::

    server = SyncServer(tmp_path / "data")
    server.start()                        # returns once it answers HTTP
    httpx.get(f"{server.url}/v1/databases/notes",
              headers={"Authorization": f"Bearer {server.token('notes')}"})
    server.kill(); server.start()         # a crash, then a restart (same port and data)
    server.close()

Used through the ``sync_server`` and ``sync_server_factory`` fixtures of
``tests/sync/conftest.py`` (the server's tests and the replica's).
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from datasync.server.auth import make_token

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SyncServer:
    """One server process (see the module docstring).

    ``url`` (``http://127.0.0.1:PORT``, no trailing slash), ``data_dir`` (its
    primaries: ``NAME.dsdb`` each), ``secret`` (random, passed as
    ``DATASYNC_SECRET``), ``args``: extra command-line options (``--max-body``,
    ``--allow-origin``...); ``postgres``: a connection string, to serve the
    primaries from PostgreSQL (``--postgres``) instead of ``data_dir`` (which then
    holds only the log). Two servers given one ``postgres`` and one ``secret``
    serve the same databases. :attr:`log` is what the process wrote to stderr."""

    def __init__(self, data_dir: str | os.PathLike[str], *, args: tuple[str, ...] = (),
                 secret: str | None = None, postgres: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.postgres = postgres
        self.secret = secret or secrets.token_hex(32)
        self.args = tuple(args)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path = self.data_dir.parent / f"server-{self.port}.log"

    def env(self) -> dict[str, str]:
        """The environment the process runs with (also for ``python -m datasync``
        commands a test runs against this server)."""
        return {**os.environ, "DATASYNC_SECRET": self.secret, "PYTHONPATH": str(ROOT)}

    def token(self, database: str, read_only: bool = False, expires: float | None = None) -> str:
        """A token for ``database`` signed with this server's secret."""
        return make_token(self.secret, database, read_only=read_only, expires=expires)

    def headers(self, database: str, read_only: bool = False) -> dict[str, str]:
        """``{"Authorization": "Bearer ..."}`` for ``database``."""
        return {"Authorization": f"Bearer {self.token(database, read_only)}"}

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = 20.0) -> None:
        """Start it (again: same port, data and secret); returns once it answers.
        Raises RuntimeError with its log if it exits or stays silent."""
        if self.running:
            raise RuntimeError("the server is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self._log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "datasync", "server",
                 *(("--postgres", self.postgres) if self.postgres else
                   ("--data", str(self.data_dir))),
                 "--port", str(self.port), *self.args],
                env=self.env(), stdout=log, stderr=log, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self._proc.returncode}):\n{self.log}")
            try:
                httpx.get(self.url + "/", timeout=0.5)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the server did not answer within {timeout} s:\n{self.log}")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, and wait for it to exit; returns its exit status."""
        return self._end(signal.SIGTERM, timeout)

    def kill(self) -> int:
        """SIGKILL (a crash), and wait; returns its exit status."""
        return self._end(signal.SIGKILL, 10.0)

    def _end(self, sig: int, timeout: float) -> int:
        proc = self._proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"the server did not exit within {timeout} s of {sig}:\n"
                               f"{self.log}") from None
        finally:
            self._proc = None

    def close(self) -> None:
        """Kill it if it still runs (the fixtures' clean-up)."""
        if self.running:
            self.kill()
