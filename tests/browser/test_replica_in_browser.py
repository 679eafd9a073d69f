"""Real Chromium: two devices (two browser profiles) keep replicas of one primary on a
real sync server process, through the JS API (DataSync.open with syncUrl), online and
offline across a page reload.

The primary is read with the protocol alone (sync_server.primary_rows: a whole pull
opened with the stdlib's sqlite3), never through the replica code under test."""
from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyodide_page import config
from sync_server import SyncServer, primary_rows, push_one

#: Writes each device makes at once while online.
ONLINE_WRITES = 15
#: Writes device A makes while the server is down.
OFFLINE_WRITES = 4

WRITE_MANY = """async ([device, count, start]) => {
  const acked = [];
  const failed = [];
  await Promise.all(Array.from({ length: count }, async (_, k) => {
    const n = start + k;
    try {
      await window.db.execute('INSERT INTO notes(device, n, body) VALUES (?, ?, ?)',
                              [device, n, `${device} note ${n}`]);
      acked.push(n);
    } catch (e) { failed.push([n, `${e.name}: ${e.message}`]); }
  }));
  return { acked: acked.sort((a, b) => a - b), failed };
}"""

ROWS = "() => window.db.query('SELECT device, n FROM notes ORDER BY device, n')"
SAME_ROWS = f"async (expected) => JSON.stringify(await ({ROWS})()) === JSON.stringify(expected)"


@pytest.fixture
def sync_server(tmp_path: Path, server: Any) -> Iterator[SyncServer]:
    """A sync server allowing the test pages' origin (the static server's)."""
    origin = server.url.rstrip("/")
    with SyncServer(tmp_path / "primaries", allow_origin=origin) as srv:
        yield srv


def _device(pw: Any, profile: Path, url: str) -> tuple[Any, Any]:
    """A fresh persistent profile (its own IndexedDB) with the replica page open."""
    profile.mkdir()
    ctx = config.launch_persistent(pw, profile)
    page = ctx.new_page()
    page.goto(url)
    page.evaluate("window.opened")
    return ctx, page


