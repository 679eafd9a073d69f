"""Real Chromium: the app layer through the JS API (js/app.js): migrations up and down
and their failures, migrations started by two tabs at once, live and cached queries
across tabs, metrics that match the work done, query plans with index suggestions,
and the same calls in Worker mode.

Each test is one page load per tab (booting Pyodide costs seconds): a test walks
through many calls in one page rather than one call per test."""
from __future__ import annotations

import re
from typing import Any

from pyodide_page import blank_pages

#: window.M: migrations with SQL and JS-function steps; window.attempt(f) -> error name.
SETUP = """async ([name, options]) => {
  const { DataSync } = await import('/js/datasync.js');
  window.db = await DataSync.open(name, options);
  window.attempt = async (f) => {
    try { await f(); return null; } catch (e) { return `${e.name}: ${e.message}`; }
  };
  window.M = [
    { version: 1, name: 'notes', down: 'DROP TABLE log; DROP TABLE notes',
      up: 'CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT, tag TEXT); CREATE TABLE log(msg TEXT)' },
    { version: 2, name: 'seed', checksum: 'seed-1',
      up: async (tx) => {
        for (const body of ['a', 'b', 'c']) await tx.execute('INSERT INTO notes(body, tag) VALUES (?, ?)', [body, 'x']);
        const [{ n }] = await tx.query('SELECT count(*) AS n FROM notes');
        await tx.execute('INSERT INTO log VALUES (?)', [`seeded ${n}`]);
      },
      down: async (tx) => { await tx.batch([['DELETE FROM notes'], ['DELETE FROM log']]); } },
    { version: 3, name: 'notes_at', up: 'ALTER TABLE notes ADD COLUMN at REAL',
      down: 'ALTER TABLE notes DROP COLUMN at' },
  ];
  return window.db.getLeaderInfo();
}"""

MIGRATIONS = """async () => {
  const db = window.db, M = window.M, out = {};
  const columns = async () => (await db.query("SELECT name FROM pragma_table_info('notes')")).map((c) => c.name);
  out.first = await db.migrate(M);
  out.log = await db.query('SELECT msg FROM log');
  out.status = await db.migrationStatus(M);
  out.again = await db.migrate(M);
  out.back = await db.rollback(M, { steps: 2 });
  out.afterBack = { notes: (await db.query('SELECT count(*) AS n FROM notes'))[0].n, columns: await columns() };
  out.toTwo = await db.migrate(M, { target: 2 });
  // the SQL of an applied migration changed
  const changed = [{ ...M[0], up: M[0].up + ' -- edited' }, ...M.slice(1)];
  out.checksum = await window.attempt(() => db.migrate(changed));
  out.changedState = (await db.migrationStatus(changed))[0].state;
  // a gap: 1, 2, 4
  out.gap = await window.attempt(() => db.migrate([...M.slice(0, 2), { version: 4, name: 'four', up: 'CREATE TABLE four(x)' }]));
  // 3 applies, then 4's up inserts a row and throws: rolled back, left at 3
  const failing = [...M, { version: 4, name: 'bad', up: async (tx) => {
    await tx.execute("INSERT INTO log VALUES ('from the failing step')");
    throw new Error('no good');
  } }];
  out.failed = await window.attempt(() => db.migrate(failing));
  out.afterFail = { status: (await db.migrationStatus(failing)).map((m) => [m.version, m.state]),
                    log: await db.query('SELECT msg FROM log'), four: await db.query("SELECT name FROM sqlite_master WHERE name = 'four'") };
  out.sqlFailed = await window.attempt(() => db.migrate([...M, { version: 4, name: 'bad sql', up: 'INSERT INTO missing VALUES (1)' }]));
  // code that knows only 1..2 meets a database at 3
  out.tooNew = await window.attempt(() => db.migrate(M.slice(0, 2)));
  // 3 without a down cannot be rolled back
  out.irreversible = await window.attempt(() => db.rollback([...M.slice(0, 2), { ...M[2], down: undefined }]));
  out.typeError = await window.attempt(() => db.migrate([{ version: 1, name: 'x', up: 42 }]));
  out.unknownKey = await window.attempt(() => db.migrate([{ version: 1, name: 'x', up: 'SELECT 1', dwon: '' }]));
  out.final = await db.migrationStatus(M);
  // a step that does not await its statement: it still runs, inside the migration
  out.unawaited = await db.migrate([...M, { version: 4, name: 'unawaited', up: (tx) => {
    tx.execute("INSERT INTO log VALUES ('not awaited')");
  } }]);
  out.unawaitedLog = await db.query("SELECT msg FROM log WHERE msg = 'not awaited'");
  return out;
}"""


