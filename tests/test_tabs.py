"""Many tabs, one database, simulated natively: in-process Web Locks and
BroadcastChannel fakes with message delays and tab kills."""
from __future__ import annotations

import asyncio
import itertools
import os
import random
import sqlite3
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datasync
from datasync.backends import MemoryBackend
from datasync.backends.memory import _STORES
from datasync.tabs import (FakeBroadcast, FakeLocks, MemoryOutbox, QueuedWriteTimeoutError,
                           SharedDatabase)
from helpers import EXAMPLES, AsyncWithHistory

_names = itertools.count()


def SuspendingMemoryBackend(name: str, *, instance: str, rng: random.Random) -> AsyncWithHistory:  # noqa: N802
    """A memory store whose I/O suspends like IndexedDB's: a flush's check and
    write are atomic (one transaction) but happen a random moment after the call,
    and the call returns a random moment after that."""
    async def pause() -> None:
        await asyncio.sleep(rng.choice([0, 0, 0.0005, 0.002]))

    return AsyncWithHistory(MemoryBackend(name, instance=instance), pause)


def crash(tab: SharedDatabase) -> None:
    """Simulate the tab dying: stop at once and write nothing more (the lock service
    and channel hub drop the tab too, in Browser.kill)."""
    from datasync.database import opening

    tab._closed = True
    tab._session.close()
    for task in [*tab._tasks, *tab._background]:
        task.cancel()
    tab._unsubscribe()
    tab._outbox.close()
    db = tab.db
    db._closed = True
    db._remove_listener()
    for conn in [*(c for c, _, _ in db._handed_out), db._conn]:
        conn.close()
    opening._shared.pop(db._shared.key, None)
    datasync.vfs.detach(db._shared.key)


class Browser:
    """Simulated tabs of one browser sharing one database (``suspending``: with
    I/O that suspends, as IndexedDB's does)."""

    def __init__(self, max_delay: float = 0.002, seed: int = 0, suspending: bool = False) -> None:
        self.name = f"tabs-{next(_names)}"
        self.suspending = suspending
        self.rng = random.Random(seed)
        self.locks = FakeLocks()
        self.hub = FakeBroadcast(max_delay=max_delay, seed=seed)
        self.tabs: dict[str, SharedDatabase] = {}
        self.dead: list[SharedDatabase] = []

    async def open(self, tab: str, *, backend: Any = None, **options: Any) -> SharedDatabase:
        """Open tab ``tab``; ``options`` go to :func:`datasync.open` (a key, cdc...)."""
        if backend is None:
            backend = (SuspendingMemoryBackend(self.name, instance=tab, rng=self.rng)
                       if self.suspending else MemoryBackend(self.name, instance=tab))
        db = await SharedDatabase.open(
            self.name, backend=backend, tab_id=tab, locks=self.locks.for_tab(tab),
            channel=self.hub.channel(tab), write_timeout=20, **options)
        self.tabs[tab] = db
        return db

    async def leader_and_follower(self) -> tuple[SharedDatabase, SharedDatabase]:
        """Tab "a", once it leads, and tab "f" following it."""
        a = await self.open("a")
        await a.wait_for_leadership()
        return a, await self.open("f")

    def kill(self, tab: str) -> None:
        db = self.tabs.pop(tab)
        crash(db)
        self.locks.kill(tab)
        self.hub.kill(tab)
        self.dead.append(db)

    async def leader(self) -> SharedDatabase:
        for _ in range(2000):
            leaders = [t for t in self.tabs.values() if t.is_leader]
            if leaders:
                return leaders[0]
            await asyncio.sleep(0.002)
        raise AssertionError("no leader was elected")

    async def close(self) -> None:
        for db in list(self.tabs.values()):
            await db.close()
        _STORES.pop(self.name, None)
        MemoryOutbox.drop(self.name)

    def queued(self) -> list[dict[str, Any]]:
        return list(MemoryOutbox._shared.get(self.name, {}).values())

    async def drained(self) -> None:
        for _ in range(5000):
            if not self.queued():
                return
            await asyncio.sleep(0.002)
        raise AssertionError(f"the outbox was never drained: {self.queued()}")

    def all_tabs(self) -> list[SharedDatabase]:
        return [*self.tabs.values(), *self.dead]


