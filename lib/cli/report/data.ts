// What the report shows, read through the warehouse port's query() alone, so that it works on
// every warehouse behind the port (PostgreSQL, Redshift) with plain SQL both understand.

import type { QueryResult, Warehouse } from '../../domain/warehouse.js';
import { MkpiError } from '../../domain/errors.js';

export interface ReportHour {
  date: string;
  hour: number;
  listens: number;
  listeners: number;
  topArtist: string | null;
  sessionsPerUser: number;
  diversity: number;
  ageGroup: string | null;
}

export interface ReportGenre {
  date: string;
  genre: string;
  listens: number;
  popularity: number;
  averageDuration: number;
  topTrack: string;
}

export interface ReportRun {
  runId: string;
  command: string;
  startedAt: string;
  finishedAt: string;
  status: string;
  exitCode: number;
  errorCode: string | null;
  dryRun: boolean;
  rowsRead: number;
  completeRows: number;
  rejects: Record<string, number>;
  durationMs: number;
}

export interface ReportData {
  schema: string;
  /** The dates shown, in order: the ones asked for, or the latest loaded date. */
  dates: string[];
  /** The latest listen_date in hourly_kpis; null when the table is empty. */
  latestDate: string | null;
  hourly: ReportHour[];
  /** Per date, the genres by listens (most first). */
  genres: ReportGenre[];
  /** Newest first; null when the warehouse keeps no run history (no musickpi_runs table). */
  runs: ReportRun[] | null;
}

/** The runs shown at most. */
export const RUNS_LIMIT = 20;

const literal = (s: string) => `'${s.replace(/'/g, "''")}'`;
const DATE = /^\d{4}-\d{2}-\d{2}$/;

function objects(res: QueryResult): Record<string, unknown>[] {
  return res.rows.map((r) => Object.fromEntries(res.columns.map((c, i) => [c, r[i]])));
}

const num = (v: unknown): number => (typeof v === 'number' ? v : Number(v));
const str = (v: unknown): string => (v instanceof Date ? v.toISOString() : String(v));
const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : str(v));
const dateOf = (v: unknown): string => (v instanceof Date ? v.toISOString().slice(0, 10) : String(v).slice(0, 10));

function parseRejects(v: unknown): Record<string, number> {
  if (v === null || v === undefined) return {};
  try {
    const o: unknown = typeof v === 'string' ? JSON.parse(v) : v;
    if (o === null || typeof o !== 'object' || Array.isArray(o)) return {};
    return Object.fromEntries(Object.entries(o as Record<string, unknown>).map(([k, n]) => [k, num(n)]));
  } catch {
    return {};
  }
}

async function tableExists(wh: Warehouse, schema: string, table: string): Promise<boolean> {
  const res = await wh.query(
    `select count(*) as n from information_schema.tables where table_schema = ${literal(schema)} and table_name = ${literal(table)}`,
  );
  return num(res.rows[0]?.[0]) > 0;
}

export async function loadReportData(wh: Warehouse, opts: { schema: string; dates?: readonly string[] }): Promise<ReportData> {
  const { schema } = opts;
  if (!(await tableExists(wh, schema, 'hourly_kpis'))) {
    throw new MkpiError('MKPI_CONFIG', `the warehouse has no KPI tables in schema ${schema}`, {
      hint: 'run `musickpi init` (or `musickpi run`) first, or pass the --schema the KPIs are in',
    });
  }
  const latest = objects(await wh.query('select max(listen_date) as d from hourly_kpis'))[0]?.d;
  const latestDate = latest === null || latest === undefined ? null : dateOf(latest);
  const dates = opts.dates && opts.dates.length > 0 ? [...opts.dates] : latestDate ? [latestDate] : [];
  for (const d of dates) if (!DATE.test(d)) throw new MkpiError('MKPI_USAGE', `not a date: ${d}`);
  const inDates = dates.length > 0 ? `listen_date in (${dates.map(literal).join(', ')})` : 'false';

  const hourly = objects(
    await wh.query(
      'select listen_date, listen_hour, unique_listeners, listen_counts, top_artist, avg_sessions_per_user, diversity_index, ' +
        `most_engaged_age_group from hourly_kpis where ${inDates} order by listen_date, listen_hour`,
    ),
  ).map((r): ReportHour => ({
    date: dateOf(r.listen_date),
    hour: num(r.listen_hour),
    listens: num(r.listen_counts),
    listeners: num(r.unique_listeners),
    topArtist: strOrNull(r.top_artist),
    sessionsPerUser: num(r.avg_sessions_per_user),
    diversity: num(r.diversity_index),
    ageGroup: strOrNull(r.most_engaged_age_group),
  }));
  const genres = (await tableExists(wh, schema, 'genre_level_kpis'))
    ? objects(
        await wh.query(
          'select listen_date, track_genre, listen_count, popularity_index, average_duration, most_popular_track_id ' +
            `from genre_level_kpis where ${inDates} order by listen_date, listen_count desc, track_genre`,
        ),
      ).map((r): ReportGenre => ({
        date: dateOf(r.listen_date),
        genre: str(r.track_genre),
        listens: num(r.listen_count),
        popularity: num(r.popularity_index),
        averageDuration: num(r.average_duration),
        topTrack: str(r.most_popular_track_id),
      }))
    : [];
  return { schema, dates, latestDate, hourly, genres, runs: await loadRuns(wh, schema) };
}

async function loadRuns(wh: Warehouse, schema: string): Promise<ReportRun[] | null> {
  if (!(await tableExists(wh, schema, 'musickpi_runs'))) return null;
  const res = await wh.query(
    'select run_id, command, started_at, finished_at, status, exit_code, error_code, dry_run, rows_read, complete_rows, rejects ' +
      `from musickpi_runs order by started_at desc, run_id desc limit ${RUNS_LIMIT}`,
  );
  return objects(res).map((r): ReportRun => {
    const startedAt = r.started_at instanceof Date ? r.started_at : new Date(str(r.started_at));
    const finishedAt = r.finished_at instanceof Date ? r.finished_at : new Date(str(r.finished_at));
    return {
      runId: str(r.run_id),
      command: str(r.command),
      startedAt: startedAt.toISOString(),
      finishedAt: finishedAt.toISOString(),
      status: str(r.status),
      exitCode: num(r.exit_code),
      errorCode: strOrNull(r.error_code),
      dryRun: r.dry_run === true || r.dry_run === 't' || r.dry_run === 'true',
      rowsRead: num(r.rows_read),
      completeRows: num(r.complete_rows),
      rejects: parseRejects(r.rejects),
      durationMs: Math.max(0, finishedAt.getTime() - startedAt.getTime()),
    };
  });
}

/** Genres over all the dates shown: listens summed, popularity as the share of all listens of those dates. */
export function genreTotals(genres: readonly ReportGenre[]): { genre: string; listens: number; popularity: number }[] {
  const by = new Map<string, number>();
  let total = 0;
  for (const g of genres) {
    by.set(g.genre, (by.get(g.genre) ?? 0) + g.listens);
    total += g.listens;
  }
  return [...by]
    .map(([genre, listens]) => ({ genre, listens, popularity: total > 0 ? listens / total : 0 }))
    .sort((a, b) => b.listens - a.listens || (a.genre < b.genre ? -1 : a.genre > b.genre ? 1 : 0));
}
