"""What the VFS serves by name: stores (with their locks) and memory files.

Example::

    registry = Registry()
    registry.attach("/data/app.dsdb", store)       # datasync.open() does this
    entry = registry.acquire("/data/app.dsdb")      # a file of it opens
    registry.release("/data/app.dsdb")              # ... and closes

A store is *attached* by its owner (a Database) or *owned* by the VFS: opened on
demand for a plain sqlite3 connection (see :class:`StoreOpener`) or handed over by
its owner, and then closed synchronously with its last file. Memory files are the
journals and temporary files, shared by name within the process so that SQLite's
hot-journal checks see consistent existence.

All state is guarded by one re-entrant lock, second in the VFS's lock order
(after SQLite's connection mutex; see docs/architecture.md, "Locks").
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..blockstore import BlockStore
from ..errors import StoreBusyError, StoreNotFoundError
from .files import LockManager

_JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")


class StoreOpener(Protocol):
    """How the VFS opens a store nobody attached (natively: a sqlitefile store).

    ``recognizes(name)``: whether ``name`` is an existing store (so that ``ATTACH
    'x.dsdb'`` opens it as one); ``open(name, params)`` opens or creates it, with
    the URI parameters ``block_size``/``cache_bytes``; both synchronous."""

    def recognizes(self, name: str) -> bool: ...

    def open(self, name: str, params: dict[str, str]) -> BlockStore: ...


@dataclass
class Entry:
    """A store served by the VFS."""

    store: BlockStore
    locks: LockManager
    owned: bool  # the VFS closes it with its last file
    open_files: int = 0


class Registry:
    """Stores and memory files by name (see the module docstring)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.stores: dict[str, Entry] = {}
        self.memfiles: dict[str, bytearray] = {}
        #: Opens stores for names nobody attached; None: refuse them (Pyodide).
        self.opener: StoreOpener | None = None

    # -- stores ------------------------------------------------------------------
    def attach(self, name: str, store: BlockStore) -> None:
        with self.lock:
            if name in self.stores:
                raise StoreBusyError(f"a store is already served as {name!r}; close it first")
            self.stores[name] = Entry(store, LockManager(store, self.hot_journal), owned=False)

    def detach(self, name: str, *, hand_over: bool = False) -> bool:
        """Stop serving ``name``; True once nothing of it is registered. With files
        still open, ``hand_over`` gives the store to the VFS (only a store that
        flushes synchronously): returns False and the caller must not close it."""
        with self.lock:
            entry = self.stores.get(name)
            if entry is None:
                return True
            if entry.open_files:
                if not (hand_over and entry.store.flushes_sync):
                    raise StoreBusyError(
                        f"{name!r} still has {entry.open_files} open file(s); close its "
                        "connections first (each in the thread that made it)")
                entry.owned = True
                entry.store.add_commit_listener(flush_owned)
                return False
            self._forget(name)
            return True

    def acquire(self, name: str, params: Callable[[], dict[str, str]]) -> Entry:
        """A file of store ``name`` opens: the entry (opening the store on demand,
        with URI parameters from ``params()``)."""
        with self.lock:
            entry = self.stores.get(name)
            if entry is None:
                if self.opener is None:
                    raise StoreNotFoundError(
                        f"no datasync database is open as {name!r}; open it with "
                        "`await datasync.open(name)` first")
                store = self.opener.open(name, params())
                store.add_commit_listener(flush_owned)
                entry = self.stores[name] = Entry(store, LockManager(store, self.hot_journal),
                                                  owned=True)
            entry.open_files += 1
            return entry

    def release(self, name: str) -> None:
        """A file of store ``name`` closed. An owned store closes with its last file,
        synchronously; if that final flush fails the entry stays (its commits with
        it), recorded by the store, for :meth:`close_idle` or the next file."""
        with self.lock:
            entry = self.stores.get(name)
            if entry is None:
                return
            entry.open_files -= 1
            if entry.owned and entry.open_files <= 0:
                try:
                    entry.store.close_sync()
                except Exception:
                    return  # recorded by the store; kept with its committed blocks
                self._forget(name)

    def close_idle(self, name: str) -> None:
        """Finish closing an owned store whose files are all closed but whose last
        flush failed (raising its error if it fails again); StoreBusyError if plain
        connections still hold it."""
        with self.lock:
            entry = self.stores.get(name)
            if entry is None or not entry.owned:
                return
            if entry.open_files > 0:
                raise StoreBusyError(
                    f"{name!r} is still open through {entry.open_files} sqlite3 connection "
                    "file(s) in this process (plain sqlite3 connections, or connections "
                    "from db.connect() left open after db.close()); close them first")
            entry.store.close_sync()
            self._forget(name)

    def _forget(self, name: str) -> None:
        del self.stores[name]
        self.memfiles.pop(name + "-journal", None)  # a PERSIST/TRUNCATE journal

    def is_served(self, name: str) -> bool:
        return name in self.stores

    def store(self, name: str) -> BlockStore | None:
        entry = self.stores.get(name)
        return None if entry is None else entry.store

    def open_files(self, name: str) -> int:
        entry = self.stores.get(name)
        return 0 if entry is None else entry.open_files

    def in_use(self, name: str) -> bool:
        """True while a connection of store ``name`` holds any lock (is inside a read
        or write transaction): a follower must not replace blocks under it."""
        entry = self.stores.get(name)
        return entry is not None and (bool(entry.locks.shared) or entry.locks.reserved_held())

    # -- memory files ------------------------------------------------------------
    def memfile(self, name: str) -> bytearray:
        with self.lock:
            data = self.memfiles.get(name)
            if data is None:
                data = self.memfiles[name] = bytearray()
            return data

    def delete_memfile(self, name: str) -> bool:
        with self.lock:
            return self.memfiles.pop(name, None) is not None

    def hot_journal(self, db_name: str) -> bool:
        """True if the in-memory rollback journal of ``db_name`` holds a valid header:
        SQLite left it to roll a torn commit back."""
        data = self.memfiles.get(db_name + "-journal")
        return bool(data) and bytes(data[:8]) == _JOURNAL_MAGIC


def flush_owned(store: BlockStore) -> None:
    """The commit listener of a store the VFS owns: flush at every commit. A failure
    is recorded by the store (stats(), the datasync logger); the blocks stay
    committed and the next commit or close flushes them."""
    store.flush_in_background()
