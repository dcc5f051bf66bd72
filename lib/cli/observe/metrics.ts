// Prometheus metrics of a run, in the text exposition format (0.0.4): a file for the node
// exporter's textfile collector (--metrics-file, replaced atomically), and the same pushed to a
// Pushgateway (--pushgateway). The format is a few lines of text: no client library is needed.
//
// One file can serve several commands (a DAG's run, then archive): each run replaces the series
// of its own command and keeps the others. A failed run keeps the last success timestamp.

import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { CommandName, Config } from '../config.js';
import type { RunEnd, RunObserver } from './observer.js';
import { REJECT_REASONS } from '../../domain/reject-reasons.js';
import { asRunReport, PIPELINE_COMMANDS } from './report-view.js';
import { send } from './http.js';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Every family musickpi writes, in the order written. All are gauges: each is the value of the last run. */
export const FAMILIES = [
  ['musickpi_last_run_status', 'Whether the last run of the command succeeded (1) or failed (0).'],
  ['musickpi_last_run_exit_code', 'Exit status of the last run of the command (0 ok, 65 bad data, 69 unavailable, ...).'],
  ['musickpi_last_run_timestamp_seconds', 'When the last run of the command ended, in seconds since the epoch.'],
  ['musickpi_last_success_timestamp_seconds', 'When the last successful run of the command ended, in seconds since the epoch.'],
  ['musickpi_run_duration_seconds', 'How long the last run of the command took, in seconds.'],
  ['musickpi_files_read', 'Stream files the last run read as new input.'],
  ['musickpi_rows_read', 'Stream data rows the last run read as new input.'],
  ['musickpi_complete_rows', 'Stream rows of the last run that fed the KPIs.'],
  ['musickpi_rejected_rows', 'Stream rows the last run rejected, by reason.'],
  ['musickpi_rows_written', 'KPI rows the last run wrote, by table.'],
] as const;

export type FamilyName = (typeof FAMILIES)[number][0];
const KNOWN = new Set<string>(FAMILIES.map(([n]) => n));
const LAST_SUCCESS: FamilyName = 'musickpi_last_success_timestamp_seconds';

/** The samples of one run, each labelled with its command. */
export function runSamples(e: RunEnd, previousSuccess: number | undefined): Sample[] {
  const command = e.command;
  const s = (name: FamilyName, value: number, labels: Record<string, string> = {}): Sample => ({
    name,
    labels: { command, ...labels },
    value,
  });
  const ended = e.finishedAt.getTime() / 1000;
  const ok = e.exitCode === 0;
  const out: Sample[] = [
    s('musickpi_last_run_status', ok ? 1 : 0),
    s('musickpi_last_run_exit_code', e.exitCode),
    s('musickpi_last_run_timestamp_seconds', ended),
  ];
  const success = ok ? ended : previousSuccess;
  if (success !== undefined) out.push(s(LAST_SUCCESS, success));
  out.push(s('musickpi_run_duration_seconds', Math.max(0, e.finishedAt.getTime() - e.startedAt.getTime()) / 1000));
  const report = asRunReport(e.result);
  if (report) {
    out.push(s('musickpi_files_read', report.totals.files));
    out.push(s('musickpi_rows_read', report.totals.rowsRead));
    out.push(s('musickpi_complete_rows', report.totals.completeRows));
    for (const reason of REJECT_REASONS) out.push(s('musickpi_rejected_rows', report.totals.rejected[reason] ?? 0, { reason }));
    for (const [table, rows] of Object.entries(report.rowsWritten)) out.push(s('musickpi_rows_written', rows, { table }));
  }
  return out;
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

function byCommand(x: Sample): number {
  const i = PIPELINE_COMMANDS.indexOf(x.labels.command as CommandName);
  return i < 0 ? PIPELINE_COMMANDS.length : i;
}

/** The text exposition of samples of musickpi's families: HELP and TYPE once per family present. */
export function formatExposition(samples: readonly Sample[]): string {
  const lines: string[] = [];
  for (const [name, help] of FAMILIES) {
    // Grouped by command (a stable sort: reasons and tables keep their order within a command).
    const family = samples.filter((x) => x.name === name).sort((a, b) => byCommand(a) - byCommand(b));
    if (family.length === 0) continue;
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (const x of family) {
      const labels = Object.entries(x.labels)
        .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
        .join(',');
      lines.push(`${name}${labels ? `{${labels}}` : ''} ${formatValue(x.value)}`);
    }
  }
  return lines.length ? lines.join('\n') + '\n' : '';
}

/** Reads back the sample lines of a text exposition (comments, timestamps and unknown lines are skipped). */
export function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    const body = m[3] ?? '';
    const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?/gy;
    let lm: RegExpExecArray | null;
    let at = 0;
    while ((lm = re.exec(body))) {
      labels[lm[1]] = lm[2].replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      at = re.lastIndex;
    }
    if (body.slice(at).trim() !== '') continue;
    const v = m[4] === '+Inf' ? Infinity : m[4] === '-Inf' ? -Infinity : Number(m[4]);
    if (Number.isNaN(v) && m[4] !== 'NaN') continue;
    out.push({ name: m[1], labels, value: v });
  }
  return out;
}

