/**
 * remote.js: the handle interface of datasync.js's Database, served by datasync's
 * module Worker (worker.js) instead of this thread: every call is one message.
 *
 * Usage (datasync.js does this for DataSync.open(name, {worker: true})):
 *   import { openRemote } from "./remote.js";
 *   const handle = await openRemote("app", "{}", {webURL: "/web/"});
 *   await handle.execute("SELECT 1", []);
 *
 * One Worker per runtime (webURL, indexURL, stackSwitching) per page, shared by the
 * databases opened with it, and kept for the page's life (booting is the costly part).
 * stats() and leaderInfo() stay synchronous: they read the state the Worker sends with
 * every reply, on every change notice, and within 100 ms of any other change (a
 * background flush, a leadership move, a commit made for another tab).
 */
import { DataSyncError } from "./local.js";

const workers = new Map(); // runtime key -> Rpc

/**
 * Make a Worker that runs datasync's Python (your own, or datasync's) flush its
 * databases when this page is hidden or unloaded: datasync/browser/lifecycle.py
 * listens in the Worker for the message posted here. Returns a remover.
 *   const worker = new Worker("/app-worker.js", {type: "module"});
 *   forwardLifecycle(worker);
 */
export function forwardLifecycle(worker) {
  if (typeof document === "undefined") return () => {}; // not a page: nothing to forward
  const post = (event) => {
    if (event.type === "pagehide" || document.visibilityState === "hidden") {
      worker.postMessage({ datasync: "lifecycle", event: event.type });
    }
  };
  addEventListener("pagehide", post);
  document.addEventListener("visibilitychange", post);
  return () => {
    removeEventListener("pagehide", post);
    document.removeEventListener("visibilitychange", post);
  };
}

/** Requests and replies over one Worker. */
class Rpc {
  #worker;
  #pending = new Map(); // id -> {resolve, reject}
  #listeners = new Map(); // sub -> callback
  #states = new Map(); // database ref -> handle (to receive state)
  #steps = new Map(); // migration call id -> {functions, owner}: its JS steps
  #nextId = 1;
  #nextCall = 1;
  #failure = null;

