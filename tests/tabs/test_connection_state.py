"""Multi-tab: connection-scoped state stays each tab's, or is refused by name
(transactions, savepoints, TEMP objects, last_insert_rowid(), changes())."""
from __future__ import annotations

import sqlite3
from typing import Any

import pytest

import datasync
from tabs.harness import Browser


async def three_tabs() -> tuple[Browser, datasync.tabs.SharedDatabase, ...]:  # type: ignore[name-defined]
    b = Browser(max_delay=0.001)
    a, f = await b.leader_and_follower()
    g = await b.open("g")
    await a.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
    return b, a, f, g


@pytest.mark.parametrize("who", ["leader", "follower"])
async def test_begin_insert_rollback_is_refused_and_commits_nothing(who: str) -> None:
    b, a, f, g = await three_tabs()
    tab = a if who == "leader" else f
    for statement in ("BEGIN", "BEGIN IMMEDIATE", "SAVEPOINT s", "COMMIT", "ROLLBACK",
                      "END", "RELEASE s"):
        with pytest.raises(datasync.TransactionStatementError, match="batch"):
            await tab.execute(statement)
    with pytest.raises(datasync.TransactionStatementError):
        await tab.batch([("BEGIN", []), ("INSERT INTO t(v) VALUES (1)", []),
                         ("ROLLBACK", [])])
    with pytest.raises(datasync.TransactionStatementError):
        await tab.queue_write("SAVEPOINT x")
    # Nothing was applied, and every tab still writes (no transaction left open).
    for t in (a, f, g):
        await t.execute("INSERT INTO t(v) VALUES (?)", (t.tab_id,))
    assert await f.query("SELECT v FROM t ORDER BY id") == [
        {"v": "a"}, {"v": "f"}, {"v": "g"}]
    await b.close()


async def test_a_batch_is_the_atomic_unit_instead_and_rolls_back_on_failure() -> None:
    b, a, f, g = await three_tabs()
    await f.execute("CREATE TABLE u(x UNIQUE)")
    with pytest.raises(sqlite3.IntegrityError):
        await f.batch([("INSERT INTO t(v) VALUES ('gone')", []),
                       ("INSERT INTO u VALUES (1)", []), ("INSERT INTO u VALUES (1)", [])])
    assert await g.query("SELECT count(*) AS n FROM t") == [{"n": 0}]
    await b.close()


async def test_each_tab_has_its_own_temp_tables_views_and_triggers() -> None:
    b, a, f, g = await three_tabs()
    for tab in (a, f, g):  # the second would say "already exists" on a shared one
        await tab.execute("CREATE TEMP TABLE scratch(v)")
        await tab.execute("INSERT INTO scratch VALUES (?)", (tab.tab_id,))
        await tab.execute("CREATE TEMP VIEW mine AS SELECT v FROM scratch")
        await tab.execute("CREATE TEMP TABLE log(v)")
        await tab.execute("CREATE TEMP TRIGGER note AFTER INSERT ON scratch "
                          "BEGIN INSERT INTO log VALUES (new.v); END")
        await tab.execute("INSERT INTO scratch VALUES (?)", (tab.tab_id + "2",))
    for tab in (a, f, g):
        assert await tab.query("SELECT v FROM mine") == [
            {"v": tab.tab_id}, {"v": tab.tab_id + "2"}]
        assert await tab.query("SELECT v FROM log") == [{"v": tab.tab_id + "2"}]
    await f.execute("DROP TABLE scratch")
    assert await g.query("SELECT count(*) AS n FROM scratch") == [{"n": 2}]
    # Shared data is untouched by any of it.
    assert await g.query("SELECT count(*) AS n FROM t") == [{"n": 0}]
    await b.close()


