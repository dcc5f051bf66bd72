import { commandModule } from '../execute.js';
import { required } from '../config.js';
import { lakeStatus, type StatusReport } from '../../pipeline/status.js';

/** Consecutive dates as ranges: 2024-06-01..2024-06-03, 2024-06-07. */
function ranges(dates: string[]): string {
  if (dates.length === 0) return 'none';
  const day = (d: string) => Date.parse(d + 'T00:00:00Z') / 86_400_000;
  const out: string[] = [];
  let start = dates[0];
  let prev = dates[0];
  for (const d of [...dates.slice(1), '']) {
    if (d && day(d) === day(prev) + 1) {
      prev = d;
      continue;
    }
    out.push(start === prev ? start : `${start}..${prev}`);
    start = prev = d;
  }
  return out.join(', ');
}

function text(s: StatusReport): string {
  const out = [`musickpi status   lake ${s.lake}`, `  warehouse   ${s.warehouse}`];
  if (s.ledgerLake && s.ledgerLake !== s.lake) out.push(`  warning     the ledger belongs to lake ${s.ledgerLake}`);
  out.push(`  pending     ${s.pending.length} file(s)`);
  for (const p of s.pending) out.push(`    ${p.file}  (${p.bytes} bytes; not yet in ${p.missing.join(', ')})`);
  out.push(`  loaded      ${s.loaded.length} file(s)`);
  for (const l of s.loaded) {
    const where = l.where === 'archived' ? `archived as ${l.archivedKey}` : 'in streams, not archived yet';
    out.push(`    ${l.file}  ${l.tables.join('+')}  ${ranges(l.dates)}  ${where}`);
  }
  if (s.retracted.length > 0) {
    out.push(`  retracted   ${s.retracted.length} file(s)`);
    for (const r of s.retracted) out.push(`    ${r.file}  at ${r.retractedAt}`);
  }
  if (s.ignored.length > 0) out.push(`  ignored     ${s.ignored.join(', ')}`);
  out.push(`  hourly      ${ranges(s.dates.hourly)}`);
  out.push(`  genre       ${ranges(s.dates.genre)}`);
  return out.join('\n') + '\n';
}

export const command = commandModule({
  command: 'status',
  describe: 'list the stream files pending, loaded (into which tables, archived or not) and retracted, and the dates each KPI table holds',
  examples: [['$0 status --lake ./lake', '']],
  async run(rt) {
    const c = required(rt.config.lake, 'lake');
    const report = await lakeStatus({ lake: rt.lake(), layout: c.layout, warehouse: await rt.warehouse(), signal: rt.signal });
    return { json: report, text: text(report) };
  },
});
