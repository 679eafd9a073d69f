"""Following the leader: catch-up by version, change notices, change capture.

Example::

    tab.on_change(lambda change: print(change["version"], change["tables"]))
    async for change in tab.changes(tables=["notes"]): ...

A part of :class:`~datasync.tabs.SharedDatabase` (see :mod:`datasync.tabs` for the
protocol); the tab's state is set up in :mod:`.core`.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from .. import cdc, vfs
from ..errors import (
    DatasyncError,
    WrongKeyError,
)
from .wire import (
    ChangeCallback,
)


class Following:
    """Following the leader: catch-up by version, change notices, change capture."""

    async def _follow(self) -> None:
        """Catch up on notices, and poll (messages can be missed)."""
        while not self._closed:
            try:
                await asyncio.wait_for(self._catchup_wanted.wait(), self.poll_interval)
            except asyncio.TimeoutError:
                pass
            self._catchup_wanted.clear()
            if self.is_leader:
                self._kick_drain()  # a "queued" notice may have been missed
            else:
                try:
                    await self._catch_up_when_idle()
                except DatasyncError:
                    pass  # storage trouble: try again at the next poll

    async def _catch_up_when_idle(self) -> int:
        before = self._store.version
        async with self.db.turn():  # not between a BEGIN and its COMMIT of ours
            key = self._store.backend.key
            if self._closed or vfs.attached(key) is None:
                return before
            while vfs.in_use(key):  # a reader is inside a transaction
                await asyncio.sleep(0.005)
            try:
                version = await self._store.catch_up()
            except WrongKeyError as exc:
                self._key_error = exc  # every call now says so (see _check_open)
                raise
            self._key_error = None
            if version > before:
                self.db.after_new_image()  # cached EXPLAINs see a new schema
        if version > before:
            self._session.forget()  # another tab may have changed the schema
            self._saw(version)
            self.epoch = max(self.epoch, self._store.meta.epoch)
            self._notify({"version": version, "tables": self._tables_between(before, version),
                          "by": "remote"})
        async with self._caught_up:
            self._caught_up.notify_all()
        return version

    async def _catch_up_for_notice(self) -> None:
        try:
            await self._catch_up_when_idle()
        except DatasyncError:
            pass  # the poller retries

    async def _reach(self, version: int) -> None:
        """Wait until this tab's copy holds ``version`` (read-your-writes)."""
        while self._store.version < version and not self._closed:
            await self._catch_up_when_idle()
            if self._store.version < version:
                await asyncio.sleep(0.002)

    def _saw(self, version: int) -> None:
        self.versions_seen.append(version)

    def _tables_between(self, before: int, after: int) -> list[str] | None:
        """Tables the notices say versions (before, after] wrote; None if a notice
        is missing (the change may touch any table)."""
        tables: set[str] = set()
        for v in range(before + 1, after + 1):
            known = self._notice_tables.pop(v, None)
            if known is None:
                return None
            tables.update(known)
        return sorted(tables)

    def on_change(self, callback: ChangeCallback) -> Callable[[], None]:
        """Call ``callback({version, tables, by})`` after every change from any tab;
        returns an unsubscriber."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def _notify(self, change: dict[str, Any]) -> None:
        for cb in list(self._callbacks):
            out = cb(change)
            if asyncio.iscoroutine(out):
                asyncio.ensure_future(out)

    async def _install_cdc(self) -> None:
        """As the new leader, in its first transaction: the change log and the
        triggers (then forwarded statements capture on the leader, and every tab
        reads the log from its own copy)."""
        cdc.refresh_triggers(self.db.connection)
        await cdc.prune(self.db, self.db.cdc_retention)

    async def changes(self, tables: Sequence[str] | None = None, since: int | None = None, *,
                      consumer: str | None = None, follow: bool = True,
                      batch: int = 200) -> AsyncIterator[cdc.Change]:
        """:meth:`datasync.Database.changes` for any tab: reads this tab's copy of
        the log, waking up when a change from any tab reaches it.

        Example: ``async for change in tab.changes(tables=["notes"]): ...``
        """
        self._check_open()
        loop = asyncio.get_running_loop()

        def subscribe(wake: Callable[[], None]) -> Callable[[], None]:
            off_change = self.on_change(lambda change: wake())
            off_commit = self._store.add_commit_listener(  # the leader's own commits
                lambda store: loop.call_soon_threadsafe(wake))
            off_close = self.db.on_close(wake)  # closing this tab ends the stream
            return lambda: (off_change(), off_commit(), off_close())

        async def register(name: str) -> None:
            await self.execute(
                f"INSERT OR IGNORE INTO {cdc.CONSUMERS_TABLE}(name, acked, at) VALUES (?, 0, ?)",
                (name, time.time()))

        async for change in cdc.stream(self.db, subscribe, tables=tables, since=since,
                                       consumer=consumer, follow=follow, batch=batch,
                                       closed=lambda: self._closed, register=register):
            yield change

    async def ack(self, consumer: str, seq: int) -> None:
        """:meth:`datasync.Database.ack`, applied by the leader.

        Example: ``await tab.ack("search-index", change.seq)``
        """
        self._check_open()
        await cdc.ack(self, consumer, seq)
        await cdc.prune(self, self.db.cdc_retention)

    async def prune_changes(self) -> int:
        """:meth:`datasync.Database.prune_changes`, applied by the leader."""
        self._check_open()
        return await cdc.prune(self, self.db.cdc_retention)
