// The pipeline as a library: each command returns a RunReport and never touches `process`.
// Errors end up in report.error with a stable code; the CLI alone maps codes to exit statuses.

import type { Lake } from '../domain/lake.js';
import { KPI_TABLES, type KpiTable } from '../domain/kpi.js';
import { type LedgerEntry } from '../domain/ledger.js';
import { type Warehouse, type RunLock } from '../domain/warehouse.js';
import { MkpiError, toMkpiError } from '../domain/errors.js';
import { FileMatcher, filesToReread, repairTwins, listStreamFiles, locate, planPending, type PendingFile } from '../stages/plan.js';
import { type LakeLayout } from '../domain/layout.js';
import { loadDimensions, scanStreamFile, type StreamScan } from '../stages/scan.js';
import { create, ordinalRanks, result, type KpiState } from '../stages/reduce.js';
import { RejectSink } from '../stages/rejects.js';
import { DEFAULT_MAIN_READS, plannedWorkers, scanFilesParallel, type ParallelOptions } from './parallel-scan.js';
import { archiveLoaded, type ArchiveFault } from '../stages/archive.js';
import { buildBatch } from '../stages/load.js';
import { BAD_ROW_REASONS, ORPHAN_REASONS, REJECT_REASONS } from '../domain/reject-reasons.js';
import { type Dimensions } from '../stages/validate.js';
import { dateToDay, dayToDate } from '../domain/listen-time.js';
import { newReport, setError, zeroReasons, type Command, type RunReport, type Stage } from './report.js';

/**
 * Test-only points, in run order, at which `fault` is called (the CLI kills itself there under
 * MKPI_TEST_FAULT, or pauses under MKPI_TEST_PAUSE). 'mid-copy', 'staged', 'mid-merge',
 * 'merged', 'before-commit' are inside the load transaction; see ArchiveFault for the archive's.
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
  /** Lake key of the rejects CSV, or null to write none. */
  rejectsKey?: string | null;
  runId: string;
  signal?: AbortSignal;
  onEvent?: (e: PipelineEvent) => void;
  /** Test-only fault injection: called at each named point. */
  fault?: (point: FaultPoint) => void | Promise<void>;
  /** Reading new stream files in worker threads (parallel-scan.ts); absent: in the calling thread. */
  parallel?: ParallelOptions;
}

class Timer {
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

function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new MkpiError('MKPI_INTERRUPTED', 'interrupted', { cause: signal.reason });
}

function asPipelineError(err: unknown, signal: AbortSignal | undefined): MkpiError {
  if (signal?.aborted) return new MkpiError('MKPI_INTERRUPTED', 'interrupted', { cause: err });
  return toMkpiError(err);
}

export async function runPipeline(opts: PipelineOptions): Promise<RunReport> {
  const kpis = opts.kpis ?? [...KPI_TABLES];
  const report = newReport(opts.command, opts.runId, opts.lake.root, kpis, opts.dryRun ?? false);
  report.warehouse = opts.warehouse?.description ?? null;
  const timer = new Timer(report);
  let lock: RunLock | undefined;
  const emit = (e: PipelineEvent) => opts.onEvent?.(e);
  const warn = (message: string) => {
    report.warnings.push(message);
    emit({ type: 'warn', message });
  };
  try {
    if (opts.command !== 'validate') {
      if (!opts.warehouse) throw new MkpiError('MKPI_INTERNAL', `${opts.command} needs a warehouse`);
      if (!report.dryRun) {
        lock = await opts.warehouse.acquireRunLock();
        await opts.fault?.('after-lock');
      }
    }
    if (opts.command === 'archive') {
      await archiveStage(opts, report, timer, emit);
    } else {
      await computeStage(opts, kpis, report, timer, emit, warn);
      if (opts.command === 'run' && !report.dryRun) await archiveStage(opts, report, timer, emit);
    }
    report.ok = true;
  } catch (err) {
    setError(report, asPipelineError(err, opts.signal));
  } finally {
    if (lock) await lock.release().catch(() => undefined);
    timer.done();
  }
  return report;
}

