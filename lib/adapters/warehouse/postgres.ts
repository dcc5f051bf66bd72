// PostgreSQL warehouse. Loads go through COPY into session-local stage tables and a
// DELETE + INSERT merge in one transaction; the run lock is a session-level advisory lock
// on a dedicated connection, so it vanishes by itself when the process or connection dies.

import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import pgCopy from 'pg-copy-streams';
import { MkpiError, redact, type ErrorCode } from '../../domain/errors.js';
import { KPI_TABLES, type GenreRow, type HourlyRow, type KpiTable } from '../../domain/kpi.js';
import { type LedgerEntry } from '../../domain/ledger.js';
import { type LoadBatch, type LoadStep, type LoadResult, type QueryResult, type RunLock, type Warehouse } from '../../domain/warehouse.js';

const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** Validates a schema name and returns it quoted, ready to splice into SQL. */
export function quoteSchema(name: string): string {
  if (typeof name !== 'string' || !SCHEMA_NAME.test(name)) {
    throw new MkpiError('MKPI_CONFIG', `invalid warehouse schema name ${JSON.stringify(String(name))}`, {
      hint: 'a schema name is a letter or "_" followed by up to 62 letters, digits or "_"',
    });
  }
  // System schemas pass the pattern but must never receive KPI tables (or fail obscurely later).
  if (/^pg_/i.test(name) || name.toLowerCase() === 'information_schema') {
    throw new MkpiError('MKPI_CONFIG', `schema ${JSON.stringify(name)} is reserved by PostgreSQL`, {
      hint: 'pick a schema of your own, e.g. the default reporting_schema',
    });
  }
  // Quoted even though the pattern admits no quote: a reserved word ("user") stays usable,
  // and the name keeps its case exactly as configured.
  return `"${name}"`;
}

// ---------------------------------------------------------------------------------------------
// SQL files

export type SqlName = 'init' | 'stage' | 'merge-hourly' | 'merge-genre' | 'upsert-ledger' | 'upsert-ledger-dates';

let sqlDirCache: string | undefined;

/** The package's sql/ folder, found from this module both under lib/ (tsx) and dist/lib/ (built). */
export function sqlDir(): string {
  if (sqlDirCache) return sqlDirCache;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = path.join(dir, 'sql');
    if (existsSync(path.join(candidate, 'init.sql'))) {
      sqlDirCache = candidate;
      return candidate;
    }
    dir = path.dirname(dir);
  }
  throw new MkpiError('MKPI_INTERNAL', 'cannot find the sql/ folder of the musickpi package');
}

const sqlText = new Map<SqlName, string>();

/** A file of sql/ with every {{schema}} replaced by the validated, quoted schema name. */
export function renderSql(name: SqlName, schema: string): string {
  const quoted = quoteSchema(schema);
  let text = sqlText.get(name);
  if (text === undefined) {
    text = readFileSync(path.join(sqlDir(), `${name}.sql`), 'utf8');
    sqlText.set(name, text);
  }
  return text.replaceAll('{{schema}}', quoted);
}

// ---------------------------------------------------------------------------------------------
// Type parsing: dates stay calendar strings (a JS Date would shift with the local time zone),
// counts come back as numbers unless they would lose precision.

const OID = { INT8: 20, NUMERIC: 1700, DATE: 1082 } as const;

export function parseInt8(text: string): number | string {
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : text;
}

export function parseNumeric(text: string): number | string {
  const n = Number(text);
  if (Number.isNaN(n) && text !== 'NaN') return text;
  // An integral value beyond 2^53 would silently change; fractions are floats by nature.
  if (/^-?\d+$/.test(text) && !Number.isSafeInteger(n)) return text;
  return n;
}

const TYPES = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (format === undefined || format === 'text') {
      if (oid === OID.DATE) return (v: string) => v;
      if (oid === OID.INT8) return parseInt8;
      if (oid === OID.NUMERIC) return parseNumeric;
    }
    return (pg.types.getTypeParser as (o: number, f?: string) => unknown)(oid, format);
  },
};

