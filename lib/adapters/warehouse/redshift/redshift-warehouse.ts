// Amazon Redshift warehouse: the shared load transaction (core/load.ts) with Redshift's rules.
// KPI rows are staged as gzip CSV objects in S3 and COPYed from a manifest into temp tables
// before the transaction; the transaction LOCKs the tables in a fixed order, checks that this
// run still holds its lease (the run lock: a row, as Redshift has no advisory locks), deletes
// the covered dates, inserts, merges the ledger without ON CONFLICT, and commits. Serializable
// conflicts (ERROR 1023) run the transaction again, a bounded number of times.

import { readFileSync } from 'node:fs';
import os from 'node:os';
import type pg from 'pg';
import { MkpiError } from '../../../domain/errors.js';
import { type GenreRow, type HourlyRow, type KpiTable } from '../../../domain/kpi.js';
import { type LedgerEntry } from '../../../domain/ledger.js';
import {
  type ListRunsOptions,
  type LoadBatch,
  type LoadResult,
  type QueryResult,
  type RunLock,
  type RunRecord,
  type EngineStageInput,
  type EngineWarehouse,
  type WarehouseEngine,
} from '../../../domain/warehouse.js';
import { PART_COLUMNS, type PartKind } from '../../../domain/shards.js';
import { PART_TABLES, SqlEngine, type EngineLoadSteps, type EngineOptions, type EngineSql } from '../core/engine.js';
import { processAlive } from '../embedded/process.js';
import { Connections, type Conn, type ConnectRetryNotice } from '../core/connection.js';
import { GENRE_COLUMNS, HOURLY_COLUMNS, KPI_TABLE_NAMES } from '../core/kpi-columns.js';
import { runLoad, type LoadDialect } from '../core/load.js';
import { runUserQuery } from '../core/query.js';
import { insertRunSql, isMissingTable, noRunsTable, runValues, selectRuns } from '../core/runs.js';
import { type RetryClock } from '../core/retry.js';
import { quoteSchema, renderTemplate, statements } from '../core/sql.js';
import { checkIamRole, copyError, copySql } from './copy.js';
import { IamCredentials, iamTarget, passwordFromEnv, type IamOptions, type PasswordEnv } from './credentials.js';
import { classifyRedshiftError, isSerializableConflict } from './errors.js';
import { claimLake, lakeClaim } from './lake-claim.js';
import { LeaseRunLock, newToken, type LeaseIdentity } from './lease.js';
import { insertRows, ledgerStageTables, readLedger, stageLedger, writeLedger } from './ledger.js';
import { markArchived } from '../core/ledger.js';
import { checkWidths, ensureLockTable, initSchema, isInitialised, kpiWidths, readColumns } from './schema.js';
import { stageDirName, Staging, type StagingOptions } from './staging.js';
import { retryConflicts, setTimeoutSql, type Timeouts } from './tx.js';
import { parseRedshiftUrl, type RedshiftUrl } from './url.js';

export interface RedshiftWarehouseOptions {
  schema: string;
  /** Where the stage files and their manifests go (s3://bucket/prefix/), and how to reach that bucket. */
  staging: StagingOptions;
  /** The role COPY reads the stage files with (ARN); default IAM_ROLE default (the cluster's default role). */
  iamRole?: string;
  /** Temporary database credentials from IAM instead of a password (see credentials.ts). */
  iam?: IamOptions;
  /** The environment PGPASSWORD, PGPASSFILE and HOME are read from (the CLI's, not necessarily this process's). */
  env?: PasswordEnv;
  /** Shown to other runs as the holder of the run lock. */
  runId?: string;
  /** Bound on waiting for a table lock (LOCK), in ms. Default 60 s. */
  lockTimeoutMs?: number;
  /** Bound on every other statement of musickpi's own sessions (COPY, the merge), in ms. Default 30 min. */
  statementTimeoutMs?: number;
  /** Connect timeout of one attempt. Default 15 s. */
  connectTimeoutMs?: number;
  /** How long connecting retries failures that may heal by themselves; default 0, a single attempt. */
  connectRetryMs?: number;
  onConnectRetry?: (notice: ConnectRetryNotice) => void;
  /** The run lock's lease: lost when not renewed for ttlMs (default 5 min), renewed every heartbeatMs (default 30 s). */
  lease?: { ttlMs?: number; heartbeatMs?: number };
  /** Attempts of a transaction that meets serializable conflicts, the first included. Default 5. */
  conflictAttempts?: number;
  /** Stage objects of another run older than this are swept by a load. Default 1 h. */
  staleStageMs?: number;
  /** Warnings the user must see (a lease taken over, a column that could not be widened). */
  warn?: (l: string) => void;
  /** Tests only. */
  testing?: RedshiftTestSeams;
}

