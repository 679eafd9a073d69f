"""A throw-away PostgreSQL cluster for tests and benchmarks: initdb, pg_ctl, a free port.

Example::

    cluster = PgCluster(tmp_path / "pg")
    cluster.start()                       # initdb (first time), then pg_ctl start
    conn = psycopg.connect(cluster.dsn)   # postgresql://datasync@127.0.0.1:PORT/postgres
    cluster.restart()                     # immediate stop (a crash), then start again
    cluster.stop()

The binaries are Debian's (``postgresql-15``, installed by ``.ci/run`` and ``make
install``): :func:`find_bin_dir` looks in ``$DATASYNC_PG_BIN``, then ``PATH``, then
``/usr/lib/postgresql/*/bin``. PostgreSQL refuses to run as root, so as root the
cluster runs as the ``postgres`` user (``runuser``), its directory owned by it.
It listens on 127.0.0.1 only, with ``trust`` authentication, and on a Unix socket
in its own directory; the superuser is ``datasync``. Nothing outside the cluster's
directory is touched, so tests running in parallel each start their own.
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

#: What a test that needs PostgreSQL says when it is not installed.
MISSING = ("PostgreSQL is not installed (initdb and pg_ctl not found): run `make install` "
           "(it installs Debian's postgresql-15), or set DATASYNC_PG_BIN")


def find_bin_dir() -> str | None:
    """The directory of ``initdb`` and ``pg_ctl``, or None if PostgreSQL is absent."""
    configured = os.environ.get("DATASYNC_PG_BIN")
    if configured:
        return configured
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return os.path.dirname(os.path.realpath(on_path))
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return os.path.dirname(found[-1]) if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """One cluster in ``directory`` (see the module docstring); ``dsn`` once made."""

    USER = "datasync"

    def __init__(self, directory: str | os.PathLike[str], *, port: int | None = None) -> None:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise RuntimeError(MISSING)
        self.bin_dir = bin_dir
        self.directory = Path(directory)
        self.data = self.directory / "data"
        self.port = port or free_port()
        self.dsn = f"postgresql://{self.USER}@127.0.0.1:{self.port}/postgres"
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        command = [os.path.join(self.bin_dir, args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n"
                               f"{done.stdout}\n{done.stderr}\n{self.log}")

    @property
    def log(self) -> str:
        try:
            return (self.directory / "server.log").read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def start(self) -> None:
        """Create the cluster the first time, then start it; returns once it accepts
        connections. Raises RuntimeError with the server's log if it cannot."""
        if not (self.data / "PG_VERSION").exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            if self._as_postgres:
                shutil.chown(self.directory, "postgres", "postgres")
            self.directory.chmod(0o700)
            self._run("initdb", "-D", str(self.data), "-U", self.USER, "--auth=trust",
                      "--encoding=UTF8", "--no-locale", "--no-sync")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.directory / "server.log"),
                  "-w", "-t", "60", "-o",
                  f"-p {self.port} -c listen_addresses=127.0.0.1 "
                  f"-c unix_socket_directories={self.directory} -c max_connections=200 "
                  "-c shared_buffers=32MB", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop it: ``fast`` (clean) or ``immediate`` (as a crash: recovery at the
        next start). Nothing if it is not running."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "immediate") -> None:
        """Stop (by default as a crash) and start again on the same port."""
        self.stop(mode)
        self.start()

    def destroy(self) -> None:
        """Stop it and delete its directory."""
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[PgCluster]:
    """A started cluster in a new directory under the system's temporary directory
    (which the ``postgres`` user can reach), destroyed at the end."""
    cluster = PgCluster(tempfile.mkdtemp(prefix="datasync-pg-"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


def wait_until_accepting(dsn: str, timeout: float = 30.0) -> None:
    """Wait until a connection to ``dsn`` succeeds (after a restart)."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(dsn, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
