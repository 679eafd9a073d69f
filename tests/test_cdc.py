"""Change data capture: the change log, its stream, consumers and retention."""
from __future__ import annotations

import asyncio
import itertools
import threading
import sqlite3
import time
from typing import Any

import pytest

import datasync
from datasync.cdc import Change

_names = itertools.count()


async def _open(**options: Any) -> datasync.Database:
    options.setdefault("backend", "memory")
    return await datasync.open(f"cdc-{next(_names)}", cdc=True, **options)


async def _all(db: Any, **kwargs: Any) -> list[Change]:
    return [c async for c in db.changes(follow=False, **kwargs)]


def _rows(changes: list[Change]) -> list[tuple[str, str, Any, Any, Any]]:
    """(table, op, key, old, new) of the row changes (schema changes left out)."""
    return [(c.table, c.op, c.key, c.old, c.new) for c in changes if c.op != "schema"]


async def test_insert_update_delete_are_captured_with_keys_and_old_and_new_values() -> None:
    db = await _open()
    await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB)")
    await db.execute("INSERT INTO t(v, b) VALUES ('a', x'00ff')")
    await db.execute("UPDATE t SET v = 'b' WHERE id = 1")
    await db.execute("DELETE FROM t WHERE id = 1")
    await db.execute("CREATE TABLE w(a TEXT, b INT, c, PRIMARY KEY(a, b)) WITHOUT ROWID")
    await db.execute("INSERT INTO w VALUES ('x', 2, NULL)")
    changes = await _all(db)
    assert _rows(changes) == [
        ("t", "insert", 1, None, {"id": 1, "v": "a", "b": b"\x00\xff"}),
        ("t", "update", 1, {"id": 1, "v": "a", "b": b"\x00\xff"},
         {"id": 1, "v": "b", "b": b"\x00\xff"}),
        ("t", "delete", 1, {"id": 1, "v": "b", "b": b"\x00\xff"}, None),
        ("w", "insert", {"a": "x", "b": 2}, None, {"a": "x", "b": 2, "c": None}),
    ]
    seqs = [c.seq for c in changes]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    now = time.time()
    assert all(now - 60 < c.at <= now + 1 for c in changes)
    version = await db.sync()
    assert all(c.version is not None and c.version <= version for c in changes)
    await db.close()


async def test_a_rolled_back_transaction_and_a_failed_statement_capture_nothing() -> None:
    db = await _open()
    await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT UNIQUE)")
    await db.execute("INSERT INTO t(v) VALUES ('kept')")
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await db.execute("INSERT INTO t(v) VALUES ('rolled back')")
            await db.execute("UPDATE t SET v = 'changed' WHERE v = 'kept'")
            raise RuntimeError("abort")
    with pytest.raises(sqlite3.IntegrityError):  # the 2nd row fails: none is kept
        await db.execute("INSERT INTO t(v) VALUES ('new'), ('kept')")
    with pytest.raises(sqlite3.OperationalError):  # a failed DDL logs no schema change
        await db.execute("CREATE TABLE t(x)")
    changes = await _all(db)
    assert _rows(changes) == [("t", "insert", 1, None, {"id": 1, "v": "kept"})]
    assert [c.op for c in changes] == ["schema", "insert"]
    await db.close()


