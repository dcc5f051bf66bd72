// The ledger as both dialects keep it: musickpi_ledger (one row per file and fingerprint) and
// musickpi_ledger_dates (the dates each file covered), read with two plain queries and folded
// the same way before a write.

import type pg from 'pg';
import { MkpiError } from '../../../domain/errors.js';
import { KPI_TABLES } from '../../../domain/kpi.js';
import { type LedgerEntry } from '../../../domain/ledger.js';

export function ledgerKey(fileKey: string, fingerprint: string): string {
  return `${fileKey}\u0000${fingerprint}`;
}

/**
 * Duplicate files of one batch folded into one entry (a statement may not touch one row twice:
 * PostgreSQL's ON CONFLICT refuses it, and Redshift's delete-then-insert would insert twice).
 */
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

/** A musickpi_ledger row as both dialects select it. */
export interface LedgerFileRow {
  file_key: string;
  fingerprint: string;
  size: number | string;
  rows: number | string;
  run_id: string;
  archived_key: string | null;
  archived_fingerprint: string | null;
  content_hash: string | null;
  retracted_at: Date | string | null;
  hourly_loaded: boolean;
  genre_loaded: boolean;
}

export interface LedgerDateRow {
  file_key: string;
  fingerprint: string;
  listen_date: string;
}

/** The ledger's rows as entries, each with the dates recorded for it. */
export function toLedgerEntries(files: LedgerFileRow[], dates: LedgerDateRow[]): LedgerEntry[] {
  const byKey = new Map<string, string[]>();
  for (const d of dates) {
    const k = ledgerKey(d.file_key, d.fingerprint);
    let list = byKey.get(k);
    if (!list) byKey.set(k, (list = []));
    list.push(d.listen_date);
  }
  return files.map((f) => ({
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
    ...(f.retracted_at !== null ? { retractedAt: new Date(f.retracted_at).toISOString() } : {}),
  }));
}

/** Records where archive put a file (plain SQL both dialects run as it is). */
export async function markArchived(
  c: pg.Client,
  quoted: string,
  fileKey: string,
  fingerprint: string,
  archivedKey: string,
  archivedFingerprint?: string,
): Promise<void> {
  const r = await c.query(
    `UPDATE ${quoted}.musickpi_ledger SET archived_key = $3, archived_fingerprint = $4
          WHERE file_key = $1 AND fingerprint = $2`,
    [fileKey, fingerprint, archivedKey, archivedFingerprint ?? null],
  );
  if (r.rowCount === 0) {
    throw new MkpiError('MKPI_INTERNAL', `no ledger entry for ${fileKey} (${fingerprint}) to mark as archived`);
  }
}
