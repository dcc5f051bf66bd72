// Flaky PostgreSQL (issue 4): the CLI's connections are terminated from another session
// (pg_terminate_backend) at exact points of a run, reached with MKPI_TEST_PAUSE: mid-COPY,
// mid-merge, the run lock's session before COMMIT, the idle session between load and archive.
// The transaction rolls back, the run exits 69 (or 75 when the run lock was lost), nothing is
// archived, and the next run succeeds, ending exactly like one clean run.

import { expect } from 'chai';
import { rmSync } from 'node:fs';

import { copyLake, runCli, spawnCli } from '../support/cli.js';
import { freshDatabase } from '../support/pg.js';
import {
  cliBackends,
  NO_WAREHOUSE_ENV,
  snapshotLocalLake,
  snapshotWarehouse,
  sql,
  waitNoSessions,
  type LakeSnapshot,
  type WarehouseSnapshot,
} from '../support/harness.js';

const EMPTY_WAREHOUSE: WarehouseSnapshot = { hourly: [], genre: [], ledger: [], ledgerDates: [] };

describe('flaky PostgreSQL: a connection dropped mid-load rolls back, archives nothing, and the next run succeeds', function () {
  this.timeout(120_000);
  const temps: string[] = [];
  let reference: { lake: LakeSnapshot; warehouse: WarehouseSnapshot };

  const lakeCopy = () => {
    const l = copyLake('tiny');
    temps.push(l);
    return l;
  };
  const args = (lake: string, db: string) => ['run', '--lake', lake, '--warehouse', db, '--json'];

  before(async () => {
    const lake = lakeCopy();
    const db = await freshDatabase('flaky_pg_ref');
    const r = await runCli(args(lake, db), { env: NO_WAREHOUSE_ENV });
    expect(r.code, r.stderr).to.equal(0);
    reference = { lake: snapshotLocalLake(lake, { skip: ['rejects/'] }), warehouse: await snapshotWarehouse(db) };
  });

  after(() => {
    for (const d of temps) rmSync(d, { recursive: true, force: true });
  });

  /** Pauses a run at `point`, lets `act` do its damage, resumes, and returns the result. */
  async function damagedRun(point: string, act: (db: string) => Promise<void>) {
    const lake = lakeCopy();
    const db = await freshDatabase('flaky_pg');
    const before = snapshotLocalLake(lake, { skip: ['rejects/'] });
    const cli = spawnCli(args(lake, db), { env: { ...NO_WAREHOUSE_ENV, MKPI_TEST_PAUSE: point } });
    await cli.paused(point);
    await act(db);
    cli.resume();
    const r = await cli.done;
    return { r, lake, db, before };
  }

  async function terminate(db: string, pids: number[]): Promise<void> {
    expect(pids, 'sessions to terminate').to.have.length.greaterThan(0);
    // With a timeout, pg_terminate_backend waits until the backend is gone (its locks released).
    for (const pid of pids) await sql(db, 'select pg_terminate_backend($1, 10000)', [pid]);
  }

  async function expectRecovers(lake: string, db: string): Promise<void> {
    await waitNoSessions(db);
    const next = await runCli(args(lake, db), { env: NO_WAREHOUSE_ENV });
    expect(next.code, next.stderr).to.equal(0);
    expect(next.json.loaded).to.equal(true);
    expect(snapshotLocalLake(lake, { skip: ['rejects/'] })).to.deep.equal(reference.lake);
    expect(await snapshotWarehouse(db)).to.deep.equal(reference.warehouse);
  }

  it('the load session terminated mid-COPY → 69 MKPI_WAREHOUSE_UNAVAILABLE, rolled back, nothing archived; the next run succeeds', async () => {
    const { r, lake, db, before } = await damagedRun('mid-copy', async (db) => {
      const copying = (await cliBackends(db, 'work')).filter((b) => b.query.startsWith('COPY musickpi_stage_') && b.state === 'active');
      expect(copying, 'a session inside COPY').to.have.length(1);
      await terminate(
        db,
        copying.map((b) => b.pid),
      );
    });
    expect(r.code, r.stderr).to.equal(69);
    expect(r.json.error.code).to.equal('MKPI_WAREHOUSE_UNAVAILABLE');
    expect(r.json.error.hint).to.match(/not committed/);
    expect(r.json.loaded).to.equal(false);
    expect(r.json.archived).to.deep.equal([]);
    expect(await snapshotWarehouse(db)).to.deep.equal(EMPTY_WAREHOUSE);
    expect(snapshotLocalLake(lake, { skip: ['rejects/'] })).to.deep.equal(before);
    await expectRecovers(lake, db);
  });

  it('the load session terminated mid-merge (between the two tables) → 69, rolled back, nothing archived; the next run succeeds', async () => {
    const { r, lake, db, before } = await damagedRun('mid-merge', async (db) => {
      const inTx = (await cliBackends(db, 'work')).filter((b) => b.state === 'idle in transaction');
      expect(inTx, 'the load transaction').to.have.length(1);
      expect(inTx[0].query).to.match(/hourly_kpis/);
      await terminate(
        db,
        inTx.map((b) => b.pid),
      );
    });
    expect(r.code, r.stderr).to.equal(69);
    expect(r.json.error.code).to.equal('MKPI_WAREHOUSE_UNAVAILABLE');
    expect(r.json.archived).to.deep.equal([]);
    expect(await snapshotWarehouse(db)).to.deep.equal(EMPTY_WAREHOUSE);
    expect(snapshotLocalLake(lake, { skip: ['rejects/'] })).to.deep.equal(before);
    await expectRecovers(lake, db);
  });

  it('the run lock session terminated before COMMIT → 75 MKPI_RETRY_LATER (another run may be loading), rolled back; the next run succeeds', async () => {
    const { r, lake, db, before } = await damagedRun('merged', async (db) => {
      await terminate(
        db,
        (await cliBackends(db, 'lock')).map((b) => b.pid),
      );
    });
    expect(r.code, r.stderr).to.equal(75);
    expect(r.json.error.code).to.equal('MKPI_RETRY_LATER');
    expect(r.json.archived).to.deep.equal([]);
    expect(await snapshotWarehouse(db)).to.deep.equal(EMPTY_WAREHOUSE);
    expect(snapshotLocalLake(lake, { skip: ['rejects/'] })).to.deep.equal(before);
    await expectRecovers(lake, db);
  });

  it('every session terminated right after COMMIT: the idle session is reopened and archiving completes (exit 0)', async () => {
    const { r, lake, db } = await damagedRun('after-commit', async (db) => {
      await terminate(
        db,
        [...(await cliBackends(db, 'work')), ...(await cliBackends(db, 'lock'))].map((b) => b.pid),
      );
    });
    expect(r.code, `${r.signal} ${r.stderr}`).to.equal(0);
    expect(r.json, r.stdout).to.be.an('object');
    expect(r.json.loaded).to.equal(true);
    expect(r.json.archived).to.have.length(2);
    expect(snapshotLocalLake(lake, { skip: ['rejects/'] })).to.deep.equal(reference.lake);
    expect(await snapshotWarehouse(db)).to.deep.equal(reference.warehouse);
  });

  it('the database refusing connections from the start → 69 before anything is read or moved', async () => {
    const lake = lakeCopy();
    const db = await freshDatabase('flaky_pg');
    const name = new URL(db).pathname.slice(1);
    await sql(db.replace(/\/[^/]*$/, '/postgres'), `alter database "${name}" with allow_connections false`);
    try {
      const before = snapshotLocalLake(lake);
      const r = await runCli(args(lake, db), { env: NO_WAREHOUSE_ENV });
      expect(r.code, r.stderr).to.equal(69);
      expect(r.json.error.code).to.equal('MKPI_WAREHOUSE_UNAVAILABLE');
      expect(snapshotLocalLake(lake)).to.deep.equal(before);
    } finally {
      await sql(db.replace(/\/[^/]*$/, '/postgres'), `alter database "${name}" with allow_connections true`);
    }
  });
});