async def test_tables_created_later_and_altered_tables_are_captured_with_schema_changes() -> None:
    db = await _open()
    await db.execute("CREATE TABLE later(id INTEGER PRIMARY KEY, a)")
    await db.execute("INSERT INTO later(a) VALUES (1)")
    await db.execute("ALTER TABLE later ADD COLUMN b TEXT DEFAULT 'd'")
    await db.execute("UPDATE later SET b = 'new' WHERE id = 1")
    async with db.transaction():  # DDL inside a transaction: captured there too
        await db.execute("CREATE TABLE inner_t(x)")
        await db.execute("INSERT INTO inner_t VALUES (42)")
    await db.execute("DROP TABLE inner_t")
    changes = await _all(db)
    assert [(c.table, c.op) for c in changes] == [
        ("later", "schema"), ("later", "insert"), ("later", "schema"), ("later", "update"),
        ("inner_t", "schema"), ("inner_t", "insert"), ("inner_t", "schema")]
    created, altered = changes[0], changes[2]
    assert created.old is None and created.new is not None
    assert created.new["sql"] == "CREATE TABLE later(id INTEGER PRIMARY KEY, a)"
    assert altered.old == created.new and altered.new is not None
    assert "b TEXT DEFAULT 'd'" in altered.new["sql"]
    assert changes[3].old == {"id": 1, "a": 1, "b": "d"}
    assert changes[3].new == {"id": 1, "a": 1, "b": "new"}
    dropped = changes[-1]
    assert dropped.key == "inner_t" and dropped.new is None and dropped.old is not None
    triggers = await db.query(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name")
    assert [r["name"] for r in triggers] == [
        "_datasync_cdc_delete_later", "_datasync_cdc_insert_later",
        "_datasync_cdc_update_later"]
    await db.close()


async def test_tables_that_existed_before_capture_was_enabled_are_captured() -> None:
    name = f"cdc-{next(_names)}"
    db = await datasync.open(name, backend="memory")
    await db.execute("CREATE TABLE old_t(x)")
    await db.execute("INSERT INTO old_t VALUES ('before')")
    await db.close()
    db = await datasync.open(name, backend="memory", cdc=True)
    await db.execute("INSERT INTO old_t VALUES ('after')")
    assert _rows(await _all(db)) == [("old_t", "insert", 2, None, {"x": "after"})]
    await db.close()


async def test_changes_since_resumes_exactly_after_a_sequence_number_across_reopen(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "cdc.dsdb")
    db = await datasync.open(path, cdc=True)
    await db.execute("CREATE TABLE t(x)")
    for i in range(5):
        await db.execute("INSERT INTO t VALUES (?)", (i,))
    seen = await _all(db)
    middle = seen[3].seq
    await db.close()
    db = await datasync.open(path, cdc=True)
    await db.execute("INSERT INTO t VALUES (5)")
    after = await _all(db, since=middle)
    assert [c.new for c in after] == [{"x": i} for i in (3, 4, 5)]
    assert after[0].seq > middle and [c.seq for c in after][:2] == [c.seq for c in seen[4:]]
    await db.close()


async def test_changes_filtered_by_table_yield_only_those_tables() -> None:
    db = await _open()
    await db.execute("CREATE TABLE a(x)")
    await db.execute("CREATE TABLE b(x)")
    async with db.transaction():
        for i in range(3):
            await db.execute("INSERT INTO a VALUES (?)", (i,))
            await db.execute("INSERT INTO b VALUES (?)", (i,))
    only_b = await _all(db, tables=["b"])
    assert [(c.table, c.op, c.new) for c in only_b] == [
        ("b", "schema", only_b[0].new), ("b", "insert", {"x": 0}),
        ("b", "insert", {"x": 1}), ("b", "insert", {"x": 2})]
    assert {c.table for c in await _all(db, tables=["a", "b"])} == {"a", "b"}
    assert await _all(db, tables=[]) == []
    small = [c async for c in db.changes(tables=["a"], follow=False, batch=2)]
    assert [c.new for c in small if c.op == "insert"] == [{"x": 0}, {"x": 1}, {"x": 2}]
    await db.close()


async def test_a_waiting_stream_receives_a_change_committed_after_it_started_waiting() -> None:
    db = await _open()
    await db.execute("CREATE TABLE t(x)")
    start = (await _all(db))[-1].seq
    got: list[Change] = []

    async def consume() -> None:
        async for change in db.changes(since=start):
            got.append(change)
            return

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.05)
    assert not task.done() and got == []  # nothing yet: it waits
    await db.execute("INSERT INTO t VALUES ('live')")
    await asyncio.wait_for(task, timeout=5)
    assert [(c.op, c.new) for c in got] == [("insert", {"x": "live"})]
    await db.close()


