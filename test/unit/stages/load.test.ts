// The load stage's data side (lib/stages/load.ts): which rows replace which dates per table
// (contract §9.2, §12) and what the ledger records for each file read (§10.1, §10.5).

import { expect } from 'chai';

import type { GenreRow, HourlyRow, KpiTable } from '../../../lib/domain/kpi.js';
import type { LedgerEntry } from '../../../lib/domain/ledger.js';
import { dateToDay } from '../../../lib/domain/listen-time.js';
import { buildBatch } from '../../../lib/stages/load.js';
import type { PendingFile } from '../../../lib/stages/plan.js';
import type { KpiResult } from '../../../lib/stages/reduce.js';
import type { StreamScan } from '../../../lib/stages/scan.js';
import { MemoryWarehouse } from '../../support/fakes/memory-warehouse.js';

const hour = (date: string, h: number): HourlyRow => ({
  listen_date: date,
  listen_hour: h,
  unique_listeners: 1,
  listen_counts: 1,
  top_artist: 'A',
  avg_sessions_per_user: 1,
  diversity_index: 1,
  most_engaged_age_group: '18-25',
});

const genre = (date: string, g: string): GenreRow => ({
  listen_date: date,
  track_genre: g,
  listen_count: 1,
  popularity_index: 1,
  average_duration: 1,
  most_popular_track_id: 't1',
});

const res: KpiResult = {
  hourly: [hour('2024-06-01', 10), hour('2024-06-02', 0), hour('2024-06-03', 5)],
  genre: [genre('2024-06-01', 'pop'), genre('2024-06-02', 'rock'), genre('2024-06-03', 'pop')],
  days: ['2024-06-01', '2024-06-02', '2024-06-03'].map(dateToDay),
};

function scan(key: string, dates: string[], over: Partial<StreamScan> = {}): StreamScan {
  return {
    key,
    fingerprint: `fp-${key}`,
    contentHash: `hash-${key}`,
    bytes: 100,
    rows: 7,
    complete: 6,
    reduced: 6,
    rejected: {},
    days: new Set(dates.map(dateToDay)),
    duplicateHeaders: [],
    ...over,
  };
}

function pending(key: string, entry?: LedgerEntry, missing: KpiTable[] = ['hourly', 'genre']): PendingFile {
  return { obj: { key, size: 100, fingerprint: `fp-${key}` }, entry, missing };
}

const dates = (hourly: string[], genreDates: string[]): Record<KpiTable, ReadonlySet<string>> => ({
  hourly: new Set(hourly),
  genre: new Set(genreDates),
});

describe('stages/load: buildBatch', () => {
  it('replaces, per table, exactly the covered dates, with the rows of those dates', () => {
    const b = buildBatch('r1', ['hourly', 'genre'], dates(['2024-06-03', '2024-06-01'], ['2024-06-02']), res, [], new Map());
    expect(b.hourly).to.deep.equal({ dates: ['2024-06-01', '2024-06-03'], rows: [hour('2024-06-01', 10), hour('2024-06-03', 5)] });
    expect(b.genre).to.deep.equal({ dates: ['2024-06-02'], rows: [genre('2024-06-02', 'rock')] });
    expect(b.runId).to.equal('r1');
    expect(b.ledger).to.deep.equal([]);
  });

  it('covers a date left without rows, so the load empties it (contract §14 #25)', () => {
    const b = buildBatch('r1', ['hourly'], dates(['2024-06-09'], []), res, [], new Map());
    expect(b.hourly).to.deep.equal({ dates: ['2024-06-09'], rows: [] });
  });

  it('leaves a table the run does not write out of the batch', () => {
    const b = buildBatch('r1', ['genre'], dates(['2024-06-01'], ['2024-06-01']), res, [], new Map());
    expect(b).to.not.have.property('hourly');
    expect(b.genre?.rows).to.deep.equal([genre('2024-06-01', 'pop')]);
  });

  it('records each new file read: its key, fingerprint, hash, size, rows, sorted dates and the tables written', () => {
    const s = scan('streams/a.csv', ['2024-06-02', '2024-06-01']);
    const b = buildBatch('r1', ['hourly', 'genre'], dates([], []), res, [pending('streams/a.csv')], new Map([[s.key, s]]));
    expect(b.ledger).to.deep.equal([
      {
        fileKey: 'streams/a.csv',
        fingerprint: 'fp-streams/a.csv',
        contentHash: 'hash-streams/a.csv',
        size: 100,
        rows: 7,
        dates: ['2024-06-01', '2024-06-02'],
        tables: ['hourly', 'genre'],
        runId: 'r1',
        archivedKey: null,
      },
    ]);
  });

  it('keeps the ledger row of a file it knows under another fingerprint, adding the tables written now', () => {
    const known: LedgerEntry = {
      fileKey: 'streams/a.csv',
      fingerprint: 'old-fp',
      contentHash: 'hash-streams/a.csv',
      size: 100,
      rows: 7,
      dates: ['2024-06-01'],
      tables: ['genre'],
      runId: 'r0',
      archivedKey: null,
    };
    const s = scan('streams/a.csv', ['2024-06-01']);
    const b = buildBatch(
      'r1',
      ['hourly'],
      dates(['2024-06-01'], []),
      res,
      [pending('streams/a.csv', known, ['hourly'])],
      new Map([[s.key, s]]),
    );
    expect(b.ledger).to.have.length(1);
    expect(b.ledger[0]).to.include({ fileKey: 'streams/a.csv', fingerprint: 'old-fp', runId: 'r1' });
    expect(b.ledger[0].tables).to.have.members(['hourly', 'genre']);
  });

  it('records no content hash for a file that failed its schema', () => {
    const s = scan('streams/a.csv', [], { contentHash: '' });
    const b = buildBatch('r1', ['hourly', 'genre'], dates([], []), res, [pending('streams/a.csv')], new Map([[s.key, s]]));
    expect(b.ledger[0].contentHash).to.equal(null);
  });

  it('builds batches the warehouse accepts as they are', async () => {
    const w = new MemoryWarehouse();
    await w.init();
    const s = scan('streams/a.csv', ['2024-06-01', '2024-06-03']);
    const b = buildBatch(
      'r1',
      ['hourly', 'genre'],
      dates(['2024-06-01', '2024-06-03'], ['2024-06-01', '2024-06-03']),
      res,
      [pending('streams/a.csv')],
      new Map([[s.key, s]]),
    );
    await w.load(b);
    expect(w.snapshot().hourly).to.deep.equal([hour('2024-06-01', 10), hour('2024-06-03', 5)]);
    expect(w.snapshot().ledger.map((e) => e.fileKey)).to.deep.equal(['streams/a.csv']);
  });
});