def test_migrations_up_down_and_every_failure_leave_the_last_good_version(
        context: Any, server: Any) -> None:
    page, = blank_pages(context, server, 1)
    page.evaluate(SETUP, ["migrations", {}])
    out = page.evaluate(MIGRATIONS)
    assert out["first"] == {"from": 0, "to": 3, "applied": [1, 2, 3], "reverted": []}
    assert out["log"] == [{"msg": "seeded 3"}]  # the JS step read its own writes
    assert [(m["version"], m["state"]) for m in out["status"]] == [
        (1, "applied"), (2, "applied"), (3, "applied")]
    assert out["status"][1]["checksum"] == "seed-1"
    assert all(isinstance(m["applied_at"], float) and m["applied_at"] > 1.7e9 for m in out["status"])
    assert out["again"] == {"from": 3, "to": 3, "applied": [], "reverted": []}
    assert out["back"] == {"from": 3, "to": 1, "applied": [], "reverted": [3, 2]}
    assert out["afterBack"] == {"notes": 0, "columns": ["id", "body", "tag"]}
    assert out["toTwo"] == {"from": 1, "to": 2, "applied": [2], "reverted": []}
    assert out["checksum"].startswith("MigrationChecksumError: migration 1 ('notes')"), out
    assert out["changedState"] == "changed"
    assert out["gap"].startswith("MigrationOrderError: migration version 4"), out
    assert out["failed"].startswith("MigrationFailedError: migration 4 ('bad')"), out
    assert "no good" in out["failed"] and "stays at version 3" in out["failed"], out
    assert out["afterFail"] == {
        "status": [[1, "applied"], [2, "applied"], [3, "applied"], [4, "pending"]],
        "log": [{"msg": "seeded 3"}], "four": []}
    assert out["sqlFailed"].startswith("MigrationFailedError: migration 4"), out
    assert "no such table: missing" in out["sqlFailed"], out
    assert out["tooNew"].startswith("SchemaTooNewError"), out
    assert out["irreversible"].startswith("IrreversibleMigrationError"), out
    assert out["typeError"].startswith("TypeError: db.migrate(): migration 1's up is 42"), out
    assert out["unknownKey"].startswith("TypeError: db.migrate(): migration 1 has unknown key(s) dwon"), out
    assert [(m["version"], m["state"]) for m in out["final"]] == [
        (1, "applied"), (2, "applied"), (3, "applied")]
    assert out["unawaited"]["applied"] == [4] and out["unawaitedLog"] == [{"msg": "not awaited"}]