async def test_retention_prunes_old_changes_but_never_unacknowledged_ones() -> None:
    db = await _open(cdc_retention=0.0)
    await db.execute("CREATE TABLE t(x)")
    before = [c async for c in db.changes(consumer="slow", follow=False)]  # registers
    assert len(before) == 1
    for i in range(4):
        await db.execute("INSERT INTO t VALUES (?)", (i,))
    seqs = [c.seq for c in await _all(db)]
    await db.ack("fast", seqs[-1])
    assert [c.seq for c in await _all(db)] == seqs  # "slow" acknowledged nothing
    await db.ack("slow", seqs[2])
    assert [c.seq for c in await _all(db)] == seqs[3:]
    await db.ack("slow", seqs[1])  # acknowledgements never move back
    resumed = [c async for c in db.changes(consumer="slow", follow=False)]
    assert [c.seq for c in resumed] == seqs[3:]
    await db.ack("slow", seqs[-1])
    assert await _all(db) == []
    await db.close()


async def test_retention_keeps_changes_younger_than_it() -> None:
    db = await _open(cdc_retention=3600)
    await db.execute("CREATE TABLE t(x)")
    await db.execute("INSERT INTO t VALUES (1)")
    seqs = [c.seq for c in await _all(db)]
    await db.ack("c", seqs[-1])
    assert await db.prune_changes() == 0
    assert [c.seq for c in await _all(db)] == seqs
    await db.execute("UPDATE _datasync_changes SET at = at - 7200 WHERE seq = ?", (seqs[0],))
    assert await db.prune_changes() == 1
    assert [c.seq for c in await _all(db)] == seqs[1:]
    await db.close()


async def test_an_exported_copy_has_no_capture_triggers_and_plain_sqlite_can_write_it() -> None:
    db = await _open()
    await db.execute("CREATE TABLE t(x)")
    await db.execute("INSERT INTO t VALUES (1)")
    conn = sqlite3.connect(":memory:")
    conn.deserialize(await db.export())
    conn.execute("INSERT INTO t VALUES (2)")
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
                        ).fetchone() == (0,)
    conn.close()
    # ...while the database itself still captures
    await db.execute("INSERT INTO t VALUES (3)")
    assert [c.new for c in await _all(db) if c.op == "insert"] == [{"x": 1}, {"x": 3}]
    await db.close()


async def test_without_cdc_nothing_is_created() -> None:
    db = await datasync.open(f"cdc-{next(_names)}", backend="memory")
    await db.execute("CREATE TABLE t(x)")
    await db.execute("INSERT INTO t VALUES (1)")
    names = [r["name"] for r in await db.query("SELECT name FROM sqlite_master")]
    assert names == ["t"]
    assert await _all(db) == []
    await db.close()


async def test_a_follower_streams_the_leaders_changes_and_its_own_forwarded_ones() -> None:
    from tabs.harness import Browser

    b = Browser()
    a = await b.open("a", cdc=True)
    await a.wait_for_leadership()
    f = await b.open("f", cdc=True)
    await a.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
    got: list[Change] = []

    async def consume() -> None:
        async for change in f.changes(tables=["notes"]):
            got.append(change)
            if len(got) == 3:
                return

    task = asyncio.ensure_future(consume())
    await a.execute("INSERT INTO notes(body) VALUES ('by the leader')")
    await f.execute("UPDATE notes SET body = 'by the follower' WHERE id = 1")
    await asyncio.wait_for(task, timeout=10)
    assert [(c.op, c.key, c.old, c.new) for c in got] == [
        ("schema", "notes", None, got[0].new),
        ("insert", 1, None, {"id": 1, "body": "by the leader"}),
        ("update", 1, {"id": 1, "body": "by the leader"},
         {"id": 1, "body": "by the follower"})]
    assert all(c.version is not None and c.version <= f.db.version for c in got)
    leader_view = [c async for c in a.changes(tables=["notes"], follow=False)]
    assert leader_view == got  # one log, the same in every tab
    await f.ack("indexer", got[1].seq)  # a write: the leader applies it
    resumed = [c async for c in f.changes(consumer="indexer", follow=False)]
    assert [c.seq for c in resumed] == [got[2].seq]
    assert await a.query("SELECT acked FROM _datasync_consumers") == [
        {"acked": got[1].seq}]
    await b.close()


