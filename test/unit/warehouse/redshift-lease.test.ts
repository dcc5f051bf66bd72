// The run lock on Redshift: a lease row taken when free, refused while its holder lives,
// taken over when the holder's heartbeat is older than its TTL or its process is gone on this
// machine, renewed on a timer, released on release(), and checked inside the load transaction
// under its LOCK (fencing).

import assert from 'node:assert/strict';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { FakeRedshift } from './redshift-fake.js';
import { fullBatch, mockS3, rejects, warehouseOn } from './redshift-support.js';

const LEASE = '"reporting_schema".musickpi_run_lock';

describe('warehouse/redshift: the run lock (a lease row)', () => {
  const { s3 } = mockS3();

  it('is taken when free, in a transaction that LOCKs the lease table first, and deleted on release', async () => {
    const fake = new FakeRedshift().initialised();
    const wh = warehouseOn(fake);
    const lock = await wh.acquireRunLock();
    assert.equal(fake.lease.length, 1);
    const row = fake.lease[0];
    assert.deepEqual([row.run_id, row.host, row.pid, row.boot_id, row.ttl_ms], ['run-1', 'host-a', 4242, 'boot-a', 300_000]);
    assert.match(row.token, /^[0-9a-f]{16}$/);
    const lockSession = fake.sent.filter((s) => s.sql.includes(LEASE) || /^(BEGIN|COMMIT|LOCK|SET)/.test(s.sql));
    const order = lockSession.map((s) => s.sql.split(/\s/)[0]);
    assert.deepEqual(order.slice(order.indexOf('BEGIN'), order.indexOf('BEGIN') + 4), ['BEGIN', 'SET', 'LOCK', 'SET']);
    assert.ok(fake.sql.includes(`LOCK ${LEASE}`));
    await lock.release();
    assert.equal(fake.lease.length, 0);
    assert.ok(fake.sent.some((s) => /^DELETE FROM .*musickpi_run_lock WHERE token = \$1/.test(s.sql) && s.values?.[0] === row.token));
    await lock.release();
    await wh.close();
  });

  it('creates the schema and the lease table when missing (a run locks before init)', async () => {
    const fake = new FakeRedshift();
    const wh = warehouseOn(fake);
    const lock = await wh.acquireRunLock();
    assert.ok(fake.sql.some((s) => /^CREATE SCHEMA IF NOT EXISTS "reporting_schema"$/.test(s)));
    assert.ok(fake.sql.some((s) => /^CREATE TABLE IF NOT EXISTS "reporting_schema"\.musickpi_run_lock/.test(s)));
    await lock.release();
    await wh.close();
  });

  it('a second run is refused with MKPI_LOCKED naming the holder (host, pid, since), even from the same process', async () => {
    const fake = new FakeRedshift().initialised();
    const first = warehouseOn(fake);
    const lock = await first.acquireRunLock();
    fake.lease[0].held_s = 95;
    const second = warehouseOn(fake, { runId: 'run-2', testing: { identity: { host: 'host-b', pid: 7, bootId: 'boot-b' } } });
    const e = await rejects(second.acquireRunLock(), 'MKPI_LOCKED');
    assert.match(e.hint ?? '', /run run-1 on host host-a, pid 4242, holding it for 95 s/);
    assert.deepEqual(e.details?.holder, { runId: 'run-1', host: 'host-a', pid: 4242 });
    assert.equal(fake.lease.length, 1, 'the holder keeps its lease');
    assert.ok(fake.sql.includes('ROLLBACK'));
    // The same warehouse, again: a lease is not re-entrant (as PostgreSQL's lock on a new session).
    await rejects(first.acquireRunLock(), 'MKPI_LOCKED');
    // A live process of this very machine is not taken over either.
    const local = warehouseOn(fake, { runId: 'run-3', testing: { identity: { pid: 9, isAlive: () => true } } });
    await rejects(local.acquireRunLock(), 'MKPI_LOCKED');
    await lock.release();
    const now = await second.acquireRunLock();
    assert.equal(fake.lease[0].run_id, 'run-2');
    await now.release();
    await Promise.all([first.close(), second.close(), local.close()]);
  });

  it('a lease whose heartbeat is older than its TTL is taken over, with a warning, and its stage files swept', async () => {
    const fake = new FakeRedshift().initialised();
    fake.lease.push({
      run_id: 'dead-run',
      token: 'aaaaaaaaaaaaaaaa',
      host: 'host-z',
      pid: 1,
      boot_id: 'boot-z',
      ttl_ms: 60_000,
      idle_s: 61,
      held_s: 600,
    });
    s3()
      .on(ListObjectsV2Command)
      .resolves({
        Contents: [
          { Key: 'musickpi/staging/dead-run-aaaaaaaaaaaaaaaa-1/hourly-0000.csv.gz', LastModified: new Date() },
          { Key: 'musickpi/staging/dead-run-aaaaaaaaaaaaaaaa-1/hourly.manifest', LastModified: new Date() },
          { Key: 'musickpi/staging/other-bbbbbbbbbbbbbbbb-1/genre-0000.csv.gz', LastModified: new Date() },
        ],
      });
    const warnings: string[] = [];
    const wh = warehouseOn(fake, { warn: (l) => warnings.push(l) });
    const lock = await wh.acquireRunLock();
    assert.equal(fake.lease.length, 1);
    assert.equal(fake.lease[0].run_id, 'run-1');
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /took over the run lock .* from run dead-run on host host-z, pid 1.*heartbeat stopped more than 60 s ago/);
    const deleted = s3()
      .commandCalls(ListObjectsV2Command)
      .map((c) => c.args[0].input.Prefix);
    assert.deepEqual(deleted, ['musickpi/staging/']);
    const removed = s3()
      .calls()
      .filter((c) => c.args[0].constructor.name === 'DeleteObjectCommand')
      .map((c) => (c.args[0].input as { Key: string }).Key);
    assert.deepEqual(removed, [
      'musickpi/staging/dead-run-aaaaaaaaaaaaaaaa-1/hourly-0000.csv.gz',
      'musickpi/staging/dead-run-aaaaaaaaaaaaaaaa-1/hourly.manifest',
    ]);
    await lock.release();
    await wh.close();
  });

  it('a holder on this machine whose process is gone is taken over at once, a fresh heartbeat notwithstanding', async () => {
    const fake = new FakeRedshift().initialised();
    fake.lease.push({
      run_id: 'killed',
      token: 'cccccccccccccccc',
      host: 'host-a',
      pid: 999,
      boot_id: 'boot-a',
      ttl_ms: 300_000,
      idle_s: 1,
      held_s: 2,
    });
    const warnings: string[] = [];
    const wh = warehouseOn(fake, { warn: (l) => warnings.push(l), testing: { identity: { isAlive: (pid) => pid !== 999 } } });
    const lock = await wh.acquireRunLock();
    assert.equal(fake.lease[0].run_id, 'run-1');
    assert.match(warnings[0], /its process is gone/);
    await lock.release();
    // Another machine of the same name (another boot) is not this machine: its holder is waited for.
    fake.lease.push({
      run_id: 'remote',
      token: 'dddddddddddddddd',
      host: 'host-a',
      pid: 999,
      boot_id: 'boot-other',
      ttl_ms: 300_000,
      idle_s: 1,
      held_s: 2,
    });
    await rejects(wh.acquireRunLock(), 'MKPI_LOCKED');
    await wh.close();
  });

  it('is renewed on a timer while held, and a renewal that finds it gone says so', async () => {
    const fake = new FakeRedshift().initialised();
    const warnings: string[] = [];
    const wh = warehouseOn(fake, { lease: { heartbeatMs: 10 }, warn: (l) => warnings.push(l) });
    const lock = await wh.acquireRunLock();
    fake.lease[0].idle_s = 50;
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(fake.lease[0].idle_s, 0, 'renewed');
    assert.ok(fake.sent.some((s) => /^UPDATE .*musickpi_run_lock SET heartbeat_at = GETDATE\(\) WHERE token = \$1/.test(s.sql)));
    fake.lease = [];
    await new Promise((r) => setTimeout(r, 60));
    assert.ok(warnings.some((w) => /taken over by another run/.test(w)));
    await lock.release();
    await wh.close();
  });

  it('fencing: a load whose lease was taken over rolls back under its LOCK and exits to retry later', async () => {
    const fake = new FakeRedshift().initialised();
    const wh = warehouseOn(fake);
    const lock = await wh.acquireRunLock();
    fake.lease[0].token = 'eeeeeeeeeeeeeeee';
    const steps: string[] = [];
    const e = await rejects(wh.load(fullBatch((s) => void steps.push(s))), 'MKPI_RETRY_LATER');
    assert.match(e.message, /lost before commit/);
    const loadSession = fake.sent.find((x) => x.sql.startsWith('COPY '))!.session;
    const load = fake.sent.filter((s) => s.session === loadSession);
    const sqls = load.map((s) => s.sql);
    const lockAt = sqls.findIndex((s) => s.startsWith('LOCK '));
    const fenceAt = sqls.findIndex((s) => /^SELECT token FROM/.test(s));
    assert.ok(lockAt > 0 && fenceAt > lockAt, 'the fencing check runs under the LOCK');
    assert.ok(sqls.includes('ROLLBACK'));
    assert.ok(!sqls.includes('COMMIT'));
    assert.ok(!sqls.some((s) => /^DELETE FROM "reporting_schema"\.hourly_kpis/.test(s)), 'nothing merged');
    assert.deepEqual(steps, ['mid-copy', 'staged']);
    await lock.release();
    await wh.close();
  });

  it('the lock order of the load transaction is fixed: lease, KPI tables, ledger', async () => {
    const fake = new FakeRedshift().initialised();
    const wh = warehouseOn(fake);
    await wh.load(fullBatch());
    const lockSql = fake.sql.find((s) => s.startsWith('LOCK '));
    assert.equal(
      lockSql,
      'LOCK "reporting_schema".musickpi_run_lock, "reporting_schema".hourly_kpis, "reporting_schema".genre_level_kpis, ' +
        '"reporting_schema".musickpi_ledger, "reporting_schema".musickpi_ledger_dates',
    );
    await wh.close();
  });
});
