// The warehouse's tables on Redshift: created by init() one statement at a time (autocommit),
// checked to be ours, and, for KPI tables adopted from the original DAG (VARCHAR(255), which on
// Redshift is 255 bytes), widened so that every value the contract allows fits.

import type pg from 'pg';
import { MkpiError } from '../../../domain/errors.js';
import { RUNS_EXPECTED_COLUMNS } from '../core/runs.js';
import { checkColumns, KPI_EXPECTED_COLUMNS, type ExpectedColumns } from '../core/columns.js';
import { errCode } from '../core/errors.js';
import { renderTemplate, statements } from '../core/sql.js';

/** Bytes every KPI string column must hold: 255 characters of any UTF-8. */
export const KPI_STRING_BYTES = 1020;

/** The KPI string columns, per table. */
export const KPI_STRING_COLUMNS: Record<string, readonly string[]> = {
  hourly_kpis: ['top_artist', 'most_engaged_age_group'],
  genre_level_kpis: ['track_genre', 'most_popular_track_id'],
};

const EXPECTED_COLUMNS: ExpectedColumns = {
  ...KPI_EXPECTED_COLUMNS,
  musickpi_ledger: {
    file_key: 'character varying',
    fingerprint: 'character varying',
    size: 'bigint',
    rows: 'bigint',
    run_id: 'character varying',
    loaded_at: 'timestamp with time zone',
    archived_key: 'character varying',
    archived_fingerprint: 'character varying',
    content_hash: 'character varying',
    retracted_at: 'timestamp with time zone',
    hourly_loaded: 'boolean',
    genre_loaded: 'boolean',
  },
  musickpi_ledger_dates: {
    file_key: 'character varying',
    fingerprint: 'character varying',
    listen_date: 'date',
  },
  musickpi_runs: RUNS_EXPECTED_COLUMNS,
  musickpi_lake: {
    id: 'boolean',
    lake: 'character varying',
    claimed_at: 'timestamp with time zone',
  },
  musickpi_run_lock: {
    run_id: 'character varying',
    token: 'character varying',
    host: 'character varying',
    pid: 'integer',
    boot_id: 'character varying',
    taken_at: 'timestamp without time zone',
    heartbeat_at: 'timestamp without time zone',
    ttl_ms: 'bigint',
  },
  musickpi_listen_files: {
    file_id: 'integer',
    file_key: 'character varying',
    fingerprint: 'character varying',
    rows: 'bigint',
    run_id: 'character varying',
    stored_at: 'timestamp with time zone',
  },
  musickpi_listens: {
    file_id: 'integer',
    line: 'bigint',
    user_id: 'character varying',
    track_id: 'character varying',
    listen_date: 'date',
    listen_hour: 'smallint',
  },
};

const REQUIRED_TABLES = ['hourly_kpis', 'genre_level_kpis', 'musickpi_ledger', 'musickpi_ledger_dates'];

/** `IN ($2, $3, …)` for a list of values after `offset` other parameters: Redshift has no arrays. */
export function inList(values: readonly unknown[], offset: number): string {
  return `(${values.map((_, i) => `$${offset + i + 1}`).join(', ')})`;
}

