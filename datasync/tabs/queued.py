"""Queued writes: a durable outbox any leader drains, exactly once.

Example::

    res = await tab.queue_write("INSERT INTO log VALUES (?)", ["bye"], timeout=5.0)

A part of :class:`~datasync.tabs.SharedDatabase` (see :mod:`datasync.tabs` for the
protocol); the tab's state is set up in :mod:`.core`.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from collections.abc import Sequence
from typing import Any

from ..database import Result
from ..errors import (
    DatasyncError,
    QueuedWriteTimeoutError,
)
from .session import ConnState
from .wire import (
    APPLIED_TABLE,
    encode_params,
    rebuild_error,
    result_from_wire,
)


class QueuedWrites:
    """Queued writes: a durable outbox any leader drains, exactly once."""

    async def queue_write(self, sql: str, params: Sequence[Any] = (), *,
                          timeout: float | None = 30.0) -> Result:
        """Queue a write in the durable outbox, then wait for its result.

        Example::

            res = await tab.queue_write("INSERT INTO log VALUES (?)", ["bye"])

        Once queued (before anything else happens) the write is applied exactly once
        by whichever tab leads, even if this tab closes or crashes first. The call
        resolves like :meth:`execute` (read-your-writes included), or raises the
        statement's error, or after ``timeout`` seconds (``None``: no limit) raises
        :class:`QueuedWriteTimeoutError`: the write is still queued and will be
        applied later, so do not queue it again.
        """
        self._check_open()
        self._session.check(sql, await self._classify(sql), runs_here=False)
        entry_id = uuid.uuid4().hex
        await self._outbox.put({"id": entry_id, "tab": self.tab_id, "at": time.time(),
                                "stmts": [[str(sql), encode_params(params)]],
                                "state": self._session.state.to_wire(),
                                "pragmas": self._write_pragmas})
        self._post({"t": "queued", "id": entry_id})
        if self.is_leader:
            self._kick_drain()
        reply = await self._await_queued(entry_id, timeout)
        if "error" in reply:
            name, message = reply["error"]
            raise rebuild_error(name, message)
        if "state" in reply:
            self._session.state = ConnState.from_wire(reply["state"])
        return result_from_wire(reply["ok"][0])

    async def _await_queued(self, entry_id: str, timeout: float | None) -> dict[str, Any]:
        """The reply to queued write ``entry_id``: from the leader's ``result``
        message, or (should that be lost) from our own copy of the applied table."""
        loop = asyncio.get_running_loop()
        fut = self._pending.setdefault(entry_id, loop.create_future())
        deadline = None if timeout is None else loop.time() + timeout
        nudge_at = loop.time() + self.resend_interval
        try:
            while True:
                if fut.done():  # a reply, or close()'s DatabaseClosedError
                    reply = fut.result()
                    await self._reach(int(reply.get("version", 0)))
                    return reply
                self._check_open()
                # Our own copy's applied table, when it holds only durable data: a
                # follower's copy (caught up from storage), never a leader's, whose
                # record may be committed and not yet flushed.
                if not self.is_leader and not self._store.has_unflushed:
                    stored = await self._applied_reply(entry_id)
                    if stored is not None:
                        return stored
                now = loop.time()
                if deadline is not None and now >= deadline:
                    raise QueuedWriteTimeoutError(
                        f"queued write {entry_id} was not applied within {timeout} s; it "
                        "stays queued and a leader will apply it (do not queue it again)",
                        entry_id)
                if now >= nudge_at:
                    self._post({"t": "queued", "id": entry_id})
                    nudge_at = now + self.resend_interval
                wait = self.resend_interval / 4
                if deadline is not None:
                    wait = min(wait, max(deadline - now, 0.001))
                await asyncio.wait([fut], timeout=wait)
        finally:
            self._pending.pop(entry_id, None)

    async def _applied_reply(self, req_id: str) -> dict[str, Any] | None:
        try:
            res = await self.db.execute(
                f"SELECT result FROM {APPLIED_TABLE} WHERE id = ?", (req_id,))
        except sqlite3.OperationalError:
            return None  # no leader has created the table in our copy yet
        return json.loads(res.rows[0][0]) if res.rows else None

    def _kick_drain(self) -> None:
        """Drain the outbox (leader only); a drain already running goes round again."""
        if not self.is_leader or self._closed:
            return
        if self._drain_task is not None and not self._drain_task.done():
            self._drain_again = True
            return
        self._drain_task = asyncio.ensure_future(self._drain())
        self._background.add(self._drain_task)
        self._drain_task.add_done_callback(self._background.discard)

    async def _drain(self) -> None:
        while self.is_leader and not self._closed:
            self._drain_again = False
            try:
                entries = await self._outbox.entries()
                for entry in entries:
                    if not self.is_leader or self._closed:
                        return
                    entry_id = str(entry["id"])
                    stmts = [(str(sql), params) for sql, params in entry["stmts"]]
                    reply = await self._apply(entry_id, stmts, record_errors=True,
                                              state=ConnState.from_wire(entry.get("state")),
                                              pragmas=dict(entry.get("pragmas") or {}),
                                              local=entry.get("tab") == self.tab_id)
                    self._post({"t": "result", "id": entry_id, "to": entry.get("tab"), **reply})
                    fut = self._pending.get(entry_id)  # queued by this very tab
                    if fut is not None and not fut.done():
                        fut.set_result(reply)
                    await self._outbox.delete(entry_id)
            except DatasyncError:
                return  # deposed, or storage trouble: the next leader or poll retries
            if not self._drain_again:
                return
