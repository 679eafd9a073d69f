/**
 * datasync.js: a persistent SQLite database for web pages, backed by IndexedDB.
 *
 * Usage:
 *   import { DataSync } from "/js/datasync.js";
 *   const db = await DataSync.open("app");                 // boots Pyodide once per page
 *   await db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v)");
 *   const r = await db.execute("INSERT INTO t(v) VALUES (?)", ["hello"]);
 *   // r = {columns: [], rows: [], rowsAffected: 1, lastInsertRowid: 1}
 *   const rows = await db.query("SELECT * FROM t");         // [{id: 1, v: "hello"}]
 *   await db.transaction(async (tx) => {                     // atomic, interactive
 *     const [{ n }] = await tx.query("SELECT count(*) AS n FROM t");
 *     await tx.execute("INSERT INTO t(v) VALUES (?)", [`row ${n + 1}`]);
 *   });
 *   await db.sync();                                        // durable up to here
 *
 * Options of DataSync.open(name, options) (typed in datasync.d.ts):
 *   worker     true: run Pyodide and datasync in a module Worker (worker.js, next to
 *              this file): the page's main thread never blocks on booting or SQL. Same
 *              API; db.pyodide is null; stats()/getLeaderInfo() read the state the
 *              Worker sends with every reply and whenever it changes.
 *   webURL     where `python -m datasync build` put the web folder (default: ../web/
 *              next to this module); its manifest.json names the wheels.
 *   indexURL   the Pyodide runtime (default: the manifest's, webURL + "pyodide/").
 *   pyodide    an already loaded Pyodide instance to use instead of booting one
 *              (used as it is: datasync never changes a runtime it did not boot).
 *   stackSwitching  true: leave WebAssembly stack switching (JSPI) on in the Pyodide
 *              datasync boots. Off by default: datasync never needs it, and with it on
 *              Chromium's renderer has been seen to crash (pyodide#5702, #6106).
 *   durability "relaxed" (default) or "strict"; blockSize, cacheBytes, flushInterval,
 *              retainVersions (see README).
 *   encryptionKey  a passphrase (string; PBKDF2-HMAC-SHA256, 600,000 iterations) or a
 *              Uint8Array of 32 raw bytes: every block is stored AES-256-GCM encrypted
 *              (WebCrypto). A wrong key rejects with WrongKeyError.
 *   tabs       false: open the database for this tab alone (another tab's open then
 *              fails with StoreBusyError). By default the app's tabs share it: one
 *              leader tab writes, the others forward their writes and follow its
 *              changes; open() resolves once the tab knows its role.
 *   cdc        true: capture every committed change; read with changes(), ack().
 *   cdcRetention  seconds to keep acknowledged changes (default: forever).
 *   syncUrl, authToken, syncInterval, offline, onConflict: open an embedded replica
 *              of a primary on a sync server (replica.js says how; it is this tab's
 *              alone); it adds pull(), push(), syncStatus(), conflicts(), setOffline().
 * App layer (app.js): migrate(), rollback(), migrationStatus(), liveQuery(), cached(),
 * metrics(), slowQueries(), explain().
 * Errors are Error objects whose `name` is datasync's (or sqlite3's) exception class:
 * StorageFullError, CorruptBlockError, IntegrityError, OperationalError, ...; a
 * parameter JavaScript cannot bind faithfully is a TypeError before any call.
 * Values: NULL <-> null, BLOB <-> Uint8Array, integers beyond 2^53 <-> BigInt.
 */
import { AppCalls, HANDLE } from "./app.js";
import { DataSyncError, openLocal } from "./local.js";
import { checkFlag, checkToken, notReplica, replicaOptions } from "./replica.js";
import { forwardLifecycle, openRemote } from "./remote.js";
import { END, Transaction } from "./transaction.js";
import { checkParams, checkRows, checkSQL, checkStatements, keyJSON, optionsJSON } from "./values.js";

export { DataSyncError, forwardLifecycle, Transaction };


/**
 * One open database. Create it with DataSync.open(). The app layer's calls
 * (migrate, liveQuery, cached, metrics, explain...) are app.js's AppCalls.
 */
