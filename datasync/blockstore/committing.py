"""Writing a block store, and its commit points.

Example::

    store.write(0, b"hello")       # into the pending tier
    store.commit()                 # a commit point: pending -> committed
    remove = store.add_commit_listener(lambda s: print("committed", s.commit_seq))

The VFS writes into ``pending`` while SQLite holds a write lock and calls
:meth:`Committing.commit_pending` (under its lock manager's lock) then
:meth:`Committing.after_commit` (with no lock held) when the last write lock is
released. Commit listeners are the interface the layers above use to learn of
commits (the database's flusher, its strict waits): an upward call only through it.

This is a mixin of :class:`~.store.BlockStore`; the state it shares with it is
documented there.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .tiers import Tier


class Committing:
    """Writes, truncation and commit points of a :class:`~.store.BlockStore`."""

    block_size: int
    _lock: Any
    _pending: Tier
    _committed: Tier
    _size: int
    _committed_size: int
    _listeners: list[Callable[[Any], None]]
    _this_thread: Any
    counters: dict[str, Any]
    dirty_limit: int
    read_block: Callable[[int], bytes]  # (the store's)
    flushes_sync: bool  # (flushing's)
    flush_in_background: Callable[[], bool]  # (flushing's)

    def write(self, offset: int, data: bytes) -> None:
        """Write ``data`` at ``offset`` (into the pending tier)."""
        bs = self.block_size
        n_total = len(data)
        with self._lock:
            pending = self._pending.blocks
            if offset % bs == 0 and n_total == bs:
                pending[offset // bs] = bytes(data)
            else:
                view = memoryview(data)
                pos = 0
                while pos < n_total:
                    idx, off = divmod(offset + pos, bs)
                    n = min(bs - off, n_total - pos)
                    if off == 0 and n == bs:
                        pending[idx] = bytes(view[pos : pos + n])
                    else:
                        block = bytearray(self.read_block(idx))
                        block[off : off + n] = view[pos : pos + n]
                        pending[idx] = bytes(block)
                    pos += n
            if offset + n_total > self._size:
                self._size = offset + n_total

    def truncate(self, size: int) -> None:
        """Set the file's size to ``size`` (smaller: drop the tail; larger: zeros)."""
        bs = self.block_size
        with self._lock:
            if size < self._size:
                count, rest = divmod(size, bs)
                tail = None
                if rest:
                    tail = bytearray(self.read_block(count))
                    tail[rest:] = bytes(bs - rest)
                self._pending.truncate(count)
                if tail is not None:
                    self._pending.blocks[count] = bytes(tail)
            self._size = size

    def add_commit_listener(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``callback(store)`` after every commit point (the listener interface
        the layers above use; it runs with no lock of this store held, in the
        committing thread). Returns a remover."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def commit(self) -> None:
        """A commit point: everything written so far is committed. Call it with no
        lock of this store held (the VFS's lock manager calls :meth:`commit_pending`
        under the lock and :meth:`after_commit` after it)."""
        if self.commit_pending():
            self.after_commit()

    def commit_pending(self) -> bool:
        """Move ``pending`` into ``committed``; True if anything was committed. Cheap
        and safe under the store lock: it never flushes and calls nobody."""
        with self._lock:
            if not self._pending and self._size == self._committed_size:
                return False
            self._committed.absorb(self._pending)
            self._pending = Tier()
            self._committed_size = self._size
            self.counters["commits"] += 1
            self._this_thread.commits = getattr(self._this_thread, "commits", 0) + 1
            return True

    def after_commit(self) -> None:
        """What follows a commit point, with NO lock of this store held (the lock
        order is flush mutex, then store lock): a flush at once past
        ``dirty_limit`` (keeping memory bounded; synchronous stores only), then the
        commit listeners. A failed flush here is recorded and retried later."""
        with self._lock:
            over_limit = self.flushes_sync and self._committed.nbytes() > self.dirty_limit
        if over_limit:
            self.flush_in_background()
        for callback in list(self._listeners):
            callback(self)

    def commits_in_this_thread(self) -> int:
        """How many commit points this thread has made on this store (a caller can
        tell whether a statement it ran committed anything)."""
        return getattr(self._this_thread, "commits", 0)
