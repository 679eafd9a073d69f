"""Interactive transactions from any tab, run on the leader's connection.

Example::

    async with tab.transaction() as tx:          # in any tab, leader or follower
        n = (await tx.query("SELECT n FROM counter"))[0]["n"]
        await tx.execute("UPDATE counter SET n = ?", [n + 1])   # no lost update

    tx = await tab.begin()                       # the same, across calls (JS)
    await tx.execute("INSERT INTO t VALUES (1)")
    await tx.commit()

The leader holds each transaction open in one task (a
:class:`~datasync.database.explicit.Transaction` on its connection); a follower's
statements reach it as messages and run there, in order, so a statement may
depend on an earlier result and reads see the transaction's own writes.
Meanwhile every other write waits for the leader's connection, at most
``busy_timeout`` seconds (then :class:`~datasync.BusyTimeoutError`: not
applied). Protocol, on the app's channel:

* ``tx {op: begin|stmt|commit|rollback|alive, id, seq, tab, to, ...}`` and the
  leader's ``tx-reply {id, seq, to, ok | error, ...}``. A message is resent until
  answered; ``seq`` makes each op run once (a repeat gets the same reply).
* ``commit`` records ``id`` in ``_datasync_applied`` inside the transaction, so
  its outcome survives a lost reply or a leader crash: the sender then reads the
  outcome from its own copy once the next leader's epoch is in it (that leader
  caught up on everything the old one made durable, and fenced off the rest).
* A follower sends ``alive`` while its transaction is open; the leader rolls
  back one that stays silent for ``transaction_lease`` seconds (a crashed tab).
  The lease counts from the tab's last message, also while its ``begin`` waits
  for the connection (the begin is resent meanwhile): a tab that died waiting
  never holds the connection, so dead tabs hold it at most one lease in all,
  not one each. A tab that closes sends ``rollback`` for its transactions
  (begun or still beginning). Leadership moving rolls back every transaction,
  open or waiting to begin: :class:`~datasync.TransactionAbortedError`, nothing
  applied.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..database.explicit import Transaction
from ..errors import (
    ConnectionPragmaError,
    DatasyncError,
    DeposedLeaderError,
    InvalidOptionError,
    LeaderUnavailableError,
    TransactionAbortedError,
)
from .remote_tx import RemoteTransaction
from .services import Message
from .session import ConnState
from .wire import APPLIED_TABLE, decode_params, result_to_wire

#: (tab, transaction, task) of the ``async with tab.transaction()`` block the
#: current task is in: its statements join that transaction.
_current: contextvars.ContextVar[tuple[Any, Any, Any] | None] = contextvars.ContextVar(
    "datasync_tab_transaction", default=None)
_MODES = ("DEFERRED", "IMMEDIATE", "EXCLUSIVE")


@dataclass
class _Served:
    """A transaction the leader holds for a tab: the last op it ran, and its reply."""

    seq: int = 0
    reply: dict[str, Any] | None = None
    tx: Transaction | None = None


class LeaderTransaction:
    """A transaction held on the leader's connection, for this tab or another.

    ``execute``/``query``/``executemany``/``batch`` join it; :meth:`commit`
    returns the durable version that holds it."""

    def __init__(self, tab: Any, tx: Transaction, tx_id: str, tables: set[str],
                 box: dict[str, Any]) -> None:
        self._tab, self._tx, self.id, self._tables, self._box = tab, tx, tx_id, tables, box
        self._epoch = tab.epoch  # of the leadership holding it
        self.execute, self.query = tx.execute, tx.query
        self.execute_now = tx.execute_now
        self.executemany, self.batch = tx.executemany, tx.batch

    async def commit(self) -> int:
        tab = self._tab
        generation = tab._store.generation
        await self._tx.commit(before=lambda: tab._record_commit(self.id, self._box))
        try:
            version = await tab._flush_and_announce(self._tables,
                                                    local=bool(self._box.get("local")))
            if tab._store.generation != generation:
                raise DeposedLeaderError("stepped down before the commit was durable")
        except DeposedLeaderError:
            if not self._box.get("local"):
                # raises TransactionAbortedError if it did not become durable
                version = (await tab._outcome(self.id, self._epoch))["version"]
            elif tab._stored(self._box["receipt"]):
                version = tab._store.version  # stored before the drop: it stands
            else:
                raise TransactionAbortedError(
                    f"leadership of {tab.name!r} moved before the transaction was "
                    "durable; nothing of it was applied: run it again") from None
        if self._box.get("local"):
            tab._session.state = self._box["state"]
        return version

    @property
    def state(self) -> ConnState:
        """The sending tab's last_insert_rowid()/changes() after the commit."""
        return self._box.get("state") or ConnState()
    async def rollback(self) -> None:
        await self._tx.rollback()