// ---------------------------------------------------------------------------------------------
// CSV for COPY ... WITH (FORMAT csv): an unquoted empty field is NULL, so every string is
// quoted (an empty string stays an empty string, and a lone "\." is not the end marker).

export function csvField(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') return String(value); // shortest round-trip; NaN/Infinity as float8 spells them
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'boolean') return value ? 't' : 'f';
  const s = typeof value === 'string' ? value : JSON.stringify(value);
  return `"${s.replaceAll('"', '""')}"`;
}

export const HOURLY_COLUMNS = [
  'listen_date',
  'listen_hour',
  'unique_listeners',
  'listen_counts',
  'top_artist',
  'avg_sessions_per_user',
  'diversity_index',
  'most_engaged_age_group',
] as const satisfies readonly (keyof HourlyRow)[];

export const GENRE_COLUMNS = [
  'listen_date',
  'track_genre',
  'listen_count',
  'popularity_index',
  'average_duration',
  'most_popular_track_id',
] as const satisfies readonly (keyof GenreRow)[];

const CHUNK_CHARS = 64 * 1024;

/** CSV text for COPY, in chunks big enough that per-chunk stream overhead does not matter. */
export function* csvChunks<R>(rows: Iterable<R>, columns: readonly (keyof R & string)[]): Generator<string> {
  let buf = '';
  for (const row of rows) {
    let line = '';
    for (let i = 0; i < columns.length; i++) {
      if (i > 0) line += ',';
      line += csvField(row[columns[i]]);
    }
    buf += line + '\n';
    if (buf.length >= CHUNK_CHARS) {
      yield buf;
      buf = '';
    }
  }
  if (buf.length > 0) yield buf;
}

// ---------------------------------------------------------------------------------------------
// Error classification

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EPIPE',
  'ECONNABORTED',
]);

const CONNECTION_MESSAGES = /connection terminated|connection timeout|not queryable|client was closed|connection ended|socket hang up/i;

function errCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function errMessage(err: unknown): string {
  if (err instanceof Error) {
    if (err.message) return err.message;
    // Node's happy-eyeballs connect fails with an AggregateError whose message is empty.
    const inner = (err as { errors?: unknown[] }).errors;
    if (Array.isArray(inner) && inner.length > 0) return inner.map(errMessage).join('; ');
    return errCode(err) ?? err.name;
  }
  return String(err);
}

/** True when the error means the connection it happened on cannot be used any more. */
export function isConnectionLoss(err: unknown): boolean {
  const code = errCode(err);
  if (code && (NETWORK_CODES.has(code) || code.startsWith('08') || /^57P0[123]$/.test(code))) return true;
  return CONNECTION_MESSAGES.test(errMessage(err));
}

/** Which MkpiError a failure talking to PostgreSQL becomes; undefined = not a known class. */
export function classifyPgError(err: unknown): ErrorCode | undefined {
  const code = errCode(err);
  if (code === '40001' || code === '40P01' || code === '55P03' || code === '57014') return 'MKPI_RETRY_LATER';
  // Wrong credentials or database name will not heal by retrying.
  if (code === '28000' || code === '28P01' || code === '3D000') return 'MKPI_CONFIG';
  if (code === '53300' || code === '53100') return 'MKPI_WAREHOUSE_UNAVAILABLE';
  if (isConnectionLoss(err)) return 'MKPI_WAREHOUSE_UNAVAILABLE';
  // TLS negotiation failures (no SSL on the server, untrusted certificate) are settings to fix.
  if (!(code && /^[0-9A-Z]{5}$/.test(code)) && /\bssl\b|certificate/i.test(errMessage(err))) return 'MKPI_CONFIG';
  return undefined;
}

// ---------------------------------------------------------------------------------------------

export interface PostgresWarehouseOptions {
  schema: string;
  /**
   * Connection settings used when connectionString is '' (PG* variables read by the caller).
   * Never holds anything that is not also allowed in a connection string.
   */
  config?: Pick<pg.ClientConfig, 'host' | 'port' | 'user' | 'password' | 'database'>;
  /** How long a load waits for a table lock held by someone else before giving up (retry later). */
  lockTimeoutMs?: number;
  /** Connect timeout; pg's default is to wait forever on a black-holed host. */
  connectTimeoutMs?: number;
}