export interface RedshiftTestSeams {
  /** Builds the pg client (a fake recording the SQL). */
  newClient?: (config: pg.ClientConfig) => pg.Client;
  /** The waits between conflict retries. */
  clock?: RetryClock;
  /** Who this process is, for the lease. */
  identity?: Partial<LeaseIdentity>;
  /** Uncompressed characters per stage object. */
  objectChars?: number;
}

function bootId(): string | null {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
  } catch {
    return null;
  }
}

const LOCK_ORDER = ['musickpi_run_lock', 'hourly_kpis', 'genre_level_kpis', 'musickpi_ledger', 'musickpi_ledger_dates'] as const;
/** The warehouse engine's load also writes the stored listens: the same order, those last. */
const ENGINE_LOCK_ORDER = [...LOCK_ORDER, 'musickpi_listen_files', 'musickpi_listens'] as const;

export class RedshiftWarehouse implements EngineWarehouse {
  readonly description: string;
  readonly schema: string;
  readonly staging: Staging;
  private readonly quoted: string;
  private readonly url: RedshiftUrl;
  private readonly timeouts: Timeouts;
  private readonly iamRole: string | undefined;
  private readonly region: string | undefined;
  private readonly conflictAttempts: number;
  private readonly staleStageMs: number;
  private readonly clock: RetryClock | undefined;
  private readonly warn: ((l: string) => void) | undefined;
  private readonly db: Connections;
  private readonly lease: LeaseRunLock;
  private readonly loading = new Set<Conn>();
  /** Sessions of open warehouse engines: close() ends them. */
  private readonly engines = new Set<Conn>();
  /** Names the stage directories of loads made without a lease (the lease's token otherwise). */
  private readonly instanceToken = newToken();
  private loads = 0;
  /** Stage files a load could not remove: tried again when the run lock is released. */
  private leftovers: string[] = [];

