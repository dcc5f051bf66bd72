// Late files with saved date states (lib/stages/date-state.ts, PipelineOptions.dateState): a
// run reads a date's saved counts instead of its loaded files exactly when they hold the same
// rows, re-reads what they lack, and never counts a row twice. Every case ends with the
// tables one clean run over the same files gives (docs/contract.md §9).

import { expect } from 'chai';

import { DATE_STATE_PREFIX } from '../../../lib/domain/layout.js';
import type { PipelineOptions } from '../../../lib/pipeline/pipeline.js';
import type { RunReport } from '../../../lib/pipeline/report.js';
import type { MemoryLake } from '../../support/fakes/memory-lake.js';
import { MemoryWarehouse, type WarehouseSnapshot } from '../../support/fakes/memory-warehouse.js';
import { LAYOUT, STREAMS, USERS, addStreams, runOn, tinyLake } from '../../support/fakes/tiny-lake.js';

const s = (name: string) => LAYOUT.streams + name;
const a = (name: string) => LAYOUT.archive + name;
const HEADER = 'user_id,track_id,listen_time\n';
/** A late file: a row for 2024-06-01 (a's date) and one for 2024-06-02 (b's). */
const LATE = HEADER + 'u3,t2,2024-06-01 10:45:00\n' + 'u2,t4,2024-06-02 00:30:00\n';

/** Under a memory budget of 1 byte, every run spills its state after each file (state-spill.ts): the same results. */
let budget: PipelineOptions['memoryBudget'];

function withState(lake: MemoryLake, over: Partial<PipelineOptions> = {}): Partial<PipelineOptions> {
  return { dateState: { lake, prefix: DATE_STATE_PREFIX, version: 'test' }, ...(budget ? { memoryBudget: budget } : {}), ...over };
}

function ok(r: RunReport): RunReport {
  expect(r.error, JSON.stringify(r.error)).to.equal(null);
  expect(r.ok).to.equal(true);
  return r;
}

function tables(w: MemoryWarehouse): Pick<WarehouseSnapshot, 'hourly' | 'genre'> {
  const { hourly, genre } = w.snapshot();
  return { hourly, genre };
}

/** One run, without saved states, over these stream files (name → content). */
async function cleanTables(files: Record<string, string>): Promise<Pick<WarehouseSnapshot, 'hourly' | 'genre'>> {
  const lake = tinyLake([]);
  for (const [name, body] of Object.entries(files)) lake.put(s(name), body);
  const w = new MemoryWarehouse();
  ok(await runOn(lake, w));
  return tables(w);
}

const reread = (r: RunReport) => r.reread.map((x) => [x.name, x.rowsUsed]);

