"""SQLite's C API as ctypes sees it: the library, constants and VFS structs.

Example::

    from datasync.vfs import capi
    lib = capi.sqlite_library()
    assert lib.sqlite3_vfs_find(None)   # the default VFS

The library is the one the standard ``sqlite3`` module uses: natively the
``_sqlite3`` extension's own dependency, in Pyodide the main module (``CDLL(None)``).
Signatures follow sqlite3.h exactly (WebAssembly checks function types at call time).
"""
from __future__ import annotations

import ctypes
from ctypes import CFUNCTYPE, POINTER, Structure, c_char_p, c_double, c_int, c_int64, c_void_p

from ..platform import IN_PYODIDE

SQLITE_OK = 0
SQLITE_ERROR = 1
SQLITE_BUSY = 5
SQLITE_NOMEM = 7
SQLITE_IOERR = 10
SQLITE_NOTFOUND = 12
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14

SQLITE_IOERR_READ = SQLITE_IOERR | (1 << 8)
SQLITE_IOERR_SHORT_READ = SQLITE_IOERR | (2 << 8)
SQLITE_IOERR_WRITE = SQLITE_IOERR | (3 << 8)
SQLITE_IOERR_FSYNC = SQLITE_IOERR | (4 << 8)
SQLITE_IOERR_TRUNCATE = SQLITE_IOERR | (6 << 8)
SQLITE_IOERR_FSTAT = SQLITE_IOERR | (7 << 8)
SQLITE_IOERR_UNLOCK = SQLITE_IOERR | (8 << 8)
SQLITE_IOERR_RDLOCK = SQLITE_IOERR | (9 << 8)
SQLITE_IOERR_DELETE = SQLITE_IOERR | (10 << 8)
SQLITE_IOERR_ACCESS = SQLITE_IOERR | (13 << 8)
SQLITE_IOERR_CHECKRESERVEDLOCK = SQLITE_IOERR | (14 << 8)
SQLITE_IOERR_LOCK = SQLITE_IOERR | (15 << 8)
SQLITE_IOERR_CLOSE = SQLITE_IOERR | (16 << 8)
SQLITE_IOERR_DELETE_NOENT = SQLITE_IOERR | (23 << 8)
SQLITE_CANTOPEN_FULLPATH = SQLITE_CANTOPEN | (3 << 8)

SQLITE_LOCK_NONE = 0
SQLITE_LOCK_SHARED = 1
SQLITE_LOCK_RESERVED = 2
SQLITE_LOCK_PENDING = 3
SQLITE_LOCK_EXCLUSIVE = 4

SQLITE_OPEN_READONLY = 0x1
SQLITE_OPEN_READWRITE = 0x2
SQLITE_OPEN_CREATE = 0x4
SQLITE_OPEN_DELETEONCLOSE = 0x8
SQLITE_OPEN_MAIN_DB = 0x100
SQLITE_OPEN_TEMP_DB = 0x200
SQLITE_OPEN_TRANSIENT_DB = 0x400
SQLITE_OPEN_MAIN_JOURNAL = 0x800
SQLITE_OPEN_TEMP_JOURNAL = 0x1000
SQLITE_OPEN_SUBJOURNAL = 0x2000
SQLITE_OPEN_SUPER_JOURNAL = 0x4000
SQLITE_OPEN_WAL = 0x80000

SQLITE_ACCESS_EXISTS = 0
SQLITE_ACCESS_READWRITE = 1

SQLITE_IOCAP_SAFE_APPEND = 0x200
SQLITE_IOCAP_SEQUENTIAL = 0x400
SQLITE_IOCAP_UNDELETABLE_WHEN_OPEN = 0x800
SQLITE_IOCAP_POWERSAFE_OVERWRITE = 0x1000

SQLITE_FCNTL_LOCKSTATE = 1
SQLITE_FCNTL_PRAGMA = 14
#: Sent by SQLite once a database file is open: ``arg`` is ``sqlite3**``, the
#: connection that opened it (sqlite3BtreeOpen).
SQLITE_FCNTL_PDB = 30


class sqlite3_file(Structure):
    _fields_ = [("pMethods", c_void_p)]


# io methods (version 1)
xClose = CFUNCTYPE(c_int, c_void_p)
xRead = CFUNCTYPE(c_int, c_void_p, c_void_p, c_int, c_int64)
xWrite = CFUNCTYPE(c_int, c_void_p, c_void_p, c_int, c_int64)
xTruncate = CFUNCTYPE(c_int, c_void_p, c_int64)
xSync = CFUNCTYPE(c_int, c_void_p, c_int)
xFileSize = CFUNCTYPE(c_int, c_void_p, POINTER(c_int64))
xLock = CFUNCTYPE(c_int, c_void_p, c_int)
xUnlock = CFUNCTYPE(c_int, c_void_p, c_int)
xCheckReservedLock = CFUNCTYPE(c_int, c_void_p, POINTER(c_int))
xFileControl = CFUNCTYPE(c_int, c_void_p, c_int, c_void_p)
xSectorSize = CFUNCTYPE(c_int, c_void_p)
xDeviceCharacteristics = CFUNCTYPE(c_int, c_void_p)


