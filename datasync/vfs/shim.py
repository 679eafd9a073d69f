"""The ctypes shim: SQLite's xMethods as thin callbacks onto Python file objects.

Example::

    from datasync import vfs
    vfs.register()                                   # once per process
    vfs.attach("/data/app.dsdb", store)              # serve a BlockStore under a name
    conn = sqlite3.connect(vfs.uri("/data/app.dsdb"), uri=True)

Each callback only converts arguments (pointers, 64-bit offsets, out-parameters)
and calls a plain method on a :class:`StoreFile` or :class:`MemoryFile`. One error
boundary, :func:`_fail`, maps any exception to the method's ``SQLITE_IOERR_*`` code
(``SQLITE_FULL`` for a full store) and keeps it for ``xGetLastError`` and
:func:`take_last_error`: no exception ever escapes into SQLite.

A main database name that nobody attached is opened on demand (natively: a
``sqlitefile`` store at that path, flushed at every commit, closed with its last
connection); URI parameters ``block_size`` and ``cache_bytes`` apply to it.
"""
from __future__ import annotations

import atexit
import ctypes
from builtins import open as builtins_open
import sqlite3
import itertools
import os
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable
from ctypes import c_void_p, memmove, memset, string_at
from dataclasses import dataclass
from typing import Any

from ..blockstore import DEFAULT_CACHE_BYTES, BlockStore
from ..errors import DatasyncError, InvalidOptionError, StoreBusyError
from ..format import DEFAULT_BLOCK_SIZE
from ..platform import IN_PYODIDE
from . import capi
from .capi import (
    SQLITE_BUSY,
    SQLITE_CANTOPEN,
    SQLITE_ERROR,
    SQLITE_FULL,
    SQLITE_IOERR_SHORT_READ,
    SQLITE_NOTFOUND,
    SQLITE_OK,
)
from . import plain
from .boundary import fail as _fail
from .boundary import last_error, take_last_error
from .files import LockManager, MemoryFile, StoreFile
from .guard import GUARD, last_opened, note_opened

VFS_NAME = "datasync"
_MAX_PATH = 1024
_IOCAPS = (
    capi.SQLITE_IOCAP_SAFE_APPEND
    | capi.SQLITE_IOCAP_SEQUENTIAL
    | capi.SQLITE_IOCAP_POWERSAFE_OVERWRITE
)


@dataclass
class _Attached:
    store: BlockStore
    locks: LockManager
    owned: bool  # opened on demand by the VFS: closed with its last file
    open_files: int = 0


_attached: dict[str, _Attached] = {}
_memfiles: dict[str, bytearray] = {}
_files: dict[int, StoreFile | MemoryFile] = {}
_registry_lock = threading.RLock()
_temp_names = itertools.count(1)

#: Opens a store for a main-database name nobody attached, or None to refuse.
StoreFactory = Callable[[str, dict[str, str]], BlockStore]


def _native_factory(name: str, params: dict[str, str]) -> BlockStore:
    from ..backends.sqlitefile import SqliteFileBackend

    try:
        block_size = int(params.get("block_size", DEFAULT_BLOCK_SIZE))
        cache_bytes = int(params.get("cache_bytes", DEFAULT_CACHE_BYTES))
    except ValueError as exc:
        raise InvalidOptionError(f"bad URI parameter for {name!r}: {exc}") from exc
    return BlockStore.open_sync(
        SqliteFileBackend(name), block_size=block_size, cache_bytes=cache_bytes
    )


default_store_factory: StoreFactory | None = None if IN_PYODIDE else _native_factory


# -- the public registry --------------------------------------------------------
def uri(name: str, **params: str) -> str:
    """The ``sqlite3.connect(..., uri=True)`` URI of ``name`` on this VFS."""
    query = urllib.parse.urlencode({"vfs": VFS_NAME, **params})
    return f"file:{urllib.parse.quote(name)}?{query}"


def attach(name: str, store: BlockStore) -> None:
    """Serve ``store`` under ``name``: connections opening that name use it."""
    with _registry_lock:
        if name in _attached:
            raise DatasyncError(f"a store is already attached as {name!r}")
        _attached[name] = _Attached(store, LockManager(store), owned=False)


