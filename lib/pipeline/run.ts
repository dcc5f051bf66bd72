// What the steps of one run share (the run's state, its timer, the step type), apart from
// the steps themselves: pipeline.ts composes the commands, warehouse-engine.ts adds its steps.

import type { DimensionCacheOptions } from './dimension-cache.js';
import type { Lake, LakeSpec } from '../domain/lake.js';
import type { KpiTable } from '../domain/kpi.js';
import type { LedgerEntry } from '../domain/ledger.js';
import type { Warehouse, RunLock, WarehouseEngine, EngineFile } from '../domain/warehouse.js';
import type { ShardManifest, ShardPlan } from '../domain/shards.js';
import { MkpiError, toMkpiError } from '../domain/errors.js';
import type { LakeLayout } from '../domain/layout.js';
import type { Plan, repairTwins } from '../stages/plan.js';
import type { DimensionFileReport, StreamScan } from '../stages/scan.js';
import { dayToDate } from '../domain/listen-time.js';
import { BAD_ROW_REASONS, ORPHAN_REASONS, REJECT_REASONS } from '../domain/reject-reasons.js';
import type { KpiState, KpiResult } from '../stages/reduce.js';
import type { DateStateStore } from '../stages/date-state.js';
import type { StateSpill } from './state-spill.js';
import type { RejectSink } from '../stages/rejects.js';
import type { Dimensions } from '../stages/validate.js';
import type { ArchiveFault } from '../stages/archive.js';
import type { ParallelOptions } from './parallel-scan.js';
import type { Command, RunReport, Stage } from './report.js';

/**
 * Test-only points, in run order, at which `fault` is called (the CLI kills itself there under
 * MKPI_TEST_FAULT, or pauses under MKPI_TEST_PAUSE). 'mid-copy', 'staged', 'mid-merge',
 * 'merged', 'before-commit' are inside the load transaction; 'mid-state' is after the first saved
 * date state (date-state.ts) and before the others; see ArchiveFault for the archive's.
 */
export type FaultPoint =
  | 'after-lock'
  | 'after-list'
  | 'mid-parse'
  | 'after-scan'
  | 'mid-copy'
  | 'staged'
  | 'mid-merge'
  | 'merged'
  | 'before-commit'
  | 'after-commit'
  | 'mid-state'
  | ArchiveFault;

export type PipelineEvent =
  | { type: 'stage'; stage: Stage; message: string }
  | { type: 'progress'; rows: number; files: number; totalFiles: number }
  | { type: 'warn'; message: string }
  | { type: 'info'; message: string };

export interface PipelineOptions {
  command: Command;
  lake: Lake;
  layout: LakeLayout;
  /** Required by every command but validate. */
  warehouse?: Warehouse;
  kpis?: KpiTable[];
  dryRun?: boolean;
  maxBadRows?: number;
  maxOrphanRows?: number;
  /** Key of the rejects CSV (in `rejectsLake`, else in the lake), or null to write none. */
  rejectsKey?: string | null;
  /** Another store for the rejects (a local folder, an s3:// URI); default: the lake. */
  rejectsLake?: Lake;
  /** After publishing, keep only the newest `keep` run folders under `prefix` (rejects/<run id>/). */
  pruneRejects?: { prefix: string; keep: number };
  /** Let this lake take over a schema whose ledger belongs to another lake (a moved lake). */
  adoptLake?: boolean;
  /**
   * Listen dates (YYYY-MM-DD) to recompute over every loaded file that carries them, whether or
   * not a new file does (`--date`, `--start/--end`): the late-file rule, on demand.
   */
  window?: string[];
  /** New files' dates outside these are reported, and with `strict` stop the run before loading. */
  expectDates?: { dates: string[]; text: string; strict: boolean };
  /** `retract`: the keys of the loaded files to take back out (their key when loaded, or archived). */
  retract?: string[];
  runId: string;
  signal?: AbortSignal;
  onEvent?: (e: PipelineEvent) => void;
  /** Test-only fault injection: called at each named point. */
  fault?: (point: FaultPoint) => void | Promise<void>;
  /** Reading new stream files in worker threads (parallel-scan.ts); absent: in the calling thread. */
  parallel?: ParallelOptions;
  /** `--engine warehouse`, `plan`, `normalize`: the staging, the plan and the shards (docs/scale.md). */
  engine?: EngineOptions;
  /** Where loaded dimensions are kept across runs, keyed by the files' fingerprints (dimension-cache.ts); absent: none. */
  dimensionCache?: DimensionCacheOptions;
  /**
   * Where each loaded date's reducer state is kept for later runs' late files (date-state.ts):
   * used instead of re-reading loaded files where it provably holds the same rows; absent: none.
   */
  dateState?: DateStateStore & { version: string };
  /**
   * The reducers' state is held under this many bytes in all (its readers share it), the rest
   * spilled by date to a temporary folder under `dir` (state-spill.ts); absent: no budget.
   */
  memoryBudget?: { bytes: number; dir?: string };
}

