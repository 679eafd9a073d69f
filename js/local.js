/**
 * local.js: Pyodide + datasync in THIS thread (the page, or datasync's Worker), behind
 * the handle interface datasync.js's Database talks to.
 *
 * Usage (datasync.js and worker.js do this; apps use DataSync.open):
 *   import { openLocal } from "./local.js";
 *   const { handle, pyodide } = await openLocal("app", '{"durability": "strict"}', {});
 *   const result = await handle.execute("SELECT ?", [1]);   // {columns, rows, ...}
 *
 * A handle's methods resolve with plain JS values (structured-cloneable: a Worker
 * posts them as they are) and reject with DataSyncError, whose name is the Python
 * exception's class name. The Python side is datasync/browser/bridge.py: each of its
 * calls answers at once {ok: value}, {error: {name, message}} or a statement's result
 * as JSON text, or else its task, to await (see settle()). Parameters go as JSON
 * text when JSON carries them exactly (values.js paramsJSON).
 */
import { paramsJSON, rowsJSON, statementsJSON } from "./values.js";

export const DEFAULT_WEB_URL = new URL("../web/", import.meta.url);
const runtimes = new Map(); // webURL|flavour -> Promise<{pyodide, bridge}>

/** An Error named after the Python exception it stands for. */
export class DataSyncError extends Error {
  constructor(name, message) {
    super(message);
    this.name = name;
  }
}

/** The value of a bridge reply, or its error thrown as a DataSyncError. */
export function unwrap(reply) {
  try {
    if (reply.error) throw new DataSyncError(String(reply.error.name), String(reply.error.message));
    return reply.ok;
  } finally {
    if (reply && typeof reply.destroy === "function") reply.destroy();
  }
}

/** A query's rows from the bridge's JSON [columns, rows]: objects keyed by column. */
function objects(text) {
  const [columns, rows] = JSON.parse(text);
  const n = columns.length;
  return rows.map((row) => {
    const object = {};
    for (let i = 0; i < n; i++) object[columns[i]] = row[i];
    return object;
  });
}

/**
 * What a bridge call answered, as its value: JSON text (always a success: decoded),
 * a reply (unwrapped), or, for a call that had to wait, its task (a PyProxy: awaited,
 * then destroyed). Only the last costs a trip through the event loop.
 */
function settle(answer, decode = JSON.parse) {
  if (typeof answer === "string") return decode(answer);
  if (answer && typeof answer.then === "function") return settleLater(answer, decode);
  return unwrap(answer);
}

