// The tiny fixture's expected KPIs as report data, a small run history, and an XML check.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ReportData, ReportRun } from '../../../lib/cli/report/data.js';

const REPO = join(import.meta.dirname, '..', '..', '..');

function csv(name: string): Record<string, string>[] {
  const [head, ...lines] = readFileSync(join(REPO, 'fixtures', 'tiny', 'expected', name), 'utf8')
    .trim()
    .split('\n');
  const cols = head.split(',');
  return lines.map((l) => Object.fromEntries(l.split(',').map((v, i) => [cols[i], v])));
}

/** The tiny fixture's expected KPIs, as the report reads them. */
export function tinyData(dates: string[], runs: ReportRun[] | null = null): ReportData {
  const hourly = csv('hourly_kpis.csv')
    .filter((r) => dates.includes(r.listen_date))
    .map((r) => ({
      date: r.listen_date,
      hour: Number(r.listen_hour),
      listens: Number(r.listen_counts),
      listeners: Number(r.unique_listeners),
      topArtist: r.top_artist || null,
      sessionsPerUser: Number(r.avg_sessions_per_user),
      diversity: Number(r.diversity_index),
      ageGroup: r.most_engaged_age_group || null,
    }));
  const genres = csv('genre_level_kpis.csv')
    .filter((r) => dates.includes(r.listen_date))
    .map((r) => ({
      date: r.listen_date,
      genre: r.track_genre,
      listens: Number(r.listen_count),
      popularity: Number(r.popularity_index),
      averageDuration: Number(r.average_duration),
      topTrack: r.most_popular_track_id,
    }))
    .sort((a, b) => (a.date < b.date ? -1 : a.date > b.date ? 1 : b.listens - a.listens || (a.genre < b.genre ? -1 : 1)));
  return { schema: 'reporting_schema', dates, latestDate: '2024-06-02', hourly, genres, runs };
}

export const RUNS: ReportRun[] = [
  {
    runId: 'r2',
    command: 'run',
    startedAt: '2024-06-03T02:00:00.000Z',
    finishedAt: '2024-06-03T02:00:01.250Z',
    status: 'failed',
    exitCode: 65,
    errorCode: 'MKPI_SCHEMA',
    dryRun: false,
    rowsRead: 0,
    completeRows: 0,
    rejects: {},
    durationMs: 1250,
  },
  {
    runId: 'r1',
    command: 'run',
    startedAt: '2024-06-02T02:00:00.000Z',
    finishedAt: '2024-06-02T02:00:03.500Z',
    status: 'ok',
    exitCode: 0,
    errorCode: null,
    dryRun: false,
    rowsRead: 9,
    completeRows: 8,
    rejects: { unknown_track: 1 },
    durationMs: 3500,
  },
];

/** A small XML check: tags balance, attributes are quoted, no raw & or < in text. */
export function expectWellFormed(xml: string): void {
  const stack: string[] = [];
  const re = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|<!--[\s\S]*?-->|(<)|(&(?!(?:amp|lt|gt|quot|#39);))/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(xml))) {
    if (m[5] || m[6]) throw new Error(`not well-formed at ${m.index}: ${xml.slice(m.index, m.index + 40)}`);
    if (!m[2]) continue;
    if (m[1]) expect(stack.pop(), `closing ${m[2]} at ${m.index}`).to.equal(m[2]);
    else if (!m[4]) stack.push(m[2]);
  }
  expect(stack, 'unclosed tags').to.deep.equal([]);
}
