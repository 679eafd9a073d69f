"""Migrations on sync replicas against a real sync server (tests/sync/conftest.py):
each SQL migration is one batch on the primary, so two replicas migrating at once
apply each migration once; functions are refused there."""
from __future__ import annotations

import asyncio

import pytest

import datasync
from datasync.errors import MigrationError, SchemaTooNewError

pytestmark = pytest.mark.timeout(180)

#: Each up and down leaves a row in ``runs`` (no unique constraint) every time it runs.
MIGRATIONS = [
    {"version": 1, "name": "runs", "down": "DROP TABLE runs",
     "up": "CREATE TABLE runs(v INTEGER); INSERT INTO runs VALUES (1)"},
    {"version": 2, "name": "items",
     "up": "CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT);\n"
           "INSERT INTO runs VALUES (2);\nINSERT INTO items(body) VALUES ('seeded');",
     "down": "DROP TABLE IF EXISTS items; INSERT INTO runs VALUES (-2)"},  # could run twice
]


async def open_replica(server, path, name="app"):
    return await datasync.open(str(path), sync_url=f"{server.url}/{name}",
                               auth_token=server.token(name), sync_interval=0)


async def runs(db):
    return [(r["v"], r["n"]) for r in await db.query(
        "SELECT v, count(*) AS n FROM runs GROUP BY v ORDER BY v")]


async def test_two_replicas_migrating_at_once_apply_each_migration_once(sync_server, tmp_path):
    a = await open_replica(sync_server, tmp_path / "a.dsdb")
    b = await open_replica(sync_server, tmp_path / "b.dsdb")
    try:
        outs = await asyncio.gather(a.migrate(MIGRATIONS), b.migrate(MIGRATIONS))
        assert sorted(v for out in outs for v in out["applied"]) == [1, 2]
        assert [out["to"] for out in outs] == [2, 2]
        for db in (a, b):  # each has pulled the new schema before returning
            assert await runs(db) == [(1, 1), (2, 1)]
            assert await db.query("SELECT body FROM items") == [{"body": "seeded"}]
            assert [s["state"] for s in await db.migration_status(MIGRATIONS)] == [
                "applied", "applied"]
        assert await a.migrate(MIGRATIONS) == {"from": 2, "to": 2, "applied": [],
                                               "reverted": []}
        # both roll the last one back at once: its down runs once too
        outs = await asyncio.gather(a.rollback(MIGRATIONS), b.rollback(MIGRATIONS))
        assert sorted(v for out in outs for v in out["reverted"]) == [2]
        await b.pull()
        for db in (a, b):
            assert await runs(db) == [(-2, 1), (1, 1), (2, 1)]
            assert [s["state"] for s in await db.migration_status(MIGRATIONS)] == [
                "applied", "pending"]
        # a replica with older code meets the newer schema: a named error
        await a.migrate(MIGRATIONS)
        with pytest.raises(SchemaTooNewError):
            await b.migrate(MIGRATIONS[:1])
    finally:
        await a.close()
        await b.close()


async def test_a_function_migration_on_a_replica_is_refused_before_anything_runs(
        sync_server, tmp_path):
    db = await open_replica(sync_server, tmp_path / "f.dsdb")
    try:
        ms = [MIGRATIONS[0], {"version": 2, "name": "code", "up": lambda tx: None}]
        with pytest.raises(MigrationError) as caught:
            await db.migrate(ms)
        assert caught.value.version == 2 and "SQL" in str(caught.value)
        assert [s["state"] for s in await db.migration_status(ms)] == ["pending", "pending"]
        assert (await db.migrate(ms, target=1))["applied"] == [1]
    finally:
        await db.close()


async def test_an_offline_replica_refuses_to_migrate(sync_server, tmp_path):
    db = await datasync.open(str(tmp_path / "off.dsdb"), sync_url=f"{sync_server.url}/app",
                             auth_token=sync_server.token("app"), sync_interval=0,
                             offline=True)
    try:
        with pytest.raises(MigrationError) as caught:
            await db.migrate(MIGRATIONS)
        assert "offline" in str(caught.value)
        assert db.sync_status()["waiting"] == 0  # nothing queued for the primary
    finally:
        await db.close()
    sync_server.stop()
    db = await open_replica(sync_server, tmp_path / "down.dsdb")
    try:
        with pytest.raises(MigrationError) as caught:
            await db.migrate(MIGRATIONS)
        assert "did not answer" in str(caught.value)
        assert db.sync_status()["waiting"] == 0
    finally:
        await db.close()


async def test_a_failing_migration_on_a_replica_leaves_the_primary_at_the_last_good_version(
        sync_server, tmp_path):
    db = await open_replica(sync_server, tmp_path / "x.dsdb")
    try:
        ms = [MIGRATIONS[0], {"version": 2, "name": "broken",
                              "up": "CREATE TABLE half(x); INSERT INTO missing VALUES (1)"}]
        with pytest.raises(datasync.MigrationFailedError) as caught:
            await db.migrate(ms)
        assert caught.value.version == 2 and caught.value.__cause__ is not None
        other = await open_replica(sync_server, tmp_path / "y.dsdb")
        try:
            assert [s["state"] for s in await other.migration_status(ms)] == [
                "applied", "pending"]
            assert await other.query(
                "SELECT name FROM sqlite_master WHERE name = 'half'") == []
        finally:
            await other.close()
    finally:
        await db.close()


async def test_tabs_of_a_replica_and_another_replica_migrating_at_once_apply_each_once(
        sync_server, tmp_path):
    from .test_replica_tabs import Tabs

    tabs = Tabs(sync_server, database="app")
    other = await open_replica(sync_server, tmp_path / "o.dsdb")
    try:
        leader = await tabs.open("a")
        await leader.wait_for_leadership()
        follower = await tabs.open("f")
        outs = await asyncio.gather(leader.migrate(MIGRATIONS), follower.migrate(MIGRATIONS),
                                    other.migrate(MIGRATIONS))
        assert sorted(v for out in outs for v in out["applied"]) == [1, 2]
        for db in (leader, follower, other):  # each right after its call returned
            assert await runs(db) == [(1, 1), (2, 1)]
            assert [s["state"] for s in await db.migration_status(MIGRATIONS)] == [
                "applied", "applied"]
    finally:
        await other.close()
        await tabs.close()
