"""Random interleavings of two replicas going offline and online, writing, pulling and
pushing against a real server: in the end both hold exactly the primary's rows, every
acknowledged write of the constraint-free table is there exactly once, and only
writes that can conflict (a primary key) were recorded as conflicts."""
from __future__ import annotations

import random

import pytest

import datasync
from datasync.errors import SyncUnavailableError

pytestmark = pytest.mark.timeout(240)


async def rows(db, table):
    return sorted(tuple(r.values()) for r in await db.query(f"SELECT * FROM {table}"))


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
async def test_random_offline_and_online_work_on_two_replicas_converges_exactly_once(
        sync_server, tmp_path, seed):
    rng = random.Random(seed)
    name = f"random{seed}"
    token = sync_server.token(name)

    async def replica(label):
        return await datasync.open(str(tmp_path / f"{label}.dsdb"),
                                   sync_url=f"{sync_server.url}/{name}", auth_token=token,
                                   sync_interval=0)

    a = await replica("a")
    await a.executescript("CREATE TABLE log(token TEXT); "
                          "CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER NOT NULL);")
    b = await replica("b")
    dbs = {"a": a, "b": b}
    acked: list[str] = []
    total_conflicts: list[int] = []
    for step in range(60):
        if step == 20:   # one sure conflict: both offline insert the same key
            for lbl, other in dbs.items():
                offline = other.offline
                other.set_offline(True)
                await other.execute("INSERT INTO kv(k, v) VALUES ('w', ?)",
                                    (-1 if lbl == "a" else -2,))
                await other.execute("INSERT INTO log(token) VALUES (?)", (f"{lbl}-w",))
                acked.append(f"{lbl}-w")
                other.set_offline(offline)
        label = rng.choice("ab")
        db = dbs[label]
        op = rng.random()
        if op < 0.15:
            db.set_offline(not db.offline)
        elif op < 0.45:
            token_ = f"{label}{step}"
            await db.execute("INSERT INTO log(token) VALUES (?)", (token_,))
            acked.append(token_)
        elif op < 0.65:
            key = rng.choice("xyz")
            try:
                await db.execute("INSERT INTO kv(k, v) VALUES (?, ?)", (key, step))
            except Exception as exc:   # online: the primary (or the copy) has the key
                assert "UNIQUE" in str(exc) or "PRIMARY" in str(exc), exc
        elif op < 0.75:
            await db.execute("UPDATE kv SET v = v + 1 WHERE k = ?", (rng.choice("xyz"),))
        elif op < 0.8 and rng.random() < 0.5:   # reopen, as after a reload
            await db.close()
            offline = db.offline
            dbs[label] = db = await replica(label)
            db.set_offline(offline)
        else:
            try:
                await (db.pull() if rng.random() < 0.5 else db.push())
            except SyncUnavailableError:
                assert db.offline
    for db in dbs.values():
        db.set_offline(False)
        await db.push()
    for db in dbs.values():
        await db.pull()
        assert db.sync_status()["waiting"] == 0
    probe = await replica("probe")
    logged = [t for (t,) in await rows(probe, "log")]
    assert sorted(logged) == sorted(acked)  # each acknowledged write once, none lost
    for db in dbs.values():
        assert await rows(db, "log") == await rows(probe, "log")
        assert await rows(db, "kv") == await rows(probe, "kv")
        tables = {r["name"] for r in await db.query("SELECT name FROM sqlite_master")}
        assert "_datasync_local" not in tables
        total_conflicts.append(len(await db.conflicts()))
        for conflict in await db.conflicts():
            assert conflict["statements"][0][0].startswith("INSERT INTO kv"), conflict
    assert sum(total_conflicts) >= 1  # the sure one, recorded by the replica that lost
    for db in (*dbs.values(), probe):
        await db.close()
