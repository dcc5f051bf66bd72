// The plan stage (lib/stages/plan.ts) on the memory lake: which objects are stream files
// (contract §1.2), which ledger row a listed object is (§10.2, §10.4), what a run must read
// (pending files per table, §10.5; files to re-read for late dates, §12), twin rows (§10.3), and
// where a loaded file is now.

import { createHash } from 'node:crypto';

import { expect } from 'chai';

import { isMkpiError } from '../../../lib/domain/errors.js';
import type { KpiTable } from '../../../lib/domain/kpi.js';
import { DEFAULT_LAYOUT } from '../../../lib/domain/layout.js';
import type { LedgerEntry } from '../../../lib/domain/ledger.js';
import {
  archiveKeys,
  FileMatcher,
  filesToReread,
  findTwins,
  listStreamFiles,
  locate,
  planPending,
  repairTwins,
} from '../../../lib/stages/plan.js';
import { MemoryLake } from '../../support/fakes/memory-lake.js';

const layout = DEFAULT_LAYOUT;
const BOTH: KpiTable[] = ['hourly', 'genre'];
const A = 'user_id,track_id,listen_time\nu1,t1,2024-06-01 10:00:00\n';
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

function entry(over: Partial<LedgerEntry> = {}): LedgerEntry {
  return {
    fileKey: 'streams/a.csv',
    fingerprint: 'f0',
    contentHash: sha(A),
    size: A.length,
    rows: 1,
    dates: ['2024-06-01'],
    tables: [...BOTH],
    runId: 'r1',
    archivedKey: null,
    ...over,
  };
}

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return isMkpiError(err) ? err.code : String(err);
  }
}

