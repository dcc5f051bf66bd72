// PostgreSQL warehouse. Loads go through COPY into session-local stage tables and a
// DELETE + INSERT merge in one transaction; the run lock is a session-level advisory lock
// on a dedicated connection, so it vanishes by itself when the process or connection dies.

import type pg from 'pg';
import { type LedgerEntry } from '../../../domain/ledger.js';
import { MkpiError } from '../../../domain/errors.js';
import {
  type LoadBatch,
  type LoadStep,
  type LoadResult,
  type QueryResult,
  type RunLock,
  type Warehouse,
} from '../../../domain/warehouse.js';
import { checkBatch } from './batch.js';
import { Connections, type Conn, type ConnectionConfig, type ConnectRetryNotice } from './connection.js';
import { GENRE_COLUMNS, HOURLY_COLUMNS, stage } from './copy.js';
import { classifyPgError, isConnectionLoss } from './errors.js';
import { markArchived, mergeLedgerEntries, readLedger, writeLedger } from './ledger.js';
import { AdvisoryRunLock } from './lock.js';
import { claimLake, lakeClaim } from './lake-claim.js';
import { initSchema, isInitialised } from './schema.js';
import { multi, quoteSchema, renderSql } from './sql.js';

export interface PostgresWarehouseOptions {
  schema: string;
  /**
   * Connection settings used when connectionString is '' (PG* variables read by the caller).
   * Never holds anything that is not also allowed in a connection string.
   */
  config?: ConnectionConfig;
  /** How long a load waits for a table lock held by someone else before giving up (retry later). */
  lockTimeoutMs?: number;
  /** Connect timeout of one attempt; pg's default is to wait forever on a black-holed host. */
  connectTimeoutMs?: number;
  /**
   * How long connecting keeps retrying failures that may heal by themselves (connection
   * refused or reset, timeouts, a server starting up, too many connections), with exponential
   * backoff and jitter. Default 0, a single attempt: openWarehouse sets the policy of the CLI.
   */
  connectRetryMs?: number;
  /** Told before each wait between connection attempts (the CLI logs it). */
  onConnectRetry?: (notice: ConnectRetryNotice) => void;
}

export class PostgresWarehouse implements Warehouse {
  readonly description: string;
  readonly schema: string;
  private readonly quoted: string;
  private readonly lockTimeoutMs: number;
  private readonly db: Connections;
  private readonly runLock: AdvisoryRunLock;
  private readonly loading = new Set<Conn>();

  constructor(connectionString: string, opts: PostgresWarehouseOptions) {
    this.quoted = quoteSchema(opts.schema);
    this.schema = opts.schema;
    this.lockTimeoutMs = opts.lockTimeoutMs ?? 60_000;
    this.db = new Connections(connectionString, opts.config, opts.connectTimeoutMs ?? 15_000, {
      totalMs: opts.connectRetryMs ?? 0,
      onRetry: opts.onConnectRetry,
    });
    this.description = this.db.description;
    this.runLock = new AdvisoryRunLock(this.db, this.schema);
  }

  async isInitialised(): Promise<boolean> {
    return this.db.withWork('checking the warehouse schema', (c) => isInitialised(c, this.schema));
  }

  async init(): Promise<void> {
    await this.db.withWork('initialising the warehouse schema', (c) => initSchema(c, this.schema, this.quoted));
  }

  async acquireRunLock(): Promise<RunLock> {
    return this.runLock.acquire();
  }

  async readLedger(): Promise<LedgerEntry[]> {
    return this.db.withWork('reading the ledger', (c) => readLedger(c, this.quoted));
  }

