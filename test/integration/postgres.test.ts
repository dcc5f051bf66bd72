// PostgresWarehouse against a real PostgreSQL (the run's shared embedded server, one fresh
// database per test so no test sees another's tables or locks).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { MkpiError } from '../../lib/domain/errors.js';
import { PostgresWarehouse } from '../../lib/adapters/warehouse/postgres/postgres-warehouse.js';
import type { GenreRow, HourlyRow } from '../../lib/domain/kpi.js';
import type { LedgerEntry } from '../../lib/domain/ledger.js';
import type { LoadBatch } from '../../lib/domain/warehouse.js';
import { freshDatabase, testDatabaseUrl } from '../support/pg.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SCHEMA = 'reporting_schema';

function hourly(date: string, hours = 24, salt = 0): HourlyRow[] {
  return Array.from({ length: hours }, (_, h) => ({
    listen_date: date,
    listen_hour: h,
    unique_listeners: 10 + h + salt,
    listen_counts: 20 + h + salt,
    top_artist: h % 5 === 0 ? null : `Artist "${h}", the ${salt}`,
    avg_sessions_per_user: (20 + h) / (10 + h),
    diversity_index: 1 / 3 + h / 1e6,
    most_engaged_age_group: h % 7 === 0 ? null : '26-35',
  }));
}

function genre(date: string, n = 5, salt = 0): GenreRow[] {
  return Array.from({ length: n }, (_, i) => ({
    listen_date: date,
    track_genre: i === 1 ? '' : `genre-${i},\n"x"`,
    listen_count: 100 + i + salt,
    popularity_index: 0.1 + i / 7,
    average_duration: 210.123456789 + i,
    most_popular_track_id: `t${i}${salt}`,
  }));
}

function entry(fileKey: string, dates: string[], tables: LedgerEntry['tables'], runId = 'r1'): LedgerEntry {
  return { fileKey, fingerprint: `fp-${fileKey}`, size: 1234, rows: 5_000_000_000, dates, tables, runId, archivedKey: null };
}

function batch(dates: string[], opts: { salt?: number; runId?: string; files?: LedgerEntry[] } = {}): LoadBatch {
  return {
    runId: opts.runId ?? 'r1',
    hourly: { dates, rows: dates.flatMap((d) => hourly(d, 24, opts.salt ?? 0)) },
    genre: { dates, rows: dates.flatMap((d) => genre(d, 5, opts.salt ?? 0)) },
    ledger: opts.files ?? [entry('streams/a.csv', dates, ['hourly', 'genre'], opts.runId)],
  };
}

/** Everything a load may touch, in a stable order, read over a separate connection. */
async function snapshot(url: string): Promise<unknown> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => undefined);
  await c.connect();
  try {
    const out: Record<string, unknown> = {};
    for (const [t, order] of [
      ['hourly_kpis', 'listen_date, listen_hour'],
      ['genre_level_kpis', 'listen_date, track_genre'],
      ['musickpi_ledger', 'file_key, fingerprint'],
      ['musickpi_ledger_dates', 'file_key, fingerprint, listen_date'],
    ]) {
      // loaded_at changes on every load by design; everything else must be stable.
      const cols = t === 'musickpi_ledger' ? 'file_key, fingerprint, size, rows, run_id, archived_key, hourly_loaded, genre_loaded' : '*';
      out[t] = (await c.query({ text: `SELECT ${cols} FROM ${SCHEMA}.${t} ORDER BY ${order}`, rowMode: 'array' })).rows;
    }
    return out;
  } finally {
    await c.end();
  }
}

async function rejects(p: Promise<unknown>, code: string): Promise<MkpiError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof MkpiError, `expected an MkpiError, got ${String(err)}`);
    assert.equal(err.code, code, `${err.code}: ${err.message}`);
    return err;
  }
  assert.fail(`expected rejection with ${code}`);
}

async function adminQuery(url: string, sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => undefined);
  await c.connect();
  try {
    return await c.query(sql, params);
  } finally {
    await c.end();
  }
}

