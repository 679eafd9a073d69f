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
from .database import Database, Result, open
from .errors import (
    AsyncOnlyError,
    BackendError,
    BackupTargetError,
    CryptoUnavailableError,
    LeaderUnavailableError,
    NotLeaderError,
    NotSupportedError,
    QueuedWriteTimeoutError,
    RemoteError,
    TransactionActiveError,
    VFSRegistrationError,
    CorruptBlockError,
    CrossDatabaseWriteError,
    DatabaseClosedError,
    DatasyncError,
    DeposedLeaderError,
    FormatVersionError,
    InvalidOptionError,
    NotADatasyncStoreError,
    NotASQLiteImageError,
    StorageBlockedError,
    StorageFullError,
    StorageUnavailableError,
    StoreBusyError,
    StoreCreateError,
    StoreNotFoundError,
    ConnectionPragmaError,
    LocalObjectError,
    TabStatementError,
    TransactionStatementError,
    VersionNotRetainedError,
    WrongKeyError,
)
from . import runtime as _runtime

_runtime.install()  # the native/browser wiring (datasync/runtime.py)

__version__ = "0.3.0"

__all__ = [
    "AsyncOnlyError",
    "BackendError",
    "BackupTargetError",
    "CryptoUnavailableError",
    "LeaderUnavailableError",
    "NotLeaderError",
    "NotSupportedError",
    "QueuedWriteTimeoutError",
    "RemoteError",
    "TransactionActiveError",
    "VFSRegistrationError",
    "Change",
    "CorruptBlockError",
    "CrossDatabaseWriteError",
    "Database",
    "DatabaseClosedError",
    "DatasyncError",
    "DeposedLeaderError",
    "FormatVersionError",
    "InvalidOptionError",
    "NotADatasyncStoreError",
    "NotASQLiteImageError",
    "Result",
    "StorageBlockedError",
    "StorageFullError",
    "StorageUnavailableError",
    "StoreBusyError",
    "StoreCreateError",
    "StoreNotFoundError",
    "ConnectionPragmaError",
    "LocalObjectError",
    "TabStatementError",
    "TransactionStatementError",
    "VersionNotRetainedError",
    "WrongKeyError",
    "open",
    "__version__",
]
