/**
 * transaction.js: the object db.transaction(fn) (and a migration written in JS)
 * hands its function: statements inside one atomic transaction.
 *
 * Usage (datasync.js and app.js make it; apps get it as `tx`):
 *   await db.transaction(async (tx) => { await tx.execute("UPDATE t SET v = v + 1"); });
 *   await db.migrate([{ version: 1, name: "seed", up: async (tx) => { await tx.execute(...); } }]);
 *
 * Once its function has settled the transaction is ended: a later call throws
 * TransactionFinishedError (a DataSyncError).
 */
import { DataSyncError } from "./local.js";
import { checkParams, checkRows, checkSQL, checkStatements } from "./values.js";

export const END = Symbol("end"); // Transaction's ender, for its makers only
const finished = (name) => new DataSyncError("TransactionFinishedError",
  `this transaction of '${name}' has already ended: run the statement inside a new db.transaction(), or on db`);

/**
 * What db.transaction(fn) hands `fn`: statements inside one atomic transaction.
 *   await db.transaction(async (tx) => { await tx.execute("UPDATE t SET v = v + 1"); });
 */
export class Transaction {
  #tx;
  #name;
  #open = true;
  constructor(tx, name) { this.#tx = tx; this.#name = name; }
  #check() { if (!this.#open) throw finished(this.#name); }
  /** Ended by db.transaction(); later calls throw TransactionFinishedError. */
  [END]() { this.#open = false; }

  /** Like db.execute(), inside the transaction. */
  async execute(sql, params = []) {
    this.#check();
    return this.#tx.execute(checkSQL(sql, "tx.execute()"), checkParams(params, "tx.execute()"));
  }

  /** Like db.query(), inside the transaction. */
  async query(sql, params = []) {
    this.#check();
    return this.#tx.query(checkSQL(sql, "tx.query()"), checkParams(params, "tx.query()"));
  }

  /** Like db.executeMany(), inside the transaction (one call). */
  async executeMany(sql, rows) {
    this.#check();
    return this.#tx.executeMany(checkSQL(sql, "tx.executeMany()"), checkRows(rows, "tx.executeMany()"));
  }

  /** Like db.batch(), inside the transaction (one call). */
  async batch(statements) {
    this.#check();
    return this.#tx.batch(checkStatements(statements, "tx.batch()"));
  }
}