def detach(name: str, *, hand_over: bool = False) -> bool:
    """Stop serving ``name``. Returns True once nothing of it is registered.

    Its connections should be closed first. If some are still open (one made in
    another thread, which the owner cannot close), ``hand_over=True`` gives the
    store to the VFS, which flushes its commits and closes it with its last file
    (synchronously: only a store whose flushes never suspend); returns False then,
    and the caller must not close the store. Otherwise open files raise
    DatasyncError."""
    with _registry_lock:
        entry = _attached.get(name)
        if entry is None:
            return True
        if entry.open_files:
            if not (hand_over and entry.store.flushes_sync):
                raise DatasyncError(
                    f"{name!r} still has {entry.open_files} open file(s); close its "
                    "connections first (each in the thread that made it)"
                )
            entry.owned = True
            entry.store.add_commit_listener(_flush_owned)
            return False
        del _attached[name]
        _memfiles.pop(name + "-journal", None)  # a PERSIST/TRUNCATE journal
        return True


def open_files(name: str) -> int:
    """How many files of store ``name`` SQLite has open now (one per connection,
    plus any ATTACH of it)."""
    entry = _attached.get(name)
    return 0 if entry is None else entry.open_files


def attached(name: str) -> BlockStore | None:
    """The store served under ``name``, if any."""
    entry = _attached.get(name)
    return None if entry is None else entry.store


# -- io methods -------------------------------------------------------------------
def _x_close(pfile: int) -> int:
    try:
        f = _files.pop(pfile, None)
        if f is None:
            return SQLITE_OK
        f.close()
        if isinstance(f, StoreFile):
            _release_store(f.name)
        return SQLITE_OK
    except BaseException as exc:
        return _fail(exc, capi.SQLITE_IOERR_CLOSE)


def _x_read(pfile: int, buf: int, amount: int, offset: int) -> int:
    try:
        data = _files[pfile].read(offset, amount)
        n = len(data)
        memmove(buf, data, n)
        if n < amount:
            memset(buf + n, 0, amount - n)
            return SQLITE_IOERR_SHORT_READ
        return SQLITE_OK
    except BaseException as exc:
        return _fail(exc, capi.SQLITE_IOERR_READ)


def _x_write(pfile: int, buf: int, amount: int, offset: int) -> int:
    try:
        f = _files[pfile]
        if offset == 0 and isinstance(f, StoreFile):  # page 1: written by every commit
            GUARD.check_commit(f.conn, f, f.name)
        f.write(offset, string_at(buf, amount))
        return SQLITE_OK
    except BaseException as exc:
        return _fail(exc, capi.SQLITE_IOERR_WRITE)


def _x_truncate(pfile: int, size: int) -> int:
    try:
        _files[pfile].truncate(size)
        return SQLITE_OK
    except BaseException as exc:
        return _fail(exc, capi.SQLITE_IOERR_TRUNCATE)


def _x_sync(pfile: int, flags: int) -> int:
    # Durability comes from the store's flushes, not from syncing files. A commit
    # syncs its database: the last moment to refuse one that writes two of them.
    try:
        f = _files[pfile]
        if isinstance(f, StoreFile):
            GUARD.check_commit(f.conn, f, f.name)
        return SQLITE_OK
    except BaseException as exc:
        return _fail(exc, capi.SQLITE_IOERR_FSYNC)


def _x_file_size(pfile: int, out) -> int:  # type: ignore[no-untyped-def]
    try:
        out[0] = _files[pfile].size()
        return SQLITE_OK
    except BaseException as exc:
        return _fail(exc, capi.SQLITE_IOERR_FSTAT)


def _x_lock(pfile: int, level: int) -> int:
    try:
        f = _files[pfile]
        if level == capi.SQLITE_LOCK_EXCLUSIVE and isinstance(f, StoreFile):
            GUARD.check_commit(f.conn, f, f.name)
        return SQLITE_OK if f.lock(level) else SQLITE_BUSY
    except BaseException as exc:
        return _fail(exc, capi.SQLITE_IOERR_LOCK)


