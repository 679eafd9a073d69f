// The sqlite-wasm contender of benchmarks/browser.py: npm @sqlite.org/sqlite-wasm with
// its `opfs-sahpool` VFS, in this module Worker. Loaded from the local server's
// /node_modules/ (never a CDN). Every figure is taken here with performance.now(); the
// page only sends {id, op, args} and gets {id, result} or {id, error}.
import { SQL, users, w1Work, w2Updates } from "./data.js";

const MODULE = "/node_modules/@sqlite.org/sqlite-wasm/dist/index.mjs";
const now = () => performance.now();
let sqlite3 = null;
let pool = null;
const open = {};  // filename -> oo1 DB

async function init() {
  const t0 = now();
  const { default: sqlite3InitModule } = await import(MODULE);
  sqlite3 = await sqlite3InitModule();
  const t1 = now();
  pool = await sqlite3.installOpfsSAHPoolVfs({ name: "bench-sahpool", initialCapacity: 12 });
  return { init_ms: t1 - t0, pool_ms: now() - t1, version: sqlite3.version.libVersion };
}

function db(file) {
  return (open[file] ??= new pool.OpfsSAHPoolDb(file));
}

function close(file) {
  open[file]?.close();
  delete open[file];
}

function insertAll(d, rows) {
  const stmt = d.prepare(SQL.insert);
  try {
    d.exec("BEGIN");
    for (const r of rows) stmt.bind(r).stepReset();
    d.exec("COMMIT");
  } finally {
    stmt.finalize();
  }
}

const ops = {
  init,
  // W1 on a fresh file: every phase from its first statement to COMMIT's return.
  w1({ sizes, seed }) {
    const work = w1Work(sizes, seed);
    const file = `/w1-${seed}.db`;
    const d = db(file);
    d.exec(SQL.users);
    const t = {};
    let t0 = now();
    insertAll(d, work.rows);
    t.insert = now() - t0;
    t0 = now();
    for (const k of work.reads) d.selectArray(SQL.point, [k]);
    t.reads = now() - t0;
    t0 = now();
    d.exec("BEGIN");
    for (const k of work.reads) d.selectArray(SQL.point, [k]);
    d.exec("COMMIT");
    t.reads_tx = now() - t0;
    t0 = now();
    d.exec("BEGIN");
    work.updates.forEach((k, j) => d.exec({ sql: SQL.update, bind: [`changed${j}@example.org`, k] }));
    d.exec("COMMIT");
    t.update = now() - t0;
    t0 = now();
    d.exec("BEGIN");
    for (const k of work.deletes) d.exec({ sql: SQL.del, bind: [k] });
    d.exec("COMMIT");
    t.delete = now() - t0;
    close(file);
    pool.unlink(file);
    return t;
  },
  // Bulk load: `rows` users in one transaction (rows made here, untimed).
  build({ file, rows, nameLen, seed }) {
    const data = users(rows, nameLen, seed);
    const d = db(file);
    d.exec(SQL.users);
    const t0 = now();
    insertAll(d, data);
    const ms = now() - t0;
    return { ms, bytes: d.selectValue("PRAGMA page_count") * d.selectValue("PRAGMA page_size") };
  },
  // W2: single-row autocommit UPDATEs, each durable when exec returns (xSync = flush()).
  commits({ file, n, rows, seed }) {
    const d = db(file);
    const lat = [];
    for (const params of w2Updates(n, rows, seed)) {
      const t0 = now();
      d.exec({ sql: SQL.update, bind: params });
      lat.push(now() - t0);
    }
    return lat;
  },
  // W3: pool install + open + count(*), after init (the runtime, untimed like Pyodide's boot).
  async cold({ file }) {
    const { default: sqlite3InitModule } = await import(MODULE);
    sqlite3 = await sqlite3InitModule();
    const heap0 = sqlite3.wasm.heap8u().length;
    const t0 = now();
    pool = await sqlite3.installOpfsSAHPoolVfs({ name: "bench-sahpool", initialCapacity: 12 });
    const count = db(file).selectValue(SQL.count);
    const ms = now() - t0;
    const heap1 = sqlite3.wasm.heap8u().length;
    db(file).selectValue(SQL.scan);
    return { ms, count, heap0, heap1, heap2: sqlite3.wasm.heap8u().length,
             bytes: db(file).selectValue("PRAGMA page_count") * db(file).selectValue("PRAGMA page_size") };
  },
  // Boot: runtime + pool + a first query (the page times navigation -> this reply).
  async first() {
    await init();
    const row = db("/boot.db").selectValue("SELECT 1");
    return { row, resources: resources() };
  },
  close({ file }) { close(file); return true; },
};

function resources() {
  let transfer = 0, encoded = 0, count = 0;
  for (const e of performance.getEntriesByType("resource")) {
    transfer += e.transferSize; encoded += e.encodedBodySize; count++;
  }
  return { transfer, encoded, count };
}

self.onmessage = async ({ data: { id, op, args } }) => {
  try {
    self.postMessage({ id, result: await ops[op](args ?? {}) });
  } catch (error) {
    self.postMessage({ id, error: String(error?.stack ?? error) });
  }
};
