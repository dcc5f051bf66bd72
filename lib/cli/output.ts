// Human-readable output on stdout: a short run summary, and aligned tables for `query`.

import type { RunReport } from '../pipeline/report.js';
import { REJECT_REASONS } from '../domain/reject-reasons.js';

/**
 * `x.toLocaleString('en-US')`, the counts of the summary. ICU's first number format costs
 * ~15-25 ms of a run; a safe integer (every count here) has its digits grouped by commas
 * directly, with the very same result. Anything else still goes to ICU.
 */
export function groupDigits(x: number): string {
  if (!Number.isSafeInteger(x) || Object.is(x, -0)) return x.toLocaleString('en-US');
  const digits = String(Math.abs(x));
  let out = digits.slice(0, ((digits.length - 1) % 3) + 1);
  for (let i = out.length; i < digits.length; i += 3) out += ',' + digits.slice(i, i + 3);
  return x < 0 ? '-' + out : out;
}

const n = groupDigits;

export function summary(r: RunReport): string {
  const out: string[] = [];
  const t = r.totals;
  const head = r.ok ? 'ok' : `FAILED (${r.error!.code})`;
  out.push(`musickpi ${r.command}${r.dryRun ? ' --dry-run' : ''}: ${head}   run ${r.runId}`);
  out.push(`  lake        ${r.lake}`);
  if (r.warehouse) out.push(`  warehouse   ${r.warehouse}`);
  const d = r.dimensions;
  if (d.songs && d.users && r.command !== 'normalize') {
    out.push(
      `  songs       ${n(d.songs.valid)} valid, ${n(d.songs.duplicates)} duplicate, ${n(d.songs.rows - d.songs.valid - d.songs.duplicates)} invalid`,
    );
    out.push(
      `  users       ${n(d.users.valid)} valid, ${n(d.users.duplicates)} duplicate, ${n(d.users.rows - d.users.valid - d.users.duplicates)} invalid`,
    );
  }
  if (r.plan) {
    const p = r.plan;
    const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
    out.push(`  plan        ${p.id}: ${p.shards} shard(s) (${p.shardBytes.map(mb).join(', ')}) in ${p.staging}`);
    if (p.shard)
      out.push(
        `  shard       ${p.shard.index}/${p.shards}: ${n(p.shard.listens)} listens in ${n(p.shard.parts)} part(s), ${n(p.shard.rejects)} rejects`,
      );
    if (p.normalizedHere) out.push(`  normalized  shard(s) ${p.normalizedHere.join(', ')} in this process`);
  }
  if (r.command === 'plan') {
    out.push(`  streams     ${n(t.files)} file(s) planned, ${n(t.bytes)} bytes`);
  } else if (r.command === 'normalize') {
    // Orphans and duplicates are the warehouse's to decide: only the row-level reasons are known here.
    out.push(`  streams     ${n(t.files)} file(s) read, ${n(t.rowsRead)} rows`);
    const rej = REJECT_REASONS.filter((x) => t.rejected[x] > 0).map((x) => `${x} ${n(t.rejected[x])}`);
    out.push(`  rejected    ${rej.length ? rej.join(', ') : 'none'} (orphans are decided by the run)`);
  } else if (r.command !== 'archive') {
    const already = r.files.filter((f) => f.status === 'already_loaded').length;
    out.push(
      `  streams     ${n(t.files)} file(s) read, ${n(t.rowsRead)} rows, ${n(t.completeRows)} complete${already ? `, ${already} already loaded` : ''}`,
    );
    const rej = REJECT_REASONS.filter((x) => t.rejected[x] > 0).map((x) => `${x} ${n(t.rejected[x])}`);
    out.push(`  rejected    ${rej.length ? rej.join(', ') : 'none'}`);
    const restored = r.dateState?.restored.length ?? 0;
    const late = [
      ...(restored ? [`${n(restored)} read back from saved state`] : []),
      ...(r.reread.length ? [`re-read ${n(r.reread.length)} loaded file(s)`] : []),
    ];
    if (late.length) out.push(`  late dates  ${late.join(', ')}`);
  }
  if (r.engine === 'warehouse' && (r.command === 'run' || r.command === 'compute'))
    out.push('  engine      warehouse (KPIs computed in SQL)');
  if (r.command === 'run' || r.command === 'compute' || r.command === 'retract') {
    const dates = [...new Set([...r.datesRecomputed.hourly, ...r.datesRecomputed.genre])].sort();
    out.push(`  dates       ${dates.length ? dates.join(', ') : 'none to recompute'}`);
    const verb = r.loaded ? 'written' : r.dryRun ? 'would write' : 'not loaded';
    out.push(
      `  kpis        ${verb}: hourly_kpis ${n(r.rowsWritten.hourly_kpis)} rows, genre_level_kpis ${n(r.rowsWritten.genre_level_kpis)} rows`,
    );
  }
  if (r.command === 'run' || r.command === 'archive') {
    out.push(`  archived    ${r.archived.length ? r.archived.map((a) => a.to).join(', ') : 'nothing'}`);
  }
  if (r.command === 'retract') {
    const verb = r.dryRun ? 'would retract' : 'retracted';
    for (const x of r.retracted)
      out.push(`  ${verb.padEnd(11)} ${x.file}${x.from && x.to && x.from !== x.to ? `: ${x.from} -> ${x.to}` : ''}`);
  }
  if (r.skippedRetracted.length) out.push(`  skipped     ${r.skippedRetracted.join(', ')} (copies of retracted files)`);
  for (const u of r.unexpectedDates) out.push(`  unexpected  ${u.file}: ${u.dates.join(', ')}`);
  if (r.rejectsOutput) out.push(`  rejects     ${r.rejectsOutput}`);
  for (const w of r.warnings) out.push(`  warning     ${w}`);
  if (r.error) {
    out.push(`  error       ${r.error.message}`);
    if (r.error.hint) out.push(`  hint        ${r.error.hint}`);
  }
  out.push(`  time        ${((r.timings.total ?? 0) / 1000).toFixed(2)} s`);
  return out.join('\n') + '\n';
}

export function formatCell(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (v instanceof Date) return v.toISOString();
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v) ?? '';
}

export function table(columns: string[], rows: unknown[][]): string {
  const cells = rows.map((r) => r.map(formatCell));
  const widths = columns.map((c, i) => Math.min(60, Math.max(c.length, ...cells.map((r) => r[i].length))));
  const fmt = (r: string[]) =>
    r
      .map((c, i) => (c.length > widths[i] ? c.slice(0, widths[i] - 1) + '…' : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  const lines = [fmt(columns), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(fmt)];
  lines.push(`(${rows.length} row${rows.length === 1 ? '' : 's'})`);
  return lines.join('\n') + '\n';
}