async def test_one_leader_is_elected_and_every_tab_learns_who() -> None:
    b = Browser()
    tabs = [await b.open(t) for t in "abc"]
    leader = await b.leader()
    await asyncio.sleep(0.05)
    assert [t.is_leader for t in tabs].count(True) == 1
    assert {t.leader_info()["leader_id"] for t in tabs} == {leader.tab_id}
    assert {t.leader_info()["epoch"] for t in tabs} == {leader.epoch}
    await b.close()


async def test_follower_writes_are_forwarded_and_read_back_at_once() -> None:
    b = Browser()
    a, f = await b.leader_and_follower()
    await f.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")  # DDL is a write
    res = await f.execute("INSERT INTO t(v) VALUES (?)", (b"\x00blob",))
    assert res.rowcount == 1 and res.lastrowid == 1
    assert await f.query("SELECT v FROM t") == [{"v": b"\x00blob"}]  # read-your-writes
    await f.execute("WITH x(n) AS (VALUES (2), (3)) INSERT INTO t(v) SELECT n FROM x")
    assert (await f.query("SELECT count(*) AS n FROM t")) == [{"n": 3}]
    assert (await a.query("SELECT count(*) AS n FROM t")) == [{"n": 3}]
    assert not f.is_leader and f.leader_info()["leader_id"] == "a"
    await b.close()


async def test_a_follower_behind_the_leader_still_writes_to_a_table_another_tab_created() -> None:
    b = Browser(max_delay=0)
    a, f = await b.leader_and_follower()
    g = await b.open("g")
    f._catchup_wanted.set = lambda: None  # f misses every notice...
    f._catch_up_for_notice = _idle  # type: ignore[method-assign]
    f.poll_interval = 3600  # ...and does not poll
    await asyncio.sleep(0.01)
    await g.execute("CREATE TABLE t(x)")
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        await f.db.execute("SELECT x FROM t")  # f's own copy is behind
    await f.execute("INSERT INTO t VALUES (1)")
    assert await f.query("SELECT x FROM t") == [{"x": 1}]
    with pytest.raises(sqlite3.OperationalError, match="no such table: nope"):
        await f.execute("INSERT INTO nope VALUES (1)")  # the leader's error
    await b.close()


async def _idle() -> None:
    return None


async def test_errors_on_the_leader_reach_the_caller_with_their_class() -> None:
    b = Browser()
    a, f = await b.leader_and_follower()
    await f.execute("CREATE TABLE t(x UNIQUE)")
    await f.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        await f.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError):
        await f.batch([("INSERT INTO t VALUES (2)", []), ("INSERT INTO t VALUES (1)", [])])
    assert await f.query("SELECT x FROM t") == [{"x": 1}]  # the batch was atomic
    await b.close()


async def test_on_change_fires_in_followers_with_the_tables_written() -> None:
    b = Browser(max_delay=0)
    a, f = await b.leader_and_follower()
    await a.execute("CREATE TABLE notes(x)")
    await asyncio.sleep(0.02)
    seen: list[dict[str, Any]] = []
    f.on_change(seen.append)
    await a.execute("INSERT INTO notes VALUES (1)")
    for _ in range(500):
        if seen:
            break
        await asyncio.sleep(0.002)
    assert seen and seen[-1]["tables"] == ["notes"] and seen[-1]["by"] == "remote"
    assert await f.query("SELECT x FROM notes") == [{"x": 1}]
    await b.close()


