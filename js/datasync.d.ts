/**
 * Types of datasync.js: a persistent SQLite database for web pages (IndexedDB).
 *
 * @example
 * import { DataSync, type Database } from "datasync";
 * const db: Database = await DataSync.open("app", { worker: true });
 * await db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)");
 * const rows = await db.query<{ id: number; v: string }>("SELECT * FROM t");
 */

import { AppCalls } from "./app.js";
export type { AppCalls, CacheFigures, IndexSuggestion, LatencySummary, Metrics, Migration, MigrationResult,
  MigrationState, MigrationStep, PlanNode, QueryPlan, SlowQuery, SlowQueryOptions } from "./app.js";

/** A value SQLite stores: NULL, INTEGER/REAL, TEXT, BLOB (integers beyond 2^53 are bigint). */
export type SQLValue = null | number | bigint | string | Uint8Array;

/** What a parameter may be: booleans bind as 1/0, any bytes as a BLOB. A Date, an
 * object inside a positional array, a Symbol, a function, undefined, NaN or a bigint
 * beyond signed 64 bits is refused with a TypeError before any call. */
export type Bindable = SQLValue | boolean | ArrayBuffer | ArrayBufferView;

/** Positional (?, ?NNN) as an array, or named (:name, @name, $name) as one plain object. */
export type Params = readonly Bindable[] | { readonly [name: string]: Bindable };

/** One statement's result (rows as arrays, in `columns` order). */
export interface Result {
  columns: string[];
  rows: SQLValue[][];
  rowsAffected: number;
  lastInsertRowid: number | bigint | null;
}

/** A row of query(): column name -> value. */
export type Row = Record<string, SQLValue>;

export type Durability = "relaxed" | "strict";
export type TransactionMode = "deferred" | "immediate" | "exclusive" | "DEFERRED" | "IMMEDIATE" | "EXCLUSIVE";

/** Options of DataSync.open(name, options). */
export interface OpenOptions {
  /** "relaxed" (default: commits return at once, flushes are batched) or "strict"
   * (a write resolves once durable in IndexedDB). */
  durability?: Durability;
  /** Bytes per stored block (default 4096, the SQLite page size). */
  blockSize?: number;
  /** Bound of the clean-block cache, in bytes. */
  cacheBytes?: number;
  /** Seconds a relaxed flush waits to batch more commits (default 0). */
  flushInterval?: number;
  /** The web folder (`python -m datasync build`, or node_modules/datasync/web/); default ../web/ next to datasync.js. */
  webURL?: string | URL;
  /** The Pyodide runtime folder (default: the web folder manifest's `pyodide` entry). */
  indexURL?: string | URL;
  /** An already loaded Pyodide to use instead of booting one (not with `worker`). */
  pyodide?: unknown;
  /** Leave WebAssembly stack switching (JSPI) on in the Pyodide datasync boots. */
  stackSwitching?: boolean;
  /** A passphrase, or 32 raw key bytes: every block is stored AES-256-GCM encrypted. */
  encryptionKey?: string | Uint8Array | ArrayBuffer | null;
  /** Share the database with the app's other tabs (default true); false: this tab alone. */
  tabs?: boolean;
  /** Capture every committed change for changes()/subscribeChanges(). */
  cdc?: boolean;
  /** Seconds to keep acknowledged changes (default: forever). */
  cdcRetention?: number | null;
  /** Versions to keep for restore() (see README). */
  retainVersions?: number;
  /** Run Pyodide and datasync in a module Worker: the page's main thread stays free. */
  worker?: boolean;
  /** Where blocks live: "indexeddb" (default in a browser) or "memory" (tests). */
  backend?: "indexeddb" | "memory";
  /** false: refuse to create a database that does not exist yet (StoreNotFoundError). */
  create?: boolean;
  /** An embedded replica of the primary at this URL on a sync server (ReplicaOptions). */
  syncUrl?: string;
  /** A replica's bearer token (ReplicaOptions). */
  authToken?: string | null;
  /** A replica's seconds between background syncs (ReplicaOptions; default 5). */
  syncInterval?: number | null;
  /** A replica: start without talking to the server (ReplicaOptions). */
  offline?: boolean;
  /** A replica's handler of refused writes (ReplicaOptions; main thread only). */
  onConflict?: ConflictHandler | null;
}

