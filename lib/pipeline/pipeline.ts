// The pipeline as a library: each command returns a RunReport and never touches `process`.
// Errors end up in report.error with a stable code; the CLI alone maps codes to exit statuses.

import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { KPI_TABLES } from '../domain/kpi.js';
import { type LedgerEntry } from '../domain/ledger.js';
import { type LoadBatch } from '../domain/warehouse.js';
import { MkpiError, toMkpiError } from '../domain/errors.js';
import {
  FileMatcher,
  filesToReread,
  identity,
  ledgerIdentity,
  repairTwins,
  listStreamFiles,
  locate,
  planPending,
  type PendingFile,
} from '../stages/plan.js';
import {
  decodeDateState,
  dimensionsKey,
  encodeDateState,
  listDateStates,
  readDateStateBytes,
  restoreDateState,
  writeDateState,
} from '../stages/date-state.js';
import { scanStreamFile, type StreamScan } from '../stages/scan.js';
import { loadDimensionsCached } from './dimension-cache.js';
import { create, result, type KpiResult } from '../stages/reduce.js';
import { SPILL_FOLDER_PREFIX, StateSpill, sweepStaleSpills } from './state-spill.js';
import { RejectSink, pruneRejectFolders } from '../stages/rejects.js';
import { DEFAULT_MAIN_READS, plannedWorkers, scanFilesParallel } from './parallel-scan.js';
import { archiveLoaded } from '../stages/archive.js';
import { buildBatch } from '../stages/load.js';
import { dateToDay, dayToDate } from '../domain/listen-time.js';
import { newReport, setError, zeroReasons, type Command, type RunReport } from './report.js';
import { warehouseEngineSteps } from './warehouse-engine.js';
import {
  asPipelineError,
  checkAborted,
  joinRoot,
  step,
  Timer,
  warehouseOf,
  addDatesToRecompute,
  addRowTotals,
  recordScan,
  refuseOtherLake,
  warnDimensions,
  type PipelineEvent,
  type PipelineOptions,
  type Run,
  type Step,
} from './run.js';

export type { FaultPoint, PipelineEvent, PipelineOptions, EngineOptions } from './run.js';

/** The run lock, held to the end of the run (a dry run writes nothing and takes none). */
const lockStep = step('lock', async (r) => {
  if (r.report.dryRun) return;
  r.lock = await warehouseOf(r).acquireRunLock();
  await r.opts.fault?.('after-lock');
});

/** The schema's tables brought up to date, and the ledger tied to this lake (docs/contract.md#lake-identity). */
const claimStep = step('claim', async (r) => {
  const warehouse = warehouseOf(r);
  const lake = r.opts.lake.root;
  try {
    if (!r.report.dryRun) {
      await warehouse.init();
      await warehouse.claimLake(lake, { adopt: r.opts.adoptLake ?? false });
      return;
    }
    // A dry run creates nothing, but still refuses a ledger that belongs to another lake.
    await refuseOtherLake(r);
  } catch (err) {
    // A mistyped lake path is "no input" (66), not "another lake": look before blaming the ledger.
    if (err instanceof MkpiError && err.code === 'MKPI_CONFIG') await r.opts.lake.list(r.opts.layout.streams, [r.opts.layout.archive]);
    throw err;
  }
});

const ledgerStep = step('list', async (r) => {
  const warehouse = warehouseOf(r);
  const all = !r.report.dryRun || (await warehouse.isInitialised()) ? await warehouse.readLedger() : [];
  r.retractedEntries = all.filter((e) => e.retractedAt);
  const ledger = all.filter((e) => !e.retractedAt);
  r.repair = repairTwins(ledger, r.kpis, r.warn);
  r.ledger = r.repair.ledger;
});

