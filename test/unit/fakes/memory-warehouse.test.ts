// The memory warehouse keeps the Warehouse port's promises (lib/domain/warehouse.ts) as the
// PostgreSQL adapter keeps them: one all-or-nothing load with its steps in order, the ledger
// upsert of sql/upsert-ledger*.sql, one run lock per database.

import { expect } from 'chai';

import { isMkpiError, MkpiError } from '../../../lib/domain/errors.js';
import type { GenreRow, HourlyRow } from '../../../lib/domain/kpi.js';
import type { LedgerEntry } from '../../../lib/domain/ledger.js';
import type { LoadBatch, LoadStep } from '../../../lib/domain/warehouse.js';
import { MemoryWarehouse } from '../../support/fakes/memory-warehouse.js';

async function failure(p: Promise<unknown>): Promise<MkpiError> {
  try {
    await p;
  } catch (err) {
    if (isMkpiError(err)) return err;
    throw err;
  }
  throw new Error('expected a failure');
}

const hour = (date: string, h: number, n = 1): HourlyRow => ({
  listen_date: date,
  listen_hour: h,
  unique_listeners: 1,
  listen_counts: n,
  top_artist: null,
  avg_sessions_per_user: n,
  diversity_index: 1,
  most_engaged_age_group: null,
});

const genre = (date: string, g: string, n = 1): GenreRow => ({
  listen_date: date,
  track_genre: g,
  listen_count: n,
  popularity_index: 1,
  average_duration: 10,
  most_popular_track_id: 't1',
});

const entry = (over: Partial<LedgerEntry> = {}): LedgerEntry => ({
  fileKey: 'streams/a.csv',
  fingerprint: 'f1',
  contentHash: 'h1',
  size: 10,
  rows: 2,
  dates: ['2024-06-01'],
  tables: ['hourly', 'genre'],
  runId: 'ignored',
  archivedKey: null,
  ...over,
});

function batch(over: Partial<LoadBatch> = {}): LoadBatch {
  return {
    runId: 'r1',
    hourly: { dates: ['2024-06-01'], rows: [hour('2024-06-01', 10)] },
    genre: { dates: ['2024-06-01'], rows: [genre('2024-06-01', 'pop')] },
    ledger: [entry()],
    ...over,
  };
}

async function ready(): Promise<MemoryWarehouse> {
  const w = new MemoryWarehouse();
  await w.init();
  return w;
}

