// The report as one self-contained page: inline CSS, inline SVG drawn here, no script, no
// font, no image, no link: it opens offline, on a phone, and prints.

import { genreTotals, type ReportData, type ReportRun } from './data.js';
import { barChart, dotChart, esc, FAILED, lineChart, PALETTE, rankChart } from './svg.js';
import { count, datesText, duration, elapsed, fixed, hour, instant, percent, rejectTotal } from './format.js';
import { UNRECORDED } from './text.js';

/** Genres charted (the table lists the same). */
export const CHART_GENRES = 10;

export const CHART_TITLES = {
  listens: 'Listens and unique listeners by hour',
  genres: 'Top genres by popularity',
  ages: 'Most engaged age group by hour',
  rejects: 'Rejected rows by reason, recent runs',
  durations: 'Run duration, recent runs',
} as const;

const CSS = `
:root{color-scheme:light;font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1d2330;background:#fff}
body{margin:0 auto;max-width:960px;padding:12px 16px 32px;line-height:1.4}
h1{font-size:1.4rem;margin:.4rem 0}h2{font-size:1.1rem;margin:0 0 .4rem}
.meta{color:#5b6473;margin:0 0 1rem}
section{margin:1.4rem 0;break-inside:avoid;page-break-inside:avoid}
svg.chart{width:100%;height:auto;display:block;max-width:760px}
svg .grid{stroke:#e3e6eb;stroke-width:1}svg .axis{stroke:#7a8290;stroke-width:1}
svg text{font-family:inherit;fill:#3b4351}svg .tick{font-size:11px}svg .label{font-size:12px;fill:#1d2330}
.table{overflow-x:auto}table{border-collapse:collapse;font-size:.85rem;margin-top:.5rem;font-variant-numeric:tabular-nums}
th,td{padding:3px 8px;border-bottom:1px solid #e3e6eb;text-align:left;white-space:nowrap}td.n,th.n{text-align:right}
.none{color:#5b6473;font-style:italic}
@media print{body{max-width:none;padding:0}section{margin:.8rem 0}a{color:inherit}}
`
  .trim()
  .replace(/\n/g, '');

interface Column<T> {
  head: string;
  cell: (row: T) => string;
  numeric?: boolean;
}

function table<T>(rows: readonly T[], cols: Column<T>[]): string {
  const th = cols.map((c) => `<th${c.numeric ? ' class="n"' : ''}>${esc(c.head)}</th>`).join('');
  const body = rows
    .map((r) => `<tr>${cols.map((c) => `<td${c.numeric ? ' class="n"' : ''}>${esc(c.cell(r))}</td>`).join('')}</tr>`)
    .join('');
  return `<div class="table"><table><thead><tr>${th}</tr></thead><tbody>${body}</tbody></table></div>`;
}

function section(id: string, title: string, body: string): string {
  return `<section id="${esc(id)}" class="chart-block"><h2>${esc(title)}</h2>${body}</section>`;
}

const none = (text: string) => `<p class="none">${esc(text)}</p>`;

/** Age groups in their natural order (18-25 before 26-35 before 66+). */
function ageOrder(groups: Iterable<string>): string[] {
  const lead = (g: string) => Number(/\d+/.exec(g)?.[0] ?? Infinity);
  return [...new Set(groups)].sort((a, b) => lead(a) - lead(b) || (a < b ? -1 : 1));
}

const runLabel = (r: ReportRun) => r.startedAt.slice(5, 16).replace('T', ' ');

