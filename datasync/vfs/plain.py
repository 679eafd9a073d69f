"""Ordinary SQLite files opened through the datasync VFS: handed to SQLite's own VFS.

Example::

    await db.execute("VACUUM INTO ?", ("/tmp/copy.sqlite",))   # an ordinary SQLite file
    await db.execute("ATTACH ? AS o", ("/tmp/plain.sqlite",))  # read and written as one

A connection on the datasync VFS opens every other database through it too
(``ATTACH``, ``VACUUM INTO``). A name that is not a datasync store (see
``core.DatasyncVFS.is_store_name``) is an ordinary file, and what sqlite3 users expect of it is
what SQLite's default VFS does: an ordinary SQLite file, its own rollback journal
or WAL on disk, its own locks. So the datasync VFS opens it, and its journal, WAL
and super-journals, with the default VFS (``unix`` natively; Emscripten's file
system in Pyodide).

Each such file's struct is ``[sqlite3_file header | the default VFS's file]``. Our
io methods forward every call to the inner file's own methods, watching two
things on the way: the connection that opened it (``SQLITE_FCNTL_PDB``) and its lock
level, so that the guard (:mod:`.guard`) can refuse a transaction that would write
it together with a datasync store. The io methods are version 3, like the inner
ones: WAL and memory-mapped I/O work on ordinary files.
"""
from __future__ import annotations

import ctypes
import functools
import threading
from collections.abc import Callable
from typing import Any
from ctypes import c_void_p

from . import capi
from .boundary import fail
from .capi import SQLITE_LOCK_RESERVED, SQLITE_OK
from .guard import GUARD, note_opened

#: Bytes before the inner file in our file struct (sqlite3_file, 8-byte aligned).
HEADER = 8
#: Suffixes of the files that belong to an ordinary database file.
_FAMILY_SUFFIXES = ("-journal", "-wal", "-shm", "-mj")


class PlainFile:
    """One ordinary file: the inner file's address and methods, lock and connection."""

    __slots__ = ("name", "inner", "methods", "version", "level", "conn", "main")

    def __init__(self, name: str, inner: int, main: bool) -> None:
        self.name = name
        self.inner = inner
        address = c_void_p.from_address(inner).value
        # Read only as many methods as the inner struct has (its iVersion).
        self.version = min(3, ctypes.c_int.from_address(address).value)  # type: ignore[arg-type]
        struct = capi.sqlite3_io_methods_v3 if self.version >= 2 else capi.sqlite3_io_methods
        self.methods = struct.from_address(address)  # type: ignore[arg-type]
        self.level = 0
        self.conn: int | None = None
        self.main = main


class PlainFiles:
    """The ordinary files open through the datasync VFS, and their families
    (journal, WAL, shared memory, super-journals), which SQLite's own VFS keeps.

    The io-method callbacks below reach the instance the VFS made (one per process)."""

    def __init__(self) -> None:
        global _current
        self.lock = threading.Lock()
        self.files: dict[int, PlainFile] = {}
        self.families: dict[str, int] = {}  # main database name -> open main files
        _current = self

    def is_family(self, name: str) -> bool:
        """True if ``name`` is an open ordinary database, or its journal, WAL,
        shared memory or super-journal."""
        with self.lock:
            if name in self.families:
                return True
            return any(name.startswith(main + sfx)
                       for main in self.families for sfx in _FAMILY_SUFFIXES)

    def open(self, zname: int, name: str, pfile: int, flags: int, out_flags: Any) -> int:
        """xOpen for an ordinary file: the default VFS opens it inside our struct."""
        address, default = capi.default_vfs()
        inner = pfile + HEADER
        rc = default.xOpen(address, zname, inner, flags, out_flags)
        if rc != SQLITE_OK:
            return int(rc)
        if not c_void_p.from_address(inner).value:
            return SQLITE_OK  # opened nothing (SQLite then treats it as closed)
        main = bool(flags & capi.SQLITE_OPEN_MAIN_DB)
        f = PlainFile(name, inner, main)
        with self.lock:
            self.files[pfile] = f
            if main:
                self.families[name] = self.families.get(name, 0) + 1
        # Our methods claim no more than the inner file has: SQLite then never asks
        # for shared memory or mmap the default VFS cannot give.
        c_void_p.from_address(pfile).value = ctypes.addressof(_IO_METHODS_BY_VERSION[f.version])
        return SQLITE_OK

    def closed(self, pfile: int) -> PlainFile:
        """Forget a file being closed; returns it."""
        with self.lock:
            f = self.files.pop(pfile)
            if f.main:
                self.families[f.name] -= 1
                if not self.families[f.name]:
                    del self.families[f.name]
        return f

    @staticmethod
    def delete(zname: bytes, sync_dir: int) -> int:
        address, default = capi.default_vfs()
        return int(default.xDelete(address, zname, sync_dir))

    @staticmethod
    def access(zname: bytes, flags: int, out: Any) -> int:
        address, default = capi.default_vfs()
        return int(default.xAccess(address, zname, flags, out))

    def open_count(self) -> int:
        return len(self.files)


