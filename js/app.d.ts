// Types of js/app.js: the app layer every Database has (migrations, live and cached
// queries, metrics, query plans). Keys are Python's (datasync/app/); times in ms.
import type { Params, Row, Transaction } from "./datasync.js";

/** A migration step: SQL (several statements allowed), or a function of the
 * migration's transaction (the same object db.transaction() gives). */
export type MigrationStep = string | ((tx: Transaction) => Promise<unknown> | unknown);

/** One migration of db.migrate(): versions are 1, 2, 3... with no gap. */
export interface Migration {
  version: number;
  name: string;
  up: MigrationStep;
  /** What rollback() runs; none: the migration cannot be rolled back (IrreversibleMigrationError). */
  down?: MigrationStep | null;
  /** Recorded and compared instead of the SQL's own (a function step has none otherwise). */
  checksum?: string | null;
}

/** What migrate() and rollback() did. */
export interface MigrationResult {
  from: number;
  to: number;
  applied: number[];
  reverted: number[];
}

/** A row of migrationStatus(), by version. */
export interface MigrationState {
  version: number;
  name: string;
  checksum: string;
  /** Unix seconds; null: not applied. */
  applied_at: number | null;
  /** "changed": applied, but its checksum differs now; "unknown": applied, not in the list given. */
  state: "applied" | "pending" | "changed" | "unknown";
}

/** Latency percentiles in milliseconds (null: nothing measured yet). */
export interface LatencySummary {
  count: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  max: number | null;
}

/** A hit rate in [0, 1], null before the first lookup. */
export interface CacheFigures {
  hits: number;
  misses: number;
  hit_rate: number | null;
}

/** db.metrics(): keys as in Python; times in milliseconds. */
export interface Metrics {
  statements: { read: number; write: number; transaction: number };
  errors: number;
  errors_by_name: Record<string, number>;
  latency_ms: { read: LatencySummary; write: LatencySummary; transaction: LatencySummary };
  flushes: { count: number; bytes: number; failures: number; latency_ms: LatencySummary };
  block_cache: CacheFigures;
  query_cache: CacheFigures & { entries: number };
  live_queries: number;
  live_runs: number;
  connections: number;
  /** The tabs that have the database open (1: open in one place); for a tab of a shared
   * database, as of the last look (each call looks again in the background), null before the first. */
  tabs: number | null;
  forwarded_writes: number;
  /** A replica's; null without a sync server. */
  sync: null | { lag_versions: number | null; lag_seconds: number | null; online: boolean | null; waiting: number };
}

/** A statement of slowQueries(), slowest (max_ms) first. */
export interface SlowQuery {
  sql: string;
  kind: "read" | "write" | "transaction" | string;
  count: number;
  max_ms: number;
  mean_ms: number;
  last_ms: number;
}

export interface SlowQueryOptions {
  /** Only statements whose slowest run took at least this long (default 100). */
  thresholdMs?: number;
  /** At most this many (default 20). */
  limit?: number;
}

/** A node of explain()'s plan (EXPLAIN QUERY PLAN). */
export interface PlanNode {
  id: number;
  detail: string;
  /** A scan of the whole table (no index serves it). */
  full_scan: boolean;
  table: string | null;
  children: PlanNode[];
}

/** An index that would serve a filtered full scan. */
export interface IndexSuggestion {
  table: string;
  columns: string[];
  /** "CREATE INDEX ... ON table(a, b)" */
  sql: string;
}

export interface QueryPlan {
  sql: string;
  plan: PlanNode[];
  full_scans: string[];
  suggestions: IndexSuggestion[];
}

/** The app-layer methods of every Database (app.js). */
export class AppCalls {
  /** Apply migrations up to `target` (default: the last); a lower target runs the
   * downs above it. With tabs, the leader runs each once. MigrationOrderError,
   * MigrationChecksumError, MigrationFailedError (left at the last good version),
   * SchemaTooNewError. */
  migrate(migrations: Iterable<Migration>, options?: { target?: number | null }): Promise<MigrationResult>;
  /** Run the downs of the last `steps` (default 1) applied migrations. */
  rollback(migrations: Iterable<Migration>, options?: { steps?: number }): Promise<MigrationResult>;
  migrationStatus(migrations?: Iterable<Migration>): Promise<MigrationState[]>;
  /** callback(rows) now (before this resolves) and after every commit, in any tab,
   * that changes them; resolves with the unsubscriber. A statement that writes:
   * NotReadOnlyError. A callback may be async; what it throws or rejects is logged. */
  liveQuery<R extends Row = Row>(sql: string, params: Params, callback: (rows: R[]) => void | Promise<void>): Promise<() => void>;
  liveQuery<R extends Row = Row>(sql: string, callback: (rows: R[]) => void | Promise<void>): Promise<() => void>;
  /** The rows of sql, cached until `ttl` SECONDS pass (default 60) or a commit in any
   * tab touches a table they read. A statement that writes: NotReadOnlyError. */
  cached<R extends Row = Row>(sql: string, params?: Params, options?: { ttl?: number }): Promise<R[]>;
  /** This database's figures. With {worker: true}: as of the Worker's last report
   * (the first call answers the report made at open, and asks for one with every reply). */
  metrics(): Metrics;
  /** The slowest statements seen. With {worker: true}: as of the Worker's last report
   * (a call with new options asks for them from the next reply on). */
  slowQueries(options?: SlowQueryOptions): SlowQuery[];
  explain(sql: string, params?: Params): Promise<QueryPlan>;
}