interface Conn {
  client: pg.Client;
  dead: boolean;
}

const LOCK_APP = 'musickpi (run lock)';
const APP = 'musickpi';

export class PostgresWarehouse implements Warehouse {
  readonly description: string;
  readonly schema: string;
  private readonly quoted: string;
  private readonly baseConfig: pg.ClientConfig;
  private readonly secrets: string[];
  private readonly lockTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private work: Conn | undefined;
  private workQueue: Promise<unknown> = Promise.resolve();
  private lock: { conn: Conn; backendPid: number; released: boolean } | undefined;
  private readonly loading = new Set<Conn>();
  private closed = false;

  constructor(connectionString: string, opts: PostgresWarehouseOptions) {
    this.quoted = quoteSchema(opts.schema);
    this.schema = opts.schema;
    this.lockTimeoutMs = opts.lockTimeoutMs ?? 60_000;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 15_000;
    this.secrets = [];
    if (connectionString) {
      const info = describeUrl(connectionString);
      this.description = info.description;
      this.secrets.push(...info.secrets);
      this.baseConfig = { connectionString };
    } else {
      const c = opts.config ?? {};
      if (typeof c.password === 'string' && c.password) this.secrets.push(c.password);
      this.baseConfig = { ...c };
      const user = c.user ?? os.userInfo().username;
      const host = c.host ?? 'localhost';
      this.description = `postgresql://${user}@${host}:${c.port ?? 5432}/${c.database ?? user}`;
    }
  }

  // ---- connections ---------------------------------------------------------------------------

  private async connect(what: string, application = APP): Promise<Conn> {
    if (this.closed) throw new MkpiError('MKPI_INTERNAL', 'warehouse used after close()');
    const client = new pg.Client({
      ...this.baseConfig,
      types: TYPES,
      application_name: application,
      connectionTimeoutMillis: this.connectTimeoutMs,
      keepAlive: true,
    });
    const conn: Conn = { client, dead: false };
    // Without a listener, a server-side termination while idle crashes the whole process.
    client.on('error', () => {
      conn.dead = true;
    });
    client.on('end', () => {
      conn.dead = true;
    });
    try {
      await client.connect();
    } catch (err) {
      conn.dead = true;
      await client.end().catch(() => undefined);
      const e = this.toError(err, `connecting for ${what}`);
      // A server that refuses the session for a reason of its own ("database does not allow
      // connections", SQLSTATE 55000, and the like) is unavailable, not a bug of ours.
      if (e.code !== 'MKPI_INTERNAL') throw e;
      throw new MkpiError('MKPI_WAREHOUSE_UNAVAILABLE', e.message, {
        hint: `check that PostgreSQL at ${this.description} accepts connections, then run again`,
        cause: e.cause,
        details: e.details,
      });
    }
    return conn;
  }