async function existingTables(c: pg.Client, schema: string, names: readonly string[]): Promise<Set<string>> {
  const r = await c.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_name IN ${inList(names, 1)}`,
    [schema, ...names],
  );
  return new Set(r.rows.map((x) => x.table_name));
}

export async function isInitialised(c: pg.Client, schema: string): Promise<boolean> {
  return (await existingTables(c, schema, REQUIRED_TABLES)).size === REQUIRED_TABLES.length;
}

/** The catalog rather than information_schema.schemata, which lists only the schemas one owns. */
async function schemaExists(c: pg.Client, schema: string): Promise<boolean> {
  const r = await c.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
  return (r.rowCount ?? r.rows.length) > 0;
}

/** "already exists" races of concurrent creations: the retry finds the object and does nothing. */
function isCreationRace(err: unknown): boolean {
  const code = errCode(err);
  return code === '42P07' || code === '42P06' || code === '23505' || /already exists/i.test(err instanceof Error ? err.message : '');
}

async function createIdempotent(c: pg.Client, sql: string): Promise<void> {
  try {
    await c.query(sql);
  } catch (err) {
    if (!isCreationRace(err)) throw err;
    await c.query(sql);
  }
}

/** The schema (checked first: CREATE SCHEMA needs a privilege that an existing schema does not) and the lease table. */
export async function ensureLockTable(c: pg.Client, schema: string, quoted: string): Promise<void> {
  if ((await existingTables(c, schema, ['musickpi_run_lock'])).size === 1) return;
  if (!(await schemaExists(c, schema))) await createIdempotent(c, `CREATE SCHEMA IF NOT EXISTS ${quoted}`);
  for (const s of statements(renderTemplate('redshift', 'run-lock', schema))) await createIdempotent(c, s);
}

export interface ColumnInfo {
  table_name: string;
  column_name: string;
  data_type: string;
  character_maximum_length: number | string | null;
}

export async function readColumns(
  c: pg.Client,
  schema: string,
  tables: readonly string[] = Object.keys(EXPECTED_COLUMNS),
): Promise<ColumnInfo[]> {
  const r = await c.query<ColumnInfo>(
    `SELECT table_name, column_name, data_type, character_maximum_length
       FROM information_schema.columns
      WHERE table_schema = $1 AND table_name IN ${inList(tables, 1)}
      ORDER BY table_name, ordinal_position`,
    [schema, ...tables],
  );
  return r.rows;
}

/** Declared byte widths of the KPI string columns ("hourly_kpis.top_artist" → 255). */
export function kpiWidths(columns: ColumnInfo[]): Map<string, number> {
  const widths = new Map<string, number>();
  for (const col of columns) {
    if (!KPI_STRING_COLUMNS[col.table_name]?.includes(col.column_name)) continue;
    if (col.character_maximum_length !== null) widths.set(`${col.table_name}.${col.column_name}`, Number(col.character_maximum_length));
  }
  return widths;
}

/**
 * Creates what is missing, widens narrow KPI string columns of adopted tables, and checks every
 * table's columns. ALTER COLUMN … TYPE runs outside any transaction block (Redshift's rule);
 * when it is refused (not the table's owner, an encoding that cannot change), the load checks
 * every value against the column's width instead, before anything is staged.
 */
export async function initSchema(c: pg.Client, schema: string, quoted: string, warn?: (l: string) => void): Promise<void> {
  if (!(await schemaExists(c, schema))) await createIdempotent(c, `CREATE SCHEMA IF NOT EXISTS ${quoted}`);
  for (const s of statements(renderTemplate('redshift', 'init', schema))) await createIdempotent(c, s);
  await ensureLockTable(c, schema, quoted);
  const columns = await readColumns(c, schema);
  checkColumns(columns, EXPECTED_COLUMNS, schema);
  for (const [key, width] of kpiWidths(columns)) {
    if (width >= KPI_STRING_BYTES) continue;
    const [table, column] = key.split('.');
    try {
      await c.query(`ALTER TABLE ${quoted}.${table} ALTER COLUMN ${column} TYPE VARCHAR(${KPI_STRING_BYTES})`);
    } catch (err) {
      warn?.(
        `could not widen ${schema}.${key} from VARCHAR(${width}) to VARCHAR(${KPI_STRING_BYTES}) ` +
          `(${err instanceof Error ? err.message : String(err)}); values longer than ${width} bytes will be refused`,
      );
    }
  }
}

/** Every KPI string value must fit its column's width in bytes: a clear refusal before anything is staged, never a COPY failing half-way. */
export function checkWidths(
  widths: Map<string, number>,
  table: string,
  rows: readonly Record<string, unknown>[],
  describeRow: (row: Record<string, unknown>) => string,
): void {
  for (const column of KPI_STRING_COLUMNS[table] ?? []) {
    const width = widths.get(`${table}.${column}`);
    if (width === undefined) continue;
    for (const row of rows) {
      const v = row[column];
      if (typeof v !== 'string') continue;
      const bytes = Buffer.byteLength(v, 'utf8');
      if (bytes > width) {
        throw new MkpiError(
          'MKPI_CONFIG',
          `${table}.${column} is VARCHAR(${width}), ${width} bytes on Redshift, and the value ${JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}…` : v)} (${describeRow(row)}) takes ${bytes} bytes; nothing was loaded`,
          {
            hint: `widen the column (ALTER TABLE ${table} ALTER COLUMN ${column} TYPE VARCHAR(${KPI_STRING_BYTES}), as its owner); musickpi init tries this itself`,
            details: { table, column, width, bytes },
          },
        );
      }
    }
  }
}
