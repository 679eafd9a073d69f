"""Migrations (datasync/app/migrations.py): up in order, down in reverse, the named
failures (the database left at the last good version), and exactly once across tabs.

Runs natively and inside Pyodide (no subprocess, no threads): memory stores, and
the backends of helpers.py where the store matters. The multi-tab tests need
tests/tabs/harness.py next to this file (skipped where it was not copied).
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

import datasync
from datasync.app.migrations import UNCHECKED, checksum_of
from datasync.errors import (
    InvalidOptionError,
    IrreversibleMigrationError,
    MigrationChecksumError,
    MigrationError,
    MigrationFailedError,
    MigrationOrderError,
    SchemaTooNewError,
)

try:
    from tabs.harness import Browser
except ImportError:  # inside Pyodide, unless the harness was copied too
    Browser = None

needs_tabs = pytest.mark.skipif(Browser is None, reason="tests/tabs/harness.py not here")
_names = itertools.count()

NOTES = {"version": 1, "name": "notes",
         "up": "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);\n"
               "-- a comment; with a semicolon\n"
               "INSERT INTO notes(body) VALUES ('first; still one statement');",
         "down": "DROP TABLE notes"}
TAGS = {"version": 2, "name": "tags", "up": "CREATE TABLE tags(note INTEGER, tag TEXT)",
        "down": "DROP TABLE tags"}
AT = {"version": 3, "name": "notes_at",
      "up": "ALTER TABLE notes ADD COLUMN at REAL; CREATE INDEX notes_at ON notes(at)",
      "down": "DROP INDEX notes_at; ALTER TABLE notes DROP COLUMN at"}
ALL = [NOTES, TAGS, AT]


@contextlib.asynccontextmanager
async def memory_db() -> AsyncIterator[Any]:
    db = await datasync.open(f"migrations-{next(_names)}", backend="memory")
    try:
        yield db
    finally:
        await db.close()


async def tables(db: Any) -> list[str]:
    return [r["name"] for r in await db.query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' "
        "ESCAPE '\\' AND name NOT LIKE 'sqlite%' ORDER BY name")]


async def states(db: Any, ms: Any = ALL) -> dict[int, str]:
    return {s["version"]: s["state"] for s in await db.migration_status(ms)}


async def test_migrate_applies_every_migration_in_order_and_persists_across_reopen(
        db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(db_name, backend=backend_kind)
    out = await db.migrate(ALL)
    assert out == {"from": 0, "to": 3, "applied": [1, 2, 3], "reverted": []}
    assert await db.query("SELECT body, at FROM notes") == [
        {"body": "first; still one statement", "at": None}]
    await db.close()
    db = await datasync.open(db_name, backend=backend_kind)
    status = await db.migration_status(ALL)
    assert [(s["version"], s["name"], s["state"]) for s in status] == [
        (1, "notes", "applied"), (2, "tags", "applied"), (3, "notes_at", "applied")]
    assert status[1]["checksum"] == checksum_of(TAGS["up"])
    assert all(isinstance(s["applied_at"], float) for s in status)
    assert await db.migrate(ALL) == {"from": 3, "to": 3, "applied": [], "reverted": []}
    await db.close()


async def test_a_rerun_is_a_no_op_that_runs_no_up_again() -> None:
    runs: list[int] = []
    ms = [{"version": 1, "name": "counted", "up": lambda tx: runs.append(1)}]
    async with memory_db() as db:
        await db.migrate(ms)
        again = await db.migrate(ms)
        assert again == {"from": 1, "to": 1, "applied": [], "reverted": []}
        assert runs == [1]


async def test_target_stops_part_way_and_a_lower_target_runs_downs_newest_first() -> None:
    order: list[str] = []

    def down(name: str, sql: str) -> Any:
        async def run(tx: Any) -> None:
            order.append(name)
            for statement in sql.split(";"):
                await tx.execute(statement)
        return run

    ms = [{**m, "down": down(m["name"], m["down"])} for m in ALL]
    async with memory_db() as db:
        assert (await db.migrate(ms, target=2))["applied"] == [1, 2]
        assert await tables(db) == ["notes", "tags"]
        assert await states(db, ms) == {1: "applied", 2: "applied", 3: "pending"}
        await db.migrate(ms)
        out = await db.migrate(ms, target=1)
        assert out == {"from": 3, "to": 1, "applied": [], "reverted": [3, 2]}
        assert order == ["notes_at", "tags"]
        assert await tables(db) == ["notes"]
        assert [c["name"] for c in await db.query("PRAGMA table_info(notes)")] == ["id", "body"]
        assert (await db.migrate(ms, target=0))["reverted"] == [1]
        assert await tables(db) == []
        assert await states(db, ms) == {1: "pending", 2: "pending", 3: "pending"}


async def test_rollback_reverts_the_last_steps_applied() -> None:
    async with memory_db() as db:
        await db.migrate(ALL)
        assert await db.rollback(ALL) == {"from": 3, "to": 2, "applied": [], "reverted": [3]}
        assert await db.rollback(ALL, steps=0) == {"from": 2, "to": 2, "applied": [],
                                                   "reverted": []}
        assert (await db.rollback(ALL, steps=5))["reverted"] == [2, 1]
        assert await tables(db) == []
        with pytest.raises(InvalidOptionError):
            await db.rollback(ALL, steps=-1)


async def test_function_ups_sync_and_async_get_a_transaction_and_objects_work_too() -> None:
    ran: list[Any] = []

    def sync_up(tx: Any) -> None:  # returns None: nothing to await
        ran.append(tx)

    async def async_up(tx: Any) -> None:
        await tx.execute("INSERT INTO notes(body) VALUES (?)", ["seeded"])
        n = (await tx.query("SELECT count(*) AS n FROM notes"))[0]["n"]
        await tx.executemany("INSERT INTO notes(body) VALUES (?)", [[f"n={n}"], ["x"]])
        await tx.batch([("DELETE FROM notes WHERE body = ?", ["x"])])

    ms = [SimpleNamespace(version=1, name="notes", up=NOTES["up"], down=NOTES["down"]),
          SimpleNamespace(version=2, name="noop", up=sync_up, down=None, checksum=None),
          SimpleNamespace(version=3, name="seed", up=async_up, down=None, checksum="seed-1")]
    async with memory_db() as db:
        assert (await db.migrate(ms))["applied"] == [1, 2, 3]
        assert [r["body"] for r in await db.query("SELECT body FROM notes ORDER BY id")] == [
            "first; still one statement", "seeded", "n=2"]
        assert len(ran) == 1
        sums = {s["version"]: s["checksum"] for s in await db.migration_status(ms)}
        assert sums[2] == UNCHECKED and sums[3] == "seed-1"
        # the marker of an unnamed function is never compared; a given checksum is
        ms[1].up = lambda tx: None
        assert (await db.migrate(ms))["applied"] == []
        ms[2].checksum = "seed-2"
        with pytest.raises(MigrationChecksumError) as caught:
            await db.migrate(ms)
        assert caught.value.version == 3


async def test_a_failing_up_names_its_migration_and_leaves_the_last_good_version() -> None:
    broken = {"version": 2, "name": "broken",
              "up": "CREATE TABLE half(x); INSERT INTO missing VALUES (1)"}
    ms = [NOTES, broken, {**AT, "version": 3}]
    async with memory_db() as db:
        with pytest.raises(MigrationFailedError) as caught:
            await db.migrate(ms)
        err = caught.value
        assert err.version == 2 and "broken" in str(err) and "version 1" in str(err)
        assert isinstance(err.__cause__, sqlite3.OperationalError)
        assert await tables(db) == ["notes"]  # 1 stays applied, 2's first table is gone
        assert await states(db, ms) == {1: "applied", 2: "pending", 3: "pending"}
        # fixed, it goes on from there
        ms[1] = {**broken, "up": "CREATE TABLE half(x)"}
        assert (await db.migrate(ms))["applied"] == [2, 3]


async def test_a_failing_function_up_is_chained_and_rolled_back() -> None:
    class Boom(Exception):
        pass

    async def up(tx: Any) -> None:
        await tx.execute("CREATE TABLE partial(x)")
        raise Boom("no")

    async with memory_db() as db:
        await db.migrate([NOTES])
        with pytest.raises(MigrationFailedError) as caught:
            await db.migrate([NOTES, {"version": 2, "name": "explodes", "up": up}])
        assert isinstance(caught.value.__cause__, Boom) and "explodes" in str(caught.value)
        assert await tables(db) == ["notes"]
        assert [s["state"] for s in await db.migration_status()] == ["applied"]


async def test_a_transaction_failure_inside_an_up_propagates_as_it_is() -> None:
    async def up(tx: Any) -> None:
        await tx.execute("CREATE TABLE t(x)")
        raise datasync.BusyTimeoutError("another writer held the database")

    async with memory_db() as db:
        with pytest.raises(datasync.BusyTimeoutError):  # retry: nothing applied
            await db.migrate([{"version": 1, "name": "busy", "up": up}])
        assert await tables(db) == [] and await states(db, [NOTES]) == {1: "pending"}


async def test_a_failing_down_leaves_the_migration_applied() -> None:
    ms = [NOTES, {**TAGS, "down": "DROP TABLE no_such_table"}]
    async with memory_db() as db:
        await db.migrate(ms)
        with pytest.raises(MigrationFailedError) as caught:
            await db.rollback(ms)
        assert caught.value.version == 2 and "down" in str(caught.value)
        assert await states(db, ms) == {1: "applied", 2: "applied"}
        assert await tables(db) == ["notes", "tags"]


async def test_rolling_back_through_a_migration_without_down_reverts_nothing() -> None:
    ms = [NOTES, {**TAGS, "down": None}, AT]
    async with memory_db() as db:
        await db.migrate(ms)
        with pytest.raises(IrreversibleMigrationError) as caught:
            await db.migrate(ms, target=0)
        assert caught.value.version == 2
        assert await states(db, ms) == {1: "applied", 2: "applied", 3: "applied"}
        assert "at" in [c["name"] for c in await db.query("PRAGMA table_info(notes)")]
        assert (await db.rollback(ms))["reverted"] == [3]  # above it, fine


async def test_a_changed_migration_is_refused_before_anything_runs() -> None:
    async with memory_db() as db:
        await db.migrate([NOTES])
        changed = [{**NOTES, "up": NOTES["up"].replace("body TEXT", "body BLOB")}, TAGS]
        with pytest.raises(MigrationChecksumError) as caught:
            await db.migrate(changed)
        assert caught.value.version == 1
        assert await tables(db) == ["notes"]  # 2 was not applied
        assert await states(db, changed) == {1: "changed", 2: "pending"}
        # line endings and a trailing newline do not change a checksum
        crlf = {**NOTES, "up": NOTES["up"].replace("\n", "\r\n") + "\r\n"}
        assert (await db.migrate([crlf, TAGS]))["applied"] == [2]


@pytest.mark.parametrize("versions", [[1, 3], [1, 2, 2], [0, 1], [1, "2"], [True]])
async def test_a_gap_a_duplicate_or_a_bad_version_is_refused_before_anything_runs(
        versions: list[Any]) -> None:
    ms = [{"version": v, "name": f"m{i}", "up": f"CREATE TABLE t{i}(x)"}
          for i, v in enumerate(versions)]
    async with memory_db() as db:
        with pytest.raises(MigrationOrderError):
            await db.migrate(ms)
        assert await db.query("SELECT name FROM sqlite_master") == []


async def test_a_database_migrated_by_newer_code_is_schema_too_new() -> None:
    async with memory_db() as db:
        await db.migrate(ALL)
        with pytest.raises(SchemaTooNewError) as caught:
            await db.migrate(ALL[:2])
        assert caught.value.version == 3 and "newer" in str(caught.value)
        with pytest.raises(SchemaTooNewError):
            await db.rollback(ALL[:1])
        assert await states(db, ALL[:2]) == {1: "applied", 2: "applied", 3: "unknown"}
        assert await states(db, ()) == {1: "applied", 2: "applied", 3: "applied"}


async def test_malformed_migrations_are_named_errors() -> None:
    async with memory_db() as db:
        for bad in ({"version": 1, "name": "tx", "up": "BEGIN; CREATE TABLE a(x); COMMIT"},
                    {"version": 1, "name": "", "up": "CREATE TABLE a(x)"},
                    {"version": 1, "name": "n", "up": 42}):
            with pytest.raises(MigrationError) as caught:
                await db.migrate([bad])
            assert caught.value.version == 1
        with pytest.raises(InvalidOptionError):
            await db.migrate(ALL, target=4)
        assert await db.query("SELECT name FROM sqlite_master") == []
        # a trigger's BEGIN ... END is not transaction control
        trigger = {"version": 1, "name": "trigger", "up": NOTES["up"] + (
            "CREATE TRIGGER upper AFTER INSERT ON notes BEGIN "
            "UPDATE notes SET body = upper(body) WHERE id = new.id; END;")}
        await db.migrate([trigger])
        await db.execute("INSERT INTO notes(body) VALUES ('x')")
        assert (await db.query("SELECT body FROM notes WHERE id = 2")) == [{"body": "X"}]


async def test_status_without_a_table_lists_every_migration_pending() -> None:
    async with memory_db() as db:
        status = await db.migration_status(ALL)
        assert [(s["version"], s["state"], s["applied_at"]) for s in status] == [
            (1, "pending", None), (2, "pending", None), (3, "pending", None)]
        assert await db.migration_status() == []
        assert await db.query("SELECT name FROM sqlite_master") == []  # status only reads


# -- many tabs ---------------------------------------------------------------------------
def counted(calls: list[str]) -> list[dict[str, Any]]:
    """Migrations whose ups leave a trace each time they run: a row in ``runs``
    (no unique constraint) and, for the function, an entry in ``calls``."""
    async def seed(tx: Any) -> None:
        calls.append("seed")
        await tx.execute("INSERT INTO runs VALUES (3)")
        await tx.execute("INSERT INTO items(body) VALUES ('seeded')")

    return [{"version": 1, "name": "runs", "up": "CREATE TABLE runs(v INTEGER); "
                                                 "INSERT INTO runs VALUES (1)"},
            {"version": 2, "name": "items", "up": "CREATE TABLE items(id INTEGER PRIMARY "
                                                  "KEY, body TEXT); INSERT INTO runs VALUES (2)"},
            {"version": 3, "name": "seed", "up": seed, "checksum": "seed-1"}]


async def assert_each_ran_once(tabs: list[Any], calls: list[str],
                               outs: list[dict[str, Any]]) -> None:
    assert calls == ["seed"]
    assert sorted(v for out in outs for v in out["applied"]) == [1, 2, 3]
    assert all(out["to"] == 3 for out in outs)
    for tab in tabs:  # right away: each call returned once its copy held the schema
        assert await tab.query("SELECT v, count(*) AS n FROM runs GROUP BY v") == [
            {"v": 1, "n": 1}, {"v": 2, "n": 1}, {"v": 3, "n": 1}]
        assert await tab.query("SELECT body FROM items") == [{"body": "seeded"}]
        assert [s["state"] for s in await tab.migration_status(counted([]))] == ["applied"] * 3


@needs_tabs
async def test_a_leader_and_a_follower_migrating_at_once_run_each_migration_once() -> None:
    b = Browser()
    try:
        leader, follower = await b.leader_and_follower()
        calls: list[str] = []
        ms = counted(calls)
        outs = await asyncio.gather(leader.migrate(ms), follower.migrate(ms))
        await assert_each_ran_once([leader, follower], calls, list(outs))
    finally:
        await b.close()


@needs_tabs
async def test_two_followers_migrating_at_once_run_each_migration_once_at_the_leader() -> None:
    b = Browser()
    try:
        leader = await b.open("a")
        await leader.wait_for_leadership()
        f1, f2 = await b.open("f1"), await b.open("f2")
        calls: list[str] = []
        ms = counted(calls)
        outs = await asyncio.gather(f1.migrate(ms), f2.migrate(ms))
        await assert_each_ran_once([f1, f2, leader], calls, list(outs))
        # a tab running older code meets the newer schema: a named error, no change
        with pytest.raises(SchemaTooNewError):
            await f2.migrate(ms[:2])
        assert (await f1.rollback(ms[:2] + [{**ms[2], "down": "DELETE FROM items"}]))[
            "reverted"] == [3]
        assert await leader.query("SELECT count(*) AS n FROM items") == [{"n": 0}]
    finally:
        await b.close()


@pytest.mark.parametrize("given", ["CREATE TABLE a(x)", None, {"version": 1, "name": "a"}, 7])
async def test_something_other_than_a_list_of_migrations_is_a_named_error(given: Any) -> None:
    async with memory_db() as db:
        with pytest.raises(datasync.MigrationError, match="give a list of"):
            await db.migrate(given)
        assert await db.migration_status() == []  # nothing ran, no table made
