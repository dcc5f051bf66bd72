// The shard plan (lib/stages/shards.ts): a deterministic, balanced assignment; a plan that
// survives a round trip through the staging lake; the refusal of a plan whose shards are not all
// complete; and the `--shard i/N` syntax.

import { expect } from 'chai';
import { Readable } from 'node:stream';

import { isMkpiError } from '../../../lib/domain/errors.js';
import { DEFAULT_LAYOUT } from '../../../lib/domain/layout.js';
import type { LakeObject } from '../../../lib/domain/lake.js';
import { MANIFEST_VERSION, manifestKey, planKey, type ShardManifest, type ShardPlan } from '../../../lib/domain/shards.js';
import { assignShards, checkShards, jobOf, makePlan, parseShard, readManifest, readPlan, writePlan } from '../../../lib/stages/shards.js';
import { MemoryLake } from '../../support/fakes/memory-lake.js';

async function codeOf(
  p: Promise<unknown> | (() => unknown),
): Promise<{ code?: string; details?: Record<string, unknown>; message?: string }> {
  try {
    if (typeof p === 'function') p();
    else await p;
  } catch (err) {
    if (isMkpiError(err)) return { code: err.code, details: err.details, message: err.message };
    throw err;
  }
  return {};
}

const obj = (key: string, size: number): LakeObject => ({ key, size, fingerprint: `${size}:1` });

function samplePlan(shards = 3): ShardPlan {
  return makePlan({
    runId: 'run-1',
    lake: '/lake',
    layout: DEFAULT_LAYOUT,
    kpis: ['hourly', 'genre'],
    shards,
    files: [
      { obj: obj('streams/a.csv', 500), missing: ['hourly', 'genre'] },
      { obj: obj('streams/b.csv', 300), missing: ['hourly', 'genre'] },
      { obj: obj('streams/c.csv.gz', 300), missing: ['genre'] },
      { obj: obj('streams/d.csv', 50), missing: ['hourly', 'genre'] },
    ],
    songs: obj('songs.csv', 400),
    users: obj('users.csv', 100),
    now: new Date('2024-06-02T03:00:00Z'),
  });
}

function manifestFor(plan: ShardPlan, shard: number): ShardManifest {
  return {
    version: MANIFEST_VERSION,
    runId: plan.runId,
    shard,
    shards: plan.shards,
    startedAt: '2024-06-02T03:01:00.000Z',
    finishedAt: '2024-06-02T03:02:00.000Z',
    parts: { listens: [], songs: [], artists: [], users: [] },
    files: plan.files
      .filter((f) => f.shard === shard)
      .map((f) => ({
        id: f.id,
        key: f.key,
        fingerprint: f.fingerprint,
        contentHash: 'x',
        bytes: f.size,
        rows: 0,
        listens: 0,
        rejected: {},
        dates: [],
        duplicateHeaders: [],
        rejectsKey: null,
        rejectsCount: 0,
      })),
    dimensions: plan.dimensions
      .filter((d) => d.shard === shard)
      .map((d) => ({
        kind: d.kind,
        key: d.key,
        bytes: d.size,
        rows: 0,
        valid: 0,
        rejected: {},
        duplicateHeaders: [],
        rejectsKey: null,
        rejectsCount: 0,
      })),
  };
}

async function putManifest(staging: MemoryLake, m: ShardManifest): Promise<void> {
  await staging.write(manifestKey(m.runId, m.shard, m.shards), Readable.from([JSON.stringify(m)]));
}

