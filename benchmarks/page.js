// The in-page half of benchmarks/browser.py (loaded by browser.html, driven with
// Playwright). Every figure is taken here with performance.now(). window.bench holds:
// the datasync JS API workloads (main thread or {worker: true}), the sahpool Worker
// driver, the raw IndexedDB floor (system C), and Pyodide access for the Python paths.
// IDBObjectStore.prototype.put/add are wrapped at load to count the bytes this page
// hands IndexedDB (window.benchIdb; datasync.js in Worker mode puts from its Worker,
// which this page cannot see).
import { SQL, users, valueBytes, w1Work, w2Updates } from "./data.js";

const now = () => performance.now();
window.benchData = { users, w1Work, w2Updates, SQL };
const counter = window.benchIdb = { bytes: 0, puts: 0 };
for (const method of ["put", "add"]) {
  const original = IDBObjectStore.prototype[method];
  IDBObjectStore.prototype[method] = function (value, ...rest) {
    counter.bytes += valueBytes(value);
    counter.puts++;
    return original.call(this, value, ...rest);
  };
}

// Event-loop health (as before): MessageChannel posts = Pyodide's asyncio callbacks.
window.benchCallbacks = 0;
const postMessage = MessagePort.prototype.postMessage;
MessagePort.prototype.postMessage = function (...args) {
  window.benchCallbacks++;
  return postMessage.apply(this, args);
};

const FLOOR_DB = "bench-floor";
const STORES = ["blocks", "scratch", "w2"];
const request = (r) => new Promise((resolve, reject) => {
  r.onsuccess = () => resolve(r.result);
  r.onerror = () => reject(r.error);
});
const complete = (tx) => new Promise((resolve, reject) => {
  tx.oncomplete = () => resolve();
  tx.onabort = () => reject(tx.error || new Error("transaction aborted"));
});
function openFloor() {
  const r = indexedDB.open(FLOOR_DB, 1);
  r.onupgradeneeded = () => { for (const s of STORES) r.result.createObjectStore(s); };
  return request(r);
}
let floor = null;
const floorDb = async () => (floor ??= await openFloor());
function randomBytes(n) {
  const a = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(a.subarray(i, Math.min(n, i + 65536)));
  return a;
}

let DataSync = null;
const dbs = {};  // key -> open datasync Database
let sahpool = null;
let sahSeq = 0;
const sahWaiting = new Map();

/** Wait until the page stops handing IndexedDB bytes (a background compaction). */
async function idbQuiet(quietMs = 1500, maxMs = 60000) {
  const t0 = now();
  let last = counter.bytes, since = now();
  while (now() - t0 < maxMs) {
    await new Promise((r) => setTimeout(r, 100));
    if (counter.bytes !== last) { last = counter.bytes; since = now(); }
    else if (now() - since >= quietMs) break;
  }
  return counter.bytes;
}

