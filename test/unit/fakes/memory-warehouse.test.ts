// The memory warehouse keeps the Warehouse port's promises (the shared contract, which
// PostgresWarehouse passes too), plus what only a fake has: failures on demand, a lost lock
// session, the batches it committed.

import { expect } from 'chai';

import { MkpiError } from '../../../lib/domain/errors.js';
import type { HourlyRow } from '../../../lib/domain/kpi.js';
import { MemoryWarehouse } from '../../support/fakes/memory-warehouse.js';
import { describeWarehouseContract, failure, hourRow, loadBatch } from '../../support/fakes/warehouse-contract.js';

describeWarehouseContract('MemoryWarehouse', async () => {
  const warehouse = new MemoryWarehouse();
  const others: MemoryWarehouse[] = [];
  return {
    warehouse,
    another: async () => {
      const w = warehouse.session();
      others.push(w);
      return w;
    },
    tables: async () => {
      const { hourly, genre } = warehouse.snapshot();
      return { hourly, genre };
    },
    close: async () => {
      for (const w of [warehouse, ...others]) await w.close();
    },
  };
});

async function ready(): Promise<MemoryWarehouse> {
  const w = new MemoryWarehouse();
  await w.init();
  return w;
}

describe('MemoryWarehouse (what only the fake does)', () => {
  it('uses no table before init()', async () => {
    const w = new MemoryWarehouse();
    expect((await failure(w.readLedger())).code).to.equal('MKPI_INTERNAL');
    expect((await failure(w.load(loadBatch()))).code).to.equal('MKPI_INTERNAL');
    expect(w.snapshot()).to.deep.equal({ hourly: [], genre: [], ledger: [] });
  });

  it('drops the lock of a session that ends', async () => {
    const w = new MemoryWarehouse();
    const other = w.session();
    await other.acquireRunLock();
    expect(w.lockHeld).to.equal(true);
    await other.close();
    expect(w.lockHeld).to.equal(false);
    await (await w.acquireRunLock()).release();
  });

  it('keeps only the columns of the tables, as rows read back from the database', async () => {
    const w = await ready();
    const extra = { ...hourRow('2024-06-01', 3), note: 'dropped' } as HourlyRow;
    await w.load(loadBatch({ hourly: { dates: ['2024-06-01'], rows: [extra] } }));
    expect(w.snapshot().hourly).to.deep.equal([hourRow('2024-06-01', 3)]);
  });

  it('records the batches it committed, and the steps every load reached', async () => {
    const w = await ready();
    await w.load(loadBatch({ runId: 'r1' }));
    await w
      .load(
        loadBatch({
          runId: 'r2',
          onStep: (s) => {
            if (s === 'merged') throw new Error('no');
          },
        }),
      )
      .catch(() => undefined);
    expect(w.committedBatches.map((b) => b.runId)).to.deep.equal(['r1']);
    expect(w.lastBatch).to.not.have.property('onStep');
    expect(w.steps).to.deep.equal([
      'mid-copy',
      'staged',
      'mid-merge',
      'merged',
      'before-commit',
      'committed',
      'mid-copy',
      'staged',
      'mid-merge',
      'merged',
    ]);
  });

  it('failAt fails a method or a load step, as many times as asked; heal() clears it', async () => {
    const w = new MemoryWarehouse().failAt('init', { times: 1 }).failAt('staged', { error: new MkpiError('MKPI_RETRY_LATER', 'deadlock') });
    expect((await failure(w.init())).code).to.equal('MKPI_WAREHOUSE_UNAVAILABLE');
    await w.init();
    expect((await failure(w.load(loadBatch()))).code).to.equal('MKPI_RETRY_LATER');
    expect((await failure(w.load(loadBatch()))).code).to.equal('MKPI_RETRY_LATER');
    expect(w.snapshot().ledger).to.deep.equal([]);
    w.heal();
    await w.load(loadBatch());
    w.failAt('acquireRunLock').failAt('readLedger').failAt('markArchived').failAt('isInitialised');
    expect((await failure(w.acquireRunLock())).code).to.equal('MKPI_WAREHOUSE_UNAVAILABLE');
    expect((await failure(w.readLedger())).code).to.equal('MKPI_WAREHOUSE_UNAVAILABLE');
    expect((await failure(w.isInitialised())).code).to.equal('MKPI_WAREHOUSE_UNAVAILABLE');
    expect((await failure(w.markArchived('streams/a.csv', 'f1', 'x'))).code).to.equal('MKPI_WAREHOUSE_UNAVAILABLE');
    expect(w.snapshot().ledger[0].archivedKey).to.equal(null);
  });

  it("failAt('committed') throws once the load has committed", async () => {
    const w = (await ready()).failAt('committed', { times: 1 });
    expect((await failure(w.load(loadBatch()))).code).to.equal('MKPI_WAREHOUSE_UNAVAILABLE');
    expect(w.snapshot().ledger).to.have.length(1);
  });

  it('rolls back with MKPI_RETRY_LATER when its lock session was lost before COMMIT', async () => {
    const w = await ready();
    await w.acquireRunLock();
    w.loseLock();
    expect(w.lockHeld).to.equal(false);
    expect((await failure(w.load(loadBatch()))).code).to.equal('MKPI_RETRY_LATER');
    expect(w.snapshot().ledger).to.deep.equal([]);
  });

  it('runs no SQL', async () => {
    expect((await failure((await ready()).query('select 1'))).code).to.equal('MKPI_USAGE');
  });

  it('is claimed by one lake: the same lake again is fine, another is MKPI_CONFIG unless adopted', async () => {
    const w = new MemoryWarehouse();
    expect(await w.lakeClaim()).to.equal(null);
    await w.claimLake('s3://bucket/lake');
    await w.claimLake('s3://bucket/lake');
    expect((await failure(w.session().claimLake('/data/lake'))).code).to.equal('MKPI_CONFIG');
    expect(await w.lakeClaim()).to.equal('s3://bucket/lake');
    await w.claimLake('/data/lake', { adopt: true });
    expect(await w.session().lakeClaim()).to.equal('/data/lake');
  });
});