  async load(batch: LoadBatch): Promise<LoadResult> {
    checkBatch(batch);
    const ledger = mergeLedgerEntries(batch.ledger);
    const conn = await this.db.connect('loading');
    this.loading.add(conn);
    const c = conn.client;
    const result: LoadResult = { hourlyRowsWritten: 0, genreRowsWritten: 0, hourlyRowsDeleted: 0, genreRowsDeleted: 0 };
    let inTransaction = false;
    let committing = false;
    try {
      await c.query('BEGIN');
      inTransaction = true;
      await c.query(`SET LOCAL lock_timeout = ${Math.max(0, Math.floor(this.lockTimeoutMs))}`);
      await c.query(renderSql('stage', this.schema));

      // 'mid-copy' once, inside the first COPY that sends any row.
      let midCopy: ((step: LoadStep) => Promise<void> | void) | undefined = batch.onStep;
      const onFirstChunk = async () => {
        const step = midCopy;
        midCopy = undefined;
        await step?.('mid-copy');
      };
      if (batch.hourly) await stage(c, 'hourly', batch.hourly.dates, batch.hourly.rows, HOURLY_COLUMNS, onFirstChunk);
      if (batch.genre) await stage(c, 'genre', batch.genre.dates, batch.genre.rows, GENRE_COLUMNS, onFirstChunk);
      await batch.onStep?.('staged');

      if (batch.hourly) {
        const [del, ins] = await multi(c, renderSql('merge-hourly', this.schema));
        result.hourlyRowsDeleted = del;
        result.hourlyRowsWritten = ins;
      }
      await batch.onStep?.('mid-merge');
      if (batch.genre) {
        const [del, ins] = await multi(c, renderSql('merge-genre', this.schema));
        result.genreRowsDeleted = del;
        result.genreRowsWritten = ins;
      }
      await writeLedger(c, this.schema, this.quoted, batch.runId, batch.retire ?? [], ledger, batch.retract ?? []);
      await batch.onStep?.('merged');

      await this.runLock.checkStillHeld(c);
      await batch.onStep?.('before-commit');
      // Closed under us (close() while loading): known not to be committed.
      if (conn.dead) throw new Error('Connection terminated before COMMIT');
      committing = true;
      await c.query('COMMIT');
      inTransaction = false;
    } catch (err) {
      if (inTransaction && !conn.dead && !isConnectionLoss(err)) {
        await c.query('ROLLBACK').catch(() => undefined);
      }
      throw this.db.toError(
        err,
        'loading',
        committing && isConnectionLoss(err)
          ? 'the connection dropped during COMMIT, so whether the load was applied is unknown; ' +
              'running again is safe (a load replaces whole dates and the ledger upsert is idempotent)'
          : classifyPgError(err) === 'MKPI_WAREHOUSE_UNAVAILABLE'
            ? `the load was not committed, nothing changed; check that PostgreSQL at ${this.description} is reachable and run again`
            : undefined,
      );
    } finally {
      this.loading.delete(conn);
      await c.end().catch(() => undefined);
    }
    await batch.onStep?.('committed');
    return result;
  }

  async markArchived(fileKey: string, fingerprint: string, archivedKey: string, archivedFingerprint?: string): Promise<void> {
    await this.db.withWork('recording an archived file', (c) =>
      markArchived(c, this.quoted, fileKey, fingerprint, archivedKey, archivedFingerprint),
    );
  }

  async claimLake(lake: string, opts: { adopt?: boolean } = {}): Promise<void> {
    await this.db.withWork('recording the lake of the ledger', (c) => claimLake(c, this.schema, this.quoted, lake, opts));
  }

  async lakeClaim(): Promise<string | null> {
    return this.db.withWork('reading the lake of the ledger', (c) => lakeClaim(c, this.quoted));
  }

  async query(sql: string): Promise<QueryResult> {
    return this.db.withWork('running a query', async (c) => {
      // Set for every query: the previous one may have changed it (the SQL is the user's).
      await c.query(`SET search_path TO ${this.quoted}, public`);
      const res = (await c.query({ text: sql, rowMode: 'array' }).catch((err: unknown) => {
        throw statementError(err, this.schema) ?? err;
      })) as pg.QueryResult<unknown[]> | pg.QueryResult<unknown[]>[];
      // Several statements yield one result each; the last one is what a user expects to see.
      const last = Array.isArray(res) ? res[res.length - 1] : res;
      return {
        columns: (last?.fields ?? []).map((f) => f.name),
        rows: last?.rows ?? [],
        // pg leaves both null for an empty statement.
        command: last?.command ?? '',
        rowCount: last?.rowCount ?? null,
      };
    });
  }

  async close(): Promise<void> {
    if (this.db.closed) return;
    // close() during a load is an interruption (SIGINT): dropping the connection makes the
    // server roll the transaction back, instead of waiting for a load that may take minutes.
    for (const conn of this.loading) {
      conn.dead = true;
      await conn.client.end().catch(() => undefined);
    }
    await this.runLock.drop();
    await this.db.close();
  }
}

/**
 * An error in the user's statement (bad syntax, an unknown table or column, a type error) is a
 * usage error with a hint fitting its SQLSTATE; connection and server troubles are not.
 */
function statementError(err: unknown, schema: string): MkpiError | undefined {
  const code = (err as { code?: unknown })?.code;
  if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code) || /^(08|53|57|58|XX)/.test(code)) return undefined;
  const position = (err as { position?: unknown }).position;
  const at = typeof position === 'string' && position ? ` (at character ${position})` : '';
  const hints: Record<string, string> = {
    '42601': 'check the statement near the position given; quote it in single quotes in the shell',
    '42P01': `the KPI tables are hourly_kpis and genre_level_kpis in schema ${schema} (created by a first run or \`musickpi init\`); --schema picks another`,
    '42703': 'see the columns with: musickpi query "select * from hourly_kpis limit 1"',
    '3F000': 'the schema does not exist yet: run `musickpi init`, or pick another with --schema',
  };
  const message = err instanceof Error ? err.message : String(err);
  return new MkpiError('MKPI_USAGE', `${message}${at}`, {
    hint: hints[code] ?? (code.startsWith('42') ? 'check the statement: names, types and permissions' : undefined),
    cause: err,
    details: { sqlstate: code },
  });
}
