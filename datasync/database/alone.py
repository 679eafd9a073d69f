"""The multi-tab API of a database open in one place: a group of one, which leads.

Example::

    db = await datasync.open("app.dsdb")
    db.leader_info()        # {'is_leader': True, 'leader_id': None, 'epoch': 0, 'tab_id': None}
    off = db.on_change(lambda change: print(change["version"]))
    await db.queue_write("INSERT INTO log VALUES (?)", ["bye"])   # applied and durable

So code written for :class:`~datasync.tabs.SharedDatabase` (many tabs) runs
unchanged on a database no other tab shares (natively, or ``tabs=False``).
A mixin of :class:`~datasync.Database` over the internal API of :mod:`.core`.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from .core import Result


class GroupOfOne:
    """leader_info, on_change, queue_write... of a database no other tab shares."""

    def leader_info(self) -> dict[str, Any]:
        """``{is_leader: True, leader_id: None, epoch, tab_id: None}``."""
        self._check_open()
        return {"is_leader": True, "leader_id": None, "epoch": self._store.meta.epoch,
                "tab_id": None}

    async def wait_for_leadership(self) -> None:
        """Returns at once: a database open in one place always leads."""
        self._check_open()

    async def request_leadership(self) -> None:
        """Returns at once: a database open in one place always leads."""
        self._check_open()

    def on_change(self, callback: Callable[[dict[str, Any]], Any]) -> Callable[[], None]:
        """Call ``callback({version, tables: None, by: "local"})`` after every commit
        (from this database or a ``connect()`` connection); returns an unsubscriber."""
        loop = asyncio.get_running_loop()

        def call(version: int) -> None:
            out = callback({"version": version, "tables": None, "by": "local"})
            if asyncio.iscoroutine(out):
                asyncio.ensure_future(out)

        return self._store.add_commit_listener(
            lambda store: loop.call_soon_threadsafe(call, store.version))

    async def queue_write(self, sql: str, params: Sequence[Any] = (), *,
                          timeout: float | None = None) -> Result:
        """Apply the write and make it durable (with many tabs it would wait in a
        durable outbox first; here nothing can come between). ``timeout`` is
        accepted for the same signature."""
        result = await self.execute(sql, params)
        await self.sync()
        return result
