"""A replica shared by the app's tabs: only the leader tab talks to the server.

Example (native simulation; in a browser ``datasync.open(name, sync_url=...)``)::

    tab = await open_replica_tab("notes", sync={"sync_url": url, "auth_token": token},
                                 locks=locks.for_tab("a"), channel=hub.channel("a"),
                                 backend="memory")
    await tab.execute("INSERT INTO notes(body) VALUES ('hi')")   # via the leader, once
    print(tab.sync_status())

Every tab is a :class:`~datasync.tabs.SharedDatabase` as usual: reads on its own copy,
writes forwarded to the leader with an id. The leader runs a replica *engine*
(:class:`~datasync.sync.replica.Replica` over its database, built when it starts to
lead and stopped when it stops): a write reaches the engine with the id the tab chose
(``write_entry``), so a tab that sends it again to a new leader gets it applied once,
by the primary's record. A pull installs the primary's blocks in the leader's store
and is announced as a ``changed`` notice; followers catch up, and a catch-up across
an install forks their copy (``meta.extra["installs"]``), so they drop cached pages.
The outbox and the conflict log are the app's (IndexedDB), so a new leader carries on
with what the previous one queued. ``pull()``/``push()``/``conflicts()`` in a
follower ask the leader (``sync-call`` messages); ``sync_status()`` answers from the
leader's last ``sync-status`` notice; ``set_offline``/``set_auth_token`` go to every
tab. ``transaction()``, ``begin()``, ``import_`` and ``restore`` raise
:class:`~datasync.ReplicaWriteError`, as on a single-tab replica.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from ..errors import (
    DeposedLeaderError,
    ReplicaWriteError,
)
from ..tabs import SharedDatabase
from ..tabs.session import ConnState
from ..tabs.wire import rebuild_error, result_to_wire
from .replica import Replica
from .statements import ReplicaRefusals

EngineFactory = Callable[[Any], Replica]
_CALLS = ("pull", "push", "conflicts")


class ReplicaTab(ReplicaRefusals, SharedDatabase):
    """One tab of a replica shared by the app's tabs (see the module docstring)."""

    applies_writes_here = False
    _engine_factory: EngineFactory
    _engine: Replica | None = None
    _engine_started: "asyncio.Future[None] | None" = None

    def _set_up_sync(self, factory: EngineFactory, offline: bool) -> None:
        self._engine_factory = factory
        self._sync_offline = offline
        self._sync_token: tuple[str | None] | None = None  # (token,) once one was set
        self._status_seen: dict[str, Any] = {}

    # -- the engine, while this tab leads --------------------------------------------
    async def _lead(self, lease: Any) -> None:
        # The engine exists before the tab leads (queued writes drain at once), and
        # starts (settles the outbox, pulls) once it does.
        await self._stop_engine()
        engine = self._engine_factory(self.db)
        engine.offline = self._sync_offline
        if self._sync_token is not None:
            engine.transport.set_token(self._sync_token[0])
        engine.on_installed = lambda version: self._spawn(self._announce_pulled())
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._engine, self._engine_started = engine, started
        try:
            await super()._lead(lease)
        except BaseException:
            await self._stop_engine()
            raise
        if not self.is_leader:
            await self._stop_engine()
            return

        async def start() -> None:
            try:
                await engine.start()
            except BaseException as exc:
                if not started.done():
                    started.set_exception(exc)
                raise
            if not started.done():
                started.set_result(None)
        self._spawn(start())

    async def _step_down(self) -> None:
        await self._stop_engine()
        await super()._step_down()

    async def _stop_engine(self) -> None:
        engine, started = self._engine, self._engine_started
        self._engine = self._engine_started = None
        if started is not None and not started.done():
            started.set_exception(DeposedLeaderError(f"this tab no longer leads {self.name!r}"))
            started.exception()  # (retrieved)
        if engine is not None:
            await engine.stop()
            await engine.transport.close()
            engine.outbox.close()
            engine.conflict_log.close()

    async def _ready_engine(self) -> Replica:
        engine, started = self._engine, self._engine_started
        if engine is None or started is None or not self.is_leader:
            raise DeposedLeaderError(f"this tab no longer leads {self.name!r}")
        await asyncio.shield(started)  # (an unreachable server is not a failure)
        return engine

    async def close(self) -> None:
        await self._stop_engine()
        await super().close()

    async def _announce_pulled(self) -> None:
        try:
            await self._flush_and_announce(set())
        except DeposedLeaderError:
            return
        if self._engine is not None:
            self._post({"t": "sync-status", "status": self._engine.sync_status(),
                        "tab": self.tab_id})

    # -- writes: the leader's side goes to the engine ----------------------------------
    async def _apply(self, req_id: str, stmts: list[tuple[str, Any]], *,
                     record_errors: bool = False, state: ConnState | None = None,
                     pragmas: dict[str, str] | None = None, local: bool = True,
                     recorded: bool = True) -> dict[str, Any]:
        engine = await self._ready_engine()
        entry = {"id": req_id, "at": time.time(), "statements": [[s, p] for s, p in stmts]}
        wire_state = (state or ConnState()).to_wire()
        try:
            results = await engine.write_entry(entry)
        except DeposedLeaderError:
            raise  # the sender asks the new leader, with the same id
        except Exception as exc:  # the primary refused it, or the copy did (offline)
            return {"error": [type(exc).__name__, str(exc)], "state": wire_state,
                    "version": self._store.version}
        version = await self._flush_and_announce(set(), local=local)
        self._post({"t": "sync-status", "status": engine.sync_status(), "tab": self.tab_id})
        return {"ok": [result_to_wire(r) for r in results], "state": wire_state,
                "version": version}

    # -- the sync calls, in any tab ------------------------------------------------------
    async def pull(self) -> int:
        if self.is_leader:
            return await (await self._ready_engine()).pull()
        reply = await self._call("pull")
        await self._reach(int(reply["version"]))  # the leader's copy holds it: so ours
        return int(reply["value"])

    async def push(self) -> int:
        if self.is_leader:
            return await (await self._ready_engine()).push()
        return int((await self._call("push"))["value"])

    async def conflicts(self) -> list[dict[str, Any]]:
        if self.is_leader:
            return await (await self._ready_engine()).conflicts()
        return list((await self._call("conflicts"))["value"])

    def sync_status(self) -> dict[str, Any]:
        """The leader's sync status (in a follower: as it last announced it), with
        this tab's ``local_version`` and ``leader`` (the leading tab's id)."""
        if self.is_leader and self._engine is not None:
            status = self._engine.sync_status()
        else:
            status = dict(self._status_seen)
        return {**status, "local_version": self.version, "leader": self.leader_id,
                "offline": self._sync_offline}

    def set_offline(self, offline: bool) -> None:
        self._sync_offline = bool(offline)
        self._post({"t": "sync-set", "offline": self._sync_offline, "tab": self.tab_id})
        if self._engine is not None:
            self._engine.set_offline(self._sync_offline)

    def set_auth_token(self, token: str | None) -> None:
        self._sync_token = (token,)
        self._post({"t": "sync-set", "token": token, "tab": self.tab_id})
        if self._engine is not None:
            self._engine.set_auth_token(token)

    async def _call(self, op: str) -> dict[str, Any]:
        """Ask the leader to run ``op`` on its engine; resent when leadership moves.
        Returns ``{value, version}``: what ``op`` returned, and the leader's local
        version after it."""
        call_id = uuid.uuid4().hex
        reply = await self._ask_leader(
            call_id, lambda: {"t": "sync-call", "id": call_id, "op": op,
                              "tab": self.tab_id, "to": self.leader_id},
            time.monotonic() + self.write_timeout, f"{op}() was not run")
        if reply is None:  # this tab leads now: it runs op itself
            return {"value": await getattr(self, op)(), "version": self.version}
        if "error" in reply:
            raise rebuild_error(*reply["error"])
        return reply

    async def _serve_call(self, msg: dict[str, Any]) -> None:
        try:
            if msg["op"] not in _CALLS:
                raise ReplicaWriteError(f"{msg['op']!r} is not a sync call")
            value = await getattr(self, msg["op"])()
            reply: dict[str, Any] = {"value": value, "version": self._store.version}
        except DeposedLeaderError:
            return  # the caller asks the new leader
        except Exception as exc:
            reply = {"error": [type(exc).__name__, str(exc)]}
        self._post({"t": "sync-result", "id": msg["id"], "to": msg["tab"], **reply})

    def _on_message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("t")
        if self._closed or kind not in ("sync-call", "sync-result", "sync-status", "sync-set"):
            super()._on_message(msg)
        elif kind == "sync-call" and self.is_leader and msg.get("to") == self.tab_id:
            self._spawn(self._serve_call(msg))
        elif kind == "sync-result" and msg.get("to") == self.tab_id:
            fut = self._pending.get(msg["id"])
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif kind == "sync-status" and msg.get("tab") != self.tab_id:
            self._status_seen = dict(msg.get("status") or {})
        elif kind == "sync-set" and msg.get("tab") != self.tab_id:
            if "offline" in msg:
                self._sync_offline = bool(msg["offline"])
                if self._engine is not None:
                    self._engine.set_offline(self._sync_offline)
            if "token" in msg:
                self._sync_token = (msg["token"],)
                if self._engine is not None:
                    self._engine.set_auth_token(msg["token"])


