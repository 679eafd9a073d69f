"""Who may open an IndexedDB store: one tab alone, or every tab together (Pyodide only).

Example::

    guard = OpenLock("app", shared=False)   # datasync.open("app") in Pyodide
    await guard.acquire()                    # StoreBusyError if another tab has it open
    ...
    guard.release()                          # at close; a closed or crashed tab lets go

Two tabs that each opened ``app`` on their own would both flush, and one of them
would fail much later with "another writer flushed first", its commits stranded in
memory. So every datasync open holds the Web Lock ``datasync-open:<name>`` while the
store is open: exclusively for a single-tab open, shared for multi-tab mode
(the default; ``{tabs: false}`` opts out), whose tabs coordinate through their own leader lock. An open
that cannot get it within ``wait`` seconds (the time a reloading page needs to let
go of it) raises :class:`~datasync.errors.StoreBusyError` before anything is read
or written. Where Web Locks do not exist (a non-secure context) single-tab opens go
ahead unguarded; multi-tab mode needs Web Locks anyway.
"""
from __future__ import annotations

from ..errors import StoreBusyError
from .locks import HeldLock, LockRefused, hold_lock, web_locks

LOCK_PREFIX = "datasync-open:"
#: Seconds an open waits for the lock: a reloaded page's old document releases it
#: as it unloads, which can lag the new document's first request a little.
OPEN_WAIT = 2.0


class OpenLock:
    """The Web Lock ``datasync-open:<name>``, held while a store is open."""

    def __init__(self, name: str, *, shared: bool) -> None:
        self.name = name
        self.lock_name = LOCK_PREFIX + name
        self.shared = shared
        self._held: HeldLock | None = None

    @property
    def held(self) -> bool:
        return self._held is not None

    async def acquire(self, wait: float = OPEN_WAIT) -> None:
        """Take the lock, or raise StoreBusyError after ``wait`` seconds."""
        if web_locks(required=False) is None or self.held:
            return
        try:
            self._held = await hold_lock(self.lock_name, wait=wait,
                                         mode="shared" if self.shared else "exclusive")
        except LockRefused:
            raise self._busy() from None

    def release(self) -> None:
        """Let go (idempotent): the next tab may open the store."""
        held, self._held = self._held, None
        if held is not None:
            held.release()

    def _busy(self) -> StoreBusyError:
        if self.shared:
            return StoreBusyError(
                f"database {self.name!r} is open in another tab for that tab alone "
                "({tabs: false}; Python: tabs=False); to share it, open it without "
                "tabs: false in every tab (sharing is the default), or close the other tab")
        return StoreBusyError(
            f"database {self.name!r} is already open in another tab; {{tabs: false}} "
            "(Python: tabs=False) opens a database for one tab alone. To use it from "
            "several tabs at once open it without tabs: false in every tab (sharing is "
            "the default), or close the other tab")
