// (The exhaustion cases use 500s: the SDK backs off from a 503 SlowDown five times longer, which
// only makes them slower.)
//
// Flaky S3 (issue 4): a fault-injecting proxy in front of s3rver answers some requests with
// 500 InternalError / 503 SlowDown, resets connections, and cuts GetObject bodies mid-way. The
// CLI (the built one, as users run it) must retry with backoff and resume reads, and the run
// must end exactly like a clean run. Once retries are exhausted the run fails with 69
// (MKPI_LAKE_UNAVAILABLE) — or 75 (MKPI_RETRY_LATER) when the object changed under the read —
// having loaded nothing and archived nothing; a failure while archiving a committed load is 74,
// finished by the next run.

import { expect } from 'chai';

import { REPO, runCli, type CliResult } from '../support/cli.js';
import { freshDatabase } from '../support/pg.js';
import {
  INTERNAL_ERROR,
  SLOW_DOWN,
  startFaultyProxy,
  startS3,
  type FaultPlan,
  type FaultyProxy,
  type ProxyFault,
  type TestS3,
} from '../support/s3.js';
import {
  NO_WAREHOUSE_ENV,
  snapshotS3Lake,
  snapshotWarehouse,
  uploadDir,
  type LakeSnapshot,
  type WarehouseSnapshot,
} from '../support/harness.js';
import { join } from 'node:path';

const TINY = join(REPO, 'fixtures', 'tiny');
const UNAVAILABLE: ProxyFault = { kind: 'status', status: 503, code: 'ServiceUnavailable' };
const EMPTY_WAREHOUSE: WarehouseSnapshot = { hourly: [], genre: [], ledger: [], ledgerDates: [] };