describe('stages/shards: assignShards (deterministic LPT)', () => {
  it('puts the largest item first on the least loaded shard, ties to the lowest index', () => {
    const items = [obj('a', 10), obj('b', 40), obj('c', 30), obj('d', 20), obj('e', 10)];
    // b 40 -> 0, c 30 -> 1, d 20 -> 1 (loads 40, 30), a 10 -> 0 (40, 50; a before e), e 10 -> 0 (50, 50: the lowest index).
    expect(assignShards(items, 2)).to.deep.equal([0, 0, 1, 1, 0]);
  });

  it('breaks size ties by key, whatever the input order', () => {
    const items = [obj('z', 5), obj('m', 5), obj('a', 5)];
    expect(assignShards(items, 3)).to.deep.equal([2, 1, 0]);
    expect(assignShards([...items].reverse(), 3)).to.deep.equal([0, 1, 2]);
  });

  it('is balanced: the largest shard is within 4/3 of the best possible', () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 1000;
    const items = Array.from({ length: 200 }, (_, i) => obj(`streams/f${i}.csv`, Math.floor(rnd()) + 1));
    const shards = 8;
    const got = assignShards(items, shards);
    const loads = new Array<number>(shards).fill(0);
    got.forEach((s, i) => (loads[s] += items[i].size));
    const total = items.reduce((a, b) => a + b.size, 0);
    const lower = Math.max(total / shards, ...items.map((i) => i.size));
    expect(Math.max(...loads)).to.be.at.most((lower * 4) / 3);
    expect(assignShards(items, shards)).to.deep.equal(got);
  });

  it('one shard takes everything; no items is an empty assignment; shards < 1 is a usage error', async () => {
    expect(assignShards([obj('a', 1), obj('b', 2)], 1)).to.deep.equal([0, 0]);
    expect(assignShards([], 4)).to.deep.equal([]);
    expect((await codeOf(() => assignShards([], 0))).code).to.equal('MKPI_USAGE');
    expect((await codeOf(() => assignShards([], 1.5))).code).to.equal('MKPI_USAGE');
  });
});

describe('stages/shards: the plan', () => {
  it('assigns the dimension files with the stream files, ids 1..n in listing order', () => {
    const plan = samplePlan();
    // By size: a 500 -> 0, songs 400 -> 1, b 300 -> 2, c 300 -> 2 (loads 500, 400, 300), users 100 -> 1
    // (500, 400, 600), d 50 -> 0 (500, 500, 600: the tie goes to the lowest index).
    expect(plan.files.map((f) => [f.id, f.key, f.shard])).to.deep.equal([
      [1, 'streams/a.csv', 0],
      [2, 'streams/b.csv', 2],
      [3, 'streams/c.csv.gz', 2],
      [4, 'streams/d.csv', 0],
    ]);
    expect(plan.dimensions.map((d) => [d.kind, d.key, d.shard])).to.deep.equal([
      ['songs', 'songs.csv', 1],
      ['users', 'users.csv', 1],
    ]);
    expect(plan.files[2].missing).to.deep.equal(['genre']);
    expect(plan.createdAt).to.equal('2024-06-02T03:00:00.000Z');
    expect(plan.version).to.equal(1);
  });

  it('refuses a run id that cannot name a staging folder', async () => {
    const bad = (runId: string) =>
      codeOf(() =>
        makePlan({ runId, lake: '/l', layout: DEFAULT_LAYOUT, kpis: [], shards: 1, files: [], songs: obj('s', 1), users: obj('u', 1) }),
      );
    expect((await bad('../x')).code).to.equal('MKPI_USAGE');
    expect((await bad('')).code).to.equal('MKPI_USAGE');
    expect((await bad('a/b')).code).to.equal('MKPI_USAGE');
  });

  it('round-trips through the staging lake', async () => {
    const staging = new MemoryLake();
    const plan = samplePlan();
    await writePlan(staging, plan);
    expect(staging.has(planKey('run-1'))).to.equal(true);
    expect(await readPlan(staging, 'run-1')).to.deep.equal(plan);
  });

  it('a missing plan is MKPI_PLAN_NOT_FOUND; an unparsable or other-version one MKPI_PLAN_MISMATCH', async () => {
    const staging = new MemoryLake();
    const missing = await codeOf(readPlan(staging, 'run-1'));
    expect(missing.code).to.equal('MKPI_PLAN_NOT_FOUND');
    staging.put(planKey('run-1'), '{"version": 1, "runId": "run-1", "shar');
    expect((await codeOf(readPlan(staging, 'run-1'))).code).to.equal('MKPI_PLAN_MISMATCH');
    staging.put(planKey('run-1'), JSON.stringify({ ...samplePlan(), version: 2 }));
    expect((await codeOf(readPlan(staging, 'run-1'))).code).to.equal('MKPI_PLAN_MISMATCH');
    staging.put(planKey('run-1'), JSON.stringify({ ...samplePlan(), runId: 'run-2' }));
    expect((await codeOf(readPlan(staging, 'run-1'))).code).to.equal('MKPI_PLAN_MISMATCH');
    staging.put(planKey('run-1'), '[]');
    expect((await codeOf(readPlan(staging, 'run-1'))).code).to.equal('MKPI_PLAN_MISMATCH');
  });
});