const planStep = step('list', async (r) => {
  const { lake, layout, signal } = r.opts;
  r.emit({ type: 'stage', stage: 'list', message: `listing ${lake.root}/${layout.streams}` });
  const listing = await r.timer.stage('list', () => listStreamFiles(lake, layout));
  r.report.ignored = listing.ignored;
  if (listing.ignored.length > 0) {
    const shown = listing.ignored.slice(0, 5).join(', ') + (listing.ignored.length > 5 ? `, … (${listing.ignored.length - 5} more)` : '');
    r.warn(`${listing.ignored.length} object(s) under ${layout.streams} are not stream files and were ignored: ${shown}`);
  }
  await r.opts.fault?.('after-list');
  checkAborted(signal);
  if (r.ledger === undefined) {
    r.plan = { pending: listing.files.map((obj): PendingFile => ({ obj, entry: undefined, missing: r.kpis })), alreadyLoaded: [] };
    return;
  }
  const plan = await planPending(listing.files, new FileMatcher(lake, layout, [...r.ledger, ...r.retractedEntries], signal), r.kpis);
  // A copy of a retracted file (the same key and bytes) stays out: retracting it meant it.
  const retracted = (e: LedgerEntry | undefined) => Boolean(e?.retractedAt);
  for (const p of [...plan.pending, ...plan.alreadyLoaded]) {
    if (!retracted(p.entry)) continue;
    r.report.skippedRetracted.push(p.obj.key);
    r.warn(`${p.obj.key} is a retracted file (the same bytes); it is not loaded again. Remove it, or deliver a corrected file`);
  }
  r.plan = {
    pending: plan.pending.filter((p) => !retracted(p.entry)),
    alreadyLoaded: plan.alreadyLoaded.filter((p) => !retracted(p.entry)),
  };
});

const dimensionsStep = step('dimensions', async (r) => {
  const { lake, layout, signal } = r.opts;
  if (r.opts.rejectsKey) r.rejects = new RejectSink();
  r.emit({ type: 'stage', stage: 'dimensions', message: 'loading songs and users' });
  const dateState = r.opts.dateState;
  const { dims, songs, users, files } = await r.timer.stage('dimensions', () =>
    loadDimensionsCached(
      lake,
      { songs: layout.songs, users: layout.users },
      { signal, rejects: r.rejects, cache: r.opts.dimensionCache, identify: dateState !== undefined },
    ),
  );
  r.report.dimensions = { songs, users };
  if (dateState !== undefined && files !== undefined) r.dimensionsKey = dimensionsKey({ version: dateState.version, ...files });
  warnDimensions(r, songs, users);
  r.dims = dims;
  r.state = create(dims.trackCount, dims.userCount);
  // Always one: without a budget it never spills, and only keeps the dates' states to save.
  const parent = r.opts.memoryBudget?.dir ?? tmpdir();
  const dir = join(parent, SPILL_FOLDER_PREFIX + randomBytes(8).toString('hex'));
  if (r.opts.memoryBudget) await sweepStaleSpills(parent);
  const spill = new StateSpill({ dir, budgetBytes: budgetOf(r) });
  r.spill = spill;
  r.cleanups.push(async () => {
    spill.close();
    await rm(dir, { recursive: true, force: true });
  });
});

const scanStep = step('streams', async (r) => {
  const plan = r.plan!;
  r.scans = await r.timer.stage('streams', () => scanPending(r, plan.pending));
  for (const p of plan.alreadyLoaded) {
    r.report.files.push({
      name: p.obj.key,
      bytes: p.obj.size,
      rows: p.entry.rows,
      complete: 0,
      rejected: zeroReasons(),
      dates: p.entry.dates,
      status: 'already_loaded',
    });
  }
  await r.opts.fault?.('after-scan');
});

/** Published before the gates, so that a run the circuit breaker stops still shows why. */
const rejectsStep = step('rejects', async (r) => {
  const { rejectsKey, signal } = r.opts;
  if (!r.rejects || !rejectsKey) return;
  const target = r.opts.rejectsLake ?? r.opts.lake;
  if (await r.rejects.publish(target, rejectsKey, signal)) {
    r.report.rejectsOutput = r.opts.rejectsLake ? joinRoot(target.root, rejectsKey) : rejectsKey;
  }
  const prune = r.opts.pruneRejects;
  if (prune) {
    const removed = await pruneRejectFolders(r.opts.lake, prune.prefix, prune.keep, signal).catch((err: unknown) => {
      r.warn(`could not prune old rejects under ${prune.prefix}: ${toMkpiError(err).message}`);
      return 0;
    });
    if (removed > 0) r.emit({ type: 'info', message: `removed ${removed} old rejects folder(s) under ${prune.prefix}` });
  }
});