async def open_replica_tab(name: str, *, sync: dict[str, Any], locks: Any, channel: Any,
                           make_engine_parts: Callable[[Any], tuple[Any, Any, Any]],
                           **options: Any) -> ReplicaTab:
    """Open ``name`` as one tab of a replica shared by tabs. ``sync``: the replica
    options (``sync_url``, ``auth_token``, ``sync_interval``, ``offline``,
    ``on_conflict``); ``make_engine_parts(db)`` returns ``(transport, outbox,
    conflict_log)`` for a leader's engine; ``options``: those of
    :meth:`~datasync.tabs.SharedDatabase.open`."""
    from .opening import check_sync_options
    from .replica import split_sync_url

    check_sync_options(sync, options)
    _base, remote = split_sync_url(sync["sync_url"])
    interval = float(sync.get("sync_interval", 5.0) or 0.0)

    def factory(db: Any) -> Replica:
        transport, outbox, log = make_engine_parts(db)
        return Replica(db, transport, remote, outbox, log, sync_interval=interval,
                       offline=bool(sync.get("offline", False)),
                       on_conflict=sync.get("on_conflict"), owns_db=False)

    tab = await ReplicaTab.open(
        name, locks=locks, channel=channel,
        prepare=lambda tab: tab._set_up_sync(factory, bool(sync.get("offline", False))),
        **options)
    if tab.is_leader:  # as a single-tab replica: its outbox loaded, a first pull tried
        try:
            await tab._ready_engine()
        except DeposedLeaderError:
            pass  # another tab leads already: it will have done so
        except BaseException:
            await tab.close()  # a refused token, another primary...: said at open
            raise
    return tab