describe('stages/shards: checkShards', () => {
  it('returns the manifests in shard order when every shard is complete', async () => {
    const staging = new MemoryLake();
    const plan = samplePlan();
    for (const i of [2, 0, 1]) await putManifest(staging, manifestFor(plan, i));
    const got = await checkShards(staging, plan);
    expect(got.map((m) => m.shard)).to.deep.equal([0, 1, 2]);
    expect(await readManifest(staging, 'run-1', 1, 3)).to.deep.equal(manifestFor(plan, 1));
    expect(await readManifest(staging, 'run-1', 1, 4)).to.equal(undefined);
  });

  it('names every shard whose manifest is missing or does not match the plan', async () => {
    const plan = samplePlan();
    const cases: [string, (staging: MemoryLake) => Promise<void>, number[]][] = [
      ['missing', async (s) => void (await putManifest(s, manifestFor(plan, 0))), [1, 2]],
      [
        'a changed fingerprint',
        async (s) => {
          const m = manifestFor(plan, 2);
          m.files[1].fingerprint = 'other';
          for (const x of [manifestFor(plan, 0), manifestFor(plan, 1), m]) await putManifest(s, x);
        },
        [2],
      ],
      [
        'a file too few and a dimension missing',
        async (s) => {
          const m1 = manifestFor(plan, 1);
          m1.dimensions.pop();
          const m2 = manifestFor(plan, 2);
          m2.files.pop();
          for (const x of [manifestFor(plan, 0), m1, m2]) await putManifest(s, x);
        },
        [1, 2],
      ],
      [
        'another run, another shard count, a wrong version, not JSON',
        async (s) => {
          await putManifest(s, { ...manifestFor(plan, 0), runId: 'run-2' });
          s.put(manifestKey('run-1', 1, 3), JSON.stringify({ ...manifestFor(plan, 1), version: 9 }));
          s.put(manifestKey('run-1', 2, 3), '{');
        },
        [0, 1, 2],
      ],
      [
        'the manifest of another shard under its name',
        async (s) => {
          await putManifest(s, manifestFor(plan, 0));
          await putManifest(s, manifestFor(plan, 1));
          s.put(manifestKey('run-1', 2, 3), JSON.stringify(manifestFor(plan, 1)));
        },
        [2],
      ],
    ];
    for (const [what, setup, expected] of cases) {
      const staging = new MemoryLake();
      await setup(staging);
      const e = await codeOf(checkShards(staging, plan));
      expect(e.code, what).to.equal('MKPI_SHARDS_INCOMPLETE');
      expect(e.details?.shards, what).to.deep.equal(expected);
      for (const i of expected) expect(e.message, what).to.match(new RegExp(`\\b${i}\\b`));
    }
  });

  it('a schema error in a manifest is still a complete shard (the run stops on it later)', async () => {
    const staging = new MemoryLake();
    const plan = samplePlan(1);
    const m = manifestFor(plan, 0);
    m.files[0].schemaError = { message: 'streams/a.csv: missing required column listen_time' };
    await putManifest(staging, m);
    expect((await checkShards(staging, plan))[0].files[0].schemaError).to.deep.equal(m.files[0].schemaError);
  });
});

describe('stages/shards: parseShard', () => {
  it('reads i/N, 0-based', () => {
    expect(parseShard('3/16')).to.deep.equal({ index: 3, count: 16 });
    expect(parseShard('0/1')).to.deep.equal({ index: 0, count: 1 });
    expect(parseShard('07/10')).to.deep.equal({ index: 7, count: 10 });
  });

  it('refuses anything else', async () => {
    for (const s of ['16/16', '1/0', '0/0', '-1/4', '1', '1/2/3', ' 1/2', '1/2 ', 'a/b', '1.5/4', '', '/4']) {
      expect((await codeOf(() => parseShard(s))).code, s).to.equal('MKPI_USAGE');
    }
  });
});

describe('stages/shards: jobOf', () => {
  it('hands a shard its files in plan order and its dimensions', async () => {
    const plan = samplePlan();
    expect(jobOf(plan, 2)).to.deep.equal({
      runId: 'run-1',
      shard: 2,
      shards: 3,
      files: [
        { id: 2, key: 'streams/b.csv', fingerprint: '300:1' },
        { id: 3, key: 'streams/c.csv.gz', fingerprint: '300:1' },
      ],
      dimensions: [],
      detailFiles: { songs: plan.layout.songs, users: plan.layout.users },
    });
    expect(jobOf(plan, 1).dimensions.map((d) => d.kind)).to.deep.equal(['songs', 'users']);
    expect((await codeOf(() => jobOf(plan, 3))).code).to.equal('MKPI_USAGE');
  });
});
