// `musickpi status`: what the lake and the ledger say, side by side, changing nothing — the files
// pending, loaded (into which tables, and where they are now), retracted, and the dates each
// KPI table holds. Read-only: no lock, no init; an uninitialised warehouse has loaded nothing.

import type { Lake } from '../domain/lake.js';
import type { LakeLayout } from '../domain/layout.js';
import type { Warehouse } from '../domain/warehouse.js';
import { KPI_TABLES, type KpiTable } from '../domain/kpi.js';
import type { LedgerEntry } from '../domain/ledger.js';
import { FileMatcher, listStreamFiles, planPending } from '../stages/plan.js';

export interface StatusReport {
  command: 'status';
  ok: true;
  lake: string;
  warehouse: string;
  /** The lake the schema's ledger belongs to (null: no run has claimed it yet). */
  ledgerLake: string | null;
  pending: { file: string; bytes: number; missing: KpiTable[] }[];
  loaded: {
    file: string;
    tables: KpiTable[];
    dates: string[];
    rows: number;
    runId: string;
    /** Where the file is: 'streams' (not archived yet) or 'archived' (at archivedKey). */
    where: 'streams' | 'archived';
    archivedKey: string | null;
  }[];
  retracted: { file: string; retractedAt: string; dates: string[] }[];
  ignored: string[];
  /** Per table, every date the ledger says it holds. */
  dates: Record<KpiTable, string[]>;
}

export async function lakeStatus(opts: {
  lake: Lake;
  layout: LakeLayout;
  warehouse: Warehouse;
  signal?: AbortSignal;
}): Promise<StatusReport> {
  const { lake, layout, warehouse, signal } = opts;
  const initialised = await warehouse.isInitialised();
  const ledger: LedgerEntry[] = initialised ? await warehouse.readLedger() : [];
  const active = ledger.filter((e) => !e.retractedAt);
  const listing = await listStreamFiles(lake, layout);
  const plan = await planPending(listing.files, new FileMatcher(lake, layout, ledger, signal), KPI_TABLES);
  const inStreams = new Set([...plan.alreadyLoaded, ...plan.pending].filter((p) => p.entry).map((p) => p.entry!));
  const dates: Record<KpiTable, Set<string>> = { hourly: new Set(), genre: new Set() };
  for (const e of active) for (const t of e.tables) for (const d of e.dates) dates[t].add(d);
  return {
    command: 'status',
    ok: true,
    lake: lake.root,
    warehouse: warehouse.description,
    ledgerLake: initialised ? await warehouse.lakeClaim() : null,
    pending: plan.pending.filter((p) => !p.entry?.retractedAt).map((p) => ({ file: p.obj.key, bytes: p.obj.size, missing: p.missing })),
    loaded: active
      .map((e) => ({
        file: e.fileKey,
        tables: e.tables,
        dates: e.dates,
        rows: e.rows,
        runId: e.runId,
        where: e.archivedKey && !inStreams.has(e) ? ('archived' as const) : ('streams' as const),
        archivedKey: e.archivedKey,
      }))
      .sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0)),
    retracted: ledger.filter((e) => e.retractedAt).map((e) => ({ file: e.fileKey, retractedAt: e.retractedAt!, dates: e.dates })),
    ignored: listing.ignored,
    dates: { hourly: [...dates.hourly].sort(), genre: [...dates.genre].sort() },
  };
}