describe('MemoryWarehouse', () => {
  it('has no tables until init(), which is idempotent and keeps what is loaded', async () => {
    const w = new MemoryWarehouse();
    expect(await w.isInitialised()).to.equal(false);
    expect((await failure(w.readLedger())).code).to.equal('MKPI_INTERNAL');
    expect((await failure(w.load(batch()))).code).to.equal('MKPI_INTERNAL');
    await w.init();
    expect(await w.isInitialised()).to.equal(true);
    await w.load(batch());
    await w.init();
    expect(await w.readLedger()).to.have.length(1);
  });

  it('holds one run lock per database, across sessions, until released or the session ends', async () => {
    const w = new MemoryWarehouse();
    const other = w.session();
    const lock = await w.acquireRunLock();
    expect((await failure(w.acquireRunLock())).code).to.equal('MKPI_LOCKED');
    expect((await failure(other.acquireRunLock())).code).to.equal('MKPI_LOCKED');
    await lock.release();
    await lock.release();
    const second = await other.acquireRunLock();
    await other.close();
    expect(w.lockHeld).to.equal(false);
    await second.release();
    await (await w.acquireRunLock()).release();
  });

  it('calls onStep at every step in order, mid-copy only when a row is copied', async () => {
    const w = await ready();
    const seen: LoadStep[] = [];
    await w.load(batch({ onStep: (s) => void seen.push(s) }));
    expect(seen).to.deep.equal(['mid-copy', 'staged', 'mid-merge', 'merged', 'before-commit', 'committed']);
    seen.length = 0;
    await w.load(batch({ hourly: { dates: ['2024-06-01'], rows: [] }, genre: undefined, onStep: (s) => void seen.push(s) }));
    expect(seen).to.deep.equal(['staged', 'mid-merge', 'merged', 'before-commit', 'committed']);
  });

  it('replaces whole covered dates: a covered date without rows is emptied, others stay, an absent table is untouched', async () => {
    const w = await ready();
    await w.load(
      batch({
        hourly: { dates: ['2024-06-01', '2024-06-02'], rows: [hour('2024-06-01', 10), hour('2024-06-01', 11), hour('2024-06-02', 0)] },
      }),
    );
    const r = await w.load(batch({ hourly: { dates: ['2024-06-01'], rows: [] }, genre: undefined, ledger: [] }));
    expect(r).to.deep.equal({ hourlyRowsWritten: 0, hourlyRowsDeleted: 2, genreRowsWritten: 0, genreRowsDeleted: 0 });
    expect(w.snapshot().hourly).to.deep.equal([hour('2024-06-02', 0)]);
    expect(w.snapshot().genre).to.deep.equal([genre('2024-06-01', 'pop')]);
  });

  it('keeps only the columns of the tables, as rows read back from the database', async () => {
    const w = await ready();
    const extra = { ...hour('2024-06-01', 3), note: 'dropped' } as HourlyRow;
    await w.load(batch({ hourly: { dates: ['2024-06-01'], rows: [extra] } }));
    expect(w.snapshot().hourly).to.deep.equal([hour('2024-06-01', 3)]);
  });

  for (const step of ['mid-copy', 'staged', 'mid-merge', 'merged', 'before-commit'] as const) {
    it(`rolls everything back when onStep throws at ${step}`, async () => {
      const w = await ready();
      await w.load(batch());
      const before = w.snapshot();
      const err = await w
        .load(
          batch({
            hourly: { dates: ['2024-06-01'], rows: [hour('2024-06-01', 5, 9)] },
            ledger: [entry({ fileKey: 'streams/b.csv' })],
            retire: [{ fileKey: 'streams/a.csv', fingerprint: 'f1' }],
            onStep: (s) => {
              if (s === step) throw new Error(`boom at ${s}`);
            },
          }),
        )
        .catch((e: unknown) => e);
      expect((err as Error).message).to.equal(`boom at ${step}`);
      expect(w.snapshot()).to.deep.equal(before);
      expect(w.committedBatches).to.have.length(1);
    });
  }

  it("keeps the load when onStep throws at 'committed', and a load in progress is not seen by readers", async () => {
    const w = await ready();
    const reader = w.session();
    let during: LedgerEntry[] | undefined;
    const err = await w
      .load(
        batch({
          onStep: async (s) => {
            if (s === 'before-commit') during = await reader.readLedger();
            if (s === 'committed') throw new Error('after commit');
          },
        }),
      )
      .catch((e: unknown) => e);
    expect((err as Error).message).to.equal('after commit');
    expect(during).to.deep.equal([]);
    expect(await reader.readLedger()).to.have.length(1);
  });

  it('upserts the ledger as the SQL does: tables and dates grow, archive key and hash are kept, size/rows/run id are the batch’s', async () => {
    const w = await ready();
    await w.load(batch({ runId: 'r1', ledger: [entry({ tables: ['hourly'], dates: ['2024-06-01'] })] }));
    await w.markArchived('streams/a.csv', 'f1', 'streams/archived/a.csv', 'copy-fp');
    await w.load(
      batch({
        runId: 'r2',
        ledger: [entry({ tables: ['genre'], dates: ['2024-06-02'], size: 11, rows: 3, contentHash: null, archivedKey: null })],
        hourly: undefined,
        genre: { dates: ['2024-06-02'], rows: [] },
      }),
    );
    expect(await w.readLedger()).to.deep.equal([
      {
        fileKey: 'streams/a.csv',
        fingerprint: 'f1',
        size: 11,
        rows: 3,
        dates: ['2024-06-01', '2024-06-02'],
        tables: ['hourly', 'genre'],
        runId: 'r2',
        archivedKey: 'streams/archived/a.csv',
        contentHash: 'h1',
        archivedFingerprint: 'copy-fp',
      },
    ]);
  });

  it('folds two entries of one batch for the same row, and deletes retired rows before the upsert', async () => {
    const w = await ready();
    await w.load(batch({ ledger: [entry(), entry({ fingerprint: 'f2', runId: 'x' })] }));
    await w.load(
      batch({
        ledger: [entry({ tables: ['hourly'], dates: ['2024-06-03'] }), entry({ tables: ['genre'], dates: ['2024-06-01'] })],
        retire: [{ fileKey: 'streams/a.csv', fingerprint: 'f2' }],
      }),
    );
    const ledger = await w.readLedger();
    expect(ledger.map((e) => [e.fingerprint, e.tables, e.dates])).to.deep.equal([
      ['f1', ['hourly', 'genre'], ['2024-06-01', '2024-06-03']],
    ]);
    // A new row has no archived fingerprint (readLedger leaves the field out), and a null hash.
    await w.load(batch({ ledger: [entry({ fileKey: 'streams/n.csv', contentHash: undefined })] }));
    const n = (await w.readLedger()).find((e) => e.fileKey === 'streams/n.csv')!;
    expect(n.contentHash).to.equal(null);
    expect('archivedFingerprint' in n).to.equal(false);
  });

  it('refuses, changing nothing, a row outside the covered dates, an invalid date, or a duplicate key', async () => {
    const w = await ready();
    const bad: Partial<LoadBatch>[] = [
      { hourly: { dates: ['2024-06-01'], rows: [hour('2024-06-02', 1)] } },
      { genre: { dates: ['2024-6-1'], rows: [] } },
      { hourly: { dates: ['2024-06-01'], rows: [hour('2024-06-01', 1), hour('2024-06-01', 1)] } },
    ];
    for (const b of bad) expect((await failure(w.load(batch(b)))).code).to.equal('MKPI_INTERNAL');
    expect(w.snapshot()).to.deep.equal({ hourly: [], genre: [], ledger: [] });
  });

  it('markArchived records the archive key and copy fingerprint of one row, and fails for an unknown row', async () => {
    const w = await ready();
    await w.load(batch());
    await w.markArchived('streams/a.csv', 'f1', 'streams/archived/a.csv');
    expect((await w.readLedger())[0]).to.include({ archivedKey: 'streams/archived/a.csv' });
    expect('archivedFingerprint' in (await w.readLedger())[0]).to.equal(false);
    expect((await failure(w.markArchived('streams/a.csv', 'other', 'x'))).code).to.equal('MKPI_INTERNAL');
  });

  it('failAt fails a method or a load step, as many times as asked; heal() clears it', async () => {
    const w = new MemoryWarehouse().failAt('init', { times: 1 }).failAt('staged', { error: new MkpiError('MKPI_RETRY_LATER', 'deadlock') });
    expect((await failure(w.init())).code).to.equal('MKPI_WAREHOUSE_UNAVAILABLE');
    await w.init();
    expect((await failure(w.load(batch()))).code).to.equal('MKPI_RETRY_LATER');
    expect((await failure(w.load(batch()))).code).to.equal('MKPI_RETRY_LATER');
    w.heal();
    await w.load(batch());
    w.failAt('acquireRunLock').failAt('readLedger').failAt('markArchived');
    expect((await failure(w.acquireRunLock())).code).to.equal('MKPI_WAREHOUSE_UNAVAILABLE');
    expect((await failure(w.readLedger())).code).to.equal('MKPI_WAREHOUSE_UNAVAILABLE');
    expect((await failure(w.markArchived('streams/a.csv', 'f1', 'x'))).code).to.equal('MKPI_WAREHOUSE_UNAVAILABLE');
    expect(w.snapshot().ledger[0].archivedKey).to.equal(null);
  });

  it('rolls back with MKPI_RETRY_LATER when its lock session was lost before COMMIT', async () => {
    const w = await ready();
    await w.acquireRunLock();
    w.loseLock();
    expect(w.lockHeld).to.equal(false);
    expect((await failure(w.load(batch()))).code).to.equal('MKPI_RETRY_LATER');
    expect(w.snapshot().ledger).to.deep.equal([]);
  });

  it('runs no SQL, and is unusable after close()', async () => {
    const w = await ready();
    expect((await failure(w.query('select 1'))).code).to.equal('MKPI_USAGE');
    await w.close();
    await w.close();
    expect((await failure(w.readLedger())).code).to.equal('MKPI_INTERNAL');
  });

  it('is claimed by one lake: the same lake again is fine, another is MKPI_CONFIG unless adopted', async () => {
    const w = new MemoryWarehouse();
    expect(await w.lakeClaim()).to.equal(undefined);
    await w.claimLake('s3://bucket/lake');
    await w.claimLake('s3://bucket/lake');
    expect((await failure(w.session().claimLake('/data/lake'))).code).to.equal('MKPI_CONFIG');
    expect(await w.lakeClaim()).to.equal('s3://bucket/lake');
    await w.claimLake('/data/lake', { adopt: true });
    expect(await w.session().lakeClaim()).to.equal('/data/lake');
  });
});
