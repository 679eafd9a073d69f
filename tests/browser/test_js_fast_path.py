"""Real Chromium: JS calls that need no wait complete within the call (issue 11's fast
path: an eager task, a transaction's idle holder, values as JSON), and behave exactly
as the calls that wait: they wait for a transaction held elsewhere, keep the order in
which JS made them, are durable as the database's durability says, raise the same
named errors, and give the same values whether JSON or Pyodide's proxies carry them."""
from __future__ import annotations

from typing import Any

import pytest

from pyodide_page import blank_pages

MODES = [pytest.param({"tabs": False}, id="tabs-false"), pytest.param({}, id="shared"),
         pytest.param({"worker": True}, id="worker")]

OPEN = """async ([name, options]) => {
  const { DataSync } = await import('/js/datasync.js');
  window.db = await DataSync.open(name, options);
  await window.db.exec('CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v)');
  return true;
}"""


def _page(context: Any, server: Any, name: str, options: dict) -> Any:
    (page,) = blank_pages(context, server, 1)
    assert page.evaluate(OPEN, [name, options])
    return page


@pytest.mark.parametrize("options", MODES)
def test_a_read_waits_for_a_transaction_held_open_and_then_sees_its_commit(
        context: Any, server: Any, options: dict) -> None:
    page = _page(context, server, "held", options)
    page.evaluate("() => window.db.execute('INSERT INTO t VALUES (1, 10)')")
    page.evaluate("""() => { window.release = null;
        window.held = window.db.transaction(async (tx) => {
          await tx.execute('UPDATE t SET v = 11 WHERE id = 1');
          await new Promise((r) => { window.release = r; });
        });
        return true; }""")
    page.wait_for_function("() => window.release !== null")
    page.evaluate("""() => { window.seen = null;
        window.read = window.db.query('SELECT v FROM t WHERE id = 1').then((r) => { window.seen = r; });
        return true; }""")
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.seen") is None  # waits: never the uncommitted 11
    page.evaluate("async () => { window.release(); await window.held; await window.read; }")
    assert page.evaluate("() => window.seen") == [{"v": 11}]


@pytest.mark.parametrize("options", [
    pytest.param({"tabs": False}, id="tabs-false"),
    pytest.param({"worker": True, "tabs": False}, id="worker-tabs-false")])
def test_calls_made_without_awaiting_run_in_the_order_js_made_them(
        context: Any, server: Any, options: dict) -> None:
    # (Shared by tabs, a write is applied by a task of the leader's, so a read made
    # before it resolves may run first; it did so before calls started eagerly too.)
    page = _page(context, server, "order", {**options, "durability": "strict"})
    out = page.evaluate("""async () => {
        const db = window.db;
        const calls = [];
        for (let i = 1; i <= 20; i++) {
          calls.push(db.execute('INSERT INTO t VALUES (?, ?)', [i, i * i]));
          calls.push(db.query('SELECT count(*) AS n FROM t'));
        }
        const done = await Promise.all(calls);
        const counts = done.filter((r) => Array.isArray(r)).map((r) => r[0].n);
        const inTx = await db.transaction(async (tx) => {
          const many = tx.executeMany('INSERT INTO t VALUES (?, ?)', [[100, 1], [101, 2]]);
          const after = tx.query('SELECT count(*) AS n FROM t');   // not awaited: after many
          await many;
          return (await after)[0].n;
        });
        return {counts, inTx};
    }""")
    assert out == {"counts": list(range(1, 21)), "inTx": 22}


def test_a_strict_write_through_the_fast_path_is_in_indexeddb_when_it_resolves(
        context: Any, server: Any) -> None:
    page = _page(context, server, "durable", {"tabs": False, "durability": "strict"})
    page.evaluate("""async () => {
        await window.db.execute('INSERT INTO t VALUES (1, ?)', ['strict']);
        await window.db.transaction(async (tx) => { await tx.execute('INSERT INTO t VALUES (2, ?)', ['tx']); });
    }""")
    session = context.new_cdp_session(page)
    try:
        session.send("Page.crash", timeout=2000)  # no close(), no pagehide flush
    except Exception:
        pass  # a crashed target does not answer
    again = _page(context, server, "durable", {"tabs": False})
    assert again.evaluate("() => window.db.query('SELECT id, v FROM t ORDER BY id')") == [
        {"id": 1, "v": "strict"}, {"id": 2, "v": "tx"}]


