"""Leadership: a Web Lock held for the tab's life, and epochs that fence.

Example::

    await tab.wait_for_leadership()
    await tab.request_leadership()     # steal: the current leader steps down

A part of :class:`~datasync.tabs.SharedDatabase` (see :mod:`datasync.tabs` for the
protocol); the tab's state is set up in :mod:`.core`.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time

from ..errors import (
    BackendError,
    DatabaseClosedError,
    DatasyncError,
    DeposedLeaderError,
)
from .services import Lease
from .wire import (
    APPLIED_RETENTION,
    APPLIED_TABLE,
)


class Election:
    """Leadership: a Web Lock held for the tab's life, and epochs that fence."""

    #: Seconds open() waits to learn this tab's role (leads, or who leads).
    role_timeout = 5.0
    #: The leader applies writes to its copy (records ids in ``_datasync_applied``);
    #: False where another applies them (a replica's tabs: the primary).
    applies_writes_here = True

    async def _learn_role(self) -> None:
        """Wait until this tab leads or knows who does (a lone tab wins the lock at
        once and leads after one flush); after :attr:`role_timeout` it opens
        anyway, with ``leader_id`` None until a leader answers."""
        deadline = asyncio.get_running_loop().time() + self.role_timeout
        while not self.is_leader and self.leader_id is None and not self._closed:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            became = asyncio.ensure_future(self._became_leader.wait())
            changed = asyncio.ensure_future(self._leader_changed.wait())
            await asyncio.wait([became, changed], timeout=min(left, self.resend_interval),
                               return_when=asyncio.FIRST_COMPLETED)
            became.cancel()
            changed.cancel()
            if not self.is_leader and self.leader_id is None:
                self._post({"t": "who", "tab": self.tab_id})

    async def wait_for_leadership(self) -> None:
        """Wait until this tab is the leader."""
        await self._became_leader.wait()

    async def request_leadership(self) -> None:
        """Take leadership now (the current leader steps down cleanly)."""
        if self.is_leader:
            return
        self._check_open()
        lease = await self._locks.acquire(self._lock_name, steal=True)
        hold = asyncio.ensure_future(self._hold(lease))
        self._tasks.append(hold)
        became = asyncio.ensure_future(self._became_leader.wait())
        await asyncio.wait([hold, became], return_when=asyncio.FIRST_COMPLETED)
        if became.done():
            return
        became.cancel()
        if hold.cancelled():
            raise DatabaseClosedError(f"database {self.name!r} was closed in this tab")
        if hold.exception() is not None:
            raise hold.exception()  # type: ignore[misc]
        raise DeposedLeaderError(
            f"leadership of {self.name!r} moved to another tab before this one could lead")

    async def _campaign(self) -> None:
        while not self._closed:
            if self._key_error is not None:
                # Cannot read the store (rekeyed elsewhere, key not received): not a
                # candidate until a catch-up succeeds again.
                await asyncio.sleep(self.poll_interval)
                continue
            try:
                await self._hold(await self._locks.acquire(self._lock_name))
            except DatasyncError:
                await asyncio.sleep(self.poll_interval)  # lease released: others may lead

    async def _hold(self, lease: Lease) -> None:
        """Lead while ``lease`` is held, then step down."""
        if self._closed or self._key_error is not None:
            self._locks.release(lease)
            return
        try:
            await self._lead(lease)
        except DatasyncError:
            # Could not take over (rekeyed elsewhere and we lack the key, storage
            # trouble, deposed meanwhile): let another tab lead, and drop whatever
            # this attempt committed but did not flush.
            self._locks.release(lease)
            if self._lease is lease:
                self._lease = None
                self.is_leader = False
                self._became_leader.clear()
                if self.leader_id == self.tab_id:
                    self.leader_id = None
                with contextlib.suppress(DatasyncError):
                    await self._discard_unflushed()
            raise
        await lease.lost.wait()
        if self._lease is lease:
            await self._step_down()

    async def _lead(self, lease: Lease) -> None:
        self._lease = lease
        # Read while the epoch is staked (one IndexedDB round trip less before this
        # tab leads). Early is safe: an entry queued after the read has no record
        # yet, or one too fresh to be pruned.
        queued_read = asyncio.ensure_future(self._outbox.entries())
        # Retrieved even when not awaited below (no "exception never retrieved").
        queued_read.add_done_callback(lambda t: t.cancelled() or t.exception())
        try:
            await self._stake_epoch(lease)
        except BaseException:
            queued_read.cancel()
            raise
        if lease.lost.is_set():
            queued_read.cancel()
            return
        self.leaderships.append(self._store.epoch)
        self._post({"t": "changed", "version": self._store.version, "epoch": self._store.epoch,
                    "tables": [], "tab": self.tab_id})
        self.epoch = self._store.epoch
        self.is_leader = True
        self.leader_id = self.tab_id
        try:  # ids still queued keep their record, however old, so none applies twice
            queued: list[str] | None = [str(e["id"]) for e in await queued_read]
        except DatasyncError:
            queued = None  # the outbox is unreadable now: prune nothing this time
        if self.applies_writes_here:
            async with self._writable():
                await self.db.execute(
                    f"CREATE TABLE IF NOT EXISTS {APPLIED_TABLE}"
                    "(id TEXT PRIMARY KEY, result TEXT NOT NULL, at REAL NOT NULL)")
                if queued is not None:
                    await self.db.execute(
                        f"DELETE FROM {APPLIED_TABLE} WHERE at < ? AND id NOT IN "
                        "(SELECT value FROM json_each(?))",
                        (time.time() - APPLIED_RETENTION, json.dumps(queued)))
                if self.db.capturing:
                    await self._install_cdc()
        await self._flush_and_announce(set())
        self._became_leader.set()
        self._leader_changed.set()
        self._post({"t": "leader", "tab": self.tab_id, "epoch": self.epoch})
        self._kick_drain()

    async def _stake_epoch(self, lease: Lease) -> None:
        """Catch up and flush with the next epoch (the fence), until it lands or
        the lease is lost."""
        while not lease.lost.is_set():
            await self._catch_up_when_idle()
            self._store.epoch = self._store.meta.epoch + 1
            try:
                await self._store.flush(force=True)  # stakes the epoch
                return
            except BackendError:
                continue  # someone flushed meanwhile: catch up and try again

    async def _step_down(self) -> None:
        self._abort_transactions("this tab stopped leading")
        self.is_leader = False
        self._became_leader.clear()
        self._lease = None
        if self.leader_id == self.tab_id:
            self.leader_id = None
        # Whatever we committed but did not flush was never acknowledged: drop it.
        await self._discard_unflushed()

    async def _discard_unflushed(self) -> None:
        async with self.db.turn():  # not in the middle of one of our statements
            await self._store.discard_unflushed()
        await self._catch_up_when_idle()
