// The ledger on Redshift: the same two tables and the same merge rules as on PostgreSQL, written
// without arrays or ON CONFLICT. The batch's side is staged into temp tables by multi-row
// INSERTs before the load transaction; inside it, sql/redshift/ledger-*.sql delete and insert.

import type pg from 'pg';
import { type LedgerEntry } from '../../../domain/ledger.js';
import { type LoadBatch } from '../../../domain/warehouse.js';
import { toLedgerEntries, type LedgerDateRow, type LedgerFileRow } from '../core/ledger.js';
import { renderTemplate, statements } from '../core/sql.js';

/** Bind parameters per statement: far below any protocol limit, and a statement far below Redshift's 16 MB. */
const MAX_PARAMS = 6000;

/** Multi-row INSERT … VALUES ($1, …), (…) in chunks: Redshift has no arrays to unnest. */
export async function insertRows(c: pg.Client, table: string, columns: readonly string[], rows: readonly unknown[][]): Promise<void> {
  const perStatement = Math.max(1, Math.floor(MAX_PARAMS / columns.length));
  for (let i = 0; i < rows.length; i += perStatement) {
    const values: unknown[] = [];
    const tuples = rows.slice(i, i + perStatement).map(
      (row) =>
        `(${row
          .map((v) => {
            values.push(v);
            return `$${values.length}`;
          })
          .join(', ')})`,
    );
    await c.query(`INSERT INTO ${table} (${columns.join(', ')}) VALUES ${tuples.join(', ')}`, values);
  }
}

export async function readLedger(c: pg.Client, quoted: string): Promise<LedgerEntry[]> {
  const files = await c.query<LedgerFileRow>(
    `SELECT file_key, fingerprint, size, rows, run_id, archived_key, archived_fingerprint, content_hash, retracted_at,
            hourly_loaded, genre_loaded
       FROM ${quoted}.musickpi_ledger ORDER BY file_key, fingerprint`,
  );
  const dates = await c.query<LedgerDateRow>(
    `SELECT file_key, fingerprint, listen_date FROM ${quoted}.musickpi_ledger_dates ORDER BY file_key, fingerprint, listen_date`,
  );
  return toLedgerEntries(files.rows, dates.rows);
}

/** The stage tables the ledger side of this batch needs (see sql/redshift/stage.sql). */
export function ledgerStageTables(batch: LoadBatch, ledger: LedgerEntry[]): string[] {
  const tables: string[] = [];
  if ((batch.retract ?? []).length > 0) tables.push('musickpi_stage_retract');
  if ((batch.retire ?? []).length > 0) tables.push('musickpi_stage_retire');
  if (ledger.length > 0) tables.push('musickpi_stage_ledger', 'musickpi_stage_ledger_dates', 'musickpi_ledger_merged');
  return tables;
}

/** Before the transaction: the batch's ledger side into the session's temp tables. */
export async function stageLedger(c: pg.Client, batch: LoadBatch, ledger: LedgerEntry[]): Promise<void> {
  const keys = (list: { fileKey: string; fingerprint: string }[]) => list.map((r) => [r.fileKey, r.fingerprint]);
  if ((batch.retract ?? []).length > 0)
    await insertRows(c, 'musickpi_stage_retract', ['file_key', 'fingerprint'], keys(batch.retract ?? []));
  if ((batch.retire ?? []).length > 0) await insertRows(c, 'musickpi_stage_retire', ['file_key', 'fingerprint'], keys(batch.retire ?? []));
  if (ledger.length === 0) return;
  await insertRows(
    c,
    'musickpi_stage_ledger',
    ['file_key', 'fingerprint', 'size', 'rows', 'run_id', 'archived_key', 'hourly_loaded', 'genre_loaded', 'content_hash'],
    ledger.map((e) => [
      e.fileKey,
      e.fingerprint,
      e.size,
      e.rows,
      batch.runId,
      e.archivedKey,
      e.tables.includes('hourly'),
      e.tables.includes('genre'),
      e.contentHash ?? null,
    ]),
  );
  const dates = ledger.flatMap((e) => [...new Set(e.dates)].map((d) => [e.fileKey, e.fingerprint, d]));
  if (dates.length > 0) await insertRows(c, 'musickpi_stage_ledger_dates', ['file_key', 'fingerprint', 'listen_date'], dates);
}

/** Inside the transaction, in PostgreSQL's order: retracted rows marked, twin rows deleted, the batch's entries merged. */
export async function writeLedger(c: pg.Client, schema: string, batch: LoadBatch, ledger: LedgerEntry[]): Promise<void> {
  const run = async (name: string) => {
    for (const s of statements(renderTemplate('redshift', name, schema))) await c.query(s);
  };
  if ((batch.retract ?? []).length > 0) await run('ledger-retract');
  if ((batch.retire ?? []).length > 0) await run('ledger-retire');
  if (ledger.length > 0) await run('ledger-merge');
}
