"""Real Chromium: DataSync.open(name) with no options in several pages: one leader,
the same API in every page (executeMany, batch, exec, interactive transactions),
on the main thread and in Worker mode."""
from __future__ import annotations

from typing import Any

import pytest

from pyodide_page import blank_pages

MODES = [pytest.param({}, id="main-thread"), pytest.param({"worker": True}, id="worker")]

OPEN = """async ([name, options]) => {
  const { DataSync } = await import('/js/datasync.js');
  window.db = await DataSync.open(name, options);
  return window.db.getLeaderInfo();
}"""


def _pages(context: Any, server: Any, n: int, name: str, options: dict) -> list[Any]:
    pages = blank_pages(context, server, n)
    infos = [p.evaluate(OPEN, [name, options]) for p in pages]
    assert sum(1 for i in infos if i["isLeader"]) == 1, infos
    leader_id = next(i["tabId"] for i in infos if i["isLeader"])
    assert all(i["leaderId"] == leader_id for i in infos), infos  # known from the start
    return pages


def _leader_first(pages: list[Any]) -> list[Any]:
    return sorted(pages, key=lambda p: not p.evaluate("() => window.db.isLeader()"))


@pytest.mark.parametrize("options", MODES)
def test_a_lone_page_leads_as_soon_as_open_resolves(context: Any, server: Any,
                                                    options: dict) -> None:
    (page,) = blank_pages(context, server, 1)
    info = page.evaluate(OPEN, ["lone", options])
    assert info["isLeader"] is True and info["leaderId"] == info["tabId"]
    assert info["epoch"] >= 1


@pytest.mark.parametrize("options", MODES)
def test_a_followers_transaction_is_interactive_atomic_and_loses_no_update(
        context: Any, server: Any, options: dict) -> None:
    leader, follower = _leader_first(_pages(context, server, 2, "txn", options))
    leader.evaluate("""async () => {
        await window.db.exec('CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER); '
                             + 'INSERT INTO counter VALUES (1, 0);'); }""")
    # a transaction that throws leaves nothing
    thrown = follower.evaluate("""async () => {
        try {
          await window.db.transaction(async (tx) => {
            await tx.execute('UPDATE counter SET n = 99');
            throw new Error('changed my mind');
          });
        } catch (e) { return e.message; }
    }""")
    assert thrown == "changed my mind"
    assert leader.evaluate("() => window.db.query('SELECT n FROM counter')") == [{"n": 0}]
    # read, then write a value derived from it, while the other page does the same
    increment = """async (times) => {
        for (let i = 0; i < times; i++) {
          await window.db.transaction(async (tx) => {
            const [{ n }] = await tx.query('SELECT n FROM counter WHERE id = 1');
            await new Promise((r) => setTimeout(r, 2));
            await tx.execute('UPDATE counter SET n = ? WHERE id = 1', [n + 1]);
          });
        }
        return true;
    }"""
    leader.evaluate(f"() => {{ window.inc = ({increment})(15); }}")
    follower.evaluate(f"() => {{ window.inc = ({increment})(15); }}")
    assert leader.evaluate("() => window.inc") and follower.evaluate("() => window.inc")
    for page in (leader, follower):
        page.evaluate("() => window.db.sync()")
    assert follower.evaluate("() => window.db.query('SELECT n FROM counter')") == [{"n": 30}]


@pytest.mark.parametrize("options", MODES)
def test_a_leaders_open_transaction_makes_a_followers_write_wait_then_succeed(
        context: Any, server: Any, options: dict) -> None:
    leader, follower = _leader_first(_pages(context, server, 2, "waits", options))
    leader.evaluate("() => window.db.exec('CREATE TABLE t(v); INSERT INTO t VALUES (1);')")
    leader.evaluate("""() => { window.release = null;
        window.held = window.db.transaction(async (tx) => {
          await tx.execute('UPDATE t SET v = 10');
          await new Promise((r) => { window.release = r; });
        }); }""")
    leader.wait_for_function("() => window.release !== null")
    follower.evaluate("""() => { window.done = false;
        window.write = window.db.execute('UPDATE t SET v = v + 1').then(() => { window.done = true; }); }""")
    follower.wait_for_timeout(500)
    assert follower.evaluate("() => window.done") is False  # waits for the transaction
    leader.evaluate("() => { window.release(); return window.held; }")
    follower.evaluate("() => window.write")
    assert follower.evaluate("() => window.db.query('SELECT v FROM t')") == [{"v": 11}]


def test_a_follower_page_crashed_mid_transaction_is_rolled_back_and_others_go_on(
        context: Any, server: Any) -> None:
    leader, follower, other = _leader_first(_pages(context, server, 3, "crashtx", {}))
    leader.evaluate("() => window.db.exec('CREATE TABLE t(v); INSERT INTO t VALUES (1);')")
    follower.evaluate("""() => { window.inside = false;
        window.db.transaction(async (tx) => {
          await tx.execute('UPDATE t SET v = 666');
          window.inside = true;
          await new Promise(() => {});           // never ends: the page dies first
        }); }""")
    follower.wait_for_function("() => window.inside")
    session = context.new_cdp_session(follower)
    try:
        session.send("Page.crash", timeout=2000)
    except Exception:
        pass  # a crashed target does not answer
    # the other page's write waits for the lease, then runs on the rolled-back state
    assert other.evaluate("""async () => {
        await window.db.execute('UPDATE t SET v = v + 1');
        return window.db.query('SELECT v FROM t'); }""") == [{"v": 2}]


@pytest.mark.parametrize("options", MODES)
def test_execute_many_of_10000_rows_is_one_call_and_batch_is_atomic(
        context: Any, server: Any, options: dict) -> None:
    leader, follower = _leader_first(_pages(context, server, 2, "bulk", options))
    follower.evaluate("() => window.db.execute('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)')")
    before = leader.evaluate("() => window.db.stats().commits")
    result = follower.evaluate("""async () => {
        const rows = Array.from({length: 10000}, (_, i) => [i + 1, 'row ' + i]);
        const r = await window.db.executeMany('INSERT INTO t VALUES (?, ?)', rows);
        let failed = null;
        try {
          await window.db.batch([['INSERT INTO t VALUES (?, ?)', [20001, 'x']],
                                 ['INSERT INTO t VALUES (?, ?)', [1, 'duplicate']]]);
        } catch (e) { failed = e.name; }
        const [{ n }] = await window.db.query('SELECT count(*) AS n FROM t');
        return { affected: r.rowsAffected, last: r.lastInsertRowid, failed, n };
    }""")
    assert result == {"affected": 10000, "last": 10000, "failed": "IntegrityError", "n": 10000}
    assert leader.evaluate("() => window.db.stats().commits") == before + 1  # one transaction


@pytest.mark.parametrize("options", MODES)
def test_raw_transaction_statements_are_refused_with_a_pointer_to_transaction(
        context: Any, server: Any, options: dict) -> None:
    (page,) = blank_pages(context, server, 1)
    page.evaluate(OPEN, ["raw", options])
    error = page.evaluate("""async () => {
        try { await window.db.execute('BEGIN'); } catch (e) { return [e.name, e.message]; } }""")
    assert error[0] == "TransactionStatementError" and "transaction()" in error[1]