#: A workload whose every statement is counted: 5 reads, 3 writes, 1 transaction, 1 error.
METRICS = """async () => {
  const db = window.db, out = {};
  await db.migrate(window.M);
  const before = db.metrics();
  for (let i = 0; i < 4; i++) await db.query("SELECT body FROM notes WHERE body = 'counted'");
  await db.execute("INSERT INTO notes(body, tag) VALUES ('w1', 'y')");
  await db.transaction(async (tx) => {
    await tx.query('SELECT count(*) AS n FROM notes');
    await tx.execute("INSERT INTO notes(body, tag) VALUES ('w2', 'y')");
  });
  await db.execute("UPDATE notes SET tag = 'z' WHERE body = 'w1'");
  out.error = await window.attempt(() => db.execute('SELECT * FROM nowhere'));
  const after = db.metrics();
  out.before = before; out.after = after;
  out.slow = db.slowQueries({ thresholdMs: 0, limit: 500 }).filter((q) => q.sql.includes("'counted'"));
  out.slowLimited = db.slowQueries({ thresholdMs: 0, limit: 2 }).length;
  // the query cache: miss, hit, hit; a write to notes invalidates it; another table's does not
  const q0 = after.query_cache;
  const cached = [];
  for (let i = 0; i < 3; i++) cached.push((await db.cached('SELECT count(*) AS n FROM notes', [], { ttl: 3600 }))[0].n);
  await db.execute("INSERT INTO log VALUES ('not a note')");
  cached.push((await db.cached('SELECT count(*) AS n FROM notes', [], { ttl: 3600 }))[0].n);
  await db.execute("INSERT INTO notes(body) VALUES ('new')");
  cached.push((await db.cached('SELECT count(*) AS n FROM notes', [], { ttl: 3600 }))[0].n);
  const q1 = db.metrics().query_cache;
  out.cached = cached;
  out.cache = { hits: q1.hits - q0.hits, misses: q1.misses - q0.misses, entries: q1.entries, rate: q1.hit_rate };
  const seen = [];
  const off = await db.liveQuery('SELECT count(*) AS n FROM notes', (rows) => seen.push(rows[0].n));
  out.live = { first: [...seen], open: db.metrics().live_queries };
  off();
  out.live.closed = db.metrics().live_queries;
  // plans: a filtered full scan gets its index; with it, no scan and no suggestion
  out.scan = await db.explain('SELECT * FROM notes WHERE tag = ?', ['x']);
  await db.execute(out.scan.suggestions[0].sql);
  out.indexed = await db.explain('SELECT * FROM notes WHERE tag = ?', ['x']);
  out.badPlan = await window.attempt(() => db.explain('SELECT * FROM nowhere'));
  // a callback that throws is logged, and the live query goes on
  const good = [];
  const offBad = await db.liveQuery('SELECT count(*) AS n FROM log', [], (rows) => {
    good.push(rows[0].n);
    throw new Error('a bad callback');
  });
  await db.execute("INSERT INTO log VALUES ('again')");
  while (good.length < 2) await new Promise((r) => setTimeout(r, 10));
  offBad();
  out.badCallback = good;
  const later = [];  // an async callback whose promise rejects: logged too, not unhandled
  const offAsync = await db.liveQuery('SELECT count(*) AS n FROM log', [], async (rows) => {
    later.push(rows[0].n);
    await null;
    throw new Error('an async bad callback');
  });
  await db.execute("INSERT INTO log VALUES ('once more')");
  while (later.length < 2) await new Promise((r) => setTimeout(r, 10));
  offAsync();
  out.asyncCallback = later;
  out.badTtl = await window.attempt(() => db.cached('SELECT 1', [], { ttl: '1 minute' }));
  await db.close();
  out.closed = await window.attempt(async () => db.metrics());
  return out;
}"""


def _delta(after: dict[str, Any], before: dict[str, Any], key: str) -> dict[str, int]:
    return {k: after[key][k] - before[key][k] for k in after[key]}


def test_metrics_match_the_work_counted_and_plans_suggest_the_missing_index(
        context: Any, server: Any) -> None:
    page, = blank_pages(context, server, 1)
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.evaluate(SETUP, ["metrics", {}])
    out = page.evaluate(METRICS)
    before, after = out["before"], out["after"]
    assert _delta(after, before, "statements") == {"read": 5, "write": 3, "transaction": 1}
    assert after["errors"] - before["errors"] == 1
    assert after["errors_by_name"].get("OperationalError", 0) - \
        before["errors_by_name"].get("OperationalError", 0) == 1
    assert out["error"].startswith("OperationalError: no such table: nowhere")
    reads = after["latency_ms"]["read"]
    assert reads["count"] - before["latency_ms"]["read"]["count"] == 5
    assert 0 < reads["p50"] <= reads["p95"] <= reads["p99"] <= reads["max"]
    # this page is the only tab of its database (counted in the background since the
    # first metrics() call)
    assert after["tabs"] == 1 and after["connections"] >= 1 and after["sync"] is None
    assert [(q["count"], q["kind"]) for q in out["slow"]] == [(4, "read")]
    assert out["slow"][0]["max_ms"] >= out["slow"][0]["mean_ms"] > 0
    assert out["slowLimited"] == 2
    assert out["cached"] == [5, 5, 5, 5, 6]  # the notes write invalidated, the log write not
    assert out["cache"]["hits"] == 3 and out["cache"]["misses"] == 2, out["cache"]
    assert out["cache"]["entries"] >= 1 and 0 < out["cache"]["rate"] < 1
    assert out["live"] == {"first": [6], "open": 1, "closed": 0}
    scan = out["scan"]
    assert scan["full_scans"] == ["notes"] and scan["plan"][0]["full_scan"] is True, scan
    assert [(s["table"], s["columns"]) for s in scan["suggestions"]] == [("notes", ["tag"])]
    assert re.fullmatch(r'CREATE INDEX .+ ON "?notes"?\("?tag"?\)', scan["suggestions"][0]["sql"]), scan
    indexed = out["indexed"]
    assert indexed["full_scans"] == [] and indexed["suggestions"] == [], indexed
    assert "USING INDEX" in indexed["plan"][0]["detail"] and not indexed["plan"][0]["full_scan"]
    assert out["badPlan"].startswith("OperationalError"), out["badPlan"]
    assert out["badCallback"] == [2, 3]
    assert out["badTtl"].startswith("TypeError: db.cached(): ttl (seconds) is the string"), out
    assert out["closed"].startswith("DatabaseClosedError"), out["closed"]
    assert any("a bad callback" in line for line in console), console
    assert out["asyncCallback"] == [3, 4]
    assert any("an async bad callback" in line and "liveQuery callback" in line
               for line in console), console


