// Short transactions outside the load (the lease, the lake claim): BEGIN, LOCK the tables they
// touch first (AWS's advice against serializable conflicts), with the wait bounded by
// statement_timeout, then the work, COMMIT. A conflict that still happens is retried.

import type pg from 'pg';
import { backoffDelay, REAL_CLOCK, type RetryClock } from '../core/retry.js';
import { isSerializableConflict } from './errors.js';

export interface Timeouts {
  /** Bound on waiting for a table lock. */
  lockTimeoutMs: number;
  /** Bound on every other statement of musickpi's own sessions. */
  statementTimeoutMs: number;
}

export function setTimeoutSql(ms: number): string {
  // Redshift takes integer milliseconds only ('30s' is refused).
  return `SET statement_timeout TO ${Math.max(0, Math.floor(ms))}`;
}

/** LOCK with its wait bounded, then the statement bound back. */
export async function lockTables(c: pg.Client, tables: string[], t: Timeouts): Promise<void> {
  await c.query(setTimeoutSql(t.lockTimeoutMs));
  await c.query(`LOCK ${tables.join(', ')}`);
  await c.query(setTimeoutSql(t.statementTimeoutMs));
}

export interface ConflictRetry {
  attempts: number;
  clock?: RetryClock;
}

export async function lockedTransaction<T>(
  c: pg.Client,
  tables: string[],
  t: Timeouts,
  retry: ConflictRetry,
  work: (c: pg.Client) => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    let open = false;
    try {
      await c.query('BEGIN');
      open = true;
      await lockTables(c, tables, t);
      const result = await work(c);
      await c.query('COMMIT');
      open = false;
      return result;
    } catch (err) {
      if (open) await c.query('ROLLBACK').catch(() => undefined);
      if (attempt < retry.attempts && isSerializableConflict(err)) {
        const clock = retry.clock ?? REAL_CLOCK;
        await clock.sleep(backoffDelay(attempt, clock.random()));
        continue;
      }
      throw err;
    }
  }
}

/** A statement on its own (autocommit) run again after a serializable conflict. */
export async function retryConflicts<T>(retry: ConflictRetry, work: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (err) {
      if (attempt < retry.attempts && isSerializableConflict(err)) {
        const clock = retry.clock ?? REAL_CLOCK;
        await clock.sleep(backoffDelay(attempt, clock.random()));
        continue;
      }
      throw err;
    }
  }
}
