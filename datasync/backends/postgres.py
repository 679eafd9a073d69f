"""A backend that keeps stores in PostgreSQL (psycopg 3), shared by many processes.

Example::

    backend = PostgresBackend("postgresql://app@db.internal/datasync", "notes")
    db = await datasync.open("notes", backend=backend, durability="strict")
    # or, with the libpq environment (PGHOST, PGDATABASE...): backend="postgres"

Every store of one PostgreSQL database lives in four tables, keyed by the store's
name: ``datasync_meta(store, meta)``, ``datasync_blocks(store, file, idx, version,
checksum, data)``, ``datasync_history`` and ``datasync_versions`` (retained history,
the rule of :mod:`.history`), created on first use. Each flush is ONE PostgreSQL
transaction that first locks the store's metadata row (``SELECT ... FOR UPDATE``)
and checks the stored version against the flush's base
(:func:`~.contract.check_writer`): of two processes flushing on one version, the
second waits for the first's commit, then finds the version moved and is refused
with :class:`~datasync.VersionConflictError`, nothing written. So any number of
processes (sync server processes on several hosts) may write one store, each
catching up on the others' versions (``BlockStore.catch_up``) and never
overwriting them. Reads run in REPEATABLE READ transactions (one snapshot).

Change notices: a flush sends ``NOTIFY datasync_changes, '<version> <store>'`` in its
transaction, so PostgreSQL delivers it at commit, to every process listening
(:class:`~.pg_notices.ChangeNotices`).

Who may use it: processes that follow the sync server's discipline (check the
stored version before each use with ``BlockStore.catch_up``, apply a write again
after a ``VersionConflictError``: :mod:`datasync.server.places`), or one process at a
time. A plain ``datasync.open(..., backend="postgres")`` does neither: once another
process has written the store, its reads and writes raise ``VersionConflictError``;
open it again to go on.

Blocks are read on demand (:class:`~.contract.SyncReads`) through one connection
per backend, serialized by a lock; a connection PostgreSQL dropped (a restart) is
made again at the next call, and the call that met the drop raises
:class:`~datasync.BackendError` (the flush's blocks stay and are retried). The
driver is psycopg 3 (``pip install 'datasync[postgres]'``), the PostgreSQL project's
recommended Python driver, chosen for its maintained libpq binding and binary
wheels.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import (
    BackendError,
    NotSupportedError,
    StorageFullError,
    StorageUnavailableError,
    StoreNotFoundError,
    VersionNotRetainedError,
)
from ..format import MAIN, Flush, Meta, Record
from .contract import KeepsHistory, SyncReads, check_writer
from .history import Superseded, records_as_of, write_history
from .serialized import serialized

#: The channel every flush notifies: payload ``"<version> <store>"``.
NOTICE_CHANNEL = "datasync_changes"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS datasync_meta("
    " store TEXT PRIMARY KEY, meta TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS datasync_blocks("
    " store TEXT NOT NULL, file TEXT NOT NULL, idx BIGINT NOT NULL, version BIGINT NOT NULL,"
    " checksum BIGINT NOT NULL, data BYTEA NOT NULL, PRIMARY KEY (store, file, idx))",
    "CREATE INDEX IF NOT EXISTS datasync_blocks_by_version"
    " ON datasync_blocks(store, file, version)",
    "CREATE TABLE IF NOT EXISTS datasync_history("
    " store TEXT NOT NULL, file TEXT NOT NULL, idx BIGINT NOT NULL, version BIGINT NOT NULL,"
    " superseded BIGINT NOT NULL, checksum BIGINT NOT NULL, data BYTEA NOT NULL,"
    " PRIMARY KEY (store, file, idx, version))",
    "CREATE TABLE IF NOT EXISTS datasync_versions("
    " store TEXT NOT NULL, version BIGINT NOT NULL, meta TEXT NOT NULL,"
    " PRIMARY KEY (store, version))",
)
_TABLES = ("datasync_blocks", "datasync_history", "datasync_versions", "datasync_meta")
#: Any number: the transaction-level advisory lock two processes creating the
#: tables at once take (CREATE TABLE IF NOT EXISTS alone races in PostgreSQL).
_SCHEMA_LOCK = 0x44537943
_UPSERT = ("INSERT INTO datasync_blocks(store, file, idx, version, checksum, data) "
           "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (store, file, idx) DO UPDATE SET "
           "version = EXCLUDED.version, checksum = EXCLUDED.checksum, data = EXCLUDED.data")


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - the [postgres] extra is missing
        raise NotSupportedError(
            "the postgres backend needs psycopg 3: pip install 'datasync[postgres]'") from exc
    return psycopg


def describe_dsn(dsn: str) -> str:
    """``host:port/dbname`` of a connection string, without its password.

    Example: ``describe_dsn("postgresql://u:pw@db:5432/app")  # 'db:5432/app'``"""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - a bad string is reported when connecting
        return "(unparsable connection string)"
    return (f"{parts.get('host') or 'localhost'}:{parts.get('port') or 5432}/"
            f"{parts.get('dbname') or parts.get('user') or ''}")


