"""Named exceptions users can act on.

Example::

    try:
        db = await datasync.open("app.dsdb", block_size=1000)
    except datasync.InvalidOptionError as exc:
        print(exc)   # says which values are allowed

Every exception raised on purpose by datasync derives from :class:`DatasyncError`;
each message says what happened and what to do about it.
"""
from __future__ import annotations


class DatasyncError(Exception):
    """Base class of every error datasync raises on purpose."""


class InvalidOptionError(DatasyncError, ValueError):
    """An option has a value datasync cannot use (for example a block size that is
    not a power of two between 512 and 65536)."""


class FormatVersionError(DatasyncError):
    """The store was written in a stored format this version of datasync does not
    read (usually a newer one). Nothing was changed; upgrade datasync to open it."""


class NotADatasyncStoreError(DatasyncError):
    """The path holds something that is not a datasync store (for example an ordinary
    SQLite database: use ``python -m datasync import`` to bring it in)."""


class CorruptBlockError(DatasyncError):
    """A stored block failed its checksum (or could not be decoded). The message
    names the store, the file and the block index."""

    def __init__(self, message: str, *, file: str = "main", index: int = -1) -> None:
        super().__init__(message)
        self.file = file
        self.index = index


class NotASQLiteImageError(DatasyncError, ValueError):
    """The bytes given to import are not a SQLite database file (the message says
    how to make one: sqlite3's .backup, or datasync export)."""


class StoreCreateError(DatasyncError):
    """The store could not be created or opened at the given location (missing
    directory, no permission, read-only file system)."""


class StoreNotFoundError(StoreCreateError):
    """No store exists at the given name or path and ``create=False`` was asked for;
    nothing was created. Check the name, or open with ``create=True``."""


class StoreBusyError(DatasyncError):
    """Another process has the store open for writing; close it there first."""


class StorageFullError(DatasyncError):
    """The backend ran out of space while flushing. Nothing was lost: the changed
    blocks stay in memory and the next flush retries once space is available."""


class StorageUnavailableError(DatasyncError):
    """The browser storage (IndexedDB) cannot be used here: not available in this
    context, refused by the browser, or closed under us."""


class StorageBlockedError(StorageUnavailableError):
    """Another tab holds the IndexedDB database open with an older schema; close or
    reload the app's other tabs, then open again."""


class BackendError(DatasyncError):
    """The storage backend failed for another reason; the message carries its error.
    Blocks that were being flushed stay dirty and are retried by the next flush."""


class VersionConflictError(BackendError):
    """A flush was built on a version that is no longer the stored one: another
    writer (a server process sharing a PostgreSQL primary, say) flushed first. The
    flush stored nothing; drop what was not durable (``discard_unflushed``), load the
    other writer's version (``catch_up``) and apply the write again."""


class DeposedLeaderError(BackendError):
    """This tab was the leader but another tab took over (a higher epoch is stored):
    its flush is refused so it can never overwrite newer data."""


class CrossDatabaseWriteError(DatasyncError):
    """One transaction tried to write two persistent databases (a datasync store and
    an ATTACHed store or file). Their commits cannot be made durable together, so
    datasync refuses the second write and SQLite rolls the transaction back: write
    each database in its own transaction."""


class TabStatementError(DatasyncError):
    """A statement depends on the state of one SQLite connection, but on a database
    shared by tabs each tab's writes run on the leader tab's connection. The
    subclasses say which state, and what to do instead."""


class TransactionStatementError(TabStatementError):
    """BEGIN, COMMIT, ROLLBACK, SAVEPOINT or RELEASE through ``execute``/``batch``:
    a transaction cannot span calls that run on another tab's connection. Pass the
    statements to ``batch([...])``, which runs them atomically."""


class LocalObjectError(TabStatementError):
    """A write that must run on the leader tab uses objects that live on one tab's
    connection: its TEMP tables, views and triggers, or databases it ATTACHed (or a
    TEMP trigger is put on a shared table, where it would never fire). Read such
    data first and pass it as parameters, or make the objects ordinary tables."""


class ConnectionPragmaError(TabStatementError):
    """A PRAGMA that changes how one connection writes (``foreign_keys``,
    ``recursive_triggers``...) set through ``execute`` in one tab would not apply to
    its writes, which run on the leader's connection. Open every tab with
    ``pragmas={...}`` instead."""


class AsyncOnlyError(DatasyncError):
    """Something that must complete synchronously would have to wait for I/O (an
    asynchronous backend such as IndexedDB, or WebCrypto): use the async API."""


class UnflushedWritesError(DatasyncError):
    """A follower's catch-up found writes of its own not yet flushed: only a store
    that never writes (a multi-tab follower) catches up with another writer."""


class TransactionActiveError(DatasyncError):
    """An operation that replaces or re-encrypts the database, or closes it, was
    called inside a transaction: end the transaction (commit or roll back) first."""