  constructor(connectionString: string, opts: RedshiftWarehouseOptions) {
    this.quoted = quoteSchema(opts.schema);
    this.schema = opts.schema;
    if (!opts.staging?.uri) {
      throw new MkpiError('MKPI_CONFIG', 'a Redshift warehouse needs a staging location in S3 for its COPY files', {
        hint: 'give --staging s3://bucket/prefix/ (or MUSICKPI_STAGING)',
      });
    }
    this.url = parseRedshiftUrl(connectionString);
    this.staging = new Staging(opts.staging, opts.testing?.objectChars);
    this.iamRole = checkIamRole(opts.iamRole);
    this.region = opts.staging.s3?.region || undefined;
    this.timeouts = { lockTimeoutMs: opts.lockTimeoutMs ?? 60_000, statementTimeoutMs: opts.statementTimeoutMs ?? 30 * 60_000 };
    this.conflictAttempts = Math.max(1, opts.conflictAttempts ?? 5);
    this.staleStageMs = opts.staleStageMs ?? 60 * 60_000;
    this.clock = opts.testing?.clock;
    this.warn = opts.warn;

    const u = this.url;
    let credentials: (() => Promise<{ user: string; password: string }>) | undefined;
    let password = u.password;
    if (opts.iam) {
      const iam = new IamCredentials(iamTarget(u, opts.iam), opts.iam.durationSeconds);
      credentials = () => iam.get();
    } else {
      if (!u.user) {
        throw new MkpiError('MKPI_CONFIG', `the Redshift URL ${u.description} names no user`, {
          hint: 'redshift://USER@host:5439/database',
        });
      }
      password ??= passwordFromEnv(opts.env ?? {}, { host: u.host, port: u.port, database: u.database, user: u.user });
    }
    const statementTimeoutMs = this.timeouts.statementTimeoutMs;
    this.db = new Connections(
      '',
      { host: u.host, port: u.port, user: u.user, password, database: u.database },
      opts.connectTimeoutMs ?? 15_000,
      { totalMs: opts.connectRetryMs ?? 0, onRetry: opts.onConnectRetry },
      {
        product: 'Redshift',
        description: u.description,
        ssl: u.ssl,
        credentials,
        classify: classifyRedshiftError,
        newClient: opts.testing?.newClient,
        // After the startup packet, never in it: Redshift refuses parameters there that PostgreSQL takes.
        onConnect: async (c) => {
          await c.query(setTimeoutSql(statementTimeoutMs));
        },
      },
    );
    this.db.secrets.push(...u.secrets);
    this.description = this.db.description;

    const identity: LeaseIdentity = {
      host: os.hostname(),
      pid: process.pid,
      bootId: bootId(),
      isAlive: (pid) => processAlive(pid),
      ...opts.testing?.identity,
    };
    this.lease = new LeaseRunLock(this.db, {
      ...this.timeouts,
      schema: this.schema,
      quoted: this.quoted,
      runId: opts.runId ?? `pid-${identity.pid}`,
      ttlMs: opts.lease?.ttlMs ?? 5 * 60_000,
      heartbeatMs: opts.lease?.heartbeatMs ?? 30_000,
      identity,
      conflictAttempts: this.conflictAttempts,
      clock: this.clock,
      ensureTable: (c) => ensureLockTable(c, this.schema, this.quoted),
      onTakeOver: async (tokens) => {
        await this.staging.sweep({
          own: this.currentToken(),
          tokens: new Set(tokens),
          olderThanMs: this.staleStageMs,
          now: Date.now(),
          warn: this.warn,
        });
      },
      warn: this.warn,
    });
  }

  private currentToken(): string {
    return this.lease.token ?? this.instanceToken;
  }

  private get retry() {
    return { attempts: this.conflictAttempts, clock: this.clock };
  }

  async isInitialised(): Promise<boolean> {
    return this.db.withWork('checking the warehouse schema', (c) => isInitialised(c, this.schema));
  }

  async init(): Promise<void> {
    await this.db.withWork('initialising the warehouse schema', (c) => initSchema(c, this.schema, this.quoted, this.warn));
  }

  async acquireRunLock(): Promise<RunLock> {
    const lock = await this.lease.acquire();
    return {
      release: async () => {
        await this.removeLeftovers();
        await lock.release();
      },
    };
  }

  private async removeLeftovers(): Promise<void> {
    if (this.leftovers.length === 0) return;
    const keys = this.leftovers;
    this.leftovers = [];
    this.leftovers = await this.staging.remove(keys, this.warn);
  }

  async readLedger(): Promise<LedgerEntry[]> {
    return this.db.withWork('reading the ledger', (c) => readLedger(c, this.quoted));
  }

  async load(batch: LoadBatch): Promise<LoadResult> {
    return runLoad(this.db, this.loading, batch, this.loadDialect(batch));
  }

