// The load transaction both dialects share (model: one client class per destination, one
// skeleton): stage, BEGIN, lock and fencing checks, delete every covered date and insert the
// staged rows table by table, the ledger, the last check, COMMIT. The steps are reported
// through LoadBatch.onStep in the order documented there; a throw before 'committed' rolls
// everything back.

import type pg from 'pg';
import { MkpiError } from '../../../domain/errors.js';
import { type GenreRow, type HourlyRow, type KpiTable } from '../../../domain/kpi.js';
import { type LedgerEntry } from '../../../domain/ledger.js';
import { type LoadBatch, type LoadResult, type LoadStep } from '../../../domain/warehouse.js';
import { checkBatch } from './batch.js';
import { type Conn, type Connections } from './connection.js';
import { classifyPgError, isConnectionLoss } from './errors.js';
import { mergeLedgerEntries } from './ledger.js';
import { backoffDelay, REAL_CLOCK, type RetryClock } from './retry.js';

export type StagePart = { dates: string[]; rows: HourlyRow[] } | { dates: string[]; rows: GenreRow[] };

/** What a dialect supplies to the shared load transaction. Every method runs on the load's own session. */
export interface LoadDialect {
  /**
   * Staging before BEGIN (Redshift: S3 objects and COPY, so that the tables stay locked only
   * for the merge) rather than inside the transaction (PostgreSQL: COPY FROM STDIN into stage
   * tables dropped at commit).
   */
  readonly stageBeforeBegin: boolean;
  /** Checks on the session before anything is staged (a refusal here changes nothing). */
  prepare?(c: pg.Client, batch: LoadBatch, ledger: LedgerEntry[]): Promise<void>;
  /** The session's stage tables, and whatever the dialect stages besides KPI rows. */
  createStage(c: pg.Client, batch: LoadBatch, ledger: LedgerEntry[]): Promise<void>;
  /** One table's covered dates and rows. `onFirstRows` once its first rows are on their way ('mid-copy'). */
  stage(c: pg.Client, table: KpiTable, part: StagePart, onFirstRows: () => Promise<void>): Promise<void>;
  /** Right after BEGIN: lock timeouts, table locks, the fencing check. */
  begin(c: pg.Client): Promise<void>;
  /** Deletes the table's covered dates and inserts its staged rows. */
  merge(c: pg.Client, table: KpiTable): Promise<{ deleted: number; inserted: number }>;
  /** Retracted rows marked, twin rows deleted, the batch's entries merged in. */
  writeLedger(c: pg.Client, batch: LoadBatch, ledger: LedgerEntry[]): Promise<void>;
  /** The last check before COMMIT (PostgreSQL: the run lock's session is still alive). */
  beforeCommit(c: pg.Client): Promise<void>;
  /** Failures after which the whole transaction runs again (Redshift's serializable conflicts). */
  retry?: TransactionRetry;
  /** After the load, committed or not: removes what staging left outside the session. Never throws. */
  finish?(): Promise<void>;
}

export interface TransactionRetry {
  isConflict(err: unknown): boolean;
  /** Attempts in all, the first included. */
  attempts: number;
  clock?: RetryClock;
  /** Told before each wait. */
  onRetry?(notice: { attempt: number; delayMs: number; error: unknown }): void;
}

function emptyResult(): LoadResult {
  return { hourlyRowsWritten: 0, genreRowsWritten: 0, hourlyRowsDeleted: 0, genreRowsDeleted: 0 };
}

/**
 * One load, on a session of its own (registered in `loading` so that close() can cut it), or
 * on `session`, a session the caller holds (the warehouse engine's, whose temp tables the load
 * reads): that one is left open afterwards. All or nothing: a failure at any step leaves the
 * tables and the ledger as they were.
 */
export async function runLoad(
  db: Connections,
  loading: Set<Conn>,
  batch: LoadBatch,
  dialect: LoadDialect,
  session?: Conn,
): Promise<LoadResult> {
  checkBatch(batch);
  const ledger = mergeLedgerEntries(batch.ledger);
  const conn = session ?? (await db.session('loading'));
  loading.add(conn);
  const c = conn.client;
  let result = emptyResult();
  let inTransaction = false;
  let committing = false;
  let attempt = 1;
  const retry = dialect.retry;

  // 'mid-copy' once, inside the first staging that sends any row.
  let midCopy: ((step: LoadStep) => Promise<void> | void) | undefined = batch.onStep;
  const onFirstRows = async () => {
    const step = midCopy;
    midCopy = undefined;
    await step?.('mid-copy');
  };
  const stageAll = async () => {
    await dialect.createStage(c, batch, ledger);
    if (batch.hourly) await dialect.stage(c, 'hourly', batch.hourly, onFirstRows);
    if (batch.genre) await dialect.stage(c, 'genre', batch.genre, onFirstRows);
    await batch.onStep?.('staged');
  };

  try {
    await dialect.prepare?.(c, batch, ledger);
    if (dialect.stageBeforeBegin) await stageAll();
    for (; ; attempt++) {
      try {
        result = emptyResult();
        committing = false;
        await c.query('BEGIN');
        inTransaction = true;
        await dialect.begin(c);
        if (!dialect.stageBeforeBegin) await stageAll();

        if (batch.hourly) {
          const r = await dialect.merge(c, 'hourly');
          result.hourlyRowsDeleted = r.deleted;
          result.hourlyRowsWritten = r.inserted;
        }
        await batch.onStep?.('mid-merge');
        if (batch.genre) {
          const r = await dialect.merge(c, 'genre');
          result.genreRowsDeleted = r.deleted;
          result.genreRowsWritten = r.inserted;
        }
        await dialect.writeLedger(c, batch, ledger);
        await batch.onStep?.('merged');

        await dialect.beforeCommit(c);
        await batch.onStep?.('before-commit');
        // Closed under us (close() while loading): known not to be committed.
        if (conn.dead) throw new Error('Connection terminated before COMMIT');
        committing = true;
        await c.query('COMMIT');
        inTransaction = false;
        break;
      } catch (err) {
        if (inTransaction && !conn.dead && !isConnectionLoss(err)) {
          await c.query('ROLLBACK').catch(() => undefined);
        }
        inTransaction = false;
        // A conflict is reported by the server, COMMIT included: the transaction is known rolled back.
        if (retry && attempt < retry.attempts && !conn.dead && !isConnectionLoss(err) && retry.isConflict(err)) {
          const clock = retry.clock ?? REAL_CLOCK;
          const delayMs = backoffDelay(attempt, clock.random());
          retry.onRetry?.({ attempt, delayMs, error: err });
          await clock.sleep(delayMs);
          continue;
        }
        throw err;
      }
    }
  } catch (err) {
    const e = db.toError(
      err,
      'loading',
      committing && isConnectionLoss(err)
        ? 'the connection dropped during COMMIT, so whether the load was applied is unknown; ' +
            'running again is safe (a load replaces whole dates and the ledger upsert is idempotent)'
        : classifyPgError(err) === 'MKPI_WAREHOUSE_UNAVAILABLE'
          ? `the load was not committed, nothing changed; check that ${db.product} at ${db.description} is reachable and run again`
          : undefined,
    );
    if (attempt > 1 && retry?.isConflict(err)) {
      throw new MkpiError(e.code, `${e.message}; gave up after ${attempt} attempts`, {
        hint: e.hint,
        cause: e.cause,
        details: { ...e.details, attempts: attempt },
      });
    }
    throw e;
  } finally {
    loading.delete(conn);
    if (!session) await c.end().catch(() => undefined);
    await dialect.finish?.();
  }
  await batch.onStep?.('committed');
  return result;
}