async def test_leader_crash_mid_stream_loses_no_acknowledged_write_and_applies_none_twice() -> None:
    b = Browser(max_delay=0.003, seed=7)
    a = await b.open("a")
    await a.wait_for_leadership()
    tabs = [a, await b.open("b"), await b.open("c"), await b.open("d")]
    await tabs[1].execute("CREATE TABLE t(k TEXT)")

    async def writer(tab: SharedDatabase) -> list[str]:
        done = []
        for i in range(40):
            key = f"{tab.tab_id}-{i}"
            try:
                await tab.execute("INSERT INTO t VALUES (?)", (key,))
                done.append(key)
            except datasync.DatabaseClosedError:
                break
        return done

    tasks = [asyncio.ensure_future(writer(t)) for t in tabs[1:]]
    await asyncio.sleep(0.03)
    b.kill("a")
    acked = [k for t in tasks for k in await t]
    survivor = await b.leader()
    rows = [r["k"] for r in await survivor.query("SELECT k FROM t")]
    assert len(acked) == 120
    assert sorted(rows) == sorted(set(rows)), "a write was applied twice"
    assert set(acked) <= set(rows), "an acknowledged write was lost"
    assert survivor.epoch > 1
    await b.close()


async def test_request_leadership_takes_over_and_the_old_leader_steps_down() -> None:
    b = Browser()
    a, f = await b.leader_and_follower()
    await a.execute("CREATE TABLE t(x)")
    await f.request_leadership()
    assert f.is_leader and f.epoch == a.leaderships[-1] + 1
    for _ in range(500):
        if not a.is_leader:
            break
        await asyncio.sleep(0.002)
    assert not a.is_leader
    await a.execute("INSERT INTO t VALUES ('from the old leader')")  # now forwarded
    assert await f.query("SELECT x FROM t") == [{"x": "from the old leader"}]
    await b.close()


async def test_a_deposed_leader_cannot_overwrite_newer_data() -> None:
    b = Browser()
    a, f = await b.leader_and_follower()
    await a.execute("CREATE TABLE t(x)")
    # a is cut off (it does not learn that it lost the lock) while f takes over
    a._unsubscribe()
    b.locks._held.clear()
    await f.request_leadership()
    await f.execute("INSERT INTO t VALUES ('new leader')")
    a.db._store.epoch = a.epoch  # a still believes in its old epoch
    async with a._writable():
        await a.db.execute("INSERT INTO t VALUES ('stale')")
    with pytest.raises(datasync.DeposedLeaderError):
        await a.db.sync()
    assert await f.query("SELECT x FROM t") == [{"x": "new leader"}]
    crash(a)
    b.tabs.pop("a")
    await b.close()


async def test_a_queued_write_resolves_with_its_result_and_is_read_back() -> None:
    b = Browser()
    a, f = await b.leader_and_follower()
    await f.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
    res = await f.queue_write("INSERT INTO t(v) VALUES (?)", [b"\x01"])
    assert res.rowcount == 1 and res.lastrowid == 1
    assert await f.query("SELECT v FROM t") == [{"v": b"\x01"}]
    res = await a.queue_write("INSERT INTO t(v) VALUES (2)")  # the leader's own
    assert res.lastrowid == 2 and b.queued() == []
    await b.close()


async def test_a_write_queued_by_a_tab_that_dies_at_once_is_still_applied_once() -> None:
    b = Browser()
    a, f = await b.leader_and_follower()
    await a.execute("CREATE TABLE t(x)")
    a._kick_drain = lambda: None  # type: ignore[method-assign]  # a is slow to drain...
    task = asyncio.ensure_future(f.queue_write("INSERT INTO t VALUES ('last words')"))
    while not b.queued():
        await asyncio.sleep(0)
    b.kill("f")  # ...and f is gone before anything was applied
    task.cancel()
    assert await a.query("SELECT x FROM t") == []
    del a._kick_drain  # a drains again (at its next poll, or the next notice)
    a._kick_drain()
    await b.drained()
    assert await a.query("SELECT x FROM t") == [{"x": "last words"}]
    await b.close()


async def test_a_queued_write_waits_for_a_leader_and_a_timeout_leaves_it_queued() -> None:
    b = Browser()
    ghost = await b.locks.for_tab("ghost").acquire(f"datasync-leader:{b.name}")
    f = await b.open("f")  # nobody can lead while the ghost holds the lock
    with pytest.raises(QueuedWriteTimeoutError, match="stays queued") as caught:
        await f.queue_write("CREATE TABLE t(x)", timeout=0.2)
    assert [e["id"] for e in b.queued()] == [caught.value.id]
    b.locks.release(ghost)
    await f.wait_for_leadership()
    await b.drained()
    res = await f.queue_write("INSERT INTO t VALUES (1)")
    assert res.rowcount == 1
    assert await f.query("SELECT x FROM t") == [{"x": 1}]
    await b.close()