async def test_writes_that_need_this_tabs_temp_objects_are_refused_by_name() -> None:
    b, a, f, g = await three_tabs()
    await f.execute("CREATE TEMP TABLE scratch(v)")
    await f.execute("INSERT INTO scratch VALUES ('x')")
    with pytest.raises(datasync.LocalObjectError, match="parameters"):
        await f.execute("INSERT INTO t(v) SELECT v FROM scratch")
    with pytest.raises(datasync.LocalObjectError, match="never fire"):
        await f.execute("CREATE TEMP TRIGGER spy AFTER INSERT ON t "
                        "BEGIN INSERT INTO scratch VALUES (new.v); END")
    with pytest.raises(datasync.LocalObjectError):
        await f.batch([("INSERT INTO scratch VALUES (1)", [])])  # batches run elsewhere
    rows = await f.query("SELECT v FROM scratch")  # the way that works
    await f.batch([("INSERT INTO t(v) VALUES (?)", [r["v"]]) for r in rows])
    assert await g.query("SELECT v FROM t") == [{"v": "x"}]
    await b.close()


async def test_a_leaders_temp_table_never_captures_another_tabs_write() -> None:
    b, a, f, g = await three_tabs()
    await a.execute("CREATE TEMP TABLE t(v)")  # shadows main.t in the leader only
    with pytest.raises(datasync.LocalObjectError, match="main.<name>"):
        await f.execute("INSERT INTO t(v) VALUES ('from f')")  # never into a's temp.t
    await f.execute("INSERT INTO main.t(v) VALUES ('from f')")
    assert await g.query("SELECT v FROM main.t") == [{"v": "from f"}]
    assert await a.query("SELECT count(*) AS n FROM temp.t") == [{"n": 0}]
    await b.close()


async def test_last_insert_rowid_and_changes_answer_for_each_tabs_own_statements() -> None:
    b, a, f, g = await three_tabs()
    await f.execute("INSERT INTO t(id, v) VALUES (10, 'f')")
    await g.execute("INSERT INTO t(id, v) VALUES (20, 'g'), (21, 'g')")
    await a.execute("INSERT INTO t(id, v) VALUES (30, 'a')")
    assert await f.query("SELECT last_insert_rowid() AS r, changes() AS c") == [
        {"r": 10, "c": 1}]
    assert await g.query("SELECT last_insert_rowid() AS r, changes() AS c") == [
        {"r": 21, "c": 2}]
    assert await a.query("SELECT last_insert_rowid() AS r, changes() AS c") == [
        {"r": 30, "c": 1}]
    await g.execute("UPDATE t SET v = 'x' WHERE id >= 20")  # 3 rows, rowid unchanged
    assert await g.query("SELECT last_insert_rowid() AS r, changes() AS c, "
                         "total_changes() AS n") == [{"r": 21, "c": 3, "n": 5}]
    # Inside a batch, last_insert_rowid() starts from the tab's own value.
    await f.execute("CREATE TABLE child(parent, v)")
    await f.batch([("INSERT INTO child VALUES (last_insert_rowid(), 'before')", []),
                   ("INSERT INTO t(v) VALUES ('parent')", []),
                   ("INSERT INTO child VALUES (last_insert_rowid(), 'after')", [])])
    parent = (await f.query("SELECT id FROM t WHERE v = 'parent'"))[0]["id"]
    assert await a.query("SELECT parent, v FROM child ORDER BY v") == [
        {"parent": parent, "v": "after"}, {"parent": 10, "v": "before"}]
    # A temp insert is this tab's own statement too.
    await g.execute("CREATE TEMP TABLE s(v)")
    await g.execute("INSERT INTO s VALUES (1)")
    assert await g.query("SELECT last_insert_rowid() AS r") == [{"r": 1}]
    await b.close()


async def test_pragmas_that_change_how_a_connection_writes_are_set_for_every_tab_at_open() -> None:
    b = Browser(max_delay=0.001)
    a = await b.open("a", pragmas={"foreign_keys": True})
    await a.wait_for_leadership()
    f = await b.open("f", pragmas={"foreign_keys": True})
    await a.execute("CREATE TABLE p(id INTEGER PRIMARY KEY)")
    await a.execute("CREATE TABLE c(p REFERENCES p(id))")
    for statement in ("PRAGMA foreign_keys = OFF", "PRAGMA recursive_triggers=1",
                      "PRAGMA query_only = OFF"):
        with pytest.raises(datasync.ConnectionPragmaError, match="pragmas="):
            await f.execute(statement)
    assert await f.query("PRAGMA foreign_keys") == [{"foreign_keys": 1}]  # reading is fine
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        await f.execute("INSERT INTO c VALUES (7)")  # enforced on the leader too
    await b.close()