def _x_unlock(pfile: int, level: int) -> int:
    try:
        _files[pfile].unlock(level)
        return SQLITE_OK
    except BaseException as exc:
        return _fail(exc, capi.SQLITE_IOERR_UNLOCK)


def _x_check_reserved(pfile: int, out) -> int:  # type: ignore[no-untyped-def]
    try:
        out[0] = 1 if _files[pfile].check_reserved() else 0
        return SQLITE_OK
    except BaseException as exc:
        return _fail(exc, capi.SQLITE_IOERR_CHECKRESERVEDLOCK)


#: PRAGMAs refused on a datasync database: (name, value) -> why, for the error.
REFUSED_PRAGMAS = {
    ("locking_mode", "exclusive"): (
        "PRAGMA locking_mode=EXCLUSIVE is not supported on a datasync database: a "
        "connection that never drops its lock never reaches a commit point, so sync() "
        "could not make its commits durable; datasync already keeps other processes "
        "out"),
    ("journal_mode", "wal"): (
        "PRAGMA journal_mode=WAL is not supported on a datasync database: its commits "
        "are made atomic and durable by the block store's flushes, with the rollback "
        "journal kept in memory (the default, journal_mode=MEMORY)"),
}


def _x_file_control(pfile: int, op: int, arg: int) -> int:
    try:
        if op == capi.SQLITE_FCNTL_LOCKSTATE and arg:
            ctypes.c_int.from_address(arg).value = _files[pfile].level
            return SQLITE_OK
        if op == capi.SQLITE_FCNTL_PRAGMA and arg:
            return _pragma(arg)
        if op == capi.SQLITE_FCNTL_PDB and arg:
            f = _files[pfile]
            if isinstance(f, StoreFile):
                f.conn = c_void_p.from_address(arg).value
                note_opened(f.conn)
            return SQLITE_OK
        return SQLITE_NOTFOUND
    except BaseException as exc:
        return _fail(exc, SQLITE_ERROR)


def _pragma(arg: int) -> int:
    """SQLITE_FCNTL_PRAGMA: ``arg`` is ``char*[3]`` (error out, name, value or NULL).
    Refuse the PRAGMAs in REFUSED_PRAGMAS with their message; SQLite runs the rest."""
    texts = (ctypes.c_char_p * 3).from_address(arg)
    name = (texts[1] or b"").decode("utf-8", "replace").lower()
    value = (texts[2] or b"").decode("utf-8", "replace").strip("'\" ").lower()
    why = REFUSED_PRAGMAS.get((name, value))
    if why is None:
        return SQLITE_NOTFOUND
    message = why.encode() + b"\0"
    buffer = capi.sqlite_library().sqlite3_malloc(len(message))  # SQLite frees it
    if buffer:
        ctypes.memmove(buffer, message, len(message))
        (ctypes.c_void_p * 3).from_address(arg)[0] = buffer
    return SQLITE_ERROR


def _x_sector_size(pfile: int) -> int:
    return 4096


def _x_device_characteristics(pfile: int) -> int:
    return _IOCAPS


# -- vfs methods ------------------------------------------------------------------
def _uri_params(zname: int, keys: tuple[str, ...]) -> dict[str, str]:
    lib = capi.sqlite_library()
    params = {}
    for key in keys:
        value = lib.sqlite3_uri_parameter(zname, key.encode())
        if value is not None:
            params[key] = value.decode()
    return params


#: ``PRAGMA application_id`` of a sqlitefile store, as the SQLite header holds it.
_STORE_HEADER_ID = (0x4453796E).to_bytes(4, "big")


def _is_store_file(path: str) -> bool:
    """True if ``path`` is an existing datasync store file (its SQLite header says so)."""
    try:
        with builtins_open(path, "rb") as fh:
            header = fh.read(72)
    except OSError:
        return False
    return header[:16] == b"SQLite format 3\0" and header[68:72] == _STORE_HEADER_ID


