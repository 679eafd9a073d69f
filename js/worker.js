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
 * {id, op: "onChange", ref, sub}, {id, op: "live", ref, sub, args: [sql, params]},
 * {op: "offChange", sub} (ends either), {id, op: "watch", ref, slow?: [thresholdMs,
 * limit]}, {id, op: "stepDone",
 * step, error}. Out: {id, ok, state?, app?} or {id, error: {name, message}}; events
 * {event: "change", sub, change}, {event: "rows", sub, rows} (a live query's),
 * {event: "state", ref, state?, app?} (a database's stats/leader info changed) and
 * {event: "step", call, fn, tx, step} (run a migration's JS step on the page over
 * transaction `tx`; the page answers stepDone). A state is JSON text of {stats,
 * leader}, sent only when it differs from the last one sent (the page parses it when
 * stats() or getLeaderInfo() asks); `app` is JSON text of {metrics, slow}, sent the
 * same way once the page asked for metrics ("watch"; `slow` only once it asked for
 * slowQueries(), with its last arguments: a long list costs ~1 ms to make). A page's
 * {datasync: "lifecycle"} message (pagehide, hidden) is handled by datasync's Python
 * (datasync/browser/lifecycle.py): every open database flushes.
 */
import { DataSyncError, LocalHandle, LocalStream, LocalTx, openLocal } from "./local.js";

const objects = new Map(); // ref -> {object, db: the ref of its database}
const subscriptions = new Map(); // sub -> unsubscribe
const lastState = new Map(); // database ref -> JSON of the state last posted
const lastApp = new Map(); // database ref -> JSON of {metrics, slow} last posted
const steps = new Map(); // step -> {resolve, reject, ref}: a migration step the page runs
let nextRef = 1;
let nextStep = 1;
/** What the open reply reports of the slowest statements (slowQueries()'s defaults). */
const SLOW_DEFAULT = [100, 20];

/** Methods a page may call, by kind of object. */
const METHODS = {
  db: new Set(["execute", "query", "executeMany", "batch", "exec", "begin", "queueWrite", "sync",
    "waitForLeadership", "requestLeadership", "exportDatabase", "importDatabase", "backup",
    "versions", "restore", "ack", "rekey", "changes", "close",
    "pull", "push", "conflicts", "setOffline", "setAuthToken", // these five: a replica's
    "migrate", "rollback", "migrationStatus", "cached", "explain"]),
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

/** {metrics, slow} of a database as JSON text (undefined: closed meanwhile, or it
 * cannot tell: the page keeps the last report). */
function appState(handle, slow) {
  try {
    return handle.appState(...slow);
  } catch {
    return undefined;
  }
}

/** {metrics, slow} as JSON text if the page watches them and they changed, else undefined. */
function changedApp(ref) {
  const entry = objects.get(ref);
  if (!entry?.watch) return undefined;
  const app = appState(entry.object, entry.slow ?? [null, null]);
  if (app === undefined || lastApp.get(ref) === app) return undefined;
  lastApp.set(ref, app);
  return app;
}

/** A migration's JS steps ({id, count} from the page) as functions of a LocalTx:
 * each posts {event: "step"} and settles when the page answers stepDone. */
const pageSteps = ({ id, count }, db) => Array.from({ length: count }, (_, fn) => (tx) =>
  new Promise((resolve, reject) => {
    const step = nextStep++;
    const ref = register(tx, db);
    steps.set(step, { resolve, reject, ref });
    postMessage({ event: "step", call: id, fn, tx: ref, step });
  }));
const WITH_STEPS = new Set(["migrate", "rollback", "migrationStatus"]);

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
      return { ok: { ref, state: changedState(ref), app: appState(handle, SLOW_DEFAULT) } };
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
      const args = message.args ?? [];
      if (kind === "db" && WITH_STEPS.has(message.method)) args[1] = pageSteps(args[1], message.ref);
      let value;
      try {
        value = await entry.object[message.method](...args);
      } catch (e) {
        if (ends && kind === "tx") objects.delete(message.ref); // ended either way
        throw e;
      }
      if (ends) objects.delete(message.ref);
      if (value instanceof LocalTx || value instanceof LocalStream) value = { ref: register(value, entry.db) };
      if (kind === "db" && message.method === "close") {
        lastState.delete(message.ref);
        lastApp.delete(message.ref);
        return { ok: value };
      }
      return { ok: value, state: changedState(entry.db), app: changedApp(entry.db) };
    }
    case "onChange": {
      const entry = objects.get(message.ref);
      if (!entry) throw new DataSyncError("DatabaseClosedError", "onChange() on a closed database: open it again");
      subscriptions.set(message.sub, entry.object.onChange((change) => {
        postMessage({ event: "change", sub: message.sub, change });
      }));
      return { ok: null };
    }
    case "live": {
      const entry = objects.get(message.ref);
      if (!entry) throw new DataSyncError("DatabaseClosedError", "liveQuery() on a closed database: open it again");
      const [sql, params] = message.args;
      // the first rows are posted before this reply: the page's callback runs first
      subscriptions.set(message.sub, await entry.object.live(sql, params, (rows) => {
        postMessage({ event: "rows", sub: message.sub, rows });
      }));
      return { ok: null, state: changedState(message.ref), app: changedApp(message.ref) };
    }
    case "watch": {
      const entry = objects.get(message.ref);
      if (!entry) throw new DataSyncError("DatabaseClosedError", "metrics() on a closed database: open it again");
      entry.watch = true;
      if (message.slow) entry.slow = message.slow;
      return { ok: null, state: changedState(message.ref), app: changedApp(message.ref) };
    }
    case "stepDone": {
      const waiting = steps.get(message.step);
      if (!waiting) return { ok: null };
      steps.delete(message.step);
      objects.delete(waiting.ref); // the step's transaction, ended for the page
      if (message.error) waiting.reject(new DataSyncError(message.error.name, message.error.message));
      else waiting.resolve();
      return { ok: null };
    }
    case "offChange": { // a change subscription's or a live query's
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
  const app = changedApp(ref);
  if (state !== undefined || app !== undefined) postMessage({ event: "state", ref, state, app });
}

// Leadership moves and background flushes happen between calls and commits: poll them.
setInterval(() => {
  for (const [ref, entry] of objects) if (entry.db === ref) postState(ref);
}, 100);

postMessage({ event: "ready" });