class PostgresBackend(SyncReads, KeepsHistory):
    """The store ``name`` in the PostgreSQL database ``dsn`` (see the module
    docstring). ``dsn``: a libpq connection string or URL ("" takes the libpq
    environment, PGHOST...); ``connect_timeout``: seconds."""

    def __init__(self, dsn: str, name: str, *, connect_timeout: float = 10.0) -> None:
        self.dsn, self.name = dsn, name
        self.connect_timeout = connect_timeout
        self._where = describe_dsn(dsn)
        self._conn: Any = None
        self._io = threading.RLock()
        self._opened = False
        self._history_cleared = False  # retain 0: old history dropped once

    @property
    def key(self) -> str:
        return f"postgres:{self._where}/{self.name}"

    @property
    def location(self) -> str:
        return f"store {self.name!r} in PostgreSQL {self._where}"

    # -- connection --------------------------------------------------------------
    def _connection(self) -> Any:
        if self._conn is not None and not (self._conn.closed or self._conn.broken):
            return self._conn
        psycopg = _psycopg()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        try:
            self._conn = psycopg.connect(self.dsn, autocommit=True,
                                         connect_timeout=max(1, int(self.connect_timeout)),
                                         keepalives=1, keepalives_idle=10,
                                         keepalives_interval=5, keepalives_count=3)
            # Bounded waits: a flush queued behind a stalled writer's row lock fails
            # (BackendError, retried) instead of holding this process; a writer
            # stalled inside its transaction (SIGSTOP, a partition) loses it.
            self._conn.execute("SET lock_timeout = '5s'; SET statement_timeout = '60s'; "
                               "SET idle_in_transaction_session_timeout = '10s'")
        except psycopg.Error as exc:
            raise StorageUnavailableError(
                f"cannot connect to PostgreSQL {self._where} for {self.location}: {exc}; "
                "check that it runs and that the connection string is right") from exc
        return self._conn

    @contextmanager
    def _guarded(self) -> Iterator[Any]:
        """The connection (autocommit: one statement, one snapshot), psycopg's
        errors turned into datasync's, the connection dropped if it broke."""
        psycopg = _psycopg()
        conn = self._connection()
        try:
            yield conn
        except psycopg.errors.DiskFull as exc:
            raise StorageFullError(
                f"{self.location}: PostgreSQL is out of disk space; the changes stay in "
                "memory and the next flush retries once space is freed") from exc
        except psycopg.Error as exc:
            if conn.broken:
                conn.close()
            raise BackendError(f"{self.location}: PostgreSQL failed: {exc}") from exc

    @contextmanager
    def _transaction(self, *, snapshot: bool = False) -> Iterator[Any]:
        """One PostgreSQL transaction (``snapshot``: REPEATABLE READ, read only:
        every statement sees one snapshot) and its cursor."""
        with self._guarded() as conn, conn.transaction():
            cur = conn.cursor()
            if snapshot:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield cur

    # -- opening -----------------------------------------------------------------
    @serialized
    async def open(self, initial: Meta, *, create: bool = True) -> Meta:
        with self._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in _SCHEMA:
                cur.execute(statement)
            cur.execute("SELECT meta FROM datasync_meta WHERE store = %s", (self.name,))
            row = cur.fetchone()
            if row is None and not create:
                raise StoreNotFoundError(f"{self.location} does not exist (create=False)")
            if row is None:
                cur.execute("INSERT INTO datasync_meta(store, meta) VALUES (%s, %s)",
                            (self.name, initial.to_json()))
                meta = initial
            else:
                meta = Meta.from_json(row[0], where=self.location)
        self._opened = True
        return meta

    def _stored_meta(self, cur: Any, *, lock: bool = False) -> Meta:
        cur.execute("SELECT meta FROM datasync_meta WHERE store = %s"
                    + (" FOR UPDATE" if lock else ""), (self.name,))
        row = cur.fetchone()
        if row is None:
            raise BackendError(f"{self.location} was destroyed by another process")
        return Meta.from_json(row[0], where=self.location)

    # -- reading -----------------------------------------------------------------
    @serialized
    def read_block(self, file: str, index: int) -> Record | None:
        with self._guarded() as conn:
            row = conn.execute("SELECT version, checksum, data FROM datasync_blocks "
                               "WHERE store = %s AND file = %s AND idx = %s",
                               (self.name, file, index)).fetchone()
        return None if row is None else Record(row[0], row[1], bytes(row[2]))

    @serialized
    async def read_all(self, file: str = MAIN) -> dict[int, Record]:
        with self._transaction(snapshot=True) as cur:
            return self._records(cur, file, "")

    def _records(self, cur: Any, file: str, where: str, *args: Any) -> dict[int, Record]:
        cur.execute("SELECT idx, version, checksum, data FROM datasync_blocks "
                    f"WHERE store = %s AND file = %s{where}", (self.name, file, *args))
        return {idx: Record(v, c, bytes(d)) for idx, v, c, d in cur}

    @serialized
    async def read_versions(self, file: str = MAIN) -> dict[int, int]:
        with self._guarded() as conn:
            return dict(conn.execute(
                "SELECT idx, version FROM datasync_blocks WHERE store = %s AND file = %s",
                (self.name, file)).fetchall())

    @serialized
    async def changed_since(self, file: str, version: int) -> tuple[Meta, dict[int, Record]]:
        # One statement, so one snapshot and one round trip (a sync server asks
        # this before every request: usually nothing changed); the metadata is the
        # row tagged 0, the records are tagged 1.
        with self._guarded() as conn:
            rows = conn.execute(
                "SELECT 0, meta, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT, NULL::BYTEA "
                "FROM datasync_meta WHERE store = %s UNION ALL "
                "SELECT 1, NULL, idx, version, checksum, data FROM datasync_blocks "
                "WHERE store = %s AND file = %s AND version > %s",
                (self.name, self.name, file, version)).fetchall()
        metas = [row[1] for row in rows if row[0] == 0]
        if not metas:
            raise BackendError(f"{self.location} was destroyed by another process")
        meta = Meta.from_json(metas[0], where=self.location)
        return meta, {idx: Record(v, c, bytes(d)) for tag, _, idx, v, c, d in rows if tag}

    # -- writing -----------------------------------------------------------------
    @serialized
    async def write(self, flush: Flush) -> None:
        cleared = self._history_cleared
        try:
            with self._transaction() as cur:
                stored = self._stored_meta(cur, lock=True)  # held until commit
                check_writer(stored, flush, self.location)
                self._history_cleared = write_history(_History(cur, self.name), stored, flush,
                                                      cleared=self._history_cleared)
                cur.execute("DELETE FROM datasync_blocks WHERE store = %s AND file = %s "
                            "AND idx >= %s", (self.name, flush.file, flush.meta.block_count))
                rows = [(self.name, flush.file, i, r.version, r.checksum, r.payload)
                        for i, r in flush.blocks.items()]
                if self.fault_hook is None:
                    cur.executemany(_UPSERT, rows)
                else:
                    for row in rows:
                        self._fault("block", row[2])
                        cur.execute(_UPSERT, row)
                self._fault("meta", flush.meta.version)
                cur.execute("UPDATE datasync_meta SET meta = %s WHERE store = %s",
                            (flush.meta.to_json(), self.name))
                cur.execute("SELECT pg_notify(%s, %s)",
                            (NOTICE_CHANNEL, f"{flush.meta.version} {self.name}"))
        except BaseException:
            self._history_cleared = cleared  # (only once the transaction committed)
            raise

    @serialized
    async def retained(self, file: str = MAIN) -> list[Meta]:
        with self._transaction(snapshot=True) as cur:
            cur.execute("SELECT meta FROM datasync_versions WHERE store = %s ORDER BY version",
                        (self.name,))
            kept = [Meta.from_json(text, where=self.location) for (text,) in cur.fetchall()]
            return [*kept, self._stored_meta(cur)]

    @serialized
    async def read_as_of(self, file: str, version: int) -> tuple[Meta, dict[int, Record]]:
        with self._transaction(snapshot=True) as cur:
            meta = self._stored_meta(cur)
            if version != meta.version:
                cur.execute("SELECT meta FROM datasync_versions WHERE store = %s AND version = %s",
                            (self.name, version))
                row = cur.fetchone()
                if row is None:
                    raise VersionNotRetainedError(
                        f"version {version} of {self.location} is not retained")
                meta = Meta.from_json(row[0], where=self.location)
            current = self._records(cur, file, " AND version <= %s", version)
            cur.execute("SELECT idx, version, superseded, checksum, data FROM datasync_history "
                        "WHERE store = %s AND file = %s AND version <= %s AND superseded > %s",
                        (self.name, file, version, version))
            history = [Superseded(idx, s, Record(v, c, bytes(d))) for idx, v, s, c, d in cur]
        return meta, records_as_of(meta, current, history, where=self.location)

    @serialized
    async def scrub(self) -> None:
        """``VACUUM FULL`` of the block and history tables: PostgreSQL rewrites them,
        so no dead row keeps old bytes there. (It locks those tables, for every
        store of the database, while it runs. WAL segments and backups that the
        PostgreSQL administrator keeps are beyond a backend's reach.)"""
        with self._guarded() as conn:
            conn.execute("SET statement_timeout = 0")  # (as long as the tables need)
            try:
                conn.execute("VACUUM FULL datasync_blocks, datasync_history")
            finally:
                conn.execute("SET statement_timeout = '60s'")

    # -- lifecycle ---------------------------------------------------------------
    @serialized
    async def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing never raises (the contract)
                pass
            self._conn = None

    @serialized
    async def destroy(self) -> None:
        try:
            with self._transaction() as cur:
                for table in _TABLES:
                    cur.execute(f"DELETE FROM {table} WHERE store = %s", (self.name,))
        finally:
            await self.close()