/** The circuit breaker (docs/contract.md#thresholds): schema errors, then bad rows and orphans over their thresholds. */
const gateStep = step('validate', (r) => {
  const schemaErrors = r.scans.filter((s) => s.schemaError);
  if (schemaErrors.length > 0) {
    const first = schemaErrors[0].schemaError!;
    throw new MkpiError(
      'MKPI_SCHEMA',
      schemaErrors.length === 1 ? first.message : `${schemaErrors.length} stream files fail schema validation; first: ${first.message}`,
      { hint: first.hint, details: { files: schemaErrors.map((s) => s.key) } },
    );
  }
  gate(r.opts, r.report, r.warn);
  checkExpectedDates(r);
});

/** --expect-dates: new files carrying listen dates outside the expected window. */
function checkExpectedDates(r: Run): void {
  const expect = r.opts.expectDates;
  if (!expect) return;
  const allowed = new Set(expect.dates);
  for (const s of r.scans) {
    const outside = [...s.days]
      .map(dayToDate)
      .filter((d) => !allowed.has(d))
      .sort();
    if (outside.length > 0) r.report.unexpectedDates.push({ file: s.key, dates: outside });
  }
  if (r.report.unexpectedDates.length === 0) return;
  const first = r.report.unexpectedDates[0];
  const summary = `${r.report.unexpectedDates.length} new file(s) carry listen dates outside --expect-dates ${expect.text}; first: ${first.file} (${first.dates.slice(0, 3).join(', ')}${first.dates.length > 3 ? ', …' : ''})`;
  if (expect.strict) {
    throw new MkpiError('MKPI_UNEXPECTED_DATES', summary, {
      hint: 'nothing was loaded; check the delivery, widen --expect-dates, or drop --strict-dates to load with a warning',
      details: { files: r.report.unexpectedDates },
    });
  }
  r.warn(summary);
}

/** Dates to recompute, per table, and the loaded files that carry them (late files, docs/contract.md#late). */
const lateDatesStep = step('reread', async (r) => {
  addDatesToRecompute(r);
  await rereadDates(r, r.plan!.pending);
});

/**
 * After the commit, each recomputed date's state is saved for later runs (date-state.ts). It
 * never fails a run: a state that could not be written costs a later run a re-read, no more.
 */
const saveDateStateStep = step('state', async (r) => {
  const store = r.opts.dateState;
  const saved = r.report.dateState;
  if (!store || !saved || r.dimensionsKey === undefined || r.report.dryRun || !r.report.loaded || !r.spill) return;
  for (const date of r.spill.keptNames().sort()) {
    const bytes = r.spill.kept(date)!;
    try {
      await writeDateState(store, date, bytes, r.opts.signal);
    } catch (err) {
      checkAborted(r.opts.signal);
      r.warn(`could not save the state of ${date} for later runs (${toMkpiError(err).message}); a later late file re-reads its files`);
      return;
    }
    saved.saved.push(date);
    if (saved.saved.length === 1) await r.opts.fault?.('mid-state');
  }
});

const computeStep = step('compute', async (r) => {
  r.emit({ type: 'stage', stage: 'compute', message: 'computing KPIs' });
  const allDates = new Set([...r.byTable.hourly, ...r.byTable.genre]);
  const days = [...new Set([...allDates].map(dateToDay))].sort((a, b) => a - b);
  r.result = await r.timer.stage('compute', () => Promise.resolve(computeByDay(r, days)));
  for (const t of KPI_TABLES) r.report.datesRecomputed[t] = [...r.byTable[t]].sort();
});

/**
 * The KPIs one date at a time: the date's whole state (its hours in memory and its spilled
 * parts), its rows, and, where dates' states are saved, its state encoded to save after the
 * commit. One date's state at a time is all a budgeted run holds here.
 */
