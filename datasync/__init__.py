"""datasync: a persistent SQLite database for Python in the browser and natively.

Example::

    import asyncio, datasync

    async def main():
        db = await datasync.open("app.dsdb")
        await db.execute("CREATE TABLE IF NOT EXISTS kv(k TEXT PRIMARY KEY, v)")
        await db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", ("a", 1))
        print(await db.query("SELECT * FROM kv"))
        await db.close()

    asyncio.run(main())
"""
from .cdc import Change
from .database import Database, Result
from .errors import (
    AsyncOnlyError,
    BackendError,
    BackupTargetError,
    BusyTimeoutError,
    ConnectionPragmaError,
    CorruptBlockError,
    CrossDatabaseWriteError,
    CryptoUnavailableError,
    DatabaseClosedError,
    DatasyncError,
    DeposedLeaderError,
    VersionConflictError,
    FormatVersionError,
    InvalidOptionError,
    LeaderUnavailableError,
    LocalObjectError,
    NotADatasyncStoreError,
    NotASQLiteImageError,
    NotLeaderError,
    NotReadOnlyError,
    NotSupportedError,
    QueuedWriteTimeoutError,
    RemoteError,
    StorageBlockedError,
    StorageFullError,
    StorageUnavailableError,
    StoreBusyError,
    StoreCreateError,
    StoreNotFoundError,
    TabStatementError,
    TransactionAbortedError,
    TransactionActiveError,
    TransactionStatementError,
    UnflushedWritesError,
    VFSRegistrationError,
    VersionNotRetainedError,
    SyncError,
    SyncUnavailableError,
    SyncAuthError,
    SyncForbiddenError,
    SyncRequestError,
    SyncProtocolError,
    ReplicaMismatchError,
    ReplicaWriteError,
    IrreversibleMigrationError,
    MigrationChecksumError,
    MigrationError,
    MigrationFailedError,
    MigrationOrderError,
    SchemaTooNewError,
    WrongKeyError,
)
from . import runtime as _runtime
from .opener import open

_runtime.install()  # the native/browser wiring (datasync/runtime.py)

__version__ = "0.3.0"

__all__ = [
    "AsyncOnlyError",
    "BackendError",
    "BackupTargetError",
    "BusyTimeoutError",
    "Change",
    "ConnectionPragmaError",
    "CorruptBlockError",
    "CrossDatabaseWriteError",
    "CryptoUnavailableError",
    "Database",
    "DatabaseClosedError",
    "DatasyncError",
    "DeposedLeaderError",
    "VersionConflictError",
    "FormatVersionError",
    "InvalidOptionError",
    "LeaderUnavailableError",
    "LocalObjectError",
    "NotADatasyncStoreError",
    "NotASQLiteImageError",
    "NotLeaderError",
    "NotReadOnlyError",
    "NotSupportedError",
    "QueuedWriteTimeoutError",
    "RemoteError",
    "Result",
    "StorageBlockedError",
    "StorageFullError",
    "StorageUnavailableError",
    "StoreBusyError",
    "StoreCreateError",
    "StoreNotFoundError",
    "TabStatementError",
    "TransactionAbortedError",
    "TransactionActiveError",
    "TransactionStatementError",
    "UnflushedWritesError",
    "VFSRegistrationError",
    "VersionNotRetainedError",
    "SyncError",
    "SyncUnavailableError",
    "SyncAuthError",
    "SyncForbiddenError",
    "SyncRequestError",
    "SyncProtocolError",
    "ReplicaMismatchError",
    "ReplicaWriteError",
    "IrreversibleMigrationError",
    "MigrationChecksumError",
    "MigrationError",
    "MigrationFailedError",
    "MigrationOrderError",
    "SchemaTooNewError",
    "WrongKeyError",
    "open",
    "__version__",
]
