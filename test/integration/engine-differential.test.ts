// The warehouse engine against the streaming engine, on every fixture lake, the hostile corpus and
// generated messy lakes, on the real PostgreSQL: the same tables (floats within the contract's
// 1e-9), the same reject counts per reason and per file, and the same rejects output (file, line,
// reason, detail; the raw row too, except for the rows the warehouse decides — orphans and
// dimension duplicates — whose raw column it leaves empty: docs/scale.md). With one shard and with
// several, planned by the run itself or by `plan` with its shards normalized one by one, in any
// order, one of them twice. Late files: a date a new file touches is recomputed over every file,
// whether the earlier ones were loaded by the streaming engine (their listens normalized again,
// once) or by the warehouse engine (their listens kept in the warehouse). On the Redshift
// stand-in too: the parts staged on S3 (s3rver) and COPYed by manifest, no statement refused.

import { expect } from 'chai';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { REOPEN_MODULE } from '../../lib/adapters/lake/reopen.js';
import { LocalLake } from '../../lib/adapters/lake/local.js';
import { PostgresWarehouse } from '../../lib/adapters/warehouse/postgres/postgres-warehouse.js';
import { DEFAULT_LAYOUT } from '../../lib/domain/layout.js';
import { runPipeline, type PipelineOptions } from '../../lib/pipeline/pipeline.js';
import type { RunReport } from '../../lib/pipeline/report.js';
import { REPO } from '../support/cli.js';
import { freshDatabase, testDatabaseUrl } from '../support/pg.js';
import { RedshiftWarehouse } from '../../lib/adapters/warehouse/redshift/redshift-warehouse.js';
import { s3rverOptions, startRedshiftStandIn, type RedshiftStandIn } from '../support/redshift/index.js';
import { startS3, type TestS3 } from '../support/s3.js';

const temps: string[] = [];
after(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});

function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  temps.push(d);
  return d;
}

/** A copy of a lake folder: songs, users and the stream files (only those `keep` accepts). */
function copyLake(from: string, keep: (name: string) => boolean = () => true): string {
  const dir = tmp('musickpi-diff-');
  for (const f of ['songs.csv', 'users.csv']) cpSync(join(from, f), join(dir, f));
  mkdirSync(join(dir, 'streams'));
  for (const name of readdirSync(join(from, 'streams'))) {
    if (!keep(name) || !/\.csv(\.gz)?$/i.test(name)) continue;
    cpSync(join(from, 'streams', name), join(dir, 'streams', name));
  }
  return dir;
}

type EngineRun = 'stream' | { shards: number; plan?: number[] };

let url: string;
let counter = 0;

before(async function () {
  this.timeout(120_000);
  url = await freshDatabase('diff');
});

async function run(
  dir: string,
  schema: string,
  how: EngineRun,
  command: 'compute' | 'run' = 'compute',
  extra: Partial<PipelineOptions> = {},
): Promise<RunReport> {
  const lake = new LocalLake(dir);
  const warehouse = new PostgresWarehouse(url, { schema });
  const staging = join(dir, '_musickpi', 'staging');
  const runId = `20240601T000000Z-d${String(++counter).padStart(5, '0')}`;
  const base: PipelineOptions = {
    command,
    lake,
    layout: DEFAULT_LAYOUT,
    warehouse,
    maxBadRows: 1_000_000,
    rejectsKey: `rejects/${runId}.csv`,
    runId,
    parallel: { lake: { module: REOPEN_MODULE, uri: dir }, workers: 2, minBytes: 0 },
    ...extra,
  };
  try {
    if (how === 'stream') return await runPipeline(base);
    const engine = { staging: new LocalLake(staging), stagingSpec: { module: REOPEN_MODULE, uri: staging }, shards: how.shards };
    if (!how.plan) return await runPipeline({ ...base, engine });
    const planId = `plan-${runId}`;
    const planned = await runPipeline({ ...base, command: 'plan', engine: { ...engine, planId } });
    expect(planned.error, `plan: ${JSON.stringify(planned.error)}`).to.equal(null);
    for (const index of how.plan) {
      const n = await runPipeline({
        ...base,
        command: 'normalize',
        warehouse: undefined,
        engine: { ...engine, planId, shard: { index, count: how.shards } },
      });
      expect(n.error, `normalize ${index}: ${JSON.stringify(n.error)}`).to.equal(null);
    }
    return await runPipeline({ ...base, engine: { ...engine, planId } });
  } finally {
    await warehouse.close();
  }
}