_current: PlainFiles | None = None


def _file(pfile: int) -> PlainFile:
    assert _current is not None
    return _current.files[pfile]


def file_size_needed() -> int:
    """Bytes our file struct needs to hold a default-VFS file after its header."""
    return HEADER + capi.default_vfs()[1].szOsFile


# -- io methods: forward to the inner file ------------------------------------------
def _boundary(code: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """No exception escapes a callback: it becomes ``code`` (see boundary.py)."""
    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def callback(*args: Any) -> Any:
            try:
                return method(*args)
            except BaseException as exc:
                return fail(exc, code)
        return callback
    return wrap


def _p_close(pfile: int) -> int:
    try:
        assert _current is not None
        f = _current.closed(pfile)
        GUARD.release(f.conn, f)
        return int(f.methods.xClose(f.inner))
    except BaseException as exc:
        return fail(exc, capi.SQLITE_IOERR_CLOSE)


@_boundary(capi.SQLITE_IOERR_READ)
def _p_read(pfile: int, buf: int, amount: int, offset: int) -> int:
    f = _file(pfile)
    return int(f.methods.xRead(f.inner, buf, amount, offset))


@_boundary(capi.SQLITE_IOERR_WRITE)
def _p_write(pfile: int, buf: int, amount: int, offset: int) -> int:
    f = _file(pfile)
    if offset == 0 and f.main:
        GUARD.check_commit(f.conn, f, f.name)
    return int(f.methods.xWrite(f.inner, buf, amount, offset))


@_boundary(capi.SQLITE_IOERR_TRUNCATE)
def _p_truncate(pfile: int, size: int) -> int:
    f = _file(pfile)
    return int(f.methods.xTruncate(f.inner, size))


@_boundary(capi.SQLITE_IOERR_FSYNC)
def _p_sync(pfile: int, flags: int) -> int:
    f = _file(pfile)
    if f.main:
        GUARD.check_commit(f.conn, f, f.name)
    return int(f.methods.xSync(f.inner, flags))


@_boundary(capi.SQLITE_IOERR_FSTAT)
def _p_file_size(pfile: int, out) -> int:  # type: ignore[no-untyped-def]
    f = _file(pfile)
    return int(f.methods.xFileSize(f.inner, out))


def _p_lock(pfile: int, level: int) -> int:
    try:
        f = _file(pfile)
        claimed = f.main and level >= SQLITE_LOCK_RESERVED > f.level
        if claimed:
            GUARD.claim(f.conn, f, f.name)
        if f.main and level == capi.SQLITE_LOCK_EXCLUSIVE:
            GUARD.check_commit(f.conn, f, f.name)
        rc = int(f.methods.xLock(f.inner, level))
        if rc == SQLITE_OK:
            f.level = max(f.level, level)
        elif claimed:
            GUARD.release(f.conn, f)
        return rc
    except BaseException as exc:
        return fail(exc, capi.SQLITE_IOERR_LOCK)


def _p_unlock(pfile: int, level: int) -> int:
    try:
        f = _file(pfile)
        rc = int(f.methods.xUnlock(f.inner, level))
        f.level = min(f.level, level)
        if level < SQLITE_LOCK_RESERVED:
            GUARD.release(f.conn, f)
        return rc
    except BaseException as exc:
        return fail(exc, capi.SQLITE_IOERR_UNLOCK)


@_boundary(capi.SQLITE_IOERR_CHECKRESERVEDLOCK)
def _p_check_reserved(pfile: int, out) -> int:  # type: ignore[no-untyped-def]
    f = _file(pfile)
    return int(f.methods.xCheckReservedLock(f.inner, out))


def _p_file_control(pfile: int, op: int, arg: int) -> int:
    try:
        f = _file(pfile)
        if op == capi.SQLITE_FCNTL_PDB and arg:
            f.conn = c_void_p.from_address(arg).value
            note_opened(f.conn)
        return int(f.methods.xFileControl(f.inner, op, arg))
    except BaseException as exc:
        return fail(exc, capi.SQLITE_ERROR)


@_boundary(4096)
def _p_sector_size(pfile: int) -> int:
    f = _file(pfile)
    return int(f.methods.xSectorSize(f.inner))


@_boundary(0)
def _p_device_characteristics(pfile: int) -> int:
    f = _file(pfile)
    return int(f.methods.xDeviceCharacteristics(f.inner))


@_boundary(capi.SQLITE_IOERR)
def _p_shm_map(pfile: int, page: int, size: int, extend: int, pp: int) -> int:
    f = _file(pfile)
    return int(f.methods.xShmMap(f.inner, page, size, extend, pp))


@_boundary(capi.SQLITE_IOERR)
def _p_shm_lock(pfile: int, offset: int, n: int, flags: int) -> int:
    f = _file(pfile)
    return int(f.methods.xShmLock(f.inner, offset, n, flags))


def _p_shm_barrier(pfile: int) -> None:
    try:
        f = _file(pfile)
        f.methods.xShmBarrier(f.inner)
    except BaseException as exc:
        fail(exc, 0)


@_boundary(capi.SQLITE_IOERR)
def _p_shm_unmap(pfile: int, delete_flag: int) -> int:
    f = _file(pfile)
    return int(f.methods.xShmUnmap(f.inner, delete_flag))


@_boundary(capi.SQLITE_IOERR)
def _p_fetch(pfile: int, offset: int, amount: int, pp: int) -> int:
    f = _file(pfile)
    return int(f.methods.xFetch(f.inner, offset, amount, pp))


@_boundary(capi.SQLITE_IOERR)
def _p_unfetch(pfile: int, offset: int, p: int) -> int:
    f = _file(pfile)
    return int(f.methods.xUnfetch(f.inner, offset, p))


_IO_METHODS = capi.sqlite3_io_methods_v3(
    3,
    capi.xClose(_p_close),
    capi.xRead(_p_read),
    capi.xWrite(_p_write),
    capi.xTruncate(_p_truncate),
    capi.xSync(_p_sync),
    capi.xFileSize(_p_file_size),
    capi.xLock(_p_lock),
    capi.xUnlock(_p_unlock),
    capi.xCheckReservedLock(_p_check_reserved),
    capi.xFileControl(_p_file_control),
    capi.xSectorSize(_p_sector_size),
    capi.xDeviceCharacteristics(_p_device_characteristics),
    capi.xShmMap(_p_shm_map),
    capi.xShmLock(_p_shm_lock),
    capi.xShmBarrier(_p_shm_barrier),
    capi.xShmUnmap(_p_shm_unmap),
    capi.xFetch(_p_fetch),
    capi.xUnfetch(_p_unfetch),
)


def _with_version(version: int) -> capi.sqlite3_io_methods_v3:
    methods = capi.sqlite3_io_methods_v3()
    ctypes.memmove(ctypes.addressof(methods), ctypes.addressof(_IO_METHODS),
                   ctypes.sizeof(methods))
    methods.iVersion = version
    return methods


#: The same callbacks claiming version 1, 2 or 3, matched to the inner file's.
_IO_METHODS_BY_VERSION = {1: _with_version(1), 2: _with_version(2), 3: _IO_METHODS}


def keep_alive() -> None:
    """Keep the callback thunks alive past interpreter teardown (see callbacks.register)."""
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(_IO_METHODS))
    for methods in _IO_METHODS_BY_VERSION.values():
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(methods))