def _is_store_name(name: str, zname: int) -> bool:
    """Whether a main-database name is a datasync store, or an ordinary file.

    A store: a name served by ``datasync.open`` (or already opened by this VFS); a
    name whose URI says ``vfs=datasync`` (``sqlite3.connect(vfs.uri(path))``); an
    existing file that is a datasync store. Anything else, such as the target of
    ``VACUUM INTO 'copy.db'`` or ``ATTACH 'other.db'``, is an ordinary SQLite file,
    opened with SQLite's own VFS (plain.py), as sqlite3 users expect."""
    if name in _attached:
        return True
    if _uri_params(zname, ("vfs",)).get("vfs") == VFS_NAME:
        return True
    return not IN_PYODIDE and _is_store_file(name)


def _acquire_store(name: str, zname: int) -> _Attached:
    with _registry_lock:
        entry = _attached.get(name)
        if entry is None:
            if default_store_factory is None:
                raise DatasyncError(
                    f"no datasync database is open as {name!r}; open it with "
                    "`await datasync.open(name)` first"
                )
            store = default_store_factory(name, _uri_params(zname, ("block_size", "cache_bytes")))
            store.add_commit_listener(_flush_owned)
            entry = _attached[name] = _Attached(store, LockManager(store), owned=True)
        entry.open_files += 1
        return entry


def _flush_owned(store: BlockStore) -> None:
    # A failure is recorded by the store (stats(), the datasync logger); the blocks
    # stay committed and the next commit or close flushes them.
    store.flush_in_background()


_JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")


def _hot_journal(db_name: str) -> bool:
    """True if the in-memory rollback journal of ``db_name`` holds a valid header:
    SQLite left it to roll a torn commit back."""
    data = _memfiles.get(db_name + "-journal")
    return bool(data) and bytes(data[:8]) == _JOURNAL_MAGIC


LockManager.hot_journal = staticmethod(_hot_journal)


def _release_store(name: str) -> None:
    """A file of store ``name`` closed. The VFS closes a store it owns (opened on
    demand, or handed over by ``detach``) with its last file: synchronously, with
    nothing scheduled on any event loop. If that final flush fails the entry stays
    (its commits with it) and the failure is recorded; ``datasync.open`` or the
    next connection retries it."""
    with _registry_lock:
        entry = _attached.get(name)
        if entry is None:
            return
        entry.open_files -= 1
        if entry.owned and entry.open_files <= 0:
            try:
                entry.store.close_sync()
            except Exception:
                return  # recorded by the store; kept with its committed blocks
            del _attached[name]
            _memfiles.pop(name + "-journal", None)  # a PERSIST/TRUNCATE journal


def close_idle(name: str) -> None:
    """Close a store the VFS opened for plain connections that are all closed now,
    but whose final flush had failed: flush it again (raising if that fails too)
    and forget it. Raises StoreBusyError if such connections are still open."""
    with _registry_lock:
        entry = _attached.get(name)
        if entry is None or not entry.owned:
            return
        if entry.open_files > 0:
            raise StoreBusyError(
                f"{name!r} is still open through {entry.open_files} sqlite3 connection "
                "file(s) in this process (plain sqlite3 connections, or connections "
                "from db.connect() left open after db.close()); close them first")
        entry.store.close_sync()
        del _attached[name]
        _memfiles.pop(name + "-journal", None)


def _x_open(pvfs: int, zname: int, pfile: int, flags: int, out_flags) -> int:  # type: ignore[no-untyped-def]
    try:
        c_void_p.from_address(pfile).value = None
        name = string_at(zname).decode() if zname else f"<temp {next(_temp_names)}>"
        f: StoreFile | MemoryFile
        if zname and (plain.is_family(name) or (
                flags & capi.SQLITE_OPEN_MAIN_DB and not _is_store_name(name, zname))):
            return plain.open_file(zname, name, pfile, flags, out_flags)
        if flags & capi.SQLITE_OPEN_WAL:
            raise DatasyncError(
                "datasync does not support journal_mode=WAL; durability and atomic "
                "commits come from the block store (use the default journal mode)"
            )
        if flags & capi.SQLITE_OPEN_MAIN_DB and zname:
            if _uri_params(zname, ("cache",)).get("cache") == "shared":
                raise InvalidOptionError(
                    "a datasync database cannot be opened in shared-cache mode "
                    "(cache=shared): its connections must each have their own pager; "
                    "drop the cache=shared URI parameter")
            entry = _acquire_store(name, zname)
            f = StoreFile(entry.store, entry.locks, name)
        else:
            with _registry_lock:
                data = _memfiles.get(name)
                if data is None:
                    data = _memfiles[name] = bytearray()
            forget = (lambda: _memfiles.pop(name, None)) if (
                flags & capi.SQLITE_OPEN_DELETEONCLOSE or not zname) else None
            f = MemoryFile(name, data, on_close=forget)
        _files[pfile] = f
        c_void_p.from_address(pfile).value = ctypes.addressof(_IO_METHODS)
        if out_flags:
            out_flags[0] = flags
        return SQLITE_OK
    except BaseException as exc:
        return _fail(exc, SQLITE_CANTOPEN)