class BusyTimeoutError(DatasyncError):
    """Another transaction (of this tab or of another tab) held the database longer
    than ``busy_timeout`` seconds; this write or transaction was not applied: retry
    it, and keep transactions short (SQLite's ``SQLITE_BUSY`` after its timeout)."""


class TransactionAbortedError(DatasyncError):
    """The transaction was rolled back and nothing of it was applied: leadership
    moved to another tab while it was open, its tab stopped answering for longer
    than the lease, or it was used after it ended. Run it again from the start."""


class NotLeaderError(DatasyncError):
    """Only the leader tab can do this (replace the whole database): call
    ``request_leadership()`` first."""


class BackupTargetError(DatasyncError):
    """``backup()`` was given a target that already holds a database, or the
    source itself: back up into a new, empty one."""


class CryptoUnavailableError(DatasyncError):
    """Encryption cannot run here: the ``cryptography`` package is missing natively
    (``pip install 'datasync[crypto]'``), or WebCrypto is unavailable in the
    browser (it needs a secure context: https or localhost)."""


class LeaderUnavailableError(DatasyncError):
    """No leader tab answered in time; the write was not applied (safe to retry)."""


class QueuedWriteTimeoutError(DatasyncError):
    """A queued write was not applied in time. It stays queued, durably, and a
    leader applies it later: do **not** queue it again. ``id`` names it."""

    def __init__(self, message: str, entry_id: str = "") -> None:
        super().__init__(message)
        self.id = entry_id


class RemoteError(DatasyncError):
    """A forwarded statement failed on the leader tab with an error of a class this
    tab does not know; ``name`` is that class's name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


class NotSupportedError(DatasyncError):
    """A SQLite feature datasync does not offer on its databases (WAL, exclusive
    locking mode, shared cache); the message says what to use instead."""


class VFSRegistrationError(DatasyncError):
    """SQLite refused to register the datasync VFS (a SQLite built without VFS
    support); datasync cannot run on it."""


class DatabaseClosedError(DatasyncError):
    """The database was used after ``close()``; open it again."""


class WrongKeyError(DatasyncError):
    """The encryption key does not open this store."""


class VersionNotRetainedError(DatasyncError):
    """``restore(version)`` for a version the store no longer keeps (or never kept:
    open it with ``retain_versions=N``). ``versions()`` lists the restorable ones."""


class SyncError(DatasyncError):
    """Base class of the errors of syncing with a server (:mod:`datasync.sync`)."""


class SyncUnavailableError(SyncError):
    """The sync server could not be reached (down, no network, timed out). A write
    made meanwhile is kept in the replica's outbox and pushed later; retry a pull."""


class SyncAuthError(SyncError):
    """The server refused the token (HTTP 401: missing, malformed, badly signed or
    expired): get a new one (``python -m datasync token``) and pass ``auth_token=``."""


class SyncForbiddenError(SyncError):
    """The token is valid but does not allow this (HTTP 403): it names another
    database, or it is read-only and this was a write."""


class SyncRequestError(SyncError):
    """The server refused a request as malformed or too large (HTTP 400, 413); the
    message carries the server's reason. Nothing was applied."""


class SyncProtocolError(SyncError):
    """The server's answer is not what the sync protocol says (a truncated body, a
    wrong content type): a proxy in between, or a server of another version."""


class ReplicaMismatchError(SyncError):
    """The local store is a replica of another primary database (its id differs
    from the server's): open another local name, or delete this one to start over."""


class ReplicaWriteError(SyncError):
    """A call a replica cannot forward to its primary (an interactive transaction,
    a whole-database replacement): the message says what to use instead."""


class MigrationError(DatasyncError):
    """A list of migrations cannot be applied as given (``db.migrate``). The
    database is left at the last version that applied completely; ``version``
    names the migration at fault (None when the list as a whole is)."""

    def __init__(self, message: str, *, version: int | None = None) -> None:
        super().__init__(message)
        self.version = version


class MigrationOrderError(MigrationError):
    """The versions are not 1, 2, 3... with no gap and no duplicate (or a version
    is not a positive integer): renumber the migrations; nothing was applied."""


class MigrationChecksumError(MigrationError):
    """A migration already applied has changed since (its SQL's checksum differs
    from the one recorded): restore its text and add a new migration instead."""


class MigrationFailedError(MigrationError):
    """A migration's ``up`` (or ``down``) raised; its transaction was rolled back
    and the database stays at the version before it. The cause is chained."""


class IrreversibleMigrationError(MigrationError):
    """A rollback would have to run a migration that has no ``down``: nothing was
    rolled back; give it a ``down`` or roll back to a later target."""


class SchemaTooNewError(MigrationError):
    """The database has migrations this code does not know (it was migrated by a
    newer release, in another tab or on the server): reload the page or upgrade
    the code; nothing was changed."""


class NotReadOnlyError(DatasyncError, ValueError):
    """A call that runs its statement again and again (``db.live``, ``db.cached``)
    was given one that writes: give it a query that only reads, and run the write
    once with ``execute``."""