  /** The Redshift side of one load; its stage files are its own. */
  private loadDialect(batch: LoadBatch): LoadDialect {
    const dir = stageDirName(batch.runId, this.currentToken(), ++this.loads);
    const dirUrl = `${this.staging.root}${dir}/`;
    const keys: string[] = [];
    const q = this.quoted;
    return {
      stageBeforeBegin: true,
      prepare: async (c, b, ledger) => {
        checkLedgerWidths(b, ledger);
        if (b.hourly || b.genre) {
          const widths = kpiWidths(await readColumns(c, this.schema, [KPI_TABLE_NAMES.hourly, KPI_TABLE_NAMES.genre]));
          const day = (r: Record<string, unknown>) => `listen_date ${String(r.listen_date)}`;
          if (b.hourly)
            checkWidths(
              widths,
              KPI_TABLE_NAMES.hourly,
              b.hourly.rows as unknown as Record<string, unknown>[],
              (r) => `${day(r)}, hour ${String(r.listen_hour)}`,
            );
          if (b.genre) checkWidths(widths, KPI_TABLE_NAMES.genre, b.genre.rows as unknown as Record<string, unknown>[], day);
          // Leftovers of runs killed long ago (those of a holder taken over went when the lease was taken).
          await this.staging.sweep({
            own: this.currentToken(),
            tokens: new Set(),
            olderThanMs: this.staleStageMs,
            now: Date.now(),
            warn: this.warn,
          });
        }
      },
      createStage: async (c, b, ledger) => {
        const wanted = new Set(ledgerStageTables(b, ledger));
        for (const t of ['hourly', 'genre'] as const) {
          if (b[t]) wanted.add(`musickpi_stage_${t}`).add(`musickpi_stage_${t}_dates`);
        }
        for (const s of statements(renderTemplate('redshift', 'stage', this.schema))) {
          const name = /^CREATE TEMP TABLE (\w+)/.exec(s)?.[1];
          if (name && wanted.has(name)) await c.query(s);
        }
        await stageLedger(c, b, ledger);
      },
      stage: async (c, table, part, onFirstRows) => {
        const dates = [...new Set(part.dates)];
        if (dates.length > 0)
          await insertRows(
            c,
            `musickpi_stage_${table}_dates`,
            ['listen_date'],
            dates.map((d) => [d]),
          );
        const staged =
          table === 'hourly'
            ? await this.staging.writeTable(dir, table, part.rows as HourlyRow[], HOURLY_COLUMNS, keys, onFirstRows)
            : await this.staging.writeTable(dir, table, part.rows as GenreRow[], GENRE_COLUMNS, keys, onFirstRows);
        if (!staged) return;
        const columns = table === 'hourly' ? HOURLY_COLUMNS : GENRE_COLUMNS;
        try {
          await c.query(copySql(`musickpi_stage_${table}`, columns, staged.manifestUrl, { iamRole: this.iamRole, region: this.region }));
        } catch (err) {
          throw await copyError(c, err, KPI_TABLE_NAMES[table], staged.manifestUrl, dirUrl);
        }
      },
      begin: async (c) => {
        await c.query(setTimeoutSql(this.timeouts.lockTimeoutMs));
        await c.query(`LOCK ${LOCK_ORDER.map((t) => `${q}.${t}`).join(', ')}`);
        await c.query(setTimeoutSql(this.timeouts.statementTimeoutMs));
        await this.lease.fence(c);
      },
      merge: async (c, table: KpiTable) => {
        const [del, ins] = statements(renderTemplate('redshift', table === 'hourly' ? 'merge-hourly' : 'merge-genre', this.schema));
        const deleted = (await c.query(del)).rowCount ?? 0;
        const inserted = (await c.query(ins)).rowCount ?? 0;
        return { deleted, inserted };
      },
      writeLedger: (c, b, ledger) => writeLedger(c, this.schema, b, ledger),
      beforeCommit: () => Promise.resolve(),
      retry: {
        isConflict: isSerializableConflict,
        attempts: this.conflictAttempts,
        clock: this.clock,
        onRetry: (n) =>
          this.warn?.(
            `the load met a serializable conflict (attempt ${n.attempt}); running it again in ${(n.delayMs / 1000).toFixed(1)} s`,
          ),
      },
      finish: async () => {
        this.leftovers.push(...(await this.staging.remove(keys, this.warn)));
      },
    };
  }

