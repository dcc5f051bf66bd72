// Observers see a command run start and finish, beside its stdout report: lineage events,
// metrics, CI summaries. An observer's failure is a warning, never the run's failure.

import type { Config } from '../config.js';
import type { ReportError } from '../../pipeline/report.js';

export interface RunStart {
  command: Config['command'];
  runId: string;
  startedAt: Date;
  config: Readonly<Config>;
}

export interface RunEnd extends RunStart {
  finishedAt: Date;
  exitCode: number;
  /** The command's --json result: a RunReport for run, compute, validate, archive and retract. */
  result: unknown;
  /** The failure, if the command failed. */
  error: ReportError | undefined;
}

export interface RunObserver {
  readonly name: string;
  start(e: RunStart): Promise<void>;
  finish(e: RunEnd): Promise<void>;
}