/**
 * The options of an embedded replica: a local database that follows a primary on a
 * sync server (`python -m datasync server`). Reads run on the local copy; a write
 * goes to the primary and resolves with the primary's result once the copy holds it.
 * Offline, a write is applied locally at once and waits in a durable outbox
 * (IndexedDB) until a push (background, or db.push()) applies it on the primary,
 * exactly once. The app's tabs share a replica as they share any database: only
 * the leader tab talks to the server, the others forward their writes to it and see
 * what it pulls ({tabs: false}: this tab alone; another tab's open then fails with
 * StoreBusyError).
 * Its calls that cannot reach the primary (transaction(), importDatabase(),
 * restore()) reject with ReplicaWriteError: send statements together with batch().
 *
 * @example
 * const db = await DataSync.open("notes", {
 *   syncUrl: "http://127.0.0.1:8765/notes", authToken: token, syncInterval: 5,
 *   onConflict: (c) => (c.error[0] === "IntegrityError" ? "drop" : "keep"),
 * });
 * await db.execute("INSERT INTO notes(body) VALUES (?)", ["hi"]);
 * console.log(db.syncStatus().waiting);   // 0 online
 */
export interface ReplicaOptions {
  /** "http(s)://HOST:PORT/NAME": the sync server, and the database's name there
   * (letters, digits, ".", "_", "-"). The server must allow the page's origin
   * (`--allow-origin`) unless it serves the page. A bad URL: InvalidOptionError. */
  syncUrl: string;
  /** The server's bearer token for NAME (`python -m datasync token --database NAME`);
   * refused: the open rejects with SyncAuthError (401) or SyncForbiddenError (403). */
  authToken?: string | null;
  /** Seconds between background syncs (push what waits, then a long poll that returns
   * as soon as the primary commits); also the longest long poll. Default 5; 0 or
   * null: only db.pull() and db.push(). */
  syncInterval?: number | null;
  /** true: start without talking to the server (writes wait; db.setOffline(false)). */
  offline?: boolean;
  /** What to do with a waiting write the primary refused (default "drop"). Main
   * thread only: with {worker: true} it throws InvalidOptionError (read
   * db.conflicts() instead). It runs with no lock held: it may read and write the
   * database (its own writes go out at once, ahead of the write it decides on). */
  onConflict?: ConflictHandler | null;
}

/** A write the primary refused, as onConflict gets it. */
export interface Conflict {
  /** The write's id (unique, kept for its life in the outbox). */
  id: string;
  /** Its statements, one transaction: [sql, params] (BLOBs as Uint8Array). */
  statements: Array<[string, Params]>;
  /** The primary's error: [exception class name, message], e.g. ["IntegrityError", "UNIQUE ..."]. */
  error: [string, string];
  /** When it was made: ms since the epoch. */
  at: number | null;
}

/** "drop": forget it (recorded in conflicts()); "keep": send it again with the next
 * push (under a new id); {replace}: send these statements in its place. A handler
 * that throws, or returns anything else, drops it (the reason is recorded). */
export type ConflictDecision = "drop" | "keep" | { replace: Array<[string, Params] | [string]> };

export type ConflictHandler = (conflict: Conflict) => ConflictDecision | Promise<ConflictDecision>;

/** A conflict as db.conflicts() lists it. */
export interface ConflictRecord extends Conflict {
  resolution: "drop" | "keep" | "replace";
  /** When it was recorded: ms since the epoch. */
  recorded: number;
  /** Why the handler's answer was not used (it threw, or returned something else). */
  handlerError?: string;
}

/** db.syncStatus(): where the replica stands. Versions: null until known. */
export interface SyncStatus {
  /** The local store's version (it counts local commits and installs). */
  localVersion: number;
  /** The latest primary version the server reported. */
  remoteVersion: number | null;
  /** The primary version the local copy holds. */
  pulledVersion: number | null;
  /** Writes in the outbox, not yet applied on the primary. */
  waiting: number;
  /** Last pull / push that succeeded: ms since the epoch, or null. */
  lastPull: number | null;
  lastPush: number | null;
  /** Whether the server answered last time (null: not asked yet). */
  online: boolean | null;
  /** setOffline(true) or {offline: true}: the replica does not talk to the server. */
  offline: boolean;
  /** The last sync error ("SyncUnavailableError: ..."), null once the server answers. */
  lastError: string | null;
  /** The primary's URL (the syncUrl, normalized). */
  url: string;
}