async function archiveStage(opts: PipelineOptions, report: RunReport, timer: Timer, emit: (e: PipelineEvent) => void): Promise<void> {
  const warehouse = opts.warehouse!;
  if (report.dryRun) return;
  if (!(await warehouse.isInitialised())) return;
  // `archive` alone never ran init(): bring an older ledger up to date (idempotent, cheap).
  if (opts.command === 'archive') await warehouse.init();
  emit({ type: 'stage', stage: 'archive', message: 'archiving loaded stream files' });
  await timer.stage('archive', () =>
    archiveLoaded(opts.lake, warehouse, opts.layout, {
      fault: opts.fault,
      signal: opts.signal,
      onSkip: (key, reason) => {
        const message = `${key} not archived: ${reason}`;
        report.warnings.push(message);
        emit({ type: 'warn', message });
      },
      onFile: (f) => {
        report.archived.push(f);
        if (f.renamed) {
          const message = `${f.from}: an archived file of that name already exists with other content; kept as ${f.to}`;
          report.warnings.push(message);
          emit({ type: 'warn', message });
        }
      },
    }),
  );
}

async function computeStage(
  opts: PipelineOptions,
  kpis: KpiTable[],
  report: RunReport,
  timer: Timer,
  emit: (e: PipelineEvent) => void,
  warn: (m: string) => void,
): Promise<void> {
  const { lake, layout, signal } = opts;
  const warehouse = opts.warehouse;
  const validateOnly = opts.command === 'validate';

  let ledger: LedgerEntry[] = [];
  if (warehouse && !validateOnly) {
    if (!report.dryRun) await warehouse.init();
    if (!report.dryRun || (await warehouse.isInitialised())) ledger = await warehouse.readLedger();
  }

  emit({ type: 'stage', stage: 'list', message: `listing ${lake.root}/${layout.streams}` });
  const listing = await timer.stage('list', () => listStreamFiles(lake, layout));
  report.ignored = listing.ignored;
  if (listing.ignored.length > 0) {
    warn(`${listing.ignored.length} object(s) under ${layout.streams} are not stream files and were ignored`);
  }
  await opts.fault?.('after-list');
  checkAborted(signal);

  const repair = validateOnly ? { ledger, retire: [], keepers: [] } : repairTwins(ledger, kpis, warn);
  ledger = repair.ledger;
  const plan = validateOnly
    ? { pending: listing.files.map((obj): PendingFile => ({ obj, entry: undefined, missing: kpis })), alreadyLoaded: [] }
    : await planPending(listing.files, new FileMatcher(lake, layout, ledger, signal), kpis);

  const rejects = opts.rejectsKey ? new RejectSink() : undefined;
  try {
    emit({ type: 'stage', stage: 'dimensions', message: 'loading songs and users' });
    const { dims, songs, users } = await timer.stage('dimensions', () =>
      loadDimensions(lake, { songs: layout.songs, users: layout.users }, { signal, rejects }),
    );
    report.dimensions = { songs, users };
    report.totals.duplicateSongs = songs.duplicates;
    report.totals.duplicateUsers = users.duplicates;
    if (songs.duplicates > 0) warn(`${layout.songs}: ${songs.duplicates} duplicate track_id row(s); the first row of each wins`);
    if (users.duplicates > 0) warn(`${layout.users}: ${users.duplicates} duplicate user_id row(s); the first row of each wins`);
    for (const d of [songs, users]) {
      const bad = Object.values(d.rejected).reduce((a, b) => a + b, 0);
      if (bad > 0) warn(`${d.file}: ${bad} invalid row(s) left out of the dimension`);
      if (d.duplicateHeaders.length > 0)
        warn(`${d.file}: repeated header name(s) ${d.duplicateHeaders.join(', ')}; the first column of each is used`);
    }

    const state = create(dims.trackCount, dims.userCount);
    const scans = await timer.stage('streams', () => scanPending(opts, plan.pending, dims, state, report, rejects, emit));
    for (const p of plan.alreadyLoaded) {
      report.files.push({
        name: p.obj.key,
        bytes: p.obj.size,
        rows: p.entry.rows,
        complete: 0,
        rejected: zeroReasons(),
        dates: p.entry.dates,
        status: 'already_loaded',
      });
    }
    await opts.fault?.('after-scan');

    // Published before the gates, so that a run the circuit breaker stops still shows why.
    if (rejects && (await rejects.publish(lake, opts.rejectsKey!, signal))) report.rejectsOutput = opts.rejectsKey!;

    const schemaErrors = scans.filter((s) => s.schemaError);
    if (schemaErrors.length > 0) {
      const first = schemaErrors[0].schemaError!;
      throw new MkpiError(
        'MKPI_SCHEMA',
        schemaErrors.length === 1 ? first.message : `${schemaErrors.length} stream files fail schema validation; first: ${first.message}`,
        { hint: first.hint, details: { files: schemaErrors.map((s) => s.key) } },
      );
    }
    gate(opts, report, warn);
    if (validateOnly) return;

    // Dates to recompute, per table: every date a file pending for that table carries.
    const byTable: Record<KpiTable, Set<string>> = { hourly: new Set(), genre: new Set() };
    const scanByKey = new Map(scans.map((s) => [s.key, s]));
    for (const p of plan.pending) {
      const s = scanByKey.get(p.obj.key)!;
      for (const t of p.missing) for (const d of s.days) byTable[t].add(dayToDate(d));
    }
    // Dates a twin row counted twice are recomputed with the twin gone.
    for (const twin of repair.retire) for (const t of twin.tables) for (const d of twin.dates) byTable[t].add(d);
    const allDates = new Set([...byTable.hourly, ...byTable.genre]);
    const reread = filesToReread(ledger, plan.pending, allDates);
    if (reread.length > 0) {
      emit({ type: 'stage', stage: 'reread', message: `re-reading ${reread.length} loaded file(s) for late dates` });
      await timer.stage('reread', () => rereadFiles(opts, reread, allDates, dims, state, report));
    }

    emit({ type: 'stage', stage: 'compute', message: 'computing KPIs' });
    const days = new Set([...allDates].map(dateToDay));
    const res = await timer.stage('compute', () =>
      Promise.resolve(result(state, dims, { days, artistRank: ordinalRanks(dims.artists), trackRank: ordinalRanks(dims.trackIds) })),
    );
    for (const t of KPI_TABLES) report.datesRecomputed[t] = [...byTable[t]].sort();
    const batch = buildBatch(opts.runId, kpis, byTable, res, plan.pending, scanByKey);
    if (repair.retire.length > 0) {
      batch.retire = repair.retire.map((e) => ({ fileKey: e.fileKey, fingerprint: e.fingerprint }));
      batch.ledger.push(...repair.keepers);
      report.ledgerRepaired = repair.retire.map((e) => e.fileKey);
    }
    report.rowsWritten.hourly_kpis = batch.hourly?.rows.length ?? 0;
    report.rowsWritten.genre_level_kpis = batch.genre?.rows.length ?? 0;
    if (report.dryRun || (plan.pending.length === 0 && repair.retire.length === 0)) return;

    checkAborted(signal);
    emit({ type: 'stage', stage: 'load', message: `loading into ${warehouse!.description}` });
    await timer.stage('load', () =>
      warehouse!.load({
        ...batch,
        onStep: async (step) => {
          await opts.fault?.(step === 'committed' ? 'after-commit' : step);
          if (step !== 'committed') checkAborted(signal);
        },
      }),
    );
    report.loaded = true;
  } finally {
    rejects?.dispose();
  }
}

