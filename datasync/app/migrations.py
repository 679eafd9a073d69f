"""Versioned schema migrations, applied exactly once in every tab and replica.

Example::

    MIGRATIONS = [
        {"version": 1, "name": "notes", "down": "DROP TABLE notes",
         "up": "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)"},
        {"version": 2, "name": "notes_at",
         "up": "ALTER TABLE notes ADD COLUMN at REAL; CREATE INDEX notes_at ON notes(at)",
         "down": "DROP INDEX notes_at; ALTER TABLE notes DROP COLUMN at"},
        {"version": 3, "name": "seed", "up": seed, "checksum": "seed-1"},  # seed(tx)
    ]
    await db.migrate(MIGRATIONS)  # {"from": 0, "to": 3, "applied": [1, 2, 3], "reverted": []}
    await db.migrate(MIGRATIONS)  # {"from": 3, "to": 3, "applied": [], "reverted": []}
    await db.migrate(MIGRATIONS, target=1)  # IrreversibleMigrationError: 3 has no down
    await db.migration_status(MIGRATIONS)   # [{"version", "name", "checksum", "applied_at", "state"}]

A migration is a dict or an object (attributes): ``version`` (int >= 1), ``name``
(str), ``up``, optional ``down`` and ``checksum`` (str). ``up``/``down``: SQL (several
statements, split by :func:`~datasync.cdc.connection.split_script`; no BEGIN/COMMIT:
it runs in a transaction of its own) or a callable ``f(tx)`` returning None or an
awaitable, ``tx`` a :class:`~datasync.api.TransactionAPI`. Versions: 1..n, each once.
Rows: ``_datasync_migrations(version INTEGER PRIMARY KEY, name, checksum, applied_at
REAL epoch seconds)``. **Checksum**: SHA-256 hex of the ``up`` SQL, its line endings
normalised (CRLF and CR become LF) and trailing whitespace at its end removed (the
``down`` is not part of it: it may be fixed later). A given ``checksum`` is used
instead (for a callable, or to accept a reformatted SQL); a callable without one
records :data:`UNCHECKED` (``"callable"``), which is never compared.

Checked before anything runs: the order (MigrationOrderError), an applied migration
whose checksum differs (MigrationChecksumError), applied versions the list lacks:
newer code migrated it (SchemaTooNewError), a revert through a migration with no
``down`` (IrreversibleMigrationError). A failing ``up``/``down``: MigrationFailedError
naming it, cause chained; its transaction is rolled back and the ones before it in
the call stay applied. BusyTimeoutError, TransactionAbortedError,
LeaderUnavailableError, DatabaseClosedError and sync errors propagate as they are
(the transaction failed, not the migration): migrate again, it is idempotent.

**Exactly once.** Each migration runs in its own ``db.transaction("IMMEDIATE")``
that first re-reads the table: one another tab or process applied meanwhile is
skipped (its checksum checked again); else it runs the ``up`` and inserts the row
(or the ``down``, deleting it). In a :class:`~datasync.tabs.SharedDatabase` follower
that transaction runs at the leader, so concurrent tabs queue there, one applies
each migration, and each call returns once its own copy holds the new schema. A sync
replica has no interactive transactions: after a pull, a SQL migration is ONE
``batch`` whose first statement inserts its row (another replica's copy of it fails
atomically on the primary, which is then pulled and found applied); a ``down`` batch
opens with a guard that fails unless the row is still there. There a callable, an
offline replica or an unanswered pull is a MigrationError (a server silent between
the pull and the batch: the batch waits in the outbox like any write). Files:
:func:`datasync.tools.migrate_cli.load_dir`. Bookkeeping reads run unmeasured.
"""
from __future__ import annotations

import hashlib
import inspect
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..cdc.connection import split_script
from ..errors import (
    BusyTimeoutError,
    DatabaseClosedError,
    InvalidOptionError,
    IrreversibleMigrationError,
    MigrationChecksumError,
    MigrationError,
    MigrationFailedError,
    MigrationOrderError,
    LeaderUnavailableError,
    SchemaTooNewError,
    SyncError,
    TransactionAbortedError,
)
from .timing import unmeasured

__all__ = ["TABLE", "UNCHECKED", "Migration", "checksum_of", "migrate", "normalise",
           "rollback", "status"]

TABLE = "_datasync_migrations"
#: The checksum recorded for a callable ``up`` given none: never compared.
UNCHECKED = "callable"
_CREATE = (f"CREATE TABLE IF NOT EXISTS {TABLE}(version INTEGER PRIMARY KEY, "
           "name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at REAL NOT NULL)")
