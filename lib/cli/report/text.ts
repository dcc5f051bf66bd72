// The report in a terminal: aligned tables, numbers rounded for people.

import { genreTotals, type ReportData } from './data.js';
import { count, datesText, duration, elapsed, fixed, hour, instant, percent, rejectTotal } from './format.js';

/** Genres listed per date in the terminal. */
export const TOP_GENRES = 10;
/** Runs listed in the terminal. */
export const TERMINAL_RUNS = 10;

/** Said under every run history: its gaps are runs that could not reach the warehouse. */
export const UNRECORDED = 'a run that could not reach its warehouse could not record itself, and is missing here';

type Align = 'left' | 'right';

/** An aligned table; numbers are right-aligned so that their digits line up. */
export function alignedTable(head: string[], rows: string[][], align: Align[], indent = '  '): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const pad = (c: string, i: number) => (align[i] === 'right' ? c.padStart(widths[i]) : c.padEnd(widths[i]));
  const line = (r: string[]) => (indent + r.map(pad).join('  ')).trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
}

export function renderText(d: ReportData): string {
  const out: string[] = [`musickpi report   ${datesText(d.dates)}   schema ${d.schema}`, ''];
  const multi = d.dates.length > 1;

  out.push('Listening by hour (UTC)');
  if (d.hourly.length === 0) {
    out.push(d.latestDate ? '  no listens on these dates' : '  no KPIs loaded yet');
  } else {
    const head = [...(multi ? ['date'] : []), 'hour', 'listens', 'listeners', 'sessions/user', 'diversity', 'top artist', 'top age group'];
    const rows = d.hourly.map((h) => [
      ...(multi ? [h.date] : []),
      hour(h.hour),
      count(h.listens),
      count(h.listeners),
      fixed(h.sessionsPerUser),
      fixed(h.diversity),
      h.topArtist ?? '-',
      h.ageGroup ?? '-',
    ]);
    const align: Align[] = [...(multi ? ['left' as const] : []), 'left', 'right', 'right', 'right', 'right', 'left', 'left'];
    out.push(...alignedTable(head, rows, align));
    const listens = d.hourly.reduce((a, h) => a + h.listens, 0);
    const peak = d.hourly.reduce((a, h) => (h.listens > a.listens ? h : a));
    out.push(`  ${count(listens)} listens; busiest hour ${multi ? peak.date + ' ' : ''}${hour(peak.hour)} (${count(peak.listens)})`);
  }
  out.push('');

  out.push('Top genres');
  if (d.genres.length === 0) {
    out.push('  no genre KPIs on these dates');
  } else {
    const shown = d.dates.flatMap((date) => d.genres.filter((g) => g.date === date).slice(0, TOP_GENRES));
    const head = [...(multi ? ['date'] : []), 'genre', 'listens', 'share', 'avg length', 'top track'];
    const rows = shown.map((g) => [
      ...(multi ? [g.date] : []),
      g.genre,
      count(g.listens),
      percent(g.popularity),
      duration(g.averageDuration),
      g.topTrack,
    ]);
    const align: Align[] = [...(multi ? ['left' as const] : []), 'left', 'right', 'right', 'right', 'left'];
    out.push(...alignedTable(head, rows, align));
    const all = genreTotals(d.genres);
    if (shown.length < d.genres.length) out.push(`  ${count(all.length)} genres in all; ${TOP_GENRES} most listened per date shown`);
  }
  out.push('');

  out.push('Last runs');
  if (d.runs === null) {
    out.push('  no run history (this warehouse has no musickpi_runs table)');
  } else if (d.runs.length === 0) {
    out.push('  no run recorded yet');
  } else {
    const head = ['started (UTC)', 'command', 'status', 'exit', 'time', 'rows read', 'rejected', 'error'];
    const rows = d.runs
      .slice(0, TERMINAL_RUNS)
      .map((r) => [
        instant(r.startedAt),
        r.command + (r.dryRun ? ' (dry)' : ''),
        r.status,
        String(r.exitCode),
        elapsed(r.durationMs),
        count(r.rowsRead),
        count(rejectTotal(r.rejects)),
        r.errorCode ?? '',
      ]);
    out.push(...alignedTable(head, rows, ['left', 'left', 'left', 'right', 'right', 'right', 'right', 'left']));
  }
  if (d.runs !== null) out.push(`  ${UNRECORDED}`);
  return out.join('\n') + '\n';
}
