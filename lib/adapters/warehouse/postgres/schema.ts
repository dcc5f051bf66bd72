// The warehouse's tables: created by init(), and checked to be ours before anything is loaded.

import type pg from 'pg';
import { RUNS_EXPECTED_COLUMNS } from '../core/runs.js';
import { checkColumns, KPI_EXPECTED_COLUMNS, type ActualColumn, type ExpectedColumns } from '../core/columns.js';
import { lakeTableDdl } from './lake-claim.js';
import { addLedgerColumnsSql, missingLedgerColumns } from './ledger.js';
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

/**
 * Creates what is missing, in one transaction, in as few round trips as the order allows: the
 * lock and every CREATE … IF NOT EXISTS in one simple query (its statements run in order, and
 * the first error stops it), then one look at the columns, which both tells the ledger columns
 * to add and checks the tables; only a ledger that lacks some gets its ALTERs (and a second
 * look) before COMMIT. On an initialised schema that is 3 round trips instead of 7; on a fresh
 * one 5 instead of 10.
 */
export async function initSchema(c: pg.Client, schema: string, quoted: string): Promise<void> {
  try {
    // CREATE ... IF NOT EXISTS still races on the catalog's unique indexes when two
    // inits run at once; a transaction-level lock makes the second wait and then no-op.
    await c.query(
      [
        'BEGIN',
        `SELECT pg_advisory_xact_lock(hashtext(${literal(`musickpi:init:${schema}`)}))`,
        renderSql('init', schema).trimEnd().replace(/;$/, ''),
        lakeTableDdl(quoted),
      ].join(';\n'),
    );
    let columns = await tableColumns(c, schema);
    const added = missingLedgerColumns(columns.filter((x) => x.table_name === 'musickpi_ledger').map((x) => x.column_name));
    if (added.length > 0) {
      await c.query(addLedgerColumnsSql(quoted, added));
      columns = await tableColumns(c, schema);
    }
    // Tables made by an older tool under the same names would silently take wrong data.
    checkColumns(columns, EXPECTED_COLUMNS, schema);
    await c.query('COMMIT');
  } catch (err) {
    // Whichever statement failed (BEGIN included), the session must not stay in a transaction.
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** A string literal; the text is ours (a validated schema name), never user input. */
function literal(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

async function tableColumns(c: pg.Client, schema: string): Promise<ActualColumn[]> {
  const r = await c.query<ActualColumn>(
    `SELECT table_name, column_name, data_type
         FROM information_schema.columns
        WHERE table_schema = $1 AND table_name = ANY($2::text[])
        ORDER BY table_name, ordinal_position`,
    [schema, Object.keys(EXPECTED_COLUMNS)],
  );
  return r.rows;
}