export interface EngineOptions {
  /** Where plans and normalized parts go (a folder or s3://…). */
  staging: Lake;
  /** How worker threads reopen the staging (and the lake: PipelineOptions.parallel.lake). */
  stagingSpec?: LakeSpec;
  /** The plan's id (`--run-id`): an existing plan is used as it is; without one, the run plans for itself. */
  planId?: string;
  /** `plan`: how many shards; a run that plans for itself uses one per worker. */
  shards?: number;
  /** `normalize`: which shard (0-based). */
  shard?: { index: number; count: number };
  /** Uncompressed bytes at which a part rolls over (tests make it small). */
  partBytes?: number;
}

/** The warehouse engine's share of a run. */
export interface EngineRun {
  plan: ShardPlan;
  /** Whether this run made the plan (and so normalizes it itself). */
  ownPlan: boolean;
  manifests: ShardManifest[];
  session?: WarehouseEngine;
  /** Staged files: the plan's pending files and the loaded files re-read for late dates. */
  staged: EngineFile[];
  /** The plan's file id of each pending file, by lake key. */
  idOf: Map<string, number>;
}

export class Timer {
  private readonly t0 = performance.now();
  constructor(private readonly report: RunReport) {}
  async stage<T>(stage: Stage, fn: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      return await fn();
    } finally {
      this.report.timings[stage] = Math.round((this.report.timings[stage] ?? 0) + performance.now() - start);
    }
  }
  done(): void {
    this.report.timings.total = Math.round(performance.now() - this.t0);
  }
}

export function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new MkpiError('MKPI_INTERRUPTED', 'interrupted', { cause: signal.reason });
}

export function asPipelineError(err: unknown, signal: AbortSignal | undefined): MkpiError {
  if (signal?.aborted) return new MkpiError('MKPI_INTERRUPTED', 'interrupted', { cause: err });
  return toMkpiError(err);
}

/** What the steps of one run share: each step reads what earlier steps left and adds its part. */
export interface Run {
  opts: PipelineOptions;
  kpis: KpiTable[];
  report: RunReport;
  timer: Timer;
  emit: (e: PipelineEvent) => void;
  warn: (message: string) => void;
  /** The step running now, recorded with an error. */
  step: string;
  lock?: RunLock;
  /** The ledger's files that count (twins repaired), or undefined when this command does not use it. */
  ledger?: LedgerEntry[];
  /** The ledger's retracted files: never loaded again, never re-read. */
  retractedEntries: LedgerEntry[];
  /** `retract`: the entries being taken out. */
  retracting: LedgerEntry[];
  repair: ReturnType<typeof repairTwins>;
  plan?: Plan;
  rejects?: RejectSink;
  dims?: Dimensions;
  state?: KpiState;
  scans: StreamScan[];
  byTable: Record<KpiTable, Set<string>>;
  result?: KpiResult;
  /** The dimensions' key for saved date states (date-state.ts dimensionsKey); absent when unproven. */
  dimensionsKey?: string;
  /** Per date being recomputed: the ledger identities of the files whose rows of it the state holds. */
  dateFiles?: Map<string, Set<string>>;
  /** The state's spill under the memory budget (also where the dates' states to save wait for the commit). */
  spill?: StateSpill;
  wh?: EngineRun;
  /** Run at the end of the run, whatever happened (sessions to close). */
  cleanups: (() => Promise<void>)[];
}

