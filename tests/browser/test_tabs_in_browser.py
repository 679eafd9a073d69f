"""Real Chromium: several pages of one app share one database."""
from __future__ import annotations

from typing import Any

from pyodide_page import blank_pages

OPEN = """async (name) => {
  const { DataSync } = await import('/js/datasync.js');
  window.db = await DataSync.open(name);   // shared with the other tabs by default
  window.changes = [];
  window.db.onChange((c) => window.changes.push(c.version));
  return window.db.getLeaderInfo();
}"""

INSERT_100 = """async (who) => {
  await window.db.execute('CREATE TABLE IF NOT EXISTS t(who TEXT, i INTEGER, UNIQUE(who, i))');
  const results = [];
  for (let i = 0; i < 100; i++) {
    results.push(window.db.execute('INSERT INTO t VALUES (?, ?)', [who, i]));
  }
  return (await Promise.all(results)).length;
}"""


def test_four_pages_inserting_at_once_give_exactly_400_rows(context: Any, server: Any) -> None:
    pages = blank_pages(context, server, 4)
    infos = [p.evaluate(OPEN, "shared") for p in pages]
    assert sum(1 for i in infos if i["isLeader"]) <= 1
    handles = [p.evaluate_handle(f"window.run = ({INSERT_100})('p{k}')") for k, p in enumerate(pages)]
    done = [p.evaluate("window.run") for p in pages]
    assert done == [100, 100, 100, 100]
    for page in pages:
        rows = page.evaluate("() => window.db.query('SELECT who, count(*) AS n, count(DISTINCT i) AS d FROM t GROUP BY who ORDER BY who')")
        assert rows == [{"who": f"p{k}", "n": 100, "d": 100} for k in range(4)]
    leaders = [p.evaluate("() => window.db.getLeaderInfo()") for p in pages]
    assert sum(1 for i in leaders if i["isLeader"]) == 1
    assert len({i["leaderId"] for i in leaders}) == 1
    follower = next(p for p, i in zip(pages, leaders) if not i["isLeader"])
    assert follower.evaluate("() => window.changes.length") > 0  # onChange fired
    del handles


STREAM = """async (who) => {
  window.acked = []; window.failed = [];
  await window.db.execute('CREATE TABLE IF NOT EXISTS s(k TEXT)');
  window.stream = (async () => {
    for (let i = 0; i < 60; i++) {
      const k = who + '-' + i;
      try { await window.db.execute('INSERT INTO s VALUES (?)', [k]); window.acked.push(k); }
      catch (e) { window.failed.push([k, e.name]); }
    }
  })();
  return true;
}"""


def test_leader_crash_mid_stream_elects_a_new_leader_and_loses_nothing(context: Any, server: Any) -> None:
    pages = blank_pages(context, server, 3)
    for p in pages:
        p.evaluate(OPEN, "crashy")
    pages[0].evaluate("() => window.db.waitForLeadership()")
    leader = next(p for p in pages if p.evaluate("() => window.db.isLeader()"))
    followers = [p for p in pages if p is not leader]
    for k, p in enumerate(followers):
        p.evaluate(STREAM, f"f{k}")
    followers[0].wait_for_function("() => window.acked.length >= 5", timeout=30_000)
    session = context.new_cdp_session(leader)
    try:
        session.send("Page.crash", timeout=2000)
    except Exception:
        pass  # a crashed target does not answer
    for p in followers:
        p.evaluate("() => window.stream")
    infos = [p.evaluate("() => window.db.getLeaderInfo()") for p in followers]
    assert sum(1 for i in infos if i["isLeader"]) == 1
    new_leader = next(p for p, i in zip(followers, infos) if i["isLeader"])
    acked = [k for p in followers for k in p.evaluate("() => window.acked")]
    failed = [f for p in followers for f in p.evaluate("() => window.failed")]
    rows = [r["k"] for r in new_leader.evaluate("() => window.db.query('SELECT k FROM s')")]
    assert len(rows) == len(set(rows)), "a write was applied twice"
    assert set(acked) <= set(rows), "a resolved write was lost"
    assert len(acked) + len(failed) == 120
    assert all(name for _, name in failed)  # failures are named errors, never silence
    assert infos[0]["epoch"] >= 2


