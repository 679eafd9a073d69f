"""A backend that keeps the store in one ordinary SQLite file (native default).

Example::

    db = await datasync.open("app.dsdb")          # uses SqliteFileBackend natively

The store file is a SQLite database (``application_id`` marks it as a datasync
store) with a ``meta`` table and a ``blocks`` table keyed ``(file, idx)``. Each
flush is one SQLite transaction in WAL mode with ``synchronous=FULL``, so it is
atomic and durable once ``write`` returns. The file is held with an exclusive
lock while open, so a second process cannot write the same store at once.
"""
from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any

from ..errors import (
    BackendError,
    NotADatasyncStoreError,
    StorageFullError,
    VersionNotRetainedError,
    StoreBusyError,
    StoreCreateError,
    StoreNotFoundError,
)
from ..format import MAIN, Flush, Meta, Record
from .contract import KeepsHistory, SyncReads, check_writer
from .history import Superseded, records_as_of, write_history
from .serialized import serialized

#: ``PRAGMA application_id`` of a datasync store file ("DSyn").
APPLICATION_ID = 0x4453796E

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks(
    file TEXT NOT NULL,
    idx INTEGER NOT NULL,
    version INTEGER NOT NULL,
    checksum INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (file, idx)
);
CREATE INDEX IF NOT EXISTS blocks_by_version ON blocks(file, version);
CREATE TABLE IF NOT EXISTS history(
    file TEXT NOT NULL,
    idx INTEGER NOT NULL,
    version INTEGER NOT NULL,
    superseded INTEGER NOT NULL,
    checksum INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (file, idx, version)
);
CREATE TABLE IF NOT EXISTS versions(version INTEGER PRIMARY KEY, meta TEXT NOT NULL);
"""


class StoreConnection(sqlite3.Connection):
    """The backend's own connection to its store file (the VFS's exit hook leaves
    these open until the stores are flushed and closed)."""

    backend_own = True


def _page_size_for(block_size: int) -> int:
    """Store pages that hold several block records each, without overflow pages."""
    return min(65536, max(8192, block_size * 4))


class SqliteFileBackend(SyncReads, KeepsHistory):
    """Blocks in a SQLite file on the local file system."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 0.5,
        page_size: int | None = None,
        wal_autocheckpoint: int = 1000,
    ) -> None:
        # The real path: two spellings of one file (a symlink, ../) are one store.
        self.path = os.path.realpath(os.fspath(path))
        self.busy_timeout = busy_timeout
        self.page_size = page_size
        self.wal_autocheckpoint = wal_autocheckpoint
        self._conn: sqlite3.Connection | None = None
        self._io = threading.RLock()
        self._history_cleared = False  # retain 0: old history dropped once

    @property
    def key(self) -> str:
        return self.path

    @property
    def location(self) -> str:
        return f"store {self.path!r}"

    # -- opening -----------------------------------------------------------------
    async def open(self, initial: Meta, *, create: bool = True) -> Meta:
        exists = os.path.exists(self.path) and os.path.getsize(self.path) > 0
        if not exists and not create:
            raise StoreNotFoundError(f"{self.location} does not exist (create=False)")
        if not exists:
            parent = os.path.dirname(self.path)
            if not os.path.isdir(parent):
                raise StoreCreateError(
                    f"cannot create {self.location}: the directory {parent!r} does not "
                    "exist; create it first or choose another path"
                )
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None,
                check_same_thread=False, factory=StoreConnection,
            )
        except sqlite3.Error as exc:
            raise StoreCreateError(f"cannot open {self.location}: {exc}") from exc
        try:
            meta = self._open_conn(conn, initial, exists)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return meta

    def _open_conn(self, conn: sqlite3.Connection, initial: Meta, exists: bool) -> Meta:
        try:
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            if exists:
                app_id = conn.execute("PRAGMA application_id").fetchone()[0]
                if app_id != APPLICATION_ID:
                    raise NotADatasyncStoreError(
                        f"{self.path!r} is a SQLite database but not a datasync store; "
                        "to bring it in, run: python -m datasync import "
                        f"{self.path} NEW_STORE"
                    )
            else:
                conn.execute(f"PRAGMA page_size={self.page_size or _page_size_for(initial.block_size)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA wal_autocheckpoint={int(self.wal_autocheckpoint)}")
            conn.execute("BEGIN IMMEDIATE")  # takes the exclusive lock now
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreBusyError(
                    f"{self.location} is open in another process; close it there first"
                ) from exc
            raise StoreCreateError(f"cannot open {self.location}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise NotADatasyncStoreError(
                f"{self.path!r} is not a datasync store ({exc})"
            ) from exc
        try:
            if not exists:
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('meta', ?)", (initial.to_json(),)
                )
                meta = initial
            else:
                row = conn.execute("SELECT value FROM meta WHERE key='meta'").fetchone()
                if row is None:
                    raise NotADatasyncStoreError(f"{self.location} has no metadata")
                meta = Meta.from_json(row[0], where=self.location)
                for stmt in _SCHEMA.split(";"):  # stores made before history existed
                    if "history" in stmt or "versions" in stmt:
                        conn.execute(stmt)
            conn.execute("COMMIT")
            return meta
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _stored_meta(self, db: sqlite3.Connection) -> Meta:
        """The current metadata, as stored."""
        return Meta.from_json(
            db.execute("SELECT value FROM meta WHERE key='meta'").fetchone()[0],
            where=self.location)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise BackendError(f"{self.location} is not open")
        return self._conn

    # -- reading -----------------------------------------------------------------
    @serialized
    def read_block(self, file: str, index: int) -> Record | None:
        row = self._db().execute(
            "SELECT version, checksum, data FROM blocks WHERE file=? AND idx=?",
            (file, index),
        ).fetchone()
        return None if row is None else Record(*row)

    @serialized
    async def read_all(self, file: str = MAIN) -> dict[int, Record]:
        rows = self._db().execute(
            "SELECT idx, version, checksum, data FROM blocks WHERE file=?", (file,)
        )
        return {idx: Record(v, c, d) for idx, v, c, d in rows}

    @serialized
    async def read_versions(self, file: str = MAIN) -> dict[int, int]:
        return dict(self._db().execute(
            "SELECT idx, version FROM blocks WHERE file=?", (file,)).fetchall())

    @serialized
    async def changed_since(self, file: str, version: int) -> tuple[Meta, dict[int, Record]]:
        db = self._db()
        db.execute("BEGIN")
        try:
            meta = self._stored_meta(db)
            rows = db.execute(
                "SELECT idx, version, checksum, data FROM blocks WHERE file=? AND version>?",
                (file, version),
            )
            return meta, {idx: Record(v, c, d) for idx, v, c, d in rows}
        finally:
            db.execute("COMMIT")

    # -- writing -----------------------------------------------------------------
    @serialized
    async def write(self, flush: Flush) -> None:
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")
            cleared = self._history_cleared
            try:
                self._write_in_transaction(db, flush)
                db.execute("COMMIT")
            except BaseException:
                self._history_cleared = cleared  # (only once the transaction committed)
                if db.in_transaction:  # SQLITE_FULL has already rolled back
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise
        except sqlite3.Error as exc:
            if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
                raise StorageFullError(
                    f"{self.location}: the disk is full; the changes stay in memory and "
                    "the next flush retries once space is freed"
                ) from exc
            raise BackendError(f"flush to {self.location} failed: {exc}") from exc

    def _write_in_transaction(self, db: sqlite3.Connection, flush: Flush) -> None:
        stored = self._stored_meta(db)
        check_writer(stored, flush, self.location)
        self._history_cleared = write_history(_History(db), stored, flush,
                                              cleared=self._history_cleared)
        db.execute("DELETE FROM blocks WHERE file=? AND idx>=?", (flush.file, flush.meta.block_count))
        sql = (
            "INSERT OR REPLACE INTO blocks(file, idx, version, checksum, data) "
            "VALUES (?, ?, ?, ?, ?)"
        )
        if self.fault_hook is None:
            db.executemany(
                sql,
                ((flush.file, i, r.version, r.checksum, r.payload) for i, r in flush.blocks.items()),
            )
        else:
            for i, r in flush.blocks.items():
                self._fault("block", i)
                db.execute(sql, (flush.file, i, r.version, r.checksum, r.payload))
        db.execute(
            "DELETE FROM blocks WHERE file=? AND idx>=?", (flush.file, flush.meta.block_count)
        )
        self._fault("meta", flush.meta.version)
        db.execute("UPDATE meta SET value=? WHERE key='meta'", (flush.meta.to_json(),))

    @serialized
    async def retained(self, file: str = MAIN) -> list[Meta]:
        rows = self._db().execute("SELECT meta FROM versions ORDER BY version").fetchall()
        return [*(Meta.from_json(text, where=self.location) for (text,) in rows),
                self._stored_meta(self._db())]

    @serialized
    async def read_as_of(self, file: str, version: int) -> tuple[Meta, dict[int, Record]]:
        db = self._db()
        db.execute("BEGIN")
        try:
            current_meta = self._stored_meta(db)
            if version == current_meta.version:
                meta = current_meta
            else:
                row = db.execute("SELECT meta FROM versions WHERE version=?", (version,)).fetchone()
                if row is None:
                    raise VersionNotRetainedError(
                        f"version {version} of {self.location} is not retained")
                meta = Meta.from_json(row[0], where=self.location)
            current = {idx: Record(v, c, d) for idx, v, c, d in db.execute(
                "SELECT idx, version, checksum, data FROM blocks WHERE file=? AND version<=?",
                (file, version))}
            history = [Superseded(idx, s, Record(v, c, d)) for idx, v, s, c, d in db.execute(
                "SELECT idx, version, superseded, checksum, data FROM history "
                "WHERE file=? AND version<=? AND superseded>?", (file, version, version))]
        finally:
            db.execute("COMMIT")
        return meta, records_as_of(meta, current, history, where=self.location)

    @serialized
    async def scrub(self) -> None:
        """Rebuild the file (VACUUM: no free page keeps old bytes) and empty the WAL."""
        db = self._db()
        try:
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise BackendError(f"scrubbing {self.location} failed: {exc}") from exc

    # -- lifecycle ---------------------------------------------------------------
    @serialized
    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def destroy(self) -> None:
        await self.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.remove(self.path + suffix)
            except FileNotFoundError:
                pass


