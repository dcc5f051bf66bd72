// What every Lake (lib/domain/lake.ts) must do, as mocha tests any implementation can run: the
// memory fake runs them in test/unit/fakes/memory-lake.test.ts; LocalLake passes them too (give
// it a harness on an empty temp folder), which is what makes the fake's answers worth trusting.

import { Readable } from 'node:stream';

import { expect } from 'chai';

import type { Lake, LakeObject } from '../../../lib/domain/lake.js';
import { failure } from './warehouse-contract.js';

export interface LakeSubject {
  /** An empty lake of its own. */
  lake: Lake;
  close(): Promise<void>;
}

async function put(lake: Lake, key: string, text: string): Promise<LakeObject> {
  await lake.write(key, Readable.from([Buffer.from(text)]));
  return (await lake.stat(key))!;
}

async function text(lake: Lake, key: string): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of await lake.read(key)) parts.push(Buffer.isBuffer(c) ? c : Buffer.from(c as string));
  return Buffer.concat(parts).toString('utf8');
}

async function keys(lake: Lake, prefix = '', exclude: string[] = []): Promise<string[]> {
  return (await lake.list(prefix, exclude)).map((o) => o.key);
}

export function describeLakeContract(name: string, open: () => Promise<LakeSubject>): void {
  describe(`the Lake contract: ${name}`, () => {
    const opened: LakeSubject[] = [];
    const subject = async (): Promise<Lake> => {
      const s = await open();
      opened.push(s);
      return s.lake;
    };
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
    });

    it('writes and reads objects, and stat describes them (undefined when missing)', async () => {
      const lake = await subject();
      const o = await put(lake, 'streams/a.csv', 'abc');
      expect(o).to.include({ key: 'streams/a.csv', size: 3 });
      expect(o.fingerprint).to.be.a('string').and.not.equal('');
      expect(await text(lake, 'streams/a.csv')).to.equal('abc');
      expect(await lake.stat('streams/none.csv')).to.equal(undefined);
      expect((await failure(lake.read('streams/none.csv'))).code).to.equal('MKPI_NO_INPUT');
    });

    it('lists every object under a prefix, sorted by code point, never one under an excluded prefix', async () => {
      const lake = await subject();
      for (const k of [
        'streams/b.csv',
        'streams/\u{1F600}.csv',
        'streams/\uFFFD.csv',
        'streams/archived/a.csv',
        'streams/a.csv',
        'songs.csv',
      ]) {
        await put(lake, k, 'x');
      }
      expect(await keys(lake, 'streams/', ['streams/archived/'])).to.deep.equal([
        'streams/a.csv',
        'streams/b.csv',
        'streams/\uFFFD.csv',
        'streams/\u{1F600}.csv',
      ]);
      expect(await keys(lake, 'streams/archived/')).to.deep.equal(['streams/archived/a.csv']);
      expect(await keys(lake, 'nothing/')).to.deep.equal([]);
      const [a] = await lake.list('streams/a');
      expect(a).to.deep.equal(await lake.stat('streams/a.csv'));
    });

    it('gives other bytes under a key another fingerprint', async () => {
      const lake = await subject();
      const first = await put(lake, 'a.csv', 'one');
      const second = await put(lake, 'a.csv', 'three');
      expect(second.fingerprint).to.not.equal(first.fingerprint);
    });

    it('moves: copy, afterCopy with the copy while the source is still there, then delete the source', async () => {
      const lake = await subject();
      const src = await put(lake, 'streams/a.csv', 'abc');
      const seen: { copy: LakeObject; source: boolean }[] = [];
      const outcome = await lake.moveNoOverwrite('streams/a.csv', 'streams/archived/a.csv', {
        expectFingerprint: src.fingerprint,
        afterCopy: async (copy) => void seen.push({ copy, source: (await lake.stat('streams/a.csv')) !== undefined }),
      });
      expect(outcome).to.equal('moved');
      expect(seen).to.have.length(1);
      expect(seen[0].source).to.equal(true);
      expect(seen[0].copy).to.deep.equal(await lake.stat('streams/archived/a.csv'));
      expect(await keys(lake)).to.deep.equal(['streams/archived/a.csv']);
      expect(await text(lake, 'streams/archived/a.csv')).to.equal('abc');
    });

    it("never overwrites ('exists'), never moves another version ('changed'), changing nothing either way", async () => {
      const lake = await subject();
      await put(lake, 'streams/a.csv', 'new');
      await put(lake, 'streams/archived/a.csv', 'old');
      expect(await lake.moveNoOverwrite('streams/a.csv', 'streams/archived/a.csv')).to.equal('exists');
      expect(await lake.moveNoOverwrite('streams/a.csv', 'streams/archived/b.csv', { expectFingerprint: 'not-this-one' })).to.equal(
        'changed',
      );
      expect(await keys(lake)).to.deep.equal(['streams/a.csv', 'streams/archived/a.csv']);
      expect(await text(lake, 'streams/archived/a.csv')).to.equal('old');
      expect(await text(lake, 'streams/a.csv')).to.equal('new');
      expect((await failure(lake.moveNoOverwrite('streams/none.csv', 'streams/archived/none.csv'))).code).to.equal('MKPI_NO_INPUT');
    });

    it('keeps the source (and the complete copy) when afterCopy throws', async () => {
      const lake = await subject();
      await put(lake, 'streams/a.csv', 'abc');
      const err = await lake
        .moveNoOverwrite('streams/a.csv', 'streams/archived/a.csv', {
          afterCopy: () => {
            throw new Error('ledger down');
          },
        })
        .catch((e: unknown) => e);
      expect(String(err)).to.contain('ledger down');
      expect(await text(lake, 'streams/a.csv')).to.equal('abc');
      expect(await text(lake, 'streams/archived/a.csv')).to.equal('abc');
    });

    it('removes quietly when the object is already gone', async () => {
      const lake = await subject();
      await put(lake, 'a.csv', 'x');
      await lake.remove('a.csv');
      await lake.remove('a.csv');
      expect(await keys(lake)).to.deep.equal([]);
    });

    it('refuses keys that leave the root, and stops on an aborted signal', async () => {
      const lake = await subject();
      expect((await failure(lake.stat('../x'))).code).to.equal('MKPI_CONFIG');
      await put(lake, 'a.csv', 'x');
      expect((await failure(lake.read('a.csv', AbortSignal.abort()))).code).to.equal('MKPI_INTERRUPTED');
      expect((await failure(lake.write('b.csv', Readable.from(['x']), AbortSignal.abort()))).code).to.equal('MKPI_INTERRUPTED');
      expect(await lake.stat('b.csv')).to.equal(undefined);
    });
  });
}
