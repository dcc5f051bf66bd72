// Common lake layouts (contract §1.2, §1.3): gzip-compressed stream files read as they stream,
// identified by their stored bytes; nested folders under the streams prefix when the layout is
// recursive; archive and retracted prefixes never listed; archive names that keep the folder.

import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';

import { expect } from 'chai';

import { LocalLake } from '../../lib/adapters/lake/local.js';
import { isMkpiError, type MkpiError } from '../../lib/domain/errors.js';
import {
  DEFAULT_LAYOUT,
  excludedPrefixes,
  isGzipKey,
  isStreamFileName,
  retractedPrefix,
  type LakeLayout,
} from '../../lib/domain/layout.js';
import type { LedgerEntry } from '../../lib/domain/ledger.js';
import { isCorruptGzip, parseCsv } from '../../lib/stages/parse.js';
import { FileMatcher, archiveKeys, hashObject, listStreamFiles, locate } from '../../lib/stages/plan.js';
import { create, result } from '../../lib/stages/reduce.js';
import { RejectSink } from '../../lib/stages/rejects.js';
import { loadDimensions, scanStreamFile, type StreamScan } from '../../lib/stages/scan.js';

const REPO = new URL('../..', import.meta.url).pathname;
const TINY = join(REPO, 'fixtures', 'tiny');
const MESSY = join(REPO, 'fixtures', 'messy');

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

const dirs: string[] = [];
function lakeDir(files: Record<string, string | Buffer> = {}): string {
  const d = mkdtempSync(join(tmpdir(), 'mkpi-layouts-'));
  dirs.push(d);
  for (const [key, body] of Object.entries(files)) put(d, key, body);
  return d;
}

function put(dir: string, key: string, body: string | Buffer): void {
  const file = join(dir, ...key.split('/'));
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, body);
}

/** Chunks of `size` bytes: a gzip stream cut at every possible kind of boundary. */
function chunked(buf: Buffer, size: number): Readable {
  const chunks: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) chunks.push(buf.subarray(i, i + size));
  return Readable.from(chunks);
}

async function records(source: Readable, gunzip: boolean): Promise<{ rows: [string, number, number][]; bytes: number; sha256?: string }> {
  const rows: [string, number, number][] = [];
  const r = await parseCsv(source, (f, line, flag) => rows.push([f.join('|'), line, flag]), { gunzip, hash: true });
  return { rows, ...r };
}

async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a failure');
    },
    (e: unknown) => e,
  );
}