def test_a_follower_sees_the_leaders_commit_in_on_change_and_reads_its_own_writes(
        context: Any, server: Any) -> None:
    leader, follower = blank_pages(context, server, 2)
    leader.evaluate(OPEN, "live")
    leader.evaluate("() => window.db.waitForLeadership()")
    follower.evaluate(OPEN, "live")
    assert not follower.evaluate("() => window.db.isLeader()")
    leader.evaluate("() => window.db.execute('CREATE TABLE notes(x TEXT)')")
    follower.evaluate("""() => { window.seen = [];
        window.db.onChange((c) => window.seen.push({tables: c.tables, by: c.by})); }""")
    leader.evaluate("() => window.db.execute(\"INSERT INTO notes VALUES ('from the leader')\")")
    # tables: what the leader's notice says; null when the follower's poll caught up
    # before the notice came (documented: the change may touch any table).
    follower.wait_for_function(
        "() => window.seen.some((c) => c.tables === null || c.tables.includes('notes'))",
        timeout=10_000)
    assert follower.evaluate("() => window.seen[window.seen.length - 1].by") == "remote"
    assert follower.evaluate("() => window.db.query('SELECT x FROM notes')") == [
        {"x": "from the leader"}]
    # read-your-writes: the forwarded write is visible the moment its call resolves
    rows = follower.evaluate("""async () => {
        await window.db.execute("INSERT INTO notes VALUES ('from the follower')");
        return window.db.query('SELECT x FROM notes ORDER BY rowid');
    }""")
    assert rows == [{"x": "from the leader"}, {"x": "from the follower"}]


def test_a_write_queued_by_a_page_closed_right_after_is_applied(context: Any, server: Any) -> None:
    # A plain page holds the leader lock, so no datasync tab can lead for now.
    ghost, writer = blank_pages(context, server, 2)
    ghost.evaluate("""() => new Promise((granted) => {
        navigator.locks.request('datasync-leader:outboxed', () => {
            granted();
            return new Promise((release) => { window.releaseLock = release; });
        });
    })""")
    writer.evaluate(OPEN, "outboxed")
    writer.evaluate("""() => { window.db.queueWrite(
        "CREATE TABLE IF NOT EXISTS q(x TEXT); ", [], {timeoutMs: null}).catch(() => {}); }""")
    writer.evaluate("""async () => {
        const count = async () => {
            const names = (await indexedDB.databases()).map((d) => d.name);
            if (!names.includes('datasync-outbox:outboxed')) return 0;
            const db = await new Promise((ok) => { const r = indexedDB.open('datasync-outbox:outboxed');
                                                   r.onsuccess = () => ok(r.result); });
            const n = await new Promise((ok) => {
                const r = db.transaction('outbox').objectStore('outbox').count();
                r.onsuccess = () => ok(r.result); });
            db.close();
            return n;
        };
        while ((await count()) < 1) await new Promise((r) => setTimeout(r, 20));
    }""")
    writer.close()  # the issuing page is gone before any leader ran its write
    ghost.evaluate("() => window.releaseLock()")
    (reader,) = blank_pages(context, server, 1)
    reader.evaluate(OPEN, "outboxed")
    reader.evaluate("() => window.db.waitForLeadership()")
    reader.wait_for_function("""async () => {
        try { return (await window.db.query(
            "SELECT count(*) AS n FROM sqlite_master WHERE name = 'q'"))[0].n === 1; }
        catch (e) { return false; } }""", timeout=20_000, polling=200)
    # and it is applied exactly once: queue a second write and count both effects
    rows = reader.evaluate("""async () => {
        await window.db.queueWrite("INSERT INTO q VALUES ('after')");
        return window.db.query('SELECT x FROM q');
    }""")
    assert rows == [{"x": "after"}]


def keyed_pages(context: Any, server: Any, name: str, key: str) -> tuple[Any, Any]:
    """A leader page and a follower page sharing ``name`` under passphrase ``key``,
    with a table ``t(v TEXT)``."""
    leader, follower = blank_pages(context, server, 2)
    assert leader.evaluate(TRY_OPEN, [name, {"tabs": True, "encryptionKey": key}]) == "open"
    leader.evaluate("() => window.db.waitForLeadership()")
    assert follower.evaluate(TRY_OPEN, [name, {"tabs": True, "encryptionKey": key}]) == "open"
    leader.evaluate("() => window.db.execute('CREATE TABLE t(v TEXT)')")
    return leader, follower


