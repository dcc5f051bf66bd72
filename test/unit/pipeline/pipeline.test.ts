// runPipeline (lib/pipeline/pipeline.ts) against the memory fakes, through its public options
// and the report only: what each command does to the lake and the warehouse as docs/contract.md
// states it, the circuit breaker (§5.3), idempotence (§9.3), file identity (§10.2), twin repair
// (§10.3), archiving (§11) and late files (§12).

import { createHash } from 'node:crypto';

import { expect } from 'chai';

import type { KpiTable } from '../../../lib/domain/kpi.js';
import type { RunReport } from '../../../lib/pipeline/report.js';
import { MemoryLake } from '../../support/fakes/memory-lake.js';
import { MemoryWarehouse, type WarehouseSnapshot } from '../../support/fakes/memory-warehouse.js';
import { LAYOUT, STREAMS, TINY_GENRE, TINY_HOURLY, addStreams, runOn, tinyLake, type StreamName } from '../../support/fakes/tiny-lake.js';

const s = (name: string) => LAYOUT.streams + name;
const a = (name: string) => LAYOUT.archive + name;
const BAD_ROW = 'u1,t1,not a time\n';

function ok(r: RunReport): RunReport {
  expect(r.error, JSON.stringify(r.error)).to.equal(null);
  expect(r.ok).to.equal(true);
  return r;
}

function failed(r: RunReport, code: string): RunReport {
  expect(r.ok).to.equal(false);
  expect(r.error?.code, JSON.stringify(r.error)).to.equal(code);
  return r;
}

/** The tables one clean run over these files gives. */
async function cleanTables(files: StreamName[]): Promise<Pick<WarehouseSnapshot, 'hourly' | 'genre'>> {
  const w = new MemoryWarehouse();
  ok(await runOn(tinyLake(files), w));
  const { hourly, genre } = w.snapshot();
  return { hourly, genre };
}

function tables(w: MemoryWarehouse): Pick<WarehouseSnapshot, 'hourly' | 'genre'> {
  const { hourly, genre } = w.snapshot();
  return { hourly, genre };
}

