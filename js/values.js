/**
 * values.js: what datasync.js checks before a statement leaves JavaScript.
 *
 * Usage (datasync.js does this for every call; apps need not):
 *   import { checkParams } from "./values.js";
 *   checkParams([1, "a", null], "db.execute()");   // -> [1, "a", null]
 *   checkParams([new Date()], "db.execute()");     // throws TypeError: parameter 1 is a Date ...
 *
 * A parameter is bound only if SQLite gets exactly the value JavaScript holds:
 * null, a number, a string, a boolean, a bigint within signed 64 bits, or bytes
 * (Uint8Array, ArrayBuffer or any typed array/DataView: a BLOB of its bytes).
 * Anything else (a Date, a plain object or array inside a positional array, a Symbol,
 * a function, undefined, NaN, a bigint beyond 64 bits) is refused with a TypeError
 * naming its position (1-based, like SQLite's ?NNN) or its name, before any call.
 */

export const SUPPORTED =
  "null, a number, a string, a boolean, a bigint within 64 bits, or a Uint8Array/ArrayBuffer/typed array (BLOB)";
const MIN_INT64 = -(2n ** 63n);
const MAX_INT64 = 2n ** 63n - 1n;

const tag = (value) => Object.prototype.toString.call(value).slice(8, -1);

function isPlainObject(value) {
  if (value === null || typeof value !== "object") return false;
  const proto = Object.getPrototypeOf(value);
  // another realm's (an iframe's) Object.prototype also has a null prototype
  return proto === null || proto === Object.prototype ||
    (tag(value) === "Object" && Object.getPrototypeOf(proto) === null);
}

function isBuffer(value) {
  const t = tag(value);
  return t === "ArrayBuffer" || t === "SharedArrayBuffer";
}