function computeByDay(r: Run, days: number[]): KpiResult {
  const out: KpiResult = { hourly: [], genre: [], days: [] };
  const spill = r.spill!;
  const save = r.opts.dateState !== undefined && r.dimensionsKey !== undefined && !r.report.dryRun ? r.dateFiles : undefined;
  for (const day of days) {
    const one = spill.takeDay(r.state!, day);
    const res = result(one, r.dims!, { days: new Set([day]) });
    out.hourly.push(...res.hourly);
    out.genre.push(...res.genre);
    out.days.push(...res.days);
    const files = save?.get(dayToDate(day));
    // A date no loaded file carries (a window date without rows) has nothing to save.
    if (files && files.size > 0) spill.keep(dayToDate(day), encodeDateState(one, day, { dimensions: r.dimensionsKey!, files }));
  }
  r.report.spilledBytes = spill.bytes;
  return out;
}

/** The budget each reader gets when `readers` share it (Infinity without one). */
function budgetOf(r: Run, readers = 1): number {
  const bytes = r.opts.memoryBudget?.bytes;
  return bytes === undefined ? Infinity : Math.max(1, Math.floor(bytes / readers));
}

const loadStep = step('load', async (r) => {
  const { opts, report, plan } = r;
  const batch = buildBatch(opts.runId, r.kpis, r.byTable, r.result!, plan!.pending, new Map(r.scans.map((s) => [s.key, s])));
  if (r.repair.retire.length > 0) {
    batch.retire = r.repair.retire.map((e) => ({ fileKey: e.fileKey, fingerprint: e.fingerprint }));
    batch.ledger.push(...r.repair.keepers);
    report.ledgerRepaired = r.repair.retire.map((e) => e.fileKey);
  }
  report.rowsWritten.hourly_kpis = batch.hourly?.rows.length ?? 0;
  report.rowsWritten.genre_level_kpis = batch.genre?.rows.length ?? 0;
  const asked = (opts.window?.length ?? 0) > 0;
  if (report.dryRun || (plan!.pending.length === 0 && r.repair.retire.length === 0 && !asked)) return;
  await commitLoad(r, batch);
});

const archiveStep = step('archive', async (r) => {
  const { opts, report, timer, emit } = r;
  const warehouse = warehouseOf(r);
  if (report.dryRun) return;
  if (!(await warehouse.isInitialised())) return;
  emit({ type: 'stage', stage: 'archive', message: 'archiving loaded stream files' });
  await timer.stage('archive', () =>
    archiveLoaded(opts.lake, warehouse, opts.layout, {
      fault: opts.fault,
      signal: opts.signal,
      onSkip: (key, reason) => r.warn(`${key} not archived: ${reason}`),
      onFile: (f) => {
        report.archived.push(f);
        if (f.renamed) r.warn(`${f.from}: an archived file of that name already exists with other content; kept as ${f.to}`);
      },
    }),
  );
});

/** `archive` alone: its own claim only when the schema exists (archive never creates one). */
const archiveClaimStep = step('claim', async (r) => {
  if (r.report.dryRun || !(await warehouseOf(r).isInitialised())) return;
  await claimStep.run(r);
});

/** `retract`: which loaded files go, and the dates (per table) to recompute without them. */
const retractPlanStep = step('retract', (r) => {
  const keys = r.opts.retract ?? [];
  if (keys.length === 0) throw new MkpiError('MKPI_USAGE', 'retract needs the key of at least one loaded file');
  const ledger = r.ledger ?? [];
  for (const key of keys) {
    const found = ledger.filter((e) => e.fileKey === key || e.archivedKey === key);
    if (found.length === 0) {
      const done = r.retractedEntries.filter((e) => e.fileKey === key || e.archivedKey === key);
      if (done.length > 0) {
        r.warn(`${key} was retracted already`);
        r.retracting.push(...done.filter((e) => !r.retracting.includes(e)));
        continue;
      }
      throw new MkpiError('MKPI_NO_INPUT', `${key} is not a loaded file`, {
        hint: 'give the key the file was loaded under (streams/…) or archived under; `musickpi status` lists them',
      });
    }
    for (const e of found) if (!r.retracting.includes(e)) r.retracting.push(e);
  }
  const gone = new Set(r.retracting);
  r.ledger = ledger.filter((e) => !gone.has(e));
  for (const e of r.retracting) if (!e.retractedAt) for (const t of e.tables) for (const d of e.dates) r.byTable[t].add(d);
  // Only the tables that held a retracted file are written.
  r.kpis = KPI_TABLES.filter((t) => r.byTable[t].size > 0);
  r.report.kpis = r.kpis;
});