async function tables(schema: string, dbUrl = url) {
  const c = new pg.Client({ connectionString: dbUrl });
  await c.connect();
  try {
    c.setTypeParser(1082, (v: string) => v);
    const hourly = (await c.query(`SELECT * FROM "${schema}".hourly_kpis ORDER BY listen_date, listen_hour`)).rows;
    const genre = (await c.query(`SELECT * FROM "${schema}".genre_level_kpis ORDER BY listen_date, track_genre COLLATE "C"`)).rows;
    return { hourly, genre };
  } finally {
    await c.end();
  }
}

const FLOATS = new Set(['avg_sessions_per_user', 'diversity_index', 'popularity_index', 'average_duration']);

function expectSameRows(got: Record<string, unknown>[], want: Record<string, unknown>[], what: string): void {
  expect(got.length, `${what}: rows`).to.equal(want.length);
  want.forEach((w, i) => {
    const g = got[i];
    for (const [k, v] of Object.entries(w)) {
      if (FLOATS.has(k) && typeof v === 'number' && typeof g[k] === 'number') {
        const tol = 1e-9 * Math.max(1, Math.abs(v));
        expect(Math.abs(g[k] - v), `${what} row ${i} ${k}: ${String(g[k])} vs ${v}`).to.be.at.most(tol);
      } else {
        expect(g[k], `${what} row ${i} ${k}`).to.deep.equal(v);
      }
    }
  });
}

/** The rejects CSV as [file, line, reason, detail, raw] records (an RFC 4180 reading of its own). */
function rejectsOf(dir: string, report: RunReport): string[][] {
  if (!report.rejectsOutput) return [];
  const text = readFileSync(join(dir, report.rejectsOutput), 'utf8');
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  return rows.slice(1);
}

const WAREHOUSE_DECIDED = new Set(['unknown_track', 'unknown_user', 'duplicate_track_id', 'duplicate_user_id']);

function comparable(report: RunReport) {
  return {
    error: report.error?.code ?? null,
    totals: report.totals,
    files: report.files.map((f) => ({
      name: f.name,
      rows: f.rows,
      complete: f.complete,
      rejected: f.rejected,
      dates: f.dates,
      status: f.status,
    })),
    dimensions: report.dimensions,
    datesRecomputed: report.datesRecomputed,
    rowsWritten: report.rowsWritten,
  };
}

async function expectSame(dir: string, how: EngineRun, what: string, command: 'compute' | 'run' = 'compute'): Promise<void> {
  const a = `s${++counter}_stream`;
  const b = `s${++counter}_wh`;
  const streamDir = copyLakeOf(dir);
  const stream = await run(streamDir, a, 'stream', command);
  const wh = await run(dir, b, how, command);
  expect(wh.engine).to.equal('warehouse');
  expect(comparable(wh), `${what}: report`).to.deep.equal(comparable(stream));
  const [ta, tb] = [await tables(a), await tables(b)];
  expectSameRows(tb.hourly, ta.hourly, `${what}: hourly_kpis`);
  expectSameRows(tb.genre, ta.genre, `${what}: genre_level_kpis`);
  const ra = rejectsOf(streamDir, stream);
  const rb = rejectsOf(dir, wh);
  expect(
    rb.map((r) => r.slice(0, 4)),
    `${what}: rejects (file, line, reason, detail)`,
  ).to.deep.equal(ra.map((r) => r.slice(0, 4)));
  rb.forEach((r, i) => {
    // A track_id no song can have is decided by normalize, which keeps the raw row.
    if (!(WAREHOUSE_DECIDED.has(r[2]) && r[4] === '')) expect(r[4], `${what}: rejects row ${i} raw`).to.equal(ra[i][4]);
  });
  if (command === 'run') {
    const staging = join(dir, '_musickpi', 'staging');
    expect(existsSync(staging) ? (await new LocalLake(staging).list('')).map((o) => o.key) : [], 'staging left').to.deep.equal([]);
  }
}

