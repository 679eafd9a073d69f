"""Real Chromium: change data capture through the JS API, in one page and across tabs."""
from __future__ import annotations

from typing import Any

from pyodide_page import blank_pages

OPEN = """async ([name, tabs]) => {
  const { DataSync } = await import('/js/datasync.js');
  window.db = await DataSync.open(name, {cdc: true, tabs});
  window.seen = [];
  window.collect = async (options, n) => {
    for await (const c of window.db.changes(options)) {
      window.seen.push(c);
      if (window.seen.length >= n) break;
    }
    return window.seen.length;
  };
  return window.db.getLeaderInfo();
}"""


def test_changes_on_a_page_see_inserts_updates_and_deletes(context: Any, server: Any) -> None:
    (page,) = blank_pages(context, server, 1)
    page.evaluate(OPEN, ["cdc-page", False])
    page.evaluate("""async () => {
        await window.db.execute('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB)');
        window.done = window.collect({tables: ['t']}, 4);   // waits for live changes
        await window.db.execute("INSERT INTO t(v, b) VALUES ('a', x'00ff')");
        await window.db.execute("UPDATE t SET v = 'b'");
        await window.db.execute('DELETE FROM t');
    }""")
    assert page.evaluate("() => window.done") == 4
    seen = page.evaluate("""() => window.seen.map((c) => ({
        seq: c.seq, table: c.table, op: c.op, key: c.key, old: c.old, new: c.new,
        version: c.version, at: c.at,
        blob: c.new && c.new.b instanceof Uint8Array ? Array.from(c.new.b) : null}))""")
    assert [c["op"] for c in seen] == ["schema", "insert", "update", "delete"]
    assert all(c["table"] == "t" for c in seen)
    _, ins, upd, dele = seen
    assert ins["key"] == 1 and ins["old"] is None and ins["new"]["v"] == "a"
    assert ins["blob"] == [0, 255]
    assert upd["old"]["v"] == "a" and upd["new"]["v"] == "b"
    assert dele["old"]["v"] == "b" and dele["new"] is None
    assert [c["seq"] for c in seen] == sorted({c["seq"] for c in seen})
    assert all(c["version"] >= 1 and c["at"] > 1.7e9 for c in seen)
    # resuming after a sequence number, and a consumer's acknowledgement
    again = page.evaluate("""async (after) => {
        const out = [];
        for await (const c of window.db.changes({since: after, follow: false})) out.push(c.op);
        await window.db.ack('ui', after);
        const resumed = [];
        for await (const c of window.db.changes({consumer: 'ui', follow: false})) resumed.push(c.seq);
        return [out, resumed];
    }""", seen[1]["seq"])
    assert again == [["update", "delete"], [seen[2]["seq"], seen[3]["seq"]]]


def test_a_follower_page_streams_the_leader_pages_changes(context: Any, server: Any) -> None:
    leader, follower = blank_pages(context, server, 2)
    leader.evaluate(OPEN, ["cdc-tabs", True])
    leader.evaluate("() => window.db.waitForLeadership()")
    follower.evaluate(OPEN, ["cdc-tabs", True])
    assert not follower.evaluate("() => window.db.isLeader()")
    follower.evaluate("""() => { window.done = window.collect({tables: ['notes']}, 3);
        window.pushed = [];
        window.unsubscribe = window.db.subscribeChanges((c) => window.pushed.push(c.op),
                                                        {tables: ['notes']}); }""")
    leader.evaluate("""async () => {
        await window.db.execute('CREATE TABLE notes(id INTEGER PRIMARY KEY, x TEXT)');
        await window.db.execute("INSERT INTO notes(x) VALUES ('from the leader')");
        await window.db.execute("UPDATE notes SET x = 'edited' WHERE id = 1");
    }""")
    follower.wait_for_function(
        "() => window.seen.length >= 3 && window.pushed.length >= 3", timeout=15_000)
    seen = follower.evaluate("() => window.seen.map((c) => [c.op, c.key, c.old, c.new])")
    assert [s[0] for s in seen] == ["schema", "insert", "update"]
    assert seen[1][1:] == [1, None, {"id": 1, "x": "from the leader"}]
    assert seen[2][1:] == [1, {"id": 1, "x": "from the leader"}, {"id": 1, "x": "edited"}]
    assert follower.evaluate("() => window.pushed") == ["schema", "insert", "update"]
    # after unsubscribing, the callback hears nothing more
    follower.evaluate("() => window.unsubscribe()")
    leader.evaluate("() => window.db.execute(\"INSERT INTO notes(x) VALUES ('later')\")")
    follower.wait_for_function("""async () => (await window.db.query(
        'SELECT count(*) AS n FROM _datasync_changes')).map((r) => r.n)[0] >= 4""",
                               timeout=15_000, polling=100)
    follower.wait_for_timeout(200)
    assert follower.evaluate("() => window.pushed") == ["schema", "insert", "update"]
