// The warehouse's tables: created by init(), and checked to be ours before anything is loaded.

import type pg from 'pg';
import { RUNS_EXPECTED_COLUMNS } from '../core/runs.js';
import { checkColumns, KPI_EXPECTED_COLUMNS, type ActualColumn, type ExpectedColumns } from '../core/columns.js';
import { lakeTableDdl } from './lake-claim.js';
import { migrate } from './ledger.js';
import { renderSql } from './sql.js';

const EXPECTED_COLUMNS: ExpectedColumns = {
  ...KPI_EXPECTED_COLUMNS,
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
    retracted_at: 'timestamp with time zone',
    hourly_loaded: 'boolean',
    genre_loaded: 'boolean',
  },
  musickpi_ledger_dates: {
    file_key: 'text',
    fingerprint: 'text',
    listen_date: 'date',
  },
  musickpi_runs: RUNS_EXPECTED_COLUMNS,
  musickpi_lake: {
    id: 'boolean',
    lake: 'text',
    claimed_at: 'timestamp with time zone',
  },
  musickpi_listen_files: {
    file_id: 'integer',
    file_key: 'text',
    fingerprint: 'text',
    rows: 'bigint',
    run_id: 'text',
    stored_at: 'timestamp with time zone',
  },
  musickpi_listens: {
    file_id: 'integer',
    line: 'bigint',
    user_id: 'text',
    track_id: 'text',
    listen_date: 'date',
    listen_hour: 'smallint',
  },
};

/**
 * The tables without which nothing can be read. Tables added since (musickpi_lake, the engine's
 * musickpi_listens and musickpi_listen_files) are created
 * by init() in older schemas; until then the schema still counts as initialised, so that a dry
 * run reads an older ledger as it is, the way it reads one missing the added ledger columns.
 */
const REQUIRED_TABLES = ['hourly_kpis', 'genre_level_kpis', 'musickpi_ledger', 'musickpi_ledger_dates'];

export async function isInitialised(c: pg.Client, schema: string): Promise<boolean> {
  const r = await c.query<{ n: number }>(
    `SELECT count(*)::int AS n
           FROM unnest($2::text[]) AS t(name)
          WHERE to_regclass(format('%I.%I', $1::text, t.name)) IS NOT NULL`,
    [schema, REQUIRED_TABLES],
  );
  return r.rows[0].n === REQUIRED_TABLES.length;
}

export async function initSchema(c: pg.Client, schema: string, quoted: string): Promise<void> {
  await c.query('BEGIN');
  try {
    // CREATE ... IF NOT EXISTS still races on the catalog's unique indexes when two
    // inits run at once; a transaction-level lock makes the second wait and then no-op.
    await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`musickpi:init:${schema}`]);
    await c.query(renderSql('init', schema));
    await migrate(c, schema, quoted);
    await c.query(lakeTableDdl(quoted));
    await checkTables(c, schema);
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Tables made by an older tool under the same names would silently take wrong data. */
async function checkTables(c: pg.Client, schema: string): Promise<void> {
  const r = await c.query<ActualColumn>(
    `SELECT table_name, column_name, data_type
         FROM information_schema.columns
        WHERE table_schema = $1 AND table_name = ANY($2::text[])
        ORDER BY table_name, ordinal_position`,
    [schema, Object.keys(EXPECTED_COLUMNS)],
  );
  checkColumns(r.rows, EXPECTED_COLUMNS, schema);
}