const retractRereadStep = step('reread', (r) => rereadDates(r, []));

const retractLoadStep = step('load', async (r) => {
  const { opts, report } = r;
  const batch = buildBatch(opts.runId, r.kpis, r.byTable, r.result!, [], new Map());
  batch.retract = r.retracting.filter((e) => !e.retractedAt).map((e) => ({ fileKey: e.fileKey, fingerprint: e.fingerprint }));
  report.rowsWritten.hourly_kpis = batch.hourly?.rows.length ?? 0;
  report.rowsWritten.genre_level_kpis = batch.genre?.rows.length ?? 0;
  if (report.dryRun || batch.retract.length === 0) return;
  await commitLoad(r, batch);
});

/**
 * Retracted files move out of streams/ and the archive, to the retracted prefix. After the
 * commit: a file that could not move stays where it is, and the ledger keeps it out anyway.
 */
const moveRetractedStep = step('retract', async (r) => {
  const { lake, layout, signal } = r.opts;
  for (const e of r.retracting) {
    const obj = await locate(lake, layout, e, signal).catch(() => undefined);
    if (!obj) {
      r.report.retracted.push({ file: e.fileKey, from: null, to: null });
      if (!r.report.dryRun) r.warn(`${e.fileKey}: retracted in the warehouse; its file is no longer in the lake`);
      continue;
    }
    if (obj.key.startsWith(layout.retracted)) {
      r.report.retracted.push({ file: e.fileKey, from: obj.key, to: obj.key });
      continue;
    }
    const rel = e.fileKey.startsWith(layout.streams) ? e.fileKey.slice(layout.streams.length) : e.fileKey;
    const to = layout.retracted + rel;
    if (r.report.dryRun) {
      r.report.retracted.push({ file: e.fileKey, from: obj.key, to });
      continue;
    }
    let outcome = await lake.moveNoOverwrite(obj.key, to, { expectFingerprint: obj.fingerprint });
    let dest = to;
    if (outcome === 'exists') {
      dest = `${to}~${e.fingerprint.replace(/[^A-Za-z0-9]/g, '').slice(0, 12)}`;
      outcome = await lake.moveNoOverwrite(obj.key, dest, { expectFingerprint: obj.fingerprint });
    }
    if (outcome === 'moved') r.report.retracted.push({ file: e.fileKey, from: obj.key, to: dest });
    else {
      r.report.retracted.push({ file: e.fileKey, from: obj.key, to: null });
      r.warn(`${obj.key}: retracted in the warehouse but not moved (${outcome}); it is never loaded again either way`);
    }
  }
});

const COMPUTE_STEPS = [
  lockStep,
  claimStep,
  ledgerStep,
  planStep,
  dimensionsStep,
  scanStep,
  rejectsStep,
  gateStep,
  lateDatesStep,
  computeStep,
  loadStep,
  saveDateStateStep,
];

/** The warehouse engine's commands (docs/scale.md), on the steps both engines share. */
const ENGINE_STEPS = warehouseEngineSteps({
  lock: lockStep,
  claim: claimStep,
  ledger: ledgerStep,
  list: planStep,
  rejects: rejectsStep,
  gate: gateStep,
  archive: archiveStep,
});

/** The steps each command is made of, in order (the streaming engine's, for run and compute). */
export const COMMAND_STEPS: Record<Command, readonly Step[]> = {
  validate: [planStep, dimensionsStep, scanStep, rejectsStep, gateStep],
  compute: COMPUTE_STEPS,
  run: [...COMPUTE_STEPS, archiveStep],
  archive: [lockStep, archiveClaimStep, archiveStep],
  retract: [
    lockStep,
    claimStep,
    ledgerStep,
    retractPlanStep,
    dimensionsStep,
    retractRereadStep,
    computeStep,
    retractLoadStep,
    saveDateStateStep,
    moveRetractedStep,
  ],
  plan: ENGINE_STEPS.plan,
  normalize: ENGINE_STEPS.normalize,
};

