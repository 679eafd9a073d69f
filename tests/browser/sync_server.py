"""A real sync server process for browser tests, and a look at its primaries.

Example::

    with SyncServer(tmp_path / "data", allow_origin="http://127.0.0.1:8000") as srv:
        token = srv.token("notes")
        url = srv.url + "/notes"                  # a replica's syncUrl
        srv.stop(); srv.start()                   # down, then back on the same port
        rows = primary_rows(srv.url, "notes", token, "SELECT * FROM notes")

The server is ``python -m datasync server`` of this checkout in a child process.
"""
from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SECRET = "browser-replica-test-secret-" + "0" * 36


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SyncServer:
    """``python -m datasync server`` on a fixed free port, stoppable and restartable."""

    def __init__(self, data: Path, *, allow_origin: str) -> None:
        self.data, self.allow_origin = Path(data), allow_origin
        self.data.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "DATASYNC_SECRET": SECRET,
                    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.proc: subprocess.Popen[str] | None = None
        self.log = self.data / "server.log"

    def _cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "datasync", *args]

    def token(self, database: str) -> str:
        done = subprocess.run(self._cli("token", "--database", database), env=self.env,
                              cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
        return done.stdout.strip()

    def start(self, timeout: float = 20.0) -> None:
        """Start it and return once it listens (its stderr line says so)."""
        log = self.log.open("a")
        self.proc = subprocess.Popen(
            self._cli("server", "--data", str(self.data), "--port", str(self.port),
                      "--allow-origin", self.allow_origin),
            env=self.env, cwd=ROOT, stdout=log, stderr=log, text=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the sync server exited ({self.proc.returncode}): "
                                   f"{self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the sync server did not listen on {self.port} in {timeout} s")

    def stop(self) -> None:
        """SIGTERM, then wait (SIGKILL after 15 s)."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> "SyncServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def primary_rows(url: str, database: str, token: str, sql: str) -> list[tuple[Any, ...]]:
    """``sql``'s rows on the primary as the server holds it now: a whole pull (since 0)
    decoded with the protocol and opened with the stdlib's sqlite3 (no replica code)."""
    import httpx

    from datasync.sqlite_image import as_rollback_image
    from datasync.sync.protocol import API_PREFIX, decode_pull_reply

    resp = httpx.post(f"{url}{API_PREFIX}/{database}/pull", json={"since": 0},
                      headers={"Authorization": f"Bearer {token}"}, timeout=30)
    resp.raise_for_status()
    reply = decode_pull_reply(resp.content)
    image = b"".join(reply.blocks[i] for i in sorted(reply.blocks))[: reply.file_size]
    conn = sqlite3.connect(":memory:")
    try:
        conn.deserialize(as_rollback_image(image))
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def push_one(url: str, database: str, token: str, sql: str) -> int:
    """Apply ``sql`` on the primary as another device would (one push); returns the
    version that holds it."""
    import uuid

    import httpx

    from datasync.sync.protocol import API_PREFIX

    resp = httpx.post(f"{url}{API_PREFIX}/{database}/push",
                      json={"writes": [{"id": uuid.uuid4().hex, "statements": [[sql, []]]}]},
                      headers={"Authorization": f"Bearer {token}"}, timeout=30)
    resp.raise_for_status()
    assert "ok" in resp.json()["results"][0], resp.json()
    return int(resp.json()["version"])