def _x_delete(pvfs: int, zname: bytes, sync_dir: int) -> int:
    try:
        if plain.is_family(zname.decode()):
            return plain.delete(zname, sync_dir)
        with _registry_lock:
            if _memfiles.pop(zname.decode(), None) is None:
                return capi.SQLITE_IOERR_DELETE_NOENT
        return SQLITE_OK
    except BaseException as exc:
        return _fail(exc, capi.SQLITE_IOERR_DELETE)


def _x_access(pvfs: int, zname: bytes, flags: int, out) -> int:  # type: ignore[no-untyped-def]
    try:
        name = zname.decode()
        if plain.is_family(name):
            return plain.access(zname, flags, out)
        exists = name in _memfiles or name in _attached
        if not exists and not IN_PYODIDE and not name.endswith(("-journal", "-wal")):
            exists = os.path.exists(name)
        out[0] = 1 if exists else 0
        return SQLITE_OK
    except BaseException as exc:
        return _fail(exc, capi.SQLITE_IOERR_ACCESS)


def _x_full_pathname(pvfs: int, zname: bytes, n_out: int, zout: int) -> int:
    try:
        name = zname.decode()
        if name not in _attached and not IN_PYODIDE:
            name = os.path.realpath(name)  # as SqliteFileBackend.key: one name per file
        raw = name.encode()
        if len(raw) >= n_out:
            return capi.SQLITE_CANTOPEN_FULLPATH
        memmove(zout, raw + b"\0", len(raw) + 1)
        return SQLITE_OK
    except BaseException as exc:
        return _fail(exc, SQLITE_CANTOPEN)


def _x_dlopen(pvfs: int, zname: bytes) -> None:
    return None


def _x_dlerror(pvfs: int, n: int, zout: int) -> None:
    msg = b"the datasync VFS does not load extensions\0"[: max(n - 1, 0)] + b"\0"
    if n > 0:
        memmove(zout, msg, min(len(msg), n))


def _x_dlsym(pvfs: int, handle: int, zsym: bytes) -> None:
    return None


def _x_dlclose(pvfs: int, handle: int) -> None:
    return None


def _x_randomness(pvfs: int, n: int, zout: int) -> int:
    memmove(zout, os.urandom(n), n)
    return n


def _x_sleep(pvfs: int, microseconds: int) -> int:
    time.sleep(microseconds / 1_000_000)
    return microseconds


def _x_current_time(pvfs: int, out) -> int:  # type: ignore[no-untyped-def]
    out[0] = time.time() / 86400.0 + 2440587.5
    return SQLITE_OK


def _x_current_time_int64(pvfs: int, out) -> int:  # type: ignore[no-untyped-def]
    out[0] = int((time.time() / 86400.0 + 2440587.5) * 86400000)
    return SQLITE_OK


def _x_get_last_error(pvfs: int, n: int, zout: int) -> int:
    exc = last_error()
    if exc is None or n <= 0:
        return 0
    msg = f"{type(exc).__name__}: {exc}".encode()[: n - 1] + b"\0"
    memmove(zout, msg, len(msg))
    return 1