_READ = f"SELECT version, name, checksum, applied_at FROM {TABLE} ORDER BY version"
_INSERT = f"INSERT INTO {TABLE}(version, name, checksum, applied_at) VALUES (?, ?, ?, ?)"
_DELETE = f"DELETE FROM {TABLE} WHERE version = ?"
#: A replica's down guard: json() of a non-JSON text fails, so the batch fails
#: (atomically, on the primary) unless the row is still there.
_GUARD = (f"SELECT json(CASE WHEN EXISTS(SELECT 1 FROM {TABLE} WHERE version = ?) "
          "THEN '0' ELSE 'migration not applied' END)")
_ONLY_COMMENTS = re.compile(r"(?:\s|;|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)
_TX_CONTROL = {"BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"}
#: Raised inside an up/down, these say the transaction failed, not the migration:
#: they propagate as they are (nothing of it applied, or unknown: migrate again).
_NOT_THE_MIGRATION = (BusyTimeoutError, TransactionAbortedError, LeaderUnavailableError,
                      DatabaseClosedError, SyncError)


def checksum_of(sql: str) -> str:
    """Example: ``checksum_of("CREATE TABLE t(x)\\r\\n") == checksum_of("CREATE TABLE t(x)")``;
    SHA-256 hex of ``sql`` with CRLF and CR made LF and trailing whitespace removed."""
    text = sql.replace("\r\n", "\n").replace("\r", "\n").rstrip()
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Migration:
    """One migration, checked: ``up``/``down`` are a list of SQL statements or a callable."""

    version: int
    name: str
    up: Any
    down: Any
    checksum: str


def _field(m: Any, key: str) -> Any:
    return m.get(key) if isinstance(m, dict) else getattr(m, key, None)


def _step(version: int, value: Any, what: str) -> Any:
    """A list of statements (SQL) or the callable; None stays None."""
    if value is None or callable(value):
        return value
    if not isinstance(value, str):
        raise MigrationError(f"migration {version}: {what} must be SQL text or a function "
                             f"of a transaction, not {type(value).__name__}", version=version)
    statements = [s for s in split_script(value) if not _ONLY_COMMENTS.fullmatch(s)]
    for sql in statements:
        words = sql[_ONLY_COMMENTS.match(sql).end():].split(None, 1)  # type: ignore[union-attr]
        if words and words[0].upper().rstrip(";") in _TX_CONTROL:
            raise MigrationError(
                f"migration {version}: its {what} holds {sql.strip()!r}; a migration runs in "
                "a transaction of its own: remove BEGIN/COMMIT/ROLLBACK/SAVEPOINT", version=version)
    return statements


def normalise(migrations: Iterable[Any]) -> list[Migration]:
    """Example: ``ms = normalise([{"version": 1, "name": "a", "up": "CREATE TABLE a(x)"}])``

    The migrations checked and ordered by version. Raises MigrationOrderError (not
    1..n each once, or a version not an int >= 1), MigrationError (no name or up)."""
    if isinstance(migrations, (str, bytes, dict)) or not hasattr(migrations, "__iter__"):
        raise MigrationError(f"migrations={type(migrations).__name__}: give a list of "
                             "{'version', 'name', 'up'} migrations (or load_dir(DIR))")
    out: list[Migration] = []
    for m in migrations:
        v = _field(m, "version")
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise MigrationOrderError(
                f"migration version {v!r} is not an integer >= 1: number them 1, 2, 3...")
        name, up = _field(m, "name"), _field(m, "up")
        if not isinstance(name, str) or not name or up is None:
            raise MigrationError(f"migration {v} needs a name (str) and an up (SQL or a "
                                 "function of a transaction)", version=v)
        given = _field(m, "checksum")
        if given is not None and not isinstance(given, str):
            raise MigrationError(f"migration {v}: checksum must be a str", version=v)
        steps = _step(v, up, "up"), _step(v, _field(m, "down"), "down")
        digest = given or (UNCHECKED if callable(up) else checksum_of(up))
        out.append(Migration(v, name, *steps, digest))
    out.sort(key=lambda m: m.version)
    for i, m in enumerate(out, 1):
        if m.version != i:
            what = "twice" if i > 1 and out[i - 2].version == m.version else \
                f"where {i} was expected (a gap)"
            raise MigrationOrderError(
                f"migration version {m.version} ({m.name!r}) comes {what}: the versions "
                f"must be 1..{len(out)}, each once; renumber them", version=m.version)
    return out


def _same(recorded: str, given: str) -> bool:
    return UNCHECKED in (recorded, given) or recorded == given


def _check(ms: list[Migration], applied: dict[int, dict[str, Any]]) -> None:
    """SchemaTooNewError, then MigrationChecksumError, against the rows read."""
    unknown = sorted(v for v in applied if v > len(ms))
    if unknown:
        raise SchemaTooNewError(
            f"the database has migration(s) {unknown} ({applied[unknown[-1]]['name']!r} "
            f"last) but this code knows 1..{len(ms)}: it was migrated by newer code (another "
            "tab, process or the server); reload the page or upgrade, nothing was changed",
            version=unknown[-1])
    for m in ms:
        row = applied.get(m.version)
        if row is not None and not _same(row["checksum"], m.checksum):
            raise MigrationChecksumError(
                f"migration {m.version} ({m.name!r}) changed after it was applied (checksum "
                f"{m.checksum[:12]}... now, {row['checksum'][:12]}... recorded): restore its "
                "text and add a new migration instead", version=m.version)


async def _has_table(db: Any) -> bool:
    with unmeasured():  # bookkeeping: metrics count the application's statements
        return bool(await db.query(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [TABLE]))


async def _applied(q: Any) -> dict[int, dict[str, Any]]:
    with unmeasured():
        return {int(r["version"]): r for r in await q.query(_READ)}


async def _read(db: Any) -> dict[int, dict[str, Any]]:
    return await _applied(db) if await _has_table(db) else {}


async def _run(step: Any, tx: Any) -> None:
    if callable(step):
        result = step(tx)
        if inspect.isawaitable(result):
            await result
        return
    for sql in step:
        await tx.execute(sql)


def _failed(m: Migration, down: bool, exc: BaseException, at: int) -> MigrationFailedError:
    return MigrationFailedError(
        f"migration {m.version} ({m.name!r}) failed in its {'down' if down else 'up'}: "
        f"{type(exc).__name__}: {exc}; it was rolled back and the database stays at "
        f"version {at}: fix it and migrate again", version=m.version)


def _is_replica(db: Any) -> bool:
    """A sync replica (or a tab of one): it pulls, and refuses transaction()."""
    return callable(getattr(db, "pull", None)) and callable(getattr(db, "sync_status", None))


async def _pull(db: Any) -> None:
    if getattr(db, "offline", False):
        raise MigrationError("this replica is offline: migrations run on the primary; "
                             "open it online (offline=False) and migrate again")
    pull = getattr(db, "pull", None)
    if pull is not None:
        try:
            await pull()
        except SyncError as exc:
            raise MigrationError(f"the primary did not answer ({exc}): migrations run on "
                                 "the primary; migrate again once it answers") from exc


async def _in_transaction(db: Any, ms: list[Migration], m: Migration, down: bool,
                          at: int) -> tuple[bool, dict[int, dict[str, Any]]]:
    """Apply (or revert) ``m`` in its own IMMEDIATE transaction unless another
    caller did; returns (whether this call did, the rows now)."""
    async with db.transaction("IMMEDIATE") as tx:
        rows = await _applied(tx)
        _check(ms, rows)
        if (m.version in rows) != down:  # already applied (up) / already gone (down)
            return False, rows
        try:
            await _run((m.down if down else m.up), tx)
        except _NOT_THE_MIGRATION:
            raise
        except Exception as exc:
            raise _failed(m, down, exc, at) from exc
        if down:
            await tx.execute(_DELETE, [m.version])
            rows.pop(m.version)
        else:
            row = [m.version, m.name, m.checksum, time.time()]
            await tx.execute(_INSERT, row)
            rows[m.version] = dict(zip(("version", "name", "checksum", "applied_at"), row))
    return True, rows


async def _in_batch(db: Any, ms: list[Migration], m: Migration, down: bool,
                    at: int) -> tuple[bool, dict[int, dict[str, Any]]]:
    """A replica's :func:`_in_transaction`: one batch on the primary, its first
    statement the row's insert (or the guard that it is there)."""
    head: list[tuple[str, Any]] = (
        [(_GUARD, [m.version]), (_DELETE, [m.version])] if down else
        [(_INSERT, [m.version, m.name, m.checksum, time.time()])])
    try:
        await db.batch([*head, *((sql, ()) for sql in (m.down if down else m.up))])
    except _NOT_THE_MIGRATION:
        raise
    except Exception as exc:
        await _pull(db)
        rows = await _read(db)
        _check(ms, rows)
        if (m.version in rows) != down:  # another replica did it first
            return False, rows
        raise _failed(m, down, exc, at) from exc
    return True, await _read(db)


async def _plan(db: Any, ms: list[Migration]) -> tuple[dict[int, dict[str, Any]], bool]:
    replica = _is_replica(db)
    if replica:
        await _pull(db)
    if not await _has_table(db):
        await db.execute(_CREATE)  # its own transaction (on a replica: the primary's)
    rows = await _applied(db)
    _check(ms, rows)
    return rows, replica


async def _move(db: Any, ms: list[Migration], rows: dict[int, dict[str, Any]],
                replica: bool, target: int) -> dict[str, Any]:
    start = max(rows, default=0)
    ups = [m for m in ms if m.version <= target and m.version not in rows]
    downs = [m for m in reversed(ms) if m.version > target and m.version in rows]
    stuck = [m.version for m in downs if m.down is None]
    if stuck:
        raise IrreversibleMigrationError(
            f"going down to version {target} would revert migration(s) {stuck}, which have "
            "no down: nothing was rolled back; give them a down or choose a later target",
            version=stuck[0])
    if replica:
        code = [m.version for m in ups if callable(m.up)] + \
            [m.version for m in downs if callable(m.down)]
        if code:
            raise MigrationError(
                f"migration(s) {code} are functions, which a replica cannot send to its "
                "primary (no interactive transactions there): write them as SQL, or run "
                "them on the server's database", version=code[0])
    step = _in_batch if replica else _in_transaction
    applied, reverted, at = [], [], start
    for down, todo, done in ((False, ups, applied), (True, downs, reverted)):
        for m in todo:
            did, rows = await step(db, ms, m, down, at)
            if did:
                done.append(m.version)
            at = max(rows, default=0)
    return {"from": start, "to": at, "applied": applied, "reverted": reverted}


async def migrate(db: Any, migrations: Iterable[Any], *, target: int | None = None
                  ) -> dict[str, Any]:
    """Example: ``await migrate(db, MIGRATIONS, target=2)`` (``db.migrate(...)``)

    Apply the pending migrations up to ``target`` (default: the last) in order, or
    revert the applied ones above a lower ``target`` (0: all), newest first.
    Returns ``{"from": int, "to": int, "applied": [versions], "reverted": [versions]}``:
    the highest applied version before and after, and what THIS call ran (one
    another tab ran meanwhile is skipped). Raises MigrationOrderError,
    MigrationChecksumError, SchemaTooNewError, IrreversibleMigrationError (before
    anything runs), MigrationFailedError, MigrationError (replica: a callable, or
    the primary unreachable), InvalidOptionError (``target`` not in 0..n)."""
    ms = normalise(migrations)
    if target is None:
        target = len(ms)
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target <= len(ms):
        raise InvalidOptionError(f"target={target!r}: give a version between 0 and {len(ms)}")
    rows, replica = await _plan(db, ms)
    return await _move(db, ms, rows, replica, target)


async def rollback(db: Any, migrations: Iterable[Any], *, steps: int = 1) -> dict[str, Any]:
    """Example: ``await rollback(db, MIGRATIONS, steps=2)`` (``db.rollback(...)``)

    Revert the last ``steps`` applied migrations (their downs, newest first); the
    result and errors are :func:`migrate`'s (``steps`` not an int >= 0:
    InvalidOptionError). More steps than applied migrations reverts them all."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise InvalidOptionError(f"steps={steps!r}: give a number of migrations >= 0")
    ms = normalise(migrations)
    rows, replica = await _plan(db, ms)
    done = sorted(rows)
    target = done[-steps - 1] if steps < len(done) else 0
    return await _move(db, ms, rows, replica, target)


async def status(db: Any, migrations: Iterable[Any] = ()) -> list[dict[str, Any]]:
    """Example: ``for m in await status(db, MIGRATIONS): print(m["version"], m["state"])``

    Every migration recorded in the database and every one of ``migrations`` not
    yet applied, by version: ``{"version", "name", "checksum" (the recorded one once
    applied), "applied_at" (epoch seconds; None: pending), "state"}``; state is
    ``"applied"``, ``"pending"``, ``"changed"`` (applied, its checksum differs now)
    or ``"unknown"`` (applied, not in ``migrations``; with no list given, every
    recorded one is "applied"). Only reads, this copy (pull a replica first for the
    primary's view); no table yet means nothing applied. Raises MigrationOrderError."""
    ms = {m.version: m for m in normalise(migrations)}
    rows = await _read(db)
    out = []
    for v in sorted(set(ms) | set(rows)):
        m, row = ms.get(v), rows.get(v)
        if row is None:
            assert m is not None
            out.append({"version": v, "name": m.name, "checksum": m.checksum,
                        "applied_at": None, "state": "pending"})
            continue
        if m is None:
            state = "unknown" if ms else "applied"
        else:
            state = "applied" if _same(row["checksum"], m.checksum) else "changed"
        out.append({"version": v, "name": m.name if m else row["name"],
                    "checksum": row["checksum"], "applied_at": float(row["applied_at"]),
                    "state": state})
    return out
