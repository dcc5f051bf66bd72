import { spawn } from 'node:child_process';
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
  json: any;
}

export function runCli(
  args: string[],
  opts: { env?: Record<string, string | undefined>; cwd?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const env: Record<string, string | undefined> = { ...process.env, CI: 'true', ...opts.env };
    for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
    const child = spawn(process.execPath, ['--openssl-legacy-provider', BIN, ...args], {
      cwd: opts.cwd ?? REPO,
      env: env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      let json: any;
      try {
        json = JSON.parse(stdout);
      } catch {
        json = undefined;
      }
      resolvePromise({ code, signal, stdout, stderr, json });
    });
  });
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
