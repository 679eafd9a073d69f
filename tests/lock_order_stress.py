"""Threads commit and read through ``db.connect()`` while the event loop writes, syncs
and closes, over a backend whose writes are slow: a deadlock hangs this script.

Run by tests/test_lock_order.py in a subprocess under a timeout (a hang must fail
the test, not the whole run): ``python tests/lock_order_stress.py PATH SCENARIO``.
On a hang, faulthandler prints every thread's stack before the timeout kills it.
Prints ``ok <rows>`` once every expected row is there after reopening.
"""
from __future__ import annotations

import asyncio
import faulthandler
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import datasync  # noqa: E402
from datasync.backends import MemoryBackend, SqliteFileBackend  # noqa: E402


class SlowFileBackend(SqliteFileBackend):
    """A sqlitefile store whose flushes take a few milliseconds more."""

    async def write(self, flush):  # type: ignore[no-untyped-def]
        time.sleep(0.003)
        await super().write(flush)


class SlowMemoryBackend(MemoryBackend):
    async def write(self, flush):  # type: ignore[no-untyped-def]
        time.sleep(0.003)
        await super().write(flush)


async def big_commit(path: str, blob: int, **options: object) -> int:
    """The issue's input: the loop inserts and syncs while a thread commits a blob."""
    db = await datasync.open(path, **options)  # type: ignore[arg-type]
    await db.execute("CREATE TABLE IF NOT EXISTS t(x)")
    con = db.connect(check_same_thread=False)

    def commit_blob() -> None:
        con.execute("INSERT INTO t VALUES (zeroblob(?))", (blob,))
        con.commit()

    thread = threading.Thread(target=commit_blob)
    thread.start()
    for i in range(40):
        await db.execute("INSERT INTO t VALUES (?)", (i,))
        await db.sync()
    while thread.is_alive():
        await asyncio.sleep(0.01)
    con.close()
    await db.close()
    return 41


async def mixed(path: str, backend: str, readers: int, writers: int, rounds: int,
                cache_bytes: int) -> int:
    """Writer and reader threads on connect() connections; the loop writes, syncs,
    closes and reopens the database between rounds."""
    expected = 0
    for round_ in range(rounds):
        be = (SlowMemoryBackend(path) if backend == "memory" else SlowFileBackend(path))
        db = await datasync.open(path, backend=be, cache_bytes=cache_bytes,
                                 durability="strict" if round_ % 2 else "relaxed")
        await db.execute("CREATE TABLE IF NOT EXISTS t(k INTEGER PRIMARY KEY, w, pad)")
        stop = threading.Event()
        errors: list[BaseException] = []

        def writer(n: int) -> None:
            con = db.connect(check_same_thread=False, timeout=30)
            try:
                for j in range(25):
                    con.execute("INSERT INTO t(w, pad) VALUES (?, randomblob(3000))", (n,))
                    con.commit()
            except BaseException as exc:  # reported below: the test fails on any
                errors.append(exc)
            finally:
                con.close()

        def reader() -> None:
            con = db.connect(check_same_thread=False, timeout=30)
            try:
                while not stop.is_set():
                    con.execute("SELECT count(*), sum(length(pad)) FROM t").fetchone()
            except BaseException as exc:
                errors.append(exc)
            finally:
                con.close()

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
        threads += [threading.Thread(target=reader) for _ in range(readers)]
        for t in threads:
            t.start()
        for i in range(30):
            await db.execute("INSERT INTO t(w, pad) VALUES (-1, randomblob(500))")
            if i % 5 == 0:
                await db.sync()
        while any(t.is_alive() for t in threads[:writers]):
            await db.execute("SELECT count(*) FROM t")
            await asyncio.sleep(0.005)
        stop.set()
        while any(t.is_alive() for t in threads):
            await asyncio.sleep(0.005)
        if errors:
            raise errors[0]
        await db.close()
        expected += 30 + 25 * writers
    return expected


async def main(path: str, scenario: str) -> None:
    if scenario == "blob-small-cache":
        expected = await big_commit(path, 200_000, cache_bytes=65536)
    elif scenario == "blob-9mib":
        expected = await big_commit(path, 9 * 2**20)
    elif scenario in ("file", "memory"):
        expected = await mixed(path, scenario, readers=3, writers=2, rounds=4,
                               cache_bytes=32 * 1024)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    backend = "memory" if scenario == "memory" else None
    db = await datasync.open(path, backend=backend)
    rows = (await db.query("SELECT count(*) AS n FROM t"))[0]["n"]
    await db.close()
    assert rows == expected, f"{rows} rows, expected {expected}"
    print("ok", rows, flush=True)


if __name__ == "__main__":
    faulthandler.dump_traceback_later(float(os.environ.get("STRESS_DUMP_AFTER", "60")),
                                      exit=True)
    asyncio.run(main(sys.argv[1], sys.argv[2]))
