import { createHash, randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gzipSync } from 'node:zlib';

import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { expect } from 'chai';

import { MkpiError } from '../../lib/domain/errors.js';
import { LocalLake } from '../../lib/adapters/lake/local.js';
import { encodeCopySource } from '../../lib/adapters/lake/s3/copy.js';
import type { S3Lake } from '../../lib/adapters/lake/s3/s3-lake.js';
import type { Lake } from '../../lib/domain/lake.js';
import { DEFAULT_LAYOUT } from '../../lib/domain/layout.js';
import { listStreamFiles } from '../../lib/stages/plan.js';
import { create, result } from '../../lib/stages/reduce.js';
import { loadDimensions, scanStreamFile } from '../../lib/stages/scan.js';
import { startFaultyProxy, startS3, type FaultyProxy, type TestS3 } from '../support/s3.js';

const MiB = 1024 * 1024;
const BUCKET = 'lake-bucket';
const VERBOSE = process.env['MKPI_TEST_VERBOSE'] === '1';

function sha256(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Consumes a stream, hashing it; `delayMs` per chunk simulates a slow consumer. */
async function hashStream(stream: Readable, delayMs = 0): Promise<{ hash: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  await pipeline(
    stream,
    new Writable({
      highWaterMark: 16 * 1024,
      write(chunk: Buffer, _enc, callback) {
        hash.update(chunk);
        bytes += chunk.length;
        if (delayMs > 0) setTimeout(callback, delayMs);
        else callback();
      },
    }),
  );
  return { hash: hash.digest('hex'), bytes };
}

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

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return cond();
}

function log(...args: unknown[]): void {
  if (VERBOSE) console.log('      ', ...args);
}

