// The body shared by run / validate / compute / archive: pipeline options from the resolved
// configuration, the library run, and its report as the outcome (JSON and summary).

import { isAbsolute } from 'node:path';
import { tmpdir } from 'node:os';
import { REOPEN_MODULE } from '../../adapters/lake/reopen.js';
import { openLake } from '../../adapters/lake/open.js';
import { LocalLake } from '../../adapters/lake/local.js';
import { runPipeline } from '../../pipeline/pipeline.js';
import { newReport, setError, type Command } from '../../pipeline/report.js';
import type { Lake } from '../../domain/lake.js';
import { normalisePrefix } from '../../domain/layout.js';
import { KPI_TABLES } from '../../domain/kpi.js';
import { required, type Config } from '../config.js';
import type { Runtime } from '../runtime.js';
import { commandModule, type CommandOutcome, type ErrorShape } from '../execute.js';
import { summary } from '../output.js';
import { toMkpiError } from '../../domain/errors.js';

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
  const config = rt.config;
  const lakeConfig = required(config.lake, 'lake');
  const compute = config.compute;
  const runId = rt.runId;
  const kpis = compute?.kpis ?? [...KPI_TABLES];
  const dryRun = compute?.dryRun ?? false;
  const lake = rt.lake();
  let warehouse;
  try {
    warehouse = command === 'validate' ? undefined : await rt.warehouse();
  } catch (err) {
    // Still one run report, so scripts parse failures the same way.
    const e = toMkpiError(err);
    const report = newReport(command, runId, lake.root, kpis, dryRun);
    setError(report, e, 'connect');
    return outcome(report);
  }
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
  });
  rt.progress.stop();
  return outcome(report);
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
