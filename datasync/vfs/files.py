"""The files SQLite opens through the datasync VFS, as plain Python objects.

Example::

    locks = LockManager(store)
    a, b = StoreFile(store, locks), StoreFile(store, locks)
    assert a.lock(SHARED) and b.lock(SHARED)
    assert a.lock(RESERVED) and not b.lock(RESERVED)    # one writer at a time

:class:`StoreFile` is the main database file over a :class:`BlockStore`; its
:class:`LockManager` implements SQLite's lock states (SHARED, RESERVED, PENDING,
EXCLUSIVE) across every connection of this process, and turns the release of
the last write lock into the store's commit point. :class:`MemoryFile` holds
journals and temporary files, which live in memory only.

**Forks.** SQLite keeps a connection's page cache across transactions while the
16 header bytes at offset 24 (file change counter, page count, freelist) read the
same when it next takes a SHARED lock: the file format's way to learn that
another process changed the file ("File change counter", sqlite.org/fileformat2).
A store whose unflushed commits were discarded (:meth:`BlockStore.discard_unflushed`,
a deposed leader tab) and which then caught up on another writer's history can
hold different pages under the SAME counter: both branches counted one commit
from the same start. So a file that sees the store's ``generation`` change answers
that one header read with bytes that cannot match (each byte inverted); SQLite
then drops its cache and reads page 1 again, getting the true bytes. The
connection's cached schema has the same blind spot (a schema cookie both branches
bumped once): the database layer resets it (``PRAGMA writable_schema=RESET``).
"""
from __future__ import annotations

from collections.abc import Callable

from ..blockstore import BlockStore
from .guard import GUARD
from .capi import (
    SQLITE_LOCK_EXCLUSIVE as EXCLUSIVE,
    SQLITE_LOCK_NONE as NONE,
    SQLITE_LOCK_PENDING as PENDING,
    SQLITE_LOCK_RESERVED as RESERVED,
    SQLITE_LOCK_SHARED as SHARED,
)

__all__ = ["LockManager", "MemoryFile", "StoreFile", "NONE", "SHARED", "RESERVED",
           "PENDING", "EXCLUSIVE"]


class LockManager:
    """SQLite's file locks for one store, shared by every connection in-process.

    ``hot_journal(name)`` (given by the VFS) says whether the journal of the file
    named ``name`` is hot: a commit that failed half-way and could not roll back."""

    def __init__(self, store: BlockStore,
                 hot_journal: Callable[[str], bool] = lambda name: False) -> None:
        self.store = store
        self._state = store.state_lock  # bound once: taken by every statement
        self.hot_journal = hot_journal
        self.shared = 0
        self.reserved: object | None = None
        self.pending: object | None = None
        self.exclusive: object | None = None

    def lock(self, f: "StoreFile", level: int) -> bool:
        """Raise ``f`` to ``level``; False means SQLITE_BUSY (state unchanged, except
        that a writer waiting for readers to leave keeps PENDING, as SQLite expects)."""
        with self._state:
            if f.level >= level:
                return True
            if level == SHARED:
                if self.pending is not None or self.exclusive is not None:
                    return False
                self.shared += 1
                f.level = SHARED
                return True
            if level == RESERVED:
                if self.reserved is not None or self.pending is not None or self.exclusive:
                    return False
                GUARD.claim(f.conn, f, f.name)  # one database written per transaction
                self.reserved = f
                f.level = RESERVED
                return True
            # EXCLUSIVE (SQLite never asks for PENDING itself)
            if self.pending not in (None, f) or self.reserved not in (None, f):
                return False
            if f.level < RESERVED:  # straight from SHARED: rolling a hot journal back
                GUARD.claim(f.conn, f, f.name)
            self.pending = f
            f.level = PENDING
            if self.shared > 1:
                return False
            self.exclusive = f
            f.level = EXCLUSIVE
            return True

    def unlock(self, f: "StoreFile", level: int) -> None:
        """Lower ``f`` to ``level``; dropping a write lock is a commit point, unless
        SQLite left a hot journal behind (a commit that failed half-way and could
        not roll back): then the file is torn until the next connection rolls it
        back, and committing it would make the torn state durable.

        The commit itself (a move between tiers) happens under the store lock, so
        no other writer slips in before it; what follows a commit (a bounded-memory
        flush, the commit listeners) runs after the lock is released: a flush takes
        the flush mutex, which comes before the store lock in the lock order."""
        committed = False
        with self._state:
            if f.level <= level:
                return
            if f.level == SHARED:  # the end of every read statement: no commit point
                self.shared -= 1
                f.level = NONE
                return
            was_writer = f.level >= RESERVED
            if self.reserved is f:
                self.reserved = None
            if self.pending is f:
                self.pending = None
            if self.exclusive is f:
                self.exclusive = None
            if level == NONE:
                self.shared -= 1
            f.level = level
            if was_writer:
                GUARD.release(f.conn, f)
            if was_writer and not self.hot_journal(f.name):
                committed = self.store.commit_pending()
        if committed:
            self.store.after_commit()

    def reserved_held(self) -> bool:
        return self.reserved is not None or self.pending is not None or self.exclusive is not None


