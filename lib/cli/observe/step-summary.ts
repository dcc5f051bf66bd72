// The Markdown summary of a pipeline command, appended to $GITHUB_STEP_SUMMARY (GitHub Actions
// shows it on the job's page): status, files, rows, rejects by reason, rows written, dates,
// warnings. Everything that comes from data (file names, messages) is escaped.

import { appendFile } from 'node:fs/promises';
import type { Config } from '../config.js';
import type { RunEnd, RunObserver } from './observer.js';
import { REJECT_REASONS } from '../../domain/reject-reasons.js';
import { redact } from '../../domain/errors.js';
import { asRunReport } from './report-view.js';

const MAX_LIST = 20;
const MAX_FILES = 50;

/** Text shown as is: no Markdown or HTML from a file name or a message. */
export function md(text: string): string {
  return redact(text)
    .replace(/[\r\n]+/g, ' ')
    .replace(/[\\`*_[\]<>|#~!]/g, '\\$&');
}

const n = (v: number) => v.toLocaleString('en-US');

function list(items: string[], max = MAX_LIST): string {
  if (items.length <= max) return items.join(', ');
  return `${items.slice(0, max).join(', ')} and ${items.length - max} more`;
}

export function stepSummary(e: RunEnd): string {
  const report = asRunReport(e.result);
  const ok = e.exitCode === 0;
  const error = e.error ?? report?.error ?? undefined;
  const lines: string[] = [];
  const title = ok
    ? `### ✅ musickpi ${e.command} succeeded${report?.dryRun ? ' (dry run: nothing written, nothing moved)' : ''}`
    : `### ❌ musickpi ${e.command} failed${error ? `: ${md(error.code)}` : ''} (exit ${e.exitCode})`;
  lines.push(title, '');
  if (!ok && error) {
    lines.push(`> ${md(error.message)}`);
    if (error.hint) lines.push('>', `> hint: ${md(error.hint)}`);
    lines.push('');
  }
  const rows: [string, string][] = [['Run id', md(e.runId)]];
  if (report) {
    if (report.lake) rows.push(['Lake', md(report.lake)]);
    if (report.warehouse) rows.push(['Warehouse', md(report.warehouse)]);
    const counts = { read: 0, already_loaded: 0, schema_error: 0 };
    for (const f of report.files) counts[f.status]++;
    if (e.command !== 'archive') {
      const parts = [`${n(counts.read)} read`];
      if (counts.already_loaded) parts.push(`${n(counts.already_loaded)} already loaded`);
      if (counts.schema_error) parts.push(`${n(counts.schema_error)} failed their schema`);
      if (report.reread.length) parts.push(`${n(report.reread.length)} re-read for late dates`);
      rows.push(['Stream files', parts.join(', ')]);
      const rejected = report.totals.rowsRead - report.totals.completeRows;
      rows.push(['Rows', `${n(report.totals.rowsRead)} read, ${n(report.totals.completeRows)} complete, ${n(rejected)} rejected`]);
    }
    if (['run', 'compute', 'retract'].includes(e.command) && !report.dryRun) {
      rows.push([
        'Rows written',
        Object.entries(report.rowsWritten)
          .map(([t, v]) => `${md(t)} ${n(v)}`)
          .join(', '),
      ]);
    }
    const dates = [...new Set([...report.datesRecomputed.hourly, ...report.datesRecomputed.genre])].sort();
    if (dates.length) rows.push(['Dates recomputed', list(dates.map(md))]);
    if (report.archived.length) rows.push(['Archived', `${n(report.archived.length)} file(s)`]);
    if (report.retracted.length) rows.push(['Retracted', list(report.retracted.map((r) => md(r.file)))]);
  }
  rows.push(['Duration', `${((e.finishedAt.getTime() - e.startedAt.getTime()) / 1000).toFixed(1)} s`]);
  lines.push('| | |', '| --- | --- |', ...rows.map(([k, v]) => `| ${k} | ${v} |`), '');

  if (report) {
    const rejects = REJECT_REASONS.filter((r) => (report.totals.rejected[r] ?? 0) > 0);
    if (rejects.length) {
      lines.push('**Rejected rows by reason**', '', '| reason | rows |', '| --- | ---: |');
      for (const r of rejects) lines.push(`| ${md(r)} | ${n(report.totals.rejected[r])} |`);
      lines.push('');
      if (report.rejectsOutput) lines.push(`Rejected rows are listed in ${md(report.rejectsOutput)}.`, '');
    }
    if (report.warnings.length) {
      lines.push(`**Warnings** (${n(report.warnings.length)})`, '');
      for (const w of report.warnings.slice(0, MAX_LIST)) lines.push(`- ${md(w)}`);
      if (report.warnings.length > MAX_LIST) lines.push(`- and ${n(report.warnings.length - MAX_LIST)} more`);
      lines.push('');
    }
    if (report.files.length) {
      lines.push(`<details><summary>Stream files (${n(report.files.length)})</summary>`, '');
      lines.push('| file | status | rows | complete | rejected | dates |', '| --- | --- | ---: | ---: | ---: | --- |');
      for (const f of report.files.slice(0, MAX_FILES)) {
        const rejected = Object.values(f.rejected).reduce((a, b) => a + b, 0);
        lines.push(
          `| ${md(f.name)} | ${f.status.replace(/_/g, ' ')} | ${n(f.rows)} | ${n(f.complete)} | ${n(rejected)} | ${list(f.dates.map(md), 5)} |`,
        );
      }
      if (report.files.length > MAX_FILES) lines.push('', `and ${n(report.files.length - MAX_FILES)} more files (see the JSON report)`);
      lines.push('', '</details>', '');
    }
  }
  return lines.join('\n') + '\n';
}

export function stepSummaryObserver(config: Readonly<Config>, warn: (message: string) => void): RunObserver {
  const path = config.observe.githubStepSummary!;
  return {
    name: 'step-summary',
    start: () => Promise.resolve(),
    finish: async (e) => {
      try {
        await appendFile(path, stepSummary(e));
      } catch (err) {
        warn(`cannot append the summary to GITHUB_STEP_SUMMARY ${path}: ${err instanceof Error ? err.message : String(err)}`);
      }
    },
  };
}
