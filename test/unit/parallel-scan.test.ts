// The worker-thread scan (lib/parallel-scan.ts) against the single-thread path: the same KPIs,
// the same report, the same rejects output byte for byte, on the fixture lakes and on generated
// messy lakes of several files; errors with the same codes; aborts and failures that leave no
// worker behind.

import { REOPEN_MODULE } from '../../lib/adapters/lake/reopen.js';
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, copyFileSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { runPipeline, type PipelineEvent, type FaultPoint } from '../../lib/pipeline/pipeline.js';
import { openLake } from '../../lib/adapters/lake/open.js';
import { DEFAULT_LAYOUT } from '../../lib/domain/layout.js';
import { create, result } from '../../lib/stages/reduce.js';
import { loadDimensions, scanStreamFile, type StreamScan } from '../../lib/stages/scan.js';
import { liveWorkers, plannedWorkers, scanFilesParallel, type ParallelOptions } from '../../lib/pipeline/parallel-scan.js';
import { RejectSink } from '../../lib/stages/rejects.js';
import { MkpiError, isMkpiError } from '../../lib/domain/errors.js';
import type { LoadBatch } from '../../lib/domain/warehouse.js';
import type { RunReport } from '../../lib/pipeline/report.js';
import { generateLake } from '../../bench/generate-lake.js';
import { startS3, startFaultyProxy, type TestS3 } from '../support/s3.js';
import { MemoryWarehouse } from '../support/fakes/memory-warehouse.js';

const REPO = new URL('../..', import.meta.url).pathname;
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const tmpDirs: string[] = [];
/** Reject spools of the direct scanFilesParallel calls go here, so that a test can see they are gone. */
let spoolRoot = '';

function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), `mkpi-par-${prefix}-`));
  tmpDirs.push(d);
  return d;
}

function copyFixture(name: string): string {
  const d = tmp(name);
  cpSync(join(REPO, 'fixtures', name), d, { recursive: true });
  return d;
}

function messyLake(opts: { streams: number; files: number; seed?: number; messy?: boolean; days?: number }): string {
  const d = tmp('gen');
  generateLake({
    out: d,
    songs: 3000,
    users: 800,
    streams: opts.streams,
    files: opts.files,
    days: opts.days ?? 3,
    seed: opts.seed ?? 7,
    messy: opts.messy ?? true,
    startDate: '2024-06-01',
  });
  return d;
}

interface Outcome {
  report: RunReport;
  batch: Omit<LoadBatch, 'onStep'> | undefined;
  rejects: string | null;
  events: PipelineEvent[];
  faults: FaultPoint[];
}

async function compute(
  lakeDir: string,
  parallel: ParallelOptions | undefined,
  tag: string,
  extra: { signal?: AbortSignal; memoryBudget?: { bytes: number; dir?: string } } = {},
): Promise<Outcome> {
  const lake = openLake(lakeDir);
  const warehouse = new MemoryWarehouse();
  const events: PipelineEvent[] = [];
  const faults: FaultPoint[] = [];
  const rejectsKey = `rejects/${tag}/rejects.csv`;
  try {
    const report = await runPipeline({
      command: 'compute',
      lake,
      layout: DEFAULT_LAYOUT,
      warehouse,
      maxBadRows: 1e9,
      rejectsKey,
      runId: 'run-1',
      onEvent: (e) => events.push(e),
      fault: (p) => void faults.push(p),
      parallel,
      ...extra,
    });
    const path = join(lakeDir, rejectsKey);
    return { report, batch: warehouse.lastBatch, rejects: existsSync(path) ? readFileSync(path, 'latin1') : null, events, faults };
  } finally {
    await lake.close();
  }
}

