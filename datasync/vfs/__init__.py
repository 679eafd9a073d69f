"""The datasync SQLite VFS, registered through ctypes on the stdlib's SQLite.

Example::

    import sqlite3, datasync.vfs as vfs
    vfs.register()
    conn = sqlite3.connect(vfs.uri("/tmp/app.dsdb"), uri=True)   # natively: opens the store

Layout: :mod:`.callbacks` (the ctypes xMethods, thin), :mod:`.core` (the VFS object:
what each xMethod does), :mod:`.registry` (stores and memory files by name),
:mod:`.files` (file objects and the lock state machine), :mod:`.plain` (ordinary
files, handed to SQLite's own VFS), :mod:`.guard` (one database written per
transaction), :mod:`.boundary` (exceptions to result codes), :mod:`.capi`.
"""
from __future__ import annotations

from ..blockstore import BlockStore
from .boundary import take_last_error
from .callbacks import VFS, Connection, register
from .core import VFS_NAME
from .registry import StoreOpener

__all__ = ["VFS_NAME", "Connection", "StoreOpener", "attach", "attached", "close_idle",
           "detach", "in_use", "open_files", "register", "set_store_opener",
           "take_last_error", "uri"]


def uri(name: str, **params: str) -> str:
    """The ``sqlite3.connect(..., uri=True)`` URI of ``name`` on this VFS."""
    import urllib.parse  # here: a first query in a browser never needs it (boot time)

    query = urllib.parse.urlencode({"vfs": VFS_NAME, **params})
    return f"file:{urllib.parse.quote(name)}?{query}"


def attach(name: str, store: BlockStore) -> None:
    """Serve ``store`` under ``name``: connections opening that name use it.

    Raises :class:`~datasync.StoreBusyError` if a store is already served there."""
    VFS.registry.attach(name, store)


def detach(name: str, *, hand_over: bool = False) -> bool:
    """Stop serving ``name``; returns True once nothing of it is registered.

    Its connections should be closed first. If some are still open (one made in
    another thread, which the owner cannot close), ``hand_over=True`` gives the
    store to the VFS, which flushes its commits and closes it with its last file
    (only a store whose flushes never suspend): returns False, and the caller must
    not close the store. Otherwise open files raise :class:`~datasync.StoreBusyError`."""
    return VFS.registry.detach(name, hand_over=hand_over)


def attached(name: str) -> BlockStore | None:
    """The store served under ``name``, if any."""
    return VFS.registry.store(name)


def open_files(name: str) -> int:
    """How many files of store ``name`` SQLite has open now (one per connection,
    plus any ATTACH of it)."""
    return VFS.registry.open_files(name)


def in_use(name: str) -> bool:
    """True while a connection of store ``name`` is inside a transaction (holds a
    lock): another writer's blocks must not be laid under it."""
    return VFS.registry.in_use(name)


def close_idle(name: str) -> None:
    """Finish closing a store the VFS opened for plain connections, now all closed,
    whose last flush had failed: flush it again (raising its error if it fails
    again) and forget it. Raises :class:`~datasync.StoreBusyError` while plain
    connections still hold it."""
    VFS.registry.close_idle(name)


def set_store_opener(opener: StoreOpener | None) -> None:
    """How the VFS opens a store nobody attached (``sqlite3.connect(vfs.uri(path))``,
    ``ATTACH`` of an existing store); None refuses such names. ``datasync`` sets a
    sqlitefile opener natively and none in the browser (see datasync.runtime)."""
    VFS.registry.opener = opener