  constructor() {
    // written as bundlers (Vite, webpack 5, Parcel) recognize it: they bundle worker.js too
    this.#worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: "datasync" });
    this.#worker.addEventListener("message", (event) => this.#receive(event.data));
    this.#worker.addEventListener("error", (event) => {
      event.preventDefault?.();
      this.#fail(new DataSyncError("WorkerError", `datasync's Worker (${new URL("./worker.js", import.meta.url)}) failed: ` +
        `${event.message || "it could not be loaded"}; check that worker.js is served next to ` +
        "datasync.js (as JavaScript), or open without {worker: true}"));
    });
    forwardLifecycle(this.#worker);
  }

  #fail(error) {
    this.#failure = error;
    for (const { reject } of this.#pending.values()) reject(error);
    this.#pending.clear();
  }

  #receive(data) {
    if (data.event === "change") return this.#listeners.get(data.sub)?.(data.change);
    if (data.event === "rows") return this.#listeners.get(data.sub)?.(data.rows);
    if (data.event === "state") return this.#states.get(data.ref)?.setState(data.state, data.app);
    if (data.event === "step") return this.#runStep(data);
    const waiting = this.#pending.get(data.id);
    if (!waiting) return;
    this.#pending.delete(data.id);
    if (data.error) waiting.reject(new DataSyncError(data.error.name, data.error.message));
    else waiting.resolve(data);
  }

  /** Send `message`; resolves with the whole reply ({ok, state}). */
  request(message, transfer = []) {
    if (this.#failure) return Promise.reject(this.#failure);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ ...message, id }, transfer);
    });
  }

  /** Run a migration's JS step on this page, over the Worker's transaction `data.tx`;
   * tell the Worker how it ended ({op: "stepDone", step, error}). */
  async #runStep(data) {
    const entry = this.#steps.get(data.call);
    let error = null;
    try {
      if (!entry) throw new DataSyncError("TransactionAbortedError", "this migration call has ended");
      await entry.functions[data.fn](new RemoteTx(this, data.tx, entry.owner));
    } catch (e) {
      error = { name: e?.name ?? "Error", message: String(e?.message ?? e) };
    }
    this.request({ op: "stepDone", step: data.step, error }).catch(() => {});
  }

  /** Keep a migration call's JS steps while it runs: {id, count}, as the Worker gets them. */
  steps(functions, owner) {
    const id = this.#nextCall++;
    this.#steps.set(id, { functions, owner });
    return { id, count: functions.length };
  }
  unsteps(id) { this.#steps.delete(id); }

  listen(sub, callback) { this.#listeners.set(sub, callback); }
  unlisten(sub) { this.#listeners.delete(sub); }
  track(ref, handle) { this.#states.set(ref, handle); }
  untrack(ref) { this.#states.delete(ref); }
}

let nextSub = 1;

/** Something living in the Worker (a database, transaction or stream), by ref. */
class RemoteObject {
  constructor(rpc, ref, owner) { this.rpc = rpc; this.ref = ref; this.owner = owner; }
  async call(method, args = [], transfer = []) {
    const reply = await this.rpc.request({ op: "call", ref: this.ref, method, args }, transfer);
    if (reply.state || reply.app) this.owner?.setState(reply.state, reply.app);
    return reply.ok;
  }
}

export class RemoteTx extends RemoteObject {
  execute(sql, params) { return this.call("execute", [sql, params]); }
  query(sql, params) { return this.call("query", [sql, params]); }
  executeMany(sql, rows) { return this.call("executeMany", [sql, rows]); }
  batch(statements) { return this.call("batch", [statements]); }
  commit() { return this.call("commit"); }
  rollback() { return this.call("rollback"); }
}

export class RemoteStream extends RemoteObject {
  next() { return this.call("next"); }
  close() { return this.call("close"); }
}

/** A database open in datasync's Worker, as the handle interface. */
export class RemoteHandle extends RemoteObject {
  #state; // {stats, leader}, or the JSON text of it the Worker sent (parsed when read)
  #app; // JSON text of {metrics, slow} (bridge_app.py app_state), once asked for
  #watching = false;
  #slowArgs = null; // [thresholdMs, limit] the Worker reports slowQueries() for
  constructor(rpc, ref, state, app) {
    super(rpc, ref, null);
    this.owner = this;
    this.#state = state;
    this.#app = app;
    rpc.track(ref, this);
  }
  setState(state, app) {
    if (state !== undefined) this.#state = state;
    if (app !== undefined) this.#app = app;
  }
  /** {metrics, slow} as last reported (at open, then with every reply and change
   * once asked: the first call asks; `slow`: [thresholdMs, limit] to report
   * slowQueries() for, from the next reply on). */
  #appState(slow = null) {
    const ask = !this.#watching || (slow && String(slow) !== String(this.#slowArgs));
    if (ask) {
      this.#watching = true;
      if (slow) this.#slowArgs = slow;
      this.rpc.request({ op: "watch", ref: this.ref, slow })
        .then((reply) => this.setState(reply.state, reply.app)).catch(() => {});
    }
    return JSON.parse(this.#app ?? '{"metrics": null, "slow": null}');
  }
  get #current() {
    if (typeof this.#state === "string") this.#state = JSON.parse(this.#state);
    return this.#state;
  }
  execute(sql, params) { return this.call("execute", [sql, params]); }
  query(sql, params) { return this.call("query", [sql, params]); }
  executeMany(sql, rows) { return this.call("executeMany", [sql, rows]); }
  batch(statements) { return this.call("batch", [statements]); }
  async exec(script) { await this.call("exec", [script]); }
  async begin(mode) { return new RemoteTx(this.rpc, (await this.call("begin", [mode])).ref, this); }
  queueWrite(sql, params, timeoutMs) { return this.call("queueWrite", [sql, params, timeoutMs]); }
  sync() { return this.call("sync"); }
  stats() { return { ...this.#current?.stats }; }
  leaderInfo() { return { ...this.#current?.leader }; }
  waitForLeadership() { return this.call("waitForLeadership"); }
  requestLeadership() { return this.call("requestLeadership"); }
  exportDatabase() { return this.call("exportDatabase"); }
  importDatabase(bytes) { return this.call("importDatabase", [bytes]); }
  backup(target, optionsJSON) { return this.call("backup", [target, optionsJSON]); }
  versions() { return this.call("versions"); }
  restore(version) { return this.call("restore", [version]); }
  ack(consumer, seq) { return this.call("ack", [consumer, seq]); }
  rekey(keyJSON) { return this.call("rekey", [keyJSON]); }
  pull() { return this.call("pull"); }
  push() { return this.call("push"); }
  /** From the state the Worker sends (a replica's has `sync`). */
  syncStatus() { return { ...this.#current?.sync }; }
  conflicts() { return this.call("conflicts"); }
  setOffline(offline) { return this.call("setOffline", [Boolean(offline)]); }
  setAuthToken(token) { return this.call("setAuthToken", [token]); }
  async #withSteps(functions, send) {
    const call = this.rpc.steps(functions, this);
    try {
      return await send(call);
    } finally {
      this.rpc.unsteps(call.id);
    }
  }
  migrate(spec, functions, target) { return this.#withSteps(functions, (c) => this.call("migrate", [spec, c, target])); }
  rollback(spec, functions, n) { return this.#withSteps(functions, (c) => this.call("rollback", [spec, c, n])); }
  migrationStatus(spec, functions) { return this.#withSteps(functions, (c) => this.call("migrationStatus", [spec, c])); }
  cached(sql, params, ttl) { return this.call("cached", [sql, params, ttl]); }
  explain(sql, params) { return this.call("explain", [sql, params]); }
  metrics() { return this.#appState().metrics; }
  slowQueries(thresholdMs, limit) {
    const { slow } = this.#appState([thresholdMs, limit]);
    return (slow ?? []).filter((q) => q.max_ms >= thresholdMs).slice(0, limit);
  }
  /** `callback(rows)` now (before this resolves: the Worker posts them before its
   * reply) and when they change; resolves with the unsubscriber. */
  async live(sql, params, callback) {
    const sub = nextSub++;
    this.rpc.listen(sub, callback);
    try {
      await this.rpc.request({ op: "live", ref: this.ref, sub, args: [sql, params] });
    } catch (error) {
      this.rpc.unlisten(sub);
      throw error;
    }
    let live = true;
    return () => {
      if (!live) return;
      live = false;
      this.rpc.unlisten(sub);
      this.rpc.request({ op: "offChange", sub }).catch(() => {});
    };
  }
  onChange(callback) {
    const sub = nextSub++;
    this.rpc.listen(sub, callback);
    const subscribed = this.rpc.request({ op: "onChange", ref: this.ref, sub });
    subscribed.catch((error) => { this.rpc.unlisten(sub); console.error(error); });
    return () => {
      this.rpc.unlisten(sub);
      subscribed.then(() => this.rpc.request({ op: "offChange", sub })).catch(() => {});
    };
  }
  changes(optionsJSON) {
    // the stream's ref arrives with the reply; next()/close() wait for it
    const opened = this.call("changes", [optionsJSON]).then(({ ref }) => new RemoteStream(this.rpc, ref, this));
    return {
      next: async () => (await opened).next(),
      close: async () => (await opened).close(),
    };
  }
  async close() {
    await this.call("close");
    this.rpc.untrack(this.ref);
  }
}

/** Open `name` in datasync's Worker (started on first use); resolves with its RemoteHandle. */
export async function openRemote(name, optionsJSON, bootOptions) {
  const key = JSON.stringify([bootOptions.webURL, bootOptions.indexURL ?? null, Boolean(bootOptions.stackSwitching)]);
  if (!workers.has(key)) workers.set(key, new Rpc());
  let reply;
  try {
    reply = await workers.get(key).request({ op: "open", args: [name, optionsJSON, bootOptions] });
  } catch (error) {
    if (error.name === "WorkerError") workers.delete(key); // the next open starts a new one
    throw error;
  }
  return new RemoteHandle(workers.get(key), reply.ok.ref, reply.ok.state, reply.ok.app);
}
