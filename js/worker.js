/**
 * worker.js: the module Worker behind DataSync.open(name, {worker: true}). It boots
 * Pyodide + datasync off the page's main thread and answers remote.js's messages.
 *
 * Usage (remote.js starts it; apps only pass {worker: true}):
 *   const worker = new Worker(new URL("./worker.js", import.meta.url), {type: "module"});
 *   worker.postMessage({id: 1, op: "open", args: ["app", "{}", {webURL}]});
 *   // -> {id: 1, ok: {ref: 1, state: {stats, leader}}}
 *
 * Messages in: {id, op: "open", args: [name, optionsJSON, bootOptions]},
 * {id, op: "call", ref, method, args} (ref: a database, transaction or change stream),
 * {id, op: "onChange", ref, sub}, {op: "offChange", sub}. Out: {id, ok, state?} or
 * {id, error: {name, message}}; events {event: "change", sub, change} and
 * {event: "state", ref, state} (a database's stats/leader info changed). A state is
 * JSON text of {stats, leader}, sent only when it differs from the last one sent
 * (the page parses it when stats() or getLeaderInfo() asks). A page's
 * {datasync: "lifecycle"} message (pagehide, hidden) is handled by datasync's Python
 * (datasync/browser/lifecycle.py): every open database flushes.
 */
import { DataSyncError, LocalHandle, LocalStream, LocalTx, openLocal } from "./local.js";

const objects = new Map(); // ref -> {object, db: the ref of its database}
const subscriptions = new Map(); // sub -> unsubscribe
const lastState = new Map(); // database ref -> JSON of the state last posted
let nextRef = 1;

/** Methods a page may call, by kind of object. */
const METHODS = {
  db: new Set(["execute", "query", "executeMany", "batch", "exec", "begin", "queueWrite", "sync",
    "waitForLeadership", "requestLeadership", "exportDatabase", "importDatabase", "backup",
    "versions", "restore", "ack", "rekey", "changes", "close",
    "pull", "push", "conflicts", "setOffline", "setAuthToken"]), // the last five: a replica's
  tx: new Set(["execute", "query", "executeMany", "batch", "commit", "rollback"]),
  stream: new Set(["next", "close"]),
};

const kindOf = (object) =>
  object instanceof LocalHandle ? "db" : object instanceof LocalTx ? "tx" : object instanceof LocalStream ? "stream" : null;

function register(object, db) {
  const ref = nextRef++;
  objects.set(ref, { object, db: db ?? ref });
  return ref;
}

/** The state the page reads synchronously (db.stats(), db.getLeaderInfo()) as JSON
 * text, or undefined if the page has it already (or the database closed meanwhile). */
function changedState(ref) {
  const entry = objects.get(ref);
  if (!entry) return undefined;
  let state;
  try {
    state = entry.object.state();
  } catch {
    return undefined; // closed meanwhile
  }
  if (lastState.get(ref) === state) return undefined;
  lastState.set(ref, state);
  return state;
}

const transferOf = (value) => (value instanceof Uint8Array && value.byteOffset === 0 &&
  value.byteLength === value.buffer.byteLength ? [value.buffer] : []);

async function handle(message) {
  switch (message.op) {
    case "open": {
      const [name, optionsJSON, bootOptions] = message.args;
      const { handle } = await openLocal(name, optionsJSON, bootOptions);
      const ref = register(handle);
      // a commit (this tab's, or another's applied here) changes stats: post them at once
      objects.get(ref).off = handle.onChange(() => queueMicrotask(() => postState(ref)));
      return { ok: { ref, state: changedState(ref) } };
    }
    case "call": {
      const entry = objects.get(message.ref);
      const kind = entry && kindOf(entry.object);
      if (!entry || !METHODS[kind].has(message.method)) {
        throw new DataSyncError("DatabaseClosedError", entry
          ? `${message.method}() cannot be called on a ${kind}`
          : `${message.method}() on a closed database, an ended transaction or a closed change stream: open the database again, or run the statement in a new transaction`);
      }
      if (kind === "db" && message.method === "close" && entry.off) {
        entry.off(); // the state feed first: nothing to post once closed
        entry.off = null;
      }
      const ends = kind === "db" ? message.method === "close"
        : kind === "tx" ? message.method === "commit" || message.method === "rollback"
          : message.method === "close";
      let value;
      try {
        value = await entry.object[message.method](...(message.args ?? []));
      } catch (e) {
        if (ends && kind === "tx") objects.delete(message.ref); // ended either way
        throw e;
      }
      if (ends) objects.delete(message.ref);
      if (value instanceof LocalTx || value instanceof LocalStream) value = { ref: register(value, entry.db) };
      if (kind === "db" && message.method === "close") {
        lastState.delete(message.ref);
        return { ok: value };
      }
      return { ok: value, state: changedState(entry.db) };
    }
    case "onChange": {
      const entry = objects.get(message.ref);
      if (!entry) throw new DataSyncError("DatabaseClosedError", "onChange() on a closed database: open it again");
      subscriptions.set(message.sub, entry.object.onChange((change) => {
        postMessage({ event: "change", sub: message.sub, change });
      }));
      return { ok: null };
    }
    case "offChange": {
      const unsubscribe = subscriptions.get(message.sub);
      subscriptions.delete(message.sub);
      if (unsubscribe) unsubscribe();
      return { ok: null };
    }
    default:
      throw new DataSyncError("WorkerError", `unknown message ${JSON.stringify(message.op)}`);
  }
}

addEventListener("message", async (event) => {
  const message = event.data;
  if (!message || message.id === undefined) return; // e.g. {datasync: "lifecycle"}: Python's
  let reply;
  try {
    reply = { id: message.id, ...(await handle(message)) };
  } catch (error) {
    reply = { id: message.id, error: { name: error?.name ?? "Error", message: String(error?.message ?? error) } };
  }
  try {
    postMessage(reply, transferOf(reply.ok));
  } catch (error) { // a value that cannot be cloned: say so instead of leaving the page waiting
    postMessage({ id: message.id, error: { name: "DataCloneError", message: String(error?.message ?? error) } });
  }
});

/** Post a database's state if it changed since the page last got it. */
function postState(ref) {
  if (!lastState.has(ref)) return; // closed
  const state = changedState(ref);
  if (state !== undefined) postMessage({ event: "state", ref, state });
}

// Leadership moves and background flushes happen between calls and commits: poll them.
setInterval(() => {
  for (const [ref, entry] of objects) if (entry.db === ref) postState(ref);
}, 100);

postMessage({ event: "ready" });