class StoreFile:
    """The main database file, backed by a :class:`BlockStore`."""

    __slots__ = ("store", "locks", "level", "read", "write", "truncate", "name", "conn",
                 "generation")

    def __init__(self, store: BlockStore, locks: LockManager, name: str = "") -> None:
        self.store = store
        self.locks = locks
        self.level = NONE
        self.name = name
        self.conn: int | None = None  # the sqlite3* that opened it (SQLITE_FCNTL_PDB)
        # Bound once: the VFS calls these on its hot path.
        self.read = store.read
        self.write = store.write
        self.truncate = store.truncate
        self.generation = store.generation  # the history this file's reader has seen

    def size(self) -> int:
        return self.store.size

    def lock(self, level: int) -> bool:
        if self.level == NONE and self.generation != self.store.generation:
            # A fork since this file's reader last looked (see the module
            # docstring): its next header check must fail.
            self.generation = self.store.generation
            self.read = self._read_after_fork
        return self.locks.lock(self, level)

    def _read_after_fork(self, offset: int, amount: int) -> bytes:
        """The first read after a fork: SQLite's check of the change counter
        (offset 24, 16 bytes) reads bytes that differ from any cached copy."""
        self.read = self.store.read
        data = self.store.read(offset, amount)
        if offset == 24 and amount == 16:
            return bytes(b ^ 0xFF for b in data)
        return data

    def unlock(self, level: int) -> None:
        self.locks.unlock(self, level)

    def check_reserved(self) -> bool:
        return self.locks.reserved_held()

    def close(self) -> None:
        if self.level != NONE:
            self.locks.unlock(self, NONE)


class MemoryFile:
    """A journal or temporary file: a growable byte array, never persisted."""

    __slots__ = ("data", "name", "level", "on_close")

    def __init__(self, name: str, data: bytearray | None = None,
                 on_close: Callable[[], None] | None = None) -> None:
        self.name = name
        self.data = bytearray() if data is None else data
        self.level = NONE
        self.on_close = on_close  # e.g. forget a delete-on-close file

    def read(self, offset: int, amount: int) -> bytes:
        return bytes(self.data[offset : offset + amount])

    def write(self, offset: int, data: bytes) -> None:
        end = offset + len(data)
        if offset > len(self.data):
            self.data.extend(bytes(offset - len(self.data)))
        self.data[offset:end] = data

    def truncate(self, size: int) -> None:
        if size < len(self.data):
            del self.data[size:]
        else:
            self.data.extend(bytes(size - len(self.data)))

    def size(self) -> int:
        return len(self.data)

    def lock(self, level: int) -> bool:
        self.level = level
        return True

    def unlock(self, level: int) -> None:
        self.level = level

    def check_reserved(self) -> bool:
        return False

    def close(self) -> None:
        if self.on_close is not None:
            self.on_close()