def test_two_pages_share_an_encrypted_database(context: Any, server: Any) -> None:
    leader, follower = keyed_pages(context, server, "sealed", "tab passphrase")
    rows = follower.evaluate("""async () => {
        await window.db.execute("INSERT INTO t VALUES ('sealed marker')");  // forwarded
        return window.db.query('SELECT v FROM t');
    }""")
    assert rows == [{"v": "sealed marker"}]
    assert leader.evaluate("() => window.db.query('SELECT v FROM t')") == rows
    wrong = follower.evaluate("""async () => {
        const { DataSync } = await import('/js/datasync.js');
        try { await DataSync.open('sealed', {tabs: true, encryptionKey: 'nope'}); return null; }
        catch (e) { return e.name; } }""")
    assert wrong == "WrongKeyError"


TRY_OPEN = """async ([name, options]) => {
  const { DataSync } = await import('/js/datasync.js');
  try { window.db = await DataSync.open(name, options); return 'open'; }
  catch (e) { return e.name + ': ' + e.message; }
}"""


def test_a_tab_opened_alone_keeps_others_out_clearly_and_nothing_is_lost(
        context: Any, server: Any) -> None:
    first, second = blank_pages(context, server, 2)
    assert first.evaluate(TRY_OPEN, ["solo", {"tabs": False}]) == "open"
    first.evaluate("""async () => { await window.db.execute('CREATE TABLE t(x)');
                                    await window.db.execute('INSERT INTO t VALUES (1)'); }""")
    alone = second.evaluate(TRY_OPEN, ["solo", {"tabs": False}])
    assert alone.startswith("StoreBusyError: database 'solo' is already open in another tab")
    assert "{tabs: false}" in alone
    joining = second.evaluate(TRY_OPEN, ["solo", {}])  # the default shares: refused too
    assert joining.startswith("StoreBusyError: database 'solo' is open in another tab for")
    # the first tab is unharmed, and once it closes the second opens and sees its data
    first.evaluate("async () => { await window.db.execute('INSERT INTO t VALUES (2)'); "
                   "await window.db.close(); }")
    assert second.evaluate(TRY_OPEN, ["solo", {}]) == "open"
    assert second.evaluate("() => window.db.query('SELECT x FROM t')") == [{"x": 1}, {"x": 2}]
    # shared pages (the default) keep a tab-alone open out too
    third, fourth = blank_pages(context, server, 2)
    assert third.evaluate(TRY_OPEN, ["group", {}]) == "open"
    assert fourth.evaluate(TRY_OPEN, ["group", {}]) == "open"
    assert second.evaluate(TRY_OPEN, ["group", {"tabs": False}]).startswith("StoreBusyError")


def test_a_rekey_in_a_follower_page_reaches_the_leader_page_and_later_opens_need_the_new_key(
        context: Any, server: Any) -> None:
    first, second = keyed_pages(context, server, "rotated", "first passphrase")
    first.evaluate("() => window.db.execute(\"INSERT INTO t VALUES ('before')\")")
    # the follower page rekeys to 32 raw bytes: it leads to do it
    second.evaluate("() => window.db.rekey(new Uint8Array(32).map((_, i) => i + 7))")
    assert second.evaluate("() => window.db.isLeader()")
    second.evaluate("() => window.db.execute(\"INSERT INTO t VALUES ('after')\")")
    first.wait_for_function("""async () => (await window.db.query('SELECT v FROM t')).length === 2""",
                            timeout=10_000, polling=100)
    rows = first.evaluate("""async () => {
        await window.db.execute("INSERT INTO t VALUES ('forwarded')");  // to the new leader
        return window.db.query('SELECT v FROM t ORDER BY rowid');
    }""")
    assert rows == [{"v": "before"}, {"v": "after"}, {"v": "forwarded"}]
    (third,) = blank_pages(context, server, 1)
    old = third.evaluate("""async () => {
        const { DataSync } = await import('/js/datasync.js');
        try { await DataSync.open('rotated', {tabs: true, encryptionKey: 'first passphrase'}); return null; }
        catch (e) { return e.name; } }""")
    assert old == "WrongKeyError"
    third.evaluate("""async () => {
        const { DataSync } = await import('/js/datasync.js');
        window.db = await DataSync.open('rotated', {tabs: true,
            encryptionKey: new Uint8Array(32).map((_, i) => i + 7)}); }""")
    assert third.evaluate("() => window.db.query('SELECT count(*) AS n FROM t')") == [{"n": 3}]
