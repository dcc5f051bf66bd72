// The run history (musickpi_runs), shared by both dialects: one plain INSERT and one plain SELECT
// that PostgreSQL and Redshift both take, and the mapping between a RunRecord and a row. Strings
// are cut to their column's width in bytes (Redshift's VARCHAR(n) counts bytes; on PostgreSQL,
// where it counts characters, fewer bytes fit all the more), so that recording a run never fails
// on a long error message or lake location.

import type pg from 'pg';
import { MkpiError } from '../../../domain/errors.js';
import type { ListRunsOptions, RunRecord } from '../../../domain/warehouse.js';
import { errCode } from './errors.js';

/** The columns of musickpi_runs, in the order of sql/<dialect>/init.sql, with their VARCHAR widths in bytes. */
export const RUN_COLUMNS = [
  ['run_id', 64],
  ['command', 16],
  ['started_at', null],
  ['finished_at', null],
  ['status', 16],
  ['exit_code', null],
  ['error_code', 64],
  ['error_message', 4096],
  ['error_stage', 32],
  ['dry_run', null],
  ['lake', 4096],
  ['rows_read', null],
  ['complete_rows', null],
  ['rejects', 4096],
  ['hourly_rows_written', null],
  ['genre_rows_written', null],
  ['dates_recomputed', 65535],
  ['files_loaded', null],
  ['files_archived', null],
  ['timings', 4096],
  ['version', 32],
  ['airflow_dag_id', 1024],
  ['airflow_task_id', 1024],
  ['airflow_run_id', 1024],
  ['airflow_try_number', null],
] as const;

/** information_schema.columns' data_type of each column (the same on both dialects). */
export const RUNS_EXPECTED_COLUMNS: Record<string, string> = Object.fromEntries(
  RUN_COLUMNS.map(([name, width]) => [
    name,
    width !== null
      ? 'character varying'
      : name.endsWith('_at')
        ? 'timestamp with time zone'
        : name === 'dry_run'
          ? 'boolean'
          : name === 'rows_read' || name === 'complete_rows'
            ? 'bigint'
            : 'integer',
  ]),
);

/** At most `bytes` bytes of UTF-8, cut between characters, ending with "…" when cut. */
export function truncateBytes(s: string, bytes: number): string {
  if (Buffer.byteLength(s, 'utf8') <= bytes) return s;
  let out = '';
  let used = 0;
  const budget = bytes - 3; // "…" is three bytes
  for (const ch of s) {
    const n = Buffer.byteLength(ch, 'utf8');
    if (used + n > budget) break;
    out += ch;
    used += n;
  }
  return out + '…';
}

/** The dates as JSON within the column's width: a history of thousands of dates keeps its first ones. */
function datesJson(d: RunRecord['datesRecomputed'], bytes: number): string {
  let hourly = [...d.hourly];
  let genre = [...d.genre];
  let text = JSON.stringify({ hourly, genre });
  while (Buffer.byteLength(text, 'utf8') > bytes) {
    hourly = hourly.slice(0, Math.floor(hourly.length / 2));
    genre = genre.slice(0, Math.floor(genre.length / 2));
    text = JSON.stringify({ hourly, genre, truncated: true });
  }
  return text;
}

/** A JSON object column within its width; one too big for it (never seen) keeps nothing rather than invalid JSON. */
function objectJson(o: Record<string, number>, bytes: number): string {
  const text = JSON.stringify(o);
  return Buffer.byteLength(text, 'utf8') <= bytes ? text : '{}';
}

function width(column: string): number {
  const w = RUN_COLUMNS.find(([name]) => name === column)?.[1];
  if (typeof w !== 'number') throw new MkpiError('MKPI_INTERNAL', `musickpi_runs.${column} is not a VARCHAR`);
  return w;
}

const str = (column: string, v: string) => truncateBytes(v, width(column));
const opt = (column: string, v: string | null) => (v === null ? null : str(column, v));
const int = (v: number) => (Number.isFinite(v) ? Math.trunc(v) : 0);

/** The row's values, in RUN_COLUMNS order. */
export function runValues(r: RunRecord): unknown[] {
  return [
    str('run_id', r.runId),
    str('command', r.command),
    new Date(r.startedAt).toISOString(),
    new Date(r.finishedAt).toISOString(),
    str('status', r.status),
    int(r.exitCode),
    opt('error_code', r.errorCode),
    opt('error_message', r.errorMessage),
    opt('error_stage', r.errorStage),
    r.dryRun,
    str('lake', r.lake),
    int(r.rowsRead),
    int(r.completeRows),
    objectJson(r.rejects, width('rejects')),
    int(r.hourlyRowsWritten),
    int(r.genreRowsWritten),
    datesJson(r.datesRecomputed, width('dates_recomputed')),
    int(r.filesLoaded),
    int(r.filesArchived),
    objectJson(r.timings, width('timings')),
    str('version', r.version),
    opt('airflow_dag_id', r.airflowDagId),
    opt('airflow_task_id', r.airflowTaskId),
    opt('airflow_run_id', r.airflowRunId),
    r.airflowTryNumber === null ? null : int(r.airflowTryNumber),
  ];
}