#: Start a migration now; window.migrating resolves with its result (or error).
MIGRATE_ONCE = """() => {
  window.migrating = window.db.migrate(window.ONCE = [
    { version: 1, name: 'tables', up: 'CREATE TABLE runs(who TEXT); CREATE TABLE notes(body TEXT); CREATE TABLE other(x)' },
    { version: 2, name: 'sql run', up: "INSERT INTO runs VALUES ('sql')" },
    { version: 3, name: 'js run', up: async (tx) => { await tx.execute("INSERT INTO runs VALUES ('js')"); } },
  ]).catch((e) => `${e.name}: ${e.message}`);
  return true;
}"""

WATCH = """async () => {
  window.calls = []; window.notices = [];
  window.db.onChange((c) => window.notices.push(c));
  window.offLive = await window.db.liveQuery('SELECT body FROM notes ORDER BY rowid', [],
                                             (rows) => window.calls.push(rows.map((r) => r.body)));
  return { calls: [...window.calls], runs: window.db.metrics().live_runs };
}"""


def test_two_tabs_migrate_once_then_live_and_cached_queries_follow_the_other_tab(
        context: Any, server: Any) -> None:
    a, b = blank_pages(context, server, 2)
    infos = [p.evaluate(SETUP, ["two-tabs", {}]) for p in (a, b)]
    assert sum(1 for i in infos if i["isLeader"]) == 1
    leader, follower = (a, b) if infos[0]["isLeader"] else (b, a)
    for page in (a, b):  # both start with the migrations pending, at once
        page.evaluate(MIGRATE_ONCE)
    results = [page.evaluate("window.migrating") for page in (a, b)]
    assert all(isinstance(r, dict) for r in results), results
    assert sorted(v for r in results for v in r["applied"]) == [1, 2, 3]  # each ran once
    assert [r["to"] for r in results] == [3, 3]
    for page in (a, b):  # tables without a unique constraint: a second run would show
        assert page.evaluate("() => window.db.query('SELECT who FROM runs ORDER BY who')") == [
            {"who": "js"}, {"who": "sql"}]
    # A JS step run by the follower: its transaction is at the leader, statement by statement.
    done = follower.evaluate("""async () => window.db.migrate([...window.ONCE, {
        version: 4, name: 'follower step', up: async (tx) => {
          const [{ n }] = await tx.query('SELECT count(*) AS n FROM runs');
          await tx.execute('INSERT INTO runs VALUES (?)', [`follower saw ${n}`]);
        } }])""")
    assert done == {"from": 3, "to": 4, "applied": [4], "reverted": []}
    assert leader.evaluate("() => window.db.query(\"SELECT who FROM runs WHERE who LIKE 'f%'\")") == [
        {"who": "follower saw 2"}]

    # A live query in the follower: not re-run for a write to another table, re-run
    # (and called back) for the leader's write to the table it reads.
    start = follower.evaluate(WATCH)
    assert start["calls"] == [[]]  # called once before liveQuery resolved
    leader.evaluate("() => window.db.execute('INSERT INTO other VALUES (1)')")
    version = leader.evaluate("() => window.db.stats().version")
    follower.wait_for_function(f"() => window.notices.some((c) => c.version >= {version})",
                               timeout=15_000)
    leader.evaluate("() => window.db.execute(\"INSERT INTO notes VALUES ('from the leader')\")")
    follower.wait_for_function("() => window.calls.length === 2", timeout=15_000)
    assert follower.evaluate("window.calls") == [[], ["from the leader"]]
    notices = follower.evaluate("window.notices")
    # a notice that does not say which tables (a catch-up poll) may re-run it; one
    # naming only `other` must not
    unnamed = sum(1 for c in notices if c["tables"] is None)
    runs = follower.evaluate("() => window.db.metrics().live_runs") - start["runs"]
    assert runs <= 1 + unnamed, (runs, notices)
    assert runs == 1 or unnamed, (runs, notices)

    # A cached query in the follower is invalidated by the leader's write.
    cached = "() => window.db.cached('SELECT count(*) AS n FROM notes', [], {ttl: 3600}).then((r) => r[0].n)"
    assert [follower.evaluate(cached) for _ in range(2)] == [1, 1]
    hits = follower.evaluate("() => window.db.metrics().query_cache.hits")
    leader.evaluate("() => window.db.execute(\"INSERT INTO notes VALUES ('second')\")")
    follower.wait_for_function("() => window.calls.length === 3", timeout=15_000)
    assert follower.evaluate(cached) == 2
    figures = follower.evaluate("() => window.db.metrics()")
    assert figures["query_cache"]["hits"] == hits and figures["query_cache"]["misses"] >= 2
    follower.evaluate("() => window.db.execute(\"INSERT INTO other VALUES ('forwarded')\")")
    figures = follower.evaluate("() => window.db.metrics()")
    assert figures["forwarded_writes"] >= 1 and figures["tabs"] == 2, figures
    follower.evaluate("() => window.offLive()")
    assert follower.evaluate("() => window.db.metrics().live_queries") == 0


