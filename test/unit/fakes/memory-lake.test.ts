// The memory lake keeps the Lake port's promises (the shared contract, which LocalLake and
// S3Lake pass too), plus what only a fake has: chunk sizes, S3-style ETags, failures on demand.

import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';

import { expect } from 'chai';

import { isMkpiError, MkpiError } from '../../../lib/domain/errors.js';
import type { LakeObject } from '../../../lib/domain/lake.js';
import { MemoryLake } from '../../support/fakes/memory-lake.js';
import { describeLakeContract } from '../../support/fakes/lake-contract.js';

async function readAll(stream: Readable): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return chunks;
}

async function failure(p: Promise<unknown>): Promise<MkpiError> {
  try {
    await p;
  } catch (err) {
    if (isMkpiError(err)) return err;
    throw err;
  }
  throw new Error('expected a failure');
}

describeLakeContract('MemoryLake', async () => ({ lake: new MemoryLake(), close: async () => undefined }));
describeLakeContract('MemoryLake, S3-style (content-MD5 ETags, copies with new ETags, 1-byte chunks)', async () => ({
  lake: new MemoryLake({ fingerprints: 'content-md5', copies: 'new', chunkSizes: [1] }),
  close: async () => undefined,
}));

describe('MemoryLake (what only the fake does)', () => {
  it('gives every write a new fingerprint by default, the same bytes included', async () => {
    const lake = new MemoryLake();
    const f1 = lake.put('a.csv', 'abc');
    const f2 = lake.put('a.csv', 'abc');
    expect(f1).to.not.equal(f2);
    await lake.write('a.csv', Readable.from([Buffer.from('abc')]));
    const st = (await lake.stat('a.csv'))!;
    expect([f1, f2]).to.not.include(st.fingerprint);
  });

  it("with fingerprints 'content-md5', gives a single-part upload its MD5 as ETag and a multipart one a '-N' ETag", async () => {
    const lake = new MemoryLake({ fingerprints: 'content-md5' });
    const md5 = createHash('md5').update('abc').digest('hex');
    expect(lake.put('a', 'abc')).to.equal(md5);
    await lake.write('b', Readable.from([Buffer.from('abc')]));
    expect(lake.fingerprintOf('b')).to.equal(md5);
    const mp = lake.putMultipart('c', 'abc', 3);
    expect(mp).to.match(/^[0-9a-f]{32}-3$/);
    expect(lake.putMultipart('d', 'abc', 3)).to.equal(mp);
    expect(lake.putMultipart('e', 'abd', 3)).to.not.equal(mp);
  });

  it('reads in the configured chunks, a snapshot of the bytes when the read began', async () => {
    const lake = new MemoryLake({ chunkSizes: [2, 3] });
    lake.put('a', 'abcdefg');
    const first = await lake.read('a');
    lake.put('a', 'changed');
    expect((await readAll(first)).map(String)).to.deep.equal(['ab', 'cd', 'ef', 'g']);
    expect((await readAll(await lake.read('a'))).map(String)).to.deep.equal(['cha', 'nge', 'd']);
    expect(lake.reads).to.deep.equal(['a', 'a']);
  });

  it('refuses to read a missing object or with an aborted signal, and stops a read that is aborted', async () => {
    const lake = new MemoryLake({ chunkSizes: [1] });
    lake.put('a', 'abcdef');
    expect((await failure(lake.read('nope'))).code).to.equal('MKPI_NO_INPUT');
    const aborted = AbortSignal.abort();
    expect((await failure(lake.read('a', aborted))).code).to.equal('MKPI_INTERRUPTED');
    const controller = new AbortController();
    const stream = await lake.read('a', controller.signal);
    const err = await (async () => {
      for await (const _ of stream) controller.abort();
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isMkpiError(err) && err.code).to.equal('MKPI_INTERRUPTED');
  });

  describe('moveNoOverwrite', () => {
    it("gives the copy the source's fingerprint by default (a hard link, a single-part S3 copy)", async () => {
      const lake = new MemoryLake();
      const fp = lake.put('s/a.csv', 'abc');
      const seen: { copy: LakeObject; source: boolean }[] = [];
      const outcome = await lake.moveNoOverwrite('s/a.csv', 'arch/a.csv', {
        expectFingerprint: fp,
        afterCopy: (copy) => void seen.push({ copy, source: lake.has('s/a.csv') }),
      });
      expect(outcome).to.equal('moved');
      expect(seen).to.deep.equal([{ copy: { key: 'arch/a.csv', size: 3, fingerprint: fp }, source: true }]);
      expect(lake.keys()).to.deep.equal(['arch/a.csv']);
    });

    it('gives the copy a new fingerprint when told to, as S3 does for multipart objects', async () => {
      const lake = new MemoryLake({ copies: 'new' });
      const fp = lake.put('s/a.csv', 'abc');
      let copyFp = '';
      expect(await lake.moveNoOverwrite('s/a.csv', 'arch/a.csv', { afterCopy: (c) => void (copyFp = c.fingerprint) })).to.equal('moved');
      expect(copyFp).to.not.equal(fp);
      expect(lake.fingerprintOf('arch/a.csv')).to.equal(copyFp);
    });
  });

  describe('failOn', () => {
    it('fails one operation for one key, as many times as asked, then works; heal() clears the rest', async () => {
      const lake = new MemoryLake();
      lake.put('a', 'x');
      lake.put('b', 'y');
      lake.failOn('stat', 'a', { times: 2 }).failOn('list');
      expect((await failure(lake.stat('a'))).code).to.equal('MKPI_LAKE_UNAVAILABLE');
      expect(await lake.stat('b')).to.not.equal(undefined);
      expect((await failure(lake.stat('a'))).code).to.equal('MKPI_LAKE_UNAVAILABLE');
      expect(await lake.stat('a')).to.not.equal(undefined);
      expect((await failure(lake.list(''))).code).to.equal('MKPI_LAKE_UNAVAILABLE');
      lake.heal();
      expect(await lake.list('')).to.have.length(2);
    });

    it('throws the error it is given, for keys a pattern matches', async () => {
      const lake = new MemoryLake();
      lake.put('streams/a.csv', 'x');
      lake.failOn('write', /^rejects\//, { error: new MkpiError('MKPI_CONFIG', 'denied') });
      expect((await failure(lake.write('rejects/r.csv', Readable.from(['x'])))).code).to.equal('MKPI_CONFIG');
      await lake.write('other.csv', Readable.from([Buffer.from('x')]));
    });

    it("'mid-read' breaks the stream after its first chunk", async () => {
      const lake = new MemoryLake({ chunkSizes: [2] });
      lake.put('a', 'abcdef');
      lake.failOn('mid-read', 'a');
      const got: string[] = [];
      const err = await (async () => {
        for await (const c of await lake.read('a')) got.push(String(c));
      })().catch((e: unknown) => e);
      expect(got).to.deep.equal(['ab']);
      expect(isMkpiError(err) && err.code).to.equal('MKPI_LAKE_UNAVAILABLE');
    });

    it("'move' fails before anything moves; 'move-delete' after the copy and afterCopy, leaving both", async () => {
      const lake = new MemoryLake();
      lake.put('s/a.csv', 'abc');
      lake.failOn('move', 's/a.csv', { times: 1 });
      expect((await failure(lake.moveNoOverwrite('s/a.csv', 'arch/a.csv'))).code).to.equal('MKPI_LAKE_UNAVAILABLE');
      expect(lake.keys()).to.deep.equal(['s/a.csv']);
      lake.failOn('move-delete', 's/a.csv', { times: 1 });
      let copied = false;
      const err = await failure(lake.moveNoOverwrite('s/a.csv', 'arch/a.csv', { afterCopy: () => void (copied = true) }));
      expect(err.code).to.equal('MKPI_ARCHIVE_FAILED');
      expect(copied).to.equal(true);
      expect(lake.keys()).to.deep.equal(['arch/a.csv', 's/a.csv']);
    });
  });
});