  /** Serialises use of the shared connection, reconnecting when the last one broke. */
  private withWork<T>(what: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      if (!this.work || this.work.dead) {
        if (this.work) await this.work.client.end().catch(() => undefined);
        this.work = undefined;
        this.work = await this.connect(what);
      }
      const conn = this.work;
      try {
        return await fn(conn.client);
      } catch (err) {
        if (isConnectionLoss(err)) conn.dead = true;
        throw this.toError(err, what);
      }
    };
    const result = this.workQueue.then(run, run);
    this.workQueue = result.catch(() => undefined);
    return result;
  }

  private scrub(text: string): string {
    let out = redact(text);
    for (const s of this.secrets) if (s.length > 0) out = out.split(s).join('***');
    return out;
  }

  /** Any failure → MkpiError with a scrubbed message; MkpiErrors pass through untouched. */
  private toError(err: unknown, what: string, hint?: string): MkpiError {
    if (err instanceof MkpiError) return err;
    const code = classifyPgError(err);
    const sqlstate = errCode(err);
    const raw = errMessage(err);
    const message = this.scrub(raw);
    // The cause is kept for debugging unless it would carry a secret along with it.
    const cause = message === raw ? err : undefined;
    const isSqlstate = sqlstate !== undefined && /^[0-9A-Z]{5}$/.test(sqlstate);
    const details = { operation: what, ...(sqlstate ? (isSqlstate ? { sqlstate } : { errno: sqlstate }) : {}) };
    const suffix = isSqlstate ? ` (SQLSTATE ${sqlstate})` : '';
    switch (code) {
      case 'MKPI_WAREHOUSE_UNAVAILABLE':
        return new MkpiError(code, `warehouse ${this.description} unavailable while ${what}: ${message}${suffix}`, {
          hint: hint ?? `check that PostgreSQL at ${this.description} is running and reachable, then run again`,
          cause,
          details,
        });
      case 'MKPI_RETRY_LATER':
        return new MkpiError(code, `warehouse busy while ${what}: ${message}${suffix}`, {
          hint: hint ?? 'a concurrent transaction or lock got in the way; nothing was changed, run again later',
          cause,
          details,
        });
      case 'MKPI_CONFIG':
        return new MkpiError(code, `cannot use warehouse ${this.description}: ${message}${suffix}`, {
          hint: 'check the user, password, database and SSL settings of the warehouse connection',
          cause,
          details,
        });
      default:
        return new MkpiError('MKPI_INTERNAL', `warehouse error while ${what}: ${message}${suffix}`, {
          cause,
          details,
        });
    }
  }

  // ---- Warehouse -----------------------------------------------------------------------------

  async isInitialised(): Promise<boolean> {
    return this.withWork('checking the warehouse schema', async (c) => {
      const r = await c.query<{ n: number }>(
        `SELECT count(*)::int AS n
           FROM unnest($2::text[]) AS t(name)
          WHERE to_regclass(format('%I.%I', $1::text, t.name)) IS NOT NULL`,
        [this.schema, Object.keys(EXPECTED_COLUMNS)],
      );
      return r.rows[0].n === Object.keys(EXPECTED_COLUMNS).length;
    });
  }

  async init(): Promise<void> {
    await this.withWork('initialising the warehouse schema', async (c) => {
      await c.query('BEGIN');
      try {
        // CREATE ... IF NOT EXISTS still races on the catalog's unique indexes when two
        // inits run at once; a transaction-level lock makes the second wait and then no-op.
        await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`musickpi:init:${this.schema}`]);
        await c.query(renderSql('init', this.schema));
        await this.migrate(c);
        await this.checkColumns(c);
        await c.query('COMMIT');
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    });
  }

  /**
   * Columns added after the first release, for ledgers created before them. Checked first, so
   * that an up-to-date ledger is not locked (ALTER TABLE takes an exclusive lock even when
   * IF NOT EXISTS turns it into a no-op).
   */
  private async migrate(c: pg.Client): Promise<void> {
    const r = await c.query<{ column_name: string }>(
      `SELECT column_name FROM information_schema.columns
        WHERE table_schema = $1 AND table_name = 'musickpi_ledger' AND column_name = ANY($2::text[])`,
      [this.schema, Object.keys(ADDED_LEDGER_COLUMNS)],
    );
    const have = new Set(r.rows.map((x) => x.column_name));
    for (const [column, type] of Object.entries(ADDED_LEDGER_COLUMNS)) {
      if (!have.has(column)) {
        await c.query(`ALTER TABLE ${this.quoted}.musickpi_ledger ADD COLUMN IF NOT EXISTS ${column} ${type} NULL`);
      }
    }
  }

  /** Tables made by an older tool under the same names would silently take wrong data. */
  private async checkColumns(c: pg.Client): Promise<void> {
    const r = await c.query<{ table_name: string; column_name: string; data_type: string }>(
      `SELECT table_name, column_name, data_type
         FROM information_schema.columns
        WHERE table_schema = $1 AND table_name = ANY($2::text[])
        ORDER BY table_name, ordinal_position`,
      [this.schema, Object.keys(EXPECTED_COLUMNS)],
    );
    for (const [table, expected] of Object.entries(EXPECTED_COLUMNS)) {
      const actual = r.rows.filter((x) => x.table_name === table);
      const have = new Map(actual.map((x) => [x.column_name, x.data_type]));
      const problems: string[] = [];
      for (const [col, type] of Object.entries(expected)) {
        const t = have.get(col);
        if (t === undefined) problems.push(`missing column ${col}`);
        else if (t !== type) problems.push(`column ${col} is ${t}, expected ${type}`);
      }
      if (problems.length > 0) {
        throw new MkpiError('MKPI_CONFIG', `table ${this.schema}.${table} exists but differs: ${problems.join('; ')}`, {
          hint: 'rename or drop the old table, or point musickpi at another schema',
        });
      }
    }
  }

  async acquireRunLock(): Promise<RunLock> {
    const conn = await this.connect('taking the run lock', LOCK_APP);
    const key = `musickpi:${this.schema}`;
    let got: { ok: boolean; pid: number };
    try {
      const r = await conn.client.query<{ ok: boolean; pid: number }>(
        'SELECT pg_try_advisory_lock(hashtext($1)) AS ok, pg_backend_pid() AS pid',
        [key],
      );
      got = r.rows[0];
      if (!got.ok) {
        const holder = await this.lockHolder(conn.client, key).catch(() => undefined);
        throw new MkpiError('MKPI_LOCKED', `another musickpi run is loading schema ${this.schema} of ${this.description}`, {
          hint:
            `another musickpi run holds the lock${holder ? ` (${holder})` : ''}; wait for it to finish. ` +
            'The lock goes away by itself when that run ends or its connection drops.',
          details: { schema: this.schema },
        });
      }
    } catch (err) {
      await conn.client.end().catch(() => undefined);
      throw this.toError(err, 'taking the run lock');
    }
    const state = { conn, backendPid: got.pid, released: false };
    this.lock = state;
    return {
      release: async () => {
        if (state.released) return;
        state.released = true;
        if (this.lock === state) this.lock = undefined;
        // A dead connection has already dropped the lock on the server: nothing to undo.
        if (!conn.dead) await conn.client.query('SELECT pg_advisory_unlock(hashtext($1))', [key]).catch(() => undefined);
        await conn.client.end().catch(() => undefined);
      },
    };
  }

  private async lockHolder(c: pg.Client, key: string): Promise<string | undefined> {
    // A bigint advisory key is stored as classid = high 32 bits, objid = low 32 bits.
    const r = await c.query<{ pid: number; application_name: string | null; backend_start: Date | null; client_addr: string | null }>(
      `WITH k AS (SELECT hashtext($1)::bigint AS h)
       SELECT a.pid, a.application_name, a.backend_start, host(a.client_addr) AS client_addr
         FROM pg_locks l
         JOIN k ON l.classid = ((k.h >> 32) & 4294967295)::oid AND l.objid = (k.h & 4294967295)::oid
         LEFT JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        LIMIT 1`,
      [key],
    );
    const row = r.rows[0];
    if (!row) return undefined;
    const parts = [`backend pid ${row.pid}`];
    if (row.application_name) parts.push(`application "${row.application_name}"`);
    if (row.client_addr) parts.push(`from ${row.client_addr}`);
    if (row.backend_start) parts.push(`connected since ${row.backend_start.toISOString()}`);
    return parts.join(', ');
  }

  async readLedger(): Promise<LedgerEntry[]> {
    return this.withWork('reading the ledger', async (c) => {
      // Two plain queries rather than array_agg: the same shape works on Redshift.
      type FileRow = {
        file_key: string;
        fingerprint: string;
        size: number;
        rows: number;
        run_id: string;
        archived_key: string | null;
        archived_fingerprint: string | null;
        content_hash: string | null;
        hourly_loaded: boolean;
        genre_loaded: boolean;
      };
      const select = (added: string) =>
        c.query<FileRow>(
          `SELECT file_key, fingerprint, size, rows, run_id, archived_key, ${added}, hourly_loaded, genre_loaded
             FROM ${this.quoted}.musickpi_ledger ORDER BY file_key, fingerprint`,
        );
      // A ledger from before the added columns (init() adds them; a dry run does not run init).
      const files = await select(Object.keys(ADDED_LEDGER_COLUMNS).join(', ')).catch((err: unknown) => {
        if (errCode(err) === '42703')
          return select(
            Object.keys(ADDED_LEDGER_COLUMNS)
              .map((col) => `NULL::text AS ${col}`)
              .join(', '),
          );
        throw err;
      });
      const dates = await c.query<{ file_key: string; fingerprint: string; listen_date: string }>(
        `SELECT file_key, fingerprint, listen_date
           FROM ${this.quoted}.musickpi_ledger_dates ORDER BY file_key, fingerprint, listen_date`,
      );
      const byKey = new Map<string, string[]>();
      for (const d of dates.rows) {
        const k = ledgerKey(d.file_key, d.fingerprint);
        let list = byKey.get(k);
        if (!list) byKey.set(k, (list = []));
        list.push(d.listen_date);
      }
      return files.rows.map((f) => ({
        fileKey: f.file_key,
        fingerprint: f.fingerprint,
        size: Number(f.size),
        rows: Number(f.rows),
        dates: byKey.get(ledgerKey(f.file_key, f.fingerprint)) ?? [],
        tables: KPI_TABLES.filter((t) => (t === 'hourly' ? f.hourly_loaded : f.genre_loaded)),
        runId: f.run_id,
        archivedKey: f.archived_key,
        contentHash: f.content_hash,
        // Present only once known (an archived copy whose fingerprint was recorded).
        ...(f.archived_fingerprint !== null ? { archivedFingerprint: f.archived_fingerprint } : {}),
      }));
    });
  }

  async load(batch: LoadBatch): Promise<LoadResult> {
    checkBatch(batch);
    const ledger = mergeLedgerEntries(batch.ledger);
    const conn = await this.connect('loading');
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
      if (batch.hourly) await this.stage(c, 'hourly', batch.hourly.dates, batch.hourly.rows, HOURLY_COLUMNS, onFirstChunk);
      if (batch.genre) await this.stage(c, 'genre', batch.genre.dates, batch.genre.rows, GENRE_COLUMNS, onFirstChunk);
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
      const retire = batch.retire ?? [];
      if (retire.length > 0) {
        const keys = retire.map((r) => r.fileKey);
        const fps = retire.map((r) => r.fingerprint);
        for (const table of ['musickpi_ledger_dates', 'musickpi_ledger']) {
          await c.query(
            `DELETE FROM ${this.quoted}.${table} t USING unnest($1::text[], $2::text[]) AS r(file_key, fingerprint)
              WHERE t.file_key = r.file_key AND t.fingerprint = r.fingerprint`,
            [keys, fps],
          );
        }
      }
      if (ledger.length > 0) {
        await c.query(renderSql('upsert-ledger', this.schema), [
          ledger.map((e) => e.fileKey),
          ledger.map((e) => e.fingerprint),
          ledger.map((e) => e.size),
          ledger.map((e) => e.rows),
          ledger.map(() => batch.runId),
          ledger.map((e) => e.archivedKey),
          ledger.map((e) => e.tables.includes('hourly')),
          ledger.map((e) => e.tables.includes('genre')),
          ledger.map((e) => e.contentHash ?? null),
        ]);
        const dk: string[] = [];
        const df: string[] = [];
        const dd: string[] = [];
        for (const e of ledger) {
          for (const d of e.dates) {
            dk.push(e.fileKey);
            df.push(e.fingerprint);
            dd.push(d);
          }
        }
        if (dd.length > 0) await c.query(renderSql('upsert-ledger-dates', this.schema), [dk, df, dd]);
      }
      await batch.onStep?.('merged');

      await this.checkLockStillHeld(c);
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
      throw this.toError(
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

  private async stage<R extends HourlyRow | GenreRow>(
    c: pg.Client,
    table: KpiTable,
    dates: string[],
    rows: R[],
    columns: readonly (keyof R & string)[],
    onFirstChunk?: () => Promise<void>,
  ): Promise<void> {
    await c.query(`INSERT INTO musickpi_stage_${table}_dates (listen_date) SELECT DISTINCT unnest($1::date[])`, [dates]);
    if (rows.length === 0) return;
    const copy = c.query(pgCopy.from(`COPY musickpi_stage_${table} (${columns.join(', ')}) FROM STDIN WITH (FORMAT csv)`));
    const chunks = csvChunks(rows, columns);
    if (onFirstChunk) {
      // The first chunk goes out on its own; its write callback fires once the server has
      // answered the COPY and the bytes are on the socket. Then the step runs mid-COPY.
      const first = chunks.next();
      if (!first.done) {
        const early = new Promise<never>((_, reject) => copy.once('error', reject));
        early.catch(() => undefined);
        try {
          await Promise.race([
            new Promise<void>((resolve, reject) => copy.write(first.value, (err) => (err ? reject(err) : resolve()))),
            early,
          ]);
          await Promise.race([onFirstChunk(), early]);
        } catch (err) {
          // Abandon the COPY (CopyFail) and wait for the server's answer before load()'s ROLLBACK.
          if (!copy.destroyed) copy.destroy(err instanceof Error ? err : new Error(String(err)));
          await finished(copy).catch(() => undefined);
          throw err;
        }
      }
    }
    // A throw inside the generator destroys the COPY stream, which sends CopyFail: the
    // server aborts the COPY and the transaction, and the catch in load() rolls back.
    await pipeline(Readable.from(chunks), copy);
  }

  /** Two runs must never load at once: if our lock session died, another run may be loading. */
  private async checkLockStillHeld(c: pg.Client): Promise<void> {
    const lock = this.lock;
    if (!lock || lock.released) return;
    const r = await c.query<{ held: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = $1) AS held`,
      [lock.backendPid],
    );
    if (!r.rows[0].held || lock.conn.dead) {
      throw new MkpiError('MKPI_RETRY_LATER', 'the run lock was lost (its connection ended) before commit; the load was rolled back', {
        hint: 'another run may have started meanwhile; run again',
      });
    }
  }

  async markArchived(fileKey: string, fingerprint: string, archivedKey: string, archivedFingerprint?: string): Promise<void> {
    await this.withWork('recording an archived file', async (c) => {
      const r = await c.query(
        `UPDATE ${this.quoted}.musickpi_ledger SET archived_key = $3, archived_fingerprint = $4
          WHERE file_key = $1 AND fingerprint = $2`,
        [fileKey, fingerprint, archivedKey, archivedFingerprint ?? null],
      );
      if (r.rowCount === 0) {
        throw new MkpiError('MKPI_INTERNAL', `no ledger entry for ${fileKey} (${fingerprint}) to mark as archived`);
      }
    });
  }

  async query(sql: string): Promise<QueryResult> {
    return this.withWork('running a query', async (c) => {
      const res = (await c.query({ text: sql, rowMode: 'array' })) as pg.QueryResult<unknown[]> | pg.QueryResult<unknown[]>[];
      // Several statements yield one result each; the last one is what a user expects to see.
      const last = Array.isArray(res) ? res[res.length - 1] : res;
      return { columns: (last?.fields ?? []).map((f) => f.name), rows: last?.rows ?? [] };
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // close() during a load is an interruption (SIGINT): dropping the connection makes the
    // server roll the transaction back, instead of waiting for a load that may take minutes.
    for (const conn of this.loading) {
      conn.dead = true;
      await conn.client.end().catch(() => undefined);
    }
    const lock = this.lock;
    if (lock && !lock.released) {
      lock.released = true;
      this.lock = undefined;
      await lock.conn.client.end().catch(() => undefined);
    }
    await this.workQueue;
    this.closed = true;
    if (this.work) await this.work.client.end().catch(() => undefined);
    this.work = undefined;
  }
}

// ---------------------------------------------------------------------------------------------

const EXPECTED_COLUMNS: Record<string, Record<string, string>> = {
  hourly_kpis: {
    listen_date: 'date',
    listen_hour: 'integer',
    unique_listeners: 'integer',
    listen_counts: 'integer',
    top_artist: 'character varying',
    avg_sessions_per_user: 'double precision',
    diversity_index: 'double precision',
    most_engaged_age_group: 'character varying',
  },
  genre_level_kpis: {
    listen_date: 'date',
    track_genre: 'character varying',
    listen_count: 'integer',
    popularity_index: 'double precision',
    average_duration: 'double precision',
    most_popular_track_id: 'character varying',
  },
  musickpi_ledger: {
    file_key: 'text',
    fingerprint: 'text',
    size: 'bigint',
    rows: 'bigint',
    run_id: 'text',
    loaded_at: 'timestamp with time zone',
    archived_key: 'text',
    archived_fingerprint: 'text',
    content_hash: 'text',
    hourly_loaded: 'boolean',
    genre_loaded: 'boolean',
  },
  musickpi_ledger_dates: {
    file_key: 'text',
    fingerprint: 'text',
    listen_date: 'date',
  },
};

/** Ledger columns added after the first release, in the order they came; init() adds missing ones. */
const ADDED_LEDGER_COLUMNS: Record<string, string> = { archived_fingerprint: 'TEXT', content_hash: 'TEXT' };

function ledgerKey(fileKey: string, fingerprint: string): string {
  return `${fileKey}\u0000${fingerprint}`;
}

/** ON CONFLICT DO UPDATE cannot touch one row twice in a statement: fold duplicates first. */
export function mergeLedgerEntries(entries: LedgerEntry[]): LedgerEntry[] {
  const map = new Map<string, LedgerEntry>();
  for (const e of entries) {
    const k = ledgerKey(e.fileKey, e.fingerprint);
    const prev = map.get(k);
    if (!prev) {
      map.set(k, { ...e, dates: [...new Set(e.dates)], tables: [...new Set(e.tables)] });
    } else {
      map.set(k, {
        ...e,
        dates: [...new Set([...prev.dates, ...e.dates])],
        tables: KPI_TABLES.filter((t) => prev.tables.includes(t) || e.tables.includes(t)),
        archivedKey: e.archivedKey ?? prev.archivedKey,
        contentHash: e.contentHash ?? prev.contentHash ?? null,
      });
    }
  }
  return [...map.values()];
}

const DATE = /^\d{4}-\d{2}-\d{2}$/;

/** Rows outside the covered dates would be inserted without their date being cleared first. */
export function checkBatch(batch: LoadBatch): void {
  for (const table of KPI_TABLES) {
    const part = batch[table];
    if (!part) continue;
    const covered = new Set(part.dates);
    for (const d of part.dates) {
      if (!DATE.test(d)) throw new MkpiError('MKPI_INTERNAL', `load batch: ${table} covers an invalid date ${JSON.stringify(d)}`);
    }
    for (const row of part.rows) {
      if (!covered.has(row.listen_date)) {
        throw new MkpiError(
          'MKPI_INTERNAL',
          `load batch: a ${table} row has listen_date ${JSON.stringify(row.listen_date)} outside the covered dates`,
        );
      }
    }
  }
}

async function multi(c: pg.Client, sql: string): Promise<number[]> {
  const res = (await c.query(sql)) as pg.QueryResult | pg.QueryResult[];
  const list = Array.isArray(res) ? res : [res];
  return list.map((r) => r.rowCount ?? 0);
}

/** Description of a connection URL without its secret parts, plus the secrets to scrub. */
export function describeUrl(url: string): { description: string; secrets: string[] } {
  const secrets: string[] = [];
  try {
    const u = new URL(url);
    if (u.password) {
      secrets.push(u.password);
      try {
        const decoded = decodeURIComponent(u.password);
        if (decoded !== u.password) secrets.push(decoded);
      } catch {
        // a malformed escape is already covered by the raw form
      }
    }
    const pw = u.searchParams.get('password');
    if (pw) secrets.push(pw);
    const user = u.username ? `${u.username}@` : '';
    return { description: `${u.protocol}//${user}${u.host}${u.pathname}`, secrets };
  } catch {
    // Not a WHATWG-parsable URL (multi-host, say): strip what could hold a password.
    const pw = /^[a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*:([^@\s]*)@/i.exec(url)?.[1];
    if (pw) secrets.push(pw);
    const noQuery = url.replace(/[?#].*$/s, '');
    return { description: redact(noQuery).replace(/:\*\*\*@/, '@'), secrets };
  }
}