  /**
   * The warehouse engine on a session of its own: one COPY per part kind from a manifest naming
   * exactly that kind's parts (staging must be on S3), into the session's temp tables; its load
   * is the shared load transaction on that session, computing under the transaction's LOCK.
   */
  async openEngine(opts: EngineOptions = {}): Promise<WarehouseEngine> {
    const conn = await this.db.connect('the warehouse engine');
    this.engines.add(conn);
    const sql: EngineSql = {
      quoted: this.quoted,
      idType: 'VARCHAR(65535)',
      nameType: 'VARCHAR(1020)',
      keyType: 'VARCHAR(1024)',
      fingerprintType: 'VARCHAR(256)',
      runIdType: 'VARCHAR(256)',
      // Redshift compares VARCHARs by their UTF-8 bytes, which is code point order; it has no COLLATE "C".
      collate: '',
      now: 'GETDATE()',
    };
    return new SqlEngine(
      this.db,
      conn,
      this.loading,
      {
        sql,
        schema: this.schema,
        copyParts: (c, input) => this.copyParts(c, input),
        load: (session, batch, steps) => runLoad(this.db, this.loading, batch, this.engineLoadDialect(batch, steps), session),
        finish: () => {
          this.engines.delete(conn);
          return Promise.resolve();
        },
      },
      opts,
    );
  }

  private async copyParts(c: pg.Client, input: EngineStageInput): Promise<void> {
    const s3Uri = input.s3Uri?.bind(input);
    const kinds = (['songs', 'artists', 'users', 'listens'] as PartKind[]).filter((k) => input.parts[k].length > 0);
    const urls = new Map<PartKind, string[]>();
    for (const kind of kinds) {
      const list = input.parts[kind].map((p) => s3Uri?.(p.key));
      if (list.some((u) => u === undefined)) {
        throw new MkpiError('MKPI_CONFIG', 'the warehouse engine on Redshift needs its staging on S3: COPY reads the parts from there', {
          hint: 'give --staging s3://bucket/prefix/ (Redshift cannot read a local folder)',
        });
      }
      urls.set(kind, list as string[]);
    }
    const dir = stageDirName('engine', this.currentToken(), ++this.loads);
    const dirUrl = `${this.staging.root}${dir}/`;
    const keys: string[] = [];
    try {
      for (const kind of kinds) {
        const manifestUrl = await this.staging.writeManifest(dir, kind, urls.get(kind)!, keys);
        try {
          await c.query(copySql(PART_TABLES[kind], PART_COLUMNS[kind], manifestUrl, { iamRole: this.iamRole, region: this.region }));
        } catch (err) {
          throw await copyError(c, err, `${kind} part`, manifestUrl, dirUrl);
        }
      }
    } finally {
      this.leftovers.push(...(await this.staging.remove(keys, this.warn)));
    }
  }

  /**
   * The shared load transaction for the warehouse engine: nothing to put in S3, so everything is
   * staged inside the transaction, after its LOCK: the KPIs are computed from the ledger and the
   * stored listens as they are under the lock. The stage tables of an earlier load of the same
   * session are dropped first (temp tables live as long as the session).
   */
  private engineLoadDialect(batch: LoadBatch, steps: EngineLoadSteps): LoadDialect {
    const base = this.loadDialect(batch);
    const q = this.quoted;
    return {
      ...base,
      stageBeforeBegin: false,
      createStage: async (c, b, ledger) => {
        const wanted = new Set(ledgerStageTables(b, ledger));
        for (const t of ['hourly', 'genre'] as const) {
          if (b[t]) wanted.add(`musickpi_stage_${t}`).add(`musickpi_stage_${t}_dates`);
        }
        for (const s of statements(renderTemplate('redshift', 'stage', this.schema))) {
          const name = /^CREATE TEMP TABLE (\w+)/.exec(s)?.[1];
          if (!name || !wanted.has(name)) continue;
          await c.query(`DROP TABLE IF EXISTS ${name}`);
          await c.query(s);
        }
        await stageLedger(c, b, ledger);
        await steps.createStage(c);
      },
      stage: async (c, table, part, onFirstRows) => {
        const dates = [...new Set(part.dates)];
        if (dates.length > 0)
          await insertRows(
            c,
            `musickpi_stage_${table}_dates`,
            ['listen_date'],
            dates.map((d) => [d]),
          );
        await steps.compute(c, table, onFirstRows);
      },
      begin: async (c) => {
        await c.query(setTimeoutSql(this.timeouts.lockTimeoutMs));
        await c.query(`LOCK ${ENGINE_LOCK_ORDER.map((t) => `${q}.${t}`).join(', ')}`);
        await c.query(setTimeoutSql(this.timeouts.statementTimeoutMs));
        await this.lease.fence(c);
      },
      writeLedger: async (c, b, ledger) => {
        await steps.store(c);
        await writeLedger(c, this.schema, b, ledger);
      },
    };
  }

