// Archiving and locating files whose archived copy has a different fingerprint than the file
// that was loaded — what AWS does to a copy of a multipart or SSE-KMS object (a new ETag), and
// what s3rver never does. The memory lake with that behaviour, and the memory warehouse's ledger.

import { createHash } from 'node:crypto';

import { expect } from 'chai';

import { archiveLoaded, sameContent } from '../../lib/stages/archive.js';
import type { MkpiError } from '../../lib/domain/errors.js';
import { archiveKeys, FileMatcher, findTwins, locate, planPending } from '../../lib/stages/plan.js';
import { DEFAULT_LAYOUT } from '../../lib/domain/layout.js';
import type { LedgerEntry } from '../../lib/domain/ledger.js';
import { MemoryLake } from '../support/fakes/memory-lake.js';
import { MemoryWarehouse } from '../support/fakes/memory-warehouse.js';

/** An S3-like lake: single-part uploads have their content MD5 as ETag; copies get a new ETag, as AWS gives them. */
function s3Lake(): MemoryLake {
  // Reads in chunks of 5 and 7 bytes in turn, so that comparisons must realign buffers.
  return new MemoryLake({ root: 's3://fake/lake', fingerprints: 'content-md5', copies: 'new', chunkSizes: [5, 7] });
}

/** A warehouse whose ledger holds one file loaded into both tables. */
async function ledgerWith(key: string, fingerprint: string, size: number, contentHash: string | null = null): Promise<MemoryWarehouse> {
  const w = new MemoryWarehouse();
  await w.init();
  await w.load({
    runId: 'r1',
    ledger: [
      {
        fileKey: key,
        fingerprint,
        size,
        rows: 1,
        dates: ['2024-06-01'],
        tables: ['hourly', 'genre'],
        runId: 'r1',
        archivedKey: null,
        contentHash,
      },
    ],
  });
  return w;
}

async function firstEntry(w: MemoryWarehouse): Promise<LedgerEntry> {
  return (await w.readLedger())[0];
}

const A = 'user_id,track_id,listen_time\nu1,t1,2024-06-01 10:00:00\n';
const layout = DEFAULT_LAYOUT;

/** A crash at an archive fault point: the run stops there, nothing after it happens. */
class Crash extends Error {}
const crashAt = (point: string) => (p: string) => {
  if (p === point) throw new Crash(p);
};

async function crashed(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    expect((err as MkpiError).cause).to.be.instanceOf(Crash);
    return;
  }
  throw new Error('expected the run to stop at the fault point');
}

