// The engines as child processes, each preloaded with rss-probe.js: whole-process wall, CPU time
// and peak RSS of every run.

import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, BenchFailure, DIST_BENCH, PROBE, REPO, THREADS } from './env.js';
import type { Row } from './differential.js';

export interface ChildRun {
  wallMs: number;
  maxRssMb: number;
  cpuMs: number;
  code: number | null;
  stdout: string;
  stderr: string;
}

export const CHILD_ENV: NodeJS.ProcessEnv = (() => {
  const env: NodeJS.ProcessEnv = { ...process.env, MKPI_BENCH_PROBE: '1' };
  for (const k of ['DATABASE_URL', 'MKPI_TEST_FAULT', 'MKPI_TEST_PAUSE']) delete env[k];
  return env;
})();

export function runChild(script: string, argv: string[], opts: { env?: NodeJS.ProcessEnv; nodeFlags?: string[] } = {}): Promise<ChildRun> {
  return new Promise((resolvePromise, reject) => {
    const start = performance.now();
    const child = spawn(process.execPath, [...(opts.nodeFlags ?? []), '--import', PROBE, script, ...argv], {
      cwd: REPO,
      env: { ...CHILD_ENV, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const wallMs = performance.now() - start;
      const m = /MKPI_BENCH_MAXRSS_KB=(\d+) MKPI_BENCH_CPU_MS=(\d+)/.exec(stderr);
      resolvePromise({
        wallMs,
        maxRssMb: m ? Number(m[1]) / 1024 : NaN,
        cpuMs: m ? Number(m[2]) : NaN,
        code,
        stdout,
        stderr: stderr.replace(/\n?MKPI_BENCH_MAXRSS_KB=.*\n/, ''),
      });
    });
  });
}

export interface Report {
  ok: boolean;
  error: { code: string; message: string } | null;
  totals: { rowsRead: number; completeRows: number; bytes: number };
  timings: Record<string, number>;
  loaded?: boolean;
  archived?: unknown[];
  reread?: { name: string; bytes: number; rows: number; rowsUsed: number }[];
  dateState?: { restored: string[]; saved: string[] } | null;
}

export function parseReport(r: ChildRun, what: string): Report {
  let report: Report;
  try {
    report = JSON.parse(r.stdout) as Report;
  } catch {
    throw new BenchFailure(`${what}: exit ${r.code}, no JSON report\n${r.stderr.slice(-2000)}`);
  }
  if (r.code !== 0 || !report.ok)
    throw new BenchFailure(`${what}: exit ${r.code}: ${JSON.stringify(report.error)}\n${r.stderr.slice(-2000)}`);
  return report;
}

export async function musickpi(
  argv: string[],
  what: string,
  opts: { env?: NodeJS.ProcessEnv; nodeFlags?: string[] } = {},
): Promise<{ run: ChildRun; report: Report }> {
  const run = await runChild(BIN, [...argv, '--json', '--quiet'], {
    env: opts.env,
    nodeFlags: ['--openssl-legacy-provider', ...(opts.nodeFlags ?? [])],
  });
  return { run, report: parseReport(run, what) };
}

/** A floor (floors.ts) as a child process: `read` one thread, or `parse` on THREADS worker threads. */
export async function floor(mode: 'read' | 'parse', files: string[]): Promise<{ run: ChildRun; bytes: number; records: number }> {
  const run = await runChild(join(DIST_BENCH, 'floors.js'), [mode, ...(mode === 'parse' ? ['--threads', String(THREADS)] : []), ...files]);
  if (run.code !== 0) throw new BenchFailure(`floor ${mode}: exit ${run.code}\n${run.stderr.slice(-2000)}`);
  const r = JSON.parse(run.stdout) as { bytes: number; records: number };
  return { run, bytes: r.bytes, records: r.records };
}

/** `cat FILES > /dev/null`: the page-cache read floor without Node's start-up (wall only; no probe in cat). */
export function catFloor(files: string[]): Promise<ChildRun> {
  return new Promise((resolvePromise, reject) => {
    const devNull = openSync('/dev/null', 'w');
    const start = performance.now();
    const child = spawn('cat', files, { stdio: ['ignore', devNull, 'pipe'] });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (e) => {
      closeSync(devNull);
      reject(e);
    });
    child.on('close', (code) => {
      closeSync(devNull);
      if (code !== 0) reject(new BenchFailure(`cat: exit ${code}: ${stderr}`));
      else resolvePromise({ wallMs: performance.now() - start, maxRssMb: NaN, cpuMs: NaN, code, stdout: '', stderr });
    });
  });
}

export interface DuckOut {
  hourly: Row[];
  genre: Row[];
  completeRows: number;
}

/** The DuckDB peer: the spec-complete query, or with `simple` the simplest user query (duckdb-kpis.ts). */
export async function duckdb(lake: string, outFile: string, simple = false): Promise<{ run: ChildRun; result: DuckOut }> {
  const argv = ['--lake', lake, '--threads', String(THREADS), '--out', outFile, ...(simple ? ['--simple'] : [])];
  const run = await runChild(join(DIST_BENCH, 'duckdb-kpis.js'), argv);
  if (run.code !== 0) throw new BenchFailure(`DuckDB peer: exit ${run.code}\n${run.stderr.slice(-2000)}`);
  return { run, result: JSON.parse(readFileSync(outFile, 'utf8')) as DuckOut };
}