async function readIfThere(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
}

/**
 * Writes this run's metrics into `path`, keeping the series of other commands found there.
 * Through a temporary file in the same folder and a rename: the collector never reads half a
 * file (it reads only *.prom, so the temporary name does not end so).
 */
export async function writeMetricsFile(path: string, e: RunEnd): Promise<void> {
  const previous = parseExposition(await readIfThere(path)).filter((x) => KNOWN.has(x.name));
  const lastSuccess = previous.find((x) => x.name === LAST_SUCCESS && x.labels.command === e.command)?.value;
  const kept = previous.filter((x) => x.labels.command !== e.command);
  const text = formatExposition([...kept, ...runSamples(e, lastSuccess)]);
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, text, { mode: 0o644 });
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}

export const PUSH_TIMEOUT_MS = 5000;

/**
 * Pushes this run's metrics to the group job="musickpi", command="<command>". A success replaces
 * the group (PUT); a failure replaces only the families it sends (POST) and sends no last success
 * timestamp, so the Pushgateway keeps the one of the last success.
 */
export async function pushMetrics(url: string, e: RunEnd, timeoutMs = PUSH_TIMEOUT_MS): Promise<void> {
  const ok = e.exitCode === 0;
  // The grouping key's labels must not appear on the pushed samples themselves.
  const samples = runSamples(e, undefined)
    .filter((x) => ok || x.name !== LAST_SUCCESS)
    .map((x) => {
      const { command: _command, ...labels } = x.labels;
      return { ...x, labels };
    });
  await send({
    method: ok ? 'PUT' : 'POST',
    url: `${url.replace(/\/+$/, '')}/metrics/job/musickpi/command/${encodeURIComponent(e.command)}`,
    body: formatExposition(samples),
    headers: { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' },
    timeoutMs,
    retries: 1,
  });
}

export function metricsObserver(config: Readonly<Config>, warn: (message: string) => void): RunObserver {
  const { metricsFile, pushgateway } = config.observe;
  const message = (err: unknown) => (err instanceof Error ? err.message : String(err));
  return {
    name: 'metrics',
    start: () => Promise.resolve(),
    finish: async (e) => {
      if (metricsFile) {
        await writeMetricsFile(metricsFile, e).catch((err: unknown) =>
          warn(`metrics: cannot write --metrics-file ${metricsFile}: ${message(err)}`),
        );
      }
      if (pushgateway) {
        await pushMetrics(pushgateway, e).catch((err: unknown) =>
          warn(`metrics: cannot push to the Pushgateway ${pushgateway}: ${message(err)}`),
        );
      }
    },
  };
}