export async function runPipeline(opts: PipelineOptions): Promise<RunReport> {
  const kpis = opts.kpis ?? [...KPI_TABLES];
  const report = newReport(opts.command, opts.runId, opts.lake.root, kpis, opts.dryRun ?? false);
  report.warehouse = opts.warehouse?.description ?? null;
  const emit = (e: PipelineEvent) => opts.onEvent?.(e);
  const r: Run = {
    opts,
    kpis,
    report,
    timer: new Timer(report),
    emit,
    warn: (message: string) => {
      report.warnings.push(message);
      emit({ type: 'warn', message });
    },
    step: 'start',
    retractedEntries: [],
    retracting: [],
    repair: { ledger: [], retire: [], keepers: [] },
    scans: [],
    byTable: { hourly: new Set(), genre: new Set() },
    cleanups: [],
  };
  try {
    if (opts.command !== 'validate' && opts.command !== 'normalize' && !opts.warehouse) {
      throw new MkpiError('MKPI_INTERNAL', `${opts.command} needs a warehouse`);
    }
    const warehouseEngine = opts.engine !== undefined && (opts.command === 'run' || opts.command === 'compute');
    for (const s of warehouseEngine ? ENGINE_STEPS[opts.command as 'run' | 'compute'] : COMMAND_STEPS[opts.command]) {
      r.step = s.name;
      await s.run(r);
    }
    report.ok = true;
  } catch (err) {
    setError(report, asPipelineError(err, opts.signal), r.step);
  } finally {
    r.rejects?.dispose();
    for (const cleanup of r.cleanups) await cleanup().catch(() => undefined);
    if (r.lock) await r.lock.release().catch(() => undefined);
    r.timer.done();
  }
  return report;
}

/** The one load transaction; interruptions are honoured up to the commit, never after. */
async function commitLoad(r: Run, batch: Omit<LoadBatch, 'onStep'>): Promise<void> {
  const { opts } = r;
  checkAborted(opts.signal);
  const warehouse = warehouseOf(r);
  r.emit({ type: 'stage', stage: 'load', message: `loading into ${warehouse.description}` });
  await r.timer.stage('load', () =>
    warehouse.load({
      ...batch,
      onStep: async (s) => {
        await opts.fault?.(s === 'committed' ? 'after-commit' : s);
        if (s !== 'committed') checkAborted(opts.signal);
      },
    }),
  );
  r.report.loaded = true;
}

/**
 * Puts back into the state the rows of the loaded files (other than `exclude`, which are being
 * read now) that carry a date being recomputed: from the date's saved state where it holds
 * (date-state.ts), else by re-reading those files, each for the dates it still owes.
 */
async function rereadDates(r: Run, exclude: PendingFile[]): Promise<void> {
  const allDates = new Set([...r.byTable.hourly, ...r.byTable.genre]);
  const reread = filesToReread(r.ledger ?? [], exclude, allDates);
  // Per date, the files whose rows of it the state holds: the new files first.
  const held = new Map<string, Set<string>>([...allDates].map((d) => [d, new Set<string>()]));
  const scanByKey = new Map(r.scans.map((s) => [s.key, s]));
  for (const p of exclude) {
    const scan = scanByKey.get(p.obj.key);
    for (const d of scan?.days ?? []) held.get(dayToDate(d))?.add(ledgerIdentity(p));
  }
  const owed = new Map(reread.map((e) => [e, new Set(e.dates.filter((d) => allDates.has(d)))]));
  if (r.opts.dateState && r.dimensionsKey !== undefined) {
    r.report.dateState = { restored: [], saved: [] };
    await restoreDates(r, reread, owed, held);
  }
  r.dateFiles = held;
  const todo = reread.filter((e) => owed.get(e)!.size > 0);
  if (todo.length === 0) return;
  r.emit({ type: 'stage', stage: 'reread', message: `re-reading ${todo.length} loaded file(s) for late dates` });
  await r.timer.stage('reread', async () => {
    for (const entry of todo) {
      const days = owed.get(entry)!;
      const obj = await locate(r.opts.lake, r.opts.layout, entry, r.opts.signal);
      const dayFilter = new Set([...days].map(dateToDay));
      const scan = await scanStreamFile(r.opts.lake, obj, r.dims!, r.state!, {
        signal: r.opts.signal,
        dayFilter,
        checkpoint: () => r.spill!.check(r.state!),
      });
      if (scan.schemaError) throw scan.schemaError;
      r.spill!.check(r.state!);
      r.report.reread.push({ name: obj.key, bytes: scan.bytes, rows: scan.rows, rowsUsed: scan.reduced });
      for (const d of days) held.get(d)!.add(identity(entry.fileKey, entry.fingerprint));
    }
  });
}

