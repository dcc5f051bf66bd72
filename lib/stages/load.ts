// The load stage's data side: which KPI rows replace which dates, and what the ledger
// records. The transaction itself is the warehouse adapter's (one per warehouse kind).

import type { KpiTable } from '../domain/kpi.js';
import type { LoadBatch } from '../domain/warehouse.js';
import type { LedgerEntry } from '../domain/ledger.js';
import type { KpiResult } from './reduce.js';
import type { PendingFile } from './plan.js';
import type { StreamScan } from './scan.js';
import { dayToDate } from '../domain/listen-time.js';

export function buildBatch(
  runId: string,
  kpis: readonly KpiTable[],
  datesByTable: Record<KpiTable, ReadonlySet<string>>,
  res: KpiResult,
  pending: PendingFile[],
  scans: ReadonlyMap<string, StreamScan>,
): Omit<LoadBatch, 'onStep'> {
  const batch: Omit<LoadBatch, 'onStep'> = { runId, ledger: [] };
  if (kpis.includes('hourly')) {
    const dates = datesByTable.hourly;
    batch.hourly = { dates: [...dates].sort(), rows: res.hourly.filter((r) => dates.has(r.listen_date)) };
  }
  if (kpis.includes('genre')) {
    const dates = datesByTable.genre;
    batch.genre = { dates: [...dates].sort(), rows: res.genre.filter((r) => dates.has(r.listen_date)) };
  }
  batch.ledger.push(...ledgerEntries(runId, kpis, pending, scans));
  return batch;
}

/** What the ledger records of the pending files a load reads: one entry each, tables merged. */
export function ledgerEntries(
  runId: string,
  kpis: readonly KpiTable[],
  pending: PendingFile[],
  scans: ReadonlyMap<string, StreamScan>,
): LedgerEntry[] {
  return pending.map((p) => {
    const scan = scans.get(p.obj.key)!;
    // A file the ledger knows under another fingerprint (same key, same bytes) keeps its row.
    return {
      fileKey: p.entry?.fileKey ?? p.obj.key,
      fingerprint: p.entry?.fingerprint ?? p.obj.fingerprint,
      contentHash: scan.contentHash || null,
      size: p.obj.size,
      rows: scan.rows,
      dates: [...scan.days].sort((a, b) => a - b).map(dayToDate),
      tables: [...new Set([...(p.entry?.tables ?? []), ...kpis])],
      runId,
      archivedKey: null,
    };
  });
}
