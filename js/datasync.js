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
 *   await db.sync();                                        // durable up to here
 *
 * Options of DataSync.open(name, options):
 *   webURL     where `python -m datasync build` put the web folder (default: ../web/
 *              next to this module); its manifest.json names the wheels.
 *   indexURL   the Pyodide runtime (default: webURL + "pyodide/").
 *   pyodide    an already loaded Pyodide instance to use instead of booting one
 *              (used as it is: datasync never changes a runtime it did not boot).
 *   stackSwitching  true: leave WebAssembly stack switching (JSPI) on in the Pyodide
 *              datasync boots. Off by default: datasync never needs it, and with it on
 *              Chromium's renderer has been seen to crash (SIGSEGV on a JSPI stack;
 *              pyodide#5702, #6106). Turn it on only to use pyodide.ffi.run_sync in
 *              Python code you run through db.pyodide.
 *   durability "relaxed" (default) or "strict"; blockSize, cacheBytes, flushInterval.
 *   encryptionKey  a passphrase (string; PBKDF2-HMAC-SHA256, 600,000 iterations) or a
 *              Uint8Array of 32 raw bytes: every block is stored AES-256-GCM encrypted
 *              (WebCrypto). A wrong key rejects with WrongKeyError; db.rekey(newKey)
 *              re-encrypts atomically. With tabs every tab gives the key; rekey() in
 *              any tab re-encrypts for all of them (the open tabs are sent the key).
 *   tabs       true: share the database with the app's other tabs (one leader tab
 *              writes, elected with Web Locks; the others forward their writes and
 *              follow its changes). See isLeader(), onChange(), requestLeadership().
 *   cdc        true: capture every committed insert/update/delete/schema change in a
 *              change log; read it with changes(), acknowledge with ack().
 *   cdcRetention  seconds to keep acknowledged changes (default: forever).
 * Errors are Error objects whose `name` is datasync's (or sqlite3's) exception class:
 * StorageFullError, CorruptBlockError, IntegrityError, OperationalError, ...
 * Values: NULL <-> null, BLOB <-> Uint8Array, integers beyond 2^53 <-> BigInt.
 */

const DEFAULT_WEB_URL = new URL("../web/", import.meta.url);
const runtimes = new Map(); // webURL -> Promise<{pyodide, bridge}>

/** An Error named after the Python exception it stands for. */
export class DataSyncError extends Error {
  constructor(name, message) {
    super(message);
    this.name = name;
  }
}

/** An encryption key as JSON for the Python side: a string, or the 32 bytes as a list. */
function keyJSON(key) {
  if (key instanceof ArrayBuffer) key = new Uint8Array(key);
  if (ArrayBuffer.isView(key)) return Array.from(new Uint8Array(key.buffer, key.byteOffset, key.byteLength));
  return key ?? null;
}

/** Open options as JSON for the Python side (the key converted by keyJSON). */
function optionsJSON(options) {
  const out = { ...options };
  if ("encryptionKey" in out) out.encryptionKey = keyJSON(out.encryptionKey);
  return JSON.stringify(out);
}

function unwrap(reply) {
  try {
    if (reply.error) {
      throw new DataSyncError(String(reply.error.name), String(reply.error.message));
    }
    const value = reply.ok;
    return value;
  } finally {
    if (reply && typeof reply.destroy === "function") reply.destroy();
  }
}

/**
 * Make a Pyodide that datasync booted call into Python without stack switching:
 * every asyncio step then runs as a plain call instead of on a JSPI stack. Pyodide has
 * no public switch for this; its event loop asks Module.jspiSupported on every call.
 */
function withoutStackSwitching(pyodide) {
  const module = pyodide._module;
  if (module && "jspiSupported" in module) {
    module.jspiSupported = false;
  } else {
    console.warn("datasync: this Pyodide has no Module.jspiSupported; stack switching stays as it is");
  }
  return pyodide;
}