async def test_a_database_attached_to_one_tab_is_read_there_and_never_written_elsewhere(tmp_path) -> None:  # type: ignore[no-untyped-def]
    b, a, f, g = await three_tabs()
    side = str(tmp_path / "side.sqlite")
    plain = sqlite3.connect(side)
    plain.execute("CREATE TABLE s(v)")
    plain.execute("INSERT INTO s VALUES ('side')")
    plain.commit()
    plain.close()
    await f.execute("ATTACH ? AS side", (side,))  # this tab's connection only
    assert await f.query("SELECT v FROM side.s") == [{"v": "side"}]
    with pytest.raises(datasync.LocalObjectError, match="side"):
        await f.execute("INSERT INTO side.s VALUES ('no')")
    with pytest.raises(datasync.LocalObjectError):
        await f.execute("INSERT INTO t(v) SELECT v FROM side.s")
    # The leader's attachment never captures another tab's unqualified write.
    await a.execute("ATTACH ? AS side", (side,))
    with pytest.raises(datasync.LocalObjectError, match="side"):
        await g.execute("INSERT INTO s VALUES ('from g')")  # resolved on a: refused
    await a.execute("DETACH side")
    await f.execute("DETACH side")
    await b.close()


async def test_alter_table_rename_and_drop_column_work_from_every_tab() -> None:
    b, a, f, g = await three_tabs()
    await f.execute("ALTER TABLE t ADD COLUMN w")
    await g.execute("ALTER TABLE t RENAME COLUMN w TO w2")
    await f.execute("ALTER TABLE t DROP COLUMN w2")
    await a.execute("ALTER TABLE t RENAME TO t2")
    await f.execute("INSERT INTO t2(v) VALUES ('renamed')")
    assert await g.query("SELECT * FROM t2") == [{"id": 1, "v": "renamed"}]
    await f.execute("CREATE TEMP TABLE s(x)")  # and a temp table's ALTER stays here
    await f.execute("ALTER TABLE s ADD COLUMN y")
    await f.execute("ALTER TABLE s RENAME TO s2")
    assert await f.query("SELECT * FROM s2") == []
    await b.close()


async def test_a_batch_cannot_smuggle_a_temp_trigger_past_the_checks() -> None:
    b, a, f, g = await three_tabs()
    with pytest.raises(datasync.LocalObjectError, match="never fire"):
        await f.batch([("CREATE TABLE n(v)", []), ("CREATE TABLE log(v)", []),
                       ("CREATE TEMP TRIGGER tr AFTER INSERT ON n "
                        "BEGIN INSERT INTO log VALUES (new.v); END", [])])
    await g.execute("CREATE TABLE n(v)")
    await g.execute("CREATE TABLE log(v)")
    await g.execute("INSERT INTO n VALUES (1)")
    assert await a.query("SELECT count(*) AS n FROM log") == [{"n": 0}]
    await b.close()