describe('flaky S3: retries, resumed reads, and clean failures once retries run out', function () {
  this.timeout(120_000);
  let s3: TestS3;
  let n = 0;
  const proxies: FaultyProxy[] = [];
  let reference: { lake: LakeSnapshot; warehouse: WarehouseSnapshot };

  async function freshLake(): Promise<string> {
    const bucket = `flaky-${++n}`;
    await s3.bucket(bucket);
    await uploadDir(s3.client, TINY, bucket, 'lake');
    return bucket;
  }

  async function proxy(plan: FaultPlan): Promise<FaultyProxy> {
    const p = await startFaultyProxy(s3.endpoint, plan);
    proxies.push(p);
    return p;
  }

  function run(bucket: string, endpoint: string, db: string, command = 'run'): Promise<CliResult> {
    return runCli(
      [command, '--lake', `s3://${bucket}/lake`, '--s3-endpoint', endpoint, '--s3-force-path-style', '--warehouse', db, '--json'],
      {
        env: { ...NO_WAREHOUSE_ENV, ...s3.env },
      },
    );
  }

  const lakeOf = (bucket: string) => snapshotS3Lake(s3.client, bucket, 'lake', { skip: ['rejects/'] });

  before(async () => {
    s3 = await startS3();
    const bucket = await freshLake();
    const db = await freshDatabase('flaky_ref');
    const r = await run(bucket, s3.endpoint, db);
    expect(r.code, r.stderr).to.equal(0);
    reference = { lake: await lakeOf(bucket), warehouse: await snapshotWarehouse(db) };
  });

  after(async () => {
    for (const p of proxies) await p.stop();
    await s3?.stop();
  });

  it('500s, 503 SlowDowns, resets and bodies cut mid-GetObject: every request retried or resumed, the run ends like a clean one', async () => {
    const bucket = await freshLake();
    const db = await freshDatabase('flaky');
    // Per operation and key, the attempts go wrong in a fixed pattern, whatever the interleaving:
    // the SDK's 5 attempts and the reader's resumes are enough for each, but only just.
    const attempts = new Map<string, number>();
    const plans: Partial<Record<string, (ProxyFault | undefined)[]>> = {
      ListObjectsV2: [SLOW_DOWN, INTERNAL_ERROR],
      HeadObject: [INTERNAL_ERROR],
      GetObject: [UNAVAILABLE, { kind: 'cut', afterBytes: 20 }],
      'GetObject+range': [INTERNAL_ERROR, { kind: 'cut', afterBytes: 10, mode: 'close' }],
      PutObject: [INTERNAL_ERROR, { kind: 'reset' }],
      CopyObject: [SLOW_DOWN, INTERNAL_ERROR],
      DeleteObject: [{ kind: 'reset' }, UNAVAILABLE],
    };
    const p = await proxy({
      decide(req) {
        const kind = req.op === 'GetObject' && req.range ? 'GetObject+range' : req.op;
        const id = `${kind} ${req.key}`;
        const i = attempts.get(id) ?? 0;
        attempts.set(id, i + 1);
        return plans[kind]?.[i];
      },
    });
    const r = await run(bucket, p.endpoint, db);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json.loaded).to.equal(true);
    expect(r.json.archived).to.have.length(2);
    expect(await lakeOf(bucket)).to.deep.equal(reference.lake);
    expect(await snapshotWarehouse(db)).to.deep.equal(reference.warehouse);

    // Every kind of fault was met, and met again by a retry.
    const seen = new Set(p.requests.filter((q) => q.fault).map((q) => `${q.op}:${q.fault}`));
    for (const f of [
      'ListObjectsV2:status',
      'HeadObject:status',
      'GetObject:status',
      'GetObject:cut',
      'PutObject:status',
      'PutObject:reset',
      'CopyObject:status',
      'DeleteObject:reset',
      'DeleteObject:status',
    ]) {
      expect(seen, f).to.include(f);
    }
    // Cut reads resumed from where they broke, with a back-off first.
    const cutReads = p.requests.filter((q) => q.op === 'GetObject' && q.cut && !q.range);
    expect(cutReads.length).to.be.greaterThan(2);
    for (const cut of cutReads) {
      const resume = p.requests.find((q) => q.op === 'GetObject' && q.key === cut.key && q.range === 'bytes=20-' && q.at >= cut.at);
      expect(resume, `resume of ${cut.key}`).to.not.equal(undefined);
      expect(resume!.ifMatch, 'the resume asks for the same version').to.be.a('string');
      expect(resume!.at - cut.at, 'back-off before resuming').to.be.at.least(100);
    }
  });

  it('a stream file whose GetObject fails every time → 69 MKPI_LAKE_UNAVAILABLE, nothing loaded, nothing archived', async () => {
    const bucket = await freshLake();
    const db = await freshDatabase('flaky');
    const before = await snapshotS3Lake(s3.client, bucket, 'lake');
    const p = await proxy({ decide: (req) => (req.op === 'GetObject' && req.key.endsWith('streams/b.csv') ? INTERNAL_ERROR : undefined) });
    const r = await run(bucket, p.endpoint, db);
    expect(r.code, r.stderr).to.equal(69);
    expect(r.json.error.code).to.equal('MKPI_LAKE_UNAVAILABLE');
    expect(r.json.loaded).to.equal(false);
    expect(p.requests.filter((q) => q.op === 'GetObject' && q.key.endsWith('streams/b.csv')).length, 'SDK attempts').to.equal(5);
    expect(await snapshotWarehouse(db)).to.deep.equal(EMPTY_WAREHOUSE);
    expect(await snapshotS3Lake(s3.client, bucket, 'lake')).to.deep.equal(before);
  });

  it('a read cut again at every resume → 69 once the resumes run out, nothing loaded, nothing archived', async () => {
    const bucket = await freshLake();
    const db = await freshDatabase('flaky');
    const before = await snapshotS3Lake(s3.client, bucket, 'lake');
    const p = await proxy({
      decide: (req) =>
        req.op === 'GetObject' && req.key.endsWith('streams/a.csv') ? { kind: 'cut', afterBytes: req.range ? 0 : 30 } : undefined,
    });
    const r = await run(bucket, p.endpoint, db);
    expect(r.code, r.stderr).to.equal(69);
    expect(r.json.error.code).to.equal('MKPI_LAKE_UNAVAILABLE');
    expect(r.json.error.message).to.match(/resume attempts failed/);
    expect(p.requests.filter((q) => q.op === 'GetObject' && q.range === 'bytes=30-').length, 'resumes').to.equal(5);
    expect(await snapshotWarehouse(db)).to.deep.equal(EMPTY_WAREHOUSE);
    expect(await snapshotS3Lake(s3.client, bucket, 'lake')).to.deep.equal(before);
  });

  it('a listing that fails every time → 69, nothing loaded, nothing archived', async () => {
    const bucket = await freshLake();
    const db = await freshDatabase('flaky');
    const before = await snapshotS3Lake(s3.client, bucket, 'lake');
    const p = await proxy({ decide: (req) => (req.op === 'ListObjectsV2' ? INTERNAL_ERROR : undefined) });
    const r = await run(bucket, p.endpoint, db);
    expect(r.code, r.stderr).to.equal(69);
    expect(r.json.error.code).to.equal('MKPI_LAKE_UNAVAILABLE');
    expect(await snapshotWarehouse(db)).to.deep.equal(EMPTY_WAREHOUSE);
    expect(await snapshotS3Lake(s3.client, bucket, 'lake')).to.deep.equal(before);
  });

  it('the object replaced between a cut and its resume → 75 MKPI_RETRY_LATER (never two versions stitched), nothing loaded', async () => {
    const bucket = await freshLake();
    const db = await freshDatabase('flaky');
    const replaced = 'user_id,track_id,listen_time\nu1,t1,2024-06-09 10:00:00\n';
    const p = await proxy({
      decide: (req) =>
        req.op === 'GetObject' && !req.range && req.key.endsWith('streams/b.csv') ? { kind: 'cut', afterBytes: 25 } : undefined,
      async beforeForward(req) {
        if (req.method === 'GET' && req.headers.range && (req.url ?? '').includes('streams/b.csv')) {
          await s3.putObject(bucket, 'lake/streams/b.csv', replaced);
        }
      },
    });
    const r = await run(bucket, p.endpoint, db);
    expect(r.code, r.stderr).to.equal(75);
    expect(r.json.error.code).to.equal('MKPI_RETRY_LATER');
    expect(await snapshotWarehouse(db)).to.deep.equal(EMPTY_WAREHOUSE);
    const lake = await snapshotS3Lake(s3.client, bucket, 'lake');
    expect(Object.keys(lake).filter((k) => k.startsWith('streams/'))).to.deep.equal(['streams/a.csv', 'streams/b.csv']);
  });

  for (const op of ['CopyObject', 'DeleteObject'] as const) {
    it(`${op} failing every time after a committed load → 74, sources kept; the next run archives them without loading twice`, async () => {
      const bucket = await freshLake();
      const db = await freshDatabase('flaky');
      const p = await proxy({ decide: (req) => (req.op === op ? INTERNAL_ERROR : undefined) });
      const r = await run(bucket, p.endpoint, db);
      expect(r.code, r.stderr).to.equal(74);
      expect(r.json.error.code).to.equal('MKPI_ARCHIVE_FAILED');
      expect(r.json.loaded).to.equal(true);
      const lake = await snapshotS3Lake(s3.client, bucket, 'lake', { skip: ['rejects/'] });
      expect(
        Object.keys(lake).filter((k) => k.startsWith('streams/')),
        'sources stay',
      ).to.include.members(['streams/a.csv', 'streams/b.csv']);

      const next = await run(bucket, s3.endpoint, db);
      expect(next.code, next.stderr).to.equal(0);
      expect(next.json.loaded).to.equal(false);
      expect(next.json.archived).to.have.length(2);
      expect(await lakeOf(bucket)).to.deep.equal(reference.lake);
      expect(await snapshotWarehouse(db)).to.deep.equal(reference.warehouse);
    });
  }
});
