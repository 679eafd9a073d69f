"""The leader's side of a write: applied exactly once, durably, then announced.

Example (what the leader tab runs for a write another tab forwarded)::

    reply = await tab._apply(req_id, [("INSERT INTO t VALUES (?)", [1])], local=False)
    # {"ok": [...results...], "state": {...}, "version": 7}

Each write runs in one leader transaction (``_writable``: ``query_only`` lifted only
there) with its id recorded in ``_datasync_applied`` (a retry is answered from the
row), except this tab's own writes never sent elsewhere, whose outcome after a
takeover the store answers (``_stored``). A part of
:class:`~datasync.tabs.SharedDatabase`; the caller's side is :mod:`.forwarding`.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from ..errors import BusyTimeoutError, ConnectionPragmaError, DeposedLeaderError
from .services import Message
from .session import ConnState
from .wire import APPLIED_TABLE, decode_params, result_to_wire


class Applying:
    """The leader's side of writes: apply once, flush, announce."""

    async def _apply(self, req_id: str, stmts: list[tuple[str, Any]], *,
                     record_errors: bool = False, state: ConnState | None = None,
                     pragmas: dict[str, str] | None = None, local: bool = True,
                     recorded: bool = True) -> dict[str, Any]:
        """As the leader: apply once, durably; returns the reply. ``record_errors``:
        a failure is recorded under the id too (a queued write is then done).
        ``state``: the sending tab's last_insert_rowid()/changes()/total_changes();
        ``local``: this tab's own write (else another tab's: ``by: "remote"``);
        ``recorded=False``: no row in the applied table, for a write whose caller
        waits here for its outcome (this tab's own ``execute``, never sent to another
        tab): it learns whether the commit was stored from the store itself, so its
        retry with the same id after DeposedLeaderError was never applied."""
        if not (recorded or record_errors):  # nobody else knows the id: no dedup task
            return await self._apply_once(
                req_id, stmts, False, state or ConnState(),
                self._write_pragmas if pragmas is None else pragmas, local, False)
        task = self._inflight.get(req_id)
        if task is None:
            task = asyncio.ensure_future(self._apply_once(
                req_id, stmts, record_errors, state or ConnState(),
                self._write_pragmas if pragmas is None else pragmas, local,
                recorded or record_errors))
            self._inflight[req_id] = task
            task.add_done_callback(lambda t: self._inflight.pop(req_id, None) and (
                t.cancelled() or t.exception()))  # retrieved: a dead caller may not
        return await asyncio.shield(task)

    @contextlib.asynccontextmanager
    async def _writable(self, timeout: float | None = None,
                        receipt: dict[str, int] | None = None) -> AsyncIterator[None]:
        """A leader transaction in which writes are allowed (query_only is lifted
        only here, so SQLite itself tells every other statement it may not write).
        ``timeout``: seconds to wait for the connection (BusyTimeoutError);
        ``receipt``: gets the commit's number and generation (``Database.committing``)."""
        # DEFERRED: with query_only on, BEGIN IMMEDIATE counts as a write; and with
        # one connection writing, IMMEDIATE or EXCLUSIVE would change nothing.
        async with self.db.committing(timeout=timeout, receipt=receipt):
            if not self.is_leader:  # stepped down while waiting for our turn
                raise DeposedLeaderError(f"this tab no longer leads {self.name!r}")
            self.db.run("PRAGMA query_only = OFF", ())  # (our turn: no await needed)
            try:
                yield
            finally:
                self.db.run("PRAGMA query_only = ON", ())

    async def _apply_once(self, req_id: str, stmts: list[tuple[str, Any]],
                          record_errors: bool, state: ConnState,
                          pragmas: dict[str, str], local: bool = True,
                          recorded: bool = True) -> dict[str, Any]:
        tables: set[str] = set()
        generation = self._store.generation
        failure: dict[str, Any] | None = None
        session = self._session
        receipt: dict[str, int] = {}
        try:
            async with self._writable(timeout=self.busy_timeout, receipt=receipt):
                done = await self.db.execute(
                    f"SELECT result FROM {APPLIED_TABLE} WHERE id = ?",
                    (req_id,)) if recorded else None
                if done and done.rows:
                    reply = json.loads(done.rows[0][0])
                else:
                    if pragmas != self._write_pragmas:
                        raise ConnectionPragmaError(
                            f"the tab that sent this write opened with pragmas {pragmas}, "
                            f"the leader tab with {self._write_pragmas}: its writes would "
                            "run under other rules; open every tab with the same pragmas=")
                    session.record_tables(tables)
                    session.begin(state)
                    results = []
                    try:
                        for sql, params in stmts:
                            # Checked here, just before it runs: a table an earlier
                            # statement of the batch created is known by now.
                            kind = session.classify(sql)
                            session.check(sql, kind, runs_here=False, for_another_tab=True)
                            try:
                                result = await self.db.execute(
                                    sql, decode_params(params))
                            finally:
                                session.ran(kind)  # failed too: changes() is then 0
                            results.append(result)
                    finally:
                        session.record_tables(None)
                        state = session.end()
                    reply = {"ok": [result_to_wire(r) for r in results],
                             "state": state.to_wire()}
                    if recorded:
                        await self.db.execute(
                            f"INSERT INTO {APPLIED_TABLE}(id, result, at) VALUES (?, ?, ?)",
                            (req_id, json.dumps(reply), time.time()))
        except Exception as exc:  # sqlite3, ours, or a bad parameter (OverflowError...)
            if isinstance(exc, DeposedLeaderError) or (
                    isinstance(exc, BusyTimeoutError) and record_errors):
                raise  # (a queued write waits in the outbox for the next drain)
            if isinstance(exc, BusyTimeoutError):  # not applied, nothing to record
                return {"error": [type(exc).__name__, str(exc)], "state": state.to_wire(),
                        "version": self._store.version}
            failure = {"error": [type(exc).__name__, str(exc)], "state": state.to_wire()}
            if not record_errors:
                return {**failure, "version": self._store.version}
        if failure is not None:  # the statements rolled back; record only the outcome
            reply = failure
            async with self._writable():
                await self.db.execute(
                    f"INSERT OR IGNORE INTO {APPLIED_TABLE}(id, result, at) VALUES (?, ?, ?)",
                    (req_id, json.dumps(failure), time.time()))
        try:
            version = await self._flush_and_announce(tables, local=local)
        except DeposedLeaderError:
            if not self._stored(receipt):
                raise
            version = self._store.version  # stored before the drop: it stands
        if self._store.generation != generation and not self._stored(receipt):
            # We stepped down between our commit and the flush, and stepping down
            # dropped the write: the sender must ask the new leader, with the same
            # id. (Stored before the drop, it stands; a recorded write's row then
            # also tells the new leader so.)
            raise DeposedLeaderError(
                f"leadership of {self.name!r} moved before write {req_id} was durable")
        return {**reply, "version": version}

    def _stored(self, receipt: dict[str, int]) -> bool:
        """Whether the commit ``receipt`` names (``Database.committing``) is in
        storage, in whatever generation it was made (False: none was made)."""
        return bool(receipt) and self._store.durable_in_generation(
            receipt["seq"], receipt["generation"])

    async def _flush_and_announce(self, tables: set[str], *, local: bool = True) -> int:
        """Make our commits durable, announce the durable version and return it.
        That is the store's version when we resume, not the one the flush that
        carried our commit reached: another task's later flush may have landed
        while this task waited to resume, and what a tab announces only grows."""
        try:
            await self.db.sync()
            version = self._store.version
        except DeposedLeaderError:
            if self._lease is not None:
                self._locks.release(self._lease)  # it was stolen; make sure we let go
            await self._step_down()
            raise
        self._saw(version)
        self._post({"t": "changed", "version": version, "epoch": self.epoch,
                    "tables": sorted(tables), "tab": self.tab_id})
        if tables:  # (tables written, created, dropped or altered)
            self._notify({"version": version, "tables": sorted(tables),
                          "by": "local" if local else "remote"})
        return version

    async def _serve_write(self, msg: Message) -> None:
        stmts = [(s, p) for s, p in msg["stmts"]]
        try:
            reply = await self._apply(msg["id"], stmts,
                                      state=ConnState.from_wire(msg.get("state")),
                                      pragmas=dict(msg.get("pragmas") or {}), local=False)
        except DeposedLeaderError:
            return  # the sender resends to the new leader
        self._post({"t": "result", "id": msg["id"], "to": msg["tab"], **reply})