async function boot(options) {
  const webURL = new URL(options.webURL ?? DEFAULT_WEB_URL, location.href);
  const own = options.stackSwitching ? "own+jspi" : "own";
  const key = String(webURL) + "|" + (options.pyodide ? "given" : own);
  if (!runtimes.has(key)) {
    runtimes.set(key, (async () => {
      const manifest = await (await fetch(new URL("manifest.json", webURL))).json();
      let pyodide = options.pyodide;
      if (!pyodide) {
        const indexURL = String(new URL(options.indexURL ?? manifest.pyodide ?? "pyodide/", webURL));
        const { loadPyodide } = await import(new URL("pyodide.mjs", indexURL.endsWith("/") ? indexURL : indexURL + "/"));
        pyodide = await loadPyodide({ indexURL, enableRunUntilComplete: Boolean(options.stackSwitching) });
        if (!options.stackSwitching) withoutStackSwitching(pyodide);
      }
      const wheel = (name) => String(new URL(manifest.wheels[name], webURL));
      await pyodide.loadPackage([wheel("packaging"), wheel("micropip")]);
      const micropip = pyodide.pyimport("micropip");
      await micropip.install(wheel("datasync"), { deps: false });
      micropip.destroy();
      return { pyodide, bridge: pyodide.pyimport("datasync.browser.bridge") };
    })());
    runtimes.get(key).catch(() => runtimes.delete(key));
  }
  return runtimes.get(key);
}

/** One open database. Create it with DataSync.open(). */
export class Database {
  #handle;
  #closed = false;
  constructor(name, handle, pyodide) {
    this.name = name;
    this.#handle = handle;
    this.pyodide = pyodide;
  }

  #check() {
    if (this.#closed) throw new DataSyncError("DatabaseClosedError", `database '${this.name}' is closed; open it again`);
  }