export function insertRunSql(quoted: string): string {
  const names = RUN_COLUMNS.map(([name]) => name);
  return `INSERT INTO ${quoted}.musickpi_runs (${names.join(', ')}) VALUES (${names.map((_, i) => `$${i + 1}`).join(', ')})`;
}

/** Newest first; the limit is spliced in as a checked integer (Redshift takes no parameter there). */
export function listRunsQuery(quoted: string, opts: ListRunsOptions): { text: string; values: unknown[] } {
  const limit = opts.limit;
  if (!Number.isSafeInteger(limit) || limit < 1)
    throw new MkpiError('MKPI_USAGE', `the number of runs to list must be a whole number ≥ 1, not ${limit}`);
  if (opts.status !== undefined && opts.status !== 'ok' && opts.status !== 'failed') {
    throw new MkpiError('MKPI_USAGE', `a run's status is ok or failed, not ${JSON.stringify(opts.status)}`);
  }
  const where = opts.status ? ' WHERE status = $1' : '';
  return {
    text: `SELECT ${RUN_COLUMNS.map(([name]) => name).join(', ')} FROM ${quoted}.musickpi_runs${where} ORDER BY started_at DESC, run_id DESC LIMIT ${limit}`,
    values: opts.status ? [opts.status] : [],
  };
}

function parseJson<T>(text: unknown, fallback: T): T {
  if (typeof text !== 'string') return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

const numOrNull = (v: unknown) => (v === null || v === undefined ? null : Number(v));
const strOrNull = (v: unknown) => (typeof v === 'string' ? v : v === null || v === undefined ? null : JSON.stringify(v));
const iso = (v: unknown) => (v instanceof Date ? v.toISOString() : new Date(String(v)).toISOString());

export function runFromRow(row: Record<string, unknown>): RunRecord {
  const dates = parseJson<{ hourly?: unknown; genre?: unknown }>(row.dates_recomputed, {});
  const list = (v: unknown) => (Array.isArray(v) ? v.map(String) : []);
  return {
    runId: String(row.run_id),
    command: String(row.command),
    startedAt: iso(row.started_at),
    finishedAt: iso(row.finished_at),
    status: row.status === 'ok' ? 'ok' : 'failed',
    exitCode: Number(row.exit_code),
    errorCode: strOrNull(row.error_code),
    errorMessage: strOrNull(row.error_message),
    errorStage: strOrNull(row.error_stage),
    dryRun: row.dry_run === true,
    lake: String(row.lake),
    rowsRead: Number(row.rows_read),
    completeRows: Number(row.complete_rows),
    rejects: parseJson<Record<string, number>>(row.rejects, {}),
    hourlyRowsWritten: Number(row.hourly_rows_written),
    genreRowsWritten: Number(row.genre_rows_written),
    datesRecomputed: { hourly: list(dates.hourly), genre: list(dates.genre) },
    filesLoaded: Number(row.files_loaded),
    filesArchived: Number(row.files_archived),
    timings: parseJson<Record<string, number>>(row.timings, {}),
    version: String(row.version),
    airflowDagId: strOrNull(row.airflow_dag_id),
    airflowTaskId: strOrNull(row.airflow_task_id),
    airflowRunId: strOrNull(row.airflow_run_id),
    airflowTryNumber: numOrNull(row.airflow_try_number),
  };
}

/** 42P01 undefined_table, 3F000 invalid_schema_name: the history does not exist (yet). */
export function isMissingTable(err: unknown): boolean {
  const code = errCode(err);
  return code === '42P01' || code === '3F000';
}

export function noRunsTable(schema: string, cause: unknown): MkpiError {
  return new MkpiError('MKPI_CONFIG', `schema ${schema} has no run history table (musickpi_runs)`, {
    hint: 'musickpi init (or any run that loads) creates it',
    cause,
  });
}

/** The history read on an open session; no table yet reads as no runs. */
export async function selectRuns(c: pg.Client, quoted: string, opts: ListRunsOptions): Promise<RunRecord[]> {
  const q = listRunsQuery(quoted, opts);
  try {
    const r = await c.query<Record<string, unknown>>(q.text, q.values);
    return r.rows.map(runFromRow);
  } catch (err) {
    if (isMissingTable(err)) return [];
    throw err;
  }
}