function copyLakeOf(dir: string): string {
  const out = tmp('musickpi-diff-');
  cpSync(dir, out, { recursive: true, filter: (src) => !src.includes('_musickpi') });
  return out;
}

const hostileExpected = JSON.parse(readFileSync(join(REPO, 'fixtures', 'hostile', 'expected.json'), 'utf8')) as Record<string, object>;
const hostileRowFiles = new Set(
  Object.keys(hostileExpected).filter(
    (n) => !('schema' in hostileExpected[n]) && !('generated' in hostileExpected[n]) && !('songs' in hostileExpected[n]),
  ),
);

describe('warehouse engine = streaming engine (PostgreSQL)', function () {
  this.timeout(300_000);

  for (const fixture of ['tiny', 'messy', 'sample']) {
    it(`fixtures/${fixture}: one shard, planned by the run`, async () => {
      await expectSame(copyLake(join(REPO, 'fixtures', fixture)), { shards: 1 }, fixture);
    });
  }

  it("fixtures/messy: three shards in worker threads, with run (archive, staging removed, a killed run's old staging swept)", async () => {
    const dir = copyLake(join(REPO, 'fixtures', 'messy'));
    const staging = join(dir, '_musickpi', 'staging');
    mkdirSync(join(staging, '20200101T000000Z-abc123', 'shard-0000-of-0001'), { recursive: true });
    writeFileSync(join(staging, '20200101T000000Z-abc123', 'shard-0000-of-0001', 'listens-00000.csv.gz'), 'x');
    await expectSame(dir, { shards: 3 }, 'messy x3', 'run');
  });

  it('fixtures/tiny: plan + normalize 3 shards in any order, one twice, then the run', async () => {
    await expectSame(copyLake(join(REPO, 'fixtures', 'tiny')), { shards: 3, plan: [2, 0, 1, 0] }, 'tiny plan');
  });

  it('the hostile corpus (its files without schema failures), four shards', async () => {
    const dir = copyLake(join(REPO, 'fixtures', 'hostile'), (n) => hostileRowFiles.has(n));
    expect(readdirSync(join(dir, 'streams')).length).to.be.greaterThan(20);
    await expectSame(dir, { shards: 4, plan: [3, 1, 0, 2] }, 'hostile');
  });

  it('a schema failure stops both engines the same way, loading nothing', async () => {
    const dir = copyLake(join(REPO, 'fixtures', 'hostile'), (n) => n === 'header-missing-track.csv' || n === 'crlf.csv');
    await expectSame(dir, { shards: 2 }, 'schema');
  });

  it('late files: a date loaded by the streaming engine, then by the warehouse engine, equals one run over all', async () => {
    const all = copyLake(join(REPO, 'fixtures', 'tiny'));
    const names = readdirSync(join(all, 'streams')).sort();
    expect(names.length).to.be.greaterThan(1);
    // One schema gets everything at once; the other gets the files one by one, engines alternating.
    const once = `s${++counter}_once`;
    expect((await run(copyLakeOf(all), once, 'stream', 'run')).error).to.equal(null);
    const stepwise = `s${++counter}_steps`;
    const dir = tmp('musickpi-late-');
    for (const f of ['songs.csv', 'users.csv']) cpSync(join(all, f), join(dir, f));
    mkdirSync(join(dir, 'streams'));
    for (const [i, name] of names.entries()) {
      cpSync(join(all, 'streams', name), join(dir, 'streams', name));
      const r = await run(dir, stepwise, i % 2 === 0 ? 'stream' : { shards: 2 }, 'run');
      expect(r.error, `${name}: ${JSON.stringify(r.error)}`).to.equal(null);
    }
    // And a last delivery that touches every date again: the warehouse engine recomputes them all.
    const [ta, tb] = [await tables(once), await tables(stepwise)];
    expectSameRows(tb.hourly, ta.hourly, 'late: hourly_kpis');
    expectSameRows(tb.genre, ta.genre, 'late: genre_level_kpis');
  });

  for (const change of ['a stream file rewritten', 'a stream file removed', 'songs.csv rewritten'] as const) {
    it(`${change} after normalize: the run refuses the plan as stale (exit 75) and loads nothing`, async () => {
      const dir = copyLake(join(REPO, 'fixtures', 'tiny'));
      const schema = `s${++counter}_stale`;
      const warehouse = new PostgresWarehouse(url, { schema });
      const staging = join(dir, '_musickpi', 'staging');
      const engine = {
        staging: new LocalLake(staging),
        stagingSpec: { module: REOPEN_MODULE, uri: staging },
        shards: 2,
        planId: 'p-stale',
      };
      const base = { lake: new LocalLake(dir), layout: DEFAULT_LAYOUT, warehouse, runId: '20240601T000000Z-stale1', maxBadRows: 1_000_000 };
      try {
        expect((await runPipeline({ ...base, command: 'plan', engine })).error).to.equal(null);
        for (const index of [0, 1]) {
          expect((await runPipeline({ ...base, command: 'normalize', engine: { ...engine, shard: { index, count: 2 } } })).error).to.equal(
            null,
          );
        }
        const first = join(dir, 'streams', readdirSync(join(dir, 'streams')).sort()[0]);
        if (change === 'a stream file rewritten') writeFileSync(first, readFileSync(first, 'utf8') + 'u1,t1,2024-06-01 09:00:00\n');
        else if (change === 'a stream file removed') rmSync(first);
        else writeFileSync(join(dir, 'songs.csv'), readFileSync(join(dir, 'songs.csv'), 'utf8') + 't99,X,metal,1000\n');
        const r = await runPipeline({ ...base, command: 'run', engine });
        expect(r.error?.code, JSON.stringify(r.error)).to.equal('MKPI_PLAN_STALE');
        expect(r.loaded).to.equal(false);
        expect(await warehouse.readLedger()).to.deep.equal([]);
      } finally {
        await warehouse.close();
      }
    });
  }

  it('a run refuses a plan whose shards are not all normalized, and loads nothing', async () => {
    const dir = copyLake(join(REPO, 'fixtures', 'tiny'));
    const schema = `s${++counter}_incomplete`;
    const warehouse = new PostgresWarehouse(url, { schema });
    const staging = join(dir, '_musickpi', 'staging');
    const engine = { staging: new LocalLake(staging), stagingSpec: { module: REOPEN_MODULE, uri: staging }, shards: 3, planId: 'p1' };
    const base = { lake: new LocalLake(dir), layout: DEFAULT_LAYOUT, warehouse, runId: '20240601T000000Z-inc001', maxBadRows: 1_000_000 };
    try {
      const planned = await runPipeline({ ...base, command: 'plan', engine });
      expect(planned.error, JSON.stringify(planned.error)).to.equal(null);
      expect((await runPipeline({ ...base, command: 'normalize', engine: { ...engine, shard: { index: 1, count: 3 } } })).error).to.equal(
        null,
      );
      const r = await runPipeline({ ...base, command: 'run', engine });
      expect(r.error?.code).to.equal('MKPI_SHARDS_INCOMPLETE');
      expect(r.loaded).to.equal(false);
      expect(r.archived).to.deep.equal([]);
      const ledger = await warehouse.readLedger();
      expect(ledger).to.deep.equal([]);
      // A file landing after the plan waits for the next run.
      writeFileSync(join(dir, 'streams', 'zz-late.csv'), readFileSync(join(dir, 'streams', readdirSync(join(dir, 'streams')).sort()[0])));
      for (const index of [0, 2]) {
        expect((await runPipeline({ ...base, command: 'normalize', engine: { ...engine, shard: { index, count: 3 } } })).error).to.equal(
          null,
        );
      }
      const ok = await runPipeline({ ...base, command: 'run', engine });
      expect(ok.error).to.equal(null);
      expect(ok.files.map((f) => f.name)).to.not.include('streams/zz-late.csv');
      expect(readdirSync(join(dir, 'streams'))).to.include('zz-late.csv');
    } finally {
      await warehouse.close();
    }
  });
});