/** The report without what legitimately differs between two runs. */
function comparable(r: RunReport): unknown {
  const { timings: _t, runId: _r, rejectsOutput, ...rest } = r;
  return { ...rest, rejectsOutput: rejectsOutput?.replace(/rejects\/[^/]+\//, 'rejects/X/') ?? null };
}

const parallel = (dir: string, workers = 2, mainReads = true): ParallelOptions => ({
  lake: { module: REOPEN_MODULE, uri: dir },
  workers,
  minBytes: 0,
  mainReads,
});

/** One thread, then workers with the calling thread reading too, then workers alone: all the same. */
async function expectSameAsSingleThread(dir: string, workers = 2): Promise<{ single: Outcome; par: Outcome }> {
  const single = await compute(dir, undefined, 'single');
  expect(single.report.error, JSON.stringify(single.report.error)).to.equal(null);
  let par: Outcome | undefined;
  for (const mainReads of [true, false]) {
    par = await compute(dir, parallel(dir, workers, mainReads), `par${workers}${mainReads ? 'm' : ''}`);
    expect(comparable(par.report), `mainReads ${mainReads}`).to.deep.equal(comparable(single.report));
    expect(par.batch, `mainReads ${mainReads}`).to.deep.equal(single.batch);
    expect(par.rejects, `mainReads ${mainReads}`).to.equal(single.rejects);
    expect(liveWorkers()).to.equal(0);
  }
  return { single, par: par! };
}

describe('parallel scan (worker threads)', function () {
  this.timeout(120_000);

  beforeEach(() => {
    spoolRoot = tmp('spool');
  });
  afterEach(() => {
    // Every scan is over, whatever its outcome: its spool folder is gone.
    expect(readdirSync(spoolRoot)).to.deep.equal([]);
  });
  after(() => {
    for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
  });

  it('stays in the calling thread for one small or compressed file, tiny inputs, or no lake spec', () => {
    const f = (size: number, ext = 'csv') => ({ key: `streams/${size}.${ext}`, size, fingerprint: 'x' });
    const big = [f(20 << 20), f(20 << 20)];
    expect(plannedWorkers(undefined, big)).to.equal(0);
    expect(plannedWorkers({ workers: 2 }, big)).to.equal(0);
    expect(plannedWorkers({ lake: { module: REOPEN_MODULE, uri: '/x' }, workers: 2 }, big)).to.equal(2);
    expect(plannedWorkers({ lake: { module: REOPEN_MODULE, uri: '/x' }, workers: 8 }, big)).to.equal(2);
    // One file has one reader, unless it is large and plain: then it is split into byte ranges (split-scan.test.ts).
    expect(plannedWorkers({ lake: { module: REOPEN_MODULE, uri: '/x' }, workers: 2 }, [f(20 << 20)])).to.equal(0);
    expect(plannedWorkers({ lake: { module: REOPEN_MODULE, uri: '/x' }, workers: 2 }, [f(40 << 20, 'csv.gz')])).to.equal(0);
    expect(plannedWorkers({ lake: { module: REOPEN_MODULE, uri: '/x' }, workers: 2 }, [f(40 << 20)])).to.equal(2);
    // --workers 1 is one worker beside the main thread.
    expect(plannedWorkers({ lake: { module: REOPEN_MODULE, uri: '/x' }, workers: 1 }, big)).to.equal(1);
    expect(plannedWorkers({ lake: { module: REOPEN_MODULE, uri: '/x' }, workers: 0 }, big)).to.equal(0);
    expect(plannedWorkers({ lake: { module: REOPEN_MODULE, uri: '/x' }, workers: 2 }, [f(1000), f(1000)])).to.equal(0);
    expect(plannedWorkers({ lake: { module: REOPEN_MODULE, uri: '/x' }, workers: 2, minBytes: 0 }, [f(1000), f(1000)])).to.equal(2);
    // A .gz file weighs what it inflates to (about 3x its size).
    expect(plannedWorkers({ lake: { module: REOPEN_MODULE, uri: '/x' }, workers: 2 }, [f(4 << 20), f(4 << 20)])).to.equal(0);
    expect(
      plannedWorkers({ lake: { module: REOPEN_MODULE, uri: '/x' }, workers: 2 }, [f(4 << 20, 'csv.gz'), f(4 << 20, 'csv.gz')]),
    ).to.equal(2);
  });

  it('gives the tiny lake the same KPIs, report and rejects as one thread', async () => {
    const { par } = await expectSameAsSingleThread(copyFixture('tiny'));
    expect(par.report.totals).to.include({ rowsRead: 9, completeRows: 8 });
    expect(par.rejects).to.contain('streams/b.csv,4,unknown_track,');
  });

  it('gives the messy lake the same KPIs, report and rejects as one thread', async () => {
    const { par } = await expectSameAsSingleThread(copyFixture('messy'));
    expect(par.report.totals.badRows).to.be.greaterThan(0);
    expect(par.rejects!.split('\n').length).to.be.greaterThan(10);
  });

  it("writes every reject's detail, and the dimensions' duplicates, in workers as one thread does", async () => {
    const { single, par } = await expectSameAsSingleThread(copyFixture('messy'));
    expect(par.rejects).to.equal(single.rejects);
    const lines = single.rejects!.split('\n');
    expect(lines[0]).to.equal('file,line,reason,detail,raw');
    for (const want of [
      'songs.csv,10,duplicate_track_id,"track_id ""t1"" first seen on line 2","t1,Zed,jazz,1,False"',
      'users.csv,8,duplicate_user_id,"user_id ""u1"" first seen on line 2","u1,99,US"',
      'streams/m1.csv,4,malformed,"3 fields, header has 4","u2,t2,2024-06-01 10:00:00"',
      'streams/m1.csv,7,bad_listen_time,"listen_time ""2024-02-30 10:00:00"": day 30 is not in 2024-02","u1,t1,2024-02-30 10:00:00,web"',
      'streams/m1.csv,9,unknown_track,"track_id ""tX"" is not a valid song in songs.csv","u1,tX,2024-06-01 10:00:00,web"',
    ]) {
      expect(lines, want).to.include(want);
    }
    // Duplicates are listed, not counted as rejects of any kind.
    expect(single.report.totals).to.include({ duplicateSongs: 1, duplicateUsers: 1 });
    const streamRejects = lines.filter((l) => l.startsWith('streams/')).length;
    expect(streamRejects).to.equal(single.report.totals.badRows + single.report.totals.orphanRows);
  });

  it('gives a generated messy lake of 7 files the same results with 2 and 3 workers', async () => {
    const dir = messyLake({ streams: 60_000, files: 7 });
    const { single } = await expectSameAsSingleThread(dir, 2);
    expect(single.report.totals.rowsRead).to.equal(60_000);
    for (const r of ['malformed', 'missing_user_id', 'missing_track_id', 'bad_listen_time', 'unknown_track', 'unknown_user'] as const) {
      expect(single.report.totals.rejected[r], r).to.be.greaterThan(0);
    }
    await expectSameAsSingleThread(dir, 3);
  });

  it('reports a stream file that fails schema validation the same way', async () => {
    const dir = copyFixture('messy');
    copyFileSync(join(dir, 'bad-schema.csv'), join(dir, 'streams', 'm0-bad.csv'));
    const single = await compute(dir, undefined, 'single');
    expect(single.report.error?.code).to.equal('MKPI_SCHEMA');
    for (const mainReads of [true, false]) {
      const par = await compute(dir, parallel(dir, 2, mainReads), `par${mainReads}`);
      expect(comparable(par.report)).to.deep.equal(comparable(single.report));
      expect(par.rejects).to.equal(single.rejects);
    }
  });

  it('reads .csv.gz files in workers with the results of one thread, and of their plain twins', async () => {
    const plainDir = messyLake({ streams: 60_000, files: 4, seed: 13 });
    const dir = tmp('gz');
    cpSync(plainDir, dir, { recursive: true });
    for (const n of ['streams_0001.csv', 'streams_0003.csv']) {
      writeFileSync(join(dir, 'streams', `${n}.gz`), gzipSync(readFileSync(join(dir, 'streams', n))));
      rmSync(join(dir, 'streams', n));
    }
    const { single } = await expectSameAsSingleThread(dir);
    const plain = await compute(plainDir, undefined, 'plain');
    expect(single.report.files.map((f) => f.name)).to.deep.equal([
      'streams/streams_0001.csv.gz',
      'streams/streams_0002.csv',
      'streams/streams_0003.csv.gz',
      'streams/streams_0004.csv',
    ]);
    expect(single.batch!.hourly).to.deep.equal(plain.batch!.hourly);
    expect(single.batch!.genre).to.deep.equal(plain.batch!.genre);
    const counts = (o: Outcome) => ({ ...o.report.totals, bytes: 0 });
    expect(counts(single)).to.deep.equal(counts(plain));
    expect(single.rejects!.replaceAll('.csv.gz,', '.csv,')).to.equal(plain.rejects);
    const gz = single.report.files[0];
    const stored = readFileSync(join(dir, 'streams', 'streams_0001.csv.gz'));
    expect(gz.bytes).to.equal(stored.length);
    expect(single.batch!.ledger[0]).to.include({ fileKey: gz.name, size: stored.length, contentHash: sha256(stored) });
  });

  it('reports a corrupt .csv.gz the same way in workers: a schema error of that file', async () => {
    const dir = copyFixture('messy');
    const gz = gzipSync(readFileSync(join(dir, 'streams', 'm1.csv')));
    writeFileSync(join(dir, 'streams', 'm0-cut.csv.gz'), gz.subarray(0, gz.length - 20));
    const single = await compute(dir, undefined, 'single');
    expect(single.report.error?.code).to.equal('MKPI_SCHEMA');
    expect(single.report.files[0]).to.include({ name: 'streams/m0-cut.csv.gz', status: 'schema_error' });
    for (const mainReads of [true, false]) {
      const par = await compute(dir, parallel(dir, 2, mainReads), `par${mainReads}`);
      expect(comparable(par.report)).to.deep.equal(comparable(single.report));
      expect(par.rejects).to.equal(single.rejects);
    }
  });

  it('keeps progress in the calling thread: mid-parse fires once, rows add up, files reach the total', async () => {
    const dir = messyLake({ streams: 300_000, files: 4, messy: false });
    const par = await compute(dir, parallel(dir), 'par');
    expect(par.report.error).to.equal(null);
    expect(par.faults.filter((f) => f === 'mid-parse')).to.have.length(1);
    const progress = par.events.filter((e): e is Extract<PipelineEvent, { type: 'progress' }> => e.type === 'progress');
    expect(progress.length).to.be.greaterThan(4);
    const last = progress[progress.length - 1];
    expect(last).to.deep.equal({ type: 'progress', rows: 300_000, files: 4, totalFiles: 4 });
    for (let i = 1; i < progress.length; i++) expect(progress[i].rows).to.be.at.least(progress[i - 1].rows);
  });

  it('under a memory budget, spills the state by date mid-file and per file, in workers and here, with the same results', async () => {
    // 3 files of 150k rows over 20 days: checkpoints inside each file, a budget of 1 byte spills at every one.
    const dir = messyLake({ streams: 450_000, files: 3, days: 20, seed: 11 });
    const single = await compute(dir, undefined, 'plain');
    expect(single.report.spilledBytes).to.equal(0);
    const spillRoot = tmp('spill');
    for (const par of [undefined, parallel(dir, 2, true), parallel(dir, 2, false)]) {
      const spilled = await compute(dir, par, 'spilled', { memoryBudget: { bytes: 1, dir: spillRoot } });
      expect(spilled.report.error, JSON.stringify(spilled.report.error)).to.equal(null);
      expect(spilled.report.spilledBytes).to.be.greaterThan(0);
      expect({ ...(comparable(spilled.report) as object), spilledBytes: 0 }).to.deep.equal(comparable(single.report));
      expect(spilled.batch).to.deep.equal(single.batch);
      expect(spilled.rejects).to.equal(single.rejects);
      // The temporary folder is gone with the run.
      expect(readdirSync(spillRoot)).to.deep.equal([]);
      expect(liveWorkers()).to.equal(0);
    }
  });

  it('under a memory budget, a worker state merged and spilled while this thread is mid-file loses none of its rows', async () => {
    // Two one-row files for the workers, which finish at once and hand over their state while the
    // calling thread still reads the big file: the merge spills, taking the hour this thread holds.
    const dir = tmp('race');
    mkdirSync(join(dir, 'streams'));
    cpSync(join(REPO, 'fixtures', 'tiny', 'songs.csv'), join(dir, 'songs.csv'));
    cpSync(join(REPO, 'fixtures', 'tiny', 'users.csv'), join(dir, 'users.csv'));
    const header = 'user_id,track_id,listen_time\n';
    writeFileSync(join(dir, 'streams', 'a.csv'), header + 'u1,t1,2024-06-01 10:00:00\n');
    writeFileSync(join(dir, 'streams', 'b.csv'), header + 'u2,t2,2024-06-02 10:00:00\n');
    const rows = 400_000;
    const big = [header];
    for (let i = 0; i < rows; i++)
      big.push(`u${1 + (i % 4)},t${1 + (i % 3)},2024-06-03 ${String(Math.floor((i / rows) * 24)).padStart(2, '0')}:00:00\n`);
    writeFileSync(join(dir, 'streams', 'c.csv'), big.join(''));
    const single = await compute(dir, undefined, 'plain');
    const spillRoot = tmp('race-spill');
    for (let i = 0; i < 3; i++) {
      const par = await compute(dir, parallel(dir, 2, true), 'race', { memoryBudget: { bytes: 1, dir: spillRoot } });
      expect(par.report.error, JSON.stringify(par.report.error)).to.equal(null);
      expect(par.report.spilledBytes).to.be.greaterThan(0);
      expect(par.batch, `repetition ${i + 1}`).to.deep.equal(single.batch);
    }
    expect(readdirSync(spillRoot)).to.deep.equal([]);
  });

  it("gives the same results when the calling thread is slow to take the workers' messages", async () => {
    const dir = messyLake({ streams: 120_000, files: 5, seed: 11 });
    const lake = openLake(dir);
    try {
      const { dims } = await loadDimensions(lake, { songs: 'songs.csv', users: 'users.csv' }, {});
      const files = (await lake.list('streams/', ['streams/archived/'])).filter((f) => f.key.endsWith('.csv'));
      const one = create(dims.trackCount, dims.userCount);
      const oneSink = new RejectSink();
      const oneScans: StreamScan[] = [];
      for (const f of files) oneScans.push(await scanStreamFile(lake, f, dims, one, { rejects: oneSink }));

      const two = create(dims.trackCount, dims.userCount);
      const twoSink = new RejectSink();
      let ticks = 0;
      const twoScans = await scanFilesParallel(files, dims, two, {
        lake: { module: REOPEN_MODULE, uri: dir },
        workers: 2,
        local: lake,
        rejects: twoSink,
        tmpDir: spoolRoot,
        onRows: () => {
          ticks++;
          const until = Date.now() + 15; // a consumer that blocks its thread on every message
          while (Date.now() < until);
        },
      });
      expect(ticks).to.be.greaterThan(0);
      expect(twoScans).to.deep.equal(oneScans);
      expect(result(two, dims)).to.deep.equal(result(one, dims));
      const read = async (sink: RejectSink, name: string) => {
        await sink.publish(lake, `out/${name}.csv`);
        sink.dispose();
        return readFileSync(join(dir, 'out', `${name}.csv`));
      };
      expect((await read(twoSink, 'two')).equals(await read(oneSink, 'one'))).to.equal(true);
    } finally {
      await lake.close();
    }
  });

  for (const local of [false, true]) {
    it(`stops every worker when the run is aborted mid-scan, with MKPI_INTERRUPTED${local ? ' (calling thread reading too)' : ''}`, async () => {
      const dir = messyLake({ streams: 400_000, files: 4, messy: false, seed: 3 });
      const controller = new AbortController();
      const lake = openLake(dir);
      try {
        const { dims } = await loadDimensions(lake, { songs: 'songs.csv', users: 'users.csv' }, {});
        const files = (await lake.list('streams/', ['streams/archived/'])).filter((f) => f.key.endsWith('.csv'));
        const state = create(dims.trackCount, dims.userCount);
        let rows = 0;
        const err = await scanFilesParallel(files, dims, state, {
          lake: { module: REOPEN_MODULE, uri: dir },
          workers: 2,
          local: local ? lake : undefined,
          signal: controller.signal,
          rejects: new RejectSink(),
          tmpDir: spoolRoot,
          onRows: (n) => {
            rows += n;
            if (!controller.signal.aborted) controller.abort(new Error('test abort'));
          },
        }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isMkpiError(err) && err.code, String(err)).to.equal('MKPI_INTERRUPTED');
        expect(rows).to.be.lessThan(400_000);
        expect(liveWorkers()).to.equal(0);
      } finally {
        await lake.close();
      }
    });
  }

  it('stops every worker when runPipeline is aborted, and reports MKPI_INTERRUPTED', async () => {
    const dir = messyLake({ streams: 400_000, files: 4, messy: false, seed: 5 });
    const controller = new AbortController();
    const lake = openLake(dir);
    try {
      const report = await runPipeline({
        command: 'compute',
        lake,
        layout: DEFAULT_LAYOUT,
        warehouse: new MemoryWarehouse(),
        runId: 'r',
        rejectsKey: null,
        signal: controller.signal,
        parallel: parallel(dir),
        onEvent: (e) => {
          if (e.type === 'progress' && e.rows > 0) controller.abort();
        },
      });
      expect(report.error?.code).to.equal('MKPI_INTERRUPTED');
      expect(liveWorkers()).to.equal(0);
    } finally {
      await lake.close();
    }
  });

  for (const local of [false, true]) {
    it(`surfaces a read failure as the MkpiError one thread gives, and stops the others${local ? ' (calling thread reading too)' : ''}`, async () => {
      const dir = messyLake({ streams: 200_000, files: 3, messy: false, seed: 9 });
      const lake = openLake(dir);
      try {
        const { dims } = await loadDimensions(lake, { songs: 'songs.csv', users: 'users.csv' }, {});
        const files = (await lake.list('streams/', ['streams/archived/'])).filter((f) => f.key.endsWith('.csv'));
        // A file listed, then gone before it is read.
        const gone = { key: 'streams/gone.csv', size: 10, fingerprint: '10:0' };
        const list = [files[0], gone, ...files.slice(1)];
        const one = await (async () => {
          const state = create(dims.trackCount, dims.userCount);
          for (const f of list) await scanStreamFile(lake, f, dims, state, {});
        })().then(
          () => undefined,
          (e: unknown) => e,
        );
        const two = await scanFilesParallel(list, dims, create(dims.trackCount, dims.userCount), {
          lake: { module: REOPEN_MODULE, uri: dir },
          workers: 2,
          local: local ? lake : undefined,
          rejects: new RejectSink(),
          tmpDir: spoolRoot,
        }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(one).to.be.instanceOf(MkpiError);
        expect(two).to.be.instanceOf(MkpiError);
        const a = one as MkpiError;
        const b = two as MkpiError;
        expect({ code: b.code, message: b.message, hint: b.hint }).to.deep.equal({ code: a.code, message: a.message, hint: a.hint });
        expect(liveWorkers()).to.equal(0);
      } finally {
        await lake.close();
      }
    });
  }

  describe('over S3', () => {
    let s3: TestS3;
    before(async () => {
      s3 = await startS3();
    });
    after(async () => {
      await s3?.stop();
    });

    async function upload(bucket: string, dir: string): Promise<void> {
      await s3.bucket(bucket);
      for (const name of ['songs.csv', 'users.csv']) await s3.putObject(bucket, `lake/${name}`, readFileSync(join(dir, name)));
      for (let i = 1; i <= 4; i++) {
        const name = `streams_${String(i).padStart(4, '0')}.csv`;
        await s3.putObject(bucket, `lake/streams/${name}`, readFileSync(join(dir, 'streams', name)));
      }
    }

    it('reads an S3 lake in workers with the results of one thread', async () => {
      const dir = messyLake({ streams: 40_000, files: 4, seed: 21 });
      await upload('par-ok', dir);
      const spec = {
        module: REOPEN_MODULE,
        uri: 's3://par-ok/lake',
        s3: { endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true },
      };
      const run = async (p: ParallelOptions | undefined) => {
        const lake = openLake(spec.uri, spec.s3);
        try {
          return await runPipeline({
            command: 'compute',
            lake,
            layout: DEFAULT_LAYOUT,
            warehouse: new MemoryWarehouse(),
            runId: 'r',
            rejectsKey: null,
            maxBadRows: 1e9,
            dryRun: true,
            parallel: p,
          });
        } finally {
          await lake.close();
        }
      };
      const single = await run(undefined);
      const par = await run({ lake: spec, workers: 2, minBytes: 0 });
      expect(single.error).to.equal(null);
      expect(comparable(par)).to.deep.equal(comparable(single));
      expect(liveWorkers()).to.equal(0);
    });

    it('turns a connection cut mid-file for good into the single-thread error code, and stops the workers', async () => {
      const dir = messyLake({ streams: 80_000, files: 4, messy: false, seed: 23 });
      await upload('par-cut', dir);
      const proxy = await startFaultyProxy(s3.endpoint, {
        match: (req) => req.method === 'GET' && /streams_0003\.csv/.test(req.url ?? ''),
        // Every response for that file breaks after its headers: the lake's resumes make no
        // progress and it gives up, as a store that went away mid-run would make it.
        cutAfterBytes: 0,
        times: 1_000,
      });
      const spec = {
        module: REOPEN_MODULE,
        uri: 's3://par-cut/lake',
        s3: { endpoint: proxy.endpoint, region: 'us-east-1', forcePathStyle: true },
      };
      try {
        const codes: (string | undefined)[] = [];
        for (const p of [undefined, { lake: spec, workers: 2, minBytes: 0 }]) {
          const lake = openLake(spec.uri, spec.s3);
          try {
            const r = await runPipeline({
              command: 'compute',
              lake,
              layout: DEFAULT_LAYOUT,
              warehouse: new MemoryWarehouse(),
              runId: 'r',
              rejectsKey: null,
              dryRun: true,
              parallel: p,
            });
            codes.push(r.error?.code);
          } finally {
            await lake.close();
          }
        }
        expect(codes[0]).to.be.a('string');
        expect(codes[1]).to.equal(codes[0]);
        expect(liveWorkers()).to.equal(0);
        expect(proxy.cuts).to.be.greaterThan(1);
      } finally {
        await proxy.stop();
      }
    });
  });
});
