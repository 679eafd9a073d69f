"""The ctypes callbacks: SQLite's xMethods as thin calls onto the VFS object.

Example::

    from datasync.vfs import callbacks
    callbacks.register()                # sqlite3_vfs_register, once per process
    callbacks.VFS.registry.attach(name, store)

Each callback only converts arguments (pointers, 64-bit offsets, out-parameters)
and calls a method of :data:`VFS` (a :class:`~.core.DatasyncVFS`) or of a file
object; every one catches ``BaseException`` and hands it to the error boundary
(:func:`~.boundary.fail`): an exception escaping a ctypes callback would be
printed and turned into 0, i.e. ``SQLITE_OK``. Signatures are exactly those of
``sqlite3.h`` (WebAssembly checks function types at call time).
"""
from __future__ import annotations

import atexit
import ctypes
import os
import sqlite3
import time
import weakref
from ctypes import memmove, memset, string_at
from typing import Any

from ..errors import VFSRegistrationError
from . import capi, plain
from .boundary import fail, last_error
from .capi import SQLITE_BUSY, SQLITE_CANTOPEN, SQLITE_ERROR, SQLITE_IOERR_SHORT_READ, SQLITE_OK
from .core import VFS_NAME, DatasyncVFS
from .files import StoreFile
from .guard import GUARD, last_opened, note_opened

#: The process's one datasync VFS.
VFS = DatasyncVFS()
_MAX_PATH = 1024
_IOCAPS = (  # only what holds for bytes in memory (see docs/architecture.md)
    capi.SQLITE_IOCAP_SAFE_APPEND
    | capi.SQLITE_IOCAP_SEQUENTIAL
    | capi.SQLITE_IOCAP_POWERSAFE_OVERWRITE
)


# -- io methods (stores and memory files) -------------------------------------------
def _x_close(pfile: int) -> int:
    try:
        VFS.close(pfile)
        return SQLITE_OK
    except BaseException as exc:
        return fail(exc, capi.SQLITE_IOERR_CLOSE)


def _x_read(pfile: int, buf: int, amount: int, offset: int) -> int:
    try:
        data = VFS.files[pfile].read(offset, amount)
        n = len(data)
        memmove(buf, data, n)
        if n < amount:
            memset(buf + n, 0, amount - n)
            return SQLITE_IOERR_SHORT_READ
        return SQLITE_OK
    except BaseException as exc:
        return fail(exc, capi.SQLITE_IOERR_READ)


def _x_write(pfile: int, buf: int, amount: int, offset: int) -> int:
    try:
        f = VFS.files[pfile]
        if offset == 0 and isinstance(f, StoreFile):  # page 1: written by every commit
            GUARD.check_commit(f.conn, f, f.name)
        f.write(offset, string_at(buf, amount))
        return SQLITE_OK
    except BaseException as exc:
        return fail(exc, capi.SQLITE_IOERR_WRITE)


def _x_truncate(pfile: int, size: int) -> int:
    try:
        VFS.files[pfile].truncate(size)
        return SQLITE_OK
    except BaseException as exc:
        return fail(exc, capi.SQLITE_IOERR_TRUNCATE)


def _x_sync(pfile: int, flags: int) -> int:
    # Durability comes from the store's flushes, not from syncing files. A commit
    # syncs its database: the last moment to refuse one that writes two of them.
    try:
        f = VFS.files[pfile]
        if isinstance(f, StoreFile):
            GUARD.check_commit(f.conn, f, f.name)
        return SQLITE_OK
    except BaseException as exc:
        return fail(exc, capi.SQLITE_IOERR_FSYNC)


def _x_file_size(pfile: int, out) -> int:  # type: ignore[no-untyped-def]
    try:
        out[0] = VFS.files[pfile].size()
        return SQLITE_OK
    except BaseException as exc:
        return fail(exc, capi.SQLITE_IOERR_FSTAT)


def _x_lock(pfile: int, level: int) -> int:
    try:
        f = VFS.files[pfile]
        if level == capi.SQLITE_LOCK_EXCLUSIVE and isinstance(f, StoreFile):
            GUARD.check_commit(f.conn, f, f.name)
        return SQLITE_OK if f.lock(level) else SQLITE_BUSY
    except BaseException as exc:
        return fail(exc, capi.SQLITE_IOERR_LOCK)


def _x_unlock(pfile: int, level: int) -> int:
    try:
        VFS.files[pfile].unlock(level)
        return SQLITE_OK
    except BaseException as exc:
        return fail(exc, capi.SQLITE_IOERR_UNLOCK)