async function settleLater(task, decode) {
  let answer;
  try {
    answer = await task;
  } finally {
    task.destroy();
  }
  return typeof answer === "string" ? decode(answer) : unwrap(answer);
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

/** The bytes of the datasync wheel (a promise), or a WebBuildError naming the URL. */
async function fetchWheel(url) {
  const response = await fetch(url);
  if (!response.ok) {
    throw new DataSyncError("WebBuildError", `${url} answered ${response.status}: rebuild the ` +
      "web folder (`python -m datasync build`) so that its manifest names the wheel it holds");
  }
  return new Uint8Array(await response.arrayBuffer());
}

/**
 * Put the datasync wheel on sys.path before Python starts (loadPyodide's fsInit):
 * the wheel file itself in site-packages, and a .pth naming it, so Python imports the
 * pure-Python package from the zip (zipimport). Unlike loadPackage(url), this runs no
 * Python installer (tarfile, zipfile, shutil, importlib.metadata: ~0.3 s of boot) and
 * the download overlaps Pyodide's own (issue 11: boot time).
 */
async function installWheel(FS, sitePackages, url, wheel) {
  let bytes;
  try {
    bytes = await wheel;
  } catch {
    return; // boot() awaits the same promise after loadPyodide and throws its error
  }
  const file = `${sitePackages}/${url.slice(url.lastIndexOf("/") + 1)}`;
  FS.writeFile(file, bytes);
  FS.writeFile(`${sitePackages}/datasync-wheel.pth`, `${file}\n`);
}

/** Boot (once per webURL and flavour) Pyodide with the datasync wheel installed. */
export async function boot(options = {}) {
  const webURL = new URL(options.webURL ?? DEFAULT_WEB_URL, location.href);
  const own = options.stackSwitching ? "own+jspi" : "own";
  const key = String(webURL) + "|" + (options.pyodide ? "given" : own);
  if (!runtimes.has(key)) {
    runtimes.set(key, (async () => {
      const response = await fetch(new URL("manifest.json", webURL));
      if (!response.ok) {
        throw new DataSyncError("WebBuildError", `${new URL("manifest.json", webURL)} answered ` +
          `${response.status}: pass webURL, the folder \`python -m datasync build\` made (or ` +
          "node_modules/datasync/web/ of the npm package)");
      }
      const manifest = await response.json();
      const wheelURL = String(new URL(manifest.wheels.datasync, webURL));
      let pyodide = options.pyodide;
      if (!pyodide) {
        const indexURL = String(new URL(options.indexURL ?? manifest.pyodide ?? "pyodide/", webURL));
        const loader = String(new URL("pyodide.mjs", indexURL.endsWith("/") ? indexURL : indexURL + "/"));
        const wheel = fetchWheel(wheelURL); // downloads while Pyodide boots
        wheel.catch(() => {}); // handled below, after loadPyodide
        // a URL known only at run time: bundlers must leave this import to the browser
        const { loadPyodide } = await import(/* webpackIgnore: true */ /* @vite-ignore */ loader);
        pyodide = await loadPyodide({
          indexURL,
          enableRunUntilComplete: Boolean(options.stackSwitching),
          fsInit: (FS, { sitePackages }) => installWheel(FS, sitePackages, wheelURL, wheel),
        });
        await wheel; // a failed download: its WebBuildError, not "No module named datasync"
        if (!options.stackSwitching) withoutStackSwitching(pyodide);
      } else {
        // A Pyodide passed in is already running: Pyodide installs the wheel from its URL.
        await pyodide.loadPackage(wheelURL);
      }
      return { pyodide, bridge: pyodide.pyimport("datasync.browser.bridge") };
    })());
    runtimes.get(key).catch(() => runtimes.delete(key));
  }
  return runtimes.get(key);
}

/**
 * Open `name` here: {handle: LocalHandle, pyodide}. `optionsJSON` uses JS names; with
 * a `syncUrl` it opens a replica (datasync/browser/sync_bridge.py), this tab's alone,
 * whose conflicts go to `onConflict` (a function, or null).
 */
export async function openLocal(name, optionsJSON, bootOptions, onConflict = null) {
  const runtime = await boot(bootOptions);
  if (JSON.parse(optionsJSON).syncUrl == null) {
    return { handle: new LocalHandle(unwrap(await runtime.bridge.open(name, optionsJSON))), pyodide: runtime.pyodide };
  }
  const syncBridge = runtime.pyodide.pyimport("datasync.browser.sync_bridge");
  try {
    const h = unwrap(await syncBridge.open(name, optionsJSON, onConflict ?? null));
    return { handle: new LocalHandle(h), pyodide: runtime.pyodide };
  } finally {
    syncBridge.destroy();
  }
}

/** A migration's JS steps for the bridge: each gets the bridge's transaction as a LocalTx. */
const steps = (functions) => functions.map((fn) => (t) => fn(new LocalTx(t)));

/** A transaction of a LocalHandle (bridge: handle.begin(mode) -> t; or a migration step's). */
export class LocalTx {
  #t;
  constructor(t) { this.#t = t; }
  async execute(sql, params) { return settle(this.#t.execute(sql, paramsJSON(params))); }
  async query(sql, params) { return settle(this.#t.query(sql, paramsJSON(params)), objects); }
  async executeMany(sql, rows) { return settle(this.#t.execute_many(sql, rowsJSON(rows))); }
  async batch(statements) { return settle(this.#t.batch(statementsJSON(statements))); }
  /** Commit; if that fails, roll back (best effort) and throw the commit's error. */
  async commit() {
    try {
      await settle(this.#t.commit());
    } catch (error) {
      try { await settle(this.#t.rollback()); } catch { /* the commit's error says it */ }
      throw error;
    } finally {
      this.#t.destroy();
    }
  }
  async rollback() {
    try { await settle(this.#t.rollback()); } finally { this.#t.destroy(); }
  }
}

/** A change stream of a LocalHandle: next() -> change | null (ended); close(). */
export class LocalStream {
  #s;
  constructor(s) { this.#s = s; }
  async next() { return (await settle(this.#s.next())) ?? null; }
  async close() {
    try { await settle(this.#s.close()); } finally { this.#s.destroy(); }
  }
}

/** The bridge's JsDatabase in this thread, as the handle interface. */
export class LocalHandle {
  #h;
  constructor(h) { this.#h = h; }
  async execute(sql, params) { return settle(this.#h.execute(sql, paramsJSON(params))); }
  async query(sql, params) { return settle(this.#h.query(sql, paramsJSON(params)), objects); }
  async executeMany(sql, rows) { return settle(this.#h.execute_many(sql, rowsJSON(rows))); }
  async batch(statements) { return settle(this.#h.batch(statementsJSON(statements))); }
  async exec(script) { await settle(this.#h.exec_script(script)); }
  async begin(mode) {
    return new LocalTx(await settle(mode === undefined ? this.#h.begin() : this.#h.begin(mode)));
  }
  async queueWrite(sql, params, timeoutMs) { return settle(this.#h.queue_write(sql, params, timeoutMs)); }
  async sync() { return settle(this.#h.sync()); }
  stats() { return JSON.parse(this.#h.stats()); }
  leaderInfo() { return JSON.parse(this.#h.leader_info()); }
  /** {stats, leader} as JSON text, in one call (what a Worker sends its page). */
  state() { return this.#h.state(); }
  async waitForLeadership() { return settle(this.#h.wait_for_leadership()); }
  async requestLeadership() { return settle(this.#h.request_leadership()); }
  async exportDatabase() { return settle(this.#h.export_database()); }
  async importDatabase(bytes) { return settle(this.#h.import_database(bytes)); }
  async backup(target, optionsJSON) { return settle(this.#h.backup(target, optionsJSON)); }
  async versions() { return settle(this.#h.versions()); }
  async restore(version) { return settle(this.#h.restore(version)); }
  async ack(consumer, seq) { return settle(this.#h.ack(consumer, seq)); }
  async rekey(keyJSON) { return settle(this.#h.rekey(keyJSON)); }
  // a replica's (sync_bridge.JsReplica); datasync.js calls them only on one
  async pull() { return settle(this.#h.pull()); }
  async push() { return settle(this.#h.push()); }
  syncStatus() { return JSON.parse(this.#h.sync_status()); }
  async conflicts() { return settle(this.#h.conflicts()); }
  async setOffline(offline) { return JSON.parse(this.#h.set_offline(Boolean(offline))); }
  async setAuthToken(token) { return JSON.parse(this.#h.set_auth_token(token)); }
  /** Call `callback(change)` after every change; returns an unsubscribe function. */
  onChange(callback) {
    const remove = this.#h.on_change((change) => callback(change));
    return () => { remove(); remove.destroy(); };
  }
  // the app layer's (bridge_app.py); `functions`: a migration's JS steps, each
  // given this handle's transactions (LocalTx)
  async migrate(spec, functions, target) { return settle(this.#h.migrate(spec, steps(functions), target)); }
  async rollback(spec, functions, n) { return settle(this.#h.rollback(spec, steps(functions), n)); }
  async migrationStatus(spec, functions) { return settle(this.#h.migration_status(spec, steps(functions))); }
  /** `callback(rows)` now and when they change; resolves with the unsubscriber. */
  async live(sql, params, callback) {
    const off = await settle(this.#h.live(sql, paramsJSON(params),
      (rows) => callback(typeof rows === "string" ? JSON.parse(rows) : rows)));
    let live = true;
    return () => { if (live) { live = false; off(); off.destroy(); } };
  }
  async cached(sql, params, ttl) { return settle(this.#h.cached(sql, paramsJSON(params), ttl)); }
  async explain(sql, params) { return settle(this.#h.explain(sql, paramsJSON(params))); }
  metrics() { return settle(this.#h.metrics()); }
  slowQueries(thresholdMs, limit) { return settle(this.#h.slow_queries(thresholdMs, limit)); }
  /** {metrics, slow} as JSON text (what a Worker sends its page once asked). */
  appState(slowThresholdMs, slowLimit) { return this.#h.app_state(slowThresholdMs, slowLimit); }
  /** A LocalStream of captured changes; `optionsJSON`: {tables, since, consumer, follow}. */
  changes(optionsJSON) { return new LocalStream(this.#h.changes(optionsJSON)); }
  async close() {
    await settle(this.#h.close());
    this.#h.destroy();
  }
}
