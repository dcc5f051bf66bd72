// One real PostgreSQL for the whole mocha run (the embedded manager of lib/, on a free port in
// a fresh temp home); each test file takes its own database from it so files cannot see each
// other's tables. TEST_DATABASE_URL points the run at an existing server instead.

import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbedded, type EmbeddedServer } from '../../lib/adapters/warehouse/embedded/index.js';
import { processAlive } from '../../lib/adapters/warehouse/embedded/process.js';

const PREFIX = 'musickpi-test-pg-';

/**
 * Servers of earlier runs whose mocha died without teardown (a crash skips even 'exit'
 * handlers) would run forever in their deleted-on-success temp homes: stop and remove them.
 * Homes whose owner still lives belong to a concurrent run and are left alone.
 */
async function reapOrphans(): Promise<void> {
  const tmp = os.tmpdir();
  for (const name of await fs.readdir(tmp).catch(() => [] as string[])) {
    if (!name.startsWith(PREFIX)) continue;
    const dir = path.join(tmp, name);
    const owner = await fs
      .readFile(path.join(dir, 'owner.json'), 'utf8')
      .then((t) => JSON.parse(t) as { nodePid?: number; nodeStart?: string; postgresPid?: number | null; postgresStart?: string })
      .catch(() => undefined);
    if (owner?.nodePid && processAlive(owner.nodePid, owner.nodeStart)) continue;
    if (!owner) {
      // No owner: a run between mkdtemp and start, or a cleanly stopped leftover. Only old ones go.
      const st = await fs.stat(dir).catch(() => undefined);
      if (!st || Date.now() - st.mtimeMs < 3_600_000) continue;
    }
    const pid = owner?.postgresPid;
    if (pid && processAlive(pid, owner.postgresStart)) {
      try {
        process.kill(pid, 'SIGINT');
      } catch {
        // already gone
      }
      for (let i = 0; i < 100 && processAlive(pid, owner.postgresStart); i++) await new Promise((r) => setTimeout(r, 50));
    }
    await fs.rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

let server: EmbeddedServer | undefined;
let home: string | undefined;
let starting: Promise<string> | undefined;
let counter = 0;

/** Starts the shared server unless TEST_DATABASE_URL is set or it already runs; returns its URL. */
export function startTestPostgres(): Promise<string> {
  starting ??= (async () => {
    const given = process.env.TEST_DATABASE_URL;
    if (given) {
      process.env.MKPI_TEST_PG_URL = given;
      return given;
    }
    await reapOrphans();
    home = await fs.mkdtemp(path.join(os.tmpdir(), PREFIX));
    // mkdtemp makes 0700; as root the server runs as "postgres", which must enter the home.
    await fs.chmod(home, 0o755);
    server = await startEmbedded({ home, durable: false, log: (l) => process.env.MUSICKPI_TEST_PG_LOG && console.error(l) });
    process.env.MKPI_TEST_PG_URL = server.url;
    return server.url;
  })();
  return starting;
}

export async function stopTestPostgres(): Promise<void> {
  const s = server;
  const h = home;
  server = undefined;
  home = undefined;
  starting = undefined;
  if (s) await s.stop();
  if (h) await fs.rm(h, { recursive: true, force: true });
}

/** URL of the shared server's maintenance database. */
export function testDatabaseUrl(): string {
  const url = process.env.MKPI_TEST_PG_URL ?? process.env.TEST_DATABASE_URL;
  if (!url) throw new Error('no test PostgreSQL: run through mocha (global fixtures) or set TEST_DATABASE_URL');
  return url;
}

/** The same URL with another database name. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = '/' + encodeURIComponent(database);
  return u.toString();
}

/** Creates an empty database with a unique name and returns its URL. */
export async function freshDatabase(name = 'mkpi'): Promise<string> {
  const base = process.env.MKPI_TEST_PG_URL || process.env.TEST_DATABASE_URL ? testDatabaseUrl() : await startTestPostgres();
  const safe = name
    .toLowerCase()
    .replace(/[^a-z0-9_]/g, '_')
    .slice(0, 30);
  const db = `${safe}_${process.pid}_${++counter}_${randomBytes(3).toString('hex')}`;
  const client = new pg.Client({ connectionString: base });
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query(`CREATE DATABASE "${db}"`);
  } finally {
    await client.end();
  }
  return withDatabase(base, db);
}