  async markArchived(fileKey: string, fingerprint: string, archivedKey: string, archivedFingerprint?: string): Promise<void> {
    await this.db.withWork('recording an archived file', (c) =>
      retryConflicts(this.retry, () => markArchived(c, this.quoted, fileKey, fingerprint, archivedKey, archivedFingerprint)),
    );
  }

  async claimLake(lake: string, opts: { adopt?: boolean } = {}): Promise<void> {
    if (Buffer.byteLength(lake, 'utf8') > 4096) {
      throw new MkpiError('MKPI_CONFIG', 'the lake location is longer than the 4096 bytes the ledger records on Redshift');
    }
    await this.db.withWork('recording the lake of the ledger', (c) =>
      claimLake(c, this.schema, this.quoted, lake, opts, this.timeouts, this.retry),
    );
  }

  async lakeClaim(): Promise<string | null> {
    return this.db.withWork('reading the lake of the ledger', (c) => lakeClaim(c, this.quoted));
  }

  async query(sql: string): Promise<QueryResult> {
    return this.db.withWork('running a query', async (c) => {
      // The user's statement is not bounded, as on PostgreSQL; musickpi's own ones are again afterwards.
      await c.query(setTimeoutSql(0));
      try {
        return await runUserQuery(c, this.quoted, this.schema, sql);
      } finally {
        await c.query(setTimeoutSql(this.timeouts.statementTimeoutMs)).catch(() => undefined);
      }
    });
  }

  /** One INSERT in autocommit: its own transaction, no LOCK needed (no one updates the history), retried on a serializable conflict. */
  async recordRun(run: RunRecord): Promise<void> {
    const values = runValues(run);
    await this.db.withWork('recording the run', (c) =>
      retryConflicts(this.retry, async () => {
        try {
          await c.query(insertRunSql(this.quoted), values);
        } catch (err) {
          if (isMissingTable(err)) throw noRunsTable(this.schema, err);
          throw err;
        }
      }),
    );
  }

  async listRuns(opts: ListRunsOptions): Promise<RunRecord[]> {
    return this.db.withWork('reading the run history', (c) => selectRuns(c, this.quoted, opts));
  }

  async close(): Promise<void> {
    if (this.db.closed) return;
    // As on PostgreSQL: close() during a load is an interruption; dropping its session rolls it back.
    for (const conn of [...this.loading, ...this.engines]) {
      conn.dead = true;
      await conn.client.end().catch(() => undefined);
    }
    this.engines.clear();
    await this.removeLeftovers();
    await this.lease.drop();
    await this.db.close();
  }
}

/** The ledger's columns on Redshift are VARCHARs of fixed byte widths (sql/redshift/init.sql). */
const LEDGER_WIDTHS = { file_key: 1024, fingerprint: 256, run_id: 256, content_hash: 64 } as const;

function checkLedgerWidths(batch: LoadBatch, ledger: LedgerEntry[]): void {
  const check = (what: keyof typeof LEDGER_WIDTHS | 'archived_key', value: string | null | undefined) => {
    if (value === null || value === undefined) return;
    const width = what === 'archived_key' ? LEDGER_WIDTHS.file_key : LEDGER_WIDTHS[what];
    const bytes = Buffer.byteLength(value, 'utf8');
    if (bytes > width) {
      throw new MkpiError(
        'MKPI_CONFIG',
        `the ledger's ${what} holds ${width} bytes on Redshift; ${JSON.stringify(value.slice(0, 80))} takes ${bytes}`,
        {
          details: { column: what, width, bytes },
        },
      );
    }
  };
  check('run_id', batch.runId);
  for (const e of ledger) {
    check('file_key', e.fileKey);
    check('fingerprint', e.fingerprint);
    check('archived_key', e.archivedKey);
    check('content_hash', e.contentHash);
  }
  for (const r of [...(batch.retire ?? []), ...(batch.retract ?? [])]) {
    check('file_key', r.fileKey);
    check('fingerprint', r.fingerprint);
  }
}
