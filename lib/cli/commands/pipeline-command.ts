// The body shared by run / validate / compute / archive: pipeline options from the resolved
// configuration, the library run, and its report as the outcome (JSON and summary).

import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { availableParallelism, tmpdir } from 'node:os';
import { REOPEN_MODULE } from '../../adapters/lake/reopen.js';
import { openLake } from '../../adapters/lake/open.js';
import { LocalLake } from '../../adapters/lake/local.js';
import { runPipeline, type EngineOptions } from '../../pipeline/pipeline.js';
import { newReport, setError, type Command, type RunReport } from '../../pipeline/report.js';
import type { Lake } from '../../domain/lake.js';
import type { RunRecord, Warehouse } from '../../domain/warehouse.js';
import { DATE_STATE_PREFIX, normalisePrefix } from '../../domain/layout.js';
import { KPI_TABLES } from '../../domain/kpi.js';
import { required, type Config, type ObserveConfig } from '../config.js';
import type { Runtime } from '../runtime.js';
import { commandModule, type CommandOutcome, type ErrorShape } from '../execute.js';
import { summary } from '../output.js';
import { redact, toMkpiError } from '../../domain/errors.js';
import { exitCodeFor } from '../exit-codes.js';
import { musickpiVersion } from '../observe/producer.js';

/** Rejects of a run under this prefix, one folder per run id, pruned to --keep-rejects. */
export const REJECTS_PREFIX = 'rejects/';

interface RejectsPlan {
  lake?: Lake;
  key: string;
  prune?: { prefix: string; keep: number };
}

/**
 * Where this run's rejects CSV goes. An s3:// or file:// URI, or an absolute path, is taken as
 * it is; a relative path is a folder in the lake. Without --rejects, a loading run writes
 * rejects/<run id>/ in the lake, and a run that must not write to the lake (validate, a dry run)
 * a folder under the system's temp folder, printed in the report.
 */
function rejectsPlan(config: Readonly<Config>, runId: string, writesLake: boolean): RejectsPlan {
  const r = required(config.rejects, 'rejects');
  const target = r.target;
  if (target === undefined) {
    if (!writesLake) return { lake: new LocalLake(tmpdir()), key: `musickpi-rejects-${runId}/rejects.csv` };
    return { key: `${REJECTS_PREFIX}${runId}/rejects.csv`, prune: r.keep > 0 ? { prefix: REJECTS_PREFIX, keep: r.keep } : undefined };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target) || isAbsolute(target)) {
    return { lake: openLake(target, required(config.lake, 'lake').s3), key: 'rejects.csv' };
  }
  return { key: `${normalisePrefix(target)}rejects.csv` };
}

export async function pipelineCommand(command: Command, rt: Runtime): Promise<CommandOutcome> {
  const startedAt = new Date();
  const config = rt.config;
  const lakeConfig = required(config.lake, 'lake');
  const compute = config.compute;
  const runId = rt.runId;
  const kpis = compute?.kpis ?? [...KPI_TABLES];
  const dryRun = compute?.dryRun ?? false;
  const lake = rt.lake();
  let warehouse;
  try {
    warehouse = command === 'validate' || command === 'normalize' ? undefined : await rt.warehouse();
  } catch (err) {
    // Still one run report, so scripts parse failures the same way.
    const e = toMkpiError(err);
    const report = newReport(command, runId, lake.root, kpis, dryRun);
    setError(report, e, 'connect');
    report.history = `not recorded: the warehouse could not be opened (${e.code})`;
    return outcome(report);
  }
  const engine = engineOptions(rt, command);
  const rejects = config.rejects ? rejectsPlan(config, runId, (command === 'run' || command === 'compute') && !dryRun) : undefined;
  const report = await runPipeline({
    command,
    lake,
    layout: lakeConfig.layout,
    warehouse,
    kpis,
    dryRun,
    adoptLake: config.warehouse?.adoptLake ?? false,
    ...(command === 'retract' ? { retract: [...config.positional] } : {}),
    ...(config.window ? { window: config.window.dates } : {}),
    ...(config.expectDates ? { expectDates: config.expectDates } : {}),
    maxBadRows: compute?.maxBadRows ?? 0,
    maxOrphanRows: compute?.maxOrphanRows ?? Infinity,
    rejectsKey: rejects?.key ?? null,
    rejectsLake: rejects?.lake,
    pruneRejects: rejects?.prune,
    runId,
    signal: rt.signal,
    onEvent: (e) => rt.progress.event(e),
    fault: rt.fault,
    // Worker threads reopen the lake themselves: the same URI and S3 options as rt.lake().
    parallel: {
      lake: { module: REOPEN_MODULE, uri: lakeConfig.uri, s3: lakeConfig.s3 },
      ...(compute?.workers !== undefined ? { workers: compute.workers } : {}),
    },
    ...(engine ? { engine } : {}),
    ...(config.cache?.dir !== undefined ? { dimensionCache: { dir: config.cache.dir, version: musickpiVersion() } } : {}),
    ...(config.dateState ? { dateState: { lake, prefix: DATE_STATE_PREFIX, version: musickpiVersion() } } : {}),
    ...(compute ? { memoryBudget: { bytes: compute.memoryBudgetBytes } } : {}),
  });
  rt.progress.stop();
  if (warehouse) await recordHistory(rt, warehouse, report, startedAt);
  else report.history = `not recorded: ${command} opens no warehouse`;
  return outcome(report);
}