async def test_closing_the_database_ends_a_waiting_stream() -> None:
    db = await _open()
    await db.execute("CREATE TABLE t(x)")
    got: list[Change] = []

    async def consume() -> None:
        async for change in db.changes():
            got.append(change)

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.05)
    assert not task.done() and len(got) == 1  # the schema change, then waiting
    await db.close()
    await asyncio.wait_for(task, timeout=5)  # ended, without an error
    assert len(got) == 1


async def test_wide_tables_odd_names_and_infinite_reals_are_captured_without_failing_the_write() -> None:
    db = await _open()
    await db.execute("CREATE TABLE wide(" + ", ".join(f'"c {i}"' for i in range(150)) + ")")
    await db.execute('INSERT INTO wide("c 0", "c 149") VALUES (1, 9e999)')
    await db.execute('CREATE TABLE "we""ird"(id INTEGER PRIMARY KEY, "a""b")')
    await db.execute('INSERT INTO "we""ird" VALUES (7, -9e999)')
    rows = _rows(await _all(db))
    assert len(rows) == 2
    (_, _, _, _, wide), (table, op, key, _, weird) = rows
    assert len(wide) == 150 and wide["c 0"] == 1 and wide["c 149"] == float("inf")
    assert wide["c 1"] is None
    assert (table, op, key, weird) == ('we"ird', "insert", 7, {"id": 7, 'a"b': float("-inf")})
    await db.close()


async def test_a_new_leader_keeps_capturing_after_the_old_one_closes() -> None:
    from tabs.harness import Browser

    b = Browser()
    a = await b.open("a", cdc=True)
    await a.wait_for_leadership()
    f = await b.open("f", cdc=True)
    await a.execute("CREATE TABLE t(x)")
    await a.execute("INSERT INTO t VALUES ('old leader')")
    await b.tabs.pop("a").close()
    await asyncio.wait_for(f.wait_for_leadership(), timeout=10)
    await f.execute("CREATE TABLE later(y)")  # the new leader maintains the triggers
    await f.execute("INSERT INTO later VALUES ('new leader')")
    await f.execute("INSERT INTO t VALUES ('new leader')")
    changes = [c async for c in f.changes(follow=False)]
    assert [(c.table, c.op, c.new if c.op != "schema" else None) for c in changes] == [
        ("t", "schema", None), ("t", "insert", {"x": "old leader"}),
        ("later", "schema", None), ("later", "insert", {"y": "new leader"}),
        ("t", "insert", {"x": "new leader"})]
    seqs = [c.seq for c in changes]
    assert seqs == sorted(set(seqs))
    await b.close()


async def test_each_change_carries_the_version_that_made_it_durable() -> None:
    db = await _open(durability="strict")  # every write is flushed before it returns
    await db.execute("CREATE TABLE t(x)")
    versions = []
    for i in range(3):
        await db.execute("INSERT INTO t VALUES (?)", (i,))
        versions.append(db.version)
    assert len(set(versions)) == 3
    inserts = [c for c in await _all(db) if c.op == "insert"]
    assert [c.version for c in inserts] == versions
    await db.close()


