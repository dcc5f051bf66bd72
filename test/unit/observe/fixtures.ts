// A configuration and a run report as the CLI would hand them to observers, for the unit tests.

import { resolveConfig, type CommandName, type Config } from '../../../lib/cli/config.js';
import type { RunEnd, RunStart } from '../../../lib/cli/observe/observer.js';
import { newReport, zeroReasons, type Command, type ReportError, type RunReport } from '../../../lib/pipeline/report.js';

export const RUN_ID = '20240602T030000Z-abc123';
export const STARTED = new Date('2024-06-02T03:00:00.000Z');
export const FINISHED = new Date('2024-06-02T03:00:12.500Z');

export function config(
  command: CommandName,
  env: Record<string, string | undefined>,
  argv: Record<string, unknown> = { lake: '/data/lake', warehouse: 'postgresql://etl:s3cret@db.example.com:5433/analytics' },
): Readonly<Config> {
  const takesWarehouse = command !== 'validate';
  const args = { ...argv };
  if (!takesWarehouse) delete args.warehouse;
  return resolveConfig(command, args, { env: { HOME: '/home/u', ...env }, cwd: '/work' });
}

export function report(command: Command = 'run', over: Partial<RunReport> = {}): RunReport {
  const r = newReport(command, RUN_ID, '/data/lake', ['hourly', 'genre'], false);
  r.ok = true;
  r.warehouse = 'postgresql://etl@db.example.com:5433/analytics';
  r.dimensions.songs = {
    file: 'songs.csv',
    bytes: 207,
    rows: 5,
    valid: 4,
    duplicates: 1,
    rejected: { malformed: 0, missing_track_id: 0, missing_track_genre: 0, bad_duration_ms: 0, value_too_long: 0 },
    duplicateHeaders: [],
  };
  r.dimensions.users = {
    file: 'users.csv',
    bytes: 64,
    rows: 4,
    valid: 4,
    duplicates: 0,
    rejected: { malformed: 0, missing_user_id: 0 },
    duplicateHeaders: [],
  };
  const b = zeroReasons();
  b.unknown_track = 1;
  b.malformed = 2;
  r.files = [
    { name: 'streams/a.csv', bytes: 192, rows: 6, complete: 6, rejected: zeroReasons(), dates: ['2024-06-01'], status: 'read' },
    { name: 'streams/b.csv', bytes: 113, rows: 6, complete: 3, rejected: b, dates: ['2024-06-02'], status: 'read' },
    { name: 'streams/old.csv', bytes: 90, rows: 3, complete: 3, rejected: zeroReasons(), dates: ['2024-05-31'], status: 'already_loaded' },
  ];
  r.reread = [{ name: 'streams/archived/late.csv', bytes: 50, rows: 2, rowsUsed: 1 }];
  r.totals = {
    ...r.totals,
    files: 2,
    bytes: 305,
    rowsRead: 12,
    completeRows: 9,
    rejected: { ...b },
    badRows: 2,
    orphanRows: 1,
    duplicateSongs: 1,
  };
  r.datesRecomputed = { hourly: ['2024-06-01', '2024-06-02'], genre: ['2024-06-01', '2024-06-02'] };
  r.rowsWritten = { hourly_kpis: 5, genre_level_kpis: 3 };
  r.loaded = true;
  r.warnings = ['1 orphan stream row(s) rejected (unknown track or user)'];
  return Object.assign(r, over);
}

export function failed(r: RunReport, error: ReportError): RunReport {
  r.ok = false;
  r.error = error;
  r.rowsWritten = { hourly_kpis: 0, genre_level_kpis: 0 };
  r.loaded = false;
  return r;
}

export const BAD_ROWS: ReportError = {
  code: 'MKPI_BAD_ROWS',
  message: '2 bad stream rows, more than --max-bad-rows 0',
  hint: 'see the rejects file',
  stage: 'streams',
};

export function start(c: Readonly<Config>, startedAt = STARTED): RunStart {
  return { command: c.command, runId: RUN_ID, startedAt, config: c };
}

export function end(s: RunStart, exitCode: number, result: unknown, error?: ReportError): RunEnd {
  return { ...s, finishedAt: FINISHED, exitCode, result, error };
}
