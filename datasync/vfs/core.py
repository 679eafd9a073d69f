"""The datasync VFS as one object: what each xMethod does, without ctypes.

Example::

    vfs = DatasyncVFS()                       # callbacks.py holds the process's one
    vfs.registry.attach("/data/app.dsdb", store)
    f = vfs.open("/data/app.dsdb", zname, MAIN_DB_FLAGS)   # what xOpen asks

The ctypes callbacks (:mod:`.callbacks`) convert arguments and call these methods;
the object owns everything the VFS knows: its :class:`~.registry.Registry` of
stores (each with its :class:`~.files.LockManager`) and memory files, the files
SQLite has open (by their ``sqlite3_file*``), and the ordinary files it hands to
SQLite's own VFS (:mod:`.plain`).

What a main-database name means (see docs/architecture.md, "What a path means on
a datasync connection"): a name served by ``datasync.open`` or already opened by
the VFS, one whose URI says ``vfs=datasync``, or an existing file the registry's
:class:`~.registry.StoreOpener` recognizes is a store; anything else is an
ordinary SQLite file (``VACUUM INTO``, ``ATTACH``).
"""
from __future__ import annotations

import ctypes
import itertools
import os
from ctypes import c_void_p
from typing import Any

from ..errors import InvalidOptionError, NotSupportedError
from . import capi
from .capi import SQLITE_ERROR, SQLITE_NOTFOUND, SQLITE_OK
from .files import MemoryFile, StoreFile
from .guard import note_opened
from .plain import PlainFiles
from .registry import Registry

VFS_NAME = "datasync"

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


def uri_params(zname: int, keys: tuple[str, ...]) -> dict[str, str]:
    """The URI parameters ``keys`` of a file name SQLite passed to xOpen."""
    lib = capi.sqlite_library()
    params = {}
    for key in keys:
        value = lib.sqlite3_uri_parameter(zname, key.encode())
        if value is not None:
            params[key] = value.decode()
    return params


class DatasyncVFS:
    """The state and decisions of the datasync VFS (see the module docstring)."""

    def __init__(self) -> None:
        self.registry = Registry()
        self.plain = PlainFiles()
        #: The Python object of every file SQLite has open, by its sqlite3_file*.
        self.files: dict[int, StoreFile | MemoryFile] = {}
        self._temp_names = itertools.count(1)

    # -- xOpen, xClose ------------------------------------------------------------
    def is_store_name(self, name: str, zname: int) -> bool:
        """Whether a main-database name is a datasync store, or an ordinary file."""
        if self.registry.is_served(name):
            return True
        if uri_params(zname, ("vfs",)).get("vfs") == VFS_NAME:
            return True
        opener = self.registry.opener
        return opener is not None and opener.recognizes(name)

    def open(self, zname: int, pfile: int, flags: int, out_flags: Any) -> int:
        """xOpen: a store, an ordinary file (SQLite's own VFS) or a memory file."""
        c_void_p.from_address(pfile).value = None
        name = ctypes.string_at(zname).decode() if zname else f"<temp {next(self._temp_names)}>"
        if zname and (self.plain.is_family(name) or (
                flags & capi.SQLITE_OPEN_MAIN_DB and not self.is_store_name(name, zname))):
            return self.plain.open(zname, name, pfile, flags, out_flags)
        if flags & capi.SQLITE_OPEN_WAL:
            raise NotSupportedError(
                "datasync does not support journal_mode=WAL; durability and atomic "
                "commits come from the block store (use the default journal mode)")
        f: StoreFile | MemoryFile
        if flags & capi.SQLITE_OPEN_MAIN_DB and zname:
            if uri_params(zname, ("cache",)).get("cache") == "shared":
                raise InvalidOptionError(
                    "a datasync database cannot be opened in shared-cache mode "
                    "(cache=shared): its connections must each have their own pager; "
                    "drop the cache=shared URI parameter")
            entry = self.registry.acquire(
                name, lambda: uri_params(zname, ("block_size", "cache_bytes")))
            f = StoreFile(entry.store, entry.locks, name)
        else:
            registry = self.registry
            forget = (lambda: registry.delete_memfile(name)) if (
                flags & capi.SQLITE_OPEN_DELETEONCLOSE or not zname) else None
            f = MemoryFile(name, registry.memfile(name), on_close=forget)
        self.files[pfile] = f
        return SQLITE_OK

    def close(self, pfile: int) -> None:
        """xClose of a store or memory file (ordinary files close in plain.py)."""
        f = self.files.pop(pfile, None)
        if f is None:
            return
        f.close()
        if isinstance(f, StoreFile):
            self.registry.release(f.name)

    # -- names -------------------------------------------------------------------
    def delete(self, zname: bytes, sync_dir: int) -> int:
        name = zname.decode()
        if self.plain.is_family(name):
            return self.plain.delete(zname, sync_dir)
        if not self.registry.delete_memfile(name):
            return capi.SQLITE_IOERR_DELETE_NOENT
        return SQLITE_OK

    def access(self, zname: bytes, flags: int, out: Any) -> int:
        name = zname.decode()
        # Asked twice per statement (the journal and the WAL of the main file):
        # with no ordinary database open, no name can be of their families.
        if self.plain.families and self.plain.is_family(name):
            return self.plain.access(zname, flags, out)
        exists = name in self.registry.memfiles or name in self.registry.stores
        if not exists and not name.endswith(("-journal", "-wal")):
            exists = os.path.exists(name)
        out[0] = 1 if exists else 0
        return SQLITE_OK

    def full_pathname(self, name: str) -> str:
        """A served name as it is; a path made absolute and real, so that two
        spellings of one file are one store (as SqliteFileBackend.key)."""
        if self.registry.is_served(name) or self.registry.opener is None:
            return name
        return os.path.realpath(name)

    # -- xFileControl -------------------------------------------------------------
    def file_control(self, pfile: int, op: int, arg: int) -> int:
        if op == capi.SQLITE_FCNTL_LOCKSTATE and arg:
            ctypes.c_int.from_address(arg).value = self.files[pfile].level
            return SQLITE_OK
        if op == capi.SQLITE_FCNTL_PRAGMA and arg:
            return self._pragma(arg)
        if op == capi.SQLITE_FCNTL_PDB and arg:
            f = self.files[pfile]
            if isinstance(f, StoreFile):
                f.conn = c_void_p.from_address(arg).value
                note_opened(f.conn)
            return SQLITE_OK
        return SQLITE_NOTFOUND

    @staticmethod
    def _pragma(arg: int) -> int:
        """SQLITE_FCNTL_PRAGMA: ``arg`` is ``char*[3]`` (error out, name, value or
        NULL). Refuse the PRAGMAs in REFUSED_PRAGMAS with their message (in a
        sqlite3_malloc buffer SQLite frees); SQLite runs the rest."""
        texts = (ctypes.c_char_p * 3).from_address(arg)
        name = (texts[1] or b"").decode("utf-8", "replace").lower()
        value = (texts[2] or b"").decode("utf-8", "replace").strip("'\" ").lower()
        why = REFUSED_PRAGMAS.get((name, value))
        if why is None:
            return SQLITE_NOTFOUND
        message = why.encode() + b"\0"
        buffer = capi.sqlite_library().sqlite3_malloc(len(message))
        if buffer:
            ctypes.memmove(buffer, message, len(message))
            (ctypes.c_void_p * 3).from_address(arg)[0] = buffer
        return SQLITE_ERROR

    def open_count(self) -> int:
        """Files SQLite has open through this VFS (stores, memory and ordinary)."""
        return len(self.files) + self.plain.open_count()