class sqlite3_io_methods(Structure):
    _fields_ = [
        ("iVersion", c_int),
        ("xClose", xClose),
        ("xRead", xRead),
        ("xWrite", xWrite),
        ("xTruncate", xTruncate),
        ("xSync", xSync),
        ("xFileSize", xFileSize),
        ("xLock", xLock),
        ("xUnlock", xUnlock),
        ("xCheckReservedLock", xCheckReservedLock),
        ("xFileControl", xFileControl),
        ("xSectorSize", xSectorSize),
        ("xDeviceCharacteristics", xDeviceCharacteristics),
    ]


# io methods of version 2 (shared memory, for WAL) and 3 (memory-mapped I/O)
xShmMap = CFUNCTYPE(c_int, c_void_p, c_int, c_int, c_int, c_void_p)
xShmLock = CFUNCTYPE(c_int, c_void_p, c_int, c_int, c_int)
xShmBarrier = CFUNCTYPE(None, c_void_p)
xShmUnmap = CFUNCTYPE(c_int, c_void_p, c_int)
xFetch = CFUNCTYPE(c_int, c_void_p, c_int64, c_int, c_void_p)
xUnfetch = CFUNCTYPE(c_int, c_void_p, c_int64, c_void_p)


class sqlite3_io_methods_v3(Structure):
    """``sqlite3_io_methods`` up to version 3 (how SQLite's own VFS files look)."""

    _fields_ = [
        *sqlite3_io_methods._fields_,
        ("xShmMap", xShmMap),
        ("xShmLock", xShmLock),
        ("xShmBarrier", xShmBarrier),
        ("xShmUnmap", xShmUnmap),
        ("xFetch", xFetch),
        ("xUnfetch", xUnfetch),
    ]


# vfs methods (version 2)
xOpen = CFUNCTYPE(c_int, c_void_p, c_void_p, c_void_p, c_int, POINTER(c_int))
xDelete = CFUNCTYPE(c_int, c_void_p, c_char_p, c_int)
xAccess = CFUNCTYPE(c_int, c_void_p, c_char_p, c_int, POINTER(c_int))
xFullPathname = CFUNCTYPE(c_int, c_void_p, c_char_p, c_int, c_void_p)
xDlOpen = CFUNCTYPE(c_void_p, c_void_p, c_char_p)
xDlError = CFUNCTYPE(None, c_void_p, c_int, c_void_p)
xDlSym = CFUNCTYPE(c_void_p, c_void_p, c_void_p, c_char_p)
xDlClose = CFUNCTYPE(None, c_void_p, c_void_p)
xRandomness = CFUNCTYPE(c_int, c_void_p, c_int, c_void_p)
xSleep = CFUNCTYPE(c_int, c_void_p, c_int)
xCurrentTime = CFUNCTYPE(c_int, c_void_p, POINTER(c_double))
xGetLastError = CFUNCTYPE(c_int, c_void_p, c_int, c_void_p)
xCurrentTimeInt64 = CFUNCTYPE(c_int, c_void_p, POINTER(c_int64))


class sqlite3_vfs(Structure):
    pass


sqlite3_vfs._fields_ = [
    ("iVersion", c_int),
    ("szOsFile", c_int),
    ("mxPathname", c_int),
    ("pNext", c_void_p),
    ("zName", c_char_p),
    ("pAppData", c_void_p),
    ("xOpen", xOpen),
    ("xDelete", xDelete),
    ("xAccess", xAccess),
    ("xFullPathname", xFullPathname),
    ("xDlOpen", xDlOpen),
    ("xDlError", xDlError),
    ("xDlSym", xDlSym),
    ("xDlClose", xDlClose),
    ("xRandomness", xRandomness),
    ("xSleep", xSleep),
    ("xCurrentTime", xCurrentTime),
    ("xGetLastError", xGetLastError),
    ("xCurrentTimeInt64", xCurrentTimeInt64),
]

_LIB: ctypes.CDLL | None = None