describe('lake layouts: .csv.gz files and nested folders', () => {
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  describe('file kinds', () => {
    it('a stream file is *.csv or *.csv.gz, case-insensitive; .gz alone means gunzip', () => {
      for (const n of ['a.csv', 'A.CSV', 'a.csv.gz', 'a.CSV.GZ', 'a.Csv.Gz', 'x~0123456789.csv.gz', '2024.06.03.csv']) {
        expect(isStreamFileName(n), n).to.equal(true);
      }
      for (const n of ['a.gz', 'a.csv.bz2', 'a.csvx', 'a.csv.gz.tmp', 'a.tsv', 'a.csv.zip', 'csv', 'a.gzip']) {
        expect(isStreamFileName(n), n).to.equal(false);
      }
      expect(isGzipKey('streams/a.csv.gz')).to.equal(true);
      expect(isGzipKey('streams/a.CSV.GZ')).to.equal(true);
      expect(isGzipKey('songs.csv.gz')).to.equal(true);
      expect(isGzipKey('streams/a.csv')).to.equal(false);
      expect(isGzipKey('streams/gz/a.csv')).to.equal(false);
    });

    it('excludes the archive and the retracted prefix, the latter beside the streams by default', () => {
      expect(DEFAULT_LAYOUT.recursive).to.equal(false);
      expect(DEFAULT_LAYOUT.retracted).to.equal('streams/retracted/');
      expect(excludedPrefixes(DEFAULT_LAYOUT)).to.deep.equal(['streams/archived/', 'streams/retracted/']);
      const custom: LakeLayout = {
        songs: 's.csv',
        users: 'u.csv',
        streams: 'in/',
        archive: 'done/',
        recursive: false,
        retracted: 'in/retracted/',
      };
      expect(retractedPrefix(custom)).to.equal('in/retracted/');
      expect(retractedPrefix({ ...custom, retracted: 'gone/' })).to.equal('gone/');
    });
  });

  describe('listStreamFiles', () => {
    const body = 'user_id,track_id,listen_time\n';
    const gz = gzipSync(body);
    const files: Record<string, string | Buffer> = {
      'songs.csv': body,
      'streams/a.csv': body,
      'streams/B.CSV': body,
      'streams/c.csv.gz': gz,
      'streams/D.CSV.GZ': gz,
      'streams/e.gz': gz,
      'streams/notes.txt': 'x',
      'streams/2024-06-03/x.csv': body,
      'streams/dt=2024-06-03/x.csv.gz': gz,
      'streams/dt=2024-06-03/hour=01/y.csv': body,
      'streams/dt=2024-06-03/_SUCCESS': '',
      'streams/_temporary/0/part-0.csv': body,
      'streams/.staging/part-1.csv.gz': gz,
      'streams/archived/a.csv': body,
      'streams/archived/2024-06-03/x.csv': body,
      'streams/retracted/r.csv': body,
      'streams/retracted/2024-06-03/r.csv.gz': gz,
    };

    it('flat (the default): *.csv and *.csv.gz directly under streams/, nested objects ignored', async () => {
      const lake = new LocalLake(lakeDir(files));
      const { files: found, ignored } = await listStreamFiles(lake, DEFAULT_LAYOUT);
      expect(found.map((f) => f.key)).to.deep.equal(['streams/B.CSV', 'streams/D.CSV.GZ', 'streams/a.csv', 'streams/c.csv.gz']);
      expect(ignored).to.deep.equal([
        'streams/.staging/part-1.csv.gz',
        'streams/2024-06-03/x.csv',
        'streams/_temporary/0/part-0.csv',
        'streams/dt=2024-06-03/_SUCCESS',
        'streams/dt=2024-06-03/hour=01/y.csv',
        'streams/dt=2024-06-03/x.csv.gz',
        'streams/e.gz',
        'streams/notes.txt',
      ]);
      expect((await listStreamFiles(lake, DEFAULT_LAYOUT)).files).to.deep.equal(found);
    });

    it('recursive: stream files at any depth, except in hidden folders; archive and retracted never', async () => {
      const lake = new LocalLake(lakeDir(files));
      const { files: found, ignored } = await listStreamFiles(lake, { ...DEFAULT_LAYOUT, recursive: true });
      expect(found.map((f) => f.key)).to.deep.equal([
        'streams/2024-06-03/x.csv',
        'streams/B.CSV',
        'streams/D.CSV.GZ',
        'streams/a.csv',
        'streams/c.csv.gz',
        'streams/dt=2024-06-03/hour=01/y.csv',
        'streams/dt=2024-06-03/x.csv.gz',
      ]);
      expect(ignored).to.deep.equal([
        'streams/.staging/part-1.csv.gz',
        'streams/_temporary/0/part-0.csv',
        'streams/dt=2024-06-03/_SUCCESS',
        'streams/e.gz',
        'streams/notes.txt',
      ]);
      expect(found[0]).to.include({ size: body.length });
      expect(found.find((f) => f.key.endsWith('x.csv.gz'))).to.include({ size: gz.length });
    });

    it('honours custom archive and retracted prefixes, and the default retracted one of a custom streams prefix', async () => {
      const lake = new LocalLake(
        lakeDir({
          'in/a.csv': body,
          'in/old/b.csv': body,
          'in/retracted/c.csv': body,
          'in/gone/d.csv': body,
          'in/done/e.csv': body,
        }),
      );
      const layout: LakeLayout = {
        songs: 's.csv',
        users: 'u.csv',
        streams: 'in/',
        archive: 'in/done/',
        recursive: true,
        retracted: 'in/retracted/',
      };
      expect((await listStreamFiles(lake, layout)).files.map((f) => f.key)).to.deep.equal(['in/a.csv', 'in/gone/d.csv', 'in/old/b.csv']);
      const listed = await listStreamFiles(lake, { ...layout, retracted: 'in/gone/' });
      expect(listed.files.map((f) => f.key)).to.deep.equal(['in/a.csv', 'in/old/b.csv', 'in/retracted/c.csv']);
    });
  });

  describe('archiveKeys', () => {
    const fp = '123:456';
    const tag = sha256(Buffer.from(fp)).slice(0, 10);

    it('keeps the path under the streams prefix, and the whole stream-file extension in the other name', () => {
      expect(archiveKeys(DEFAULT_LAYOUT, 'streams/a.csv', fp)).to.deep.equal(['streams/archived/a.csv', `streams/archived/a~${tag}.csv`]);
      expect(archiveKeys(DEFAULT_LAYOUT, 'streams/2024-06-03/x.csv', fp)).to.deep.equal([
        'streams/archived/2024-06-03/x.csv',
        `streams/archived/2024-06-03/x~${tag}.csv`,
      ]);
      expect(archiveKeys(DEFAULT_LAYOUT, 'streams/dt=2024-06-03/h=1/x.csv.gz', fp)).to.deep.equal([
        'streams/archived/dt=2024-06-03/h=1/x.csv.gz',
        `streams/archived/dt=2024-06-03/h=1/x~${tag}.csv.gz`,
      ]);
      expect(archiveKeys(DEFAULT_LAYOUT, 'streams/X.CSV.GZ', fp)[1]).to.equal(`streams/archived/X~${tag}.CSV.GZ`);
      expect(archiveKeys(DEFAULT_LAYOUT, 'streams/a.b.csv', fp)[1]).to.equal(`streams/archived/a.b~${tag}.csv`);
      // A key from another streams prefix (the layout changed since it was loaded) keeps its name only, as before.
      expect(archiveKeys(DEFAULT_LAYOUT, 'incoming/2024/x.csv', fp)).to.deep.equal([
        'streams/archived/x.csv',
        `streams/archived/x~${tag}.csv`,
      ]);
      expect(archiveKeys({ ...DEFAULT_LAYOUT, archive: 'archive/' }, 'streams/d/x.csv', fp)[0]).to.equal('archive/d/x.csv');
    });

    it("locate() finds a nested file's archived copy, under both names", async () => {
      const a = 'user_id,track_id,listen_time\nu1,t1,2024-06-01 10:00:00\n';
      const dir = lakeDir({ 'streams/archived/d1/x.csv': a });
      const lake = new LocalLake(dir);
      const stat = (await lake.stat('streams/archived/d1/x.csv'))!;
      const entry: LedgerEntry = {
        fileKey: 'streams/d1/x.csv',
        fingerprint: stat.fingerprint,
        contentHash: sha256(Buffer.from(a)),
        size: stat.size,
        rows: 1,
        dates: ['2024-06-01'],
        tables: ['hourly', 'genre'],
        runId: 'r',
        archivedKey: null,
      };
      expect((await locate(lake, DEFAULT_LAYOUT, entry)).key).to.equal('streams/archived/d1/x.csv');
      const other = archiveKeys(DEFAULT_LAYOUT, 'streams/d1/x.csv', 'f2')[1];
      put(dir, other, a);
      rmSync(join(dir, 'streams', 'archived', 'd1', 'x.csv'));
      // Another fingerprint (a copy), the same bytes: found by its content hash.
      expect((await locate(lake, DEFAULT_LAYOUT, { ...entry, fingerprint: 'f2' })).key).to.equal(other);
    });
  });

  describe('parseCsv with gunzip', () => {
    const text = Buffer.from(
      '\ufeffa,b\n1,2\n\n"multi\nline",3\r\n4,"5"\n' + Array.from({ length: 3000 }, (_, i) => `${i},x${i}\n`).join(''),
    );
    const gz = gzipSync(text);

    it('gives the records and line numbers of the inflated text, and the byte count and SHA-256 of the gzip bytes', async () => {
      const plain = await records(Readable.from([text]), false);
      for (const size of [1, 7, 4096, gz.length]) {
        const z = await records(chunked(gz, size), true);
        expect(z.rows, `chunks of ${size}`).to.deep.equal(plain.rows);
        expect(z.bytes).to.equal(gz.length);
        expect(z.sha256).to.equal(sha256(gz));
      }
      expect(plain.rows.slice(0, 4)).to.deep.equal([
        ['a|b', 1, 0],
        ['1|2', 2, 0],
        ['multi\nline|3', 4, 0],
        ['4|5', 6, 0],
      ]);
    });

    it('reads concatenated gzip members as one text', async () => {
      const [head, tail] = [text.subarray(0, 1000), text.subarray(1000)];
      const z = await records(Readable.from([Buffer.concat([gzipSync(head), gzipSync(tail)])]), true);
      expect(z.rows).to.deep.equal((await records(Readable.from([text]), false)).rows);
    });

    it('rejects with a zlib error for data that is not (all) gzip; a failing source keeps its own error', async () => {
      const flipped = Buffer.from(gz);
      flipped[flipped.length - 6] ^= 0xff;
      const bad = {
        empty: Buffer.alloc(0),
        truncated: gz.subarray(0, gz.length - 10),
        plain: text,
        'bad checksum': flipped,
        'trailing garbage': Buffer.concat([gz, Buffer.from('garbage')]),
      };
      for (const [what, body] of Object.entries(bad)) {
        const err = await failure(parseCsv(Readable.from([body]), () => undefined, { gunzip: true }));
        expect(isCorruptGzip(err), what).to.equal(true);
      }
      const broken = new Readable({
        read() {
          this.push(gz.subarray(0, 100));
          this.destroy(new Error('source broke midway'));
        },
      });
      const err = await failure(parseCsv(broken, () => undefined, { gunzip: true }));
      expect((err as Error).message).to.equal('source broke midway');
      expect(isCorruptGzip(err)).to.equal(false);
    });
  });

  describe('scanStreamFile on .csv.gz', () => {
    /** The tiny and messy fixtures, each stream file also as its .csv.gz twin in another lake. */
    function twins(fixture: string, names: string[]): { plain: LocalLake; gz: LocalLake; gzDir: string } {
      const dims = {
        'songs.csv': readFileSync(join(fixture, 'songs.csv')),
        'users.csv': readFileSync(join(fixture, 'users.csv')),
      };
      const plain: Record<string, Buffer> = { ...dims };
      const zipped: Record<string, Buffer> = { ...dims };
      for (const n of names) {
        const body = readFileSync(join(fixture, 'streams', n));
        plain[`streams/${n}`] = body;
        zipped[`streams/${n}.gz`] = gzipSync(body);
      }
      const gzDir = lakeDir(zipped);
      return { plain: new LocalLake(lakeDir(plain)), gz: new LocalLake(gzDir), gzDir };
    }

    async function scanAll(lake: LocalLake): Promise<{ scans: StreamScan[]; kpis: unknown; rejects: string }> {
      const sink = new RejectSink();
      const { dims } = await loadDimensions(lake, { songs: 'songs.csv', users: 'users.csv' }, {});
      const state = create(dims.trackCount, dims.userCount);
      const scans: StreamScan[] = [];
      for (const f of (await listStreamFiles(lake, DEFAULT_LAYOUT)).files) {
        scans.push(await scanStreamFile(lake, f, dims, state, { rejects: sink }));
      }
      await sink.publish(lake, 'out/rejects.csv');
      sink.dispose();
      const rejects = readFileSync(join(lake.root, 'out', 'rejects.csv'), 'utf8');
      return { scans, kpis: result(state, dims), rejects };
    }

    for (const [name, fixture, files] of [
      ['tiny', TINY, ['a.csv', 'b.csv']],
      ['messy', MESSY, ['m1.csv', 'm2.csv']],
    ] as const) {
      it(`gives the ${name} lake's KPIs, counts and rejects (same line numbers) from its gzipped twin`, async () => {
        const { plain, gz } = twins(fixture, [...files]);
        const p = await scanAll(plain);
        const z = await scanAll(gz);
        expect(z.kpis).to.deep.equal(p.kpis);
        expect(z.rejects.replaceAll('.csv.gz,', '.csv,')).to.equal(p.rejects);
        for (const [i, s] of z.scans.entries()) {
          const { key, fingerprint: _f, contentHash, bytes, ...counts } = s;
          const { key: pk, fingerprint: _pf, contentHash: _ph, bytes: _pb, ...plainCounts } = p.scans[i];
          expect(key).to.equal(`${pk}.gz`);
          expect(counts).to.deep.equal(plainCounts);
          const stored = readFileSync(join(gz.root, ...key.split('/')));
          expect(bytes).to.equal(stored.length);
          expect(contentHash).to.equal(sha256(stored));
          expect(contentHash).to.equal(await hashObject(gz, key));
        }
        if (name === 'tiny') expect(z.rejects).to.contain('streams/b.csv.gz,4,unknown_track,');
      });
    }

    it('reads gzipped songs and users too', async () => {
      const dir = lakeDir({
        'songs.csv.gz': gzipSync(readFileSync(join(TINY, 'songs.csv'))),
        'users.csv.gz': gzipSync(readFileSync(join(TINY, 'users.csv'))),
      });
      const z = await loadDimensions(new LocalLake(dir), { songs: 'songs.csv.gz', users: 'users.csv.gz' }, {});
      const p = await loadDimensions(new LocalLake(TINY), { songs: 'songs.csv', users: 'users.csv' }, {});
      expect(z.dims.trackIds).to.deep.equal(p.dims.trackIds);
      expect({ ...z.songs, file: '', bytes: 0 }).to.deep.equal({ ...p.songs, file: '', bytes: 0 });
      expect({ ...z.users, file: '', bytes: 0 }).to.deep.equal({ ...p.users, file: '', bytes: 0 });
    });

    it('a corrupt .gz is a schema error of that file (MKPI_SCHEMA, reason corrupt_gzip), counting the rows read before it', async () => {
      const a = readFileSync(join(TINY, 'streams', 'a.csv'));
      const gz = gzipSync(a);
      const dir = lakeDir({
        'songs.csv': readFileSync(join(TINY, 'songs.csv')),
        'users.csv': readFileSync(join(TINY, 'users.csv')),
        'streams/empty.csv.gz': Buffer.alloc(0),
        'streams/plain.csv.gz': a,
        'streams/truncated.csv.gz': gz.subarray(0, gz.length - 6),
      });
      const lake = new LocalLake(dir);
      const { dims } = await loadDimensions(lake, { songs: 'songs.csv', users: 'users.csv' }, {});
      const state = create(dims.trackCount, dims.userCount);
      for (const f of (await listStreamFiles(lake, DEFAULT_LAYOUT)).files) {
        const s = await scanStreamFile(lake, f, dims, state, {});
        const e = s.schemaError as MkpiError;
        expect(isMkpiError(e), f.key).to.equal(true);
        expect(e.code).to.equal('MKPI_SCHEMA');
        expect(e.details).to.deep.include({ file: f.key, reason: 'corrupt_gzip' });
        expect(e.message).to.contain(f.key);
        expect(s.contentHash).to.equal('');
        if (f.key.includes('truncated')) expect(s.rows).to.equal(6);
      }
    });

    it('a valid .gz whose text lacks a column fails its schema as a plain file does', async () => {
      const dir = lakeDir({
        'songs.csv': readFileSync(join(TINY, 'songs.csv')),
        'users.csv': readFileSync(join(TINY, 'users.csv')),
        'streams/x.csv.gz': gzipSync('user_id,track_id\nu1,t1\n'),
      });
      const lake = new LocalLake(dir);
      const { dims } = await loadDimensions(lake, { songs: 'songs.csv', users: 'users.csv' }, {});
      const s = await scanStreamFile(lake, (await lake.stat('streams/x.csv.gz'))!, dims, create(dims.trackCount, dims.userCount), {});
      expect(s.schemaError?.code).to.equal('MKPI_SCHEMA');
      expect(s.schemaError?.details).to.deep.include({ missing: ['listen_time'] });
    });

    it('a touched .gz (new fingerprint, same stored bytes) is still the file the ledger recorded', async () => {
      const { gz, gzDir } = twins(TINY, ['a.csv']);
      const obj = (await gz.stat('streams/a.csv.gz'))!;
      const { dims } = await loadDimensions(gz, { songs: 'songs.csv', users: 'users.csv' }, {});
      const scan = await scanStreamFile(gz, obj, dims, create(dims.trackCount, dims.userCount), {});
      const entry: LedgerEntry = {
        fileKey: obj.key,
        fingerprint: obj.fingerprint,
        contentHash: scan.contentHash,
        size: obj.size,
        rows: scan.rows,
        dates: ['2024-06-01'],
        tables: ['hourly', 'genre'],
        runId: 'r',
        archivedKey: null,
      };
      const later = new Date(Date.now() + 60_000);
      utimesSync(join(gzDir, 'streams', 'a.csv.gz'), later, later);
      const touched = (await gz.stat('streams/a.csv.gz'))!;
      expect(touched.fingerprint).to.not.equal(obj.fingerprint);
      expect(await new FileMatcher(gz, DEFAULT_LAYOUT, [entry]).match(touched)).to.equal(entry);
    });
  });
});
