// Compiled (never run) by test_types.py with `tsc --noEmit --strict`: what an app
// written against js/datasync.d.ts does, and what the types must refuse.
import DataSync2, { DataSync, DataSyncError, forwardLifecycle } from "../../js/datasync.js";
import type { Change, ConflictRecord, Database, ErrorName, LeaderInfo, Metrics, Migration, MigrationResult,
  MigrationState, OpenOptions, QueryPlan, Result, Row, SlowQuery, Stats, SyncStatus } from "../../js/datasync.js";

async function app(): Promise<void> {
  const options: OpenOptions = {
    durability: "strict", blockSize: 4096, cacheBytes: 1 << 20, flushInterval: 0.5,
    webURL: "/node_modules/datasync/web/", indexURL: new URL("/pyodide/", location.href),
    stackSwitching: false, encryptionKey: new Uint8Array(32), tabs: true, cdc: true,
    cdcRetention: 3600, retainVersions: 10, worker: true,
  };
  const db: Database = await DataSync.open("app", options);
  const same: Database = await DataSync2.open("app");
  const r: Result = await db.execute("INSERT INTO t(v) VALUES (?)", ["x"]);
  const n: number = r.rowsAffected;
  await db.execute("SELECT :a, :b", { a: 1n, b: new Uint8Array(2) });
  const rows = await db.query<{ id: number; v: string }>("SELECT id, v FROM t");
  const v: string = rows[0].v;
  const many: Result = await db.executeMany("INSERT INTO t(v) VALUES (?)", [["a"], ["b"]]);
  const results: Result[] = await db.batch([["SELECT 1"], ["SELECT ?", [2]]]);
  await db.exec("CREATE TABLE a(x); CREATE TABLE b(y);");
  const total: number = await db.transaction(async (tx) => {
    const [{ c }] = await tx.query<{ c: number } & Row>("SELECT count(*) AS c FROM t");
    await tx.execute("INSERT INTO t(v) VALUES (?)", [String(c)]);
    return c + 1;
  }, { mode: "immediate" });
  const stats: Stats = db.stats();
  const dirty: number = stats.dirty_blocks;
  const info: LeaderInfo = db.getLeaderInfo();
  const off: () => void = db.onChange((notice) => console.log(notice.version, notice.tables));
  for await (const change of db.changes({ tables: ["t"], follow: false })) {
    const c: Change = change;
    if (c.op === "reset") break;
  }
  const unsubscribe = db.subscribeChanges((c) => console.log(c.seq), { onError: console.error });
  const bytes: Uint8Array = await db.exportDatabase();
  const version: number = await db.sync();
  try {
    await db.rekey("new passphrase");
  } catch (e) {
    if (e instanceof DataSyncError && e.name === ("WrongKeyError" satisfies ErrorName)) throw e;
  }
  forwardLifecycle(new Worker("/w.js", { type: "module" }));
  // @ts-expect-error a Date is not bindable
  await db.execute("SELECT ?", [new Date()]);
  // @ts-expect-error cache_bytes is Python's name; JS says cacheBytes
  await DataSync.open("app", { cache_bytes: 1 });
  // @ts-expect-error durability is "relaxed" or "strict"
  await DataSync.open("app", { durability: "fast" });
  // @ts-expect-error a nested object inside positional params
  await db.execute("SELECT ?", [{ a: 1 }]);
  const replica = await DataSync.open("notes", {
    syncUrl: "http://127.0.0.1:8765/notes", authToken: "t", syncInterval: 0.5, offline: false,
    onConflict: async (c) => (c.error[0] === "IntegrityError" ? "drop" : { replace: [[c.statements[0][0], [1]]] }),
  });
  const status: SyncStatus = replica.syncStatus();
  const waiting: number = status.waiting;
  const pulled: number = await replica.pull();
  const sent: number = await replica.push();
  const recorded: ConflictRecord[] = await replica.conflicts();
  const after: SyncStatus = await replica.setOffline(true);
  const refreshed: SyncStatus = await replica.setAuthToken("a fresh token");
  const isReplica: boolean = replica.isReplica;
  // @ts-expect-error onConflict answers "drop" | "keep" | {replace}
  await DataSync.open("notes", { syncUrl: "http://h/notes", onConflict: () => "ignore" });
  // @ts-expect-error setOffline takes a boolean
  await replica.setOffline("yes");
  console.log(waiting, pulled, sent, recorded, after, refreshed, isReplica);
  // the app layer (app.d.ts)
  const migrations: Migration[] = [
    { version: 1, name: "notes", up: "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)", down: "DROP TABLE notes" },
    { version: 2, name: "seed", checksum: "seed-1", up: async (tx) => { await tx.execute("INSERT INTO notes(body) VALUES (?)", ["hi"]); } },
  ];
  const done: MigrationResult = await db.migrate(migrations, { target: 2 });
  const back: MigrationResult = await db.rollback(migrations, { steps: 1 });
  const states: MigrationState[] = await db.migrationStatus(migrations);
  const pending: boolean = states.some((m) => m.state === "pending" && m.applied_at === null);
  const stop: () => void = await db.liveQuery<{ n: number }>("SELECT count(*) AS n FROM notes", [], (r) => console.log(r[0].n));
  const stopToo = await db.liveQuery("SELECT 1 AS one", (r) => console.log(r.length));
  const fresh = await db.cached<{ body: string }>("SELECT body FROM notes", [], { ttl: 30 });
  const body: string = fresh[0].body;
  const m: Metrics = db.metrics();
  const p95: number | null = m.latency_ms.read.p95;
  const hitRate: number | null = m.query_cache.hit_rate;
  const slow: SlowQuery[] = db.slowQueries({ thresholdMs: 5, limit: 3 });
  const plan: QueryPlan = await db.explain("SELECT * FROM notes WHERE body = ?", ["x"]);
  const scanned: boolean = plan.plan[0].full_scan && plan.plan[0].children.length >= 0;
  const index: string | undefined = plan.suggestions[0]?.sql;
  try {
    await db.migrate(migrations);
  } catch (e) {
    if (e instanceof DataSyncError && e.name === ("MigrationChecksumError" satisfies ErrorName)) throw e;
  }
  // @ts-expect-error a migration step is SQL or a function of tx
  await db.migrate([{ version: 1, name: "x", up: 42 }]);
  // @ts-expect-error ttl is a number of seconds
  await db.cached("SELECT 1", [], { ttl: "1 minute" });
  // @ts-expect-error metrics() is synchronous
  (await db.metrics()).then;
  stop(); stopToo();
  console.log(done, back, pending, body, p95, hitRate, slow, scanned, index);
  off(); unsubscribe();
  console.log(n, v, many, results, total, dirty, info, bytes, version, same);
  await db.close();
}
app();