describe('PostgresWarehouse (real PostgreSQL)', function () {
  this.timeout(60_000);
  let url: string;
  let wh: PostgresWarehouse;
  const others: PostgresWarehouse[] = [];

  function another(opts: { lockTimeoutMs?: number } = {}): PostgresWarehouse {
    const w = new PostgresWarehouse(url, { schema: SCHEMA, ...opts });
    others.push(w);
    return w;
  }

  beforeEach(async () => {
    url = await freshDatabase('pgwh');
    wh = new PostgresWarehouse(url, { schema: SCHEMA });
  });

  afterEach(async () => {
    await wh.close();
    for (const w of others.splice(0)) await w.close();
  });

  it('init is idempotent, concurrent-safe, and isInitialised creates nothing', async () => {
    assert.equal(await wh.isInitialised(), false);
    assert.equal(await wh.isInitialised(), false, 'checking must not create the schema');
    const schemas = await adminQuery(url, 'SELECT 1 FROM pg_namespace WHERE nspname = $1', [SCHEMA]);
    assert.equal(schemas.rowCount, 0);
    await Promise.all([wh.init(), another().init(), another().init()]);
    await wh.init();
    assert.equal(await wh.isInitialised(), true);
    const pk = await adminQuery(
      url,
      `SELECT c.relname, pg_get_constraintdef(k.oid) AS def FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        WHERE k.contype = 'p' AND c.relnamespace = $1::regnamespace ORDER BY 1`,
      [SCHEMA],
    );
    assert.deepEqual(
      pk.rows.map((r) => `${r.relname}: ${r.def}`),
      [
        'genre_level_kpis: PRIMARY KEY (listen_date, track_genre)',
        'hourly_kpis: PRIMARY KEY (listen_date, listen_hour)',
        'musickpi_lake: PRIMARY KEY (id)',
        'musickpi_ledger: PRIMARY KEY (file_key, fingerprint)',
        'musickpi_ledger_dates: PRIMARY KEY (file_key, fingerprint, listen_date)',
        'musickpi_listen_files: PRIMARY KEY (file_id)',
        'musickpi_runs: PRIMARY KEY (run_id)',
      ],
    );
  });

  it('init refuses a pre-existing table whose columns differ', async () => {
    await adminQuery(url, `CREATE SCHEMA ${SCHEMA}; CREATE TABLE ${SCHEMA}.hourly_kpis (listen_date text, listen_hour int)`);
    const err = await rejects(wh.init(), 'MKPI_CONFIG');
    assert.match(err.message, /hourly_kpis/);
  });

  it('loading the same batch twice leaves the tables exactly as after one load', async () => {
    await wh.init();
    const b = batch(['2024-06-01', '2024-06-02']);
    const first = await wh.load(b);
    assert.deepEqual(first, { hourlyRowsWritten: 48, genreRowsWritten: 10, hourlyRowsDeleted: 0, genreRowsDeleted: 0 });
    const once = await snapshot(url);
    const second = await wh.load(b);
    assert.deepEqual(second, { hourlyRowsWritten: 48, genreRowsWritten: 10, hourlyRowsDeleted: 48, genreRowsDeleted: 10 });
    assert.deepEqual(await snapshot(url), once);
  });

  it('round-trips values exactly: floats, NULLs, quotes, commas, newlines, empty strings', async () => {
    await wh.init();
    const b = batch(['2024-06-01']);
    await wh.load(b);
    const h = await wh.query(`SELECT * FROM ${SCHEMA}.hourly_kpis ORDER BY listen_hour`);
    assert.deepEqual(h.columns, [
      'listen_date',
      'listen_hour',
      'unique_listeners',
      'listen_counts',
      'top_artist',
      'avg_sessions_per_user',
      'diversity_index',
      'most_engaged_age_group',
    ]);
    assert.deepEqual(
      h.rows,
      b.hourly!.rows.map((r) => [
        r.listen_date,
        r.listen_hour,
        r.unique_listeners,
        r.listen_counts,
        r.top_artist,
        r.avg_sessions_per_user,
        r.diversity_index,
        r.most_engaged_age_group,
      ]),
    );
    const g = await wh.query(`SELECT * FROM ${SCHEMA}.genre_level_kpis ORDER BY listen_count`);
    assert.deepEqual(
      g.rows,
      b.genre!.rows.map((r) => [
        r.listen_date,
        r.track_genre,
        r.listen_count,
        r.popularity_index,
        r.average_duration,
        r.most_popular_track_id,
      ]),
    );
    const n = await wh.query(`SELECT count(*) AS n, sum(rows) AS big FROM ${SCHEMA}.musickpi_ledger`);
    assert.deepEqual(n.rows, [[1, 5_000_000_000]]);
  });

  it('replaces whole covered dates, including dates that no longer have rows, and leaves other dates alone', async () => {
    await wh.init();
    await wh.load(batch(['2024-06-01', '2024-06-02', '2024-06-03']));
    const r = await wh.load({
      runId: 'r2',
      hourly: { dates: ['2024-06-01', '2024-06-02'], rows: hourly('2024-06-01', 3, 9) },
      genre: { dates: ['2024-06-02'], rows: [] },
      ledger: [],
    });
    assert.deepEqual(r, { hourlyRowsWritten: 3, genreRowsWritten: 0, hourlyRowsDeleted: 48, genreRowsDeleted: 5 });
    const h = await wh.query(`SELECT listen_date, count(*) FROM ${SCHEMA}.hourly_kpis GROUP BY 1 ORDER BY 1`);
    assert.deepEqual(h.rows, [
      ['2024-06-01', 3],
      ['2024-06-03', 24],
    ]);
    const g = await wh.query(`SELECT listen_date, count(*) FROM ${SCHEMA}.genre_level_kpis GROUP BY 1 ORDER BY 1`);
    assert.deepEqual(g.rows, [
      ['2024-06-01', 5],
      ['2024-06-03', 5],
    ]);
  });

  it('ledger: loaded tables and dates are unions; markArchived records the archive key', async () => {
    await wh.init();
    await wh.load({
      runId: 'r1',
      hourly: { dates: ['2024-06-01'], rows: hourly('2024-06-01', 2) },
      ledger: [entry('streams/a.csv', ['2024-06-01'], ['hourly'], 'r1')],
    });
    await wh.load({
      runId: 'r2',
      genre: { dates: ['2024-06-02'], rows: genre('2024-06-02', 2) },
      ledger: [
        entry('streams/a.csv', ['2024-06-02'], ['genre'], 'r2'),
        entry('streams/b.csv', ['2024-06-02'], ['genre'], 'r2'),
        entry('streams/b.csv', ['2024-06-02', '2024-06-03'], ['hourly'], 'r2'),
      ],
    });
    await wh.markArchived('streams/a.csv', 'fp-streams/a.csv', 'streams/archived/a.csv');
    await rejects(wh.markArchived('streams/nope.csv', 'x', 'streams/archived/nope.csv'), 'MKPI_INTERNAL');
    assert.deepEqual(await wh.readLedger(), [
      {
        fileKey: 'streams/a.csv',
        fingerprint: 'fp-streams/a.csv',
        size: 1234,
        rows: 5_000_000_000,
        dates: ['2024-06-01', '2024-06-02'],
        tables: ['hourly', 'genre'],
        runId: 'r2',
        archivedKey: 'streams/archived/a.csv',
        contentHash: null,
      },
      {
        fileKey: 'streams/b.csv',
        fingerprint: 'fp-streams/b.csv',
        size: 1234,
        rows: 5_000_000_000,
        dates: ['2024-06-02', '2024-06-03'],
        tables: ['hourly', 'genre'],
        runId: 'r2',
        archivedKey: null,
        contentHash: null,
      },
    ]);
    // A later load of a file already archived keeps its archive location.
    await wh.load({ runId: 'r3', ledger: [entry('streams/a.csv', [], ['hourly'], 'r3')] });
    const a = (await wh.readLedger())[0];
    assert.equal(a.archivedKey, 'streams/archived/a.csv');
    assert.deepEqual(a.tables, ['hourly', 'genre']);
  });

  it('ledger: a content hash once recorded is kept; retire deletes twin rows and their dates in the load', async () => {
    await wh.init();
    await wh.load({
      runId: 'r1',
      ledger: [
        { ...entry('streams/a.csv', ['2024-06-01'], ['hourly', 'genre'], 'r1'), contentHash: 'h-a' },
        { ...entry('streams/a.csv', ['2024-06-01'], ['hourly', 'genre'], 'r1'), fingerprint: 'twin' },
      ],
    });
    await wh.load({ runId: 'r2', ledger: [{ ...entry('streams/a.csv', [], ['hourly'], 'r2'), contentHash: null }] });
    assert.deepEqual(
      (await wh.readLedger()).map((e) => [e.fingerprint, e.contentHash]),
      [
        ['fp-streams/a.csv', 'h-a'],
        ['twin', null],
      ],
    );
    await wh.load({ runId: 'r3', ledger: [], retire: [{ fileKey: 'streams/a.csv', fingerprint: 'twin' }] });
    assert.deepEqual(
      (await wh.readLedger()).map((e) => e.fingerprint),
      ['fp-streams/a.csv'],
    );
    const d = await wh.query(`SELECT fingerprint FROM ${SCHEMA}.musickpi_ledger_dates ORDER BY 1`);
    assert.deepEqual(d.rows, [['fp-streams/a.csv']]);
  });

  for (const step of ['staged', 'merged', 'before-commit'] as const) {
    it(`a failure at '${step}' leaves tables and ledger unchanged`, async () => {
      await wh.init();
      await wh.load(batch(['2024-06-01', '2024-06-02']));
      const before = await snapshot(url);
      const b = batch(['2024-06-02', '2024-06-03'], {
        salt: 7,
        runId: 'r2',
        files: [entry('streams/c.csv', ['2024-06-03'], ['hourly', 'genre'], 'r2')],
      });
      b.onStep = (s) => {
        if (s === step) throw new Error(`injected at ${s}`);
      };
      const err = await rejects(wh.load(b), 'MKPI_INTERNAL');
      assert.match(err.message, new RegExp(`injected at ${step}`));
      assert.deepEqual(await snapshot(url), before);
      // The warehouse stays usable.
      await wh.load(batch(['2024-06-03'], { runId: 'r3' }));
    });
  }

  it("an MkpiError thrown by onStep passes through as is (the CLI's interruption)", async () => {
    await wh.init();
    const b = batch(['2024-06-01']);
    b.onStep = (s) => {
      if (s === 'merged') throw new MkpiError('MKPI_INTERRUPTED', 'interrupted by SIGINT');
    };
    await rejects(wh.load(b), 'MKPI_INTERRUPTED');
    assert.equal((await wh.query(`SELECT count(*) FROM ${SCHEMA}.hourly_kpis`)).rows[0][0], 0);
  });

  it('close() during a load (an interrupted CLI) aborts it without committing', async () => {
    await wh.init();
    await wh.load(batch(['2024-06-01']));
    const before = await snapshot(url);
    const w = another();
    const b = batch(['2024-06-01', '2024-06-02'], { salt: 5, runId: 'r2' });
    b.onStep = async (s) => {
      if (s === 'merged') await w.close();
    };
    const err = await rejects(w.load(b), 'MKPI_WAREHOUSE_UNAVAILABLE');
    assert.doesNotMatch(err.hint ?? '', /unknown/);
    assert.deepEqual(await snapshot(url), before);
  });

  it('onStep sees the steps in order, committed after the data is visible', async () => {
    await wh.init();
    const seen: string[] = [];
    const b = batch(['2024-06-01']);
    b.onStep = async (s) => {
      seen.push(s);
      if (s === 'committed') {
        const r = await adminQuery(url, `SELECT count(*)::int AS n FROM ${SCHEMA}.hourly_kpis`);
        assert.equal(r.rows[0].n, 24);
      }
    };
    await wh.load(b);
    assert.deepEqual(seen, ['mid-copy', 'staged', 'mid-merge', 'merged', 'before-commit', 'committed']);
  });

  it('a COPY destroyed mid-stream (throw inside the row generator) rolls back', async () => {
    await wh.init();
    await wh.load(batch(['2024-06-01']));
    const before = await snapshot(url);
    // Enough rows that several COPY chunks reach the server before the failure.
    const rows: GenreRow[] = [];
    for (let i = 0; i < 30_000; i++) rows.push({ ...genre('2024-06-01', 1)[0], track_genre: `g${i}` });
    Object.defineProperty(rows[25_000], 'listen_count', {
      get() {
        throw new Error('row source failed');
      },
    });
    const err = await rejects(wh.load({ runId: 'r2', genre: { dates: ['2024-06-01'], rows }, ledger: [] }), 'MKPI_INTERNAL');
    assert.match(err.message, /row source failed/);
    assert.deepEqual(await snapshot(url), before);
    await wh.load(batch(['2024-06-01'], { runId: 'r3' }));
  });

  it('rows outside the covered dates are refused before anything is sent', async () => {
    await wh.init();
    await rejects(wh.load({ runId: 'r', hourly: { dates: ['2024-06-01'], rows: hourly('2024-06-02', 1) }, ledger: [] }), 'MKPI_INTERNAL');
  });

  it('a second acquireRunLock is refused with MKPI_LOCKED until the first is released', async () => {
    await wh.init();
    const lock = await wh.acquireRunLock();
    const other = another();
    const err = await rejects(other.acquireRunLock(), 'MKPI_LOCKED');
    assert.match(err.hint ?? '', /another musickpi run holds the lock/);
    // Another schema is another lock.
    const elsewhere = new PostgresWarehouse(url, { schema: 'other_schema' });
    others.push(elsewhere);
    await (await elsewhere.acquireRunLock()).release();
    await lock.release();
    await lock.release(); // idempotent
    const second = await other.acquireRunLock();
    await second.release();
  });

  it('the sessions acquireRunLock opens ahead serve the init and the load, and close() ends those never used', async () => {
    const sessions = async () =>
      (
        await adminQuery(
          url,
          `SELECT pid, application_name FROM pg_stat_activity
            WHERE datname = current_database() AND application_name LIKE 'musickpi%' ORDER BY application_name, pid`,
        )
      ).rows as { pid: number; application_name: string }[];
    const settled = async (expected: string[]) => {
      let now: string[] = [];
      for (let i = 0; i < 100; i++) {
        now = (await sessions()).map((r) => r.application_name);
        if (JSON.stringify(now) === JSON.stringify(expected)) return;
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.deepEqual(now, expected);
    };
    const lock = await wh.acquireRunLock();
    // The lock's session, the shared one and the load's spare: nothing more.
    await settled(['musickpi', 'musickpi', 'musickpi (run lock)']);
    const ahead = new Set((await sessions()).map((r) => r.pid));
    await wh.init();
    let during: number[] = [];
    await wh.load({
      ...batch(['2024-06-01']),
      onStep: async (step) => {
        if (step === 'staged') during = (await sessions()).map((r) => r.pid);
      },
    });
    // The load ran on one of the sessions opened ahead (no new one), and ended it.
    assert.deepEqual(
      during.filter((pid) => !ahead.has(pid)),
      [],
    );
    await settled(['musickpi', 'musickpi (run lock)']);
    await lock.release();
    await wh.close();
    await settled([]);
    // A run that stops before using either session leaves none behind.
    const unused = another();
    await unused.acquireRunLock();
    await unused.close();
    await settled([]);
  });

  it('the run lock vanishes when its connection is killed, and a load under a lost lock is refused', async () => {
    await wh.init();
    await wh.acquireRunLock();
    await rejects(another().acquireRunLock(), 'MKPI_LOCKED');
    const killed = await adminQuery(
      url,
      `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'musickpi (run lock)'`,
    );
    assert.equal(killed.rowCount, 1);
    // Termination is asynchronous on the server: poll briefly.
    const other = another();
    let got;
    for (let i = 0; i < 50 && !got; i++) {
      got = await other.acquireRunLock().catch(async (e: MkpiError) => {
        assert.equal(e.code, 'MKPI_LOCKED');
        await new Promise((r) => setTimeout(r, 50));
        return undefined;
      });
    }
    assert.ok(got, 'lock should be free after its holder was terminated');
    // The first warehouse believes it holds the lock; its load must not commit.
    const before = await snapshot(url);
    await rejects(wh.load(batch(['2024-06-01'])), 'MKPI_RETRY_LATER');
    assert.deepEqual(await snapshot(url), before);
    await got.release();
  });

  it('terminating the load backend mid-COPY → MKPI_WAREHOUSE_UNAVAILABLE, tables unchanged', async () => {
    await wh.init();
    await wh.load(batch(['2024-06-01']));
    const before = await snapshot(url);
    const rows: GenreRow[] = [];
    for (let i = 0; i < 30_000; i++) rows.push({ ...genre('2024-06-01', 1)[0], track_genre: `g${i}` });
    let terminated = '';
    // A getter cannot await, so the kill runs in a child process while the generator blocks:
    // the COPY is provably in progress on the server when its backend dies.
    const killer = `
      import pg from 'pg';
      const c = new pg.Client({ connectionString: process.env.URL });
      await c.connect();
      for (let i = 0; i < 100; i++) {
        const r = await c.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'musickpi' AND query LIKE 'COPY%'");
        if (r.rowCount > 0) { console.log('terminated ' + r.rowCount); break; }
        await new Promise((r) => setTimeout(r, 50));
      }
      await c.end();`;
    Object.defineProperty(rows[20_000], 'listen_count', {
      get() {
        const r = spawnSync(process.execPath, ['--input-type=module', '-e', killer], {
          cwd: ROOT,
          env: { ...process.env, URL: url },
          encoding: 'utf8',
        });
        terminated = r.stdout + r.stderr;
        return 1;
      },
    });
    const err = await rejects(wh.load({ runId: 'r2', genre: { dates: ['2024-06-01'], rows }, ledger: [] }), 'MKPI_WAREHOUSE_UNAVAILABLE');
    assert.match(terminated, /terminated 1/);
    assert.ok(err.hint, 'an unavailable warehouse comes with a hint');
    assert.deepEqual(await snapshot(url), before);
    // The shared connection of the same warehouse still works afterwards.
    assert.equal((await wh.query('SELECT 1')).rows[0][0], 1);
  });

  it('a table lock held elsewhere past lock_timeout → MKPI_RETRY_LATER, nothing changed', async () => {
    await wh.init();
    await wh.load(batch(['2024-06-01']));
    const before = await snapshot(url);
    const holder = new pg.Client({ connectionString: url });
    holder.on('error', () => undefined);
    await holder.connect();
    try {
      await holder.query(`BEGIN; LOCK TABLE ${SCHEMA}.hourly_kpis IN ACCESS EXCLUSIVE MODE`);
      const quick = another({ lockTimeoutMs: 200 });
      await rejects(quick.load(batch(['2024-06-01'], { salt: 3 })), 'MKPI_RETRY_LATER');
      await holder.query('ROLLBACK');
    } finally {
      await holder.end();
    }
    assert.deepEqual(await snapshot(url), before);
  });

  it('never shows the password: description, connection errors, auth errors', async () => {
    const password = 'Sup3r:S3cret/p@ss';
    const role = `mkpi_user_${process.pid}`;
    await adminQuery(url, `DROP ROLE IF EXISTS ${role}`);
    await adminQuery(url, `CREATE ROLE ${role} LOGIN PASSWORD '${password.replaceAll("'", "''")}'`);
    try {
      const u = new URL(url);
      u.username = role;
      u.password = encodeURIComponent(password);
      const good = new PostgresWarehouse(u.toString(), { schema: SCHEMA });
      others.push(good);
      assert.ok(!good.description.includes(password) && !good.description.includes(u.password), good.description);
      assert.match(good.description, new RegExp(`^postgresql://${role}@127\\.0\\.0\\.1:\\d+/`));
      assert.equal((await good.query('SELECT current_user')).rows[0][0], role);

      const bad = new URL(u.toString());
      bad.password = encodeURIComponent(password + 'x');
      const wrong = new PostgresWarehouse(bad.toString(), { schema: SCHEMA });
      others.push(wrong);
      const authErr = await rejects(wrong.isInitialised(), 'MKPI_CONFIG');

      const down = new URL(u.toString());
      down.port = '1';
      const refused = new PostgresWarehouse(down.toString(), { schema: SCHEMA });
      others.push(refused);
      const connErr = await rejects(refused.acquireRunLock(), 'MKPI_WAREHOUSE_UNAVAILABLE');
      const loadErr = await rejects(refused.load(batch(['2024-06-01'])), 'MKPI_WAREHOUSE_UNAVAILABLE');

      for (const e of [authErr, connErr, loadErr]) {
        const text = `${e.message}\n${e.hint ?? ''}\n${JSON.stringify(e.details)}\n${e.stack}`;
        assert.ok(!text.includes(password) && !text.includes(u.password), text);
      }
    } finally {
      await adminQuery(url, `DROP OWNED BY ${role}; DROP ROLE ${role}`);
    }
  });

  it('a server without TLS asked for sslmode=require → MKPI_CONFIG; a missing database → MKPI_CONFIG', async () => {
    const tls = new URL(url);
    tls.searchParams.set('sslmode', 'require');
    const w1 = new PostgresWarehouse(tls.toString(), { schema: SCHEMA });
    others.push(w1);
    await rejects(w1.isInitialised(), 'MKPI_CONFIG');
    const nodb = new URL(url);
    nodb.pathname = '/no_such_database_here';
    const w2 = new PostgresWarehouse(nodb.toString(), { schema: SCHEMA });
    others.push(w2);
    await rejects(w2.readLedger(), 'MKPI_CONFIG');
  });

  describe('the lake the ledger belongs to', () => {
    const LAKE_A = 's3://bucket-a/music';
    const LAKE_B = '/data/lake-b';

    it('lakeClaim is null, and creates nothing, before init', async () => {
      assert.equal(await wh.lakeClaim(), null);
      const schemas = await adminQuery(url, 'SELECT 1 FROM pg_namespace WHERE nspname = $1', [SCHEMA]);
      assert.equal(schemas.rowCount, 0);
      // The schema without the table (made by someone else): still null, still nothing created.
      await adminQuery(url, `CREATE SCHEMA ${SCHEMA}`);
      assert.equal(await wh.lakeClaim(), null);
      assert.equal((await adminQuery(url, `SELECT to_regclass('${SCHEMA}.musickpi_lake') AS t`)).rows[0].t, null);
    });

    it('the first claim records the lake; the same lake again is a no-op; another lake is MKPI_CONFIG', async () => {
      await wh.init();
      assert.equal(await wh.lakeClaim(), null);
      await wh.claimLake(LAKE_A);
      assert.equal(await wh.lakeClaim(), LAKE_A);
      const first = (await adminQuery(url, `SELECT claimed_at FROM ${SCHEMA}.musickpi_lake`)).rows[0].claimed_at;
      await wh.claimLake(LAKE_A);
      await another().claimLake(LAKE_A);
      const rows = await adminQuery(url, `SELECT lake, claimed_at FROM ${SCHEMA}.musickpi_lake`);
      assert.deepEqual(rows.rows, [{ lake: LAKE_A, claimed_at: first }]);

      const err = await rejects(another().claimLake(LAKE_B), 'MKPI_CONFIG');
      assert.ok(err.message.includes(`schema ${SCHEMA} holds the ledger of lake ${LAKE_A}; this run's lake is ${LAKE_B}`), err.message);
      assert.match(err.hint ?? '', /--schema/);
      assert.match(err.hint ?? '', /--adopt-lake/);
      assert.equal(await wh.lakeClaim(), LAKE_A, 'a refused claim changes nothing');
    });

    it('adopt moves the claim to the new lake', async () => {
      await wh.init();
      await wh.claimLake(LAKE_A, { adopt: true });
      assert.equal(await wh.lakeClaim(), LAKE_A, 'adopting with no claim yet just claims');
      await wh.claimLake(LAKE_B, { adopt: true });
      assert.equal(await wh.lakeClaim(), LAKE_B);
      await rejects(wh.claimLake(LAKE_A), 'MKPI_CONFIG');
      assert.equal((await adminQuery(url, `SELECT count(*)::int AS n FROM ${SCHEMA}.musickpi_lake`)).rows[0].n, 1);
    });

    it('concurrent first claims: exactly one lake wins, every other caller is refused or agrees', async () => {
      await wh.init();
      const claimers = Array.from({ length: 8 }, () => another());
      const lakes = claimers.map((_, i) => (i % 2 === 0 ? LAKE_A : LAKE_B));
      const results = await Promise.allSettled(claimers.map((w, i) => w.claimLake(lakes[i])));
      const winner = await wh.lakeClaim();
      assert.ok(winner === LAKE_A || winner === LAKE_B);
      results.forEach((r, i) => {
        const refusal = r.status === 'rejected' ? (r.reason as MkpiError) : undefined;
        if (lakes[i] === winner) assert.equal(refusal, undefined, refusal?.message);
        else assert.equal(refusal?.code, 'MKPI_CONFIG');
      });
      assert.equal((await adminQuery(url, `SELECT count(*)::int AS n FROM ${SCHEMA}.musickpi_lake`)).rows[0].n, 1);
    });

    it('init() adds the lake table to a schema made before it; until then the schema still counts as initialised', async () => {
      await wh.init();
      await wh.load(batch(['2024-06-01']));
      await adminQuery(url, `DROP TABLE ${SCHEMA}.musickpi_lake`);
      assert.equal(await wh.isInitialised(), true);
      assert.equal(await wh.lakeClaim(), null);
      assert.equal((await wh.readLedger()).length, 1);
      await rejects(wh.claimLake(LAKE_A), 'MKPI_INTERNAL');
      await wh.init();
      await wh.claimLake(LAKE_A);
      assert.equal(await wh.lakeClaim(), LAKE_A);
      assert.equal((await wh.readLedger()).length, 1);
    });
  });

  describe('query', () => {
    it('names tables unqualified: the warehouse schema comes first on the search path, then public', async () => {
      const odd = new PostgresWarehouse(url, { schema: 'Other_Schema' });
      others.push(odd);
      await odd.init();
      await odd.load(batch(['2024-06-01']));
      // A same-named table in public must not be the one found.
      await adminQuery(
        url,
        'CREATE TABLE public.hourly_kpis (x int); CREATE TABLE public.only_in_public (y int); INSERT INTO public.only_in_public VALUES (7)',
      );
      const r = await odd.query('select count(*) from hourly_kpis');
      assert.deepEqual(r.rows, [[24]]);
      assert.equal(r.command, 'SELECT');
      assert.equal(r.rowCount, 1);
      assert.deepEqual((await odd.query('select y from only_in_public')).rows, [[7]]);
      // A query that changes the search path does not leak into the next one.
      await odd.query('SET search_path TO public');
      assert.deepEqual((await odd.query('select count(*) from hourly_kpis')).rows, [[24]]);
    });

    it('reports the command tag and the row count: DELETE, CREATE, several statements', async () => {
      await wh.init();
      await wh.load(batch(['2024-06-01', '2024-06-02']));
      const del = await wh.query(`delete from hourly_kpis where listen_date = '2024-06-01' and listen_hour < 10`);
      assert.equal(del.command, 'DELETE');
      assert.equal(del.rowCount, 10);
      assert.deepEqual(del.columns, []);
      assert.deepEqual(del.rows, []);
      const sel = await wh.query('select listen_hour from hourly_kpis order by listen_date, listen_hour limit 3');
      assert.equal(sel.command, 'SELECT');
      assert.equal(sel.rowCount, 3);
      const create = await wh.query('create table scratch (a int)');
      assert.equal(create.command, 'CREATE');
      assert.equal(create.rowCount, null);
      assert.equal(
        (await adminQuery(url, `SELECT to_regclass('${SCHEMA}.scratch') IS NOT NULL AS t`)).rows[0].t,
        true,
        'created in the warehouse schema',
      );
      const multi = await wh.query('insert into scratch values (1), (2); update scratch set a = a + 1');
      assert.equal(multi.command, 'UPDATE');
      assert.equal(multi.rowCount, 2);
    });
  });

  it('rejects malicious or invalid schema names with MKPI_CONFIG', () => {
    for (const bad of ['x"; DROP SCHEMA public; --', 'a-b', '1abc', '', 'a'.repeat(64), 'sch ema', 'é']) {
      assert.throws(
        () => new PostgresWarehouse(testDatabaseUrl(), { schema: bad }),
        (e: unknown) => e instanceof MkpiError && e.code === 'MKPI_CONFIG',
        bad,
      );
    }
    assert.doesNotThrow(() => new PostgresWarehouse(testDatabaseUrl(), { schema: '_' + 'a'.repeat(62) }));
  });

  it('works with a mixed-case, reserved-word schema name', async () => {
    const w = another();
    const odd = new PostgresWarehouse(url, { schema: 'Select' });
    others.push(odd);
    await odd.init();
    await odd.load(batch(['2024-06-01']));
    assert.equal((await w.query('SELECT count(*) FROM "Select".hourly_kpis')).rows[0][0], 24);
  });
});
