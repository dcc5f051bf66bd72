// The one way tests start the built CLI (bin/musickpi, which runs dist/): as users run it, with
// plain `node` and no extra flags. spawnCli hands back the live child (to watch, pause, signal);
// runCli waits for it to end.

import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { expect } from 'chai';

export const REPO = resolve(import.meta.dirname, '..', '..');
export const BIN = join(REPO, 'bin', 'musickpi');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, undefined when it is not JSON. */
  json: any;
}

export interface CliOptions {
  /** Over process.env and CI=true (no spinner); a variable set to undefined is removed. */
  env?: Record<string, string | undefined>;
  /** Default: the repository root. */
  cwd?: string;
  /** SIGKILL after this long (default 120 s): a hung CLI fails its test instead of the whole run. */
  timeoutMs?: number;
  /**
   * Under a pseudo-terminal of 0×0 (util-linux `script`, stdin not a terminal): the CLI's stdout
   * and stderr both arrive on stdout, and the exit status is the CLI's. Signals go to `script`.
   */
  pty?: boolean;
}

export interface CliChild {
  child: ChildProcess;
  pid: number;
  /** stdout so far. */
  stdout(): string;
  /** stderr so far. */
  stderr(): string;
  /** Resolves once stderr contains `text` (rejects if the process ends first, or after `ms`). */
  waitFor(text: string, ms?: number): Promise<void>;
  /** Resolves once the process has announced the pause at `point` (MKPI_TEST_PAUSE). */
  paused(point: string, ms?: number): Promise<void>;
  /** Sends SIGUSR2: the paused process goes on. Quiet if it has exited. */
  resume(): void;
  /** Sends `sig` (default SIGKILL). Quiet if the process has exited. */
  kill(sig?: NodeJS.Signals): void;
  /** Resolves when the process has ended and its output is closed. */
  done: Promise<CliResult>;
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

let cacheHome: string | undefined;

/** One XDG_CACHE_HOME for the CLIs this test process starts, removed at exit. */
function testCacheHome(): string {
  if (cacheHome === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'musickpi-cache-'));
    cacheHome = dir;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return cacheHome;
}

/** Starts the built CLI with `args`; see CliOptions. */
export function spawnCli(args: string[], opts: CliOptions = {}): CliChild {
  // One connection attempt: many tests point at a closed port on purpose, and the retries have
  // tests of their own (test/integration/pg-connect.test.ts).
  // The dimension cache stays on (so the e2e runs exercise it) but out of the tester's home.
  const env: Record<string, string | undefined> = {
    ...process.env,
    CI: 'true',
    MUSICKPI_CONNECT_TIMEOUT: '0',
    XDG_CACHE_HOME: testCacheHome(),
    ...opts.env,
  };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  const argv = [process.execPath, BIN, ...args];
  const [file, fileArgs] = opts.pty ? ['script', ['-qec', argv.map(quote).join(' '), '/dev/null']] : [argv[0], argv.slice(1)];
  const child = spawn(file, fileArgs, { cwd: opts.cwd ?? REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  // Decoded as a stream: a multi-byte character split between two chunks stays whole.
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  let stdout = '';
  let stderr = '';
  let exited = false;
  const watchers = new Set<() => void>();
  child.stdout.on('data', (d: string) => (stdout += d));
  child.stderr.on('data', (d: string) => {
    stderr += d;
    for (const w of [...watchers]) w();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
  const done = new Promise<CliResult>((resolvePromise, reject) => {
    child.on('error', (err) => {
      exited = true;
      clearTimeout(timer);
      for (const w of [...watchers]) w();
      reject(err);
    });
    child.on('close', (code, signal) => {
      exited = true;
      clearTimeout(timer);
      for (const w of [...watchers]) w();
      let json: unknown;
      try {
        json = JSON.parse(stdout);
      } catch {
        json = undefined;
      }
      resolvePromise({ code, signal, stdout, stderr, json });
    });
  });
  // Callers that only watch the child (waitFor, kill) must not leave a rejection unhandled.
  done.catch(() => undefined);
  const waitFor = (text: string, ms = 60_000) =>
    new Promise<void>((resolveWait, reject) => {
      const check = () => {
        if (stderr.includes(text)) {
          cleanup();
          resolveWait();
        } else if (exited) {
          cleanup();
          reject(new Error(`the CLI exited before printing ${JSON.stringify(text)}; stderr:\n${stderr}\nstdout:\n${stdout}`));
        }
      };
      const t = setTimeout(() => {
        cleanup();
        reject(new Error(`no ${JSON.stringify(text)} within ${ms} ms; stderr:\n${stderr}`));
      }, ms);
      const cleanup = () => {
        clearTimeout(t);
        watchers.delete(check);
      };
      watchers.add(check);
      check();
    });
  const kill = (sig: NodeJS.Signals = 'SIGKILL') => {
    if (exited) return;
    try {
      child.kill(sig);
    } catch {
      // gone meanwhile
    }
  };
  return {
    child,
    pid: child.pid!,
    stdout: () => stdout,
    stderr: () => stderr,
    waitFor,
    paused: (point, ms) => waitFor(`MKPI_TEST_PAUSED ${point}\n`, ms),
    resume: () => kill('SIGUSR2'),
    kill,
    done,
  };
}

/** Runs the built CLI to its end. */
export function runCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  return spawnCli(args, opts).done;
}

const copies: string[] = [];
// Test lakes are small but many: remove them when the test process ends.
process.on('exit', () => {
  for (const dir of copies) rmSync(dir, { recursive: true, force: true });
});

/** A private copy of a fixture lake (tests move and add files). */
export function copyLake(fixture: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'musickpi-lake-'));
  copies.push(dir);
  chmodSync(dir, 0o755);
  cpSync(join(REPO, 'fixtures', fixture), dir, { recursive: true, preserveTimestamps: true });
  return dir;
}

export async function queryRows(url: string, sql: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    client.setTypeParser(1082, (v: string) => v);
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

export async function tableRows(url: string, table: 'hourly_kpis' | 'genre_level_kpis', schema = 'reporting_schema') {
  const order = table === 'hourly_kpis' ? 'listen_date, listen_hour' : 'listen_date, track_genre';
  return queryRows(url, `select * from ${schema}.${table} order by ${order}`);
}

function parseCsvSimple(text: string): Record<string, string>[] {
  const [head, ...lines] = text.trim().split('\n');
  const cols = head.split(',');
  return lines.map((l) => Object.fromEntries(l.split(',').map((v, i) => [cols[i], v])));
}

/** Compares table rows to an expected CSV: numbers with relative tolerance 1e-9, empty = NULL. */
export function expectTable(actual: Record<string, unknown>[], expectedCsv: string): void {
  const expected = parseCsvSimple(expectedCsv);
  expect(actual.length, 'row count').to.equal(expected.length);
  expected.forEach((row, i) => {
    for (const [col, want] of Object.entries(row)) {
      const got = actual[i][col];
      const where = `row ${i} ${col}`;
      if (want === '') expect(got, where).to.equal(null);
      else if (typeof got === 'number') {
        const w = Number(want);
        expect(Math.abs(got - w), `${where}: ${got} vs ${w}`).to.be.at.most(1e-9 * Math.max(1, Math.abs(w)));
      } else expect(String(got), where).to.equal(want);
    }
  });
}

export function pgUrl(): string {
  const url = process.env.MKPI_TEST_PG_URL;
  if (!url) throw new Error('MKPI_TEST_PG_URL is not set: run through mocha with the global fixtures');
  return url;
}