  /** Run one statement: {columns, rows (arrays), rowsAffected, lastInsertRowid}. */
  async execute(sql, params = []) {
    this.#check();
    return unwrap(await this.#handle.execute(sql, params));
  }

  /**
   * Queue a write in a durable outbox (IndexedDB) and resolve like execute() once
   * applied. Once queued it is applied exactly once by whichever tab leads, even if
   * this tab closes first. After `timeoutMs` (default 30000; null: no limit) it
   * rejects with QueuedWriteTimeoutError: the write is STILL queued and will be
   * applied, so do not queue it again. Without {tabs: true}: executes and flushes.
   */
  async queueWrite(sql, params = [], { timeoutMs = 30000 } = {}) {
    this.#check();
    return unwrap(await this.#handle.queue_write(sql, params, timeoutMs));
  }

  /** Run one statement and return its rows as objects keyed by column name. */
  async query(sql, params = []) {
    this.#check();
    return unwrap(await this.#handle.query(sql, params));
  }

  /** Flush everything committed so far; resolves with the durable version. */
  async sync() {
    this.#check();
    return unwrap(await this.#handle.sync());
  }

  /** Counters: version, blocks, dirtyBlocks..., as a plain object (snake_case keys). */
  stats() {
    this.#check();
    return JSON.parse(this.#handle.stats());
  }

  /** The database as a standard SQLite file (Uint8Array). */
  async exportDatabase() {
    this.#check();
    return unwrap(await this.#handle.export_database());
  }

  /** Replace the whole database with a standard SQLite file, atomically. */
  async importDatabase(bytes) {
    this.#check();
    if (!(bytes instanceof Uint8Array)) bytes = new Uint8Array(bytes);
    return unwrap(await this.#handle.import_database(bytes));
  }

  /**
   * Copy the database into a new database `target` while it stays in use (a
   * consistent snapshot); resolves with {target, bytes, sourceVersion, targetVersion}.
   */
  async backup(target, options = {}) {
    this.#check();
    const info = unwrap(await this.#handle.backup(target, optionsJSON(options)));
    return { target: info.target, bytes: info.bytes, sourceVersion: info.source_version,
             targetVersion: info.target_version };
  }

  /** The versions restore() can return to: [{version, file_size, epoch}], oldest first. */
  async versions() {
    this.#check();
    return unwrap(await this.#handle.versions());
  }

  /** Return the database to a retained version (needs retainVersions; see README). */
  async restore(version) {
    this.#check();
    return unwrap(await this.#handle.restore(version));
  }

  /** True if this tab writes the database (always true without {tabs: true}). */
  isLeader() {
    return this.getLeaderInfo().isLeader;
  }

  /** {isLeader, leaderId, epoch, tabId} */
  getLeaderInfo() {
    this.#check();
    const info = JSON.parse(this.#handle.leader_info());
    return { isLeader: info.is_leader, leaderId: info.leader_id, epoch: info.epoch, tabId: info.tab_id };
  }

  /** Resolves once this tab is the leader. */
  async waitForLeadership() {
    this.#check();
    return unwrap(await this.#handle.wait_for_leadership());
  }

  /** Take leadership now; the current leader steps down cleanly. */
  async requestLeadership() {
    this.#check();
    return unwrap(await this.#handle.request_leadership());
  }

  /** Call `callback({version, tables, by})` after every change from any tab; returns an unsubscribe function. */
  onChange(callback) {
    this.#check();
    const remove = this.#handle.on_change((change) => callback(change));
    return () => { remove(); remove.destroy(); };
  }

  /**
   * Captured changes (open with {cdc: true}), oldest first, then live ones as they
   * are committed (in any tab). Each is {seq, table, op, key, old, new, version, at}:
   * op "insert" | "update" | "delete" | "schema" | "reset" (table "*": the whole
   * database was imported or restored; resync); key the rowid (or an object of the
   * primary key of a WITHOUT ROWID table); old/new the row as an object (null when
   * absent); version the store version that makes it durable; at Unix seconds.
   *   for await (const c of db.changes({tables: ["notes"], since: lastSeq})) { ... }
   * Options: tables (null: all), since (a seq: resume after it), consumer (resume
   * after what it acknowledged with ack()), follow (false: stop at the end).
   */
  changes({ tables = null, since = null, consumer = null, follow = true } = {}) {
    const stream = this.#changeStream({ tables, since, consumer, follow });
    return (async function* () {
      try {
        while (true) {
          const change = unwrap(await stream.next());
          if (change === undefined || change === null) return;
          yield change;
        }
      } finally {
        unwrap(await stream.close());
        stream.destroy();
      }
    })();
  }

  #changeStream({ tables = null, since = null, consumer = null, follow = true } = {}) {
    this.#check();
    return this.#handle.changes(JSON.stringify({ tables, since, consumer, follow }));
  }

  /**
   * Call `callback(change)` for every captured change (the same objects and options
   * as changes(), without `follow`), oldest first, then live; returns an unsubscribe
   * function. An error (the callback's too) ends the subscription and goes to
   * `onError` (default: console.error).
   *   const unsubscribe = db.subscribeChanges((c) => render(c), {tables: ["notes"]});
   */
  subscribeChanges(callback, { tables = null, since = null, consumer = null,
                               onError = (e) => console.error(e) } = {}) {
    const stream = this.#changeStream({ tables, since, consumer, follow: true });
    let stopped = false;
    let ended = false;
    (async () => {
      try {
        while (!stopped) {
          const change = unwrap(await stream.next());
          if (change === undefined || change === null || stopped) break;
          callback(change);
        }
      } catch (e) {
        if (!stopped) onError(e);
      } finally {
        ended = true;
        stream.destroy();
      }
    })();
    return () => {
      if (stopped || ended) return;
      stopped = true;
      stream.close().then((reply) => { if (reply.destroy) reply.destroy(); });
    };
  }

  /** Consumer `consumer` is done with every change up to `seq` (pruning may drop them). */
  async ack(consumer, seq) {
    this.#check();
    return unwrap(await this.#handle.ack(consumer, seq));
  }

  /**
   * Re-encrypt every block under `newKey` (a passphrase or 32-byte Uint8Array;
   * null decrypts), atomically in one flush; resolves with the durable version.
   * With tabs this tab becomes the leader to do it, and the other open tabs are
   * sent the key; a tab that misses it rejects with WrongKeyError from then on.
   */
  async rekey(newKey) {
    this.#check();
    return unwrap(await this.#handle.rekey(JSON.stringify(keyJSON(newKey))));
  }

  /** Flush and close. */
  async close() {
    if (this.#closed) return;
    unwrap(await this.#handle.close());
    this.#closed = true;
    this.#handle.destroy();
  }
}

export const DataSync = {
  /** Open (or create) the database `name`; see the module comment for options. */
  async open(name, options = {}) {
    const { webURL, indexURL, pyodide: given, stackSwitching, ...dbOptions } = options;
    const runtime = await boot({ webURL, indexURL, pyodide: given, stackSwitching });
    const handle = unwrap(await runtime.bridge.open(name, optionsJSON(dbOptions)));
    return new Database(name, handle, runtime.pyodide);
  },
  DataSyncError,
};

export default DataSync;
