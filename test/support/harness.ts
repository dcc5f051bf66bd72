// Helpers for the reliability suites (faults, signals, flaky services, concurrency): snapshots
// of a lake / the KPI tables / the ledger to compare a damaged-then-recovered run with one clean
// run, and a small concurrency pool. The CLI child itself comes from spawnCli in cli.ts.

import { createHash } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import pg from 'pg';

/** Variables that would steer the CLI away from the warehouse a test chooses. */
export const NO_WAREHOUSE_ENV: Record<string, undefined> = {
  DATABASE_URL: undefined,
  PGHOST: undefined,
  PGPORT: undefined,
  PGDATABASE: undefined,
  PGUSER: undefined,
  PGPASSWORD: undefined,
  MUSICKPI_WAREHOUSE: undefined,
  MKPI_TEST_FAULT: undefined,
  MKPI_TEST_PAUSE: undefined,
};

// ---------------------------------------------------------------------------------------------
// Lakes

export type LakeSnapshot = Record<string, string>;

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Every file under `dir` (dotfiles, i.e. temp files, included) → sha256 of its bytes. */
export function snapshotLocalLake(dir: string, opts: { skip?: string[] } = {}): LakeSnapshot {
  const out: LakeSnapshot = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const key = relative(dir, p).split('\\').join('/');
      if (opts.skip?.some((s) => key === s.replace(/\/$/, '') || key.startsWith(s))) continue;
      if (statSync(p).isDirectory()) walk(p);
      else out[key] = sha(readFileSync(p));
    }
  };
  walk(dir);
  return out;
}

/** Every object under s3://bucket/prefix/ → sha256 of its bytes, keys relative to the prefix. */
export async function snapshotS3Lake(
  client: S3Client,
  bucket: string,
  prefix: string,
  opts: { skip?: string[] } = {},
): Promise<LakeSnapshot> {
  const out: LakeSnapshot = {};
  const base = prefix ? prefix.replace(/\/$/, '') + '/' : '';
  let token: string | undefined;
  for (;;) {
    const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: base, ContinuationToken: token }));
    for (const o of r.Contents ?? []) {
      const key = o.Key!.slice(base.length);
      if (opts.skip?.some((s) => key.startsWith(s))) continue;
      const body = await client.send(new GetObjectCommand({ Bucket: bucket, Key: o.Key! }));
      out[key] = sha(await body.Body!.transformToByteArray());
    }
    if (!r.IsTruncated) break;
    token = r.NextContinuationToken;
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** The text of every rejects file under rejects/ of a snapshot source. */
export function localRejects(dir: string): string[] {
  const root = join(dir, 'rejects');
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .sort()
    .flatMap((run) => readdirSync(join(root, run)).map((f) => readFileSync(join(root, run, f), 'utf8')));
}