export function renderHtml(d: ReportData, opts: { generatedAt: Date }): string {
  const multi = d.dates.length > 1;
  const hourLabel = (h: { date: string; hour: number }) =>
    multi ? `${h.date.slice(5)} ${String(h.hour).padStart(2, '0')}h` : hour(h.hour);
  const parts: string[] = [];

  // Listens and listeners by hour.
  if (d.hourly.length === 0) {
    parts.push(section('listens', CHART_TITLES.listens, none('no listens on these dates')));
  } else {
    const labels = d.hourly.map(hourLabel);
    const svg = lineChart({
      id: 'listens-chart',
      title: CHART_TITLES.listens,
      xLabel: 'hour of the day (UTC)',
      yLabel: 'listens, listeners (count)',
      labels,
      series: [
        { name: 'listens', values: d.hourly.map((h) => h.listens) },
        { name: 'unique listeners', values: d.hourly.map((h) => h.listeners) },
      ],
      format: count,
      integer: true,
    });
    const tbl = table(d.hourly, [
      ...(multi ? [{ head: 'date', cell: (h: (typeof d.hourly)[number]) => h.date }] : []),
      { head: 'hour (UTC)', cell: (h) => hour(h.hour) },
      { head: 'listens', cell: (h) => count(h.listens), numeric: true },
      { head: 'unique listeners', cell: (h) => count(h.listeners), numeric: true },
      { head: 'sessions per user', cell: (h) => fixed(h.sessionsPerUser), numeric: true },
      { head: 'diversity', cell: (h) => fixed(h.diversity), numeric: true },
      { head: 'top artist', cell: (h) => h.topArtist ?? '-' },
    ]);
    parts.push(section('listens', CHART_TITLES.listens, svg + tbl));
  }

  // Genres by popularity (their share of the listens of the dates shown).
  const genres = genreTotals(d.genres).slice(0, CHART_GENRES);
  if (genres.length === 0) {
    parts.push(section('genres', CHART_TITLES.genres, none('no genre KPIs on these dates')));
  } else {
    const svg = rankChart({
      id: 'genres-chart',
      title: CHART_TITLES.genres,
      xLabel: 'popularity: share of all listens (%)',
      yLabel: 'genre',
      labels: genres.map((g) => g.genre),
      values: genres.map((g) => g.popularity),
      format: (v) => `${Math.round(v * 1000) / 10}%`,
    });
    const single = d.dates.length === 1 ? d.genres : [];
    const tbl =
      single.length > 0
        ? table(single.slice(0, CHART_GENRES), [
            { head: 'genre', cell: (g) => g.genre },
            { head: 'listens', cell: (g) => count(g.listens), numeric: true },
            { head: 'popularity', cell: (g) => percent(g.popularity), numeric: true },
            { head: 'average length (m:ss)', cell: (g) => duration(g.averageDuration), numeric: true },
            { head: 'top track', cell: (g) => g.topTrack },
          ])
        : table(genres, [
            { head: 'genre', cell: (g) => g.genre },
            { head: 'listens', cell: (g) => count(g.listens), numeric: true },
            { head: 'popularity', cell: (g) => percent(g.popularity), numeric: true },
          ]);
    parts.push(section('genres', CHART_TITLES.genres, svg + tbl));
  }

  // The age group that listened most, hour by hour.
  if (d.hourly.length === 0) {
    parts.push(section('ages', CHART_TITLES.ages, none('no listens on these dates')));
  } else {
    const rows = ageOrder(d.hourly.flatMap((h) => (h.ageGroup === null ? [] : [h.ageGroup])));
    const svg = dotChart({
      id: 'ages-chart',
      title: CHART_TITLES.ages,
      xLabel: 'hour of the day (UTC)',
      yLabel: 'age group (years)',
      labels: d.hourly.map(hourLabel),
      rows: rows.length > 0 ? rows : ['unknown'],
      values: d.hourly.map((h) => h.ageGroup),
    });
    const tbl = table(d.hourly, [
      ...(multi ? [{ head: 'date', cell: (h: (typeof d.hourly)[number]) => h.date }] : []),
      { head: 'hour (UTC)', cell: (h) => hour(h.hour) },
      { head: 'most engaged age group', cell: (h) => h.ageGroup ?? 'unknown' },
      { head: 'listens', cell: (h) => count(h.listens), numeric: true },
    ]);
    parts.push(section('ages', CHART_TITLES.ages, svg + tbl));
  }

  // The recent runs, oldest first.
  if (d.runs === null) {
    const text = 'no run history: this warehouse has no musickpi_runs table';
    parts.push(section('rejects', CHART_TITLES.rejects, none(text)), section('durations', CHART_TITLES.durations, none(text)));
  } else if (d.runs.length === 0) {
    parts.push(
      section('rejects', CHART_TITLES.rejects, none('no run recorded yet')),
      section('durations', CHART_TITLES.durations, none('no run recorded yet')),
    );
  } else {
    const runs = [...d.runs].reverse();
    const reasons = [...new Set(runs.flatMap((r) => Object.keys(r.rejects)))].sort();
    const labels = runs.map(runLabel);
    const rejects = barChart({
      id: 'rejects-chart',
      title: CHART_TITLES.rejects,
      xLabel: 'run (start, UTC)',
      yLabel: 'rejected rows (count)',
      labels,
      series: reasons.map((reason) => ({ name: reason, values: runs.map((r) => r.rejects[reason] ?? 0) })),
      format: count,
      integer: true,
      empty: 'no rejected rows in these runs',
    });
    const rejectsTable = table(runs, [
      { head: 'run (start, UTC)', cell: (r) => instant(r.startedAt) },
      { head: 'command', cell: (r) => r.command + (r.dryRun ? ' (dry)' : '') },
      { head: 'rows read', cell: (r) => count(r.rowsRead), numeric: true },
      ...reasons.map((reason) => ({ head: reason, cell: (r: ReportRun) => count(r.rejects[reason] ?? 0), numeric: true })),
      { head: 'rejected', cell: (r) => count(rejectTotal(r.rejects)), numeric: true },
    ]);
    const durations = barChart({
      id: 'durations-chart',
      title: CHART_TITLES.durations,
      xLabel: 'run (start, UTC); failed runs in red',
      yLabel: 'duration (seconds)',
      labels,
      series: [{ name: 'duration', values: runs.map((r) => r.durationMs / 1000) }],
      colors: runs.map((r) => (r.status === 'ok' ? PALETTE[0] : FAILED)),
      format: (v) => (v >= 10 ? String(Math.round(v)) : String(Math.round(v * 10) / 10)),
    });
    const durationsTable = table(runs, [
      { head: 'run (start, UTC)', cell: (r) => instant(r.startedAt) },
      { head: 'command', cell: (r) => r.command + (r.dryRun ? ' (dry)' : '') },
      { head: 'status', cell: (r) => r.status },
      { head: 'exit', cell: (r) => String(r.exitCode), numeric: true },
      { head: 'error', cell: (r) => r.errorCode ?? '' },
      { head: 'duration', cell: (r) => elapsed(r.durationMs), numeric: true },
    ]);
    const note = `<p class="none">${esc(UNRECORDED)}</p>`;
    parts.push(
      section('rejects', CHART_TITLES.rejects, rejects + rejectsTable),
      section('durations', CHART_TITLES.durations, durations + durationsTable + note),
    );
  }

  const title = `musickpi report: ${datesText(d.dates)}`;
  return (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    // Nothing may load from anywhere, even if a value slipped through unescaped.
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src 'none'">` +
    `<title>${esc(title)}</title><style>${CSS}</style></head><body>` +
    `<h1>${esc(title)}</h1>` +
    `<p class="meta">schema ${esc(d.schema)} · latest loaded date ${esc(d.latestDate ?? 'none')} · written ${esc(instant(opts.generatedAt.toISOString()))} · all times UTC</p>` +
    parts.join('\n') +
    '</body></html>\n'
  );
}