async function scanPending(
  opts: PipelineOptions,
  pending: PendingFile[],
  dims: Dimensions,
  state: KpiState,
  report: RunReport,
  rejects: RejectSink | undefined,
  emit: (e: PipelineEvent) => void,
): Promise<StreamScan[]> {
  let rows = 0;
  let filesDone = 0;
  let faulted = false;
  emit({ type: 'stage', stage: 'streams', message: `reading ${pending.length} stream file(s)` });
  // Progress and the mid-parse fault point stay in this thread, whichever thread reads.
  const onRows = (n: number) => {
    rows += n;
    emit({ type: 'progress', rows, files: filesDone, totalFiles: pending.length });
    if (!faulted && opts.fault) {
      faulted = true;
      void opts.fault('mid-parse');
    }
  };
  // The report is filled file by file, in listing order, so a failed run still shows its counts.
  const record = (scan: StreamScan) => {
    filesDone++;
    if (scan.duplicateHeaders.length > 0) {
      const message = `${scan.key}: repeated header name(s) ${scan.duplicateHeaders.join(', ')}; the first column of each is used`;
      report.warnings.push(message);
      emit({ type: 'warn', message });
    }
    const totals = report.totals;
    totals.files++;
    totals.bytes += scan.bytes;
    totals.rowsRead += scan.rows;
    totals.completeRows += scan.complete;
    for (const r of REJECT_REASONS) totals.rejected[r] += scan.rejected[r];
    report.files.push({
      name: scan.key,
      bytes: scan.bytes,
      rows: scan.rows,
      complete: scan.complete,
      rejected: scan.rejected,
      dates: [...scan.days].sort((a, b) => a - b).map(dayToDate),
      status: scan.schemaError ? 'schema_error' : 'read',
      ...(scan.schemaError ? { error: scan.schemaError.message } : {}),
    });
  };
  const files = pending.map((p) => p.obj);
  const workers = plannedWorkers(opts.parallel, files);
  let scans: StreamScan[];
  if (workers > 0) {
    const lake = opts.parallel!.lake!;
    const local = (opts.parallel!.mainReads ?? DEFAULT_MAIN_READS) ? opts.lake : undefined;
    scans = await scanFilesParallel(files, dims, state, { lake, workers, local, signal: opts.signal, rejects, onRows, onScan: record });
  } else {
    scans = [];
    for (const obj of files) {
      const scan = await scanStreamFile(opts.lake, obj, dims, state, { signal: opts.signal, rejects, onRows });
      scans.push(scan);
      record(scan);
    }
  }
  emit({ type: 'progress', rows, files: pending.length, totalFiles: pending.length });
  report.totals.badRows = BAD_ROW_REASONS.reduce((a, r) => a + report.totals.rejected[r], 0);
  report.totals.orphanRows = ORPHAN_REASONS.reduce((a, r) => a + report.totals.rejected[r], 0);
  return scans;
}

