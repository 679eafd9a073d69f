/**
 * replica.js: the options of an embedded replica, checked before anything boots.
 *
 * Usage (datasync.js does this in DataSync.open; apps pass the options):
 *   const db = await DataSync.open("notes", {
 *     syncUrl: "http://127.0.0.1:8765/notes", authToken: token, syncInterval: 5,
 *     onConflict: (c) => (c.error[0] === "IntegrityError" ? "drop" : "keep"),
 *   });
 *   await db.execute("INSERT INTO notes(body) VALUES (?)", ["hi"]);  // on the primary
 *   console.log(db.syncStatus());    // {localVersion, remoteVersion, waiting, online, ...}
 *
 * A replica is a local copy that follows a primary on a sync server (`python -m
 * datasync server`; datasync.d.ts ReplicaOptions). Its options:
 *   syncUrl    "http(s)://HOST:PORT/NAME": the server and the database's name there.
 *              Reads run on the local copy; writes go to the primary (offline: they
 *              are applied locally and wait in a durable outbox, pushed later).
 *              The app's tabs share it as any database (only the leader tab talks
 *              to the server); tabs: false makes it this tab's alone.
 *   authToken  the server's bearer token for NAME (`python -m datasync token`).
 *   syncInterval  seconds between background syncs, and the longest long poll
 *              (default 5; 0: only db.pull() and db.push()).
 *   offline    true: start without talking to the server (db.setOffline(false) later).
 *   onConflict (conflict) => "drop" | "keep" | {replace: [[sql, params], ...]} (or a
 *              Promise of one): what to do with a waiting write the primary refused;
 *              main thread only for now (not with worker: true).
 *   Replica methods: pull(), push(), syncStatus(), conflicts(), setOffline(bool).
 * Errors: InvalidOptionError (a DataSyncError) or TypeError, thrown before any call.
 */
import { DataSyncError } from "./local.js";
import { describe } from "./values.js";

/**
 * Check a replica's options (syncUrl given). True if it is a replica.
 */
export function replicaOptions(dbOptions, onConflict, worker) {
  if (dbOptions.syncUrl == null) {
    for (const key of ["authToken", "syncInterval", "offline"]) {
      if (dbOptions[key] !== undefined) {
        throw new DataSyncError("InvalidOptionError", `${key} is a replica's option: pass syncUrl too ` +
          '("http(s)://HOST:PORT/NAME", the sync server and the database\'s name there)');
      }
    }
    if (onConflict != null) {
      throw new DataSyncError("InvalidOptionError", "onConflict is a replica's option: pass syncUrl too");
    }
    return false;
  }
  if (onConflict != null && typeof onConflict !== "function") {
    throw new TypeError(`onConflict is ${typeof onConflict}: pass a function ` +
      "(conflict) => \"drop\" | \"keep\" | {replace: [[sql, params], ...]}");
  }
  if (onConflict != null && worker) {
    throw new DataSyncError("InvalidOptionError", "onConflict cannot cross to datasync's Worker yet: " +
      "open the replica without worker: true to handle conflicts as they happen, or leave " +
      "onConflict out (the default drops a refused write) and read db.conflicts()");
  }
  return true;
}

/** The error of a replica's method called on another database. */
export const notReplica = (name) => new DataSyncError("SyncError", `database '${name}' is not a ` +
  "replica: open it with DataSync.open(name, {syncUrl, authToken}) to sync it with a server");

/** `token` if it is a string or null, else a TypeError (db.setAuthToken). */
export function checkToken(token) {
  if (token !== null && typeof token !== "string") {
    throw new TypeError(`db.setAuthToken(token): ${describe(token)}: pass a string or null`);
  }
  return token;
}

/** `value` if it is a boolean, else a TypeError naming `where`. */
export function checkFlag(value, where) {
  if (typeof value !== "boolean") throw new TypeError(`${where}: ${describe(value)}: pass true or false`);
  return value;
}
