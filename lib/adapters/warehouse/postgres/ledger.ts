// The ledger of loaded files: musickpi_ledger (one row per file and fingerprint) and
// musickpi_ledger_dates (the dates each file covered).

import type pg from 'pg';
import { type LedgerEntry } from '../../../domain/ledger.js';
import { type LoadBatch } from '../../../domain/warehouse.js';
import { errCode } from '../core/errors.js';
import { toLedgerEntries, type LedgerDateRow, type LedgerFileRow } from '../core/ledger.js';
import { renderSql } from './sql.js';

/** Ledger columns added after the first release, in the order they came; init() adds missing ones. */
export const ADDED_LEDGER_COLUMNS: Record<string, string> = {
  archived_fingerprint: 'TEXT',
  content_hash: 'TEXT',
  retracted_at: 'TIMESTAMPTZ',
};

/**
 * Columns added after the first release that a ledger with `have` columns lacks, in order.
 * Looked up first, so that an up-to-date ledger is not locked (ALTER TABLE takes an exclusive
 * lock even when IF NOT EXISTS turns it into a no-op).
 */
export function missingLedgerColumns(have: readonly string[]): string[] {
  const present = new Set(have);
  return Object.keys(ADDED_LEDGER_COLUMNS).filter((column) => !present.has(column));
}

/** The ALTERs adding `columns` (of ADDED_LEDGER_COLUMNS), in one multi-statement query. */
export function addLedgerColumnsSql(quoted: string, columns: readonly string[]): string {
  return columns
    .map((column) => `ALTER TABLE ${quoted}.musickpi_ledger ADD COLUMN IF NOT EXISTS ${column} ${ADDED_LEDGER_COLUMNS[column]} NULL`)
    .join(';\n');
}

export async function readLedger(c: pg.Client, quoted: string): Promise<LedgerEntry[]> {
  // Two plain queries rather than array_agg: the same shape works on Redshift.
  const select = (added: string) =>
    c.query<LedgerFileRow>(
      `SELECT file_key, fingerprint, size, rows, run_id, archived_key, ${added}, hourly_loaded, genre_loaded
             FROM ${quoted}.musickpi_ledger ORDER BY file_key, fingerprint`,
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
  const dates = await c.query<LedgerDateRow>(
    `SELECT file_key, fingerprint, listen_date
           FROM ${quoted}.musickpi_ledger_dates ORDER BY file_key, fingerprint, listen_date`,
  );
  return toLedgerEntries(files.rows, dates.rows);
}

/** The ledger side of a load, inside its transaction: retired entries out, the batch's in. */
export async function writeLedger(
  c: pg.Client,
  schema: string,
  quoted: string,
  runId: string,
  retire: NonNullable<LoadBatch['retire']>,
  ledger: LedgerEntry[],
  retract: NonNullable<LoadBatch['retract']> = [],
): Promise<void> {
  if (retract.length > 0) {
    // Kept, marked: the rows say what was taken out and when, and keep its bytes from coming back.
    await c.query(
      `UPDATE ${quoted}.musickpi_ledger t SET retracted_at = now()
         FROM unnest($1::text[], $2::text[]) AS r(file_key, fingerprint)
        WHERE t.file_key = r.file_key AND t.fingerprint = r.fingerprint`,
      [retract.map((r) => r.fileKey), retract.map((r) => r.fingerprint)],
    );
  }
  if (retire.length > 0) {
    const keys = retire.map((r) => r.fileKey);
    const fps = retire.map((r) => r.fingerprint);
    for (const table of ['musickpi_ledger_dates', 'musickpi_ledger']) {
      await c.query(
        `DELETE FROM ${quoted}.${table} t USING unnest($1::text[], $2::text[]) AS r(file_key, fingerprint)
              WHERE t.file_key = r.file_key AND t.fingerprint = r.fingerprint`,
        [keys, fps],
      );
    }
  }
  if (ledger.length > 0) {
    await c.query(renderSql('upsert-ledger', schema), [
      ledger.map((e) => e.fileKey),
      ledger.map((e) => e.fingerprint),
      ledger.map((e) => e.size),
      ledger.map((e) => e.rows),
      ledger.map(() => runId),
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
    if (dd.length > 0) await c.query(renderSql('upsert-ledger-dates', schema), [dk, df, dd]);
  }
}