async def test_a_queued_write_that_fails_raises_its_error_once_and_leaves_the_outbox() -> None:
    b = Browser()
    a, f = await b.leader_and_follower()
    await f.execute("CREATE TABLE t(x UNIQUE)")
    await f.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        await f.queue_write("INSERT INTO t VALUES (1)")
    assert b.queued() == []
    assert await a.query("SELECT count(*) AS n FROM t") == [{"n": 1}]
    await b.close()


async def test_a_leader_that_dies_after_applying_a_queued_write_does_not_apply_it_twice() -> None:
    b = Browser()
    a, f = await b.leader_and_follower()
    await a.execute("CREATE TABLE t(x)")
    deleted = asyncio.Event()

    async def die_before_deleting(entry_id: str) -> None:
        deleted.set()
        await asyncio.Event().wait()  # a is killed here, the entry still queued

    a._outbox = type("O", (), {"entries": MemoryOutbox(b.name).entries,
                               "delete": staticmethod(die_before_deleting),
                               "close": lambda self: None})()
    task = asyncio.ensure_future(f.queue_write("INSERT INTO t VALUES ('once')"))
    await deleted.wait()
    b.kill("a")
    res = await task  # answered by a's result message, or by the new leader
    assert res.rowcount == 1
    await b.drained()
    assert await f.query("SELECT x FROM t") == [{"x": "once"}]
    await b.close()


class _GatedBackend(AsyncWithHistory):
    """Flushes wait at a gate once ``gated`` (storage that is slow to commit)."""

    gated = False

    def __init__(self, name: str, *, instance: str) -> None:
        super().__init__(MemoryBackend(name, instance=instance))
        self.gate = asyncio.Event()

    async def write(self, flush: Any) -> None:
        if self.gated:
            await self.gate.wait()
        await super().write(flush)


async def test_a_queued_write_on_the_leader_resolves_only_once_durable() -> None:
    b = Browser()
    backend = _GatedBackend(b.name, instance="a")
    a = await b.open("a", backend=backend)
    await a.wait_for_leadership()
    await a.execute("CREATE TABLE t(x)")
    backend.gated = True
    task = asyncio.ensure_future(a.queue_write("INSERT INTO t VALUES (1)"))
    await asyncio.sleep(0.3)
    assert not task.done(), "resolved while its flush had not reached storage"
    backend.gate.set()
    res = await asyncio.wait_for(task, 10)
    assert res.rowcount == 1
    assert _STORES[b.name].meta.version == a._store.version
    await b.close()


async def test_a_queued_write_with_a_bad_parameter_fails_alone_and_the_outbox_drains() -> None:
    b = Browser()
    a, f = await b.leader_and_follower()
    await a.execute("CREATE TABLE t(x)")
    with pytest.raises(Exception, match="too large"):
        await f.queue_write("INSERT INTO t VALUES (?)", [2**70], timeout=10)
    res = await f.queue_write("INSERT INTO t VALUES ('next')", timeout=10)
    assert res.rowcount == 1 and b.queued() == []
    with pytest.raises(Exception, match="too large"):
        await f.execute("INSERT INTO t VALUES (?)", [2**70])  # forwarded, answered
    assert await a.query("SELECT x FROM t") == [{"x": "next"}]
    await b.close()


def tab_ops(kinds: list[str], tabs: int, max_size: int) -> Any:
    """Scripts of (kind, tab number) steps, plus ("sleep", milliseconds)."""
    steps = [st.tuples(st.just(kind), st.integers(0, tabs - 1)) for kind in kinds]
    return st.lists(st.one_of(*steps, st.tuples(st.just("sleep"), st.integers(0, 10))),
                    min_size=5, max_size=max_size)


