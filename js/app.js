/**
 * app.js: what apps build on a database (issue 14): migrations, live and cached
 * queries, metrics, query plans. Database (datasync.js) extends AppCalls, so every
 * database has them: one tab's, shared by tabs, a replica, in a Worker or not.
 *
 * Usage:
 *   const migrations = [
 *     { version: 1, name: "notes", up: "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)",
 *       down: "DROP TABLE notes" },
 *     { version: 2, name: "seed", checksum: "seed-v1",
 *       up: async (tx) => { await tx.execute("INSERT INTO notes(body) VALUES (?)", ["hi"]); } },
 *   ];
 *   await db.migrate(migrations);              // {from: 0, to: 2, applied: [1, 2], reverted: []}
 *   const off = await db.liveQuery("SELECT count(*) AS n FROM notes", [], ([{ n }]) => show(n));
 *   const rows = await db.cached("SELECT * FROM notes WHERE id = ?", [1], { ttl: 30 });  // seconds
 *   console.log(db.metrics().statements, await db.explain("SELECT * FROM notes WHERE body = ?", ["x"]));
 *   off();
 *
 * Python does the work (datasync/app/, through datasync/browser/bridge_app.py); the
 * shapes and keys are Python's (applied_at, latency_ms, full_scans...; see
 * datasync.d.ts). A migration step may be SQL (several statements allowed) or an
 * async function of a transaction (`tx`, as db.transaction() gives: execute, query,
 * executeMany, batch); a function has no checksum unless you give one. Errors are
 * DataSyncErrors named as Python's: MigrationOrderError, MigrationChecksumError,
 * MigrationFailedError, IrreversibleMigrationError, SchemaTooNewError, ...
 */
import { END, Transaction } from "./transaction.js";
import { checkParams, checkSQL, describe } from "./values.js";

/** Database's method that answers its handle (local.js or remote.js), or throws if closed. */
export const HANDLE = Symbol("handle");

const KEYS = new Set(["version", "name", "up", "down", "checksum"]);

/**
 * `migrations` as the handle sends them: {spec: JSON text with each function step
 * replaced by {fn: i}, functions: [i] -> async (handleTx) => ...}. TypeError (naming
 * the migration) for what Python could not be given: anything but an array of
 * objects whose up/down are SQL or functions.
 */
export function migrationSpec(migrations, call, name) {
  if (migrations == null || typeof migrations[Symbol.iterator] !== "function" || typeof migrations === "string") {
    throw new TypeError(`${call}: migrations is ${describe(migrations)}: pass an array of ` +
      "{version, name, up, down?, checksum?}");
  }
  const functions = [];
  const step = (fn) => {
    functions.push(async (handleTx) => {
      const tx = new Transaction(handleTx, name);
      try {
        await fn(tx);
      } finally {
        tx[END]();
      }
    });
    return { fn: functions.length - 1 };
  };
  const spec = [...migrations].map((m, i) => {
    if (m === null || typeof m !== "object") {
      throw new TypeError(`${call}: migration ${i + 1} is ${describe(m)}: pass {version, name, up, down?, checksum?}`);
    }
    const unknown = Object.keys(m).filter((k) => !KEYS.has(k));
    if (unknown.length) {
      throw new TypeError(`${call}: migration ${i + 1} has unknown key(s) ${unknown.join(", ")}: ` +
        "use version, name, up, down, checksum");
    }
    const out = { version: m.version, name: m.name };
    for (const key of ["up", "down"]) {
      const value = m[key];
      if (typeof value === "function") out[key] = step(value);
      else if (typeof value === "string") out[key] = value;
      else if (value != null || key === "up") {
        throw new TypeError(`${call}: migration ${i + 1}'s ${key} is ${describe(value)}: pass SQL ` +
          "(a string) or an async function (tx) => { ... }");
      }
    }
    if (m.checksum != null) out.checksum = m.checksum;
    return out;
  });
  return { spec: JSON.stringify(spec), functions };
}

function checkNumber(value, call, what, { integer = false, min = -Infinity } = {}) {
  if (typeof value !== "number" || !(integer ? Number.isInteger(value) : Number.isFinite(value)) || value < min) {
    throw new TypeError(`${call}: ${what} is ${describe(value)}: pass ${integer ? "an integer" : "a number"}` +
      (min > -Infinity ? ` >= ${min}` : ""));
  }
  return value;
}

/** The app-layer methods of every Database (see the module comment). */
export class AppCalls {
  /**
   * Apply `migrations` up to `target` (default: the last), each in its own
   * transaction with its row in _datasync_migrations; a `target` below the current
   * version runs the `down`s of the newer ones, newest first. With tabs the leader
   * runs them once; the others wait, then see the new schema. Resolves with
   * {from, to, applied: [versions], reverted: [versions]}.
   *   await db.migrate(migrations);                 // or { target: 3 }
   */
  async migrate(migrations, { target = null } = {}) {
    const handle = this[HANDLE]();
    const { spec, functions } = migrationSpec(migrations, "db.migrate()", this.name);
    if (target !== null) checkNumber(target, "db.migrate()", "target", { integer: true, min: 0 });
    return handle.migrate(spec, functions, target);
  }