describe('stages/plan', () => {
  describe('listStreamFiles', () => {
    it('keeps the .csv objects directly under streams/ (any case), sorted; reports the rest as ignored; never the archive', async () => {
      const lake = new MemoryLake();
      for (const k of [
        'streams/b.csv',
        'streams/A.CSV',
        'streams/notes.txt',
        'streams/sub/c.csv',
        'streams/archived/a.csv',
        'streams/archived/deep/x.csv',
        'songs.csv',
        'streamsX.csv',
      ]) {
        lake.put(k, 'x');
      }
      const { files, ignored } = await listStreamFiles(lake, layout);
      expect(files.map((f) => f.key)).to.deep.equal(['streams/A.CSV', 'streams/b.csv']);
      expect(ignored).to.deep.equal(['streams/notes.txt', 'streams/sub/c.csv']);
      expect(files[0]).to.deep.equal({ key: 'streams/A.CSV', size: 1, fingerprint: lake.fingerprintOf('streams/A.CSV') });
    });

    it('finds nothing when there is no streams folder', async () => {
      expect(await listStreamFiles(new MemoryLake(), layout)).to.deep.equal({ files: [], ignored: [] });
    });

    it('follows a configured layout', async () => {
      const lake = new MemoryLake();
      lake.put('in/x.csv', 'x');
      lake.put('in/done/y.csv', 'y');
      const { files, ignored } = await listStreamFiles(lake, { ...layout, streams: 'in/', archive: 'in/done/' });
      expect(files.map((f) => f.key)).to.deep.equal(['in/x.csv']);
      expect(ignored).to.deep.equal([]);
    });
  });

  describe('FileMatcher: which ledger row a listed object is (key + content)', () => {
    it('the same key and fingerprint is that row, without reading the object', async () => {
      const lake = new MemoryLake();
      const fp = lake.put('streams/a.csv', A);
      const e = entry({ fingerprint: fp });
      const [obj] = (await listStreamFiles(lake, layout)).files;
      expect(await new FileMatcher(lake, layout, [e]).match(obj)).to.equal(e);
      expect(lake.reads).to.deep.equal([]);
    });

    it('a known key under other fingerprints of another size is a new file, without reading it', async () => {
      const lake = new MemoryLake();
      lake.put('streams/a.csv', A + 'u2,t2,2024-06-01 11:00:00\n');
      const [obj] = (await listStreamFiles(lake, layout)).files;
      expect(await new FileMatcher(lake, layout, [entry()]).match(obj)).to.equal(undefined);
      expect(lake.reads).to.deep.equal([]);
    });

    it('the same size under another fingerprint is hashed: the same bytes are the row, other bytes a new file', async () => {
      const lake = new MemoryLake();
      lake.put('streams/a.csv', A); // a `touch` or a `cp`: new fingerprint, same bytes
      lake.put('streams/b.csv', A.replace('u1', 'u9'));
      const e = entry();
      const other = entry({ fileKey: 'streams/b.csv', fingerprint: 'g0' });
      const matcher = new FileMatcher(lake, layout, [e, other]);
      const [a, b] = (await listStreamFiles(lake, layout)).files;
      expect(await matcher.match(a)).to.equal(e);
      expect(await matcher.match(b)).to.equal(undefined);
      // Each object hashed once however often it is matched.
      await matcher.match(a);
      expect(lake.reads).to.deep.equal(['streams/a.csv', 'streams/b.csv']);
    });

    it('the same bytes under another key are another file', async () => {
      const lake = new MemoryLake();
      lake.put('streams/copy-of-a.csv', A);
      const [obj] = (await listStreamFiles(lake, layout)).files;
      expect(await new FileMatcher(lake, layout, [entry()]).match(obj)).to.equal(undefined);
    });

    it('a row from before content hashes is compared with its copy elsewhere in the lake', async () => {
      const lake = new MemoryLake();
      const archivedFp = lake.put('streams/archived/a.csv', A);
      lake.put('streams/a.csv', A);
      const old = entry({ contentHash: null, fingerprint: archivedFp, archivedKey: 'streams/archived/a.csv' });
      const [obj] = (await listStreamFiles(lake, layout)).files;
      expect(await new FileMatcher(lake, layout, [old]).match(obj)).to.equal(old);
      lake.put('streams/a.csv', A.replace('u1', 'u8'));
      const [changed] = (await listStreamFiles(lake, layout)).files;
      expect(await new FileMatcher(lake, layout, [old]).match(changed)).to.equal(undefined);
    });

    it('remember() spares the hashing of an object whose hash a scan has computed', async () => {
      const lake = new MemoryLake();
      lake.put('streams/a.csv', A);
      const matcher = new FileMatcher(lake, layout, [entry()]);
      const [obj] = (await listStreamFiles(lake, layout)).files;
      matcher.remember(obj, sha(A));
      expect(await matcher.match(obj)).to.not.equal(undefined);
      expect(lake.reads).to.deep.equal([]);
    });
  });

  describe('planPending', () => {
    it('is pending for the tables a file is not loaded into, already loaded when it is in every requested one', async () => {
      const lake = new MemoryLake();
      const fa = lake.put('streams/a.csv', A);
      const fb = lake.put('streams/b.csv', 'user_id,track_id,listen_time\n');
      lake.put('streams/c.csv', 'user_id,track_id,listen_time\n\n');
      const ea = entry({ fingerprint: fa, tables: ['hourly'] });
      const eb = entry({ fileKey: 'streams/b.csv', fingerprint: fb, size: 29 });
      const files = (await listStreamFiles(lake, layout)).files;
      const matcher = new FileMatcher(lake, layout, [ea, eb]);

      const plan = await planPending(files, matcher, BOTH);
      expect(plan.pending.map((p) => [p.obj.key, p.entry, p.missing])).to.deep.equal([
        ['streams/a.csv', ea, ['genre']],
        ['streams/c.csv', undefined, ['hourly', 'genre']],
      ]);
      expect(plan.alreadyLoaded.map((p) => [p.obj.key, p.entry])).to.deep.equal([['streams/b.csv', eb]]);

      const hourlyOnly = await planPending(files, matcher, ['hourly']);
      expect(hourlyOnly.pending.map((p) => p.obj.key)).to.deep.equal(['streams/c.csv']);
      expect(hourlyOnly.alreadyLoaded.map((p) => p.obj.key)).to.deep.equal(['streams/a.csv', 'streams/b.csv']);
    });
  });

  describe('filesToReread', () => {
    it('is every other ledger file carrying a recomputed date; a pending file is not read twice, even known under another fingerprint', () => {
      const a = entry({ fileKey: 'streams/a.csv', fingerprint: 'fa', dates: ['2024-06-01'] });
      const b = entry({ fileKey: 'streams/b.csv', fingerprint: 'fb', dates: ['2024-06-02', '2024-06-03'] });
      const c = entry({ fileKey: 'streams/c.csv', fingerprint: 'fc', dates: ['2024-06-05'] });
      const pendingA = { obj: { key: 'streams/a.csv', size: 1, fingerprint: 'new-fp' }, entry: a, missing: ['genre'] as KpiTable[] };
      const pendingD = { obj: { key: 'streams/d.csv', size: 1, fingerprint: 'fd' }, entry: undefined, missing: BOTH };
      expect(filesToReread([a, b, c], [pendingA, pendingD], new Set(['2024-06-01', '2024-06-03']))).to.deep.equal([b]);
      expect(filesToReread([a, b, c], [pendingD], new Set(['2024-06-01']))).to.deep.equal([a]);
      expect(filesToReread([a, b, c], [], new Set())).to.deep.equal([]);
    });
  });

  describe('twins', () => {
    const t = (over: Partial<LedgerEntry>) => entry({ contentHash: null, ...over });

    it('findTwins: rows of one key with one content hash or one archived object; rows of one key with other bytes are not twins', () => {
      const groups = findTwins([
        t({ fingerprint: 'f2', runId: 'r2', contentHash: 'h' }),
        t({ fingerprint: 'f1', runId: 'r1', contentHash: 'h' }),
        t({ fingerprint: 'f3', runId: 'r3', contentHash: 'other' }),
        t({ fileKey: 'streams/b.csv', fingerprint: 'g1', archivedKey: 'streams/archived/b.csv' }),
        t({ fileKey: 'streams/b.csv', fingerprint: 'g2', runId: 'r2', archivedKey: 'streams/archived/b.csv' }),
        t({ fileKey: 'streams/c.csv', fingerprint: 'k1', contentHash: 'h' }),
      ]);
      expect(groups.map((g) => [g.keep.fingerprint, g.twins.map((x) => x.fingerprint)])).to.deep.equal([
        ['f1', ['f2']],
        ['g1', ['g2']],
      ]);
    });

    it('repairTwins keeps the earliest row with the tables and dates of all, and retires the rest', () => {
      const keep = t({ fingerprint: 'f1', runId: 'r1', tables: ['hourly'], dates: ['2024-06-01'], archivedKey: 'streams/archived/a.csv' });
      const twin = t({
        fingerprint: 'f2',
        runId: 'r2',
        tables: ['hourly', 'genre'],
        dates: ['2024-06-02'],
        archivedKey: 'streams/archived/a.csv',
        contentHash: 'h',
      });
      const other = t({ fileKey: 'streams/z.csv', fingerprint: 'z' });
      const warnings: string[] = [];
      const r = repairTwins([twin, keep, other], BOTH, (m) => warnings.push(m));
      const merged = { ...keep, tables: ['hourly', 'genre'], dates: ['2024-06-01', '2024-06-02'], contentHash: 'h' };
      expect(r.retire).to.deep.equal([twin]);
      expect(r.keepers).to.deep.equal([merged]);
      expect(r.ledger).to.deep.equal([merged, other]);
      expect(warnings).to.have.length(1);
      expect(warnings[0]).to.contain('streams/a.csv');
    });

    it('repairTwins adds no keeper row when the kept row already has everything', () => {
      const keep = t({ fingerprint: 'f1', runId: 'r1', contentHash: 'h' });
      const twin = t({ fingerprint: 'f2', runId: 'r2', contentHash: 'h' });
      const r = repairTwins([keep, twin], BOTH, () => undefined);
      expect(r.retire).to.deep.equal([twin]);
      expect(r.keepers).to.deep.equal([]);
      expect(r.ledger).to.deep.equal([keep]);
    });

    it('repairTwins leaves a twin loaded into a table the run does not write, with a warning', () => {
      const keep = t({ fingerprint: 'f1', runId: 'r1', contentHash: 'h' });
      const twin = t({ fingerprint: 'f2', runId: 'r2', contentHash: 'h', tables: ['genre'] });
      const warnings: string[] = [];
      const r = repairTwins([keep, twin], ['hourly'], (m) => warnings.push(m));
      expect(r.retire).to.deep.equal([]);
      expect(r.ledger).to.deep.equal([keep, twin]);
      expect(warnings.join('\n')).to.contain('without --kpis');
    });

    it('repairTwins changes nothing in a ledger without twins', () => {
      const ledger = [t({ fingerprint: 'f1' }), t({ fileKey: 'streams/b.csv' })];
      const warnings: string[] = [];
      expect(repairTwins(ledger, BOTH, (m) => warnings.push(m))).to.deep.equal({ ledger, retire: [], keepers: [] });
      expect(warnings).to.deep.equal([]);
    });
  });

  describe('archiveKeys', () => {
    it('is the same name in the archive, then a name tagged with the fingerprint', () => {
      const [same, tagged] = archiveKeys(layout, 'streams/a.csv', 'fp');
      expect(same).to.equal('streams/archived/a.csv');
      expect(tagged).to.equal(`streams/archived/a~${createHash('sha256').update('fp').digest('hex').slice(0, 10)}.csv`);
      expect(archiveKeys(layout, 'streams/a.csv', 'other')[1]).to.not.equal(tagged);
    });
  });

  describe('locate: where a loaded file is now', () => {
    it('at its recorded archive key, with the recorded copy fingerprint', async () => {
      const lake = new MemoryLake({ copies: 'new' });
      const fp = lake.put('streams/archived/a.csv', A);
      const found = await locate(lake, layout, entry({ archivedKey: 'streams/archived/a.csv', archivedFingerprint: fp }));
      expect(found.key).to.equal('streams/archived/a.csv');
    });

    it('still in streams/, or in the archive under either name when the ledger never heard of the move', async () => {
      const lake = new MemoryLake();
      const fp = lake.put('streams/a.csv', A);
      expect((await locate(lake, layout, entry({ fingerprint: fp }))).key).to.equal('streams/a.csv');
      lake.delete('streams/a.csv');
      const tagged = archiveKeys(layout, 'streams/a.csv', fp)[1];
      lake.put(tagged, A, { fingerprint: fp });
      expect((await locate(lake, layout, entry({ fingerprint: fp }))).key).to.equal(tagged);
      lake.put('streams/archived/a.csv', A, { fingerprint: fp });
      expect((await locate(lake, layout, entry({ fingerprint: fp }))).key).to.equal('streams/archived/a.csv');
    });

    it('by its content hash when its fingerprint changed (a touch, a re-upload)', async () => {
      const lake = new MemoryLake();
      lake.put('streams/archived/a.csv', A);
      const found = await locate(lake, layout, entry({ fingerprint: 'long-gone' }));
      expect(found.key).to.equal('streams/archived/a.csv');
    });

    it('never takes another file of the same name and size for it, and says MKPI_LEDGER_FILE_MISSING', async () => {
      const lake = new MemoryLake();
      lake.put('streams/archived/a.csv', A.replace('u1', 'u7'));
      lake.put('streams/a.csv', A.replace('u1', 'u6'));
      expect(await code(locate(lake, layout, entry({ archivedKey: 'streams/archived/a.csv', archivedFingerprint: 'x' })))).to.equal(
        'MKPI_LEDGER_FILE_MISSING',
      );
      expect(await code(locate(new MemoryLake(), layout, entry()))).to.equal('MKPI_LEDGER_FILE_MISSING');
    });
  });
});