def acked_writer(acked: list[str], serial: Any) -> Any:
    """``write(tab)``: one INSERT into ``w``, its key added to ``acked`` once the
    call resolves (a write whose tab died is not acknowledged)."""
    async def write(tab: SharedDatabase) -> None:
        key = f"{tab.tab_id}-{next(serial)}"
        try:
            await tab.execute("INSERT INTO w VALUES (?)", (key,))
            acked.append(key)
        except datasync.DatasyncError:
            pass

    return write


ops = tab_ops(["write", "queue", "kill", "restart", "steal"], 8, 40)


@settings(max_examples=int(os.environ.get("DATASYNC_TAB_EXAMPLES", max(EXAMPLES // 4, 4))), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(script=ops, seed=st.integers(0, 2**16), suspending=st.booleans())
async def test_eight_tabs_with_random_kills_restarts_and_delays_keep_the_invariants(script, seed, suspending) -> None:  # type: ignore[no-untyped-def]
    """Never two leaders with one epoch; every acknowledged write applied exactly
    once; every queued write (its tab alive or not) applied exactly once; the
    versions each tab sees only grow. Half the runs use storage whose I/O
    suspends (as IndexedDB's does), so leadership can move mid-flush."""

    b = Browser(max_delay=0.003, seed=seed, suspending=suspending)
    rng = random.Random(seed)
    first = await b.open("t0")
    await first.wait_for_leadership()
    await first.execute("CREATE TABLE w(k TEXT)")
    for i in range(1, 8):
        await b.open(f"t{i}")
    acked: list[str] = []
    writes: list[asyncio.Task[None]] = []
    serial = itertools.count()
    write = acked_writer(acked, serial)

    queued: list[str] = []

    async def queue(tab: SharedDatabase) -> None:
        key = f"q-{tab.tab_id}-{next(serial)}"
        try:
            await tab.queue_write("INSERT INTO w VALUES (?)", (key,))
        except datasync.DatabaseClosedError:
            if key not in [e["stmts"][0][1][0] for e in b.queued()]:
                return  # its tab died before the write was queued
        queued.append(key)

    for op, arg in script:
        tab_id = f"t{arg}"
        if op == "write" and tab_id in b.tabs:
            writes.append(asyncio.ensure_future(write(b.tabs[tab_id])))
        elif op == "queue" and tab_id in b.tabs:
            writes.append(asyncio.ensure_future(queue(b.tabs[tab_id])))
        elif op == "kill" and tab_id in b.tabs and len(b.tabs) > 1:
            b.kill(tab_id)
        elif op == "restart" and tab_id not in b.tabs:
            await b.open(tab_id)
        elif op == "steal" and tab_id in b.tabs:
            await asyncio.wait_for(b.tabs[tab_id].request_leadership(), 10)
        elif op == "sleep":
            await asyncio.sleep(arg / 1000)
        if rng.random() < 0.3:
            await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(*writes), 30)
    leader = await b.leader()
    await b.drained()
    await leader.sync()
    rows = [r["k"] for r in await leader.query("SELECT k FROM w")]
    epochs = [e for t in b.all_tabs() for e in t.leaderships]
    assert len(epochs) == len(set(epochs)), f"two leaderships shared an epoch: {epochs}"
    assert len(rows) == len(set(rows)), "a write was applied twice"
    assert set(acked) <= set(rows), f"acknowledged writes lost: {set(acked) - set(rows)}"
    assert set(queued) <= set(rows), f"queued writes lost: {set(queued) - set(rows)}"
    for t in b.all_tabs():
        seen = t.versions_seen
        assert all(x <= y for x, y in zip(seen, seen[1:])), f"{t.tab_id} went back: {seen}"
    await b.close()


@pytest.mark.parametrize("suspending", [False, True])
async def test_tabs_share_an_encrypted_store_and_followers_decode_what_they_catch_up(suspending: bool) -> None:
    b = Browser(max_delay=0, suspending=suspending)
    a = await b.open("a", encryption_key="tab secret")
    await a.wait_for_leadership()
    f = await b.open("f", encryption_key="tab secret")
    await f.execute("CREATE TABLE t(x)")
    await f.execute("INSERT INTO t VALUES ('sealed marker')")  # forwarded
    await a.execute("INSERT INTO t VALUES ('from the leader')")
    for _ in range(500):
        if len(await f.query("SELECT x FROM t")) == 2:
            break
        await asyncio.sleep(0.002)
    assert await f.query("SELECT x FROM t") == [{"x": "sealed marker"}, {"x": "from the leader"}]
    raw = b"".join(r.payload for r in _STORES[b.name].blocks.values())
    assert b"sealed marker" not in raw
    with pytest.raises(datasync.WrongKeyError):
        await b.open("g", encryption_key="not the key")
    await b.close()


async def test_a_restore_in_the_leader_reaches_the_followers() -> None:
    b = Browser(max_delay=0)
    a = await b.open("a", retain_versions=4)
    await a.wait_for_leadership()
    f = await b.open("f", retain_versions=4)
    await f.execute("CREATE TABLE t(x)")
    await f.execute("INSERT INTO t VALUES ('kept')")
    keep = a._store.version
    await f.execute("INSERT INTO t VALUES ('undone')")
    with pytest.raises(datasync.DatasyncError, match="leader tab"):
        await f.restore(keep)
    assert keep in [v["version"] for v in await a.versions()]
    await a.restore(keep)
    for _ in range(500):
        if await f.query("SELECT x FROM t") == [{"x": "kept"}]:
            break
        await asyncio.sleep(0.002)
    assert await f.query("SELECT x FROM t") == [{"x": "kept"}]
    await b.close()


async def _keyed_pair(b: Browser) -> tuple[SharedDatabase, SharedDatabase]:
    """Tab "a" leading and tab "f" following, on a store under "old secret" that
    has a table ``t(x)``."""
    a = await b.open("a", encryption_key="old secret")
    await a.wait_for_leadership()
    f = await b.open("f", encryption_key="old secret")
    await f.execute("CREATE TABLE t(x)")
    return a, f


async def _until(check: Any, what: str) -> None:
    for _ in range(2500):
        if await check():
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"never: {what}")


@pytest.mark.parametrize("suspending", [False, True])
async def test_a_rekey_in_any_tab_reaches_every_tab_and_the_old_key_stops_opening(suspending: bool) -> None:
    b = Browser(max_delay=0.001, suspending=suspending)
    a = await b.open("a", encryption_key="old secret")
    await a.wait_for_leadership()
    f = await b.open("f", encryption_key="old secret")
    g = await b.open("g", encryption_key="old secret")
    await g.execute("CREATE TABLE t(x)")
    await g.execute("INSERT INTO t VALUES ('before')")
    new_key = bytes(range(100, 132))
    version = await f.rekey(new_key)  # a follower asks: it takes the lead to do it
    assert f.is_leader and not a.is_leader
    await g.execute("INSERT INTO t VALUES ('after marker')")  # forwarded to f
    for tab in (a, f, g):
        await _until(lambda: _rows_are(tab, ["before", "after marker"]), "every tab reads")
        assert tab._store.version > version
    raw = b"".join(r.payload for r in _STORES[b.name].blocks.values())
    assert b"after marker" not in raw and b"before" not in raw
    with pytest.raises(datasync.WrongKeyError):
        await b.open("h", encryption_key="old secret")
    h = await b.open("h", encryption_key=new_key)
    assert await _rows_are(h, ["before", "after marker"])
    await a.rekey(None)  # decrypt, from the tab that led first
    await h.execute("INSERT INTO t VALUES ('plain marker')")
    for tab in (a, f, g, h):
        await _until(lambda: _rows_are(tab, ["before", "after marker", "plain marker"]),
                     "every tab reads the decrypted store")
    raw = b"".join(r.payload for r in _STORES[b.name].blocks.values())
    assert b"plain marker" in raw
    await b.close()


async def _rows_are(tab: SharedDatabase, expected: list[str]) -> bool:
    return [r["x"] for r in await tab.query("SELECT x FROM t ORDER BY rowid")] == expected


async def test_a_tab_that_missed_a_rekey_says_so_and_never_leads(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from datasync.tabs import wire

    monkeypatch.setattr(wire, "KEY_WAIT", 0.05)

    b = Browser(max_delay=0)
    a, f = await _keyed_pair(b)
    heard = f._on_message
    f._unsubscribe()  # f is asleep when the key goes round...
    f._unsubscribe = b.hub.channel("f-awake").subscribe(
        lambda m: None if m.get("t") == "rekeyed" else heard(m))  # ...and hears the rest
    await a.rekey("new secret")
    await a.execute("INSERT INTO t VALUES (1)")

    async def refused() -> bool:
        try:
            await f.query("SELECT count(*) AS n FROM t")
        except datasync.WrongKeyError as exc:
            return "open it again with the new key" in str(exc)
        return False

    await _until(refused, "the tab without the key says so")
    with pytest.raises(datasync.WrongKeyError):
        await f.execute("INSERT INTO t VALUES (2)")
    b.kill("a")  # the only tab with the key dies: f must not take the lead
    await asyncio.sleep(0.3)
    assert not f.is_leader
    g = await b.open("g", encryption_key="new secret")
    await g.wait_for_leadership()  # the lock was not kept by f
    assert await g.query("SELECT count(*) AS n FROM t") == [{"n": 1}]
    await b.close()


async def test_a_tab_that_missed_the_key_asks_the_leader_for_it_and_follows() -> None:
    b = Browser(max_delay=0)
    a, f = await _keyed_pair(b)
    heard, dropped = f._on_message, []

    def drop_the_first_key(m: Any) -> None:
        if m.get("t") == "rekeyed" and not dropped:
            dropped.append(m)
            return
        heard(m)

    f._unsubscribe()
    f._unsubscribe = b.hub.channel("f-awake").subscribe(drop_the_first_key)
    await a.rekey(bytes(32))
    await a.execute("INSERT INTO t VALUES (1)")
    await _until(lambda: _count_is(f, 1), "f reads after asking for the key")
    assert dropped and f._key_error is None
    await b.close()


async def _count_is(tab: SharedDatabase, n: int) -> bool:
    try:
        return await tab.query("SELECT count(*) AS n FROM t") == [{"n": n}]
    except datasync.WrongKeyError:
        return False


async def test_a_leader_deposed_by_a_rekey_while_busy_follows_and_can_lead_again() -> None:
    b = Browser(max_delay=0.001, suspending=True)
    a, f = await _keyed_pair(b)
    await f.execute("INSERT INTO t VALUES (1)")

    async def busy() -> None:  # a long statement in the leader tab meanwhile
        async with a.db._lock:
            await asyncio.sleep(0.3)

    busy_task = asyncio.ensure_future(busy())
    await asyncio.sleep(0)
    await f.rekey("new secret")
    await busy_task
    await _until(lambda: _count_is(a, 1), "the deposed leader reads under the new key")
    assert not [t for t in a._tasks if t.done()], "a tab task died"
    await f.close()
    b.tabs.pop("f")
    await a.wait_for_leadership()
    await a.execute("INSERT INTO t VALUES (2)")
    assert await _count_is(a, 2)
    await b.close()


async def test_two_tabs_rekeying_at_once_end_with_one_key_and_a_clear_error_for_the_other() -> None:
    b = Browser(max_delay=0.001, suspending=True)
    a = await b.open("a", encryption_key="old secret")
    await a.wait_for_leadership()
    f = await b.open("f", encryption_key="old secret")
    g = await b.open("g", encryption_key="old secret")
    await f.execute("CREATE TABLE t(x)")
    results = await asyncio.wait_for(asyncio.gather(
        f.rekey("key f"), g.rekey("key g"), return_exceptions=True), 15)
    won = {r: k for k, r in zip(("key f", "key g"), results) if isinstance(r, int)}
    lost = [r for r in results if not isinstance(r, int)]
    assert won, results
    assert all(isinstance(e, datasync.DatasyncError) for e in lost), lost
    for tab in (a, f, g):
        await _until(lambda: _count_is(tab, 0), "every tab reads after the rekeys")
    h = await b.open("h", encryption_key=won[max(won)])  # the last rekey's key opens it
    assert await _count_is(h, 0)
    await b.close()


async def test_the_other_tabs_follow_a_rekey_whose_scrub_failed() -> None:
    b = Browser(max_delay=0)
    a, f = await _keyed_pair(b)

    async def broken_scrub() -> None:
        raise datasync.BackendError("the disk went away")

    a._store.backend.scrub = broken_scrub  # type: ignore[method-assign]
    with pytest.raises(datasync.BackendError, match="the rekey is done"):
        await a.rekey("new secret")
    await a.execute("INSERT INTO t VALUES (1)")
    await _until(lambda: _count_is(f, 1), "the follower reads under the new key")
    await b.close()


rekey_ops = tab_ops(["write", "rekey", "kill", "restart"], 5, 30)


@settings(max_examples=int(os.environ.get("DATASYNC_TAB_EXAMPLES", max(EXAMPLES // 6, 4))),
          deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=rekey_ops, seed=st.integers(0, 2**16), suspending=st.booleans())
async def test_tabs_rekeying_while_others_write_die_and_restart_lose_nothing(script, seed, suspending) -> None:  # type: ignore[no-untyped-def]
    """Rekeys from random tabs among writes, kills and restarts: every
    acknowledged write is applied exactly once, and afterwards the store opens
    with the key of the last rekey that took effect and every live tab reads it."""

    b = Browser(max_delay=0.003, seed=seed, suspending=suspending)
    rng = random.Random(seed)
    keys = [bytes(32)]  # raw keys: a passphrase's PBKDF2 per open would dominate
    first = await b.open("t0", encryption_key=keys[0])
    await first.wait_for_leadership()
    await first.execute("CREATE TABLE w(k TEXT)")
    for i in range(1, 5):
        await b.open(f"t{i}", encryption_key=keys[0])
    acked: list[str] = []
    tasks: list[asyncio.Task[None]] = []
    serial = itertools.count()
    write = acked_writer(acked, serial)

    async def rekey(tab: SharedDatabase) -> None:
        new = next(serial).to_bytes(32, "big")
        keys.append(new)  # it may take effect even if its tab dies right after
        try:
            await tab.rekey(new)
        except datasync.DatasyncError:
            pass

    async def restart(tab_id: str) -> None:
        for key in reversed(keys):
            try:
                await b.open(tab_id, encryption_key=key)
                return
            except datasync.WrongKeyError:
                continue
        raise AssertionError("no key known to the test opens the store")

    for op, arg in script:
        tab_id = f"t{arg}"
        if op == "write" and tab_id in b.tabs:
            tasks.append(asyncio.ensure_future(write(b.tabs[tab_id])))
        elif op == "rekey" and tab_id in b.tabs:
            tasks.append(asyncio.ensure_future(rekey(b.tabs[tab_id])))
        elif op == "kill" and tab_id in b.tabs and len(b.tabs) > 1:
            b.kill(tab_id)
        elif op == "restart" and tab_id not in b.tabs:
            await restart(tab_id)
        elif op == "sleep":
            await asyncio.sleep(arg / 1000)
        if rng.random() < 0.3:
            await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    leader = await b.leader()
    await leader.sync()
    rows = [r["k"] for r in await leader.query("SELECT k FROM w")]
    assert len(rows) == len(set(rows)), "a write was applied twice"
    assert set(acked) <= set(rows), f"acknowledged writes lost: {set(acked) - set(rows)}"
    for tab in b.tabs.values():
        await _until(lambda: _count_is_rows(tab, len(rows)), f"{tab.tab_id} reads it all")
    await restart("late")  # some known key opens it
    await b.close()


async def _count_is_rows(tab: SharedDatabase, n: int) -> bool:
    try:
        return await tab.query("SELECT count(*) AS n FROM w") == [{"n": n}]
    except datasync.WrongKeyError:
        return False