/**
 * The late dates whose saved state holds only files still counted for them: their counts go
 * into the state, and those files owe the date nothing more. Window dates (--date, --start,
 * --end) are recomputed from the files themselves, as asked.
 */
async function restoreDates(
  r: Run,
  reread: LedgerEntry[],
  owed: Map<LedgerEntry, Set<string>>,
  held: Map<string, Set<string>>,
): Promise<void> {
  const store = r.opts.dateState!;
  const window = new Set(r.opts.window ?? []);
  const wanted = [...held.keys()].filter((d) => !window.has(d) && reread.some((e) => owed.get(e)!.has(d))).sort();
  if (wanted.length === 0) return;
  await r.timer.stage('reread', async () => {
    const listing = await listDateStates(store).catch((err: unknown) => {
      checkAborted(r.opts.signal);
      r.warn(`could not list the saved date states (${toMkpiError(err).message}); late dates are re-read from their files`);
      return new Map<string, never>();
    });
    const state = r.state!;
    for (const date of wanted) {
      const obj = listing.get(date);
      if (obj === undefined) continue;
      const bytes = await readDateStateBytes(store, obj, r.opts.signal);
      const saved =
        bytes && decodeDateState(bytes, { dimensions: r.dimensionsKey!, trackCount: state.trackCount, userCount: state.userCount });
      if (!saved || saved.date !== date) continue;
      const counted = new Map(reread.filter((e) => owed.get(e)!.has(date)).map((e) => [identity(e.fileKey, e.fingerprint), e] as const));
      if (!saved.files.every((f) => counted.has(f))) continue;
      restoreDateState(state, saved);
      r.spill!.check(state);
      for (const f of saved.files) {
        owed.get(counted.get(f)!)!.delete(date);
        held.get(date)!.add(f);
      }
      r.report.dateState!.restored.push(date);
    }
  });
}

async function scanPending(r: Run, pending: PendingFile[]): Promise<StreamScan[]> {
  const { opts, report, emit, rejects } = r;
  const dims = r.dims!;
  const state = r.state!;
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
    recordScan(r, scan);
  };
  const files = pending.map((p) => p.obj);
  const workers = plannedWorkers(opts.parallel, files);
  const spill = r.spill!;
  let scans: StreamScan[];
  if (workers > 0) {
    const lake = opts.parallel!.lake!;
    const mainReads = opts.parallel!.mainReads ?? DEFAULT_MAIN_READS;
    const local = mainReads ? opts.lake : undefined;
    // The readers share the budget: each worker, and this thread when it reads too.
    const share = budgetOf(r, workers + (mainReads ? 1 : 0));
    spill.setBudget(share);
    try {
      scans = await scanFilesParallel(files, dims, state, {
        lake,
        workers,
        local,
        signal: opts.signal,
        rejects,
        onRows,
        onScan: record,
        ...(share !== Infinity ? { spill } : {}),
      });
    } finally {
      spill.setBudget(budgetOf(r));
    }
    spill.check(state);
  } else {
    scans = [];
    for (const obj of files) {
      const scan = await scanStreamFile(opts.lake, obj, dims, state, {
        signal: opts.signal,
        rejects,
        onRows,
        checkpoint: () => spill.check(state),
      });
      spill.check(state);
      scans.push(scan);
      record(scan);
    }
  }
  emit({ type: 'progress', rows, files: pending.length, totalFiles: pending.length });
  addRowTotals(report);
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