WORKER = """async () => {
  const db = window.db, out = {};
  out.migrated = await db.migrate(window.M);   // step 2 runs on this page, over the Worker's transaction
  out.log = await db.query('SELECT msg FROM log');
  out.failed = await window.attempt(() => db.migrate([...window.M,
    { version: 4, name: 'bad', up: async (tx) => { await tx.execute('INSERT INTO log VALUES (1)'); throw new Error('page says no'); } }]));
  out.back = await db.rollback(window.M, { steps: 2 });
  out.status = (await db.migrationStatus(window.M)).map((m) => m.state);
  await db.migrate(window.M);
  out.checksum = await window.attempt(() => db.migrate([{ ...window.M[0], up: 'CREATE TABLE other(x)' }, ...window.M.slice(1)]));
  const seen = [];
  const off = await db.liveQuery('SELECT count(*) AS n FROM notes', [], (rows) => seen.push(rows[0].n));
  out.liveFirst = [...seen];
  await db.execute("INSERT INTO notes(body, tag) VALUES ('d', 'x')");
  while (seen.length < 2) await new Promise((r) => setTimeout(r, 10));
  off();
  out.live = seen;
  out.cached = [];
  for (let i = 0; i < 2; i++) out.cached.push((await db.cached('SELECT count(*) AS n FROM notes'))[0].n);
  // the first calls answer what the Worker reported at open, and ask it to report
  // them with every reply from now on
  out.openReport = typeof db.metrics().statements.read === "number";
  db.slowQueries({ thresholdMs: 0, limit: 100 });
  await db.query('SELECT 1 AS one');
  const m0 = db.metrics();
  await db.query("SELECT body FROM notes WHERE body = 'w'");
  await db.execute("INSERT INTO notes(body) VALUES ('w')");
  const m1 = db.metrics();
  out.counted = { read: m1.statements.read - m0.statements.read, write: m1.statements.write - m0.statements.write };
  out.cacheHits = m1.query_cache.hits;
  out.liveOpen = m1.live_queries;
  out.slow = db.slowQueries({ thresholdMs: 0, limit: 100 }).filter((q) => q.sql.includes("body = 'w'")).map((q) => [q.kind, q.count]);
  out.plan = await db.explain('SELECT * FROM notes WHERE tag = ?', ['x']);
  out.pyodide = db.pyodide;
  return out;
}"""


def test_the_worker_mode_answers_the_same_calls(context: Any, server: Any) -> None:
    page, = blank_pages(context, server, 1)
    page.evaluate(SETUP, ["in-worker", {"worker": True}])
    out = page.evaluate(WORKER)
    assert out["pyodide"] is None  # really in the Worker
    assert out["openReport"] is True
    assert out["migrated"] == {"from": 0, "to": 3, "applied": [1, 2, 3], "reverted": []}
    assert out["log"] == [{"msg": "seeded 3"}]
    assert out["failed"].startswith("MigrationFailedError: migration 4 ('bad')"), out["failed"]
    assert "page says no" in out["failed"]
    assert out["back"]["reverted"] == [3, 2]
    assert out["status"] == ["applied", "pending", "pending"]
    assert out["checksum"].startswith("MigrationChecksumError"), out["checksum"]
    assert out["liveFirst"] == [3] and out["live"] == [3, 4]
    assert out["cached"] == [4, 4] and out["cacheHits"] >= 1
    assert out["counted"] == {"read": 1, "write": 1}
    assert out["liveOpen"] == 0
    assert out["slow"] == [["read", 1]], out["slow"]
    assert out["plan"]["full_scans"] == ["notes"] and out["plan"]["suggestions"][0]["columns"] == ["tag"]