export class Database extends AppCalls {
  #handle;
  #closed = false;
  constructor(name, handle, pyodide, isReplica = false) {
    super();
    this.name = name;
    this.#handle = handle;
    /** True if opened with {syncUrl}: a replica (pull(), push()...; SyncError on others). */
    this.isReplica = isReplica;
    /** The Pyodide datasync runs in (null with {worker: true}). */
    this.pyodide = pyodide;
  }

  #check() {
    if (this.#closed) throw new DataSyncError("DatabaseClosedError", `database '${this.name}' is closed; open it again`);
  }

  /** The handle (local.js, remote.js) for AppCalls; DatabaseClosedError once closed. */
  [HANDLE]() { this.#check(); return this.#handle; }

  /** Run one statement: {columns, rows (arrays), rowsAffected, lastInsertRowid}.
   *   await db.execute("INSERT INTO t(v) VALUES (?)", ["x"]);   // or {v: "x"} for :v */
  async execute(sql, params = []) {
    this.#check();
    return this.#handle.execute(checkSQL(sql, "db.execute()"), checkParams(params, "db.execute()"));
  }

  /** Run one statement and return its rows as objects keyed by column name.
   *   const rows = await db.query("SELECT * FROM t WHERE id = ?", [1]); */
  async query(sql, params = []) {
    this.#check();
    return this.#handle.query(checkSQL(sql, "db.query()"), checkParams(params, "db.query()"));
  }

  /**
   * Run `sql` once per row of params, in ONE call and one atomic transaction;
   * resolves with {rowsAffected (total), lastInsertRowid, ...}.
   *   await db.executeMany("INSERT INTO t(v) VALUES (?)", [["a"], ["b"]]);
   */
  async executeMany(sql, rows) {
    this.#check();
    return this.#handle.executeMany(checkSQL(sql, "db.executeMany()"), checkRows(rows, "db.executeMany()"));
  }

  /**
   * Run several [sql, params] statements atomically in one round trip; resolves
   * with their results (as execute()'s), in order. One failing: none applied.
   *   const [a, b] = await db.batch([["INSERT INTO t(v) VALUES (?)", ["a"]], ["SELECT 1"]]);
   */
  async batch(statements) {
    this.#check();
    return this.#handle.batch(checkStatements(statements, "db.batch()"));
  }

  /** Run a script of statements separated by `;` (no parameters); resolves with undefined.
   *   await db.exec("CREATE TABLE a(x); CREATE TABLE b(y);"); */
  async exec(script) {
    this.#check();
    await this.#handle.exec(checkSQL(script, "db.exec()"));
  }

  /**
   * Run `fn(tx)` inside one transaction: commits when it resolves (resolving with
   * its value), rolls back when it throws (rethrowing). Interactive: a statement may
   * use an earlier one's result. Inside fn use tx, not db (db's writes wait for it).
   *   const total = await db.transaction(async (tx) => {
   *     const [{ v }] = await tx.query("SELECT v FROM counter");
   *     await tx.execute("UPDATE counter SET v = ?", [v + 1]);
   *     return v + 1;
   *   }, { mode: "immediate" });
   */
  async transaction(fn, { mode } = {}) {
    this.#check();
    if (typeof fn !== "function") {
      throw new TypeError(`db.transaction(fn): fn is ${typeof fn}: pass an async function (tx) => { ... }`);
    }
    const raw = await this.#handle.begin(mode);
    const tx = new Transaction(raw, this.name);
    let value;
    try {
      value = await fn(tx);
    } catch (error) {
      tx[END]();
      try { await raw.rollback(); } catch (rollbackError) {
        console.warn("datasync: rollback after an error in db.transaction() failed:", rollbackError);
      }
      throw error;
    }
    tx[END]();
    await raw.commit();
    return value;
  }

  /**
   * Queue a write in a durable outbox (IndexedDB) and resolve like execute() once
   * applied, by whichever tab leads, exactly once, even if this tab closes first.
   * After `timeoutMs` (default 30000; null: no limit) it rejects with
   * QueuedWriteTimeoutError: the write is STILL queued, do not queue it again.
   *   await db.queueWrite("INSERT INTO log(msg) VALUES (?)", ["bye"]);
   */
  async queueWrite(sql, params = [], { timeoutMs = 30000 } = {}) {
    this.#check();
    return this.#handle.queueWrite(checkSQL(sql, "db.queueWrite()"), checkParams(params, "db.queueWrite()"), timeoutMs);
  }

  /** Flush everything committed so far; resolves with the durable version.
   *   const version = await db.sync(); */
  async sync() { this.#check(); return this.#handle.sync(); }

  /** Counters: version, blocks, dirty_blocks..., as a plain object (snake_case keys).
   *   console.log(db.stats().version); */
  stats() { this.#check(); return this.#handle.stats(); }

  /** The database as a standard SQLite file (Uint8Array).
   *   const bytes = await db.exportDatabase(); */
  async exportDatabase() { this.#check(); return this.#handle.exportDatabase(); }

  /** Replace the whole database with a standard SQLite file, atomically.
   *   await db.importDatabase(new Uint8Array(await file.arrayBuffer())); */
  async importDatabase(bytes) {
    this.#check();
    if (!(bytes instanceof Uint8Array)) bytes = new Uint8Array(bytes);
    return this.#handle.importDatabase(bytes);
  }

  /**
   * Copy the database into a new database `target` while it stays in use (a
   * consistent snapshot); resolves with {target, bytes, sourceVersion, targetVersion}.
   *   await db.backup("app-copy");
   */
  async backup(target, options = {}) {
    this.#check();
    const info = await this.#handle.backup(target, optionsJSON(options));
    return { target: info.target, bytes: info.bytes, sourceVersion: info.source_version,
             targetVersion: info.target_version };
  }

  /** The versions restore() can return to: [{version, file_size, epoch}], oldest first.
   *   const [oldest] = await db.versions(); */
  async versions() { this.#check(); return this.#handle.versions(); }

  /** Return the database to a retained version (needs retainVersions; see README).
   *   await db.restore(oldest.version); */
  async restore(version) { this.#check(); return this.#handle.restore(version); }

  /** True if this tab writes the database.  if (db.isLeader()) { ... } */
  isLeader() { return this.getLeaderInfo().isLeader; }

  /** {isLeader, leaderId, epoch, tabId}.  const { isLeader } = db.getLeaderInfo(); */
  getLeaderInfo() {
    this.#check();
    const info = this.#handle.leaderInfo();
    return { isLeader: info.is_leader, leaderId: info.leader_id, epoch: info.epoch, tabId: info.tab_id };
  }

  /** Resolves once this tab is the leader.  await db.waitForLeadership(); */
  async waitForLeadership() { this.#check(); return this.#handle.waitForLeadership(); }

  /** Take leadership now; the current leader steps down cleanly.  await db.requestLeadership(); */
  async requestLeadership() { this.#check(); return this.#handle.requestLeadership(); }

  /** Call `callback({version, tables, by})` after every change from any tab; returns an
   * unsubscribe function.  const off = db.onChange((c) => refresh(c.tables)); */
  onChange(callback) {
    this.#check();
    return this.#handle.onChange((change) => callback(change));
  }

  /**
   * Captured changes (open with {cdc: true}), oldest first, then live ones as they
   * are committed (in any tab). Each is {seq, table, op, key, old, new, version, at}:
   * op "insert" | "update" | "delete" | "schema" | "reset" (table "*": the whole
   * database was imported or restored; resync).
   *   for await (const c of db.changes({tables: ["notes"], since: lastSeq})) { ... }
   * Options: tables (null: all), since (a seq: resume after it), consumer (resume
   * after what it acknowledged with ack()), follow (false: stop at the end).
   */
  changes({ tables = null, since = null, consumer = null, follow = true } = {}) {
    this.#check();
    const stream = this.#handle.changes(JSON.stringify({ tables, since, consumer, follow }));
    return (async function* () {
      try {
        while (true) {
          const change = await stream.next();
          if (change === undefined || change === null) return;
          yield change;
        }
      } finally {
        await stream.close();
      }
    })();
  }

  /**
   * Call `callback(change)` for every captured change (as changes(), without
   * `follow`), oldest first, then live; returns an unsubscribe function. An error
   * (the callback's too) ends the subscription and goes to `onError`.
   *   const unsubscribe = db.subscribeChanges((c) => render(c), {tables: ["notes"]});
   */
  subscribeChanges(callback, { tables = null, since = null, consumer = null,
                               onError = (e) => console.error(e) } = {}) {
    this.#check();
    const stream = this.#handle.changes(JSON.stringify({ tables, since, consumer, follow: true }));
    let stopped = false;
    let closing = null;
    const close = () => (closing ??= stream.close().catch(() => {}));
    (async () => {
      try {
        while (!stopped) {
          const change = await stream.next();
          if (change === undefined || change === null || stopped) break;
          callback(change);
        }
      } catch (e) {
        if (!stopped) onError(e);
      } finally {
        await close();
      }
    })();
    return () => {
      if (stopped) return;
      stopped = true;
      close();
    };
  }

  /** Consumer `consumer` is done with every change up to `seq` (pruning may drop them).
   *   await db.ack("search-index", change.seq); */
  async ack(consumer, seq) { this.#check(); return this.#handle.ack(consumer, seq); }

  /**
   * Re-encrypt every block under `newKey` (a passphrase or 32-byte Uint8Array;
   * null decrypts), atomically in one flush; resolves with the durable version.
   * With tabs this tab becomes the leader to do it and the others are sent the key.
   *   await db.rekey("new passphrase");
   */
  async rekey(newKey) { this.#check(); return this.#handle.rekey(JSON.stringify(keyJSON(newKey))); }

  #replica() {
    this.#check();
    if (this.isReplica) return this.#handle;
    throw notReplica(this.name);
  }

  /** Bring the copy to the primary's latest version; resolves with it (SyncUnavailableError:
   * no answer, the copy is unchanged).  const version = await db.pull(); */
  async pull() { return this.#replica().pull(); }

  /** Send the writes waiting in the outbox (then pull); resolves with how many the
   * primary answered (SyncUnavailableError: they keep waiting).  await db.push(); */
  async push() { return this.#replica().push(); }

  /** {localVersion, remoteVersion, pulledVersion, waiting, lastPull, lastPush, online,
   * offline, lastError, url}; times in ms.  if (db.syncStatus().waiting) showBadge(); */
  syncStatus() { return this.#replica().syncStatus(); }

  /** The conflicts recorded, oldest first ({id: the write's, statements, error, resolution, ...}).
   *   for (const c of await db.conflicts()) console.warn(c.error, c.statements); */
  async conflicts() { return this.#replica().conflicts(); }

  /** Stop (true) or resume (false) talking to the server; resolves with syncStatus().
   *   await db.setOffline(true);   // writes now wait in the outbox */
  async setOffline(offline) { return this.#replica().setOffline(checkFlag(offline, "db.setOffline(offline)")); }
  /** Send `token` from the next request on (an expired one fails every request with
   * SyncAuthError); resolves with syncStatus().  await db.setAuthToken(freshToken); */
  async setAuthToken(token) { return this.#replica().setAuthToken(checkToken(token)); }

  /** Flush and close.  await db.close(); */
  async close() {
    if (this.#closed) return;
    await this.#handle.close();
    this.#closed = true;
  }
}

export const DataSync = {
  /**
   * Open (or create) the database `name`; see the module comment for options.
   *   const db = await DataSync.open("app", { worker: true, durability: "strict" });
   */
  async open(name, options = {}) {
    const { webURL, indexURL, pyodide: given, stackSwitching, worker, onConflict, ...dbOptions } = options;
    if (typeof name !== "string" || !name) {
      throw new TypeError(`DataSync.open(name): name is ${JSON.stringify(name)}: pass a non-empty string`);
    }
    const replica = replicaOptions(dbOptions, onConflict, worker);
    if (worker) {
      if (given) {
        throw new DataSyncError("InvalidOptionError", "pyodide cannot be given with worker: true " +
          "(the Worker boots its own): drop one of the two options");
      }
      const boot = { webURL: String(new URL(webURL ?? new URL("../web/", import.meta.url), location.href)),
                     indexURL: indexURL === undefined ? undefined : String(new URL(indexURL, location.href)),
                     stackSwitching: Boolean(stackSwitching) };
      return new Database(name, await openRemote(name, optionsJSON(dbOptions), boot), null, replica);
    }
    const { handle, pyodide } = await openLocal(name, optionsJSON(dbOptions),
                                                { webURL, indexURL, pyodide: given, stackSwitching },
                                                onConflict ?? null);
    return new Database(name, handle, pyodide, replica);
  },
  DataSyncError,
};

export default DataSync;