def _x_check_reserved(pfile: int, out) -> int:  # type: ignore[no-untyped-def]
    try:
        out[0] = 1 if VFS.files[pfile].check_reserved() else 0
        return SQLITE_OK
    except BaseException as exc:
        return fail(exc, capi.SQLITE_IOERR_CHECKRESERVEDLOCK)


def _x_file_control(pfile: int, op: int, arg: int) -> int:
    try:
        return VFS.file_control(pfile, op, arg)
    except BaseException as exc:
        return fail(exc, SQLITE_ERROR)


def _x_sector_size(pfile: int) -> int:
    return 4096


def _x_device_characteristics(pfile: int) -> int:
    return _IOCAPS


# -- vfs methods ------------------------------------------------------------------
def _x_open(pvfs: int, zname: int, pfile: int, flags: int, out_flags) -> int:  # type: ignore[no-untyped-def]
    try:
        rc = VFS.open(zname, pfile, flags, out_flags)
        if pfile in VFS.files:  # a store or memory file: our io methods
            ctypes.c_void_p.from_address(pfile).value = ctypes.addressof(_IO_METHODS)
            if out_flags:
                out_flags[0] = flags
        return rc
    except BaseException as exc:
        return fail(exc, SQLITE_CANTOPEN)


def _x_delete(pvfs: int, zname: bytes, sync_dir: int) -> int:
    try:
        return VFS.delete(zname, sync_dir)
    except BaseException as exc:
        return fail(exc, capi.SQLITE_IOERR_DELETE)


def _x_access(pvfs: int, zname: bytes, flags: int, out) -> int:  # type: ignore[no-untyped-def]
    try:
        return VFS.access(zname, flags, out)
    except BaseException as exc:
        return fail(exc, capi.SQLITE_IOERR_ACCESS)


def _x_full_pathname(pvfs: int, zname: bytes, n_out: int, zout: int) -> int:
    try:
        raw = VFS.full_pathname(zname.decode()).encode()
        if len(raw) >= n_out:
            return capi.SQLITE_CANTOPEN_FULLPATH
        memmove(zout, raw + b"\0", len(raw) + 1)
        return SQLITE_OK
    except BaseException as exc:
        return fail(exc, SQLITE_CANTOPEN)


def _x_dlopen(pvfs: int, zname: bytes) -> None:
    return None  # extensions are not loaded through this VFS


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
_VFS_STRUCT = capi.sqlite3_vfs(
    2,
    ctypes.sizeof(capi.sqlite3_file) + ctypes.sizeof(ctypes.c_void_p),
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
    """Register the ``datasync`` VFS with SQLite (idempotent).

    Raises :class:`~datasync.VFSRegistrationError` if SQLite refuses it."""
    global _registered
    with VFS.registry.lock:
        if _registered:
            return
        lib = capi.sqlite_library()
        _VFS_STRUCT.szOsFile = max(_VFS_STRUCT.szOsFile, plain.file_size_needed())
        rc = lib.sqlite3_vfs_register(ctypes.addressof(_VFS_STRUCT), 0)
        if rc != SQLITE_OK:
            raise VFSRegistrationError(
                f"sqlite3_vfs_register failed with code {rc}; is this SQLite built "
                "without VFS support?")
        _registered = True
        # Keep the callback thunks alive past interpreter shutdown: SQLite may call
        # them while the last connections are torn down.
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(_IO_METHODS))
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(_VFS_STRUCT))
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
    """At exit: close our connections, flush the stores, close the stores the VFS
    owns, unregister. Failures here were recorded (and logged) by each store; at
    exit nothing more can be done with them."""
    global _registered
    if not _registered:
        return
    for conn in list(_connections):
        try:
            conn.close()  # type: ignore[attr-defined]
        except Exception:
            pass
    stores = VFS.registry.stores
    for entry in list(stores.values()):  # while every backend is still open
        if entry.store.flushes_sync and not entry.store.closed:
            entry.store.flush_in_background()
    if VFS.open_count():
        # Connections the application left open: close them now, while the
        # interpreter (and our callbacks) still work; never a backend's own.
        import gc

        for obj in gc.get_objects():
            if isinstance(obj, sqlite3.Connection) and not getattr(obj, "backend_own", False):
                try:
                    obj.close()
                except Exception:
                    pass
    for name, entry in list(stores.items()):
        if entry.owned:
            try:
                entry.store.close_sync()
                stores.pop(name, None)
            except Exception:
                pass
        elif entry.store.flushes_sync and not entry.store.closed:
            entry.store.flush_in_background()  # relaxed commits not yet flushed
    if not VFS.open_count():
        capi.sqlite_library().sqlite3_vfs_unregister(ctypes.addressof(_VFS_STRUCT))
        _registered = False