/** Options of backup(target, options): the target database's open options. */
export type BackupOptions = Pick<OpenOptions, "durability" | "blockSize" | "cacheBytes" | "encryptionKey" | "retainVersions">;

/** db.stats(): counters, snake_case as datasync names them. */
export interface Stats {
  version: number;
  block_size: number;
  blocks: number;
  file_size: number;
  dirty_blocks: number;
  cache_blocks: number;
  cache_bytes: number;
  cache_limit: number;
  resident_blocks: number | null;
  cache_hits: number;
  cache_misses: number;
  commits: number;
  flushes: number;
  blocks_flushed: number;
  bytes_flushed: number;
  flush_failures: number;
  last_flush_at: number | null;
  last_flush_seconds: number | null;
  last_flush_error: string | null;
  last_flush_error_at: number | null;
  name: string;
  backend: string;
  location: string;
  durability: Durability;
  encrypted: boolean;
  [counter: string]: unknown;
}

export interface LeaderInfo {
  isLeader: boolean;
  leaderId: string | null;
  epoch: number;
  tabId: string | null;
}

/** onChange(): a commit of any tab. `tables` null: not known (all may have changed). */
export interface ChangeNotice {
  version: number;
  tables: string[] | null;
  by: "local" | "remote" | string;
}

/** A captured change (open with {cdc: true}). */
export interface Change {
  seq: number;
  /** The table, or "*" with op "reset" (the whole database was imported or restored). */
  table: string;
  op: "insert" | "update" | "delete" | "schema" | "reset";
  /** The rowid, an object of the primary key (WITHOUT ROWID), or the name (schema). */
  key: SQLValue | Record<string, SQLValue>;
  old: Record<string, SQLValue> | null;
  new: Record<string, SQLValue> | null;
  /** The store version that makes it durable. */
  version: number;
  /** Unix seconds. */
  at: number;
}

export interface ChangesOptions {
  tables?: string[] | null;
  since?: number | null;
  consumer?: string | null;
  /** false: stop at the end instead of waiting for live changes. */
  follow?: boolean;
}

export interface SubscribeOptions extends Omit<ChangesOptions, "follow"> {
  onError?: (error: unknown) => void;
}

export interface VersionInfo {
  version: number;
  file_size: number;
  epoch: number;
}

export interface BackupInfo {
  target: string;
  bytes: number;
  sourceVersion: number;
  targetVersion: number;
}

/** datasync's Python exception classes (datasync/__init__.py). */
export type DatasyncErrorName =
  | "AsyncOnlyError" | "BackendError" | "BackupTargetError" | "BusyTimeoutError"
  | "ConnectionPragmaError" | "CorruptBlockError" | "CrossDatabaseWriteError"
  | "CryptoUnavailableError" | "DatabaseClosedError" | "DatasyncError" | "DeposedLeaderError"
  | "FormatVersionError" | "InvalidOptionError" | "LeaderUnavailableError" | "LocalObjectError"
  | "NotADatasyncStoreError" | "NotASQLiteImageError" | "NotLeaderError" | "NotSupportedError"
  | "QueuedWriteTimeoutError" | "RemoteError" | "StorageBlockedError" | "StorageFullError"
  | "StorageUnavailableError" | "StoreBusyError" | "StoreCreateError" | "StoreNotFoundError"
  | "TabStatementError" | "TransactionAbortedError" | "TransactionActiveError"
  | "TransactionStatementError" | "UnflushedWritesError" | "VFSRegistrationError"
  | "VersionConflictError" | "VersionNotRetainedError" | "WrongKeyError"
  | "SyncError" | "SyncUnavailableError" | "SyncAuthError" | "SyncForbiddenError"
  | "SyncRequestError" | "SyncProtocolError" | "ReplicaMismatchError" | "ReplicaWriteError"
  | "MigrationError" | "MigrationOrderError" | "MigrationChecksumError" | "MigrationFailedError"
  | "IrreversibleMigrationError" | "SchemaTooNewError" | "NotReadOnlyError";

/** Python's sqlite3 exception classes. */
export type SQLiteErrorName =
  | "Error" | "Warning" | "InterfaceError" | "DatabaseError" | "DataError" | "OperationalError"
  | "IntegrityError" | "InternalError" | "ProgrammingError" | "NotSupportedError";

