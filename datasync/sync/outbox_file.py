"""A durable outbox in a file: a native replica's queued writes and conflicts.

Example::

    outbox = FileOutbox("notes.dsdb.outbox")            # created if missing
    await outbox.put({"id": "w1", "statements": [["INSERT ...", [1]]]})  # durable now
    [entry] = await outbox.entries()                    # oldest first
    await outbox.delete("w1")

The :class:`datasync.tabs.services.Outbox` contract (the browser's is
:class:`datasync.browser.outbox.IndexedDBOutbox`). An ordinary SQLite file (the
stdlib ``sqlite3`` module on the default VFS, ``synchronous=FULL``): one table per
``kind`` (``outbox``, ``conflicts``), rows ``(seq, id, json)`` kept in insertion order.
It lives beside the store and outside the database image, so a pull that replaces
the image cannot take queued writes with it.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any

from ..errors import BackendError

KINDS = ("outbox", "conflicts")


class FileOutbox:
    """:class:`~datasync.tabs.services.Outbox` in a SQLite file (see the module docstring)."""

    def __init__(self, path: str, kind: str = "outbox") -> None:
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r}: use one of {KINDS}")
        self.path, self.kind = path, kind
        self.location = f"{path} ({kind})"
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA busy_timeout = 5000")
            for k in KINDS:
                self._conn.execute(f"CREATE TABLE IF NOT EXISTS {k}"
                                   "(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, json TEXT)")
        except sqlite3.Error as exc:
            raise BackendError(f"cannot open the replica's outbox {path}: {exc}; check that "
                               "its directory is writable") from exc

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise BackendError(f"the replica's outbox {self.location} failed: {exc}") from exc

    async def put(self, entry: dict[str, Any]) -> None:
        """Store ``entry`` (it has an ``id``; a second put of an id replaces it in place)."""
        self._run(f"INSERT INTO {self.kind}(id, json) VALUES (?, ?) "
                  "ON CONFLICT(id) DO UPDATE SET json = excluded.json",
                  (str(entry["id"]), json.dumps(entry)))

    async def entries(self) -> list[dict[str, Any]]:
        """Every entry, oldest first."""
        return [json.loads(raw) for (raw,) in self._run(f"SELECT json FROM {self.kind} ORDER BY seq")]

    async def delete(self, entry_id: str) -> None:
        self._run(f"DELETE FROM {self.kind} WHERE id = ?", (entry_id,))

    def count(self) -> int:
        return int(self._run(f"SELECT count(*) FROM {self.kind}")[0][0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
