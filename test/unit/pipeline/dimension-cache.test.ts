// The dimension cache (lib/pipeline/dimension-cache.ts): a load from it is a fresh load's twin
// (dimensions, reports, ID indexes, rejects lines), its key is every file's key, fingerprint and
// size, the lake root and the versions, and a damaged or foreign file is only a normal load.

import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect } from 'chai';

import { DIMENSION_CACHE_FORMAT, loadDimensionsCached, type DimensionCacheOptions } from '../../../lib/pipeline/dimension-cache.js';
import { RejectSink } from '../../../lib/stages/rejects.js';
import { IdIndex } from '../../../lib/domain/id-index.js';
import { loadDimensions, streamDims } from '../../../lib/stages/scan.js';
import { MemoryLake } from '../../support/fakes/memory-lake.js';

const KEYS = { songs: 'songs.csv', users: 'users.csv' };

// Every kind of dimension row: duplicates, each invalid reason, a repeated header name, an ID
// past the inline limit and one beyond Latin-1 (the index's pool), a NUL, quotes and commas.
const LONG_ID = 'x'.repeat(40);
const SONGS =
  'track_id,artists,track_genre,duration_ms,track_genre\n' +
  't1,Alice;Bob,pop,200000,x\n' +
  't2,"Bob, Jr.",pop,100000.5,x\n' +
  `${LONG_ID},Carol,rock,300000,x\n` +
  'трек-ü,Dan;Dan; ,jazz,1,x\n' +
  't1,Zed,jazz,1,x\n' +
  ',Nobody,pop,1,x\n' +
  't5,Eve,,1,x\n' +
  't6,Eve,pop,abc,x\n' +
  `t7,${'a'.repeat(300)},pop,1,x\n` +
  't8,Eve,po\0p,1,x\n' +
  't9,Eve\n' +
  't10,,ambient,60000,x\n' +
  't11,Zé,forró,61000,x\n'; // Latin-1 beyond ASCII: the genres are stored one byte a character
// User IDs past the inline limit, beyond Latin-1 and with a surrogate pair: a cached load reads them back from the users index.
const USERS =
  'user_id,user_age,user_country\nu1,22,US\nu2,30,DE\nu3,,FR\nu1,70,BR\n,40,US\nu4,200,BR\nu5\n' +
  `${LONG_ID},41,US\nпользователь,50,RU\n\u{1F600}-fan,19,US\ncaf\u00e9,33,FR\n`;

function lakeWith(root = 'memory://lake'): MemoryLake {
  const lake = new MemoryLake({ root });
  lake.put('songs.csv', SONGS);
  lake.put('users.csv', USERS);
  return lake;
}

let dir: string;
let cache: DimensionCacheOptions;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'musickpi-dimcache-test-'));
  cache = { dir, version: '1.2.3' };
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const cacheFiles = () => readdirSync(dir).filter((f) => f.endsWith('.bin'));

/** The rejects CSV a load writes. */
async function rejectsOf(load: (sink: RejectSink) => Promise<unknown>): Promise<string> {
  const sink = new RejectSink();
  try {
    await load(sink);
    const out = new MemoryLake();
    await sink.publish(out, 'r.csv');
    return out.text('r.csv') ?? '';
  } finally {
    sink.dispose();
  }
}

async function fresh(lake: MemoryLake) {
  let loaded: Awaited<ReturnType<typeof loadDimensions>> | undefined;
  const rejects = await rejectsOf(async (sink) => (loaded = await loadDimensions(lake, KEYS, { rejects: sink })));
  return { ...loaded!, rejects };
}

async function cached(lake: MemoryLake, opts: DimensionCacheOptions = cache) {
  let loaded: Awaited<ReturnType<typeof loadDimensionsCached>> | undefined;
  const rejects = await rejectsOf(async (sink) => (loaded = await loadDimensionsCached(lake, KEYS, { rejects: sink, cache: opts })));
  return { ...loaded!, rejects };
}