def test_a_relaxed_write_through_the_fast_path_is_durable_once_sync_resolves(
        context: Any, server: Any) -> None:
    page = _page(context, server, "relaxed", {"tabs": False})
    before = page.evaluate("""async () => {
        const r = await window.db.execute('INSERT INTO t VALUES (1, ?)', ['relaxed']);
        const version = await window.db.sync();
        return [r.rowsAffected, version > 0];
    }""")
    assert before == [1, True]
    session = context.new_cdp_session(page)
    try:
        session.send("Page.crash", timeout=2000)
    except Exception:
        pass
    again = _page(context, server, "relaxed", {"tabs": False})
    assert again.evaluate("() => window.db.query('SELECT v FROM t')") == [{"v": "relaxed"}]


@pytest.mark.parametrize("options", MODES)
def test_errors_of_calls_done_at_once_are_the_same_named_errors(
        context: Any, server: Any, options: dict) -> None:
    page = _page(context, server, "errors", options)
    out = page.evaluate("""async () => {
        const db = window.db;
        const names = {};
        const name = async (label, fn) => { try { await fn(); names[label] = null; } catch (e) { names[label] = e.name; } };
        await db.execute('INSERT INTO t VALUES (1, 1)');
        await name('duplicate', () => db.execute('INSERT INTO t VALUES (1, 2)'));
        await name('syntax', () => db.query('SELEC 1'));
        await name('no table', () => db.query('SELECT * FROM nope'));
        await name('bind count', () => db.query('SELECT ?', [1, 2]));
        names.inTx = await db.transaction(async (tx) => {
          let error = null;
          try { await tx.execute('INSERT INTO t VALUES (1, 3)'); } catch (e) { error = e.name; }
          await tx.execute('INSERT INTO t VALUES (2, 3)');   // still open after the error
          return error;
        });
        names.rows = await db.query('SELECT id FROM t ORDER BY id');
        await db.close();
        await name('closed', () => db.query('SELECT 1'));
        return names;
    }""")
    assert out == {"duplicate": "IntegrityError", "syntax": "OperationalError",
                   "no table": "OperationalError", "bind count": "ProgrammingError",
                   "inTx": "IntegrityError", "rows": [{"id": 1}, {"id": 2}],
                   "closed": "DatabaseClosedError"}


@pytest.mark.parametrize("options", MODES)
def test_values_are_the_same_whether_json_or_proxies_carry_them(
        context: Any, server: Any, options: dict) -> None:
    page = _page(context, server, "values", options)
    out = page.evaluate("""async () => {
        const db = window.db;
        const show = (v) => typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? `bytes ${Array.from(v)}`
          : Object.is(v, -0) ? '-0' : v;
        const row = (r) => r.map(show);
        // JSON can carry the first set; each of the others makes its call use proxies
        const sets = [[1, 2.5, 'é ☃', null, true, 2 ** 53 - 1, -(2 ** 53 - 1)],
                      [1, new Uint8Array([0, 255])], [1, 2n ** 60n], [1, 2 ** 53], [1, -0]];
        const out = [];
        for (const params of sets) {
          const sql = 'SELECT ' + params.map((_, i) => `? AS c${i}`).join(', ');
          const e = await db.execute(sql, params);
          const q = await db.query(sql, params);
          const tx = await db.transaction(async (t) => (await t.execute(sql, params)).rows[0]);
          out.push([row(e.rows[0]), row(Object.values(q[0])), row(tx)]);
        }
        const named = await db.query('SELECT :a AS a, :b AS b', {a: 'x', b: null});
        const dup = await db.query('SELECT 1 AS k, 2 AS k');
        const stored = await db.execute("SELECT x'00ff', 9223372036854775807, 1e999, -1e999, 0.1 + 0.2");
        const batch = await db.batch([['SELECT ?', [1]], ['SELECT ?', [new Uint8Array([7])]]]);
        return {out, named, dup, stored: row(stored.rows[0]), batch: batch.map((r) => row(r.rows[0])),
                last: stored.lastInsertRowid, affected: stored.rowsAffected};
    }""")
    for execute, query, tx in out["out"]:
        assert execute == query == tx
    assert out["out"][0][0] == [1, 2.5, "é ☃", None, 1, 2 ** 53 - 1, -(2 ** 53 - 1)]
    assert out["out"][1][0] == [1, "bytes 0,255"]
    assert out["out"][2][0] == [1, f"{2 ** 60}n"]
    assert out["out"][3][0] == [1, 2 ** 53]  # Pyodide: a number up to 2**53, as JSON
    assert out["named"] == [{"a": "x", "b": None}]
    assert out["dup"] == [{"k": 2}]
    assert out["stored"] == ["bytes 0,255", "9223372036854775807n", float("inf"), float("-inf"),
                             0.30000000000000004]
    assert out["batch"] == [[1], ["bytes 7"]]
    assert out["affected"] == -1 and isinstance(out["last"], int)
