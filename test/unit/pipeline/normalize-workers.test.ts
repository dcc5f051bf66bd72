// Shards normalized in worker threads (lib/pipeline/normalize-workers.ts) against the same jobs
// run in the calling thread, on a generated messy lake in a local folder: the same manifests and
// the same parts, byte for byte once inflated; a worker's error comes back with its code; an
// abort stops them; no worker outlives the call.

import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';

import { REOPEN_MODULE } from '../../../lib/adapters/lake/reopen.js';
import { openLake } from '../../../lib/adapters/lake/open.js';
import { isMkpiError } from '../../../lib/domain/errors.js';
import { DEFAULT_LAYOUT } from '../../../lib/domain/layout.js';
import type { Lake } from '../../../lib/domain/lake.js';
import type { ShardManifest, ShardPlan } from '../../../lib/domain/shards.js';
import { liveNormalizeWorkers, normalizeShards } from '../../../lib/pipeline/normalize-workers.js';
import { listStreamFiles } from '../../../lib/stages/plan.js';
import { checkShards, jobOf, makePlan } from '../../../lib/stages/shards.js';
import { generateLake } from '../../../bench/generate-lake.js';

const dirs: string[] = [];
function tmp(tag: string): string {
  const d = mkdtempSync(join(tmpdir(), `mkpi-norm-${tag}-`));
  dirs.push(d);
  return d;
}

async function planFor(lake: Lake, shards: number): Promise<ShardPlan> {
  const { files } = await listStreamFiles(lake, DEFAULT_LAYOUT);
  return makePlan({
    runId: 'run-w',
    lake: lake.root,
    layout: DEFAULT_LAYOUT,
    kpis: ['hourly', 'genre'],
    shards,
    files: files.map((obj) => ({ obj, missing: ['hourly', 'genre'] })),
    songs: (await lake.stat(DEFAULT_LAYOUT.songs))!,
    users: (await lake.stat(DEFAULT_LAYOUT.users))!,
  });
}

/** A manifest without its clock, and the inflated text of every object it lists. */
function contentOf(stagingDir: string, manifests: ShardManifest[]): unknown {
  return manifests.map((m) => {
    const keys = [
      ...Object.values(m.parts).flatMap((ps) => ps.map((p) => p.key)),
      ...[...m.files, ...m.dimensions].flatMap((f) => (f.rejectsKey === null ? [] : [f.rejectsKey])),
    ];
    return {
      manifest: { ...m, startedAt: '', finishedAt: '' },
      objects: keys.map((k) => [k, gunzipSync(readFileSync(join(stagingDir, k))).toString('utf8')]),
    };
  });
}

describe('pipeline/normalize-workers: shards in worker threads', () => {
  let lakeDir = '';
  let lake: Lake;
  let plan: ShardPlan;

  before(async () => {
    lakeDir = tmp('lake');
    generateLake({
      out: lakeDir,
      songs: 2000,
      users: 600,
      streams: 60_000,
      files: 5,
      days: 3,
      seed: 11,
      messy: true,
      startDate: '2024-06-01',
    });
    // One compressed file too, read through gunzip in a worker.
    writeFileSync(join(lakeDir, 'streams', 'zz.csv.gz'), gzipSync(readFileSync(join(lakeDir, 'streams', 'streams_0001.csv'))));
    lake = openLake(lakeDir);
    plan = await planFor(lake, 3);
  });

  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('gives the manifests and parts of the in-thread run, in jobs order', async () => {
    const jobs = [0, 1, 2].map((i) => jobOf(plan, i));
    const here = tmp('here');
    const there = tmp('there');
    let rowsHere = 0;
    let rowsThere = 0;
    const a = await normalizeShards(jobs, {
      lake,
      staging: openLake(here),
      workers: 1,
      partBytes: 50_000,
      onRows: (n) => (rowsHere += n),
    });
    const b = await normalizeShards(jobs, {
      lake,
      staging: openLake(there),
      lakeSpec: { module: REOPEN_MODULE, uri: lakeDir },
      stagingSpec: { module: REOPEN_MODULE, uri: there },
      workers: 2,
      partBytes: 50_000,
      onRows: (n) => (rowsThere += n),
    });
    expect(b.map((m) => m.shard)).to.deep.equal([0, 1, 2]);
    expect(contentOf(there, b)).to.deep.equal(contentOf(here, a));
    expect(a.some((m) => m.parts.listens.length > 1)).to.equal(true);
    expect(rowsThere).to.equal(rowsHere);
    expect(rowsHere).to.be.greaterThan(60_000);
    expect((await checkShards(openLake(there), plan)).map((m) => m.shard)).to.deep.equal([0, 1, 2]);
    expect(liveNormalizeWorkers()).to.equal(0);
  });

  it("brings a worker's error back with its code, and stops the others", async () => {
    const jobs = [0, 1, 2].map((i) => jobOf(plan, i));
    const broken = jobs.find((j) => j.files.length > 0)!;
    broken.files[0] = { ...broken.files[0], fingerprint: 'not-it' };
    const staging = tmp('stale');
    let code: string | undefined;
    try {
      await normalizeShards(jobs, {
        lake,
        staging: openLake(staging),
        lakeSpec: { module: REOPEN_MODULE, uri: lakeDir },
        stagingSpec: { module: REOPEN_MODULE, uri: staging },
        workers: 2,
      });
    } catch (err) {
      code = isMkpiError(err) ? err.code : String(err);
    }
    expect(code).to.equal('MKPI_PLAN_STALE');
    expect(liveNormalizeWorkers()).to.equal(0);
  });

  it('an abort is MKPI_INTERRUPTED and leaves no worker behind', async () => {
    const jobs = [0, 1, 2].map((i) => jobOf(plan, i));
    const staging = tmp('abort');
    const controller = new AbortController();
    let code: string | undefined;
    try {
      await normalizeShards(jobs, {
        lake,
        staging: openLake(staging),
        lakeSpec: { module: REOPEN_MODULE, uri: lakeDir },
        stagingSpec: { module: REOPEN_MODULE, uri: staging },
        workers: 2,
        signal: controller.signal,
        onRows: () => controller.abort(),
      });
    } catch (err) {
      code = isMkpiError(err) ? err.code : String(err);
    }
    expect(code).to.equal('MKPI_INTERRUPTED');
    expect(liveNormalizeWorkers()).to.equal(0);
    expect(() => readFileSync(join(staging, 'run-w', 'shard-0000-of-0003', 'manifest.json'))).to.throw();
  });
});
