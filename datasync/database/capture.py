"""Change data capture on a database (``open(..., cdc=True)``): the API side.

Example::

    async for change in db.changes(tables=["notes"], consumer="search"):
        index(change)
        await db.ack("search", change.seq)

How changes are captured (triggers, the log, consumers, retention) is
:mod:`datasync.cdc`; this mixin of :class:`~datasync.Database` turns it on and
streams it, over the internal API of :mod:`.core`.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable

from .. import cdc as _cdc
from ..blockstore import BlockStore


class Capture:
    """enable_cdc, changes, ack, prune_changes."""

    async def enable_cdc(self, *, retention: float | None = None, install: bool = True) -> None:
        """Capture every committed change from now on (what ``open(cdc=True)`` does).

        Example: ``await db.enable_cdc(retention=86400)``

        Creates the change log and the triggers (one write transaction) and prunes
        what ``retention`` allows. ``install=False`` only turns on the maintenance of
        triggers on schema changes (the multi-tab leader installs them itself).
        """
        self._cdc = True
        self._cdc_retention = retention
        if not install:
            return
        async with self.transaction("IMMEDIATE"):
            _cdc.refresh_triggers(self._conn)
            await _cdc.prune(self, retention)

    async def changes(
        self,
        tables: Iterable[str] | None = None,
        since: int | None = None,
        *,
        consumer: str | None = None,
        follow: bool = True,
        batch: int = 200,
    ) -> AsyncIterator[_cdc.Change]:
        """Stream captured changes in commit order, then wait for new ones.

        Example::

            async for change in db.changes(tables=["notes"], since=last_seq):
                print(change.seq, change.op, change.key, change.old, change.new)

        ``since``: yield changes with a larger ``seq`` (default: all kept). With
        ``consumer`` and no ``since`` it resumes after what that consumer acknowledged
        (see :meth:`ack`), registering it if new (pruning then keeps what it has not
        acknowledged). ``follow=False`` stops at the end of the log instead of waiting.
        A change is streamed once committed; it is durable once ``db.version >=
        change.version`` (in relaxed mode a crash before that loses it). A waiting
        stream ends when the database is closed.
        """
        self._check_open()
        loop = asyncio.get_running_loop()

        def subscribe(wake: Callable[[], None]) -> Callable[[], None]:
            def on_commit(store: BlockStore) -> None:
                try:
                    loop.call_soon_threadsafe(wake)
                except RuntimeError:
                    pass  # the loop is closed

            remove = self._store.add_commit_listener(on_commit)
            self._close_wakers.add(wake)
            return lambda: (remove(), self._close_wakers.discard(wake))

        async def register(name: str) -> None:
            await _cdc.register_consumer(self, name)

        async for change in _cdc.stream(self, subscribe, tables=tables, since=since,
                                        consumer=consumer, follow=follow, batch=batch,
                                        closed=lambda: self._closed, register=register):
            yield change

    async def ack(self, consumer: str, seq: int) -> None:
        """Consumer ``consumer`` is done with every change up to ``seq``; pruning may
        now drop them (once older than the retention).

        Example: ``await db.ack("search-index", change.seq)``
        """
        async with self.transaction():
            await _cdc.ack(self, consumer, seq)
            await _cdc.prune(self, self._cdc_retention)

    async def prune_changes(self) -> int:
        """Delete captured changes older than the retention and acknowledged by every
        registered consumer; returns how many. ``ack`` and opening also prune.

        Example: ``removed = await db.prune_changes()``
        """
        return await _cdc.prune(self, self._cdc_retention)