describe('S3Lake on s3rver', function () {
  this.timeout(120_000);
  let s3: TestS3;
  let lake: S3Lake;
  const big = randomBytes(20 * MiB);

  before(async () => {
    s3 = await startS3();
    await s3.bucket(BUCKET);
    lake = s3.lake(BUCKET, 'lake');
    await s3.putObject(BUCKET, 'lake/big/twenty.bin', big);
  });

  after(async () => {
    await s3?.stop();
  });

  describe('list', () => {
    const N = 1_100;
    before(async () => {
      const keys: string[] = [];
      for (let i = 0; i < N; i++) keys.push(`lake/streams/part-${String(i).padStart(5, '0')}.csv`);
      for (let i = 0; i < 40; i++) keys.push(`lake/streams/archived/old-${i}.csv`);
      keys.push('lake/songs.csv', 'lake/users.csv', 'lakeside/streams/x.csv', 'other/streams/y.csv');
      keys.push('lake/streams/2024/01/nested.csv', 'lake/streams/archived/2023/deep.csv');
      const started = Date.now();
      for (let i = 0; i < keys.length; i += 32) {
        await Promise.all(keys.slice(i, i + 32).map((k) => s3.putObject(BUCKET, k, `user_id,track_id,listen_time\n${k}\n`)));
      }
      log(`put ${keys.length} objects in ${Date.now() - started} ms`);
      // A console-made "folder" marker is not a file.
      await s3.putObject(BUCKET, 'lake/streams/empty-folder/', '');
    });

    it('follows pagination past 1,000 keys and never returns the archive', async () => {
      const proxy = await startFaultyProxy(s3.endpoint, { cutAfterBytes: 0, times: 0 });
      const viaProxy = s3.lake(BUCKET, 'lake', { endpoint: proxy.endpoint });
      try {
        const started = process.hrtime.bigint();
        const objects = await viaProxy.list('streams/', ['streams/archived/']);
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        log(`list of ${objects.length} keys (archive excluded): ${ms.toFixed(0)} ms, ${proxy.requests.length} requests`);
        expect(objects).to.have.length(N + 1);
        expect(objects.some((o) => o.key.startsWith('streams/archived/'))).to.equal(false);
        expect(objects.map((o) => o.key)).to.include('streams/2024/01/nested.csv');
        expect(objects.map((o) => o.key)).to.not.include('streams/empty-folder/');
        const keys = objects.map((o) => o.key);
        expect(keys).to.deep.equal([...keys].sort());
        const listCalls = proxy.requests.filter((r) => r.url.includes('list-type=2'));
        expect(listCalls.length).to.be.greaterThan(1);
        // The archive is jumped over (StartAfter past its last possible key), not paged through.
        expect(listCalls.some((r) => decodeURIComponent(r.url).includes('start-after=lake/streams/archived/'))).to.equal(true);
        const first = objects[0];
        expect(first.fingerprint).to.match(/^[0-9a-f]{32}$/);
        expect(first.size).to.be.greaterThan(0);
      } finally {
        await proxy.stop();
      }
    });

    it('lists the whole root flat when nothing is excluded, relative to the prefix', async () => {
      const started = Date.now();
      const all = await lake.list('');
      log(`flat list of ${all.length} keys: ${Date.now() - started} ms`);
      expect(all.map((o) => o.key)).to.include.members(['songs.csv', 'users.csv', 'streams/archived/old-1.csv', 'big/twenty.bin']);
      expect(all.some((o) => o.key.includes('lakeside') || o.key.includes('other/'))).to.equal(false);
      expect(all.filter((o) => o.key.startsWith('streams/archived/'))).to.have.length(41);
    });

    it('handles a prefix that is not a folder, and several exclusions', async () => {
      const some = await lake.list('streams/part-0000', ['streams/part-00001']);
      expect(some.map((o) => o.key)).to.deep.equal([
        'streams/part-00000.csv',
        ...[2, 3, 4, 5, 6, 7, 8, 9].map((i) => `streams/part-0000${i}.csv`),
      ]);
      const noArchive = await lake.list('', ['streams/archived/', 'streams/2024/']);
      expect(noArchive).to.have.length(N + 3);
    });

    it('stat reports size and ETag, undefined when missing', async () => {
      const st = await lake.stat('songs.csv');
      expect(st?.size).to.equal('user_id,track_id,listen_time\nlake/songs.csv\n'.length);
      expect(st?.fingerprint).to.match(/^[0-9a-f]{32}$/);
      expect(await lake.stat('nope.csv')).to.equal(undefined);
    });
  });

  describe('read', () => {
    it('streams a 20 MB object byte-exact', async () => {
      const started = process.hrtime.bigint();
      const { hash, bytes } = await hashStream(await lake.read('big/twenty.bin'));
      const s = Number(process.hrtime.bigint() - started) / 1e9;
      expect(bytes).to.equal(big.length);
      expect(hash).to.equal(sha256(big));

      const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'mkpi-local-'));
      try {
        await fsp.mkdir(path.join(dir, 'big'));
        await fsp.writeFile(path.join(dir, 'big', 'twenty.bin'), big);
        const local = new LocalLake(dir);
        const t0 = process.hrtime.bigint();
        const localResult = await hashStream(await local.read('big/twenty.bin'));
        const ls = Number(process.hrtime.bigint() - t0) / 1e9;
        expect(localResult.hash).to.equal(sha256(big));
        log(`read 20 MiB: s3rver ${(20 / s).toFixed(0)} MiB/s, local ${(20 / ls).toFixed(0)} MiB/s (sha256 included)`);
      } finally {
        await fsp.rm(dir, { recursive: true, force: true });
      }
    });

    it('a slow consumer still gets every byte', async () => {
      const data = randomBytes(3 * MiB);
      await s3.putObject(BUCKET, 'lake/slow.bin', data);
      const { hash } = await hashStream(await lake.read('slow.bin'), 1);
      expect(hash).to.equal(sha256(data));
    });

    it('a missing object is MKPI_NO_INPUT, a missing bucket too', async () => {
      await expectCode(lake.read('streams/missing.csv'), 'MKPI_NO_INPUT');
      const nobucket = s3.lake('no-such-bucket', 'x');
      await expectCode(nobucket.list('streams/'), 'MKPI_NO_INPUT');
      await expectCode(nobucket.read('a.csv'), 'MKPI_NO_INPUT');
    });

    it('destroying the stream midway neither hangs nor leaks the connection', async () => {
      const proxy = await startFaultyProxy(s3.endpoint, { cutAfterBytes: 0, times: 0 });
      const viaProxy = s3.lake(BUCKET, 'lake', { endpoint: proxy.endpoint });
      try {
        const stream = await viaProxy.read('big/twenty.bin');
        const first: Buffer = await new Promise((resolve, reject) => {
          stream.once('data', resolve);
          stream.once('error', reject);
        });
        expect(first.length).to.be.greaterThan(0);
        const closed = new Promise<void>((resolve) => stream.once('close', () => resolve()));
        stream.destroy();
        await closed;
        expect(await waitFor(() => proxy.inflight() === 0, 5_000), 'the proxied GET is still open').to.equal(true);
      } finally {
        await proxy.stop();
      }
    });

    it('an abort signal ends the read with MKPI_INTERRUPTED', async () => {
      const controller = new AbortController();
      const stream = await lake.read('big/twenty.bin', controller.signal);
      stream.once('data', () => controller.abort(new Error('SIGTERM')));
      await expectCode(hashStream(stream, 1), 'MKPI_INTERRUPTED');
    });
  });

  describe('read through a faulty connection', () => {
    const data = randomBytes(6 * MiB + 123);
    let proxy: FaultyProxy | undefined;

    before(async () => {
      await s3.putObject(BUCKET, 'lake/streams/cut.csv', data);
    });
    afterEach(async () => {
      await proxy?.stop();
      proxy = undefined;
    });

    for (const mode of ['reset', 'close'] as const) {
      it(`resumes with a Range request after the connection is cut (${mode})`, async () => {
        proxy = await startFaultyProxy(s3.endpoint, { cutAfterBytes: 1 * MiB + 7, mode });
        const viaProxy = s3.lake(BUCKET, 'lake', { endpoint: proxy.endpoint, maxAttempts: 1 });
        const { hash, bytes } = await hashStream(await viaProxy.read('streams/cut.csv'));
        expect(bytes).to.equal(data.length);
        expect(hash).to.equal(sha256(data));
        expect(proxy.cuts).to.equal(1);
        const gets = proxy.requests.filter((r) => r.method === 'GET');
        expect(gets).to.have.length(2);
        const m = /^bytes=(\d+)-$/.exec(gets[1].range ?? '');
        expect(m, `range header ${gets[1].range}`).to.not.equal(null);
        const offset = Number(m![1]);
        expect(offset)
          .to.be.greaterThan(0)
          .and.at.most(1 * MiB + 7);
        expect(gets[1].ifMatch).to.match(/^"[0-9a-f]{32}"$/);
        log(`${mode}: cut at ${1 * MiB + 7}, resumed from byte ${offset}`);
      });
    }

    it('survives several cuts and a slow consumer', async () => {
      proxy = await startFaultyProxy(s3.endpoint, { cutAfterBytes: 512 * 1024, times: 3 });
      const viaProxy = s3.lake(BUCKET, 'lake', { endpoint: proxy.endpoint, maxAttempts: 1, resumeDelayMs: 10 });
      const { hash } = await hashStream(await viaProxy.read('streams/cut.csv'), 1);
      expect(hash).to.equal(sha256(data));
      expect(proxy.cuts).to.equal(3);
    });

    it('gives up with MKPI_LAKE_UNAVAILABLE when every attempt is cut', async () => {
      proxy = await startFaultyProxy(s3.endpoint, { cutAfterBytes: 0, times: 1_000 });
      const viaProxy = s3.lake(BUCKET, 'lake', { endpoint: proxy.endpoint, maxAttempts: 1, readResumes: 2, resumeDelayMs: 10 });
      const err = await expectCode(hashStream(await viaProxy.read('streams/cut.csv')), 'MKPI_LAKE_UNAVAILABLE');
      expect(err.message).to.match(/resume attempts failed/);
      expect(proxy.cuts).to.equal(3);
    });

    it('refuses to stitch two versions: the object changed between attempts', async () => {
      await s3.putObject(BUCKET, 'lake/streams/changing.csv', data);
      proxy = await startFaultyProxy(s3.endpoint, {
        cutAfterBytes: 1 * MiB,
        beforeForward: async (req) => {
          if (req.headers['range']) await s3.putObject(BUCKET, 'lake/streams/changing.csv', randomBytes(data.length));
        },
      });
      const viaProxy = s3.lake(BUCKET, 'lake', { endpoint: proxy.endpoint, maxAttempts: 1, resumeDelayMs: 10 });
      await expectCode(hashStream(await viaProxy.read('streams/changing.csv')), 'MKPI_RETRY_LATER');
    });
  });

  describe('write', () => {
    it('round-trips a small body byte-exact (single PUT)', async () => {
      const body = Buffer.from('file,line,reason\n"a,b.csv",3,malformed\n');
      await lake.write('rejects/run-1.csv', Readable.from([body.subarray(0, 5), body.subarray(5)]));
      const { hash } = await hashStream(await lake.read('rejects/run-1.csv'));
      expect(hash).to.equal(sha256(body));
    });

    it('round-trips a 20 MB stream byte-exact (multipart), and reads back with the SDK too', async () => {
      const chunks: Buffer[] = [];
      for (let i = 0; i < big.length; i += 64 * 1024 + 13) chunks.push(big.subarray(i, i + 64 * 1024 + 13));
      const started = process.hrtime.bigint();
      await lake.write('rejects/big.bin', Readable.from(chunks));
      const s = Number(process.hrtime.bigint() - started) / 1e9;
      log(`write 20 MiB (multipart, 8 MiB parts): ${(20 / s).toFixed(0)} MiB/s`);
      const resp = await s3.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'lake/rejects/big.bin' }));
      const { hash, bytes } = await hashStream(resp.Body as Readable);
      expect(bytes).to.equal(big.length);
      expect(hash).to.equal(sha256(big));
    });

    it('writes an empty body', async () => {
      await lake.write('rejects/empty.csv', Readable.from([]));
      expect((await lake.stat('rejects/empty.csv'))?.size).to.equal(0);
    });

    it('leaves nothing behind when the body fails', async () => {
      const failing = new Readable({
        read() {
          this.push(randomBytes(MiB));
          if (Math.random() < 0.2) this.destroy(new Error('upstream broke'));
        },
      });
      let caught: unknown;
      await lake.write('rejects/broken.bin', failing).catch((err: unknown) => {
        caught = err;
      });
      expect((caught as Error | undefined)?.message).to.equal('upstream broke');
      expect(await lake.stat('rejects/broken.bin')).to.equal(undefined);
    });

    it('an abort mid-upload is MKPI_INTERRUPTED and leaves no object', async () => {
      const controller = new AbortController();
      let sent = 0;
      const body = new Readable({
        read() {
          sent += 1;
          if (sent === 12) controller.abort(new Error('SIGTERM'));
          this.push(sent > 40 ? null : randomBytes(MiB));
        },
      });
      await expectCode(lake.write('rejects/aborted.bin', body, controller.signal), 'MKPI_INTERRUPTED');
      expect(await lake.stat('rejects/aborted.bin')).to.equal(undefined);
    });

    it('remove deletes, and is quiet when the object is already gone', async () => {
      await lake.write('rejects/gone.csv', Readable.from(['x']));
      await lake.remove('rejects/gone.csv');
      await lake.remove('rejects/gone.csv');
      expect(await lake.stat('rejects/gone.csv')).to.equal(undefined);
    });

    it('overwrites on write (a rerun replaces its rejects file)', async () => {
      await lake.write('rejects/again.csv', Readable.from(['one']));
      await lake.write('rejects/again.csv', Readable.from(['two']));
      const { bytes } = await hashStream(await lake.read('rejects/again.csv'));
      expect(bytes).to.equal(3);
    });
  });

  describe('moveNoOverwrite', () => {
    async function etag(key: string): Promise<string | undefined> {
      const head = await s3.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
      return head.ETag;
    }

    it('copies, verifies, deletes the source', async () => {
      await s3.putObject(BUCKET, 'lake/streams/m1.csv', 'a,b\n1,2\n');
      const before = await lake.stat('streams/m1.csv');
      expect(await lake.moveNoOverwrite('streams/m1.csv', 'streams/archived/m1.csv')).to.equal('moved');
      expect(await lake.stat('streams/m1.csv')).to.equal(undefined);
      const after = await lake.stat('streams/archived/m1.csv');
      expect(after).to.deep.equal({ ...before, key: 'streams/archived/m1.csv' });
    });

    it("returns 'exists' and changes nothing when the target exists", async () => {
      await s3.putObject(BUCKET, 'lake/streams/m2.csv', 'new content\n');
      await s3.putObject(BUCKET, 'lake/streams/archived/m2.csv', 'old content\n');
      const [src, dst] = [await etag('lake/streams/m2.csv'), await etag('lake/streams/archived/m2.csv')];
      expect(await lake.moveNoOverwrite('streams/m2.csv', 'streams/archived/m2.csv')).to.equal('exists');
      expect(await etag('lake/streams/m2.csv')).to.equal(src);
      expect(await etag('lake/streams/archived/m2.csv')).to.equal(dst);
    });

    it('a missing source is MKPI_NO_INPUT', async () => {
      await expectCode(lake.moveNoOverwrite('streams/none.csv', 'streams/archived/none.csv'), 'MKPI_NO_INPUT');
    });

    it('moves the 20 MB object', async () => {
      await s3.putObject(BUCKET, 'lake/streams/big.bin', big);
      expect(await lake.moveNoOverwrite('streams/big.bin', 'streams/archived/big.bin')).to.equal('moved');
      const { hash } = await hashStream(await lake.read('streams/archived/big.bin'));
      expect(hash).to.equal(sha256(big));
    });
  });

  describe('keys with spaces, =, +, &', () => {
    const names = [
      'with space.csv',
      'a=b.csv',
      'c+d.csv',
      'e&f.csv',
      'all of=them+&.csv',
      'ünï cødé.csv',
      'q?x#y;z,$@:.csv',
      '%41 percent.csv',
    ];

    before(async () => {
      for (const n of names) await s3.putObject(BUCKET, `lake/odd/${n}`, `content of ${n}\n`);
    });

    it('lists, reads and moves them', async () => {
      const listed = await lake.list('odd/', ['odd/archived/']);
      expect(listed.map((o) => o.key)).to.have.members(names.map((n) => `odd/${n}`));
      for (const n of names) {
        const { bytes } = await hashStream(await lake.read(`odd/${n}`));
        expect(bytes, n).to.equal(Buffer.byteLength(`content of ${n}\n`));
        expect(await lake.moveNoOverwrite(`odd/${n}`, `odd/archived/${n}`), n).to.equal('moved');
        expect(await lake.stat(`odd/${n}`), n).to.equal(undefined);
        expect((await lake.stat(`odd/archived/${n}`))?.size, n).to.equal(Buffer.byteLength(`content of ${n}\n`));
      }
      expect(await lake.list('odd/', ['odd/archived/'])).to.have.length(0);
    });

    it('encodes the copy source for AWS (+ as %2B) and for decodeURI servers', () => {
      expect(encodeCopySource('b', 'x/c+d e=&.csv', 'aws')).to.equal('b/x/c%2Bd%20e%3D%26.csv');
      expect(encodeCopySource('b', 'x/c+d e=&.csv', 'uri')).to.equal('b/x/c+d%20e=&.csv');
    });
  });

  describe('stream files of a partitioned lake', () => {
    const body = 'user_id,track_id,listen_time\n';
    const keys = [
      'streams/a.csv',
      'streams/dt=2024-06-01/part-0.csv.gz',
      'streams/dt=2024-06-01/part-1.CSV',
      'streams/dt=2024-06-02/h=00/part-0.csv',
      'streams/_temporary/0/part-0.csv',
      'streams/notes.txt',
      'streams/retracted/dt=2024-06-01/x.csv',
      ...Array.from({ length: 30 }, (_, i) => `streams/archived/dt=2024-06-01/old-${i}.csv.gz`),
    ];

    before(async () => {
      for (const k of keys) await s3.putObject(BUCKET, `layouts/${k}`, k.endsWith('.gz') ? gzipSync(body) : body);
      await s3.putObject(BUCKET, 'layouts/streams/dt=2024-06-02/', '');
    });

    it('lists nested stream files only when recursive, and jumps over the archive and the retracted files', async () => {
      const proxy = await startFaultyProxy(s3.endpoint, { cutAfterBytes: 0, times: 0 });
      const viaProxy = s3.lake(BUCKET, 'layouts', { endpoint: proxy.endpoint });
      try {
        const flat = await listStreamFiles(viaProxy, DEFAULT_LAYOUT);
        expect(flat.files.map((f) => f.key)).to.deep.equal(['streams/a.csv']);
        expect(flat.ignored).to.deep.equal([
          'streams/_temporary/0/part-0.csv',
          'streams/dt=2024-06-01/part-0.csv.gz',
          'streams/dt=2024-06-01/part-1.CSV',
          'streams/dt=2024-06-02/h=00/part-0.csv',
          'streams/notes.txt',
        ]);
        const deep = await listStreamFiles(viaProxy, { ...DEFAULT_LAYOUT, recursive: true });
        expect(deep.files.map((f) => f.key)).to.deep.equal([
          'streams/a.csv',
          'streams/dt=2024-06-01/part-0.csv.gz',
          'streams/dt=2024-06-01/part-1.CSV',
          'streams/dt=2024-06-02/h=00/part-0.csv',
        ]);
        expect(deep.files[1].size).to.equal(gzipSync(body).length);
        expect(deep.ignored).to.deep.equal(['streams/_temporary/0/part-0.csv', 'streams/notes.txt']);
        const starts = proxy.requests.filter((r) => r.url.includes('list-type=2')).map((r) => decodeURIComponent(r.url));
        expect(starts.some((u) => u.includes('start-after=layouts/streams/archived/'))).to.equal(true);
        expect(starts.some((u) => u.includes('start-after=layouts/streams/retracted/'))).to.equal(true);
      } finally {
        await proxy.stop();
      }
    });

    it('reads a .csv.gz through a cut connection: the resumed bytes inflate to the same rows, hashed as stored', async () => {
      const tiny = path.join(new URL('../..', import.meta.url).pathname, 'fixtures', 'tiny');
      const users = ['u1', 'u2', 'u3', 'u4'];
      const tracks = ['t1', 't2', 't3', 't9'];
      const rows = Array.from({ length: 150_000 }, (_, i) => {
        const hour = String(i % 24).padStart(2, '0');
        return `${users[i % 4]},${tracks[(i * 7) % 4]},2024-06-0${1 + (i % 3)} ${hour}:${String(i % 60).padStart(2, '0')}:00`;
      });
      const text = Buffer.from(`user_id,track_id,listen_time\n${rows.join('\n')}\n`);
      const gz = gzipSync(text);
      for (const f of ['songs.csv', 'users.csv']) await s3.putObject(BUCKET, `gzcut/${f}`, await fsp.readFile(path.join(tiny, f)));
      await s3.putObject(BUCKET, 'gzcut/streams/big.csv.gz', gz);
      const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'mkpi-gzcut-'));
      const proxy = await startFaultyProxy(s3.endpoint, {
        match: (req) => req.method === 'GET' && (req.url ?? '').includes('big.csv.gz'),
        cutAfterBytes: Math.floor(gz.length / 3),
        times: 2,
      });
      try {
        for (const f of ['songs.csv', 'users.csv']) await fsp.copyFile(path.join(tiny, f), path.join(dir, f));
        await fsp.mkdir(path.join(dir, 'streams'));
        await fsp.writeFile(path.join(dir, 'streams', 'big.csv'), text);
        const scan = async (l: Lake, key: string) => {
          const { dims } = await loadDimensions(l, { songs: 'songs.csv', users: 'users.csv' }, {});
          const state = create(dims.trackCount, dims.userCount);
          const s = await scanStreamFile(l, (await l.stat(key))!, dims, state, {});
          return { s, kpis: result(state, dims) };
        };
        const z = await scan(s3.lake(BUCKET, 'gzcut', { endpoint: proxy.endpoint }), 'streams/big.csv.gz');
        const p = await scan(new LocalLake(dir), 'streams/big.csv');
        expect(proxy.cuts).to.equal(2);
        expect(z.kpis).to.deep.equal(p.kpis);
        expect({ ...z.s, key: '', fingerprint: '', contentHash: '', bytes: 0 }).to.deep.equal({
          ...p.s,
          key: '',
          fingerprint: '',
          contentHash: '',
          bytes: 0,
        });
        expect(z.s).to.include({ bytes: gz.length, contentHash: sha256(gz) });
        expect(z.s.rejected.unknown_track).to.be.greaterThan(0);
      } finally {
        await proxy.stop();
        await fsp.rm(dir, { recursive: true, force: true });
      }
    });
  });

  describe('failures map to codes', () => {
    it('a wrong access key is MKPI_CONFIG', async () => {
      const saved = process.env['AWS_ACCESS_KEY_ID'];
      process.env['AWS_ACCESS_KEY_ID'] = 'NOT-A-KEY';
      try {
        const bad = s3.lake(BUCKET, 'lake');
        await expectCode(bad.list('streams/'), 'MKPI_CONFIG');
      } finally {
        process.env['AWS_ACCESS_KEY_ID'] = saved;
      }
    });

    it('an endpoint nobody listens on is MKPI_LAKE_UNAVAILABLE', async () => {
      const proxy = await startFaultyProxy(s3.endpoint, { cutAfterBytes: 0, times: 0 });
      const endpoint = proxy.endpoint;
      await proxy.stop();
      const dead = s3.lake(BUCKET, 'lake', { endpoint, maxAttempts: 2 });
      const err = await expectCode(dead.list('streams/'), 'MKPI_LAKE_UNAVAILABLE');
      expect(err.hint).to.include(endpoint);
    });

    it('keys that climb out of the root are MKPI_CONFIG', async () => {
      await expectCode(lake.read('../secret.csv'), 'MKPI_CONFIG');
      await expectCode(lake.write('/abs.csv', Readable.from(['x'])), 'MKPI_CONFIG');
      await expectCode(lake.moveNoOverwrite('streams/a.csv', 'streams/../../b.csv'), 'MKPI_CONFIG');
    });
  });
});
