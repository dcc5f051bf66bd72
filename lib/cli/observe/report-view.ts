// What observers read of a command's result: the RunReport of the pipeline commands, checked
// before use (a result is `unknown` to observers: a failure before the body may give another shape).

import type { RunReport } from '../../pipeline/report.js';
import type { CommandName } from '../config.js';

export const PIPELINE_COMMANDS: readonly CommandName[] = ['run', 'compute', 'validate', 'archive', 'retract'];

export function isPipelineCommand(command: CommandName): boolean {
  return PIPELINE_COMMANDS.includes(command);
}

export function asRunReport(result: unknown): RunReport | undefined {
  if (typeof result !== 'object' || result === null) return undefined;
  const r = result as Partial<RunReport>;
  const ok =
    Array.isArray(r.files) &&
    typeof r.totals === 'object' &&
    r.totals !== null &&
    typeof r.rowsWritten === 'object' &&
    r.rowsWritten !== null &&
    typeof r.dimensions === 'object' &&
    r.dimensions !== null;
  return ok ? (result as RunReport) : undefined;
}

/** Data files of the run's input: the stream files it read as new input, then those re-read for late dates. */
export function streamFilesRead(report: RunReport): { name: string; bytes: number; rows: number; reread: boolean }[] {
  const read = report.files
    .filter((f) => f.status !== 'already_loaded')
    .map((f) => ({ name: f.name, bytes: f.bytes, rows: f.rows, reread: false }));
  const seen = new Set(read.map((f) => f.name));
  const reread = (report.reread ?? []).filter((f) => !seen.has(f.name)).map((f) => ({ ...f, reread: true }));
  return [...read, ...reread];
}
