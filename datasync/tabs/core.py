"""The tab's state, its messages, and what only the leader may do.

Example::

    tab = await SharedDatabase.open("app", locks=..., channel=..., tab_id="t1")
    print(tab.leader_info())       # {is_leader, leader_id, epoch, tab_id}
    await tab.close()

A part of :class:`~datasync.tabs.SharedDatabase` (see :mod:`datasync.tabs` for the
protocol); the tab's state is set up in :mod:`.core`.
"""
from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Self

from ..backends import Backend, make_backend
from ..database import Database
from ..database import open as open_database
from ..encryption import EncryptionKey
from ..errors import (
    DatabaseClosedError,
    DeposedLeaderError,
    NotLeaderError,
    WrongKeyError,
)
from ..options import check_open_options, pragma_values
from .classify import WRITE_PRAGMAS
from .services import Channel, Lease, LockService, MemoryOutbox, Message, Outbox
from .session import TabSession
from .wire import (
    ChangeCallback,
    key_from_wire,
    key_to_wire,
)


class TabCore:
    """The tab's state, its messages, and what only the leader may do."""

    poll_interval = 0.5
    resend_interval = 1.0
    #: Write requests this tab sent to a leader (counted in :mod:`.forwarding`).
    forwarded_writes = 0

    def __init__(self, db: Database, *, name: str, tab_id: str, locks: LockService,
                 channel: Channel, write_timeout: float, outbox: Outbox | None = None) -> None:
        self.db = db
        self.name = name
        self.tab_id = tab_id
        self.write_timeout = write_timeout
        self._locks = locks
        self._channel = channel
        self._outbox: Outbox = outbox if outbox is not None else MemoryOutbox(name)
        self._drain_task: asyncio.Task[None] | None = None
        self._drain_again = False
        self._store = db.store
        self._lock_name = f"datasync-leader:{name}"
        self.is_leader = False
        self.leader_id: str | None = None
        self.epoch = self._store.meta.epoch
        self._lease: Lease | None = None
        self._closed = False
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        #: Transactions this (leader) tab holds open, by id; and, for another
        #: tab's, the last op run and its reply (see :mod:`.transactions`).
        self._holders: dict[str, Any] = {}
        self._served: dict[str, Any] = {}
        #: This tab's transactions held by the leader (rolled back when it closes).
        self._remote_txs: weakref.WeakSet[Any] = weakref.WeakSet()
        self._inflight: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._leader_changed = asyncio.Event()
        self._became_leader = asyncio.Event()
        self._caught_up = asyncio.Condition()
        self._callbacks: list[ChangeCallback] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._catchup_wanted = asyncio.Event()
        self._notice_tables: dict[int, list[str]] = {}
        #: Keys other tabs rekeyed to (newest last), and why this tab cannot follow.
        self._keys: list[EncryptionKey | None] = []
        self._key: EncryptionKey | None = None  # the key this tab reads with
        self._new_key = asyncio.Event()
        self._key_error: WrongKeyError | None = None
        self._store.rekeyed_codec = self._codec_for
        #: This tab's connection state: classification, temp objects, rowids.
        self._session = TabSession(db.connection, db.set_authorizer)
        self._write_pragmas: dict[str, str] = {}
        self._unsubscribe = channel.subscribe(self._on_message)
        #: Every version this tab has seen, in order (tests check it only grows).
        self.versions_seen: list[int] = [self._store.version]
        #: The epochs of this tab's leaderships.
        self.leaderships: list[int] = []

    @classmethod
    async def open(cls, name: str, *, locks: LockService, channel: Channel,
                   tab_id: str | None = None, write_timeout: float = 30.0,
                   outbox: Outbox | None = None,
                   prepare: Callable[[Any], None] | None = None, **options: Any) -> Self:
        """Open ``name`` as one tab among many; ``options`` go to :func:`datasync.open`.
        ``outbox`` holds :meth:`queue_write`'s writes (default: this process's memory).
        ``prepare(tab)`` runs once the tab exists, before it campaigns (a subclass's
        set-up: :mod:`datasync.sync.tabs`)."""
        check_open_options(options)  # before anything is made
        capture = bool(options.pop("cdc", False))
        retention = options.pop("cdc_retention", None)
        if not isinstance(options.get("backend"), Backend):
            # In the browser: held with the other tabs' multi-tab opens, never with a
            # single-tab one (backends/open_lock.py).
            options["backend"] = make_backend(name, options.get("backend"), tabs=True,
                                              strict=options.get("durability") == "strict")
        # Another tab's flush changes the backend under a follower: never read a
        # block on demand (it could be newer than the version this tab holds).
        options.setdefault("resident", True)
        db = await open_database(name, **options)
        tab = cls(db, name=name, tab_id=tab_id or uuid.uuid4().hex[:12], locks=locks,
                  channel=channel, write_timeout=write_timeout, outbox=outbox)
        # The PRAGMAs that decide how writes run: every tab's must be the leader's.
        tab._write_pragmas = {k: v for k, v in pragma_values(options.get("pragmas") or {})
                              .items() if k in WRITE_PRAGMAS}
        tab._key = options.get("encryption_key")
        if prepare is not None:
            prepare(tab)
        await tab.db.execute("PRAGMA query_only = ON")  # followers never write locally
        if capture:  # the triggers are writes: the leader installs them (_lead)
            await db.enable_cdc(retention=retention, install=False)
        tab._tasks = [asyncio.ensure_future(tab._campaign()),
                      asyncio.ensure_future(tab._follow())]
        tab._post({"t": "who", "tab": tab.tab_id})
        await tab._learn_role()
        tab.tab_count()  # the first look, so metrics() has a figure soon
        return tab

    async def close(self) -> None:
        """Leave: give up leadership (the next tab takes over) and close.

        Flushes first: if that fails, its error (``StorageFullError``...) is raised
        and nothing changed (still leading, nothing lost): call close() again."""
        if self._closed:
            if not self.db.closed:
                await self._close_database()  # a retry: the last flush failed
            return
        try:
            if not self.db.closed:
                await self.db.sync()
        except DeposedLeaderError:
            pass  # nothing of ours to keep: _close_database() drops it
        self._abort_transactions("its tab closed")
        for remote in list(self._remote_txs):
            remote.abandon()  # the leader rolls it back now, not a lease later
        self._closed = True
        self._session.close()  # no statement is classified on a closing connection
        for task in [*self._tasks, *self._background]:
            task.cancel()
        self._fail_pending()
        self._unsubscribe()
        if self._lease is not None:
            self._locks.release(self._lease)
        self._channel.close()
        self._outbox.close()
        await self._close_database()

    async def _close_database(self) -> None:
        try:
            await self.db.close()
        except DeposedLeaderError:
            # Deposed with writes nobody acknowledged: they are not ours to store.
            await self._store.discard_unflushed()
            await self.db.close()

    def _fail_pending(self) -> None:
        """Answer every write still waiting for the leader (closing: none comes)."""
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(DatabaseClosedError(
                    f"database {self.name!r} was closed in this tab before the leader "
                    "answered: the write may have been applied; check before writing it "
                    "again (a queued write stays queued)"))

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def version(self) -> int:
        """The version this tab's copy holds."""
        return self._store.version

    @property
    def commits(self) -> int:
        """:attr:`datasync.Database.commits` of this tab's copy: its commit points (as
        the leader, every tab's writes). What a follower catches up on is not counted:
        ``on_change`` announces it before any call waiting for it resumes."""
        return self.db.commits  # type: ignore[no-any-return]

    @property
    def encrypted(self) -> bool:
        return self.db.encrypted

    @property
    def capturing(self) -> bool:
        return self.db.capturing

    def connect(self, **kwargs: Any) -> Any:
        """A plain ``sqlite3.Connection`` on this tab's copy, for reading (pandas,
        SQLAlchemy): it is ``query_only``, since only the leader's connection writes
        and this tab may not lead for long; write through :meth:`execute`,
        :meth:`transaction`, or open the database with ``tabs=False``."""
        self._check_open()
        conn = self.db.connect(**kwargs)
        conn.execute("PRAGMA query_only = ON")
        return conn

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        role = "leader" if self.is_leader else f"follower of {self.leader_id}"
        return f"<datasync.SharedDatabase {self.name!r} tab {self.tab_id} {role}>"

    def leader_info(self) -> dict[str, Any]:
        return {"is_leader": self.is_leader, "leader_id": self.leader_id, "epoch": self.epoch,
                "tab_id": self.tab_id}

    def _check_open(self) -> None:
        if self._closed:
            raise DatabaseClosedError(f"database {self.name!r} is closed in this tab")
        if self._key_error is not None:
            raise WrongKeyError(
                f"database {self.name!r} was re-encrypted in another tab and this tab "
                f"cannot read it: open it again with the new key ({self._key_error})")

    def _post(self, message: Message) -> None:
        if not self._closed:
            self._channel.post(message)

    def _spawn(self, coro: Any) -> None:
        """A background task that dies with this tab."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_message(self, msg: Message) -> None:
        if self._closed:
            return
        kind = msg.get("t")
        if kind == "leader":
            if msg["epoch"] >= self.epoch and msg["tab"] != self.tab_id:
                self.epoch = msg["epoch"]
                self.leader_id = msg["tab"]
                self._leader_changed.set()
                self._catchup_wanted.set()
        elif kind == "who" and self.is_leader:
            self._post({"t": "leader", "tab": self.tab_id, "epoch": self.epoch})
        elif kind == "changed":
            self._notice_tables[int(msg["version"])] = list(msg.get("tables") or [])
            if msg["version"] > self._store.version and not self.is_leader:
                self._spawn(self._catch_up_for_notice())
        elif kind == "rekeyed":
            try:
                self._keys.append(key_from_wire(msg["key"]))
            except (KeyError, TypeError, ValueError):
                return  # malformed: not from a datasync tab
            self._new_key.set()
            if not self.is_leader:
                self._catchup_wanted.set()
        elif kind == "need-key" and self.is_leader and msg.get("tab") != self.tab_id:
            self._post({"t": "rekeyed", "key": key_to_wire(self._key), "tab": self.tab_id})
        elif kind == "queued" and self.is_leader:
            self._kick_drain()
        elif kind == "write" and self.is_leader and msg.get("to") == self.tab_id:
            self._spawn(self._serve_write(msg))
        elif kind == "result" and msg.get("to") == self.tab_id:
            fut = self._pending.get(msg["id"])
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif kind == "tx" and self.is_leader and msg.get("to") == self.tab_id:
            self._spawn(self._serve_tx(msg))
        elif kind == "tx-reply" and msg.get("to") == self.tab_id:
            fut = self._pending.get(f"{msg.get('id')}:{msg.get('seq')}")
            if fut is not None and not fut.done():
                fut.set_result(msg)

    def stats(self) -> dict[str, Any]:
        return {**self.db.stats(), **self.leader_info(),
                "forwarded_writes": self.forwarded_writes}

    async def sync(self) -> int:
        """The leader flushes; a follower has nothing of its own to flush (its
        writes are durable when they resolve). Returns the version this tab holds."""
        self._check_open()
        if self.is_leader:
            return await self.db.sync()
        return self._store.version

    async def export(self) -> bytes:
        """This tab's copy as a standard SQLite file."""
        self._check_open()
        return await self.db.export()

    async def import_(self, data: bytes) -> None:
        """Replace the database (leader tab only; other tabs follow)."""
        await self._replace_whole("import_", lambda: self.db.import_(data))

    async def _replace_whole(self, what: str, replace: Callable[[], Awaitable[Any]]) -> int:
        """Run ``replace`` (which rewrites the whole database) as the leader, with
        writes allowed, then announce it; returns the new version."""
        self._check_open()
        if not self.is_leader:
            raise NotLeaderError(
                f"{what}() runs in the leader tab: call request_leadership() first")
        await self.db.execute("PRAGMA query_only = OFF")
        try:
            await replace()
        finally:
            await self.db.execute("PRAGMA query_only = ON")
        return await self._flush_and_announce({"*"})

    async def versions(self) -> list[dict[str, Any]]:
        """The versions :meth:`restore` can return to (see ``Database.versions``)."""
        self._check_open()
        return await self.db.versions()

    async def restore(self, version: int) -> int:
        """Return the database to a retained version (leader tab only; the other
        tabs follow like after any write). Returns the new version."""
        return await self._replace_whole("restore", lambda: self.db.restore(version))

    async def backup(self, target: str, **options: Any) -> dict[str, Any]:
        """Copy this tab's copy into a new database ``target`` (see ``Database.backup``)."""
        self._check_open()
        return await self.db.backup(target, **options)
