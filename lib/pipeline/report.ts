// The run report: what every command returns and what `--json` prints (fields documented
// in the README). It is filled as the pipeline goes, so a failed run still shows its counts.

import { REJECT_REASONS, type RejectReason } from '../domain/reject-reasons.js';
import type { DimensionFileReport } from '../stages/scan.js';
import type { ArchivedFile } from '../stages/archive.js';
import type { KpiTable } from '../domain/kpi.js';
import type { MkpiError } from '../domain/errors.js';
import { redact } from '../domain/errors.js';

export type Command = 'run' | 'validate' | 'compute' | 'archive' | 'retract' | 'plan' | 'normalize';
export type Stage =
  'list' | 'dimensions' | 'streams' | 'reread' | 'normalize' | 'stage' | 'compute' | 'load' | 'archive' | 'retract' | 'total';

export interface FileReport {
  name: string;
  bytes: number;
  rows: number;
  complete: number;
  rejected: Record<RejectReason, number>;
  dates: string[];
  status: 'read' | 'already_loaded' | 'schema_error';
  error?: string;
}

export interface RereadReport {
  name: string;
  bytes: number;
  rows: number;
  rowsUsed: number;
}

/** A failure as every command reports it (the CLI's --json uses this shape for all commands). */
export interface ReportError {
  code: string;
  message: string;
  hint: string | null;
  /** Where it failed: a pipeline stage, 'connect', or 'config' before anything ran. */
  stage: string | null;
}

export interface RunReport {
  command: Command;
  runId: string;
  ok: boolean;
  error: ReportError | null;
  lake: string;
  warehouse: string | null;
  kpis: KpiTable[];
  dryRun: boolean;
  dimensions: { songs: DimensionFileReport | null; users: DimensionFileReport | null };
  files: FileReport[];
  reread: RereadReport[];
  ignored: string[];
  totals: {
    files: number;
    bytes: number;
    rowsRead: number;
    completeRows: number;
    rejected: Record<RejectReason, number>;
    badRows: number;
    orphanRows: number;
    duplicateSongs: number;
    duplicateUsers: number;
  };
  datesRecomputed: Record<KpiTable, string[]>;
  rowsWritten: { hourly_kpis: number; genre_level_kpis: number };
  loaded: boolean;
  /** Files whose twin ledger rows this run removed (their dates were counted twice before). */
  ledgerRepaired: string[];
  archived: ArchivedFile[];
  /** Files `retract` took back out (in a dry run: would take), and where each file moved. */
  retracted: { file: string; from: string | null; to: string | null }[];
  /** Files in streams/ that are copies of retracted files: never loaded again. */
  skippedRetracted: string[];
  /** --expect-dates: new files with listen dates outside the expected window, and those dates. */
  unexpectedDates: { file: string; dates: string[] }[];
  rejectsOutput: string | null;
  warnings: string[];
  timings: Partial<Record<Stage, number>>;
  /**
   * Whether this run is in the warehouse's run history (musickpi_runs): 'recorded', or
   * 'not recorded: <why>'; null when the command never got as far as trying.
   */
  history: string | null;
  /** Which engine computed the KPIs: 'stream' (in this process) or 'warehouse' (docs/scale.md). */
  engine: 'stream' | 'warehouse';
  /** The warehouse engine's plan: its id (`--run-id`), shards, and where its staging is. */
  plan: PlanReport | null;
  /**
   * Saved date states (date-state.ts): the late dates whose loaded files' counts were read back
   * instead of the files, and the dates saved for later runs; null when the run keeps none.
   */
  dateState: { restored: string[]; saved: string[] } | null;
  /** Bytes of reducer state this run spilled to its temporary folder under the memory budget (0: none). */
  spilledBytes: number;
}

export interface PlanReport {
  id: string;
  shards: number;
  staging: string;
  /** Planned bytes per shard (dimension files included). */
  shardBytes: number[];
  /** `normalize`: the shard it wrote (0-based), its parts and the rows in them. */
  shard?: { index: number; parts: number; listens: number; rejects: number };
  /** The run: shards normalized by this process (all of them when it planned for itself). */
  normalizedHere?: number[];
}

export function zeroReasons(): Record<RejectReason, number> {
  return Object.fromEntries(REJECT_REASONS.map((r) => [r, 0])) as Record<RejectReason, number>;
}

export function newReport(command: Command, runId: string, lake: string, kpis: KpiTable[], dryRun: boolean): RunReport {
  return {
    command,
    runId,
    ok: false,
    error: null,
    lake: redact(lake),
    warehouse: null,
    kpis,
    dryRun,
    dimensions: { songs: null, users: null },
    files: [],
    reread: [],
    ignored: [],
    totals: {
      files: 0,
      bytes: 0,
      rowsRead: 0,
      completeRows: 0,
      rejected: zeroReasons(),
      badRows: 0,
      orphanRows: 0,
      duplicateSongs: 0,
      duplicateUsers: 0,
    },
    datesRecomputed: { hourly: [], genre: [] },
    rowsWritten: { hourly_kpis: 0, genre_level_kpis: 0 },
    loaded: false,
    ledgerRepaired: [],
    archived: [],
    retracted: [],
    skippedRetracted: [],
    unexpectedDates: [],
    rejectsOutput: null,
    warnings: [],
    timings: {},
    history: null,
    engine: 'stream',
    plan: null,
    dateState: null,
    spilledBytes: 0,
  };
}

export function setError(report: RunReport, err: MkpiError, stage: string | null = null): void {
  report.ok = false;
  report.error = { code: err.code, message: redact(err.message), hint: err.hint ? redact(err.hint) : null, stage };
}

export function newRunId(now = new Date()): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `${stamp}-${Math.random().toString(36).slice(2, 8)}`;
}