STATE_CASES = {
    "temp create after an insert": ["INSERT INTO t(id, v) VALUES (10, 'x')",
                                    "CREATE TEMP TABLE s(v)"],
    "temp update after an insert": ["CREATE TEMP TABLE s(v)", "INSERT INTO s VALUES (1)",
                                     "INSERT INTO t(id, v) VALUES (10, 'x')",
                                     "UPDATE s SET v = 2"],
    "temp insert of last_insert_rowid()": ["CREATE TEMP TABLE s(a)",
                                           "INSERT INTO t(id, v) VALUES (7, 'x')",
                                           "INSERT INTO s(a) SELECT last_insert_rowid()"],
    "cte write": ["WITH x(n) AS (VALUES (1), (2), (3), (4), (5)) "
                  "INSERT INTO t(v) SELECT n FROM x"],
    "temp trigger": ["CREATE TEMP TABLE s(a)", "CREATE TEMP TABLE log(a)",
                     "CREATE TEMP TRIGGER tr AFTER INSERT ON s "
                     "BEGIN INSERT INTO log VALUES (last_insert_rowid()); END",
                     "INSERT INTO t(id, v) VALUES (42, 'x')", "INSERT INTO s VALUES (1)"],
    "update after a failed insert": ["CREATE TABLE u(x UNIQUE)", "INSERT INTO u VALUES (1)",
                                     "INSERT INTO u VALUES (2), (1)",
                                     "UPDATE t SET v = 'y'"],
}


def _sqlite3_answers(steps: list[str], folder: Any) -> list[Any]:
    """What plain sqlite3 says: this connection's statements, after another
    connection inserted a row (as tab g does)."""
    conn = sqlite3.connect(folder / "ref.sqlite", isolation_level=None)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
    other = sqlite3.connect(folder / "ref.sqlite", isolation_level=None)
    other.execute("INSERT INTO t(id, v) VALUES (999, 'another tab')")
    other.close()
    base = conn.total_changes
    out = []
    for sql in steps:
        try:
            conn.execute(sql)
        except sqlite3.IntegrityError:
            pass
        r, c = conn.execute("SELECT last_insert_rowid(), changes()").fetchone()
        out.append((r, c, conn.total_changes - base))
    extra = [tuple(row) for row in conn.execute("SELECT * FROM temp.log")] \
        if "temp trigger" in " ".join(steps) or "log" in " ".join(steps) else []
    return [out, extra]


@pytest.mark.parametrize("case", sorted(STATE_CASES))
@pytest.mark.parametrize("who", ["leader", "follower"])
async def test_connection_functions_match_sqlite3_on_one_connection(tmp_path, case: str, who: str) -> None:  # type: ignore[no-untyped-def]
    steps = STATE_CASES[case]
    expected = _sqlite3_answers(steps, tmp_path)

    b, a, f, g = await three_tabs()
    tab = a if who == "leader" else f
    await g.execute("INSERT INTO t(id, v) VALUES (999, 'another tab')")  # not ours
    g_state = await g.query("SELECT total_changes() AS n")
    out = []
    base = (await tab.query("SELECT total_changes() AS n"))[0]["n"]
    for sql in steps:
        try:
            await tab.execute(sql)
        except sqlite3.IntegrityError:
            pass
        row = (await tab.query("SELECT last_insert_rowid() AS r, changes() AS c, "
                               "total_changes() AS n"))[0]
        out.append((row["r"], row["c"], row["n"] - base))
    extra = [tuple(r.values()) for r in await tab.query("SELECT * FROM temp.log")] \
        if expected[1] or "log" in " ".join(steps) else []
    assert g_state == [{"n": 1}]
    await b.close()
    assert [out, extra] == expected


async def test_pragmas_at_open_must_configure_a_connection_and_match_across_tabs() -> None:
    b = Browser(max_delay=0.001)
    with pytest.raises(datasync.InvalidOptionError, match="user_version"):
        await b.open("a", pragmas={"user_version": 5})  # would write the database
    a = await b.open("a", pragmas={"foreign_keys": True, "cache_size": -4000})
    await a.wait_for_leadership()
    f = await b.open("f")  # no foreign_keys: its writes would run by other rules
    g = await b.open("g", pragmas={"foreign_keys": "on", "cache_size": -2000})
    await a.execute("CREATE TABLE t(v)")
    with pytest.raises(datasync.ConnectionPragmaError, match="same pragmas"):
        await f.execute("INSERT INTO t VALUES (1)")
    await g.execute("INSERT INTO t VALUES (2)")  # same write pragmas: fine
    assert await a.query("SELECT v FROM t") == [{"v": 2}]
    await b.close()