/** A short description of `value` for an error message. */
export function describe(value) {
  if (value === undefined) return "undefined";
  if (value === null) return "null";
  if (typeof value === "string") return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + "…" : value)}`;
  if (typeof value === "boolean") return String(value);
  if (typeof value === "symbol") return `a Symbol (${String(value)})`;
  if (typeof value === "function") return `a function (${value.name || "anonymous"})`;
  if (typeof value === "bigint") return `the bigint ${value}n (beyond signed 64 bits)`;
  if (typeof value === "number") return String(value);
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (tag(value) === "Date") {
    const time = value.getTime();
    return `a Date (${Number.isNaN(time) ? "Invalid Date" : value.toISOString()})`;
  }
  if (isPlainObject(value)) return "a plain object";
  const name = value?.constructor?.name;
  return name ? `a ${name}` : `a ${tag(value)}`;
}

function hint(value) {
  if (value === undefined) return " Pass null for SQL NULL.";
  if (tag(value) === "Date") return " Pass date.toISOString() (TEXT) or date.getTime() (INTEGER ms).";
  if (typeof value === "bigint") return " Store it as a string: String(value).";
  if (typeof value === "number") return " NaN would be stored as NULL: pass null if that is meant.";
  if (Array.isArray(value) || isPlainObject(value)) {
    return " Store JSON with JSON.stringify(value); named parameters go in ONE plain object" +
      " given as the whole params argument ({name: value} for :name).";
  }
  return "";
}

function refuse(value, where) {
  return new TypeError(`${where} is ${describe(value)}: datasync binds ${SUPPORTED}.${hint(value)}`);
}

/** One value checked (bytes normalized to a Uint8Array of exactly its bytes). */
export function bindable(value, where) {
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      if (Number.isNaN(value)) throw refuse(value, where);
      return value;
    case "bigint":
      if (value < MIN_INT64 || value > MAX_INT64) throw refuse(value, where);
      return value;
    case "object":
      if (value === null) return null;
      if (isBuffer(value)) return new Uint8Array(value);
      if (ArrayBuffer.isView(value)) {
        const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
        // a view of part of a buffer: copy its bytes (a Worker would be sent the whole buffer)
        return bytes.byteLength === value.buffer.byteLength && tag(value) === "Uint8Array" ? value : bytes.slice();
      }
      throw refuse(value, where);
    default:
      throw refuse(value, where);
  }
}

/**
 * The params of one statement, checked: an array (positional ?, ?NNN) or one plain
 * object (named :name, @name, $name); undefined or null mean none.
 *   checkParams({id: 7}, "db.query()")   // -> {id: 7}
 */
export function checkParams(params, call, prefix = "") {
  if (params === undefined || params === null) return [];
  if (Array.isArray(params)) {
    return params.map((value, i) => bindable(value, `${call}: ${prefix}parameter ${i + 1}`));
  }
  if (isPlainObject(params)) {
    const out = {};
    for (const [name, value] of Object.entries(params)) {
      out[name] = bindable(value, `${call}: ${prefix}parameter :${name}`);
    }
    return out;
  }
  throw new TypeError(
    `${call}: ${prefix}params is ${describe(params)}: pass an array for positional parameters ` +
    "(?, ?NNN) or one plain object for named ones (:name), or nothing.");
}

/** executeMany rows: an array (or iterable) of params, each checked. */
export function checkRows(rows, call) {
  if (rows === null || typeof rows !== "object" || typeof rows[Symbol.iterator] !== "function") {
    throw new TypeError(`${call}: rows is ${describe(rows)}: pass an array of params arrays (or objects), one per row.`);
  }
  return Array.from(rows, (row, i) => {
    if (row === null || row === undefined) {
      throw new TypeError(`${call}: row ${i + 1} is ${describe(row)}: each row is an array of parameters or one plain object.`);
    }
    return checkParams(row, call, `row ${i + 1}, `);
  });
}

/** batch statements: an array of [sql, params?], each checked. */
export function checkStatements(statements, call) {
  if (!Array.isArray(statements)) {
    throw new TypeError(`${call}: statements is ${describe(statements)}: pass an array of [sql, params] pairs.`);
  }
  return statements.map((entry, i) => {
    if (!Array.isArray(entry) || typeof entry[0] !== "string" || entry.length > 2) {
      throw new TypeError(`${call}: statement ${i + 1} is ${describe(entry)}: each statement is [sql] or [sql, params].`);
    }
    return [entry[0], checkParams(entry[1], call, `statement ${i + 1}, `)];
  });
}

/** `sql` checked to be a string. */
export function checkSQL(sql, call) {
  if (typeof sql !== "string") throw new TypeError(`${call}: sql is ${describe(sql)}: pass the SQL text as a string.`);
  return sql;
}

/** An encryption key as JSON for the Python side: a string, or the 32 bytes as a list. */
export function keyJSON(key) {
  if (isBuffer(key)) key = new Uint8Array(key);
  if (ArrayBuffer.isView(key)) return Array.from(new Uint8Array(key.buffer, key.byteOffset, key.byteLength));
  return key ?? null;
}

/** Open options as JSON for the Python side (the key converted by keyJSON). */
export function optionsJSON(options) {
  const out = { ...options };
  if ("encryptionKey" in out) out.encryptionKey = keyJSON(out.encryptionKey);
  return JSON.stringify(out);
}

/** A value JSON carries exactly as Pyodide converts it (a safe integer, a finite
 * non-integer, a string, a boolean, null); else (bytes, bigint, -0, 1e300) Pyodide's
 * own conversion is used. */
function jsonExact(value) {
  switch (typeof value) {
    case "string":
    case "boolean":
      return true;
    case "number":
      return Number.isInteger(value) ? Number.isSafeInteger(value) && !Object.is(value, -0) : Number.isFinite(value);
    case "object":
      return value === null;
    default:
      return false;
  }
}

const exactParams = (params) => (Array.isArray(params) ? params : Object.values(params)).every(jsonExact);

/**
 * Checked params (checkParams) as JSON text when JSON carries each value exactly:
 * one string crosses into Python instead of a proxy per value; else as they are.
 *   paramsJSON([1, "a", null])        // -> '[1,"a",null]'
 *   paramsJSON([new Uint8Array(2)])   // -> the array itself
 */
export function paramsJSON(params) {
  return params && exactParams(params) ? JSON.stringify(params) : params;
}

/** executeMany's checked rows as JSON text (each value exact), else as they are. */
export function rowsJSON(rows) {
  return rows.every(exactParams) ? JSON.stringify(rows) : rows;
}

/** batch's checked [sql, params] statements as JSON text (each value exact), else as they are. */
export function statementsJSON(statements) {
  return statements.every(([, params]) => exactParams(params)) ? JSON.stringify(statements) : statements;
}