# -- registration -------------------------------------------------------------
_IO_METHODS = capi.sqlite3_io_methods(
    1,
    capi.xClose(_x_close),
    capi.xRead(_x_read),
    capi.xWrite(_x_write),
    capi.xTruncate(_x_truncate),
    capi.xSync(_x_sync),
    capi.xFileSize(_x_file_size),
    capi.xLock(_x_lock),
    capi.xUnlock(_x_unlock),
    capi.xCheckReservedLock(_x_check_reserved),
    capi.xFileControl(_x_file_control),
    capi.xSectorSize(_x_sector_size),
    capi.xDeviceCharacteristics(_x_device_characteristics),
)
_VFS_NAME_BYTES = VFS_NAME.encode()
_VFS = capi.sqlite3_vfs(
    2,
    ctypes.sizeof(capi.sqlite3_file) + ctypes.sizeof(c_void_p),
    _MAX_PATH,
    None,
    _VFS_NAME_BYTES,
    None,
    capi.xOpen(_x_open),
    capi.xDelete(_x_delete),
    capi.xAccess(_x_access),
    capi.xFullPathname(_x_full_pathname),
    capi.xDlOpen(_x_dlopen),
    capi.xDlError(_x_dlerror),
    capi.xDlSym(_x_dlsym),
    capi.xDlClose(_x_dlclose),
    capi.xRandomness(_x_randomness),
    capi.xSleep(_x_sleep),
    capi.xCurrentTime(_x_current_time),
    capi.xGetLastError(_x_get_last_error),
    capi.xCurrentTimeInt64(_x_current_time_int64),
)
_registered = False
#: Connections opened by datasync itself, closed at exit before unregistering.
_connections: "weakref.WeakSet[object]" = weakref.WeakSet()


def register() -> None:
    """Register the ``datasync`` VFS with SQLite (idempotent)."""
    global _registered
    with _registry_lock:
        if _registered:
            return
        lib = capi.sqlite_library()
        _VFS.szOsFile = max(_VFS.szOsFile, plain.file_size_needed())
        rc = lib.sqlite3_vfs_register(ctypes.addressof(_VFS), 0)
        if rc != SQLITE_OK:
            raise DatasyncError(f"sqlite3_vfs_register failed with code {rc}")
        _registered = True
        # Keep the callback thunks alive past interpreter shutdown: SQLite may call
        # them while the last connections are torn down.
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(_IO_METHODS))
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(_VFS))
        plain.keep_alive()


class Connection(sqlite3.Connection):
    """A ``sqlite3.Connection`` that datasync closes cleanly at interpreter exit.

    Example: ``sqlite3.connect(uri("/tmp/a.dsdb"), uri=True, factory=Connection)``
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        note_opened(None)
        super().__init__(*args, **kwargs)
        #: The connection's ``sqlite3*`` (from SQLITE_FCNTL_PDB), for the few C
        #: calls the stdlib module does not expose; None if SQLite did not say.
        self.handle: int | None = last_opened()
        _connections.add(self)


@atexit.register
def _shutdown() -> None:
    """At exit: close our connections, flush stores opened on demand, unregister."""
    global _registered
    if not _registered:
        return
    for conn in list(_connections):
        try:
            conn.close()  # type: ignore[attr-defined]
        except Exception:
            pass
    # Flush committed data first, while every store's backend is still open.
    for entry in list(_attached.values()):
        try:
            if entry.store.flushes_sync and not entry.store.closed:
                entry.store.flush_sync()
        except Exception:
            pass
    if _files or plain.open_count():
        # Connections the application left open: close them now, while the
        # interpreter (and our callbacks) still work; never a backend's own.
        import gc

        from ..backends.sqlitefile import StoreConnection

        for obj in gc.get_objects():
            if isinstance(obj, sqlite3.Connection) and not isinstance(obj, StoreConnection):
                try:
                    obj.close()
                except Exception:
                    pass
    for name, entry in list(_attached.items()):
        try:
            if entry.owned:
                entry.store.close_sync()
                _attached.pop(name, None)
            elif entry.store.flushes_sync and not entry.store.closed:
                entry.store.flush_sync()  # relaxed commits not yet flushed: keep them
        except Exception:
            pass
    if not _files and not plain.open_count():
        capi.sqlite_library().sqlite3_vfs_unregister(ctypes.addressof(_VFS))
        _registered = False