window.bench = {
  /** Boot Pyodide + datasync through the JS API (a throwaway database), untimed. */
  async boot() {
    const t0 = now();
    ({ DataSync } = await import("/js/datasync.js"));
    const db = await DataSync.open("bench-boot", { tabs: false });
    window.pyodide = db.pyodide;
    await db.close();
    const t1 = now();
    await window.pyodide.runPythonAsync("import datasync, sqlite3, js");
    return { pyodide: window.pyodide.version, boot_ms: t1 - t0, import_ms: now() - t1 };
  },

  async py(code) {
    const r = await window.pyodide.runPythonAsync(code);
    if (r && typeof r.toJs === "function") {
      const v = r.toJs({ dict_converter: Object.fromEntries });
      r.destroy();
      return v;
    }
    return r;
  },

  syncfs(populate) {  // Pyodide's FS.syncfs as a promise (system B)
    return new Promise((resolve, reject) =>
      window.pyodide.FS.syncfs(populate, (err) => (err ? reject(err) : resolve())));
  },

  async open(key, name, options) {
    const t0 = now();
    dbs[key] = await DataSync.open(name, options);
    return { ms: now() - t0, leader: dbs[key].isLeader?.() ?? null };
  },
  async close(key) { await dbs[key].close(); delete dbs[key]; },

  /** W1 through the JS API on a fresh database; writes durable after `await db.sync()`. */
  async w1(name, options, sizes, seed, insertVia) {
    const work = w1Work(sizes, seed);
    const db = await DataSync.open(name, options);
    await db.execute(SQL.users);
    await db.sync();
    const t = {}, b = {};
    const phase = async (key, fn, write) => {
      const b0 = counter.bytes, t0 = now();
      await fn();
      if (write) await db.sync();
      t[key] = now() - t0;
      b[key] = counter.bytes - b0;
    };
    await phase("insert", () => (insertVia === "executeMany"
      ? db.executeMany(SQL.insert, work.rows)
      : db.transaction(async (tx) => { for (const r of work.rows) await tx.execute(SQL.insert, r); })), true);
    await phase("reads", async () => { for (const k of work.reads) await db.query(SQL.point, [k]); }, false);
    await phase("reads_tx", () => db.transaction(async (tx) => {
      for (const k of work.reads) await tx.query(SQL.point, [k]);
    }), false);
    await phase("update", () => db.transaction(async (tx) => {
      for (const [j, k] of work.updates.entries()) await tx.execute(SQL.update, [`changed${j}@example.org`, k]);
    }), true);
    await phase("delete", () => db.transaction(async (tx) => {
      for (const k of work.deletes) await tx.execute(SQL.del, [k]);
    }), true);
    await db.close();
    return { times: t, bytes: b };
  },

  /** Bulk load `rows` users through db.executeMany (one call), until durable. */
  async bulk(key, rows, nameLen, seed) {
    const db = dbs[key];
    const data = users(rows, nameLen, seed);
    await db.execute(SQL.users);
    await db.sync();
    const b0 = counter.bytes, t0 = now();
    await db.executeMany(SQL.insert, data);
    await db.sync();
    const ms = now() - t0;
    const during = counter.bytes - b0;
    const after = (await idbQuiet()) - b0;
    const [{ n }] = await db.query("SELECT page_count * page_size AS n FROM pragma_page_count, pragma_page_size");
    return { ms, bytes_during: during, bytes_after: after, db_bytes: n };
  },

  /** W2: n single-row autocommit UPDATEs on an open (strict) database, each awaited. */
  async commits(key, n, rows, seed) {
    const db = dbs[key];
    const lat = [], bytes = [];
    for (const params of w2Updates(n, rows, seed)) {
      const b0 = counter.bytes, t0 = now();
      await db.execute(SQL.update, params);
      lat.push(now() - t0);
      bytes.push(counter.bytes - b0);
    }
    return { lat, bytes };
  },

  async exportImage(key) { window.benchImage = await dbs[key].exportDatabase(); return window.benchImage.byteLength; },

  /** W3 through the JS API: open + count(*) (Pyodide booted already); memory around it. */
  async cold(name, options) {
    const t0 = now();
    const db = await DataSync.open(name, options);
    const [{ n }] = await db.query(SQL.count);
    const ms = now() - t0;
    dbs.cold = db;
    return { ms, count: n };
  },
  async scan(key) { return (await dbs[key].query(SQL.scan))[0].n; },
  wasmHeap() { return window.pyodide._module.HEAPU8.length; },
  /** performance.measureUserAgentSpecificMemory() (cross-origin isolated page; the
   * browser is launched with ForceEagerMeasureMemory), or null after 20 s. */
  async uaMemory() {
    if (!performance.measureUserAgentSpecificMemory) return null;
    const timeout = new Promise((r) => setTimeout(() => r(null), 20000));
    const m = await Promise.race([performance.measureUserAgentSpecificMemory(), timeout]);
    return m ? m.bytes : null;
  },

  // ---- sqlite-wasm opfs-sahpool in a module Worker -------------------------------
  sah(op, args) {
    if (!sahpool) {
      sahpool = new Worker(new URL("./sahpool.worker.js", import.meta.url), { type: "module" });
      sahpool.onmessage = ({ data }) => {
        const [resolve, reject] = sahWaiting.get(data.id);
        sahWaiting.delete(data.id);
        if (data.error) reject(new Error(data.error)); else resolve(data.result);
      };
    }
    const id = ++sahSeq;
    return new Promise((resolve, reject) => {
      sahWaiting.set(id, [resolve, reject]);
      sahpool.postMessage({ id, op, args });
    });
  },
  sahStop() { sahpool?.terminate(); sahpool = null; },

  // ---- C: raw IndexedDB, 4 KiB records, one transaction per batch -----------------
  async putRecords(n, durability) {
    const db = await floorDb();
    const values = Array.from({ length: n }, () => randomBytes(4096));
    const t0 = now();
    const tx = db.transaction("scratch", "readwrite", { durability });
    const store = tx.objectStore("scratch");
    for (let i = 0; i < n; i++) store.put(values[i], i);
    await complete(tx);
    return now() - t0;
  },
  /** n get()s of the 4 KiB records putRecords left (of `have`), one readonly transaction. */
  async getRecords(n, have) {
    const db = await floorDb();
    const t0 = now();
    const store = db.transaction("scratch", "readonly").objectStore("scratch");
    const reqs = [];
    for (let i = 0; i < n; i++) reqs.push(request(store.get((i * 7919) % have)));
    await Promise.all(reqs);
    return now() - t0;
  },
  /** The image (window.benchImage) as 4 KiB records in one transaction. */
  async writeImage(durability) {
    const db = await floorDb(), image = window.benchImage;
    const n = Math.ceil(image.byteLength / 4096);
    const chunks = Array.from({ length: n }, (_, i) => image.slice(i * 4096, (i + 1) * 4096));
    const t0 = now();
    const tx = db.transaction("blocks", "readwrite", { durability });
    const store = tx.objectStore("blocks");
    store.clear();
    for (let i = 0; i < n; i++) store.put(chunks[i], i);
    await complete(tx);
    return { records: n, bytes: image.byteLength, ms: now() - t0 };
  },
  /** n commits, each one 4 KiB put in its own transaction, transaction() -> oncomplete. */
  async commitLatency(n, durability) {
    const db = await floorDb();
    const values = Array.from({ length: n }, () => randomBytes(4096));
    const out = [];
    for (let i = 0; i < n; i++) {
      const t0 = now();
      const tx = db.transaction("w2", "readwrite", { durability });
      const done = complete(tx);
      tx.objectStore("w2").put(values[i], i);
      await done;
      out.push(now() - t0);
    }
    return out;
  },
  /** W3 floor after a relaunch: open + getAll() of the image's 4 KiB records. */
  async coldRead() {
    const t0 = now();
    const db = await openFloor();
    const values = await request(db.transaction("blocks", "readonly").objectStore("blocks").getAll());
    let bytes = 0;
    for (const v of values) bytes += v.byteLength;
    const ms = now() - t0;
    db.close();
    return { ms, records: values.length, bytes };
  },
};
window.benchReady = true;
