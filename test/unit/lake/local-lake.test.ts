import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';

import { expect } from 'chai';

import { MkpiError } from '../../../lib/domain/errors.js';
import { assertSafeKey, compareKeys } from '../../../lib/adapters/lake/keys.js';
import { LocalLake } from '../../../lib/adapters/lake/local.js';

async function expectCode(promise: Promise<unknown>, code: string): Promise<MkpiError> {
  try {
    await promise;
  } catch (err) {
    expect(err, String(err)).to.be.instanceOf(MkpiError);
    expect((err as MkpiError).code, (err as Error).message).to.equal(code);
    return err as MkpiError;
  }
  throw new Error(`expected ${code}, got success`);
}

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Every file under dir, relative, for "nothing else was touched" checks. */
async function tree(dir: string): Promise<string[]> {
  const entries = await fsp.readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => !e.isDirectory())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

describe('LocalLake', () => {
  let tmp: string;
  let root: string;
  let lake: LocalLake;

  async function put(key: string, content: string): Promise<void> {
    const file = path.join(root, ...key.split('/'));
    await fsp.mkdir(path.dirname(file), { recursive: true });
    await fsp.writeFile(file, content);
  }

  beforeEach(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'mkpi-local-lake-'));
    root = path.join(tmp, 'lake');
    await fsp.mkdir(root);
    lake = new LocalLake(root);
  });

  afterEach(async () => {
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  describe('list', () => {
    it('returns nested keys with "/" separators, sorted, and never the archive', async () => {
      await put('songs.csv', 's');
      await put('streams/b.csv', 'bb');
      await put('streams/a.csv', 'a');
      await put('streams/2024/01/nested.csv', 'n');
      await put('streams/archived/a.csv', 'old');
      await put('streams/archived/2023/deep.csv', 'old');
      await put('streams/archivedX.csv', 'not in the archive folder');
      const keys = (await lake.list('streams/', ['streams/archived/'])).map((o) => o.key);
      expect(keys).to.deep.equal(['streams/2024/01/nested.csv', 'streams/a.csv', 'streams/archivedX.csv', 'streams/b.csv']);
    });

    it('reports size and a size:mtime fingerprint', async () => {
      await put('streams/a.csv', 'hello');
      const st = await fsp.stat(path.join(root, 'streams', 'a.csv'));
      const [obj] = await lake.list('streams/');
      expect(obj).to.deep.equal({ key: 'streams/a.csv', size: 5, fingerprint: `5:${Math.floor(st.mtimeMs)}` });
      expect(await lake.stat('streams/a.csv')).to.deep.equal(obj);
      expect(await lake.stat('streams/none.csv')).to.equal(undefined);
      expect(await lake.stat('streams')).to.equal(undefined);
    });

    it('sorts by code point, like S3', async () => {
      await put('s/a\u{FFFD}.csv', '1');
      await put('s/a\u{1F600}.csv', '2');
      await put('s/a.csv', '3');
      const keys = (await lake.list('s/')).map((o) => o.key);
      expect(keys).to.deep.equal(['s/a.csv', 's/a\u{FFFD}.csv', 's/a\u{1F600}.csv']);
      expect(compareKeys('a\u{FFFD}', 'a\u{1F600}')).to.be.lessThan(0);
    });

    it('takes a prefix that is not a folder name, and several exclusions', async () => {
      await put('streams/part-1.csv', '1');
      await put('streams/part-2.csv', '2');
      await put('streams/other.csv', '3');
      await put('streams/part-dir/x.csv', '4');
      expect((await lake.list('streams/part-', ['streams/part-2'])).map((o) => o.key)).to.deep.equal([
        'streams/part-1.csv',
        'streams/part-dir/x.csv',
      ]);
    });

    it('lists only regular files (and symlinks to files), not folders or folder links', async () => {
      await put('streams/a.csv', 'a');
      await put('elsewhere/linked.csv', 'l');
      await fsp.mkdir(path.join(root, 'streams', 'empty'));
      await fsp.symlink(path.join(root, 'elsewhere', 'linked.csv'), path.join(root, 'streams', 'link.csv'));
      await fsp.symlink(path.join(root, 'elsewhere'), path.join(root, 'streams', 'dirlink'));
      await fsp.symlink(path.join(root, 'missing.csv'), path.join(root, 'streams', 'dangling.csv'));
      expect((await lake.list('streams/')).map((o) => o.key)).to.deep.equal(['streams/a.csv', 'streams/link.csv']);
    });

    it('an absent prefix folder holds nothing; an absent root is MKPI_NO_INPUT', async () => {
      expect(await lake.list('streams/')).to.deep.equal([]);
      await expectCode(new LocalLake(path.join(tmp, 'nope')).list('streams/'), 'MKPI_NO_INPUT');
    });

    it('refuses prefixes that climb out of the root', async () => {
      await expectCode(lake.list('../'), 'MKPI_CONFIG');
      await expectCode(lake.list('streams/', ['/abs']), 'MKPI_CONFIG');
    });
  });

  describe('read', () => {
    it('streams the bytes of a file', async () => {
      await put('streams/a.csv', 'a,b\n1,2\n');
      expect(await readAll(await lake.read('streams/a.csv'))).to.equal('a,b\n1,2\n');
    });

    it('a missing file (or a folder) is MKPI_NO_INPUT, before any stream exists', async () => {
      await expectCode(lake.read('streams/missing.csv'), 'MKPI_NO_INPUT');
      await fsp.mkdir(path.join(root, 'streams'));
      await expectCode(lake.read('streams'), 'MKPI_NO_INPUT');
      await expectCode(lake.read('songs.csv/x'), 'MKPI_NO_INPUT');
    });

    it('an abort ends the stream with MKPI_INTERRUPTED', async () => {
      await put('big.csv', 'x'.repeat(4 * 1024 * 1024));
      const controller = new AbortController();
      const stream = await lake.read('big.csv', controller.signal);
      controller.abort();
      await expectCode(readAll(stream), 'MKPI_INTERRUPTED');
    });
  });

  describe('write', () => {
    it('creates folders and writes the bytes, leaving no temp file', async () => {
      await lake.write('rejects/2024/run.csv', Readable.from(['a,', 'b\n', Buffer.from('1,2\n')]));
      expect(await fsp.readFile(path.join(root, 'rejects', '2024', 'run.csv'), 'utf8')).to.equal('a,b\n1,2\n');
      expect(await tree(root)).to.deep.equal([path.join('rejects', '2024', 'run.csv')]);
    });

    it('replaces an existing object in one step', async () => {
      await put('rejects/run.csv', 'old');
      await lake.write('rejects/run.csv', Readable.from(['new']));
      expect(await fsp.readFile(path.join(root, 'rejects', 'run.csv'), 'utf8')).to.equal('new');
    });

    it('a failing body leaves neither the object nor a temp file, and the old object stays', async () => {
      await put('rejects/run.csv', 'old');
      const failing = new Readable({
        read() {
          this.destroy(new Error('producer failed'));
        },
      });
      let caught: unknown;
      await lake.write('rejects/run.csv', failing).catch((err: unknown) => {
        caught = err;
      });
      expect((caught as Error).message).to.equal('producer failed');
      expect(await fsp.readFile(path.join(root, 'rejects', 'run.csv'), 'utf8')).to.equal('old');
      expect(await tree(root)).to.deep.equal([path.join('rejects', 'run.csv')]);
    });

    it('never writes outside the root', async () => {
      for (const key of [
        '../escape.csv',
        'rejects/../../escape.csv',
        '/tmp/escape.csv',
        'rejects\\..\\..\\escape.csv',
        'C:/escape.csv',
        '',
      ]) {
        await expectCode(lake.write(key, Readable.from(['x'])), 'MKPI_CONFIG');
      }
      expect(await tree(tmp)).to.deep.equal([]);
    });

    it('a temp file being written is not listed', async () => {
      await put('rejects/.run.csv.mkpi-tmp-abc', 'partial');
      await put('rejects/done.csv', 'x');
      expect((await lake.list('rejects/')).map((o) => o.key)).to.deep.equal(['rejects/done.csv']);
    });
  });

  describe('moveNoOverwrite', () => {
    it('moves a file and keeps its fingerprint', async () => {
      await put('streams/a.csv', 'content');
      const before = await lake.stat('streams/a.csv');
      expect(await lake.moveNoOverwrite('streams/a.csv', 'streams/archived/a.csv')).to.equal('moved');
      expect(await lake.stat('streams/a.csv')).to.equal(undefined);
      expect(await lake.stat('streams/archived/a.csv')).to.deep.equal({ ...before, key: 'streams/archived/a.csv' });
    });

    it("returns 'exists' (EEXIST) and touches nothing when the target exists", async () => {
      await put('streams/a.csv', 'newcomer');
      await put('streams/archived/a.csv', 'archived long ago');
      const [src, dst] = [await lake.stat('streams/a.csv'), await lake.stat('streams/archived/a.csv')];
      expect(await lake.moveNoOverwrite('streams/a.csv', 'streams/archived/a.csv')).to.equal('exists');
      expect(await lake.stat('streams/a.csv')).to.deep.equal(src);
      expect(await lake.stat('streams/archived/a.csv')).to.deep.equal(dst);
      expect(await fsp.readFile(path.join(root, 'streams', 'archived', 'a.csv'), 'utf8')).to.equal('archived long ago');
    });

    it('a missing source is MKPI_NO_INPUT', async () => {
      await expectCode(lake.moveNoOverwrite('streams/none.csv', 'streams/archived/none.csv'), 'MKPI_NO_INPUT');
    });

    it('refuses keys that climb out of the root, on either side', async () => {
      await put('streams/a.csv', 'x');
      await expectCode(lake.moveNoOverwrite('streams/a.csv', '../a.csv'), 'MKPI_CONFIG');
      await expectCode(lake.moveNoOverwrite('../../etc/passwd', 'streams/archived/passwd'), 'MKPI_CONFIG');
      expect(await tree(tmp)).to.deep.equal([path.join('lake', 'streams', 'a.csv')]);
    });

    it('copies, verifies and keeps the mtime when the archive is on another filesystem', async function () {
      const shm = '/dev/shm';
      if (!fs.existsSync(shm) || fs.statSync(shm).dev === fs.statSync(tmp).dev) this.skip();
      const other = await fsp.mkdtemp(path.join(shm, 'mkpi-archive-'));
      try {
        await put('streams/a.csv', 'cross-device content');
        await put('streams/b.csv', 'newcomer');
        await fsp.mkdir(path.join(root, 'streams'), { recursive: true });
        // The archive folder is a link to another filesystem: link() fails with EXDEV.
        await fsp.symlink(other, path.join(root, 'streams', 'archived'));
        await fsp.writeFile(path.join(other, 'b.csv'), 'already archived');
        // A whole-millisecond mtime is where a naive utimes(Date) lands one millisecond early.
        const exact = new Date('2024-05-06T07:08:09.123Z');
        await fsp.utimes(path.join(root, 'streams', 'a.csv'), exact, exact);
        const before = await lake.stat('streams/a.csv');
        expect(await lake.moveNoOverwrite('streams/a.csv', 'streams/archived/a.csv')).to.equal('moved');
        expect(await lake.stat('streams/a.csv')).to.equal(undefined);
        expect(await lake.stat('streams/archived/a.csv')).to.deep.equal({ ...before, key: 'streams/archived/a.csv' });
        expect(await lake.moveNoOverwrite('streams/b.csv', 'streams/archived/b.csv')).to.equal('exists');
        expect(await fsp.readFile(path.join(other, 'b.csv'), 'utf8')).to.equal('already archived');
        expect((await fsp.readdir(other)).sort()).to.deep.equal(['a.csv', 'b.csv']);
      } finally {
        await fsp.rm(other, { recursive: true, force: true });
      }
    });
  });

  describe('remove', () => {
    it('deletes, and is quiet when the object is already gone', async () => {
      await put('streams/a.csv', 'x');
      await lake.remove('streams/a.csv');
      await lake.remove('streams/a.csv');
      expect(await lake.stat('streams/a.csv')).to.equal(undefined);
    });
  });

  describe('assertSafeKey', () => {
    it('accepts ordinary keys and refuses escaping ones', () => {
      for (const ok of ['a.csv', 'streams/archived/a.csv', 'with space/x=y+z&w.csv', '..a/b..', 'a/.../b']) {
        expect(() => assertSafeKey(ok), ok).to.not.throw();
      }
      for (const bad of ['', '/a', '\\a', '../a', 'a/../b', 'a/..', 'a\\..\\b', 'C:\\a', 'a\0b']) {
        expect(() => assertSafeKey(bad), JSON.stringify(bad)).to.throw(MkpiError);
      }
    });
  });
});