async def test_tables_of_an_imported_image_are_captured() -> None:
    source = sqlite3.connect(":memory:")
    source.execute("CREATE TABLE imported(x)")
    source.execute("INSERT INTO imported VALUES ('in the image')")
    source.commit()
    image = source.serialize()
    source.close()
    db = await _open()
    await db.import_(image)
    await db.execute("INSERT INTO imported VALUES ('after the import')")
    assert _rows(await _all(db)) == [
        ("*", "reset", None, None, {"reason": "import"}),
        ("imported", "insert", 2, None, {"x": "after the import"})]
    await db.close()


async def test_a_backup_of_a_captured_database_is_writable_without_cdc(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(str(tmp_path / "src.dsdb"), cdc=True)
    await db.execute("CREATE TABLE t(x)")
    await db.execute("INSERT INTO t VALUES (1)")
    await db.backup(str(tmp_path / "plain.dsdb"))
    await db.backup(str(tmp_path / "captured.dsdb"), cdc=True)
    await db.close()
    plain = await datasync.open(str(tmp_path / "plain.dsdb"))
    await plain.execute("INSERT INTO t VALUES (2)")  # no trigger calls a missing function
    assert (await plain.execute("SELECT count(*) FROM t")).rows == [(2,)]
    await plain.close()
    captured = await datasync.open(str(tmp_path / "captured.dsdb"), cdc=True)
    await captured.execute("INSERT INTO t VALUES (3)")
    ops = [c.op async for c in captured.changes(follow=False)]
    assert ops[-1] == "insert" and ops.count("insert") >= 2
    await captured.close()


async def test_restore_and_import_keep_the_log_and_record_a_reset_consumers_can_see() -> None:
    name = f"cdc-reset-{next(_reset_names)}"
    db = await datasync.open(name, backend="memory", cdc=True, retain_versions=5)
    await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
    await db.execute("INSERT INTO t(v) VALUES ('a')")
    early = await db.sync()
    await db.execute("INSERT INTO t(v) VALUES ('b')")
    await db.sync()
    seen = [c async for c in db.changes(consumer="indexer", follow=False)]
    await db.ack("indexer", seen[-1].seq)
    await db.restore(early)
    await db.execute("INSERT INTO t(v) VALUES ('c')")
    after = [c async for c in db.changes(consumer="indexer", tables=["t"], follow=False)]
    assert [c.op for c in after] == ["reset", "insert"]
    assert after[0].table == "*" and after[0].new == {"reason": "restore", "version": early}
    assert after[0].seq > seen[-1].seq  # numbers never go back
    await db.import_(await db.export())
    last = [c async for c in db.changes(since=after[-1].seq, follow=False)]
    assert [(c.op, c.new) for c in last] == [("reset", {"reason": "import"})]
    await db.close()
    datasync.backends.memory._STORES.pop(name, None)


_reset_names = itertools.count()


async def test_schema_changes_through_db_connect_are_captured_like_the_databases_own() -> None:
    db = await _open()
    conn = db.connect(isolation_level=None)  # autocommit
    conn.execute("CREATE TABLE side(id INTEGER PRIMARY KEY, a)")
    conn.execute("INSERT INTO side(a) VALUES ('one')")
    cur = conn.cursor()  # the path pandas and SQLAlchemy take
    cur.execute("ALTER TABLE side ADD COLUMN b")
    cur.execute("UPDATE side SET b = 2")
    conn.executescript("""
        CREATE TABLE scripted(x TEXT);
        INSERT INTO scripted VALUES ('semi;colon');
        CREATE TRIGGER mirror AFTER INSERT ON scripted BEGIN
            INSERT INTO side(a) VALUES (new.x || ';');
        END;
        INSERT INTO scripted VALUES ('two');
    """)
    conn.execute("BEGIN")
    conn.execute("CREATE TABLE undone(x)")
    conn.execute("INSERT INTO undone VALUES (1)")
    conn.execute("ROLLBACK")  # the table, its triggers and its log entries all go
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("CREATE TABLE side(x)")  # fails: logs nothing
    conn.close()
    changes = await _all(db)
    assert [(c.table, c.op) for c in changes[:7]] == [
        ("side", "schema"), ("side", "insert"), ("side", "schema"), ("side", "update"),
        ("scripted", "schema"), ("scripted", "insert"), ("scripted", "schema")]
    assert changes[3].new == {"id": 1, "a": "one", "b": 2}
    assert changes[6].key == "mirror"  # the user's trigger is a schema object too
    # the last insert and the one its trigger made, in SQLite's trigger order
    assert sorted((c.table, c.op, str(c.new)) for c in changes[7:]) == [
        ("scripted", "insert", str({"x": "two"})),
        ("side", "insert", str({"id": 2, "a": "two;", "b": None}))]
    assert await db.query("SELECT count(*) AS n FROM sqlite_master WHERE name = 'undone'") == [
        {"n": 0}]
    await db.close()


def test_split_script_splits_only_where_sqlite_says_a_statement_ends() -> None:
    from datasync.cdc.connection import split_script

    script = ("CREATE TABLE a(x); INSERT INTO a VALUES ('x;y'); -- a comment; here\n"
              "CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1; SELECT 2; END;\n"
              "SELECT 3")
    assert [s.strip() for s in split_script(script)] == [
        "CREATE TABLE a(x);", "INSERT INTO a VALUES ('x;y');",
        "-- a comment; here\nCREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1; SELECT 2; END;",
        "SELECT 3"]
    assert split_script("  ;; ") == []


async def test_capture_through_connect_ignores_the_users_row_and_text_factories() -> None:
    db = await _open()
    conn = db.connect(isolation_level=None)  # autocommit
    conn.row_factory = lambda cur, row: {d[0]: v for d, v in zip(cur.description, row)}
    conn.text_factory = bytes
    conn.execute("CREATE TABLE d(x TEXT)")
    conn.execute("INSERT INTO d VALUES ('v')")
    assert conn.execute("SELECT x FROM d").fetchall() == [{"x": b"v"}]  # theirs, still
    conn.close()
    assert [(c.table, c.op) for c in await _all(db)] == [("d", "schema"), ("d", "insert")]
    await db.close()


async def test_a_schema_change_interrupted_mid_way_reports_the_interrupt_and_leaves_nothing() -> None:
    db = await _open()
    await db.execute("CREATE TABLE src(x)")
    await db.executemany("INSERT INTO src VALUES (?)", [(i,) for i in range(2000)])
    conn = db.connect(isolation_level=None)  # autocommit
    calls = itertools.count()
    # interrupted mid-write inside the caller's transaction: SQLite rolls ALL of it
    # back, our savepoint included
    conn.set_progress_handler(lambda: next(calls) > 5, 100)
    conn.execute("BEGIN")
    with pytest.raises(sqlite3.OperationalError, match="interrupted"):
        conn.execute("CREATE TABLE copy AS SELECT a.x FROM src a, src b")
    conn.set_progress_handler(None, 0)
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'copy'").fetchone() == (0,)
    conn.close()
    assert [c.table for c in await _all(db) if c.op == "schema"] == ["src"]
    await db.close()


async def test_a_captured_schema_change_waits_for_another_writer_instead_of_failing() -> None:
    db = await _open()
    writer = db.connect(isolation_level=None, check_same_thread=False)
    ddl = db.connect(isolation_level=None, timeout=10, check_same_thread=False)
    writer.execute("CREATE TABLE w(x)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO w VALUES (1)")
    ended = threading.Timer(0.2, lambda: writer.execute("COMMIT"))
    ended.start()
    ddl.execute("CREATE TABLE later(x)")  # waits its turn (busy timeout), then runs
    ended.join()
    assert [c.key for c in await _all(db) if c.op == "schema"][-1] == "later"
    writer.close()
    ddl.close()
    await db.close()