  /** Run the `down`s of the last `steps` applied migrations (newest first); resolves
   * like migrate().  await db.rollback(migrations, { steps: 2 }); */
  async rollback(migrations, { steps = 1 } = {}) {
    const handle = this[HANDLE]();
    const { spec, functions } = migrationSpec(migrations, "db.rollback()", this.name);
    return handle.rollback(spec, functions, checkNumber(steps, "db.rollback()", "steps", { integer: true, min: 0 }));
  }

  /** Every applied migration and those of `migrations` still pending, by version:
   * [{version, name, checksum, applied_at (epoch seconds or null), state:
   * "applied" | "pending" | "changed" | "unknown"}].
   *   const pending = (await db.migrationStatus(migrations)).filter((m) => m.state === "pending"); */
  async migrationStatus(migrations = []) {
    const handle = this[HANDLE]();
    const { spec, functions } = migrationSpec(migrations, "db.migrationStatus()", this.name);
    return handle.migrationStatus(spec, functions);
  }

  /**
   * Call `callback(rows)` with the rows of `sql` (as query() returns them) now, then
   * again after every commit, in any tab, to a table the query reads, if its rows
   * changed (re-runs are coalesced). Resolves, after the first call, with the
   * unsubscribe function. An error thrown by `callback` is logged, not fatal.
   *   const off = await db.liveQuery("SELECT * FROM notes ORDER BY id", [], render);
   */
  async liveQuery(sql, params, callback) {
    if (typeof params === "function" && callback === undefined) [params, callback] = [[], params];
    const handle = this[HANDLE]();
    if (typeof callback !== "function") {
      throw new TypeError(`db.liveQuery(sql, params, callback): callback is ${describe(callback)}: pass a function (rows) => ...`);
    }
    const report = (error) => console.error("datasync: a liveQuery callback threw:", error);
    const call = (rows) => {
      try {
        const out = callback(rows);
        if (out && typeof out.then === "function") out.then(undefined, report);  // async: its rejection too
      } catch (error) {
        report(error);
      }
    };
    return handle.live(checkSQL(sql, "db.liveQuery()"), checkParams(params ?? [], "db.liveQuery()"), call);
  }

  /**
   * The rows of `sql` (as query()), from a cache until `ttl` SECONDS pass (default
   * 60) or a commit in any tab touches a table they read. Hits and misses are in
   * metrics().query_cache.
   *   const rows = await db.cached("SELECT * FROM tags", [], { ttl: 300 });
   */
  async cached(sql, params = [], { ttl = 60 } = {}) {
    const handle = this[HANDLE]();
    checkNumber(ttl, "db.cached()", "ttl (seconds)", { min: 0 });
    return handle.cached(checkSQL(sql, "db.cached()"), checkParams(params, "db.cached()"), ttl);
  }

  /**
   * This database's figures (keys as in Python): {statements: {read, write,
   * transaction}, errors, errors_by_name, latency_ms: {read|write|transaction:
   * {count, p50, p95, p99, max}}, flushes, block_cache, query_cache, live_queries,
   * live_runs, connections, tabs (as of the last look: null before it), forwarded_writes,
   * sync}. Times in ms. About 0.15 ms a call. In Worker mode, as the Worker last
   * reported (like stats()): the first call answers the report made at open and asks
   * the Worker to report them with every reply from then on.
   *   const { p95 } = db.metrics().latency_ms.read;
   */
  metrics() { return this[HANDLE]().metrics(); }

  /**
   * The slowest statements seen, slowest first: [{sql, kind, count, max_ms, mean_ms,
   * last_ms}] whose max_ms >= `thresholdMs` (default 100), at most `limit` (20). In
   * Worker mode, as the Worker last reported: a call with new options answers from the
   * previous report (at open: the defaults') and asks for these from the next reply on.
   *   for (const q of db.slowQueries({ thresholdMs: 10 })) console.warn(q.sql, q.max_ms);
   */
  slowQueries({ thresholdMs = 100, limit = 20 } = {}) {
    const handle = this[HANDLE]();
    checkNumber(thresholdMs, "db.slowQueries()", "thresholdMs", { min: 0 });
    return handle.slowQueries(thresholdMs, checkNumber(limit, "db.slowQueries()", "limit", { integer: true, min: 0 }));
  }

  /**
   * The plan of `sql` (EXPLAIN QUERY PLAN) as a tree: {sql, plan: [{id, detail,
   * full_scan, table, children}], full_scans: [tables], suggestions: [{table,
   * columns, sql: "CREATE INDEX ..."}]} (an index for each filtered full scan).
   *   const { full_scans, suggestions } = await db.explain("SELECT * FROM t WHERE a = ?", [1]);
   */
  async explain(sql, params = []) {
    const handle = this[HANDLE]();
    return handle.explain(checkSQL(sql, "db.explain()"), checkParams(params, "db.explain()"));
  }
}
