// What every Warehouse (lib/domain/warehouse.ts) must do, as mocha tests any implementation can
// run: the memory fake runs them in test/unit/fakes/memory-warehouse.test.ts; PostgresWarehouse
// passes them too (give it a harness on a fresh database), which is what makes the fake's
// answers worth trusting in the unit tests.

import { expect } from 'chai';

import { isMkpiError, type MkpiError } from '../../../lib/domain/errors.js';
import type { GenreRow, HourlyRow } from '../../../lib/domain/kpi.js';
import type { LedgerEntry } from '../../../lib/domain/ledger.js';
import type { LoadBatch, LoadStep, Warehouse } from '../../../lib/domain/warehouse.js';

export interface ContractSubject {
  /** A warehouse on a database of its own, not initialised yet. */
  warehouse: Warehouse;
  /** Another handle on the same database, as a second process would open. */
  another(): Promise<Warehouse>;
  /** The KPI tables as stored, sorted by date, then hour or genre. */
  tables(): Promise<{ hourly: HourlyRow[]; genre: GenreRow[] }>;
  /** Closes everything the subject opened. */
  close(): Promise<void>;
}

export const hourRow = (date: string, h: number, n = 1): HourlyRow => ({
  listen_date: date,
  listen_hour: h,
  unique_listeners: 1,
  listen_counts: n,
  top_artist: null,
  avg_sessions_per_user: n,
  diversity_index: 1,
  most_engaged_age_group: null,
});

export const genreRow = (date: string, g: string, n = 1): GenreRow => ({
  listen_date: date,
  track_genre: g,
  listen_count: n,
  popularity_index: 1,
  average_duration: 10.5,
  most_popular_track_id: 't1',
});

