"""Opening a database: the registry of open stores, and :func:`open`.

Example::

    db = await datasync.open("app.dsdb", durability="strict")

Opening the same store twice in one process shares it (one :class:`Shared` entry
by the backend's key; a second open of a store being opened waits for the first).
Every option is checked before anything is created; a failure after the store
opened closes what was opened (see docs/architecture.md, "Lifetimes").
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import encryption, vfs
from ..backends import Backend, KeepsHistory, make_backend
from ..backends.contract import no_history
from ..blockstore import DEFAULT_CACHE_BYTES, BlockStore
from ..encryption import EncryptionKey
from ..errors import InvalidOptionError, StoreBusyError
from ..format import DEFAULT_BLOCK_SIZE
from ..options import check_open_options, pragma_statements

if TYPE_CHECKING:
    from . import Database


@dataclass
class Shared:
    store: BlockStore
    key: str
    users: int = 0


_shared: dict[str, Shared] = {}
#: Stores being opened, by key: a second open of the same store waits for the first
#: (then shares it) instead of opening it twice.
_opening: dict[str, asyncio.Future[None]] = {}


async def open(
    name: str,
    *,
    backend: str | Backend | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    durability: str = "relaxed",
    flush_interval: float = 0.0,
    create: bool = True,
    retain_versions: int = 0,
    cdc: bool = False,
    cdc_retention: float | None = None,
    encryption_key: EncryptionKey | None = None,
    resident: bool = False,
    pragmas: dict[str, Any] | None = None,
    **unknown: Any,
) -> "Database":
    """Open (or create) the datasync database ``name``.

    Example: ``db = await datasync.open("app.dsdb", durability="strict")``

    ``name`` is natively the path of the store file. ``backend`` is ``"sqlitefile"``
    (native default), ``"memory"`` or a :class:`~datasync.backends.Backend`.
    ``block_size`` applies when the store is created (a power of two, 512..65536);
    ``cache_bytes`` bounds the clean-block cache; ``durability`` is ``"relaxed"`` or
    ``"strict"``; ``flush_interval`` (seconds) delays relaxed flushes to batch more
    commits. ``retain_versions=N`` keeps the last N versions restorable
    (:meth:`Database.restore`). Opening the same store twice in one process shares it.

    ``cdc=True`` turns on change data capture (see :meth:`Database.changes` and
    :mod:`datasync.cdc`); ``cdc_retention`` (seconds, ``None``: forever) is how long
    captured changes are kept once every registered consumer acknowledged them.

    ``encryption_key`` (32 raw bytes, or a passphrase ``str`` stretched with
    PBKDF2-HMAC-SHA256) encrypts every block with AES-256-GCM: a new store is
    created encrypted; an encrypted store needs its key (``WrongKeyError``
    otherwise, raised before anything is written); a key for an unencrypted store
    raises ``InvalidOptionError`` (encrypt it with :meth:`Database.rekey`).

    ``pragmas`` (``{"foreign_keys": True, "cache_size": -4000}``) are set on every
    connection this database makes, its own and :meth:`Database.connect`'s (with
    tabs, every tab's: give every tab the same ones).

    ``resident=True`` holds every block in memory (always so in the browser); the
    multi-tab layer asks for it, since another tab's flushes change the backend
    under a follower.
    Example: ``db = await datasync.open("app.dsdb", encryption_key="my passphrase")``

    Every option is checked before anything is created: a bad value or an unknown
    name raises :class:`~datasync.InvalidOptionError` (listing the valid names).
    A missing store with ``create=False`` raises :class:`~datasync.StoreNotFoundError`.
    """
    given = {k: v for k, v in locals().items() if k not in ("name", "unknown")}
    check_open_options({**given, **unknown})  # before anything is made or opened
    if backend is not None and not isinstance(backend, (str, Backend)):
        raise InvalidOptionError(
            f"backend={backend!r} is not allowed: use a backend name or a Backend")
    be = make_backend(name, backend, strict=durability == "strict")
    if retain_versions and not isinstance(be, KeepsHistory):
        raise no_history(be)
    key = be.key
    while key in _opening:  # the same store, being opened by another task
        await asyncio.wait([_opening[key]])
    shared = _shared.get(key)
    if shared is None:
        if vfs.attached(key) is not None:
            # Opened by the VFS for plain sqlite3 connections: if they are all
            # closed, finish closing it (its last flush may have failed); if not,
            # StoreBusyError says so.
            vfs.close_idle(key)
        if vfs.attached(key) is not None:
            raise StoreBusyError(
                f"{be.location} is served to sqlite3 connections by another owner in "
                "this process; close those connections first")
        opening = _opening[key] = asyncio.get_running_loop().create_future()
        try:
            store = await BlockStore.open(
                be, block_size=block_size, cache_bytes=cache_bytes, create=create,
                codecs=encryption.codecs(encryption_key), resident=resident,
            )
            try:
                vfs.register()
                vfs.attach(key, store)
            except BaseException:
                await store.close()
                raise
            shared = _shared[key] = Shared(store, key)
        finally:
            del _opening[key]
            opening.set_result(None)
    else:
        # Shared with an earlier open: the key must open the store all the same.
        await encryption.open_codec(shared.store.meta, encryption_key,
                                    where=shared.store.backend.location)
    shared.store.retain_versions = max(shared.store.retain_versions, retain_versions)
    shared.users += 1
    try:
        from . import Database

        db = Database(name, shared, durability=durability, flush_interval=flush_interval,
                      pragmas=pragma_statements(pragmas or {}))
    except BaseException:
        await release(shared)
        raise
    if cdc:
        try:
            await db.enable_cdc(retention=cdc_retention)
        except BaseException:
            await db.close()
            raise
    return db


async def release(shared: Shared) -> None:
    """A database of ``shared`` closed: the last one flushes, detaches and closes
    the store (or hands it to the VFS while other connections still hold it)."""
    shared.users -= 1
    if shared.users > 0:
        return
    await shared.store.flush()  # raises before anything is released: nothing lost
    _shared.pop(shared.key, None)
    # A connection from db.connect() still open in another thread keeps the store:
    # the VFS then flushes and closes it with that connection's last file.
    if vfs.detach(shared.key, hand_over=True):
        await shared.store.close()