describe('dimension cache', () => {
  it('a load from the cache equals a fresh load: dimensions, reports, ID indexes and rejects lines', async () => {
    const lake = lakeWith();
    const want = await fresh(lake);
    expect(want.rejects.split('\n').length).to.be.greaterThan(8);
    const miss = await cached(lake);
    expect(miss.cache).to.equal('miss');
    expect(cacheFiles()).to.have.length(1);
    const hit = await cached(lake);
    expect(hit.cache).to.equal('hit');
    for (const got of [miss, hit]) {
      expect(got.dims).to.deep.equal(want.dims);
      expect(got.songs).to.deep.equal(want.songs);
      expect(got.users).to.deep.equal(want.users);
      expect(got.rejects).to.equal(want.rejects);
    }
    // The Maps iterate in the same order, and the ID indexes answer alike.
    expect([...hit.dims.songIndex]).to.deep.equal([...want.dims.songIndex]);
    expect([...hit.dims.userIndex]).to.deep.equal([...want.dims.userIndex]);
    const sd = streamDims(hit.dims);
    const built = { tracks: IdIndex.build(want.dims.trackIds), users: IdIndex.build([...want.dims.userIndex.keys()]) };
    expect([...sd.tracks.table]).to.deep.equal([...built.tracks.table]);
    expect(sd.tracks.table.buffer).to.be.instanceOf(SharedArrayBuffer);
    for (const id of [...want.dims.trackIds, 'nope', 't11']) expect(sd.tracks.get(id), id).to.equal(built.tracks.get(id));
    for (const id of ['u1', 'u2', 'u3', 'u4', 'u9']) expect(sd.users.get(id), id).to.equal(built.users.get(id));
  });

  it('without a rejects writer the cache still holds the rejects lines for the next run', async () => {
    const lake = lakeWith();
    const want = await fresh(lake);
    expect((await loadDimensionsCached(lake, KEYS, { cache })).cache).to.equal('miss');
    const hit = await cached(lake);
    expect(hit.cache).to.equal('hit');
    expect(hit.rejects).to.equal(want.rejects);
  });

  it('another fingerprint, size, key, lake root or version is another entry', async () => {
    const lake = lakeWith();
    await cached(lake);
    // The same bytes written again: a new fingerprint.
    lake.put('songs.csv', SONGS);
    expect((await cached(lake)).cache).to.equal('miss');
    expect((await cached(lake)).cache).to.equal('hit');
    // Another size under the same fingerprint.
    const fp = lake.fingerprintOf('users.csv')!;
    lake.put('users.csv', USERS + 'u9,30,US\n', { fingerprint: fp });
    const grown = await cached(lake);
    expect(grown.cache).to.equal('miss');
    expect(grown.users.valid).to.equal((await fresh(lake)).users.valid);
    // The same file under another key.
    lake.put('dims/songs.csv', SONGS, { fingerprint: lake.fingerprintOf('songs.csv') });
    const moved = await loadDimensionsCached(lake, { songs: 'dims/songs.csv', users: 'users.csv' }, { cache });
    expect(moved.cache).to.equal('miss');
    expect(moved.dims.songsFile).to.equal('dims/songs.csv');
    // Another lake root, another musickpi version.
    const other = lakeWith('memory://other');
    other.put('songs.csv', SONGS, { fingerprint: lake.fingerprintOf('songs.csv') });
    other.put('users.csv', USERS + 'u9,30,US\n', { fingerprint: fp });
    expect((await cached(other)).cache).to.equal('miss');
    expect((await cached(lake, { dir, version: '1.2.4' })).cache).to.equal('miss');
    expect(DIMENSION_CACHE_FORMAT).to.be.a('number');
  });

  it('a damaged or foreign cache file is a normal load, and is rewritten', async () => {
    const lake = lakeWith();
    const want = await fresh(lake);
    await cached(lake);
    const [name] = cacheFiles();
    const path = join(dir, name);
    const good = readFileSync(path);
    const damage: [string, () => void][] = [
      ['cut short', () => truncateSync(path, good.length - 100)],
      ['empty', () => writeFileSync(path, '')],
      ['not ours', () => writeFileSync(path, 'hello world, this is not a cache file at all')],
      ['bad header', () => writeFileSync(path, Buffer.concat([good.subarray(0, 20), Buffer.from('}}}}'), good.subarray(24)]))],
      [
        'a huge header length',
        () => writeFileSync(path, Buffer.concat([good.subarray(0, 8), Buffer.from([255, 255, 255, 127]), good.subarray(12)])),
      ],
      ['a padded tail', () => writeFileSync(path, Buffer.concat([good, Buffer.alloc(8)]))],
    ];
    for (const [what, spoil] of damage) {
      spoil();
      const got = await cached(lake);
      expect(got.cache, what).to.equal('miss');
      expect(got.dims, what).to.deep.equal(want.dims);
      expect(got.rejects, what).to.equal(want.rejects);
      expect(readFileSync(path).equals(good), what).to.equal(true);
      expect((await cached(lake)).cache, what).to.equal('hit');
    }
  });

  it('a cache folder that cannot be written costs nothing but the cache', async () => {
    const lake = lakeWith();
    const blocked = join(dir, 'a-file');
    writeFileSync(blocked, 'x');
    const got = await cached(lake, { dir: join(blocked, 'cache'), version: '1' });
    expect(got.cache).to.equal('miss');
    expect(got.dims).to.deep.equal((await fresh(lake)).dims);
  });

  it('keeps only the newest entries', async () => {
    const lake = lakeWith();
    for (let i = 0; i < 4; i++) {
      lake.put('users.csv', USERS + `u${10 + i},30,US\n`);
      await cached(lake, { ...cache, keep: 2 });
    }
    expect(cacheFiles()).to.have.length(2);
    expect((await cached(lake, { ...cache, keep: 2 })).cache).to.equal('hit');
  });

  it('a missing dimension file is the normal MKPI_NO_INPUT', async () => {
    const lake = lakeWith();
    lake.delete('users.csv');
    const err = await loadDimensionsCached(lake, KEYS, { cache }).catch((e: unknown) => e);
    expect(err).to.have.property('code', 'MKPI_NO_INPUT');
    expect(cacheFiles()).to.have.length(0);
  });
});
