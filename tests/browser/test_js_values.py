"""Real Chromium: parameters JavaScript cannot bind faithfully are refused in JS, before
any call, with a TypeError naming the parameter and the supported types; the rest reach
SQLite as they are (the last test round-trips them through a database)."""
from __future__ import annotations

from typing import Any

import pytest

from pyodide_page import blank_pages

CHECK = """async ([expression, kind]) => {
  const v = await import('/js/values.js');
  const value = eval('(' + expression + ')');
  try {
    if (kind === 'rows') v.checkRows(value, 'db.executeMany()');
    else if (kind === 'statements') v.checkStatements(value, 'db.batch()');
    else v.checkParams(value, 'db.execute()');
    return null;
  } catch (e) { return [e.constructor.name, e.message]; }
}"""

REFUSED = [
    ("[1, new Date(0)]", "params", "db.execute(): parameter 2 is a Date (1970-01-01T00:00:00.000Z)",
     "date.toISOString()"),
    ("[{a: 1}]", "params", "db.execute(): parameter 1 is a plain object", "JSON.stringify"),
    ("[[1, 2]]", "params", "db.execute(): parameter 1 is an array of 2", "JSON.stringify"),
    ("[Symbol('s')]", "params", "db.execute(): parameter 1 is a Symbol (Symbol(s))", ""),
    ("[() => 1]", "params", "db.execute(): parameter 1 is a function", ""),
    ("[2n ** 63n]", "params", "db.execute(): parameter 1 is the bigint 9223372036854775808n", "String(value)"),
    ("[-(2n ** 63n) - 1n]", "params", "parameter 1 is the bigint -9223372036854775809n", ""),
    ("[undefined]", "params", "db.execute(): parameter 1 is undefined", "Pass null"),
    ("[NaN]", "params", "db.execute(): parameter 1 is NaN", ""),
    ("[new Map()]", "params", "db.execute(): parameter 1 is a Map", ""),
    ("{when: new Date(0)}", "params", "db.execute(): parameter :when is a Date", ""),
    ("'SELECT'", "params", 'db.execute(): params is the string "SELECT"', "an array"),
    ("[[1], [2, new Date(0)]]", "rows", "db.executeMany(): row 2, parameter 2 is a Date", ""),
    ("[[1], null]", "rows", "db.executeMany(): row 2 is null", ""),
    ("[['SELECT ?', [Symbol()]]]", "statements", "db.batch(): statement 1, parameter 1 is a Symbol",
     ""),
    ("['SELECT 1']", "statements", 'db.batch(): statement 1 is the string "SELECT 1"',
     "[sql, params]"),
]


@pytest.fixture(scope="module")
def page(pw: Any, server: Any) -> Any:
    from pyodide_page import config

    browser = config.launch(pw)
    page = browser.new_page()
    page.goto(server.url + "tests/browser/blank.html")
    yield page
    browser.close()


@pytest.mark.parametrize(("expression", "kind", "start", "hint"), REFUSED)
def test_an_unbindable_parameter_is_a_type_error_naming_it_and_the_supported_types(
        page: Any, expression: str, kind: str, start: str, hint: str) -> None:
    name, message = page.evaluate(CHECK, [expression, kind])
    assert name == "TypeError"
    assert start in message
    if "parameter" in start:
        assert ("datasync binds null, a number, a string, a boolean, a bigint within 64 bits, "
                "or a Uint8Array/ArrayBuffer/typed array (BLOB)") in message
    assert hint in message


ACCEPTED = ["[null, 1, 1.5, 'x', true, 2n ** 63n - 1n, -(2n ** 63n), new Uint8Array(2)]",
            "[new ArrayBuffer(3), new Int16Array(2), new DataView(new ArrayBuffer(1))]",
            "{id: 1, name: 'x'}", "Object.assign(Object.create(null), {a: 1})", "[]",
            "undefined", "null"]


@pytest.mark.parametrize("expression", ACCEPTED)
def test_bindable_parameters_pass(page: Any, expression: str) -> None:
    assert page.evaluate(CHECK, [expression, "params"]) is None


def test_bytes_and_64_bit_integers_round_trip_and_tx_calls_after_the_end_are_refused(
        context: Any, server: Any) -> None:
    (page,) = blank_pages(context, server, 1)
    out = page.evaluate("""async () => {
        const { DataSync } = await import('/js/datasync.js');
        const db = await DataSync.open('values');
        await db.execute('CREATE TABLE t(b BLOB, i INTEGER)');
        const part = new Uint8Array([9, 1, 2, 3, 9]).subarray(1, 4);   // a view of 3 bytes
        await db.execute('INSERT INTO t VALUES (?, ?)', [part, 2n ** 62n]);
        await db.execute('INSERT INTO t VALUES (?, ?)', [new Int16Array([1]).buffer, -(2n ** 63n)]);
        const rows = await db.query('SELECT hex(b) AS h, i FROM t ORDER BY rowid');
        let kept;
        await db.transaction(async (tx) => { kept = tx; });
        let late;
        try { await kept.execute('SELECT 1'); } catch (e) { late = [e.name, e.message]; }
        let refused;
        try { await db.transaction(async (tx) => tx.execute('SELECT ?', [new Date()])); }
        catch (e) { refused = e.name; }
        await db.close();
        return {rows: rows.map((r) => [r.h, String(r.i)]), late, refused};
    }""")
    assert out["rows"] == [["010203", str(2**62)], ["0100", str(-2**63)]]
    assert out["late"][0] == "TransactionFinishedError" and "db.transaction()" in out["late"][1]
    assert out["refused"] == "TypeError"