class _History:
    """:class:`~.history.HistoryTxn` in SQL, inside the flush's transaction: tables
    ``history(file, idx, version, superseded, ...)`` and ``versions(version, meta)``."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    _KEEP = ("INSERT OR REPLACE INTO history(file, idx, version, superseded, checksum, data) "
             "SELECT file, idx, version, ?, checksum, data FROM blocks WHERE file=? AND ")

    def keep_superseded(self, file: str, indices: Any, from_index: int,
                        superseded: int) -> None:
        self.db.executemany(self._KEEP + "idx=?", ((superseded, file, i) for i in indices))
        self.db.execute(self._KEEP + "idx>=?", (superseded, file, from_index))

    def keep_sent(self, file: str, records: dict[int, Record], superseded: int) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO history(file, idx, version, superseded, checksum, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            ((file, i, r.version, superseded, r.checksum, r.payload) for i, r in records.items()))

    def keep_meta(self, meta: Meta) -> None:
        self.db.execute("INSERT OR REPLACE INTO versions(version, meta) VALUES (?, ?)",
                        (meta.version, meta.to_json()))

    def drop_through(self, superseded: int) -> None:
        self.db.execute("DELETE FROM history WHERE superseded <= ?", (superseded,))
        self.db.execute("DELETE FROM versions WHERE version < ?", (superseded,))

    def drop_all(self) -> None:
        self.db.execute("DELETE FROM history")
        self.db.execute("DELETE FROM versions")
