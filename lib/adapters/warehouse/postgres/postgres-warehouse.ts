// PostgreSQL warehouse: the shared load transaction (core/load.ts) with COPY FROM STDIN into
// session-local stage tables and a DELETE + INSERT merge; the run lock is a session-level advisory lock
// on a dedicated connection, so it vanishes by itself when the process or connection dies.

import { createRequire } from 'node:module';
import type pg from 'pg';
import { type GenreRow, type HourlyRow } from '../../../domain/kpi.js';
import { type LedgerEntry } from '../../../domain/ledger.js';
import {
  type ListRunsOptions,
  type LoadBatch,
  type LoadResult,
  type QueryResult,
  type RunLock,
  type RunRecord,
  type WarehouseEngine,
  type EngineWarehouse,
} from '../../../domain/warehouse.js';
import { Connections, type Conn, type ConnectionConfig, type ConnectRetryNotice } from '../core/connection.js';
import { GENRE_COLUMNS, HOURLY_COLUMNS } from '../core/kpi-columns.js';
import { runLoad, type LoadDialect } from '../core/load.js';
import { runUserQuery } from '../core/query.js';
import { insertRunSql, isMissingTable, noRunsTable, runValues, selectRuns } from '../core/runs.js';
import type { EngineDialect, EngineOptions, EngineSql } from '../core/engine.js';
import type * as Engine from '../core/engine.js';
import { copyParts, stage } from './copy.js';
import { readLedger, writeLedger } from './ledger.js';
import { markArchived } from '../core/ledger.js';
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

export class PostgresWarehouse implements EngineWarehouse {
  readonly description: string;
  readonly schema: string;
  private readonly quoted: string;
  private readonly lockTimeoutMs: number;
  private readonly db: Connections;
  private readonly runLock: AdvisoryRunLock;
  private readonly loading = new Set<Conn>();
  /** Sessions of open warehouse engines: close() ends them. */
  private readonly engines = new Set<Conn>();

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

  /**
   * A run that takes the lock goes on to init() and, usually, a load: their sessions are opened
   * meanwhile (the shared one while the lock's own connects, the load's once the lock is held),
   * rather than each on the critical path, one after the other.
   */
  async acquireRunLock(): Promise<RunLock> {
    this.db.warmWork();
    const lock = await this.runLock.acquire();
    this.db.openSpare();
    return lock;
  }

  async readLedger(): Promise<LedgerEntry[]> {
    return this.db.withWork('reading the ledger', (c) => readLedger(c, this.quoted));
  }

  async load(batch: LoadBatch): Promise<LoadResult> {
    return runLoad(this.db, this.loading, batch, this.dialect);
  }

  /**
   * The warehouse engine on a session of its own: the parts arrive by COPY FROM STDIN into its
   * temp tables, and its load is the shared load transaction on that same session.
   */
  async openEngine(opts: EngineOptions = {}): Promise<WarehouseEngine> {
    const conn = await this.db.connect('the warehouse engine');
    this.engines.add(conn);
    const sql: EngineSql = {
      quoted: this.quoted,
      idType: 'TEXT',
      nameType: 'TEXT',
      keyType: 'TEXT',
      fingerprintType: 'TEXT',
      runIdType: 'TEXT',
      collate: ' COLLATE "C"',
      now: 'now()',
    };
    const dialect: EngineDialect = {
      sql,
      schema: this.schema,
      copyParts: (c, input) => copyParts(c, input),
      load: (session, batch, steps) =>
        runLoad(
          this.db,
          this.loading,
          batch,
          {
            ...this.dialect,
            createStage: async (c, b, ledger) => {
              await this.dialect.createStage(c, b, ledger);
              await steps.createStage(c);
            },
            stage: async (c, table, part, onFirstRows) => {
              // The covered dates as for any load; the rows are computed from the listens.
              if (table === 'hourly') await stage<HourlyRow>(c, table, part.dates, [], HOURLY_COLUMNS);
              else await stage<GenreRow>(c, table, part.dates, [], GENRE_COLUMNS);
              await steps.compute(c, table, onFirstRows);
            },
            writeLedger: async (c, b, ledger) => {
              await steps.store(c);
              await this.dialect.writeLedger(c, b, ledger);
            },
          },
          session,
        ),
      finish: () => {
        this.engines.delete(conn);
        return Promise.resolve();
      },
    };
    // The engine's SQL loads with its first session: the streaming engine never needs it.
    const { SqlEngine } = createRequire(import.meta.url)('../core/engine.js') as typeof Engine;
    return new SqlEngine(this.db, conn, this.loading, dialect, opts);
  }

  /** The PostgreSQL side of the shared load transaction (core/load.ts). */
  private readonly dialect: LoadDialect = {
    stageBeforeBegin: false,
    begin: async (c) => {
      await c.query(`SET LOCAL lock_timeout = ${Math.max(0, Math.floor(this.lockTimeoutMs))}`);
    },
    createStage: async (c) => {
      await c.query(renderSql('stage', this.schema));
    },
    stage: async (c, table, part, onFirstRows) => {
      if (table === 'hourly') await stage(c, table, part.dates, part.rows as HourlyRow[], HOURLY_COLUMNS, onFirstRows);
      else await stage(c, table, part.dates, part.rows as GenreRow[], GENRE_COLUMNS, onFirstRows);
    },
    merge: async (c, table) => {
      const [deleted, inserted] = await multi(c, renderSql(table === 'hourly' ? 'merge-hourly' : 'merge-genre', this.schema));
      return { deleted, inserted };
    },
    writeLedger: (c: pg.Client, batch: LoadBatch, ledger: LedgerEntry[]) =>
      writeLedger(c, this.schema, this.quoted, batch.runId, batch.retire ?? [], ledger, batch.retract ?? []),
    beforeCommit: (c) => this.runLock.checkStillHeld(c),
  };

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
    return this.db.withWork('running a query', (c) => runUserQuery(c, this.quoted, this.schema, sql));
  }

  async recordRun(run: RunRecord): Promise<void> {
    const values = runValues(run);
    await this.db.withWork('recording the run', async (c) => {
      // Its own short transaction on the work session, bounded: a history that cannot be
      // written in seconds is a warning, not a run that hangs after its work is done.
      try {
        // One round trip for the three (a simple query runs them in order; an error stops it).
        await c.query(
          `BEGIN; SET LOCAL lock_timeout = ${Math.max(0, Math.floor(this.lockTimeoutMs))}; SET LOCAL statement_timeout = 30000`,
        );
        await c.query(insertRunSql(this.quoted), values);
        await c.query('COMMIT');
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined);
        if (isMissingTable(err)) throw noRunsTable(this.schema, err);
        throw err;
      }
    });
  }

  async listRuns(opts: ListRunsOptions): Promise<RunRecord[]> {
    return this.db.withWork('reading the run history', (c) => selectRuns(c, this.quoted, opts));
  }

  async close(): Promise<void> {
    if (this.db.closed) return;
    // close() during a load is an interruption (SIGINT): dropping the connection makes the
    // server roll the transaction back, instead of waiting for a load that may take minutes.
    for (const conn of [...this.loading, ...this.engines]) {
      conn.dead = true;
      await conn.client.end().catch(() => undefined);
    }
    this.engines.clear();
    await this.runLock.drop();
    await this.db.close();
  }
}