/** Raised by datasync.js itself: a tx used after its end, a Worker that failed, a value
 * a Worker could not send, a web folder that is not there. */
export type JSErrorName = "TransactionFinishedError" | "WorkerError" | "DataCloneError" | "WebBuildError";

export type ErrorName = DatasyncErrorName | SQLiteErrorName | JSErrorName;

/** An Error whose `name` is the Python exception's class name. */
export class DataSyncError extends Error {
  constructor(name: ErrorName | string, message: string);
  name: ErrorName | string;
}

/** What db.transaction(fn) hands fn. */
export class Transaction {
  execute(sql: string, params?: Params): Promise<Result>;
  query<R extends Row = Row>(sql: string, params?: Params): Promise<R[]>;
  executeMany(sql: string, rows: Iterable<Params>): Promise<Result>;
  batch(statements: ReadonlyArray<readonly [string] | readonly [string, Params]>): Promise<Result[]>;
}

/** One open database (DataSync.open()); the app layer's calls are AppCalls' (app.d.ts). */
export class Database extends AppCalls {
  readonly name: string;
  /** The Pyodide datasync runs in; null with {worker: true}. */
  readonly pyodide: unknown | null;
  execute(sql: string, params?: Params): Promise<Result>;
  query<R extends Row = Row>(sql: string, params?: Params): Promise<R[]>;
  executeMany(sql: string, rows: Iterable<Params>): Promise<Result>;
  batch(statements: ReadonlyArray<readonly [string] | readonly [string, Params]>): Promise<Result[]>;
  exec(script: string): Promise<void>;
  transaction<T>(fn: (tx: Transaction) => Promise<T> | T, options?: { mode?: TransactionMode }): Promise<T>;
  queueWrite(sql: string, params?: Params, options?: { timeoutMs?: number | null }): Promise<Result>;
  sync(): Promise<number>;
  stats(): Stats;
  exportDatabase(): Promise<Uint8Array>;
  importDatabase(bytes: Uint8Array | ArrayBuffer | ArrayLike<number>): Promise<unknown>;
  backup(target: string, options?: BackupOptions): Promise<BackupInfo>;
  versions(): Promise<VersionInfo[]>;
  restore(version: number): Promise<unknown>;
  isLeader(): boolean;
  getLeaderInfo(): LeaderInfo;
  waitForLeadership(): Promise<void>;
  requestLeadership(): Promise<void>;
  onChange(callback: (change: ChangeNotice) => void): () => void;
  changes(options?: ChangesOptions): AsyncGenerator<Change, void, undefined>;
  subscribeChanges(callback: (change: Change) => void, options?: SubscribeOptions): () => void;
  ack(consumer: string, seq: number): Promise<void>;
  rekey(newKey: string | Uint8Array | ArrayBuffer | null): Promise<number>;
  close(): Promise<void>;
  /** True if opened with {syncUrl}: a replica. The methods below throw SyncError on others. */
  readonly isReplica: boolean;
  /** Replica: bring the local copy to the primary's latest version; resolves with that
   * version. Rejects with SyncUnavailableError (no answer; the copy is unchanged),
   * SyncAuthError, ReplicaMismatchError. */
  pull(): Promise<number>;
  /** Replica: send every waiting write (then pull); resolves with how many the
   * primary answered (conflicts included). SyncUnavailableError: they keep waiting. */
  push(): Promise<number>;
  /** Replica: where it stands, synchronously (with {worker: true}: as of the Worker's
   * last report, at most ~100 ms old). */
  syncStatus(): SyncStatus;
  /** Replica: every conflict recorded, oldest first. */
  conflicts(): Promise<ConflictRecord[]>;
  /** Replica: stop (true) or resume (false) talking to the server; resolves with the
   * new status. A non-boolean throws TypeError. */
  setOffline(offline: boolean): Promise<SyncStatus>;
  /** Send `token` from the next request on (a refreshed one; an expired token makes
   * every request fail with SyncAuthError). Resolves with the new status. */
  setAuthToken(token: string | null): Promise<SyncStatus>;
}

export const DataSync: {
  open(name: string, options?: OpenOptions): Promise<Database>;
  DataSyncError: typeof DataSyncError;
};

/** Make a Worker running datasync's Python flush on this page's pagehide/hidden. */
export function forwardLifecycle(worker: Worker): () => void;

export default DataSync;
