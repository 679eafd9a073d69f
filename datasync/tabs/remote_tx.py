"""A follower's transaction, held open at the leader (see :mod:`.transactions`).

Example::

    tx = RemoteTransaction(tab, uuid.uuid4().hex, "DEFERRED")
    if await tx.start():                      # False: leadership moved, begin again
        rows = await tx.query("SELECT n FROM counter")
        await tx.execute("UPDATE counter SET n = ?", [rows[0]["n"] + 1])
        await tx.commit()                     # the durable version; read back here
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ..database import Result
from ..database.explicit import run_many
from ..errors import DatasyncError, LeaderUnavailableError, TransactionAbortedError
from .session import ConnState
from .wire import encode_params, rebuild_error, result_from_wire


class _LeaderMoved(Exception):
    """The leader this transaction lives on is no longer the leader."""


class RemoteTransaction:
    """A transaction of this (follower) tab, run by the leader tab."""

    def __init__(self, tab: Any, tx_id: str, mode: str) -> None:
        self._tab, self.id, self.mode = tab, tx_id, mode
        self._seq = 0
        self._leader: str | None = None
        self._epoch = 0
        self._alive: asyncio.Task[None] | None = None
        self._turn = asyncio.Lock()  # one op at a time, in order, as the leader runs them
        self.state = "new"

    async def start(self) -> bool:
        """Begin at the leader; False if leadership moved first (nothing began)."""
        tab = self._tab
        deadline = time.monotonic() + tab.write_timeout
        while tab.leader_id is None or tab.leader_id == tab.tab_id:
            tab._check_open()
            if tab.is_leader:
                return False
            if time.monotonic() > deadline:
                raise LeaderUnavailableError(
                    f"no leader of {tab.name!r} answered within {tab.write_timeout} s; "
                    "the transaction did not begin (it is safe to retry)")
            tab._post({"t": "who", "tab": tab.tab_id})
            tab._leader_changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(tab._leader_changed.wait(), tab.resend_interval)
        self._leader, self._epoch = tab.leader_id, tab.epoch
        tab._remote_txs.add(self)  # from the begin on: closing the tab ends it there
        try:
            self._check(await self._send({"op": "begin", "mode": self.mode,
                                          "state": tab._session.state.to_wire(),
                                          "pragmas": tab._write_pragmas}))
        except _LeaderMoved:
            return False
        self.state = "open"
        self._alive = asyncio.ensure_future(self._keep_alive())
        return True

    def abandon(self) -> None:
        """This tab closes: tell the leader to roll the transaction back now, also
        one whose begin is still waiting there for the connection (one message,
        unanswered; if it is lost, the lease ends the transaction)."""
        if self.state not in ("new", "open") or self._leader is None:
            return
        self.state = "aborted"
        if self._alive is not None:
            self._alive.cancel()
        self._seq += 1  # after any op still in flight: it runs after that one
        self._tab._post({"t": "tx", "op": "rollback", "id": self.id, "seq": self._seq,
                         "tab": self._tab.tab_id, "to": self._leader})

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Result:
        tab = self._tab
        tab._session.check(sql, await tab._classify(sql), runs_here=False)
        reply = await self._op({"op": "stmt", "sql": str(sql),
                                "params": encode_params(params)})
        return result_from_wire(reply["ok"])

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        res = await self.execute(sql, params)
        return [dict(zip(res.columns, row)) for row in res.rows]

    async def executemany(self, sql: str, seq_of_params: Iterable[Sequence[Any]]) -> Result:
        return await run_many(self.execute, sql, seq_of_params)

    async def batch(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> list[Result]:
        return [await self.execute(sql, params) for sql, params in statements]

    async def commit(self) -> int:
        """Commit at the leader; returns the durable version, once this tab's copy
        holds it. If leadership moves meanwhile, the outcome is read from this
        tab's copy (:meth:`TabTransactions._outcome`)."""
        tab = self._tab
        async with self._turn:
            self._ending()
            try:
                reply = await self._send({"op": "commit"})
            except _LeaderMoved:
                reply = await tab._outcome(self.id, self._epoch)
            except LeaderUnavailableError:
                reply = await self._settle_unanswered()
        self._check(reply)
        self.state = "committed"
        if reply.get("state"):
            tab._session.state = ConnState.from_wire(reply["state"])
        await tab._reach(int(reply["version"]))
        return int(reply["version"])

    async def _settle_unanswered(self) -> dict[str, Any]:
        """The leader never answered the commit: committed if this tab's copy holds
        its record, else unknown (it may still land)."""
        tab = self._tab
        self.state = "unknown"
        with contextlib.suppress(DatasyncError):
            await tab._catch_up_when_idle()
        stored = await tab._applied_reply(self.id)
        if stored is None:
            raise LeaderUnavailableError(
                f"the leader of {tab.name!r} did not answer the commit within "
                f"{tab.write_timeout} s, and whether it was applied is unknown: check "
                "before running the transaction again")
        return {**stored, "version": tab._store.version}

    async def rollback(self) -> None:
        """Roll back at the leader (if it is gone, so is the transaction)."""
        if self.state != "open":
            return
        self._ending()
        self.state = "rolled back"
        with contextlib.suppress(_LeaderMoved, DatasyncError):
            async with self._turn:
                await self._send({"op": "rollback"}, patience=self._tab.resend_interval * 2)

    # -- messages ------------------------------------------------------------------
    def _ending(self) -> None:
        if self.state != "open":
            raise TransactionAbortedError(
                f"this transaction on {self._tab.name!r} is {self.state}: begin a new one")
        if self._alive is not None:
            self._alive.cancel()

    async def _op(self, fields: dict[str, Any]) -> dict[str, Any]:
        if self.state != "open":
            raise TransactionAbortedError(
                f"this transaction on {self._tab.name!r} is {self.state}: begin a new one")
        try:
            async with self._turn:
                return self._check(await self._send(fields))
        except LeaderUnavailableError:
            self.state = "aborted"  # no more keep-alives: the leader's lease ends it
            if self._alive is not None:
                self._alive.cancel()
            raise
        except _LeaderMoved:
            self.state = "aborted"
            if self._alive is not None:
                self._alive.cancel()
            raise TransactionAbortedError(
                f"leadership of {self._tab.name!r} moved during the transaction, which was "
                "rolled back; nothing of it was applied: run it again") from None

    def _check(self, reply: dict[str, Any]) -> dict[str, Any]:
        if "error" in reply:
            name, message = reply["error"]
            if name == "TransactionAbortedError":
                self.state = "aborted"
                if self._alive is not None:
                    self._alive.cancel()
            raise rebuild_error(name, message)
        return reply

    async def _send(self, fields: dict[str, Any], patience: float | None = None
                    ) -> dict[str, Any]:
        """Post one op to the leader (again every resend interval) until it answers."""
        tab = self._tab
        self._seq += 1
        key = f"{self.id}:{self._seq}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        tab._pending[key] = fut
        deadline = time.monotonic() + (tab.write_timeout if patience is None else patience)
        message = {"t": "tx", "id": self.id, "seq": self._seq, "tab": tab.tab_id,
                   "to": self._leader, **fields}
        try:
            while not fut.done():
                tab._check_open()
                if tab.is_leader or tab.leader_id != self._leader:
                    raise _LeaderMoved()
                if time.monotonic() > deadline:
                    raise LeaderUnavailableError(
                        f"the leader of {tab.name!r} did not answer within "
                        f"{tab.write_timeout} s; the transaction is rolled back there "
                        "once its lease runs out")
                tab._post(message)
                tab._leader_changed.clear()
                changed = asyncio.ensure_future(tab._leader_changed.wait())
                await asyncio.wait([fut, changed], timeout=tab.resend_interval,
                                   return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
            return fut.result()
        finally:
            tab._pending.pop(key, None)

    async def _keep_alive(self) -> None:
        tab = self._tab
        interval = min(tab.resend_interval, tab.transaction_lease / 3)
        while self.state == "open" and not tab._closed:
            tab._post({"t": "tx", "op": "alive", "id": self.id, "tab": tab.tab_id,
                       "to": self._leader})
            await asyncio.sleep(interval)