def sqlite_library() -> ctypes.CDLL:
    """The SQLite library behind the standard ``sqlite3`` module, with the few
    functions datasync calls given their C signatures."""
    global _LIB
    if _LIB is None:
        if IN_PYODIDE:
            lib = ctypes.CDLL(None)
        else:
            import _sqlite3

            lib = ctypes.CDLL(_sqlite3.__file__)
        lib.sqlite3_vfs_find.argtypes = [c_char_p]
        lib.sqlite3_vfs_find.restype = c_void_p
        lib.sqlite3_vfs_register.argtypes = [c_void_p, c_int]
        lib.sqlite3_vfs_register.restype = c_int
        lib.sqlite3_vfs_unregister.argtypes = [c_void_p]
        lib.sqlite3_vfs_unregister.restype = c_int
        lib.sqlite3_uri_parameter.argtypes = [c_void_p, c_char_p]
        lib.sqlite3_uri_parameter.restype = c_char_p
        lib.sqlite3_malloc.argtypes = [c_int]
        lib.sqlite3_malloc.restype = c_void_p
        # Per-connection state the stdlib module does not expose (multi-tab).
        lib.sqlite3_last_insert_rowid.argtypes = [c_void_p]
        lib.sqlite3_last_insert_rowid.restype = c_int64
        lib.sqlite3_set_last_insert_rowid.argtypes = [c_void_p, c_int64]
        lib.sqlite3_set_last_insert_rowid.restype = None
        lib.sqlite3_changes.argtypes = [c_void_p]
        lib.sqlite3_changes.restype = c_int
        lib.sqlite3_total_changes.argtypes = [c_void_p]
        lib.sqlite3_total_changes.restype = c_int
        # Which schemas a connection writes (the one-database-per-transaction rule).
        if hasattr(lib, "sqlite3_db_name"):  # SQLite 3.39+
            lib.sqlite3_db_name.argtypes = [c_void_p, c_int]
            lib.sqlite3_db_name.restype = c_char_p
        lib.sqlite3_db_filename.argtypes = [c_void_p, c_char_p]
        lib.sqlite3_db_filename.restype = c_char_p
        lib.sqlite3_txn_state.argtypes = [c_void_p, c_char_p]
        lib.sqlite3_txn_state.restype = c_int
        # Preparing without running: how a statement is classified (tabs).
        lib.sqlite3_prepare_v2.argtypes = [c_void_p, c_char_p, c_int, POINTER(c_void_p),
                                           c_void_p]
        lib.sqlite3_prepare_v2.restype = c_int
        lib.sqlite3_stmt_readonly.argtypes = [c_void_p]
        lib.sqlite3_stmt_readonly.restype = c_int
        lib.sqlite3_stmt_isexplain.argtypes = [c_void_p]  # SQLite 3.28+
        lib.sqlite3_stmt_isexplain.restype = c_int
        lib.sqlite3_finalize.argtypes = [c_void_p]
        lib.sqlite3_finalize.restype = c_int
        _LIB = lib
    return _LIB


def statement_readonly(handle: int, sql: str) -> bool | None:
    """Whether ``sql`` (its first statement) only reads, as SQLite prepares it on the
    connection ``handle`` (``sqlite3_stmt_readonly``; an ``EXPLAIN`` of anything
    only reads), without running it; None if
    SQLite cannot prepare it there (a syntax error, a table it does not know). An
    authorizer set on the connection sees the preparation.

    Example: ``statement_readonly(conn.handle, "DELETE FROM t")  # False``"""
    facts = statement_facts(handle, sql)
    return None if facts is None else facts[0] or facts[1]  # EXPLAIN never writes


def statement_facts(handle: int, sql: str) -> tuple[bool, bool] | None:
    """``(readonly, explain)`` of ``sql`` (its first statement) as SQLite prepares it
    on ``handle``, without running it (``sqlite3_stmt_readonly``,
    ``sqlite3_stmt_isexplain``); None if SQLite cannot prepare it there. SQLite
    calls an ``EXPLAIN`` of a write not read-only, and the authorizer sees the
    write's actions while it is prepared, but it only describes the write: callers
    treat it as a read.

    Example: ``statement_facts(conn.handle, "EXPLAIN DELETE FROM t")  # (False, True)``"""
    lib = sqlite_library()
    stmt = c_void_p()
    rc = lib.sqlite3_prepare_v2(handle, sql.encode(), -1, ctypes.byref(stmt), None)
    try:
        if rc != 0 or not stmt.value:
            return None
        return bool(lib.sqlite3_stmt_readonly(stmt)), bool(lib.sqlite3_stmt_isexplain(stmt))
    finally:
        if stmt.value:
            lib.sqlite3_finalize(stmt)


_DEFAULT_VFS: "sqlite3_vfs | None" = None


def default_vfs() -> "tuple[int, sqlite3_vfs]":
    """SQLite's own default VFS (``unix`` natively, on Emscripten's file system in
    Pyodide): its address and its struct, to call for ordinary files. Found before
    datasync registers itself (never as the default), so it is never datasync."""
    global _DEFAULT_VFS
    lib = sqlite_library()
    address = lib.sqlite3_vfs_find(None)
    if not address:
        raise OSError("SQLite has no default VFS")
    if _DEFAULT_VFS is None or ctypes.addressof(_DEFAULT_VFS) != address:
        _DEFAULT_VFS = sqlite3_vfs.from_address(address)
    return address, _DEFAULT_VFS
