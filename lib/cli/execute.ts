// How a command module runs: resolve the configuration (before any side effect), run the body
// inside the runtime, print its outcome, set the exit status. The one place an outcome becomes
// output and an exit status; every failure has the same shape (`error: {code, message, hint,
// stage}`), on stderr as one line and in --json as the last line of stdout.

import { writeFileSync } from 'node:fs';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { MkpiError, redact, toMkpiError } from '../domain/errors.js';
import { resolveConfig, type CommandName, type Config } from './config.js';
import { declareOptions } from './options.js';
import { exitCodeFor } from './exit-codes.js';
import { withRuntime, type Runtime } from './runtime.js';
import { runObservers } from './observe/index.js';
import type { RunEnd, RunObserver, RunStart } from './observe/observer.js';
import { newRunId, type ReportError } from '../pipeline/report.js';
import { writeErrorLine, writeWarningLine, type LogOptions } from './progress.js';

export type ErrorShape = ReportError;

export interface CommandOutcome {
  /** What --json prints (one line). A failed outcome's object carries `ok: false` and `error`. */
  json: unknown;
  /** What a person reads on stdout. */
  text: string;
  /** The failure, when the command ran but did not succeed (the run report's error). */
  error?: ErrorShape;
}

export interface CommandSpec {
  command: CommandName;
  /** yargs command string, with positionals ("query <sql>"). */
  usage?: string;
  describe: string;
  positionals?: (y: Argv) => Argv;
  positionalValues?: (argv: Record<string, unknown>) => string[];
  examples?: [string, string][];
  run: (rt: Runtime) => Promise<CommandOutcome>;
  /** The --json object of a failure before the body produced an outcome (default: errorJson). */
  failureJson?: (config: Readonly<Config> | undefined, error: ErrorShape, runId: string) => unknown;
}

export function errorShape(err: MkpiError, stage: string | null = null): ErrorShape {
  const s = typeof err.details?.stage === 'string' ? err.details.stage : stage;
  return { code: err.code, message: redact(err.message), hint: err.hint ? redact(err.hint) : null, stage: s };
}

export function errorJson(command: string, error: ErrorShape): unknown {
  return { command, ok: false, error };
}

/** Prints a failure: one line (and a hint) on stderr, then the JSON object as stdout's last line. */
export function printFailure(command: string, error: ErrorShape, json: unknown, cause?: unknown, log: LogOptions = {}): void {
  writeErrorLine(error, { ...log, command: command || undefined }, cause);
  if (json !== undefined) process.stdout.write(JSON.stringify(json) + '\n');
}

export function commandModule(spec: CommandSpec): CommandModule {
  return {
    command: spec.usage ?? spec.command,
    describe: spec.describe,
    builder: (y: Argv) => {
      let b = declareOptions(spec.positionals ? spec.positionals(y) : y, spec.command);
      for (const [cmd, text] of spec.examples ?? []) b = b.example(cmd, text);
      return b;
    },
    handler: (argv: ArgumentsCamelCase) => execute(spec, argv),
  };
}

async function execute(spec: CommandSpec, argv: Record<string, unknown>): Promise<void> {
  let config: Readonly<Config> | undefined;
  let observed: Observed | undefined;
  const runId = newRunId();
  // Until the configuration is resolved, --json is taken at its word (a usage error still prints JSON).
  let json = argv.json === true;
  // And so is --log-format (MUSICKPI_LOG_FORMAT needs the configuration).
  let log: LogOptions = { format: argv['log-format'] === 'json' ? 'json' : 'text', runId, command: spec.command };
  try {
    config = resolveConfig(spec.command, argv, {
      positional: spec.positionalValues?.(argv) ?? [],
      stderrIsTerminal: Boolean(process.stderr.isTTY) && (process.stderr.columns ?? 0) > 0,
    });
    json = config.output.json;
    log = { format: config.output.logFormat, color: config.output.color, runId, command: spec.command };
    observed = await startObservers(config, spec.command, runId, log);
    const { value, interrupted } = await withRuntime(config, runId, spec.run);
    const exitCode = exitCodeFor(value.error?.code, interrupted);
    await finishObservers(observed, exitCode, value.json, value.error, log);
    if (value.error) {
      writeErrorLine(value.error, log);
      if (!json) process.stdout.write(value.text);
    } else if (!json && !config.output.silent) {
      process.stdout.write(value.text);
    }
    if (config.output.reportFile) writeReport(config.output.reportFile, value.json, log);
    if (json) process.stdout.write(JSON.stringify(value.json) + '\n');
    process.exitCode = exitCode;
  } catch (err) {
    const e = toMkpiError(err);
    const shape = errorShape(e, config ? null : 'config');
    const failure = (spec.failureJson ?? ((_c, s) => errorJson(spec.command, s)))(config, shape, runId);
    if (observed) await finishObservers(observed, exitCodeFor(e.code, signalOf(e)), failure, shape, log);
    if (config?.output.reportFile) writeReport(config.output.reportFile, failure, log);
    printFailure(spec.command, shape, json ? failure : undefined, e.cause, log);
    process.exitCode = exitCodeFor(e.code, signalOf(e));
  }
}

interface Observed {
  start: RunStart;
  observers: RunObserver[];
}

/** Warnings of observers go to stderr once each, before the result (which must stay the last line). */
function observerWarn(log: LogOptions): (message: string) => void {
  const said = new Set<string>();
  return (message) => {
    if (said.has(message)) return;
    said.add(message);
    writeWarningLine(message, log);
  };
}

async function startObservers(config: Readonly<Config>, command: CommandName, runId: string, log: LogOptions): Promise<Observed> {
  const warn = observerWarn(log);
  const start: RunStart = { command, runId, startedAt: new Date(), config };
  const observers = runObservers(config, warn);
  for (const o of observers) await o.start(start).catch((err: unknown) => warn(`${o.name}: ${errorText(err)}`));
  return { start, observers };
}

async function finishObservers(
  observed: Observed,
  exitCode: number,
  result: unknown,
  error: ErrorShape | undefined,
  log: LogOptions,
): Promise<void> {
  const warn = observerWarn(log);
  const end: RunEnd = { ...observed.start, finishedAt: new Date(), exitCode, result, error };
  for (const o of observed.observers) await o.finish(end).catch((err: unknown) => warn(`${o.name}: ${errorText(err)}`));
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The --report-file copy; failing to write it is said, and never changes the outcome. */
function writeReport(path: string, report: unknown, log: LogOptions): void {
  try {
    writeFileSync(path, JSON.stringify(report, null, 2) + '\n');
  } catch (err) {
    writeWarningLine(`cannot write --report-file ${path}: ${err instanceof Error ? err.message : String(err)}`, log);
  }
}

function signalOf(e: MkpiError): NodeJS.Signals | undefined {
  const s = e.details?.signal;
  return s === 'SIGINT' || s === 'SIGTERM' ? s : undefined;
}
