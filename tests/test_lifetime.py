"""Resource lifetime: stores the VFS opens by itself, closes inside an event loop,
failures while opening, VACUUM INTO and ATTACH leave nothing registered or locked.

Each scenario runs in a worker thread with its own event loop and a deadline, so a
hang (a deadlock in the loop thread) fails the test instead of the whole run.
"""
from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Coroutine
from typing import Any

import pytest

import datasync
from datasync import database, vfs
from datasync.database import opening
from datasync.vfs import callbacks

from helpers import native_only

pytestmark = native_only


def within(seconds: float, coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` in a fresh loop on another thread; fail if it takes longer."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = asyncio.run(coro)
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"hung for {seconds} s")
    if "error" in out:
        raise out["error"]
    return out.get("value")


def raw(path: str) -> sqlite3.Connection:
    vfs.register()
    return sqlite3.connect(f"file:{path}?vfs=datasync", uri=True)


def nothing_registered(path: str) -> bool:
    return vfs.attached(path) is None and path not in opening._shared


def test_a_raw_connection_closed_inside_a_loop_lets_datasync_open_the_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "raw.dsdb")

    async def go() -> list[Any]:
        con = raw(path)
        con.execute("CREATE TABLE t(x)")
        con.execute("INSERT INTO t VALUES (1)")
        con.commit()
        con.close()
        assert nothing_registered(path)
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
        db = await datasync.open(path)
        rows = await db.query("SELECT x FROM t")
        await db.close()
        return rows

    assert within(20, go()) == [{"x": 1}]
    assert nothing_registered(path)


def test_a_second_raw_connection_commits_after_the_first_closed_inside_a_loop(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "raw2.dsdb")

    async def go() -> list[Any]:
        for i in range(3):
            con = raw(path)
            con.execute("CREATE TABLE IF NOT EXISTS t(x)")
            con.execute("INSERT INTO t VALUES (?)", (i,))
            con.commit()
            con.close()
        con = raw(path)
        try:
            return con.execute("SELECT x FROM t ORDER BY x").fetchall()
        finally:
            con.close()

    assert within(20, go()) == [(0,), (1,), (2,)]
    assert nothing_registered(path)


def test_vacuum_into_writes_an_ordinary_sqlite_file_nothing_keeps_locked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, target = str(tmp_path / "v.dsdb"), str(tmp_path / "copy.sqlite")

    async def go() -> None:
        db = await datasync.open(path)
        await db.execute("CREATE TABLE t(x)")
        await db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
        await db.execute("VACUUM INTO ?", (target,))
        # Writable by plain sqlite3 while this process still runs: nothing holds it.
        plain = sqlite3.connect(target, timeout=0)
        plain.execute("INSERT INTO t VALUES (100)")
        plain.commit()
        plain.close()
        with pytest.raises(sqlite3.OperationalError, match="already exists"):
            await db.execute("VACUUM INTO ?", (target,))  # as plain SQLite says
        await db.close()

    within(20, go())
    assert vfs.attached(target) is None
    plain = sqlite3.connect(target)
    assert plain.execute("SELECT count(*), max(x) FROM t").fetchone() == (101, 100)
    assert plain.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert plain.execute("PRAGMA application_id").fetchone() == (0,)  # not a store
    plain.close()


def test_attach_create_insert_detach_twice_neither_hangs_nor_leaves_a_lock(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, other = str(tmp_path / "a.dsdb"), str(tmp_path / "o.sqlite")

    async def go() -> None:
        db = await datasync.open(path)
        for i in range(2):
            await db.execute("ATTACH ? AS o", (other,))
            await db.execute("CREATE TABLE IF NOT EXISTS o.b(v)")
            await db.execute("INSERT INTO o.b VALUES (?)", (i,))
            await db.execute("DETACH o")
        await db.close()

    within(20, go())
    plain = sqlite3.connect(other, timeout=0)
    assert plain.execute("SELECT v FROM b").fetchall() == [(0,), (1,)]
    plain.execute("INSERT INTO b VALUES (2)")  # not locked
    plain.commit()
    plain.close()


def test_attaching_an_existing_store_opens_it_as_a_store_and_lets_it_go(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, other = str(tmp_path / "a.dsdb"), str(tmp_path / "other.dsdb")

    async def go() -> list[Any]:
        o = await datasync.open(other)
        await o.execute("CREATE TABLE b(v)")
        await o.close()
        db = await datasync.open(path)
        for i in range(2):
            await db.execute("ATTACH ? AS o", (other,))
            await db.execute("INSERT INTO o.b VALUES (?)", (i,))
            await db.execute("DETACH o")
        assert vfs.attached(other) is None
        await db.close()
        o = await datasync.open(other)  # opens: nothing of the ATTACH is left
        rows = await o.query("SELECT v FROM b")
        await o.close()
        return rows

    assert within(20, go()) == [{"v": 0}, {"v": 1}]


def test_a_failure_after_the_connection_opened_leaves_nothing_registered(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "f.dsdb")

    def broken(self, retention=None, install=True):  # type: ignore[no-untyped-def]
        raise datasync.BackendError("injected: capture could not be set up")

    async def go() -> None:
        monkeypatch.setattr(datasync.Database, "enable_cdc", broken)
        with pytest.raises(datasync.BackendError, match="injected"):
            await datasync.open(path, cdc=True)
        assert nothing_registered(path)
        monkeypatch.undo()
        db = await datasync.open(path)  # not locked, not half-open
        await db.execute("CREATE TABLE t(x)")
        await db.close()

    within(20, go())


def test_a_failing_first_statement_closes_the_connection_it_opened(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "g.dsdb")
    real = database.Database._new_connection

    def failing(self, **kwargs):  # type: ignore[no-untyped-def]
        conn = real(self, **kwargs)
        conn.close()
        raise sqlite3.OperationalError("injected after connect")

    async def go() -> None:
        monkeypatch.setattr(database.Database, "_new_connection", failing)
        with pytest.raises(sqlite3.OperationalError, match="injected"):
            await datasync.open(path)
        assert nothing_registered(path)
        monkeypatch.undo()
        db = await datasync.open(path)
        await db.close()

    within(20, go())


def test_a_wrong_key_leaves_nothing_open(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("cryptography")
    path = str(tmp_path / "k.dsdb")

    async def go() -> None:
        db = await datasync.open(path, encryption_key="right")
        await db.close()
        with pytest.raises(datasync.WrongKeyError):
            await datasync.open(path, encryption_key="wrong")
        assert nothing_registered(path)
        db = await datasync.open(path, encryption_key="right")
        await db.close()

    within(30, go())


def test_a_connection_made_in_another_thread_outlives_close_and_keeps_its_commits(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "h.dsdb")
    ready, go_on, done = threading.Event(), threading.Event(), threading.Event()
    holder: dict[str, Any] = {}

    def worker(db: datasync.Database) -> None:
        con = db.connect()  # this thread's: only it may close it
        ready.set()
        go_on.wait(10)
        con.execute("INSERT INTO t VALUES ('after close')")
        con.commit()
        con.close()  # the VFS flushes and closes the store now
        done.set()

    async def go() -> None:
        db = await datasync.open(path)
        await db.execute("CREATE TABLE t(x)")
        thread = threading.Thread(target=worker, args=(db,))
        thread.start()
        while not ready.is_set():
            await asyncio.sleep(0.01)
        await db.close()  # cannot close the thread's connection: hands the store over
        holder["registered"] = vfs.attached(path) is not None
        go_on.set()
        while not done.is_set():
            await asyncio.sleep(0.01)
        thread.join()

    within(20, go())
    assert holder["registered"] and nothing_registered(path)

    async def read() -> list[Any]:
        db = await datasync.open(path)
        rows = await db.query("SELECT x FROM t")
        await db.close()
        return rows

    assert within(20, read()) == [{"x": "after close"}]


def test_a_store_whose_last_flush_failed_keeps_its_commits_until_reopened(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "full.dsdb")
    failing = {"on": True}
    real = callbacks.VFS.registry.opener

    class Failing:
        def recognizes(self, name: str) -> bool:
            return real.recognizes(name)

        def open(self, name, params):  # type: ignore[no-untyped-def]
            store = real.open(name, params)

            def hook(stage: str, detail: int) -> None:
                if failing["on"] and stage == "meta":
                    raise datasync.StorageFullError("injected: disk full")

            store.backend.fault_hook = hook
            return store

    async def go() -> list[Any]:
        monkeypatch.setattr(callbacks.VFS.registry, "opener", Failing())
        con = raw(path)
        con.execute("CREATE TABLE t(x)")
        con.execute("INSERT INTO t VALUES ('kept')")
        con.commit()
        con.close()  # the final flush fails: kept, with its commits
        store = vfs.attached(path)
        assert store is not None and store.stats()["flush_failures"] >= 1
        with pytest.raises(datasync.StorageFullError):
            await datasync.open(path)  # retries the flush, which fails again
        failing["on"] = False
        db = await datasync.open(path)  # retries, flushes, then opens
        rows = await db.query("SELECT x FROM t")
        await db.close()
        return rows

    assert within(20, go()) == [{"x": "kept"}]
    assert nothing_registered(path)


CLOSE_UNDER_LOAD = """
import asyncio, sys, threading
sys.path.insert(0, ROOT)
import datasync

async def main(path):
    db = await datasync.open(path)
    await db.execute("CREATE TABLE t(x)")
    con = db.connect(check_same_thread=False, isolation_level=None, timeout=30)
    stop = threading.Event()
    done = []

    def insert():
        while not stop.is_set():
            con.execute("INSERT INTO t VALUES (1)")
            done.append(1)
        con.close()  # its own: the store closes with it

    thread = threading.Thread(target=insert)
    thread.start()
    while len(done) < 50:
        await asyncio.sleep(0.001)
    await db.close()          # never closes a connection another thread may be using
    stop.set()
    thread.join()
    db = await datasync.open(path)
    n = (await db.query("SELECT count(*) AS n FROM t"))[0]["n"]
    await db.close()
    print(n == len(done), flush=True)

asyncio.run(main(sys.argv[1]))
"""


def test_closing_while_a_thread_uses_a_shared_connection_never_crashes_nor_loses_a_row(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", CLOSE_UNDER_LOAD.replace("ROOT", repr(root)),
                          str(tmp_path / "c.dsdb")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]  # a crash is a negative return code
    assert out.stdout.strip() == "True"


def test_a_store_that_cannot_be_handed_over_refuses_to_close_and_changes_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from datasync.backends import MemoryBackend

    from helpers import AsyncOnly

    def Suspending(name: str) -> AsyncOnly:  # noqa: N802  (as IndexedDB: no sync flush)
        return AsyncOnly(MemoryBackend(name))

    ready, finish = threading.Event(), threading.Event()

    def worker(db: datasync.Database) -> None:
        con = db.connect()
        ready.set()
        finish.wait(10)
        con.close()

    async def go() -> None:
        db = await datasync.open("handover", backend=Suspending("handover"))
        thread = threading.Thread(target=worker, args=(db,))
        thread.start()
        while not ready.is_set():
            await asyncio.sleep(0.01)
        with pytest.raises(datasync.StoreBusyError, match="close them"):
            await db.close()
        assert not db.closed and await db.query("SELECT 1 AS one") == [{"one": 1}]
        finish.set()
        while thread.is_alive():
            await asyncio.sleep(0.01)
        await db.close()  # its thread closed it: now it can
        assert nothing_registered("memory:handover")

    within(20, go())


def test_shared_cache_mode_is_refused_by_name(tmp_path) -> None:  # type: ignore[no-untyped-def]
    vfs.register()
    with pytest.raises(sqlite3.OperationalError):
        sqlite3.connect(f"file:{tmp_path / 's.dsdb'}?vfs=datasync&cache=shared", uri=True)
    assert isinstance(vfs.take_last_error(), datasync.InvalidOptionError)


def test_a_persist_journal_goes_with_its_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "j.dsdb")
    con = raw(path)
    con.execute("PRAGMA journal_mode=PERSIST")
    con.execute("CREATE TABLE t(x)")
    con.commit()
    assert os.path.realpath(path) + "-journal" in callbacks.VFS.registry.memfiles
    con.close()
    assert os.path.realpath(path) + "-journal" not in callbacks.VFS.registry.memfiles