describe('archive and locate when the archived copy gets a new fingerprint (AWS multipart / SSE-KMS)', () => {
  it("archives, records the copy's fingerprint in the ledger, and locate finds the copy", async () => {
    const lake = s3Lake();
    const fp = lake.put('streams/a.csv', A);
    const ledger = await ledgerWith('streams/a.csv', fp, A.length);
    const done = await archiveLoaded(lake, ledger, layout);
    expect(done).to.deep.equal([{ from: 'streams/a.csv', to: 'streams/archived/a.csv', renamed: false }]);
    const entry = await firstEntry(ledger);
    expect(entry.archivedKey).to.equal('streams/archived/a.csv');
    expect(entry.archivedFingerprint).to.equal(lake.fingerprintOf('streams/archived/a.csv'));
    expect(entry.archivedFingerprint).to.not.equal(fp);
    const found = await locate(lake, layout, entry);
    expect(found.key).to.equal('streams/archived/a.csv');
  });

  it('a run that died after the copy, before the ledger knew of it, is finished without a second copy (the bytes prove it is ours)', async () => {
    const lake = s3Lake();
    const fp = lake.put('streams/a.csv', A);
    const ledger = await ledgerWith('streams/a.csv', fp, A.length);
    await crashed(archiveLoaded(lake, ledger, layout, { fault: crashAt('after-archive-copy') }));
    expect(lake.keys()).to.deep.equal(['streams/a.csv', 'streams/archived/a.csv']);
    expect((await firstEntry(ledger)).archivedKey).to.equal(null);

    const done = await archiveLoaded(lake, ledger, layout);
    expect(done).to.deep.equal([{ from: 'streams/a.csv', to: 'streams/archived/a.csv', renamed: false }]);
    // Not kept a second time under the "~<tag>" name: the old code took the copy for another file.
    expect(lake.keys()).to.deep.equal(['streams/archived/a.csv']);
    expect((await firstEntry(ledger)).archivedFingerprint).to.equal(lake.fingerprintOf('streams/archived/a.csv'));
    expect((await locate(lake, layout, await firstEntry(ledger))).key).to.equal('streams/archived/a.csv');
  });

  it('a run that died after the ledger recorded the copy, before deleting the source, is finished by the recorded fingerprint', async () => {
    const lake = s3Lake();
    const fp = lake.put('streams/a.csv', A);
    const ledger = await ledgerWith('streams/a.csv', fp, A.length);
    await crashed(archiveLoaded(lake, ledger, layout, { fault: crashAt('after-archive-mark') }));
    expect(lake.keys()).to.deep.equal(['streams/a.csv', 'streams/archived/a.csv']);
    // Meanwhile (the source is still there) the file is found either way.
    expect((await locate(lake, layout, await firstEntry(ledger))).key).to.equal('streams/archived/a.csv');

    lake.reads.length = 0;
    const done = await archiveLoaded(lake, ledger, layout);
    expect(done).to.have.length(1);
    expect(lake.reads, 'no need to compare bytes').to.deep.equal([]);
    expect(lake.keys()).to.deep.equal(['streams/archived/a.csv']);
  });

  it('a different file of the same name and size in the archive is never taken for the copy: ours goes under the distinct name', async () => {
    const lake = s3Lake();
    const other = A.replace('u1', 'u9');
    lake.put('streams/archived/a.csv', other);
    const fp = lake.put('streams/a.csv', A);
    const ledger = await ledgerWith('streams/a.csv', fp, A.length);
    const done = await archiveLoaded(lake, ledger, layout);
    const distinct = archiveKeys(layout, 'streams/a.csv', fp)[1];
    expect(done).to.deep.equal([{ from: 'streams/a.csv', to: distinct, renamed: true }]);
    expect(lake.text('streams/archived/a.csv')).to.equal(other);
    expect(lake.text(distinct)).to.equal(A);
    expect((await locate(lake, layout, await firstEntry(ledger))).key).to.equal(distinct);
  });

  it('a source replaced by a newer version after the listing is not archived', async () => {
    const lake = s3Lake();
    const fp = lake.put('streams/a.csv', A);
    const ledger = await ledgerWith('streams/a.csv', fp, A.length);
    const skipped: string[] = [];
    const done = await archiveLoaded(lake, ledger, layout, {
      fault: (p) => {
        if (p === 'after-archive-list') lake.put('streams/a.csv', A + 'u2,t2,2024-06-02 10:00:00\n');
      },
      onSkip: (key) => skipped.push(key),
    });
    expect(done).to.deep.equal([]);
    expect(skipped).to.deep.equal(['streams/a.csv']);
    expect(lake.keys()).to.deep.equal(['streams/a.csv']);
  });

  it('locate accepts the archived key with the recorded copy fingerprint, refuses another object there, and trusts the size for older ledgers', async () => {
    const lake = s3Lake();
    const base = { fileKey: 'streams/a.csv', fingerprint: 'f0', size: A.length, rows: 1, dates: [], tables: [], runId: 'r' } as const;
    const etag = lake.put('streams/archived/a.csv', A);
    const entry = (over: Partial<LedgerEntry>): LedgerEntry => ({ ...base, dates: [], tables: [], archivedKey: null, ...over });
    expect((await locate(lake, layout, entry({ archivedKey: 'streams/archived/a.csv', archivedFingerprint: etag }))).key).to.equal(
      'streams/archived/a.csv',
    );
    for (const bad of [
      entry({ archivedKey: 'streams/archived/a.csv', archivedFingerprint: 'something-else' }),
      entry({ archivedKey: null }),
      entry({ archivedKey: 'streams/archived/a.csv', archivedFingerprint: null, size: A.length + 1 }),
    ]) {
      try {
        await locate(lake, layout, bad);
        throw new Error('expected MKPI_LEDGER_FILE_MISSING');
      } catch (err) {
        expect((err as MkpiError).code).to.equal('MKPI_LEDGER_FILE_MISSING');
      }
    }
    expect((await locate(lake, layout, entry({ archivedKey: 'streams/archived/a.csv', archivedFingerprint: null }))).key).to.equal(
      'streams/archived/a.csv',
    );
  });

  it('sameContent compares bytes across unequal chunkings and lengths', async () => {
    const lake = s3Lake();
    lake.put('x', 'abcdefghijklmnopqrstuvwxyz');
    lake.put('y', 'abcdefghijklmnopqrstuvwxyz');
    lake.put('z', 'abcdefghijklmnopqrstuvwxyZ');
    lake.put('w', 'abcdefghijklmnopqrstuvwxy');
    lake.put('e', '');
    expect(await sameContent(lake, 'x', 'y')).to.equal(true);
    expect(await sameContent(lake, 'x', 'z')).to.equal(false);
    expect(await sameContent(lake, 'x', 'w')).to.equal(false);
    expect(await sameContent(lake, 'w', 'x')).to.equal(false);
    expect(await sameContent(lake, 'e', 'e')).to.equal(true);
    expect(await sameContent(lake, 'e', 'x')).to.equal(false);
  });

  it('the same bytes re-uploaded as multipart (another ETag) are the loaded file, by content; a corrected file is not', async () => {
    const lake = s3Lake();
    const fp = lake.put('streams/a.csv', A);
    const ledger = await ledgerWith('streams/a.csv', fp, A.length, createHash('sha256').update(A).digest('hex'));
    await archiveLoaded(lake, ledger, layout);
    const mp = lake.putMultipart('streams/a.csv', A);
    expect(mp).to.not.equal(fp);

    const matcher = new FileMatcher(lake, layout, await ledger.readLedger());
    const [obj] = await lake.list('streams/', ['streams/archived/']);
    expect((await matcher.match(obj))?.fingerprint).to.equal(fp);
    const plan = await planPending([obj], matcher, ['hourly', 'genre']);
    expect(plan.pending).to.deep.equal([]);
    expect(plan.alreadyLoaded.map((p) => p.entry.fingerprint)).to.deep.equal([fp]);

    // Archive finds the loaded bytes in the archive already: it only removes the re-delivered copy.
    const done = await archiveLoaded(lake, ledger, layout);
    expect(done).to.deep.equal([{ from: 'streams/a.csv', to: 'streams/archived/a.csv', renamed: false }]);
    expect(lake.keys()).to.deep.equal(['streams/archived/a.csv']);
    expect(await ledger.readLedger()).to.have.length(1);

    // Same key, same size, other bytes: a different file.
    lake.putMultipart('streams/a.csv', A.replace('u1', 'u9'));
    const [other] = await lake.list('streams/', ['streams/archived/']);
    expect(await new FileMatcher(lake, layout, await ledger.readLedger()).match(other)).to.equal(undefined);
  });

  it('hashes only an object whose key the ledger holds under another fingerprint of the same size', async () => {
    const lake = s3Lake();
    const ledger = await ledgerWith('streams/a.csv', 'old', A.length + 3, 'x');
    lake.put('streams/a.csv', A);
    lake.put('streams/b.csv', A);
    const objs = await lake.list('streams/');
    const matcher = new FileMatcher(lake, layout, await ledger.readLedger());
    for (const o of objs) expect(await matcher.match(o)).to.equal(undefined);
    expect(lake.reads).to.deep.equal([]);
  });

  it('a ledger row from before content hashes is matched by comparing with its copy in the lake', async () => {
    const lake = s3Lake();
    const fp = lake.put('streams/a.csv', A);
    const ledger = await ledgerWith('streams/a.csv', fp, A.length);
    await archiveLoaded(lake, ledger, layout);
    lake.putMultipart('streams/a.csv', A);
    const [obj] = await lake.list('streams/', ['streams/archived/']);
    expect((await new FileMatcher(lake, layout, await ledger.readLedger()).match(obj))?.fingerprint).to.equal(fp);
  });

  it('findTwins: rows of one key with one content hash or one archived object; the earliest run is kept', () => {
    const base = { size: 1, rows: 1, dates: ['2024-06-01'], tables: ['hourly', 'genre'] as ('hourly' | 'genre')[] };
    const groups = findTwins([
      { ...base, fileKey: 'streams/a.csv', fingerprint: 'f2', runId: 'r2', archivedKey: 'streams/archived/a.csv' },
      { ...base, fileKey: 'streams/a.csv', fingerprint: 'f1', runId: 'r1', archivedKey: 'streams/archived/a.csv' },
      { ...base, fileKey: 'streams/a.csv', fingerprint: 'f3', runId: 'r3', archivedKey: 'streams/archived/a~1.csv' },
      { ...base, fileKey: 'streams/b.csv', fingerprint: 'g1', runId: 'r1', archivedKey: null, contentHash: 'h' },
      { ...base, fileKey: 'streams/b.csv', fingerprint: 'g2', runId: 'r2', archivedKey: null, contentHash: 'h' },
      { ...base, fileKey: 'streams/c.csv', fingerprint: 'k1', runId: 'r1', archivedKey: null, contentHash: 'h' },
    ]);
    expect(groups.map((g) => [g.keep.fingerprint, g.twins.map((t) => t.fingerprint)])).to.deep.equal([
      ['f1', ['f2']],
      ['g1', ['g2']],
    ]);
  });
});
