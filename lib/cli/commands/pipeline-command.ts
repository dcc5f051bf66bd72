// The body shared by run / validate / compute / archive: build options, run the library,
// print the report (JSON or summary), return the outcome's error code.

import { REOPEN_MODULE } from '../../adapters/lake/reopen.js';
import { runPipeline } from '../../pipeline/pipeline.js';
import { newReport, newRunId, setError, type Command } from '../../pipeline/report.js';
import { MkpiError, redact, toMkpiError } from '../../domain/errors.js';
import {
  checkCount,
  layoutFrom,
  s3Options,
  parseKpis,
  rejectsKey,
  type ComputeArgs,
  type LakeArgs,
  type OutputArgs,
  type WarehouseArgs,
} from '../options.js';
import { printError, type Runtime } from '../runtime.js';
import type { Argv, CommandModule } from 'yargs';
import { execute } from '../execute.js';
import { summary } from '../output.js';

export type PipelineArgs = LakeArgs & WarehouseArgs & OutputArgs & Partial<ComputeArgs>;

export async function pipelineCommand(command: Command, args: PipelineArgs, rt: Runtime): Promise<string | undefined> {
  const runId = newRunId();
  const kpis = parseKpis(args.kpis ?? 'hourly,genre');
  checkCount('max-bad-rows', args['max-bad-rows']);
  checkCount('max-orphan-rows', args['max-orphan-rows']);
  const workers = args.workers === undefined ? undefined : checkWorkers(args.workers);
  const layout = layoutFrom(args);
  const dryRun = Boolean(args['dry-run']);
  // Rejects are written by loading commands, and by any command when --rejects names a folder.
  const writesRejects = args.rejects !== undefined || ((command === 'run' || command === 'compute') && !dryRun);
  const lake = rt.openLake(args);
  let warehouse;
  try {
    warehouse = command === 'validate' ? undefined : await rt.openWarehouse(args);
  } catch (err) {
    // Still one JSON report on stdout, so scripts parse failures the same way.
    const e = toMkpiError(err);
    const report = newReport(command, runId, lake.root, kpis, dryRun);
    setError(report, e);
    if (args.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    else printError(e, false, command);
    return e.code;
  }
  const report = await runPipeline({
    command,
    lake,
    layout,
    warehouse,
    kpis,
    dryRun,
    maxBadRows: args['max-bad-rows'] ?? 0,
    maxOrphanRows: args['max-orphan-rows'] ?? Infinity,
    rejectsKey: writesRejects ? rejectsKey(args, runId) : null,
    runId,
    signal: rt.signal,
    onEvent: (e) => rt.progress.event(e),
    fault: rt.fault,
    // Worker threads reopen the lake themselves: the same URI and S3 options as rt.openLake.
    parallel: {
      lake: {
        module: REOPEN_MODULE,
        uri: args.lake,
        s3: s3Options(args),
      },
      ...(workers !== undefined ? { workers } : {}),
    },
  });
  rt.progress.stop();
  if (args.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  else process.stdout.write(summary(report));
  if (report.error && !args.json) {
    process.stderr.write(`musickpi ${command}: ${report.error.code}: ${redact(report.error.message)}\n`);
  }
  return report.error?.code;
}

function checkWorkers(v: number): number {
  if (!(Number.isInteger(v) && v >= 0 && v <= 64)) {
    throw new MkpiError('MKPI_USAGE', '--workers must be a whole number from 0 to 64', {
      hint: '0 or 1: the main thread reads every stream file alone',
    });
  }
  return v;
}

/** A yargs command module for one of the pipeline commands. */
export function pipelineModule(
  command: Command,
  describe: string,
  builder: (y: Argv) => Argv<unknown>,
  examples: [string, string][],
): CommandModule<object, PipelineArgs> {
  return {
    command,
    describe,
    builder: (y: Argv) => {
      let b = builder(y);
      for (const [cmd, text] of examples) b = b.example(cmd, text);
      return b as unknown as Argv<PipelineArgs>;
    },
    handler: (args) => execute(args, command, (rt) => pipelineCommand(command, args, rt)),
  };
}