/**
 * The warehouse engine's options (docs/scale.md), for `plan`, `normalize`, and run/compute with
 * --engine warehouse: the staging lake, and how worker threads reopen it.
 */
function engineOptions(rt: Runtime, command: Command): EngineOptions | undefined {
  const e = rt.config.engine;
  if (!e || (e.engine === 'stream' && (command === 'run' || command === 'compute'))) return undefined;
  const s3 = rt.config.lake?.s3 ?? {};
  // A dry run that plans for itself keeps its scratch out of the lake, where a folder will do
  // (PostgreSQL reads the parts through this process; Redshift's COPY needs them on S3).
  const redshift = /^redshift(\+iam)?:/i.test(rt.config.warehouse?.url ?? '');
  let uri = e.staging;
  if (rt.config.compute?.dryRun && e.planId === undefined && !e.stagingGiven && !redshift) {
    uri = mkdtempSync(join(tmpdir(), 'musickpi-staging-'));
    rt.onClose(() => rm(uri, { recursive: true, force: true }));
  }
  const staging = openLake(uri, s3);
  rt.onClose(() => staging.close());
  // A run that plans for itself makes one shard per worker thread (at least one).
  const workers = rt.config.compute?.workers ?? Math.min(2, availableParallelism());
  return {
    staging,
    stagingSpec: { module: REOPEN_MODULE, uri, s3 },
    ...(e.planId !== undefined ? { planId: e.planId } : {}),
    shards: e.shards ?? (command === 'plan' ? 1 : Math.max(1, workers)),
    ...(e.shard ? { shard: e.shard } : {}),
    ...(e.partBytes !== undefined ? { partBytes: e.partBytes } : {}),
  };
}

/** What musickpi_runs keeps of a finished run. */
export function runRecordOf(
  report: RunReport,
  at: { startedAt: Date; finishedAt: Date; exitCode: number; version: string; airflow: ObserveConfig['airflow'] },
): RunRecord {
  const tryNumber = at.airflow?.tryNumber;
  return {
    runId: report.runId,
    command: report.command,
    startedAt: at.startedAt.toISOString(),
    finishedAt: at.finishedAt.toISOString(),
    status: at.exitCode === 0 ? 'ok' : 'failed',
    exitCode: at.exitCode,
    errorCode: report.error?.code ?? null,
    errorMessage: report.error ? redact(report.error.message) : null,
    errorStage: report.error?.stage ?? null,
    dryRun: report.dryRun,
    lake: report.lake,
    rowsRead: report.totals.rowsRead,
    completeRows: report.totals.completeRows,
    rejects: { ...report.totals.rejected },
    hourlyRowsWritten: report.rowsWritten.hourly_kpis,
    genreRowsWritten: report.rowsWritten.genre_level_kpis,
    datesRecomputed: { hourly: [...report.datesRecomputed.hourly], genre: [...report.datesRecomputed.genre] },
    filesLoaded: report.loaded ? report.files.filter((f) => f.status === 'read').length : 0,
    filesArchived: report.archived.length,
    timings: { ...report.timings },
    version: at.version,
    airflowDagId: at.airflow?.dagId ?? null,
    airflowTaskId: at.airflow?.taskId ?? null,
    airflowRunId: at.airflow?.dagRunId ?? null,
    airflowTryNumber: tryNumber !== undefined && /^\d{1,9}$/.test(tryNumber) ? Number(tryNumber) : null,
  };
}

/**
 * Adds the finished run to the history, after the pipeline and so after any load committed or
 * rolled back: a failure here can change neither what was loaded nor the exit status; it is a
 * warning. A dry run creates nothing, so it is recorded only where the schema already exists.
 */
export async function recordHistory(rt: Runtime, warehouse: Warehouse, report: RunReport, startedAt: Date): Promise<void> {
  try {
    if (report.dryRun && !(await warehouse.isInitialised())) {
      report.history = 'not recorded: the warehouse schema does not exist yet, and a dry run creates nothing';
      return;
    }
    const record = runRecordOf(report, {
      startedAt,
      finishedAt: new Date(),
      exitCode: exitCodeFor(report.error?.code, rt.interruptedBy()),
      version: musickpiVersion(),
      airflow: rt.config.observe.airflow,
    });
    await warehouse.recordRun(record);
    report.history = 'recorded';
  } catch (err) {
    const reason = redact(toMkpiError(err).message);
    report.history = `not recorded: ${reason}`;
    const warning = `this run is not in the run history: ${reason}`;
    report.warnings.push(warning);
    rt.progress.warn(warning);
  }
}

function outcome(report: ReturnType<typeof newReport>): CommandOutcome {
  return { json: report, text: summary(report), error: report.error ?? undefined };
}

/** A pipeline command that failed before its report existed still answers with a run report. */
export function failureReport(command: Command) {
  return (config: Readonly<Config> | undefined, error: ErrorShape, runId: string) => {
    const report = newReport(command, runId, config?.lake?.uri ?? '', config?.compute?.kpis ?? [...KPI_TABLES], false);
    report.error = error;
    return report;
  };
}

/** A yargs command module for one of the pipeline commands. */
export function pipelineModule(command: Command, describe: string, examples: [string, string][]) {
  return commandModule({
    command,
    describe,
    examples,
    run: (rt) => pipelineCommand(command, rt),
    failureJson: failureReport(command),
  });
}
