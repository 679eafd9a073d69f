"""Whole-database operations: export, import, backup, restore, rekey.

Example::

    image = await db.export()                  # a standard SQLite file's bytes
    await db.import_(image)                    # replace the database, atomically
    await db.backup("nightly.dsdb")            # a new database, while writes go on
    await db.restore((await db.versions())[0]["version"])
    await db.rekey("a new passphrase")         # re-encrypt every block, atomically

A mixin of :class:`~datasync.Database` over the internal API of :mod:`.core`.
"""
from __future__ import annotations

import sqlite3
from typing import Any

from .. import cdc as _cdc
from .. import encryption, vfs
from ..encryption import EncryptionKey
from ..errors import BackupTargetError, DatasyncError, TransactionActiveError
from .core import raise_translated


class Copies:
    """export, import_, backup, versions, restore, encrypted, rekey."""

    async def export(self) -> bytes:
        """The database as a standard SQLite file image (any sqlite3 opens it).

        Example: ``open("copy.sqlite", "wb").write(await db.export())``
        """
        async with self.turn():
            image = self._serialize()
            captured = _cdc.has_triggers(self._conn)
        # The capture triggers call a function only datasync registers: without
        # them, any sqlite3 can write to the exported copy.
        return _cdc.strip_triggers(image) if captured else image

    def _serialize(self) -> bytes:
        """The database's bytes. sqlite3_serialize() turns a page it cannot read into
        zeros and says nothing, so the VFS's error (a missing or damaged block) is
        raised here instead of a silently zeroed copy."""
        vfs.take_last_error()
        image = self._conn.serialize()
        error = vfs.take_last_error()
        if isinstance(error, DatasyncError):
            raise error
        return image

    async def import_(self, data: bytes, *, _reason: dict[str, Any] | None = None) -> None:
        """Replace the whole database with a standard SQLite file image, atomically.

        Example: ``await db.import_(open("app.sqlite", "rb").read())``

        With change data capture on, the change log and consumers carry over (the
        image's own are replaced) and a ``reset`` change records the replacement.
        """
        from ..sqlite_image import as_rollback_image

        image = as_rollback_image(data)
        async with self.turn():
            before = self._store.commits_in_this_thread()
            if self._conn.in_transaction:
                raise TransactionActiveError("import_() cannot run inside a transaction: "
                                             "end the transaction first")
            source = sqlite3.connect(":memory:")
            try:
                source.deserialize(image)
                if self._cdc:
                    _cdc.carry_log(self._conn, source, _reason or {"reason": "import"},
                                   self._store.next_version)
                vfs.take_last_error()
                try:
                    source.backup(self._conn)
                except sqlite3.Error as exc:
                    raise_translated(exc)
            finally:
                source.close()
            if self._cdc:  # the image brings its own tables (and maybe change log)
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    _cdc.refresh_triggers(self._conn)
                    self._conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise_translated(exc)
            committed = self._store.commits_in_this_thread() != before
        await self._after_write(committed)

    async def backup(self, target: str, **options: Any) -> dict[str, Any]:
        """Copy this database into a new datasync database ``target`` while it stays
        in use: a consistent snapshot is taken in one turn (writes wait only for
        that in-memory copy), then written to ``target`` and flushed.

        Example: ``await db.backup("nightly.dsdb")``  (``options`` go to :func:`open`)

        Refuses a ``target`` that already holds a database. Returns ``{"target",
        "bytes", "source_version", "target_version"}``; ``source_version`` is the
        durable version when the snapshot was taken (it also holds any commits made
        before the snapshot and not flushed yet).
        """
        self._check_open()
        async with self.turn():
            if self._conn.in_transaction:
                raise TransactionActiveError("backup() cannot run inside a transaction: "
                                             "end the transaction first")
            image = self._serialize()
            source_version = self._store.version
            captured = _cdc.has_triggers(self._conn)
        if captured and not options.get("cdc"):
            image = _cdc.strip_triggers(image)  # (they need cdc=True where they run)
        # Opened plain: with cdc=True opening would create the log, and the copy
        # brings its own log and triggers (kept when ``cdc=True`` is asked for).
        from .opening import open as open_database

        dest = await open_database(target, **{k: v for k, v in options.items()
                                              if k not in ("cdc", "cdc_retention")})
        try:
            if dest._store is self._store:
                raise BackupTargetError(f"cannot back {self.name!r} up into itself: "
                                        "choose a new target")
            if dest._store.meta.file_size or dest._store.size:
                raise BackupTargetError(
                    f"{target!r} already holds a database: back up into a new one")
            await dest.import_(image)
            target_version = await dest.sync()
        finally:
            await dest.close()
        return {"target": target, "bytes": len(image), "source_version": source_version,
                "target_version": target_version}

    # -- point-in-time restore -------------------------------------------------------
    async def versions(self) -> list[dict[str, Any]]:
        """The versions :meth:`restore` can return to, oldest first (the durable
        current one last): ``{"version", "file_size", "epoch"}`` each.

        Example: ``[v["version"] for v in await db.versions()]``
        """
        self._check_open()
        return [{"version": m.version, "file_size": m.file_size, "epoch": m.epoch}
                for m in await self._store.retained()]

    async def restore(self, version: int) -> int:
        """Return the database to a retained ``version``, atomically: the restored
        content becomes a new version (so the restore itself can be undone while it
        is retained). Returns that new durable version.

        Example: ``await db.restore((await db.versions())[0]["version"])``

        Raises :class:`~datasync.VersionNotRetainedError` for a version no longer
        (or never) kept; the database is then unchanged.
        """
        self._check_open()
        await self.sync()  # so the durable version is the current one
        image = await self._store.image_at(int(version))
        await self.import_(image, _reason={"reason": "restore", "version": int(version)})
        return await self.sync()

    # -- encryption -----------------------------------------------------------------
    @property
    def encrypted(self) -> bool:
        """True if the store's blocks are encrypted."""
        return "encryption" in self._store.meta.extra

    async def rekey(self, new_key: EncryptionKey | None) -> int:
        """Encrypt every block under ``new_key`` (32 raw bytes or a passphrase; a
        fresh salt), atomically: all blocks and the new metadata in ONE flush, so
        the store opens with either the old key or the new one, never a mix.
        ``None`` decrypts the store. Also encrypts an unencrypted store. Returns the
        durable version.

        Example: ``await db.rekey("a new passphrase")``
        """
        async with self.turn():
            if self._conn.in_transaction:
                raise TransactionActiveError("rekey() cannot run inside a transaction: "
                                             "end the transaction first")
            codec, extra = await encryption.rekey_codec(self._store.meta, new_key)
            return await self._store.rekey(codec, extra)