export type Step = { name: string; run: (r: Run) => Promise<void> | void };

export const step = (name: string, run: (r: Run) => Promise<void> | void): Step => ({ name, run });

export function warehouseOf(r: Run): Warehouse {
  if (!r.opts.warehouse) throw new MkpiError('MKPI_INTERNAL', `${r.opts.command} needs a warehouse`);
  return r.opts.warehouse;
}

export function joinRoot(root: string, key: string): string {
  return root.endsWith('/') ? root + key : `${root}/${key}`;
}

/** Refuses a ledger that belongs to another lake without claiming anything (dry runs, `plan`). */
export async function refuseOtherLake(r: Run): Promise<void> {
  const lake = r.opts.lake.root;
  const owner = await warehouseOf(r).lakeClaim();
  if (owner !== null && owner !== lake && !r.opts.adoptLake) {
    throw new MkpiError('MKPI_CONFIG', `schema holds the ledger of lake ${owner}; this run's lake is ${lake}`, {
      hint: 'give this lake its own --schema, or pass --adopt-lake if the lake moved',
    });
  }
}

/** The dates to recompute, per table: the new files', the retired twins' and the window's (docs/contract.md#late). */
export function addDatesToRecompute(r: Run): void {
  const scanByKey = new Map(r.scans.map((s) => [s.key, s]));
  for (const p of r.plan!.pending) {
    const s = scanByKey.get(p.obj.key)!;
    for (const t of p.missing) for (const d of s.days) r.byTable[t].add(dayToDate(d));
  }
  // Dates a twin row counted twice are recomputed with the twin gone.
  for (const twin of r.repair.retire) for (const t of twin.tables) for (const d of twin.dates) r.byTable[t].add(d);
  for (const d of r.opts.window ?? []) for (const t of r.kpis) r.byTable[t].add(d);
}

/** The warnings every run gives about its dimension files. */
export function warnDimensions(r: Run, songs: DimensionFileReport, users: DimensionFileReport): void {
  r.report.totals.duplicateSongs = songs.duplicates;
  r.report.totals.duplicateUsers = users.duplicates;
  if (songs.duplicates > 0) r.warn(`${songs.file}: ${songs.duplicates} duplicate track_id row(s); the first row of each wins`);
  if (users.duplicates > 0) r.warn(`${users.file}: ${users.duplicates} duplicate user_id row(s); the first row of each wins`);
  for (const d of [songs, users]) {
    const bad = Object.values(d.rejected).reduce((a, b) => a + b, 0);
    if (bad > 0) r.warn(`${d.file}: ${bad} invalid row(s) left out of the dimension`);
    if (d.duplicateHeaders.length > 0)
      r.warn(`${d.file}: repeated header name(s) ${d.duplicateHeaders.join(', ')}; the first column of each is used`);
  }
}

/** A read stream file into the report: its row, and the totals (badRows and orphanRows: addRowTotals). */
export function recordScan(r: Run, scan: StreamScan): void {
  if (scan.duplicateHeaders.length > 0) {
    r.warn(`${scan.key}: repeated header name(s) ${scan.duplicateHeaders.join(', ')}; the first column of each is used`);
  }
  const totals = r.report.totals;
  totals.files++;
  totals.bytes += scan.bytes;
  totals.rowsRead += scan.rows;
  totals.completeRows += scan.complete;
  for (const x of REJECT_REASONS) totals.rejected[x] += scan.rejected[x];
  r.report.files.push({
    name: scan.key,
    bytes: scan.bytes,
    rows: scan.rows,
    complete: scan.complete,
    rejected: scan.rejected,
    dates: [...scan.days].sort((a, b) => a - b).map(dayToDate),
    status: scan.schemaError ? 'schema_error' : 'read',
    ...(scan.schemaError ? { error: scan.schemaError.message } : {}),
  });
}

/** badRows and orphanRows from the totals per reason. */
export function addRowTotals(report: RunReport): void {
  const totals = report.totals;
  totals.badRows = BAD_ROW_REASONS.reduce((a, x) => a + totals.rejected[x], 0);
  totals.orphanRows = ORPHAN_REASONS.reduce((a, x) => a + totals.rejected[x], 0);
}
