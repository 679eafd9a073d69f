"""Queued writes in IndexedDB: the multi-tab outbox that outlives its tab.

Example (Pyodide)::

    outbox = IndexedDBOutbox("app")
    await outbox.put({"id": "w1", "tab": "t1", "at": 1.0, "stmts": [...]})  # durable now
    for entry in await outbox.entries(): ...
    await outbox.delete("w1")

An IndexedDB database of its own, ``datasync-outbox:<name>`` (so opening it never
upgrades the block store's database), with one object store ``outbox`` keyed by
the write's id; each value is ``{id, json}``. A put commits with strict durability
before it returns, so the write survives its tab. The
:class:`~datasync.tabs.services.Outbox` contract; plumbing from :mod:`.idb`.
"""
from __future__ import annotations

import json
from typing import Any

from ..tabs.services import Message
from .idb import IdbFailure, Proxies, map_error, open_database, request, transaction, transaction_done


def _plain(value: dict[str, Any]) -> Any:
    import js
    from pyodide.ffi import to_js

    return to_js(value, dict_converter=js.Object.fromEntries)


def _upgrade(db: Any, old_version: int) -> None:
    """Schema version 1: ``outbox``, in-line key ``id``, values ``{id, json}``."""
    if not db.objectStoreNames.contains("outbox"):
        db.createObjectStore("outbox", _plain({"keyPath": "id"}))


class IndexedDBOutbox:
    """:class:`~datasync.tabs.services.Outbox` in IndexedDB (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self.db_name = f"datasync-outbox:{name}"
        self.location = f"IndexedDB database {self.db_name!r}"
        self._db: Any = None

    async def _transaction(self, mode: str, doing: str, durability: str = "default") -> Any:
        if self._db is None:
            self._db = await open_database(self.db_name, 1, upgrade=_upgrade,
                                           location=self.location)
        try:
            return transaction(self._db, ["outbox"], mode, durability=durability,
                               location=self.location)
        except Exception:
            self._db = None  # closed under us (another tab deleted it): reopen next time
            raise

    async def _write(self, doing: str, change: Any, durability: str = "default") -> None:
        px = Proxies()
        state: dict[str, Any] = {}
        try:
            tx = await self._transaction("readwrite", doing, durability)
            done = transaction_done(tx, px, state)
            change(tx.objectStore("outbox"))
            await done
        except IdbFailure as exc:
            raise map_error(exc.error, self.location, doing) from None
        finally:
            px.destroy()

    async def put(self, entry: Message) -> None:
        """Store ``entry`` (it has an ``id``) durably before returning."""
        value = _plain({"id": str(entry["id"]), "json": json.dumps(entry)})
        await self._write("queueing a write", lambda store: store.put(value),
                          durability="strict")

    async def entries(self) -> list[Message]:
        """Every stored entry, oldest first."""
        px = Proxies()
        try:
            tx = await self._transaction("readonly", "reading queued writes")
            raw = await request(tx.objectStore("outbox").getAll(), px)
        except IdbFailure as exc:
            raise map_error(exc.error, self.location, "reading queued writes") from None
        finally:
            px.destroy()
        found = [json.loads(str(row.json)) for row in raw]
        return sorted(found, key=lambda e: e.get("at", 0))

    async def delete(self, entry_id: str) -> None:
        """Remove an entry (no error if it is gone)."""
        await self._write("removing an applied write",
                          lambda store: store.delete(str(entry_id)))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