for (const spill of [false, true])
  describe(`pipeline: late files with saved date states${spill ? ', the state spilled under a 1-byte memory budget' : ''}`, () => {
    before(() => {
      budget = spill ? { bytes: 1 } : undefined;
    });
    after(() => {
      budget = undefined;
    });

    if (spill)
      it('spills: every run reports the bytes it spilled', async () => {
        const lake = tinyLake();
        const r = ok(await runOn(lake, new MemoryWarehouse(), withState(lake)));
        expect(r.spilledBytes).to.be.greaterThan(0);
      });

    it('a late file adds its rows to the saved counts of its dates: no loaded file is read again', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      const first = ok(await runOn(lake, w, withState(lake)));
      expect(first.dateState).to.deep.equal({ restored: [], saved: ['2024-06-01', '2024-06-02'] });
      expect(lake.keys(DATE_STATE_PREFIX)).to.deep.equal([`${DATE_STATE_PREFIX}2024-06-01.state`, `${DATE_STATE_PREFIX}2024-06-02.state`]);
      addStreams(lake, ['d.csv']);
      const r = ok(await runOn(lake, w, withState(lake)));
      expect(r.datesRecomputed.hourly).to.deep.equal(['2024-06-02', '2024-06-03']);
      expect(r.reread).to.deep.equal([]);
      expect(r.dateState).to.deep.equal({ restored: ['2024-06-02'], saved: ['2024-06-02', '2024-06-03'] });
      expect(tables(w)).to.deep.equal(
        await cleanTables({ 'a.csv': STREAMS['a.csv'], 'b.csv': STREAMS['b.csv'], 'd.csv': STREAMS['d.csv'] }),
      );
      // And the state saved by that run serves the next one.
      lake.put(s('late.csv'), LATE);
      const again = ok(await runOn(lake, w, withState(lake)));
      expect(again.reread).to.deep.equal([]);
      expect(again.dateState?.restored).to.deep.equal(['2024-06-01', '2024-06-02']);
      expect(tables(w)).to.deep.equal(
        await cleanTables({ 'a.csv': STREAMS['a.csv'], 'b.csv': STREAMS['b.csv'], 'd.csv': STREAMS['d.csv'], 'late.csv': LATE }),
      );
    });

    it('a state that lacks a counted file (loaded by a run that kept none) is used, and only that file is re-read, for that date only', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      ok(await runOn(lake, w, withState(lake)));
      // c.csv (2024-06-01 and 2024-06-03) is loaded without saving states: 2024-06-01's state now lacks it.
      addStreams(lake, ['c.csv']);
      const noState = ok(await runOn(lake, w));
      expect(noState.dateState).to.equal(null);
      expect(reread(noState)).to.deep.equal([[a('a.csv'), 6]]);
      lake.put(s('late.csv'), LATE);
      const r = ok(await runOn(lake, w, withState(lake)));
      expect(r.dateState?.restored).to.deep.equal(['2024-06-01', '2024-06-02']);
      // c.csv is read for 2024-06-01 alone: 1 of its 2 rows.
      expect(reread(r)).to.deep.equal([[a('c.csv'), 1]]);
      expect(tables(w)).to.deep.equal(
        await cleanTables({ 'a.csv': STREAMS['a.csv'], 'b.csv': STREAMS['b.csv'], 'c.csv': STREAMS['c.csv'], 'late.csv': LATE }),
      );
    });

    it('other dimensions make every saved state useless: the files are re-read', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      ok(await runOn(lake, w, withState(lake)));
      // A new user, u9, whose row in the late file is complete only with the new users.csv.
      lake.put('users.csv', USERS + 'u9,40,SE\n');
      lake.put(s('late.csv'), LATE + 'u9,t1,2024-06-02 00:50:00\n');
      const r = ok(await runOn(lake, w, withState(lake)));
      expect(r.dateState?.restored).to.deep.equal([]);
      expect(reread(r).map(([name]) => name)).to.deep.equal([a('a.csv'), a('b.csv')]);
      const clean = tinyLake([]);
      clean.put('users.csv', USERS + 'u9,40,SE\n');
      for (const f of ['a.csv', 'b.csv'] as const) clean.put(s(f), STREAMS[f]);
      clean.put(s('late.csv'), LATE + 'u9,t1,2024-06-02 00:50:00\n');
      const cw = new MemoryWarehouse();
      ok(await runOn(clean, cw));
      expect(tables(w)).to.deep.equal(tables(cw));
    });

    it('a file loaded into one table and now into the other is read once: its rows are never taken from a state as well', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      ok(await runOn(lake, w, withState(lake, { kpis: ['hourly'] })));
      addStreams(lake, ['d.csv']);
      const r = ok(await runOn(lake, w, withState(lake)));
      // a and b are pending (genre), d is new: nothing is restored, nothing re-read.
      expect(r.dateState?.restored).to.deep.equal([]);
      expect(r.reread).to.deep.equal([]);
      expect(tables(w)).to.deep.equal(
        await cleanTables({ 'a.csv': STREAMS['a.csv'], 'b.csv': STREAMS['b.csv'], 'd.csv': STREAMS['d.csv'] }),
      );
    });

    it('retract recomputes without the file (its state holds it, so the files are read) and saves states that serve later runs', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      ok(await runOn(lake, w, withState(lake)));
      addStreams(lake, ['c.csv']);
      ok(await runOn(lake, w, withState(lake)));
      const r = ok(await runOn(lake, w, withState(lake, { command: 'retract', retract: [s('c.csv')] })));
      expect(r.dateState?.restored).to.deep.equal([]);
      expect(reread(r)).to.deep.equal([[a('a.csv'), 6]]);
      // 2024-06-03 is left without files: nothing to save (its old state names c.csv, which no longer counts, so it is never used).
      expect(r.dateState?.saved).to.deep.equal(['2024-06-01']);
      expect(tables(w)).to.deep.equal(await cleanTables({ 'a.csv': STREAMS['a.csv'], 'b.csv': STREAMS['b.csv'] }));
      lake.put(s('late.csv'), LATE);
      const late = ok(await runOn(lake, w, withState(lake)));
      expect(late.dateState?.restored).to.deep.equal(['2024-06-01', '2024-06-02']);
      expect(late.reread).to.deep.equal([]);
      expect(tables(w)).to.deep.equal(await cleanTables({ 'a.csv': STREAMS['a.csv'], 'b.csv': STREAMS['b.csv'], 'late.csv': LATE }));
    });

    it('--date recomputes from the files themselves, and saves the state again', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      ok(await runOn(lake, w, withState(lake)));
      const before = lake.text(`${DATE_STATE_PREFIX}2024-06-01.state`);
      const r = ok(await runOn(lake, w, withState(lake, { window: ['2024-06-01'] })));
      expect(r.dateState?.restored).to.deep.equal([]);
      expect(reread(r)).to.deep.equal([[a('a.csv'), 6]]);
      expect(r.dateState?.saved).to.deep.equal(['2024-06-01']);
      expect(lake.text(`${DATE_STATE_PREFIX}2024-06-01.state`)).to.equal(before);
    });

    it('a dry run reads saved states and writes none', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      ok(await runOn(lake, w, withState(lake)));
      addStreams(lake, ['d.csv']);
      const keys = lake.keys(DATE_STATE_PREFIX);
      const states = keys.map((k) => lake.text(k));
      const r = ok(await runOn(lake, w, withState(lake, { command: 'compute', dryRun: true })));
      expect(r.dateState).to.deep.equal({ restored: ['2024-06-02'], saved: [] });
      expect(lake.keys(DATE_STATE_PREFIX)).to.deep.equal(keys);
      expect(keys.map((k) => lake.text(k))).to.deep.equal(states);
    });

    it('a damaged or unreadable state is a re-read; a state that cannot be written is a warning, and the run succeeds', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      ok(await runOn(lake, w, withState(lake)));
      lake.put(`${DATE_STATE_PREFIX}2024-06-02.state`, 'MKPIDATE garbage');
      addStreams(lake, ['d.csv']);
      lake.failOn('write', (k) => k.startsWith(DATE_STATE_PREFIX));
      const r = ok(await runOn(lake, w, withState(lake)));
      expect(r.dateState).to.deep.equal({ restored: [], saved: [] });
      expect(reread(r)).to.deep.equal([[a('b.csv'), 2]]);
      expect(r.warnings.some((m) => m.includes('could not save the state of 2024-06-02'))).to.equal(true);
      expect(r.archived.map((f) => f.to)).to.deep.equal([a('d.csv')]);
      expect(tables(w)).to.deep.equal(
        await cleanTables({ 'a.csv': STREAMS['a.csv'], 'b.csv': STREAMS['b.csv'], 'd.csv': STREAMS['d.csv'] }),
      );
      lake.failOn('list', DATE_STATE_PREFIX);
      lake.put(s('late.csv'), LATE);
      const listFails = ok(await runOn(lake, w, withState(lake)));
      expect(listFails.warnings.some((m) => m.includes('could not list the saved date states'))).to.equal(true);
      expect(reread(listFails).map(([name]) => name)).to.deep.equal([a('a.csv'), a('b.csv'), a('d.csv')]);
    });

    it('a state is a function of its files and dimensions alone: another ledger holding the same files uses it, one holding another version does not', async () => {
      // Fingerprints from the content (as S3 ETags): the same bytes are the same file in both lakes.
      const lake = tinyLake(['a.csv', 'b.csv'], { fingerprints: 'content-md5' });
      ok(await runOn(lake, new MemoryWarehouse(), withState(lake)));
      const other = tinyLake(['b.csv'], { fingerprints: 'content-md5' });
      other.put(s('a.csv'), STREAMS['a.csv'], { fingerprint: 'another-version' });
      const w = new MemoryWarehouse();
      ok(await runOn(other, w));
      for (const k of lake.keys(DATE_STATE_PREFIX)) other.put(k, lake.bytes(k)!);
      other.put(s('late.csv'), LATE);
      const r = ok(await runOn(other, w, withState(other)));
      // b.csv is the same file in both: 2024-06-02's state holds. a.csv is not: 2024-06-01 is re-read.
      expect(r.dateState?.restored).to.deep.equal(['2024-06-02']);
      expect(reread(r)).to.deep.equal([[a('a.csv'), 6]]);
      expect(tables(w)).to.deep.equal(await cleanTables({ 'a.csv': STREAMS['a.csv'], 'b.csv': STREAMS['b.csv'], 'late.csv': LATE }));
    });
  });