describe('warehouse engine on the Redshift stand-in = streaming engine on PostgreSQL', function () {
  this.timeout(300_000);
  let s3: TestS3;
  let rs: RedshiftStandIn;
  before(async () => {
    s3 = await startS3();
    await s3.bucket('engine-stage');
    await s3.bucket('rs-stage');
    rs = await startRedshiftStandIn({ backendUrl: testDatabaseUrl(), s3: s3rverOptions(s3.endpoint) });
  });
  after(async () => {
    await rs?.stop();
    await s3?.stop();
  });

  const lakes: [string, () => string][] = [
    ['fixtures/tiny', () => copyLake(join(REPO, 'fixtures', 'tiny'))],
    ['fixtures/messy', () => copyLake(join(REPO, 'fixtures', 'messy'))],
    ['the hostile corpus', () => copyLake(join(REPO, 'fixtures', 'hostile'), (n) => hostileRowFiles.has(n))],
  ];
  for (const [what, make] of lakes) {
    it(`${what}, three shards: the same tables, counts and rejects; nothing refused`, async () => {
      const dir = make();
      const streamSchema = `s${++counter}_ref`;
      const streamDir = copyLakeOf(dir);
      const stream = await run(streamDir, streamSchema, 'stream');
      const dbUrl = await freshDatabase('diff_rs');
      const schema = 'reporting_schema';
      const refusedBefore = rs.refused.length;
      const runId = `20240601T000000Z-r${String(++counter).padStart(5, '0')}`;
      const warehouse = new RedshiftWarehouse(rs.url(new URL(dbUrl).pathname.slice(1)), {
        schema,
        staging: { uri: 's3://rs-stage/st/', s3: { endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1' } },
        iamRole: 'arn:aws:iam::123456789012:role/musickpi-copy',
        env: { PGPASSWORD: rs.password },
        runId,
      });
      const staging = s3.lake('engine-stage', `e${counter}`);
      let wh: RunReport;
      try {
        // No staging spec: the shards are normalized one after the other in this thread.
        wh = await runPipeline({
          command: 'compute',
          lake: new LocalLake(dir),
          layout: DEFAULT_LAYOUT,
          warehouse,
          maxBadRows: 1_000_000,
          rejectsKey: `rejects/${runId}.csv`,
          runId,
          engine: { staging, shards: 3 },
        });
      } finally {
        await warehouse.close();
        await staging.close();
      }
      expect(wh.error, JSON.stringify(wh.error)).to.equal(null);
      expect(rs.refused.slice(refusedBefore), 'statements the stand-in refused').to.deep.equal([]);
      expect(comparable(wh), `${what}: report`).to.deep.equal(comparable(stream));
      const [ta, tb] = [await tables(streamSchema), await tables(schema, dbUrl)];
      expectSameRows(tb.hourly, ta.hourly, `${what}: hourly_kpis`);
      expectSameRows(tb.genre, ta.genre, `${what}: genre_level_kpis`);
      expect(
        rejectsOf(dir, wh).map((r) => r.slice(0, 4)),
        `${what}: rejects`,
      ).to.deep.equal(rejectsOf(streamDir, stream).map((r) => r.slice(0, 4)));
    });
  }
});