class _History:
    """:class:`~.history.HistoryTxn` in PostgreSQL, inside the flush's transaction."""

    def __init__(self, cur: Any, store: str) -> None:
        self.cur, self.store = cur, store

    _KEEP = ("INSERT INTO datasync_history(store, file, idx, version, superseded, checksum, "
             "data) SELECT store, file, idx, version, %s, checksum, data FROM datasync_blocks "
             "WHERE store = %s AND file = %s AND idx {} %s ON CONFLICT (store, file, idx, "
             "version) DO UPDATE SET superseded = EXCLUDED.superseded, "
             "checksum = EXCLUDED.checksum, data = EXCLUDED.data")

    def keep_superseded(self, file: str, indices: Any, from_index: int,
                        superseded: int) -> None:
        self.cur.executemany(self._KEEP.format("="),
                             [(superseded, self.store, file, i) for i in indices])
        self.cur.execute(self._KEEP.format(">="), (superseded, self.store, file, from_index))

    def keep_sent(self, file: str, records: dict[int, Record], superseded: int) -> None:
        self.cur.executemany(
            "INSERT INTO datasync_history(store, file, idx, version, superseded, checksum, data) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (store, file, idx, version) DO "
            "UPDATE SET superseded = EXCLUDED.superseded, checksum = EXCLUDED.checksum, "
            "data = EXCLUDED.data",
            [(self.store, file, i, r.version, superseded, r.checksum, r.payload)
             for i, r in records.items()])

    def keep_meta(self, meta: Meta) -> None:
        self.cur.execute(
            "INSERT INTO datasync_versions(store, version, meta) VALUES (%s, %s, %s) "
            "ON CONFLICT (store, version) DO UPDATE SET meta = EXCLUDED.meta",
            (self.store, meta.version, meta.to_json()))

    def drop_through(self, superseded: int) -> None:
        self.cur.execute("DELETE FROM datasync_history WHERE store = %s AND superseded <= %s",
                         (self.store, superseded))
        self.cur.execute("DELETE FROM datasync_versions WHERE store = %s AND version < %s",
                         (self.store, superseded))

    def drop_all(self) -> None:
        self.cur.execute("DELETE FROM datasync_history WHERE store = %s", (self.store,))
        self.cur.execute("DELETE FROM datasync_versions WHERE store = %s", (self.store,))
