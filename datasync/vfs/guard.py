"""One persistent database written per transaction, on every datasync connection.

Example::

    await db.execute("ATTACH ? AS o", ("/data/other.dsdb",))
    async with db.transaction():
        await db.execute("INSERT INTO a VALUES (1)")
        await db.execute("INSERT INTO o.b VALUES (1)")   # CrossDatabaseWriteError

SQLite makes a COMMIT that spans databases atomic with a super-journal, which
assumes every database is durable at its own commit. A datasync store is durable
at its next flush instead, and two stores (or a store and an ordinary file) flush
separately, so a crash between the two would keep one half of the transaction.
Rather than ever tear one, the VFS refuses a connection's write lock (RESERVED)
on a second persistent database while it holds one on another: SQLite reports it
as an I/O error, which rolls the whole transaction back, and the Database layer
raises :class:`~datasync.CrossDatabaseWriteError`. Reading any number of attached
databases, or writing one of them per transaction, works as usual.

Connections are told apart by the ``sqlite3*`` SQLite hands each file with
``SQLITE_FCNTL_PDB`` right after opening it.
"""
from __future__ import annotations

import threading

from ..errors import CrossDatabaseWriteError
from . import capi

_TXN_WRITE = 2  # SQLITE_TXN_WRITE


class WriteGuard:
    """Which file each connection holds a write lock on (at most one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # innermost lock of the VFS
        self._writing: dict[int, object] = {}

    def claim(self, conn: int | None, file: object, name: str) -> None:
        """``file`` (named ``name``) is about to take a write lock for ``conn``;
        raises CrossDatabaseWriteError if ``conn`` writes another database now."""
        if conn is None:
            return  # SQLite did not say which connection (never seen in practice)
        with self._lock:
            holder = self._writing.get(conn)
            if holder is None or holder is file:
                self._writing[conn] = file
                return
        raise CrossDatabaseWriteError(
            f"this transaction already writes {getattr(holder, 'name', '?')!r}, so it "
            f"cannot also write {name!r}: datasync stores are made durable by their own "
            "flushes, so a commit spanning two databases could be torn by a crash. The "
            "transaction was rolled back; write each database in its own transaction")

    def check_commit(self, conn: int | None, file: object, name: str) -> None:
        """``file`` is about to be written for ``conn`` under an exclusive lock (a
        commit, or a cache spill): no other persistent database of ``conn`` may be
        in a write transaction, even one opened through another VFS (``ATTACH
        'file:x?vfs=unix'``), whose locks this VFS never sees. Asked of SQLite
        itself: ``sqlite3_txn_state`` of every schema (SQLite 3.39+)."""
        if conn is None:
            return
        lib = capi.sqlite_library()
        if not hasattr(lib, "sqlite3_db_name"):
            return
        index = 0
        while True:
            schema = lib.sqlite3_db_name(conn, index)
            if schema is None:
                return
            index += 1
            if schema == b"temp":
                continue
            filename = lib.sqlite3_db_filename(conn, schema) or b""
            if filename in (b"", name.encode()):
                continue  # in memory, or this very file
            if lib.sqlite3_txn_state(conn, schema) == _TXN_WRITE:
                raise CrossDatabaseWriteError(
                    f"this transaction writes {filename.decode(errors='replace')!r} and "
                    f"{name!r}: their commits cannot be made durable together, so a crash "
                    "could tear it. The transaction was rolled back; write each database "
                    "in its own transaction")

    def release(self, conn: int | None, file: object) -> None:
        """``file`` dropped its write lock (or closed)."""
        if conn is None:
            return
        with self._lock:
            if self._writing.get(conn) is file:
                del self._writing[conn]


#: The guard of the process's datasync VFS.
GUARD = WriteGuard()

_opened = threading.local()


def note_opened(conn: int | None) -> None:
    """SQLite told a file of this thread which connection opened it."""
    _opened.conn = conn


def last_opened() -> int | None:
    """The ``sqlite3*`` of the connection that last opened a database file in this
    thread: right after ``sqlite3.connect()`` returns, that connection's handle."""
    return getattr(_opened, "conn", None)