export const ledgerEntry = (over: Partial<LedgerEntry> = {}): LedgerEntry => ({
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

export function loadBatch(over: Partial<LoadBatch> = {}): LoadBatch {
  return {
    runId: 'r1',
    hourly: { dates: ['2024-06-01'], rows: [hourRow('2024-06-01', 10)] },
    genre: { dates: ['2024-06-01'], rows: [genreRow('2024-06-01', 'pop')] },
    ledger: [ledgerEntry()],
    ...over,
  };
}

export async function failure(p: Promise<unknown>): Promise<MkpiError> {
  try {
    await p;
  } catch (err) {
    if (isMkpiError(err)) return err;
    throw err;
  }
  throw new Error('expected a failure');
}

export function describeWarehouseContract(name: string, open: () => Promise<ContractSubject>): void {
  describe(`the Warehouse contract: ${name}`, () => {
    const opened: ContractSubject[] = [];
    const subject = async (init = true): Promise<ContractSubject> => {
      const s = await open();
      opened.push(s);
      if (init) await s.warehouse.init();
      return s;
    };
    const snapshot = async (s: ContractSubject) => ({ ...(await s.tables()), ledger: await s.warehouse.readLedger() });
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
    });

    it('has no schema until init(), which is idempotent and keeps what is loaded', async () => {
      const s = await subject(false);
      expect(await s.warehouse.isInitialised()).to.equal(false);
      await s.warehouse.init();
      expect(await s.warehouse.isInitialised()).to.equal(true);
      await s.warehouse.load(loadBatch());
      await s.warehouse.init();
      expect(await s.warehouse.readLedger()).to.have.length(1);
    });

    it('holds one run lock per database: a second acquire, from any handle, is MKPI_LOCKED until released', async () => {
      const s = await subject();
      const other = await s.another();
      const lock = await s.warehouse.acquireRunLock();
      expect((await failure(other.acquireRunLock())).code).to.equal('MKPI_LOCKED');
      expect((await failure(s.warehouse.acquireRunLock())).code).to.equal('MKPI_LOCKED');
      await lock.release();
      await lock.release();
      await (await other.acquireRunLock()).release();
    });

    it('calls onStep at every step in order, mid-copy only when a row is copied', async () => {
      const s = await subject();
      const seen: LoadStep[] = [];
      await s.warehouse.load(loadBatch({ onStep: (x) => void seen.push(x) }));
      expect(seen).to.deep.equal(['mid-copy', 'staged', 'mid-merge', 'merged', 'before-commit', 'committed']);
      seen.length = 0;
      await s.warehouse.load(
        loadBatch({ hourly: { dates: ['2024-06-01'], rows: [] }, genre: undefined, onStep: (x) => void seen.push(x) }),
      );
      expect(seen).to.deep.equal(['staged', 'mid-merge', 'merged', 'before-commit', 'committed']);
    });

    it('replaces whole covered dates: a covered date without rows is emptied, others stay, an absent table is untouched', async () => {
      const s = await subject();
      const w = s.warehouse;
      await w.load(
        loadBatch({
          hourly: {
            dates: ['2024-06-01', '2024-06-02'],
            rows: [hourRow('2024-06-01', 10), hourRow('2024-06-01', 11), hourRow('2024-06-02', 0)],
          },
        }),
      );
      const r = await w.load(loadBatch({ hourly: { dates: ['2024-06-01'], rows: [] }, genre: undefined, ledger: [] }));
      expect(r).to.deep.equal({ hourlyRowsWritten: 0, hourlyRowsDeleted: 2, genreRowsWritten: 0, genreRowsDeleted: 0 });
      expect(await s.tables()).to.deep.equal({ hourly: [hourRow('2024-06-02', 0)], genre: [genreRow('2024-06-01', 'pop')] });
    });

    for (const step of ['mid-copy', 'staged', 'mid-merge', 'merged', 'before-commit'] as const) {
      it(`rolls everything back when onStep throws at ${step}`, async () => {
        const s = await subject();
        await s.warehouse.load(loadBatch());
        const before = await snapshot(s);
        const err = await s.warehouse
          .load(
            loadBatch({
              hourly: { dates: ['2024-06-01'], rows: [hourRow('2024-06-01', 5, 9)] },
              ledger: [ledgerEntry({ fileKey: 'streams/b.csv' })],
              retire: [{ fileKey: 'streams/a.csv', fingerprint: 'f1' }],
              onStep: (x) => {
                if (x === step) throw new Error(`boom at ${x}`);
              },
            }),
          )
          .catch((e: unknown) => e);
        expect(String(err)).to.contain(`boom at ${step}`);
        expect(await snapshot(s)).to.deep.equal(before);
      });
    }

    it("keeps the load when onStep throws at 'committed'; another handle does not see a load before its commit", async () => {
      const s = await subject();
      const reader = await s.another();
      let during: LedgerEntry[] | undefined;
      const err = await s.warehouse
        .load(
          loadBatch({
            onStep: async (x) => {
              if (x === 'before-commit') during = await reader.readLedger();
              if (x === 'committed') throw new Error('after commit');
            },
          }),
        )
        .catch((e: unknown) => e);
      expect(String(err)).to.contain('after commit');
      expect(during).to.deep.equal([]);
      expect(await reader.readLedger()).to.have.length(1);
    });

    it('upserts the ledger: tables and dates grow, the archive key and hash are kept, size/rows/run id are the batch’s', async () => {
      const s = await subject();
      const w = s.warehouse;
      await w.load(loadBatch({ runId: 'r1', ledger: [ledgerEntry({ tables: ['hourly'], dates: ['2024-06-01'] })] }));
      await w.markArchived('streams/a.csv', 'f1', 'streams/archived/a.csv', 'copy-fp');
      await w.load(
        loadBatch({
          runId: 'r2',
          ledger: [ledgerEntry({ tables: ['genre'], dates: ['2024-06-02'], size: 11, rows: 3, contentHash: null, archivedKey: null })],
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
      const s = await subject();
      const w = s.warehouse;
      await w.load(loadBatch({ ledger: [ledgerEntry(), ledgerEntry({ fingerprint: 'f2' })] }));
      await w.load(
        loadBatch({
          ledger: [ledgerEntry({ tables: ['hourly'], dates: ['2024-06-03'] }), ledgerEntry({ tables: ['genre'], dates: ['2024-06-01'] })],
          retire: [{ fileKey: 'streams/a.csv', fingerprint: 'f2' }],
        }),
      );
      expect((await w.readLedger()).map((e) => [e.fingerprint, e.tables, e.dates])).to.deep.equal([
        ['f1', ['hourly', 'genre'], ['2024-06-01', '2024-06-03']],
      ]);
      // A new row has a null content hash when none is given, and no archived fingerprint.
      await w.load(loadBatch({ ledger: [ledgerEntry({ fileKey: 'streams/n.csv', contentHash: undefined })] }));
      const n = (await w.readLedger()).find((e) => e.fileKey === 'streams/n.csv')!;
      expect(n.contentHash).to.equal(null);
      expect('archivedFingerprint' in n).to.equal(false);
    });

    it('refuses, changing nothing, a row outside the covered dates, an invalid date, or two rows with one key', async () => {
      const s = await subject();
      const bad: Partial<LoadBatch>[] = [
        { hourly: { dates: ['2024-06-01'], rows: [hourRow('2024-06-02', 1)] } },
        { genre: { dates: ['2024-6-1'], rows: [] } },
        { hourly: { dates: ['2024-06-01'], rows: [hourRow('2024-06-01', 1), hourRow('2024-06-01', 1)] } },
      ];
      for (const b of bad) expect((await failure(s.warehouse.load(loadBatch(b)))).code).to.equal('MKPI_INTERNAL');
      expect(await snapshot(s)).to.deep.equal({ hourly: [], genre: [], ledger: [] });
    });

    it('markArchived records the archive key and the copy fingerprint of one row, and fails for an unknown row', async () => {
      const s = await subject();
      const w = s.warehouse;
      await w.load(loadBatch());
      await w.markArchived('streams/a.csv', 'f1', 'streams/archived/a.csv');
      const [e] = await w.readLedger();
      expect(e.archivedKey).to.equal('streams/archived/a.csv');
      expect('archivedFingerprint' in e).to.equal(false);
      expect((await failure(w.markArchived('streams/a.csv', 'other', 'x'))).code).to.equal('MKPI_INTERNAL');
    });

    it('is unusable after close()', async () => {
      const s = await subject();
      await s.warehouse.close();
      await s.warehouse.close();
      expect((await failure(s.warehouse.readLedger())).code).to.equal('MKPI_INTERNAL');
    });
  });
}