describe('pipeline: runPipeline on the memory lake and warehouse', () => {
  describe('validate', () => {
    it('reads and counts every stream file, and touches neither the warehouse nor the lake', async () => {
      const lake = tinyLake();
      const before = lake.contents();
      const r = ok(await runOn(lake, undefined, { command: 'validate', rejectsKey: null }));
      expect(r.files.map((f) => [f.name, f.status, f.rows, f.complete])).to.deep.equal([
        [s('a.csv'), 'read', 6, 6],
        [s('b.csv'), 'read', 3, 2],
      ]);
      expect(r.files[1].rejected.unknown_track).to.equal(1);
      expect(r.files[1].dates).to.deep.equal(['2024-06-02']);
      expect(r.totals).to.deep.include({ files: 2, rowsRead: 9, completeRows: 8, badRows: 0, orphanRows: 1, duplicateSongs: 1 });
      expect(r.dimensions.songs).to.deep.include({ rows: 5, valid: 4, duplicates: 1 });
      expect(r).to.deep.include({ loaded: false, archived: [], rejectsOutput: null, warehouse: null });
      expect(lake.contents()).to.deep.equal(before);
    });

    it('reads loaded files again (it ignores the ledger), takes no lock, and writes rejects only when asked', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      ok(await runOn(lake, w, { command: 'compute' }));
      const lock = await w.acquireRunLock();
      const r = ok(await runOn(lake, w, { command: 'validate', runId: 'v1', rejectsKey: 'rejects/v1/rejects.csv' }));
      await lock.release();
      expect(r.files.map((f) => f.status)).to.deep.equal(['read', 'read']);
      expect(r.rejectsOutput).to.equal('rejects/v1/rejects.csv');
      expect(lake.text('rejects/v1/rejects.csv')).to.contain('streams/b.csv,4,unknown_track,');
      expect(r.loaded).to.equal(false);
    });

    it('applies the circuit breaker too', async () => {
      const lake = tinyLake();
      lake.put(s('bad.csv'), STREAMS['a.csv'] + BAD_ROW);
      failed(await runOn(lake, undefined, { command: 'validate', rejectsKey: null }), 'MKPI_BAD_ROWS');
    });
  });

  describe('compute', () => {
    it('loads the KPIs and the ledger, and archives nothing', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      const r = ok(await runOn(lake, w, { command: 'compute' }));
      expect(r.loaded).to.equal(true);
      expect(r.archived).to.deep.equal([]);
      expect(r.datesRecomputed).to.deep.equal({ hourly: ['2024-06-01', '2024-06-02'], genre: ['2024-06-01', '2024-06-02'] });
      expect(r.rowsWritten).to.deep.equal({ hourly_kpis: TINY_HOURLY.length, genre_level_kpis: TINY_GENRE.length });
      expect(r.warehouse).to.equal(w.description);
      expect(tables(w)).to.deep.equal({ hourly: TINY_HOURLY, genre: TINY_GENRE });
      expect(w.snapshot().ledger.map((e) => [e.fileKey, e.tables, e.dates, e.archivedKey])).to.deep.equal([
        [s('a.csv'), ['hourly', 'genre'], ['2024-06-01'], null],
        [s('b.csv'), ['hourly', 'genre'], ['2024-06-02'], null],
      ]);
      expect(lake.keys(LAYOUT.streams)).to.deep.equal([s('a.csv'), s('b.csv')]);
      expect(w.lockHeld).to.equal(false);
    });

    it('run again over the same input, loads nothing: every file is already_loaded (§9.3)', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      ok(await runOn(lake, w, { command: 'compute' }));
      const before = w.snapshot();
      const r = ok(await runOn(lake, w, { command: 'compute' }));
      expect(r.files.map((f) => [f.name, f.status, f.rows])).to.deep.equal([
        [s('a.csv'), 'already_loaded', 6],
        [s('b.csv'), 'already_loaded', 3],
      ]);
      expect(r.loaded).to.equal(false);
      // songs.csv's duplicate t1 is listed on every run; no stream file was read again, so none of theirs.
      const rejects = lake.text(r.rejectsOutput!)!.split('\n').slice(1, -1);
      expect(rejects.map((l) => l.split(',').slice(0, 3).join(','))).to.deep.equal(['songs.csv,5,duplicate_track_id']);
      expect(r.totals.files).to.equal(0);
      expect(w.snapshot()).to.deep.equal(before);
    });

    it('--kpis hourly then --kpis genre ends exactly like one compute; archive waits for both tables (§10.5, §11)', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      const first = ok(await runOn(lake, w, { command: 'compute', kpis: ['hourly'] }));
      expect(first.rowsWritten.genre_level_kpis).to.equal(0);
      expect(tables(w)).to.deep.equal({ hourly: TINY_HOURLY, genre: [] });
      expect(ok(await runOn(lake, w, { command: 'archive' })).archived).to.deep.equal([]);
      const second = ok(await runOn(lake, w, { command: 'compute', kpis: ['genre'] as KpiTable[] }));
      expect(second.files.map((f) => f.status)).to.deep.equal(['read', 'read']);
      expect(tables(w)).to.deep.equal({ hourly: TINY_HOURLY, genre: TINY_GENRE });
      expect(w.snapshot().ledger.map((e) => e.tables)).to.deep.equal([
        ['hourly', 'genre'],
        ['hourly', 'genre'],
      ]);
      expect(ok(await runOn(lake, w, { command: 'archive' })).archived).to.have.length(2);
    });

    it('refuses to start while another run holds the lock, changing nothing (§9.4)', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      const other = await w.session().acquireRunLock();
      failed(await runOn(lake, w, { command: 'compute' }), 'MKPI_LOCKED');
      expect(await w.isInitialised()).to.equal(false);
      await other.release();
      ok(await runOn(lake, w, { command: 'compute' }));
    });
  });

  describe('run', () => {
    it('loads, then archives every file it loaded; rejects are published, orphans warned about', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      const r = ok(await runOn(lake, w, { runId: 'run-1', rejectsKey: 'rejects/run-1/rejects.csv' }));
      expect(r.archived).to.deep.equal([
        { from: s('a.csv'), to: a('a.csv'), renamed: false },
        { from: s('b.csv'), to: a('b.csv'), renamed: false },
      ]);
      expect(lake.keys(LAYOUT.streams)).to.deep.equal([a('a.csv'), a('b.csv')]);
      expect(lake.text(a('a.csv'))).to.equal(STREAMS['a.csv']);
      expect(w.snapshot().ledger.map((e) => e.archivedKey)).to.deep.equal([a('a.csv'), a('b.csv')]);
      expect(r.rejectsOutput).to.equal('rejects/run-1/rejects.csv');
      expect(lake.text('rejects/run-1/rejects.csv')).to.equal(
        'file,line,reason,detail,raw\n' +
          'songs.csv,5,duplicate_track_id,"track_id ""t1"" first seen on line 2","t1,Zed,Duplicate of t1: ignored,jazz,1"\n' +
          'streams/b.csv,4,unknown_track,"track_id ""t9"" is not a valid song in songs.csv","u1,t9,2024-06-02 00:40:00"\n',
      );
      expect(r.warnings.join('\n')).to.contain('orphan');
      expect(r.warnings.join('\n')).to.contain('duplicate track_id');
      // The duplicate is listed but stays a duplicate: not a bad row, not a dimension reject.
      expect(r.totals).to.deep.include({ badRows: 0, orphanRows: 1, duplicateSongs: 1 });
      expect(Object.values(r.dimensions.songs!.rejected).every((n) => n === 0)).to.equal(true);
      expect(tables(w)).to.deep.equal({ hourly: TINY_HOURLY, genre: TINY_GENRE });
    });

    it('reports objects that are not stream files as ignored, with a warning, and leaves them', async () => {
      const lake = tinyLake(['a.csv']);
      lake.put(s('readme.txt'), 'hello');
      lake.put(s('2024/x.csv'), STREAMS['b.csv']);
      const r = ok(await runOn(lake, new MemoryWarehouse()));
      expect(r.ignored).to.deep.equal([s('2024/x.csv'), s('readme.txt')]);
      expect(r.warnings.some((m) => m.includes('not stream files'))).to.equal(true);
      expect(lake.has(s('readme.txt'))).to.equal(true);
      expect(r.files.map((f) => f.name)).to.deep.equal([s('a.csv')]);
    });

    it('a re-delivered copy of a loaded file (same bytes, new fingerprint) is already_loaded and removed from streams/ (§10.2, §11)', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      ok(await runOn(lake, w));
      const before = w.snapshot();
      lake.put(s('a.csv'), STREAMS['a.csv']);
      const r = ok(await runOn(lake, w));
      expect(r.files.map((f) => [f.name, f.status])).to.deep.equal([[s('a.csv'), 'already_loaded']]);
      expect(r.loaded).to.equal(false);
      expect(r.archived).to.deep.equal([{ from: s('a.csv'), to: a('a.csv'), renamed: false }]);
      expect(lake.keys(LAYOUT.streams)).to.deep.equal([a('a.csv'), a('b.csv')]);
      expect(w.snapshot().hourly).to.deep.equal(before.hourly);
      expect(w.snapshot().ledger.map((e) => e.fileKey)).to.deep.equal(before.ledger.map((e) => e.fileKey));
    });

    it('a corrected file under a loaded name is a new file: loaded with the old one, archived under a distinct name', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      ok(await runOn(lake, w));
      const corrected = STREAMS['c.csv'];
      const fp = lake.put(s('a.csv'), corrected);
      const r = ok(await runOn(lake, w));
      expect(r.files.map((f) => [f.name, f.status])).to.deep.equal([[s('a.csv'), 'read']]);
      // The earlier a.csv carries 2024-06-01 too: it is read again from the archive.
      expect(r.reread.map((x) => x.name)).to.deep.equal([a('a.csv')]);
      // <stem>~<first 10 hex digits of the SHA-256 of the source's fingerprint><ext> (§11).
      const tagged = a(`a~${createHash('sha256').update(fp).digest('hex').slice(0, 10)}.csv`);
      expect(r.archived).to.deep.equal([{ from: s('a.csv'), to: tagged, renamed: true }]);
      expect(r.warnings.some((m) => m.includes(tagged))).to.equal(true);
      expect(lake.text(a('a.csv'))).to.equal(STREAMS['a.csv']);
      expect(lake.text(tagged)).to.equal(corrected);
      expect(w.snapshot().ledger.filter((e) => e.fileKey === s('a.csv'))).to.have.length(2);
      // Both versions count: the tables are those of a, b and the corrected file as c.
      expect(tables(w)).to.deep.equal(await cleanTables(['a.csv', 'b.csv', 'c.csv']));
    });

    it('a late file recomputes its dates over every file holding them, re-reading archived files (§12)', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      ok(await runOn(lake, w));
      addStreams(lake, ['d.csv']);
      const r = ok(await runOn(lake, w));
      // d.csv has rows on 2024-06-02 (b's date) and 2024-06-03.
      expect(r.datesRecomputed.hourly).to.deep.equal(['2024-06-02', '2024-06-03']);
      expect(r.reread).to.deep.equal([{ name: a('b.csv'), bytes: STREAMS['b.csv'].length, rows: 3, rowsUsed: 2 }]);
      expect(r.totals).to.deep.include({ files: 1, rowsRead: 2, orphanRows: 0 });
      expect(tables(w)).to.deep.equal(await cleanTables(['a.csv', 'b.csv', 'd.csv']));
      expect(lake.keys(LAYOUT.streams)).to.deep.equal([a('a.csv'), a('b.csv'), a('d.csv')]);
    });

    it('stops with MKPI_LEDGER_FILE_MISSING, before loading, when a loaded file needed for a late date is gone', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      ok(await runOn(lake, w));
      const before = w.snapshot();
      lake.delete(a('b.csv'));
      addStreams(lake, ['d.csv']);
      failed(await runOn(lake, w), 'MKPI_LEDGER_FILE_MISSING');
      expect(w.snapshot()).to.deep.equal(before);
      expect(lake.has(s('d.csv'))).to.equal(true);
    });

    it('fails schema validation after reading every file, naming the failing ones, and loads nothing (§5.3)', async () => {
      const lake = tinyLake();
      lake.put(s('0-bad.csv'), 'user_id,when\nu1,x\n');
      const w = new MemoryWarehouse();
      const r = failed(await runOn(lake, w), 'MKPI_SCHEMA');
      expect(r.files.map((f) => [f.name, f.status])).to.deep.equal([
        [s('0-bad.csv'), 'schema_error'],
        [s('a.csv'), 'read'],
        [s('b.csv'), 'read'],
      ]);
      expect(r.files[0].error).to.be.a('string');
      expect(w.snapshot().ledger).to.deep.equal([]);
      expect(lake.keys(LAYOUT.archive)).to.deep.equal([]);
    });

    it('stops with MKPI_NO_INPUT when songs.csv is missing', async () => {
      const lake = tinyLake();
      lake.delete('songs.csv');
      failed(await runOn(lake, new MemoryWarehouse()), 'MKPI_NO_INPUT');
    });

    describe('the circuit breaker (§5.3)', () => {
      it('stops on bad rows over --max-bad-rows (default 0), after publishing the rejects, loading and archiving nothing', async () => {
        const lake = tinyLake();
        lake.put(s('c.csv'), STREAMS['c.csv'] + BAD_ROW);
        const w = new MemoryWarehouse();
        const r = failed(await runOn(lake, w, { runId: 'g1', rejectsKey: 'rejects/g1/rejects.csv' }), 'MKPI_BAD_ROWS');
        expect(r.totals.badRows).to.equal(1);
        expect(r.rejectsOutput).to.equal('rejects/g1/rejects.csv');
        expect(lake.text('rejects/g1/rejects.csv')).to.contain('streams/c.csv,4,bad_listen_time,');
        expect(r.loaded).to.equal(false);
        expect(w.snapshot().ledger).to.deep.equal([]);
        expect(lake.keys(LAYOUT.archive)).to.deep.equal([]);
      });

      it('loads within --max-bad-rows, with a warning', async () => {
        const lake = tinyLake();
        lake.put(s('c.csv'), STREAMS['c.csv'] + BAD_ROW);
        const r = ok(await runOn(lake, new MemoryWarehouse(), { maxBadRows: 1 }));
        expect(r.loaded).to.equal(true);
        expect(r.warnings.some((m) => m.includes('bad stream row'))).to.equal(true);
      });

      it('stops on orphans over --max-orphan-rows', async () => {
        const w = new MemoryWarehouse();
        const r = failed(await runOn(tinyLake(), w, { maxOrphanRows: 0 }), 'MKPI_ORPHAN_ROWS');
        expect(r.totals.orphanRows).to.equal(1);
        expect(w.snapshot().ledger).to.deep.equal([]);
        ok(await runOn(tinyLake(), new MemoryWarehouse(), { maxOrphanRows: 1 }));
      });

      it('counts only the files read as new input, not already-loaded or re-read ones', async () => {
        const lake = tinyLake();
        const w = new MemoryWarehouse();
        ok(await runOn(lake, w));
        // b.csv (loaded, with its orphan) is re-read for d.csv's 2024-06-02.
        addStreams(lake, ['d.csv']);
        const r = ok(await runOn(lake, w, { maxOrphanRows: 0 }));
        expect(r.reread.map((x) => x.name)).to.deep.equal([a('b.csv')]);
      });
    });

    it('does not archive a file that landed after the listing; the next run loads it (§11)', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      const r = ok(
        await runOn(lake, w, {
          fault: (p) => {
            if (p === 'after-scan') addStreams(lake, ['c.csv']);
          },
        }),
      );
      expect(r.archived.map((f) => f.from)).to.deep.equal([s('a.csv'), s('b.csv')]);
      expect(lake.has(s('c.csv'))).to.equal(true);
      const next = ok(await runOn(lake, w));
      expect(next.files.map((f) => [f.name, f.status])).to.deep.equal([[s('c.csv'), 'read']]);
      expect(tables(w)).to.deep.equal(await cleanTables(['a.csv', 'b.csv', 'c.csv']));
    });

    for (const when of ['after-commit', 'after-archive-list'] as const) {
      it(`leaves in streams/ a loaded file replaced by other bytes before it is archived (${when})`, async () => {
        const lake = tinyLake();
        const w = new MemoryWarehouse();
        const r = ok(
          await runOn(lake, w, {
            fault: (p) => {
              // Other bytes, none of them on b's date (the loaded b is gone, and a date of it would need it).
              if (p === when) lake.put(s('b.csv'), STREAMS['c.csv']);
            },
          }),
        );
        expect(r.archived.map((f) => f.from)).to.deep.equal([s('a.csv')]);
        expect(lake.text(s('b.csv'))).to.equal(STREAMS['c.csv']);
        // Replaced between the archive's listing and its move: the run says so.
        if (when === 'after-archive-list') expect(r.warnings.some((m) => m.startsWith(`${s('b.csv')} not archived`))).to.equal(true);
        const next = ok(await runOn(lake, w));
        expect(next.files.map((f) => [f.name, f.status])).to.deep.equal([[s('b.csv'), 'read']]);
        expect(next.archived).to.deep.equal([{ from: s('b.csv'), to: a('b.csv'), renamed: false }]);
        expect(lake.has(s('b.csv'))).to.equal(false);
      });
    }

    it('repairs twin ledger rows left by older versions: one row per file, its dates counted once (§10.3)', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      ok(await runOn(lake, w));
      const clean = w.snapshot();
      // What an older version left: a.csv re-delivered and loaded a second time under another
      // fingerprint, its date counted twice.
      const first = clean.ledger[0];
      const doubled = clean.hourly.filter((h) => h.listen_date === '2024-06-01').map((h) => ({ ...h, listen_counts: h.listen_counts * 2 }));
      await w.load({
        runId: 'r9999',
        hourly: { dates: ['2024-06-01'], rows: doubled },
        ledger: [{ ...first, fingerprint: 'older-fp', runId: 'r9999', archivedKey: null }],
      });
      await w.markArchived(first.fileKey, 'older-fp', first.archivedKey!);
      expect(w.snapshot().ledger).to.have.length(3);

      const r = ok(await runOn(lake, w));
      expect(r.ledgerRepaired).to.deep.equal([s('a.csv')]);
      expect(r.loaded).to.equal(true);
      expect(w.snapshot().ledger.map((e) => [e.fileKey, e.fingerprint])).to.deep.equal(clean.ledger.map((e) => [e.fileKey, e.fingerprint]));
      expect(tables(w)).to.deep.equal({ hourly: clean.hourly, genre: clean.genre });
      expect(ok(await runOn(lake, w)).ledgerRepaired).to.deep.equal([]);
    });
  });

  describe('archive', () => {
    it('moves only files loaded into both tables; other files stay', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      ok(await runOn(lake, w, { command: 'compute' }));
      addStreams(lake, ['c.csv']);
      const r = ok(await runOn(lake, w, { command: 'archive' }));
      expect(r.archived.map((f) => f.from)).to.deep.equal([s('a.csv'), s('b.csv')]);
      expect(r.files).to.deep.equal([]);
      expect(lake.keys(LAYOUT.streams)).to.deep.equal([a('a.csv'), a('b.csv'), s('c.csv')]);
      expect(ok(await runOn(lake, w, { command: 'archive' })).archived).to.deep.equal([]);
    });

    it('on a warehouse never loaded does nothing and creates nothing', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      const r = ok(await runOn(lake, w, { command: 'archive' }));
      expect(r.archived).to.deep.equal([]);
      expect(await w.isInitialised()).to.equal(false);
      expect(lake.keys(LAYOUT.streams)).to.deep.equal([s('a.csv'), s('b.csv')]);
    });

    it('finishes a move a failed run left half-done', async () => {
      const lake = tinyLake([], { copies: 'new' });
      addStreams(lake, ['a.csv', 'b.csv']);
      const w = new MemoryWarehouse();
      failed(
        await runOn(lake, w, {
          fault: (p) => {
            if (p === 'after-archive-copy') throw new Error('crash');
          },
        }),
        'MKPI_ARCHIVE_FAILED',
      );
      expect(lake.keys(LAYOUT.streams)).to.deep.equal([s('a.csv'), a('a.csv'), s('b.csv')]);
      const r = ok(await runOn(lake, w, { command: 'archive' }));
      expect(r.archived.map((f) => [f.from, f.to, f.renamed])).to.deep.equal([
        [s('a.csv'), a('a.csv'), false],
        [s('b.csv'), a('b.csv'), false],
      ]);
      expect(lake.keys(LAYOUT.streams)).to.deep.equal([a('a.csv'), a('b.csv')]);
    });
  });

  describe('--dry-run', () => {
    it('computes what a run would load, but creates, locks, loads, archives and writes nothing', async () => {
      const lake = tinyLake();
      const before = lake.contents();
      const w = new MemoryWarehouse();
      const lock = await w.session().acquireRunLock();
      const r = ok(await runOn(lake, w, { dryRun: true, rejectsKey: null }));
      await lock.release();
      expect(r.dryRun).to.equal(true);
      expect(r.rowsWritten).to.deep.equal({ hourly_kpis: TINY_HOURLY.length, genre_level_kpis: TINY_GENRE.length });
      expect(r.datesRecomputed.genre).to.deep.equal(['2024-06-01', '2024-06-02']);
      expect(r).to.deep.include({ loaded: false, archived: [] });
      expect(await w.isInitialised()).to.equal(false);
      expect(lake.contents()).to.deep.equal(before);
    });

    it('reads the ledger of an initialised warehouse: loaded files are already_loaded, nothing to write', async () => {
      const lake = tinyLake();
      const w = new MemoryWarehouse();
      ok(await runOn(lake, w, { command: 'compute' }));
      addStreams(lake, ['c.csv']);
      const before = w.snapshot();
      const r = ok(await runOn(lake, w, { command: 'compute', dryRun: true, rejectsKey: null }));
      expect(r.files.map((f) => [f.name, f.status])).to.deep.equal([
        [s('c.csv'), 'read'],
        [s('a.csv'), 'already_loaded'],
        [s('b.csv'), 'already_loaded'],
      ]);
      expect(r.reread.map((x) => x.name)).to.deep.equal([s('a.csv')]);
      expect(r.datesRecomputed.hourly).to.deep.equal(['2024-06-01', '2024-06-03']);
      expect(w.snapshot()).to.deep.equal(before);
    });
  });

  it('needs a warehouse for every command but validate', async () => {
    for (const command of ['run', 'compute', 'archive'] as const) {
      failed(await runOn(new MemoryLake(), undefined, { command }), 'MKPI_INTERNAL');
    }
  });
});
