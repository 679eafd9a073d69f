"""Server processes racing on one PostgreSQL primary, without HTTP in between.

Three processes each run a :class:`~datasync.server.primaries.Primaries` on the same
PostgreSQL database and push to one primary as fast as they can, so their flushes
race for each version (the backend refuses the loser with VersionConflictError and
the loser applies its write again on the winner's version). Each also sends again
ids that another process applies, before or after that one does. Whatever wins, each
id is applied exactly once, and the image stays whole.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import sys
from pathlib import Path

import pytest

from datasync.server.places import PostgresPlace
from datasync.server.primaries import Primaries
from datasync.sync.protocol import Write

WRITES = 120
PROCESSES = "abc"


def _pusher(dsn: str, who: str, count: int, out: "multiprocessing.Queue[tuple[str, int]]") -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

    async def main() -> None:
        primaries = Primaries(PostgresPlace(dsn))
        await primaries.push("race", [Write("schema", [["CREATE TABLE IF NOT EXISTS t(id, who)", []]])])
        other = PROCESSES[(PROCESSES.index(who) + 1) % len(PROCESSES)]
        for i in range(count):
            mine = f"{who}-{i}"
            await primaries.push("race", [Write(mine, [["INSERT INTO t VALUES (?, ?)", [mine, who]]])])
            if i % 7 == 0:  # another process's id: maybe applied there already, maybe not yet
                theirs = f"{other}-{i + 3}"
                await primaries.push("race", [Write(theirs, [["INSERT INTO t VALUES (?, ?)",
                                                              [theirs, who]]])])
        out.put((who, primaries.races_lost))
        await primaries.close()

    asyncio.run(main())


async def test_processes_racing_on_one_primary_apply_every_write_exactly_once(pg_dsn: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[tuple[str, int]] = ctx.Queue()
    workers = [ctx.Process(target=_pusher, args=(pg_dsn, who, WRITES, out)) for who in PROCESSES]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(240)
        assert worker.exitcode == 0, f"a pushing process failed ({worker.exitcode})"
    races = dict(out.get(timeout=5) for _ in workers)

    primaries = Primaries(PostgresPlace(pg_dsn))
    try:
        db = (await primaries._get("race")).db
        await primaries.place.fresh(db)
        per_id = (await db.execute("SELECT id, count(*) FROM t GROUP BY id")).rows
        assert (await db.execute("PRAGMA integrity_check")).rows == [("ok",)]
    finally:
        await primaries.close()
    expected = {f"{who}-{i}" for who in PROCESSES for i in range(WRITES)}
    expected |= {f"{PROCESSES[(PROCESSES.index(who) + 1) % 3]}-{i + 3}"
                 for who in PROCESSES for i in range(0, WRITES, 7)}
    assert {row[0] for row in per_id} == expected
    doubled = [row for row in per_id if row[1] != 1]
    assert not doubled, f"applied more than once: {doubled[:5]} (races lost: {races})"


async def test_a_cached_primary_sees_what_another_process_committed(pg_dsn: str) -> None:
    """The cache is checked against the stored version: a primary opened here, then
    written by another process, answers status and pulls at the new version."""
    here = Primaries(PostgresPlace(pg_dsn))
    try:
        await here.push("cache", [Write("one", [["CREATE TABLE t(x)", []]])])
        before = (await here.status("cache")).version
        ctx = multiprocessing.get_context("spawn")
        out: multiprocessing.Queue[tuple[str, int]] = ctx.Queue()
        other = ctx.Process(target=_pusher_once, args=(pg_dsn, out))
        other.start()
        other.join(120)
        assert other.exitcode == 0
        after = await here.status("cache")
        assert after.version > before
        db = (await here._get("cache")).db
        assert (await db.execute("SELECT x FROM t")).rows == [(42,)]
    finally:
        await here.close()


def _pusher_once(dsn: str, out: "multiprocessing.Queue[tuple[str, int]]") -> None:
    async def main() -> None:
        primaries = Primaries(PostgresPlace(dsn))
        await primaries.push("cache", [Write("two", [["INSERT INTO t VALUES (42)", []]])])
        await primaries.close()

    asyncio.run(main())


@pytest.fixture(autouse=True)
def _quiet_notices(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("ERROR", logger="datasync.postgres")