class TabTransactions:
    """begin() and transaction() for any tab; the leader's side of the protocol."""

    #: Seconds a write waits for another tab's open transaction before
    #: :class:`~datasync.BusyTimeoutError` (not applied: retry it).
    busy_timeout = 5.0
    #: Seconds the leader keeps a silent follower's transaction open.
    transaction_lease = 3.0

    async def begin(self, mode: str = "DEFERRED") -> Any:
        """Open a transaction on the leader's connection (in this tab if it leads);
        returns an object with ``execute``, ``query``, ``executemany``, ``batch``,
        ``commit`` (-> durable version) and ``rollback``.

        Raises :class:`~datasync.BusyTimeoutError` when another transaction holds
        the database longer than :attr:`busy_timeout`, and
        :class:`~datasync.LeaderUnavailableError` when no leader answers."""
        mode = str(mode).upper()
        if mode not in _MODES:
            raise InvalidOptionError(f"mode={mode!r}: use DEFERRED, IMMEDIATE or EXCLUSIVE")
        while True:
            self._check_open()
            if self.is_leader:
                try:
                    return await self._hold_transaction(uuid.uuid4().hex, None,
                                                        self._session.state)
                except DeposedLeaderError:
                    continue
            tx = RemoteTransaction(self, uuid.uuid4().hex, mode)
            if await tx.start():
                return tx
            # leadership moved before the leader began it: ask the new one

    @contextlib.asynccontextmanager
    async def transaction(self, mode: str = "DEFERRED") -> AsyncIterator[Any]:
        """``async with tab.transaction() as tx:``: committed when the block ends,
        rolled back on an exception; ``tab.execute`` in the block joins it too.
        Nested, it is a savepoint."""
        joined = self._joined()
        if joined is not None:
            async with self._savepoint(joined):
                yield joined
            return
        tx = await self.begin(mode)
        token = _current.set((self, tx, asyncio.current_task()))
        try:
            yield tx
        except BaseException:
            _current.reset(token)
            with contextlib.suppress(Exception):
                await tx.rollback()
            raise
        _current.reset(token)
        await tx.commit()

    @contextlib.asynccontextmanager
    async def _savepoint(self, tx: Any) -> AsyncIterator[None]:
        name = f"datasync_sp_{uuid.uuid4().int % 10**12}"
        await tx.execute(f"SAVEPOINT {name}", ())
        try:
            yield
        except BaseException:
            await tx.execute(f"ROLLBACK TO {name}", ())
            await tx.execute(f"RELEASE {name}", ())
            raise
        await tx.execute(f"RELEASE {name}", ())

    def _joined(self) -> Any:
        """The transaction this task's statements join, if any."""
        current = _current.get()
        if current is not None and current[0] is self and current[2] is asyncio.current_task():
            return current[1]
        return None

    # -- the leader's side ---------------------------------------------------------
    async def _hold_transaction(self, tx_id: str, sender: str | None,
                                state: ConnState) -> LeaderTransaction:
        """Hold a transaction on this (leader) tab's connection for ``sender``
        (None: this tab). Waits at most :attr:`busy_timeout` for the connection."""
        tables: set[str] = set()
        # receipt: which commit it made (a local one has no applied row: its caller
        # is answered here, from the store, whether it was stored).
        box: dict[str, Any] = {"local": sender is None, "receipt": {}}
        session = self._session

        @contextlib.asynccontextmanager
        async def scope() -> AsyncIterator[None]:
            # begin()'s mode is checked there but changes nothing here: one connection
            # writes, and _writable's BEGIN is DEFERRED (see forwarding.py).
            async with self._writable(timeout=self.busy_timeout, receipt=box["receipt"]):
                session.record_tables(tables)
                session.begin(state)
                try:
                    yield
                finally:
                    session.record_tables(None)
                    box.setdefault("state", session.end())

        async def run(sql: str, params: Any) -> Any:
            kind = session.classify(sql)
            session.check(sql, kind, runs_here=sender is None,
                          for_another_tab=sender is not None)
            try:
                return await self.db.execute(sql, params)
            finally:
                session.ran(kind)

        def run_now(sql: str, params: Any) -> Any:  # run(), for Transaction.execute_now
            kind = session.classify(sql)
            session.check(sql, kind, runs_here=sender is None,
                          for_another_tab=sender is not None)
            try:
                return self.db.run(sql, params)
            finally:
                session.ran(kind)

        # Another tab's lease runs from its last message, also while its begin waits
        # for the connection (it resends the begin meanwhile): a tab that died
        # waiting is refused once the connection is free, not held a lease more.
        tx = Transaction(scope, run, name=self.name, holding=self.db, run_now=run_now,
                         idle_timeout=None if sender is None else self.transaction_lease,
                         clock_from_creation=sender is not None)
        # Known before it holds the connection: stepping down or closing aborts it
        # even then, and its tab's resent begins count as news (see _serve_tx).
        self._holders[tx_id] = tx
        try:
            await tx.start()
        except BaseException:
            if self._holders.get(tx_id) is tx:
                del self._holders[tx_id]
            raise

        def ended(done: Transaction) -> None:
            if self._holders.get(tx_id) is done:
                del self._holders[tx_id]
                if done.state != "committed":  # a committed one's reply is kept a while
                    self._served.pop(tx_id, None)  # (see _serve_tx)

        tx.add_done_callback(ended)
        return LeaderTransaction(self, tx, tx_id, tables, box)

    async def _record_commit(self, tx_id: str, box: dict[str, Any]) -> None:
        """Inside the transaction, just before COMMIT: its outcome, under its id
        (only another tab's: see ``box["receipt"]``)."""
        box["state"] = self._session.end()
        if box.get("local"):
            return
        await self.db.execute(
            f"INSERT INTO {APPLIED_TABLE}(id, result, at) VALUES (?, ?, ?)",
            (tx_id, json.dumps({"ok": None, "state": box["state"].to_wire()}), time.time()))

    def _abort_transactions(self, why: str) -> None:
        """Leadership moved (or the tab closes): roll back every open transaction."""
        for tx in list(self._holders.values()):
            tx.abort(TransactionAbortedError(
                f"the transaction on {self.name!r} was rolled back: {why}; nothing of it "
                "was applied: run it again"))

    async def _outcome(self, tx_id: str, past_epoch: int | None = None) -> dict[str, Any]:
        """The stored reply of a transaction whose commit may have been made
        durable, with the version holding it; or
        :class:`~datasync.TransactionAbortedError`. ``past_epoch``: the epoch of
        the leader that held it, now gone: first wait until this tab's copy holds a
        later epoch (fenced: nothing of that leader can land any more)."""
        if past_epoch is not None:
            deadline = time.monotonic() + self.write_timeout
            while self._store.meta.epoch <= past_epoch:
                self._check_open()
                if time.monotonic() > deadline:
                    raise LeaderUnavailableError(
                        f"no new leader of {self.name!r} took over within "
                        f"{self.write_timeout} s, so whether the transaction was committed "
                        "is unknown: check before running it again")
                with contextlib.suppress(DatasyncError):
                    await self._catch_up_when_idle()
                await asyncio.sleep(0.01)
        stored = await self._applied_reply(tx_id)
        if stored is None:
            raise TransactionAbortedError(
                f"leadership of {self.name!r} moved before the transaction was durable; "
                "nothing of it was applied: run it again")
        return {**stored, "version": self._store.version}

    async def _serve_tx(self, msg: Message) -> None:
        """As the leader: one op of another tab's transaction (see the module)."""
        op, tx_id, seq = msg.get("op"), str(msg.get("id")), int(msg.get("seq", 0))
        served = self._served.get(tx_id)
        holder = self._holders.get(tx_id)
        if holder is not None:
            holder.touch()  # any message, a repeat included, says its tab is alive
        if op == "alive":
            return
        if served is not None:
            if seq < served.seq or (seq == served.seq and served.reply is None):
                return  # an old message, or the same op still running
            if seq == served.seq:
                self._reply_tx(msg, served.reply)
                return
            served.seq, served.reply = seq, None
        elif op == "begin":
            served = self._served[tx_id] = _Served(seq)
        reply = await self._tx_op(op, tx_id, msg, served)
        if reply is None:
            return  # leadership moved mid-commit: the sender settles it from its copy
        if served is not None:
            served.reply = reply
            if op == "commit":  # repeats get this reply for a while, then the table's
                asyncio.get_running_loop().call_later(
                    60.0, lambda: self._served.pop(tx_id, None))
        self._reply_tx(msg, reply)

    def _reply_tx(self, msg: Message, reply: dict[str, Any]) -> None:
        self._post({"t": "tx-reply", "id": msg.get("id"), "seq": msg.get("seq"),
                    "to": msg.get("tab"), **reply})

    async def _tx_op(self, op: Any, tx_id: str, msg: Message,
                     served: _Served | None) -> dict[str, Any] | None:
        holder = self._holders.get(tx_id)
        held = holder is not None and served is not None and served.tx is not None
        try:
            if op == "begin":
                if msg.get("pragmas", {}) != self._write_pragmas:
                    raise ConnectionPragmaError(
                        f"the tab that began this transaction opened with pragmas "
                        f"{msg.get('pragmas')}, the leader tab with {self._write_pragmas}: "
                        "open every tab with the same pragmas=")
                leader_tx = await self._hold_transaction(
                    tx_id, str(msg.get("tab")), ConnState.from_wire(msg.get("state")))
                assert served is not None
                served.tx = leader_tx  # type: ignore[assignment]
                return {"ok": None}
            if op == "commit" and not held:  # a repeat: committed (and durable), or lost
                await self._flush_and_announce(set())
                return await self._outcome(tx_id)
            if op == "rollback":
                if held:
                    await served.tx.rollback()  # type: ignore[union-attr]
                elif holder is not None:  # still waiting for the connection: never take it
                    holder.abort(TransactionAbortedError(
                        f"the transaction on {self.name!r} was rolled back by its tab"))
                return {"ok": None}
            if not held:
                raise TransactionAbortedError(
                    f"the transaction on {self.name!r} is no longer open at the leader "
                    "(rolled back after a lease without news, or leadership moved): "
                    "run it again")
            tx: Any = served.tx  # type: ignore[union-attr]
            if op == "commit":
                version = await tx.commit()
                return {"ok": None, "state": tx.state.to_wire(), "version": version}
            params = decode_params(msg.get("params") or [])
            return {"ok": result_to_wire(await tx.execute(str(msg.get("sql")), params))}
        except DeposedLeaderError:
            if op == "commit":
                return None
            self._served.pop(tx_id, None)
            return {"error": ["TransactionAbortedError",
                              f"leadership of {self.name!r} moved during the transaction; "
                              "nothing of it was applied: run it again"]}
        except Exception as exc:  # the statement's error: reported, tx stays open
            if op in ("begin", "commit"):
                self._served.pop(tx_id, None)
            return {"error": [type(exc).__name__, str(exc)]}