/** The circuit breaker (spec §3): bad rows and orphans over their thresholds stop the run. */
function gate(opts: PipelineOptions, report: RunReport, warn: (m: string) => void): void {
  const { badRows, orphanRows } = report.totals;
  const maxBad = opts.maxBadRows ?? 0;
  const maxOrphans = opts.maxOrphanRows ?? Infinity;
  if (badRows > maxBad) {
    throw new MkpiError('MKPI_BAD_ROWS', `${badRows} bad stream row(s), more than --max-bad-rows ${maxBad}`, {
      hint: 'see the rejects output for each row and reason, or raise --max-bad-rows to load anyway',
      details: { badRows, maxBadRows: maxBad },
    });
  }
  if (orphanRows > maxOrphans) {
    throw new MkpiError('MKPI_ORPHAN_ROWS', `${orphanRows} orphan stream row(s), more than --max-orphan-rows ${maxOrphans}`, {
      hint: 'orphans reference a track or user missing from the dimensions (often a late dimension file)',
      details: { orphanRows, maxOrphanRows: maxOrphans },
    });
  }
  if (badRows > 0) warn(`${badRows} bad stream row(s) rejected (within --max-bad-rows ${maxBad})`);
  if (orphanRows > 0) warn(`${orphanRows} orphan stream row(s) rejected (unknown track or user)`);
}

async function rereadFiles(
  opts: PipelineOptions,
  entries: LedgerEntry[],
  dates: ReadonlySet<string>,
  dims: Dimensions,
  state: KpiState,
  report: RunReport,
): Promise<void> {
  const dayFilter = new Set([...dates].map(dateToDay));
  for (const entry of entries) {
    const obj = await locate(opts.lake, opts.layout, entry, opts.signal);
    const scan = await scanStreamFile(opts.lake, obj, dims, state, { signal: opts.signal, dayFilter });
    if (scan.schemaError) throw scan.schemaError;
    report.reread.push({ name: obj.key, bytes: scan.bytes, rows: scan.rows, rowsUsed: scan.reduced });
  }
}
