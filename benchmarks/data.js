// Workload data shared by every contender of benchmarks/browser.py (page, sahpool
// Worker, and Pyodide through `js.benchData`): the same seeded rows for everyone.
//   import { users, w1Work, SQL } from "./data.js";
//   const rows = users(1000, 10, 42);   // [[id, name, email], ...]
export const SQL = {
  users: "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, email TEXT)",
  insert: "INSERT INTO users(id, name, email) VALUES (?, ?, ?)",
  point: "SELECT name, email FROM users WHERE id = ?",
  update: "UPDATE users SET email = ? WHERE id = ?",
  del: "DELETE FROM users WHERE id = ?",
  count: "SELECT count(*) AS n FROM users",
  scan: "SELECT sum(length(name) + length(email)) AS n FROM users",
};

/** mulberry32: a small seeded PRNG, floats in [0, 1). */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const LETTERS = "abcdefghijklmnopqrstuvwxyz";

/** n users rows; names are `user000001 ` + about `nameLen` random letters. */
export function users(n, nameLen, seed) {
  const r = rng(seed);
  const rows = new Array(n);
  for (let i = 1; i <= n; i++) {
    const len = Math.max(1, Math.round(nameLen * (0.5 + r())));
    let s = "";
    for (let j = 0; j < len; j++) s += LETTERS[(r() * 26) | 0];
    const id = String(i).padStart(6, "0");
    rows[i - 1] = [i, `user${id} ${s}`, `user${id}@example.com`];
  }
  return rows;
}

function sample(r, n, k) {
  const pool = Array.from({ length: n }, (_, i) => i + 1);
  for (let i = 0; i < k; i++) {
    const j = i + ((r() * (n - i)) | 0);
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  return pool.slice(0, k);
}

/** W1: rows to insert, ids to read, to update, to delete (the same for every path). */
export function w1Work(sizes, seed) {
  const [rows, reads, updates, deletes] = sizes;
  const r = rng(seed * 7 + 1);
  return {
    rows: users(rows, 8, seed),
    reads: Array.from({ length: reads }, () => 1 + ((r() * rows) | 0)),
    updates: sample(r, rows, updates),
    deletes: sample(r, rows, deletes),
  };
}

/** W2: `n` (email, id) pairs for single-row UPDATEs of a `rows`-row table. */
export function w2Updates(n, rows, seed) {
  const r = rng(seed);
  return Array.from({ length: n }, (_, i) => [`changed${i}.${seed}@example.org`, 1 + ((r() * rows) | 0)]);
}

/** Byte size of a structured-cloneable value as IndexedDB gets it (strings: UTF-16 code units). */
export function valueBytes(v) {
  if (v == null || typeof v === "boolean") return 0;
  if (typeof v === "number" || typeof v === "bigint") return 8;
  if (typeof v === "string") return v.length;
  if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return v.byteLength;
  if (v instanceof Blob) return v.size;
  let n = 0;
  if (Array.isArray(v)) for (const x of v) n += valueBytes(x);
  else for (const k of Object.keys(v)) n += valueBytes(v[k]);
  return n;
}