export async function s3Rejects(client: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/rejects/` }));
  const out: string[] = [];
  for (const o of r.Contents ?? []) {
    const body = await client.send(new GetObjectCommand({ Bucket: bucket, Key: o.Key! }));
    out.push(await body.Body!.transformToString());
  }
  return out;
}

/** A private copy of a folder (a fixture lake plus whatever a test added), timestamps kept. */
export function copyDir(from: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'musickpi-lake-'));
  chmodSync(dir, 0o755);
  cpSync(from, dir, { recursive: true, preserveTimestamps: true });
  return dir;
}

/** Uploads every file of a local folder to s3://bucket/prefix/. */
export async function uploadDir(client: S3Client, dir: string, bucket: string, prefix: string): Promise<void> {
  const walk = (d: string): string[] =>
    readdirSync(d).flatMap((n) => (statSync(join(d, n)).isDirectory() ? walk(join(d, n)) : [join(d, n)]));
  for (const file of walk(dir)) {
    const key = `${prefix}/${relative(dir, file).split('\\').join('/')}`;
    const body = readFileSync(file);
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.length }));
  }
}

// ---------------------------------------------------------------------------------------------
// Warehouse

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  client.setTypeParser(1082, (v: string) => v);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export interface WarehouseSnapshot {
  hourly: unknown[];
  genre: unknown[];
  /** The ledger without run ids and timestamps. */
  ledger: unknown[];
  ledgerDates: unknown[];
}

/**
 * One query returning the whole snapshot as one JSON value (column "s"), so that it reads the
 * same through pg here and through `musickpi query --json` (embedded warehouse).
 */
export function snapshotSql(schema = 'reporting_schema'): string {
  const agg = (from: string, order: string) => `(select coalesce(json_agg(x order by ${order}), '[]'::json) from (${from}) x)`;
  return `select json_build_object(
    'hourly', ${agg(`select * from ${schema}.hourly_kpis`, 'listen_date, listen_hour')},
    'genre', ${agg(`select * from ${schema}.genre_level_kpis`, 'listen_date, track_genre')},
    'ledger', ${agg(
      `select file_key, fingerprint, size, rows, archived_key, archived_fingerprint, hourly_loaded, genre_loaded from ${schema}.musickpi_ledger`,
      'file_key, fingerprint',
    )},
    'ledgerDates', ${agg(`select * from ${schema}.musickpi_ledger_dates`, 'file_key, fingerprint, listen_date')}
  ) as s`;
}

export async function snapshotWarehouse(url: string, schema = 'reporting_schema'): Promise<WarehouseSnapshot> {
  return withClient(url, async (c) => {
    const exists = (await c.query(`select to_regclass($1) as t`, [`${schema}.musickpi_ledger`])).rows[0].t !== null;
    if (!exists) return { hourly: [], genre: [], ledger: [], ledgerDates: [] };
    return (await c.query(snapshotSql(schema))).rows[0].s as WarehouseSnapshot;
  });
}

/** Runs SQL on the database of `url`. */
export function sql(url: string, text: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
  return withClient(url, async (c) => (await c.query(text, params)).rows);
}

/**
 * Waits until no musickpi session is left on the database: after a SIGKILL the server notices
 * the dead client's sockets (rolling back, dropping the run lock) a moment later.
 */
export async function waitNoSessions(url: string, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    const n = (
      await sql(
        url,
        `select count(*)::int as n from pg_stat_activity
          where datname = current_database() and pid <> pg_backend_pid() and application_name like 'musickpi%'`,
      )
    )[0].n as number;
    if (n === 0) return;
    if (Date.now() > until) throw new Error(`${n} musickpi session(s) still open after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Backend pids of the CLI's sessions on the database of `url` (lock session excluded unless asked). */
export async function cliBackends(url: string, which: 'work' | 'lock'): Promise<{ pid: number; query: string; state: string }[]> {
  const app = which === 'lock' ? 'musickpi (run lock)' : 'musickpi';
  return (await sql(url, `select pid, query, state from pg_stat_activity where datname = current_database() and application_name = $1`, [
    app,
  ])) as { pid: number; query: string; state: string }[];
}

// ---------------------------------------------------------------------------------------------
// Processes

/** Pids of live (non-zombie) processes whose command line mentions `text` (e.g. a data dir). */
export function processesMentioning(text: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8');
      if (!cmd.includes(text)) continue;
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
      if (state !== 'Z' && state !== 'X') out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

/** Runs tasks with at most `limit` at a time; each task's promise is returned at once. */
export function pool(limit: number): <T>(task: () => Promise<T>) => Promise<T> {
  let active = 0;
  const queue: (() => void)[] = [];
  const next = () => {
    if (active >= limit) return;
    const start = queue.shift();
    if (start) {
      active++;
      start();
    }
  };
  return <T>(task: () => Promise<T>) =>
    new Promise<T>((resolve, reject) => {
      queue.push(() => {
        task()
          .then(resolve, reject)
          .finally(() => {
            active--;
            next();
          });
      });
      next();
    });
}

/** A promise that never rejects unhandled, for results awaited later by an `it`. */
export function settleLater<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}