def _wait(page: Any, predicate: str, arg: Any = None, timeout: float = 20.0) -> Any:
    """Poll ``predicate(arg)`` in the page until it is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(predicate, arg)
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def _primary_counts(srv: SyncServer, token: str) -> dict[tuple[str, int], int]:
    rows = primary_rows(srv.url, "notes", token,
                        "SELECT device, n, count(*) FROM notes GROUP BY device, n")
    return {(d, n): c for d, n, c in rows}


def test_two_devices_converge_and_offline_writes_survive_a_reload_and_land_once(
        pw: Any, server: Any, sync_server: SyncServer, tmp_path: Path) -> None:
    token = sync_server.token("notes")
    query = urllib.parse.urlencode({"syncUrl": f"{sync_server.url}/notes", "authToken": token})
    url = f"{server.url}tests/browser/replica_page.html?{query}"
    ctx_a, a = _device(pw, tmp_path / "device-a", url)
    ctx_b, b = _device(pw, tmp_path / "device-b", url)
    try:
        # Online: both devices write at once; every acknowledged write is on the
        # primary exactly once, and both copies end up with every row.
        a.evaluate(f"window.run = ({WRITE_MANY})(['a', {ONLINE_WRITES}, 0])")
        b.evaluate(f"window.run = ({WRITE_MANY})(['b', {ONLINE_WRITES}, 0])")
        done_a, done_b = a.evaluate("window.run"), b.evaluate("window.run")
        assert done_a == {"acked": list(range(ONLINE_WRITES)), "failed": []}
        assert done_b == {"acked": list(range(ONLINE_WRITES)), "failed": []}
        online = {("a", n): 1 for n in range(ONLINE_WRITES)} | \
            {("b", n): 1 for n in range(ONLINE_WRITES)}
        assert _primary_counts(sync_server, token) == online
        expected = [{"device": d, "n": n} for d, n in sorted(online)]
        for page in (a, b):  # each saw its own writes at once, the other's by its long poll
            assert _wait(page, SAME_ROWS, expected) is True, page.evaluate(ROWS)
            status = page.evaluate("window.db.syncStatus()")
            assert status["online"] is True and status["waiting"] == 0, status

        # Offline: the server goes away; device A's writes apply locally and wait.
        sync_server.stop()
        done = a.evaluate(WRITE_MANY, ["a", OFFLINE_WRITES, 100])
        assert done == {"acked": [100 + k for k in range(OFFLINE_WRITES)], "failed": []}
        status = a.evaluate("window.db.syncStatus()")
        assert status["waiting"] == OFFLINE_WRITES and status["online"] is False, status
        assert "SyncUnavailableError" in status["lastError"], status

        # A reload while offline: the replica reopens from IndexedDB with its writes
        # still visible and still waiting (the outbox outlived the page).
        a.reload()
        reopened = a.evaluate("window.opened")
        assert reopened["waiting"] == OFFLINE_WRITES and reopened["online"] is False, reopened
        rows = a.evaluate("() => window.db.query('SELECT n FROM notes WHERE n >= 100 ORDER BY n')")
        assert [r["n"] for r in rows] == [100 + k for k in range(OFFLINE_WRITES)]
        a.screenshot(path=str(tmp_path / "offline-after-reload.png"))

        # The server comes back: the background sync pushes them, each exactly once.
        sync_server.start()
        assert _wait(a, "() => window.db.syncStatus().waiting === 0 && window.db.syncStatus().online",
                     timeout=30) is True, a.evaluate("window.db.syncStatus()")
        every = online | {("a", 100 + k): 1 for k in range(OFFLINE_WRITES)}
        assert _primary_counts(sync_server, token) == every
        expected = [{"device": d, "n": n} for d, n in sorted(every)]
        for page in (a, b):
            assert _wait(page, SAME_ROWS, expected) is True, page.evaluate(ROWS)
        assert a.evaluate("window.db.conflicts()") == []
    finally:
        ctx_a.close()
        ctx_b.close()


OPEN_WITH_HANDLER = """async ([syncUrl, authToken]) => {
  const { DataSync } = await import('/js/datasync.js');
  window.seen = [];
  window.db = await DataSync.open('notes', {
    syncUrl, authToken, syncInterval: 0,
    onConflict: async (c) => {            // a Promise of the decision
      const [sql, params] = c.statements[0];
      window.seen.push({ id: c.id, sql, name: params[0], blob: params[1] instanceof Uint8Array,
                         error: c.error, at: typeof c.at });
      return params[0] === 'x' ? { replace: [[sql, ['x-from-a', params[1]]]] } : 'drop';
    },
  });
  return window.db.syncStatus();
}"""


def test_refused_offline_writes_go_to_on_conflict_which_replaces_or_drops_them(
        pw: Any, server: Any, sync_server: SyncServer) -> None:
    token = sync_server.token("notes")
    sync_url = f"{sync_server.url}/notes"
    browser = config.launch(pw)
    try:
        a, b = (browser.new_context().new_page() for _ in range(2))
        for page in (a, b):
            page.goto(server.url + "tests/browser/blank.html")
            assert page.evaluate(OPEN_WITH_HANDLER, [sync_url, token])["online"] is True
        # db.exec: two statements on one line, one transaction on the primary
        a.evaluate("window.db.exec('CREATE TABLE tags(name TEXT UNIQUE, data BLOB); "
                   "CREATE INDEX tags_data ON tags(data);')")
        assert b.evaluate("window.db.pull()") >= 1
        assert b.evaluate("() => window.db.query(\"SELECT name FROM sqlite_master WHERE "
                          "tbl_name = 'tags' ORDER BY name\")") == [
            {"name": "sqlite_autoindex_tags_1"}, {"name": "tags"}, {"name": "tags_data"}]

        status = a.evaluate("window.db.setOffline(true)")
        assert status["offline"] is True
        a.evaluate("""window.db.batch([
          ['INSERT INTO tags VALUES (?, ?)', ['x', new Uint8Array([1, 2])]],
        ])""")
        a.evaluate("window.db.execute('INSERT INTO tags VALUES (?, ?)', ['y', new Uint8Array([3])])")
        assert a.evaluate("window.db.syncStatus().waiting") == 2
        b.evaluate("window.db.executeMany('INSERT INTO tags VALUES (?, NULL)', [['x'], ['y']])")

        a.evaluate("window.db.setOffline(false)")
        assert a.evaluate("window.db.push()") == 3  # x refused, y refused, x-from-a applied
        assert a.evaluate("window.db.syncStatus().waiting") == 0
        seen = a.evaluate("window.seen")
        assert [(s["name"], s["blob"], s["error"][0], s["at"]) for s in seen] == [
            ("x", True, "IntegrityError", "number"), ("y", True, "IntegrityError", "number")]
        rows = primary_rows(sync_server.url, "notes", token,
                            "SELECT name, hex(data) FROM tags ORDER BY name")
        assert rows == [("x", ""), ("x-from-a", "0102"), ("y", "")]  # hex(NULL) is ""
        assert a.evaluate("() => window.db.query('SELECT name FROM tags ORDER BY name')") == [
            {"name": "x"}, {"name": "x-from-a"}, {"name": "y"}]
        recorded = a.evaluate("window.db.conflicts()")
        assert [(c["id"], c["resolution"]) for c in recorded] == [
            (seen[0]["id"], "replace"), (seen[1]["id"], "drop")]
        assert recorded[0]["statements"][0][1][0] == "x"
        assert recorded[0]["recorded"] > 1e12  # ms since the epoch, as Date.now()
    finally:
        browser.close()


OPTION_ERRORS = """async (syncUrl) => {
  const { DataSync } = await import('/js/datasync.js');
  const errors = [];
  const attempt = async (f) => { try { await f(); errors.push(null); }
                                 catch (e) { errors.push([e.name, e.message]); } };
  await attempt(() => DataSync.open('t1', { syncUrl, tabs: 'yes' }));
  await attempt(() => DataSync.open('t2', { syncUrl, worker: true, onConflict: () => 'drop' }));
  await attempt(() => DataSync.open('t3', { authToken: 'x' }));
  await attempt(() => DataSync.open('t4', { syncUrl: 'ftp://nowhere/x' }));
  const plain = await DataSync.open('plain', { tabs: false });
  await attempt(() => plain.pull());
  await attempt(() => plain.syncStatus());
  await plain.close();
  return errors;
}"""


def test_replica_options_that_cannot_work_are_refused_with_named_errors(
        context: Any, server: Any) -> None:
    page = context.new_page()
    page.goto(server.url + "tests/browser/blank.html")
    errors = page.evaluate(OPTION_ERRORS, "http://127.0.0.1:9/notes")
    names = [e[0] for e in errors]
    assert names == ["InvalidOptionError", "InvalidOptionError", "InvalidOptionError",
                     "InvalidOptionError", "SyncError", "SyncError"], errors
    assert "tabs" in errors[0][1] and "db.conflicts()" in errors[1][1]
    assert "syncUrl" in errors[2][1] and "syncUrl=" in errors[3][1]  # JS names in Python's message
    assert "not a replica" in errors[4][1]


WORKER = """async ([syncUrl, authToken]) => {
  const { DataSync } = await import('/js/datasync.js');
  const db = await DataSync.open('notes-w', { worker: true, syncUrl, authToken, syncInterval: 0 });
  await db.execute('CREATE TABLE IF NOT EXISTS w(v)');
  await db.setOffline(true);
  await db.execute('INSERT INTO w VALUES (1)');
  const offline = db.syncStatus();
  const back = await db.setOffline(false);
  const token = await db.setAuthToken(authToken);   // (a refreshed token, the same here)
  const sent = await db.push();
  const after = db.syncStatus();
  const rows = await db.query('SELECT v FROM w');
  // the app layer on a replica: SQL migrations run on the primary; a JS step cannot
  const migrations = [{ version: 1, name: 'w2', up: 'CREATE TABLE w2(x)' }];
  const migrated = await db.migrate(migrations);
  const code = await db.migrate([...migrations, { version: 2, name: 'code', up: async () => {} }])
    .then(() => null, (e) => e.name);
  const sync = db.metrics().sync;
  await db.close();
  return { offline, back, sent, after, rows, token, migrated, code, sync };
}"""


def test_a_replica_in_datasyncs_worker_pushes_what_it_wrote_offline(
        context: Any, server: Any, sync_server: SyncServer) -> None:
    token = sync_server.token("notes-w")
    page = context.new_page()
    page.goto(server.url + "tests/browser/blank.html")
    out = page.evaluate(WORKER, [f"{sync_server.url}/notes-w", token])
    assert out["offline"]["waiting"] == 1 and out["offline"]["offline"] is True, out
    assert out["back"]["offline"] is False and out["sent"] == 1, out
    assert out["after"]["waiting"] == 0 and out["after"]["online"] is True, out
    assert out["rows"] == [{"v": 1}]
    assert out["token"]["offline"] is False, out
    assert primary_rows(sync_server.url, "notes-w", token, "SELECT v FROM w") == [(1,)]
    assert out["migrated"]["applied"] == [1] and out["code"] == "MigrationError", out
    assert primary_rows(sync_server.url, "notes-w", token, "SELECT version, name FROM "
                        "_datasync_migrations") == [(1, "w2")]
    assert set(out["sync"]) == {"lag_versions", "lag_seconds", "online", "waiting"}, out["sync"]


TAB = """async ([syncUrl, authToken]) => {
  const { DataSync } = await import('/js/datasync.js');
  window.changes = 0;
  window.db = await DataSync.open('shared-notes', { syncUrl, authToken, syncInterval: 0.5 });
  window.db.onChange(() => { window.changes += 1; });
  return window.db.getLeaderInfo();
}"""


def test_the_apps_tabs_share_one_replica_and_only_the_leader_talks_to_the_server(
        context: Any, server: Any, sync_server: SyncServer) -> None:
    token = sync_server.token("shared-notes")
    sync_url = f"{sync_server.url}/shared-notes"
    leader, follower = context.new_page(), context.new_page()
    for page in (leader, follower):
        page.goto(server.url + "tests/browser/blank.html")
    assert leader.evaluate(TAB, [sync_url, token])["isLeader"] is True
    assert follower.evaluate(TAB, [sync_url, token])["isLeader"] is False
    follower.evaluate("window.db.exec('CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)')")
    follower.evaluate("""Promise.all([1, 2, 3].map((n) =>
        window.db.execute('INSERT INTO notes(body) VALUES (?)', [`from the follower ${n}`])))""")
    leader.evaluate("window.db.execute('INSERT INTO notes(body) VALUES (?)', ['from the leader'])")
    count = "() => window.db.query('SELECT count(*) AS n FROM notes').then((r) => r[0].n)"
    for page in (leader, follower):
        assert _wait(page, f"async () => (await ({count})()) === 4") is True
    status = follower.evaluate("window.db.syncStatus()")
    assert status["leader"] is not None and status["waiting"] == 0, status
    # Another device commits: the leader pulls it, and the follower sees it as a change.
    before = follower.evaluate("window.changes")
    push_one(sync_server.url, "shared-notes", token,
             "INSERT INTO notes(body) VALUES ('from another device')")
    assert _wait(follower, f"async () => (await ({count})()) === 5") is True
    assert follower.evaluate("window.changes") > before
    # The leader tab closes: the follower leads, and its writes still land once.
    leader.close()
    assert _wait(follower, "() => window.db.isLeader()", timeout=20) is True
    follower.evaluate("window.db.execute('INSERT INTO notes(body) VALUES (?)', ['after'])")
    rows = primary_rows(sync_server.url, "shared-notes", token,
                        "SELECT body, count(*) FROM notes GROUP BY body ORDER BY body")
    assert rows == [("after", 1), ("from another device", 1), ("from the follower 1", 1),
                    ("from the follower 2", 1), ("from the follower 3", 1),
                    ("from the leader", 1)]
