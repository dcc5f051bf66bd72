// The warehouse engine's normalize (lib/stages/normalize.ts) on a hostile little lake: BOMs, CRLF,
// quoted line breaks, short and long rows, empty IDs, impossible times, zones, a gzip file, a
// corrupt one, a missing column, an empty file, dimension duplicates. The listens, songs,
// artists and users parts are checked row by row; the rows, counts, content hashes, dates and
// the row-level rejects lines against what the stream engine (scan.ts with a RejectSink) gives
// for the same files, byte for byte. Then: a shard run again replaces its output, leftovers
// included; a failed run leaves no manifest; a planned file that changed is MKPI_PLAN_STALE.

import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync, gzipSync } from 'node:zlib';

import { isMkpiError } from '../../../lib/domain/errors.js';
import { dayToDate } from '../../../lib/domain/listen-time.js';
import { BAD_ROW_REASONS } from '../../../lib/domain/reject-reasons.js';
import { manifestKey, shardPrefix, type PlannedDimension, type ShardManifest } from '../../../lib/domain/shards.js';
import { normalizeShard, type NormalizeJob } from '../../../lib/stages/normalize.js';
import { create } from '../../../lib/stages/reduce.js';
import { REJECTS_HEADER, RejectSink, type RejectWriter } from '../../../lib/stages/rejects.js';
import { loadDimensions, scanStreamFile, type StreamScan } from '../../../lib/stages/scan.js';
import { MemoryLake } from '../../support/fakes/memory-lake.js';

const BOM = '\uFEFF';

const SONGS =
  BOM +
  'track_id,artists,track_genre,duration_ms\r\n' + // 1
  't1,"A; B;A",pop,200000\r\n' + // 2
  't2,"C\r\nD",rock, 180000.5 \r\n' + // 3-4: a line break inside the artist name
  't1,Z,jazz,1000\r\n' + // 5: a duplicate (valid: in the part, decided in SQL)
  't3,X,,100\r\n' + // 6 missing_track_genre
  't4,X,pop,abc\r\n' + // 7 bad_duration_ms
  't5,X\r\n' + // 8 malformed
  ' ,X,pop,1\r\n' + // 9 missing_track_id
  't6,"A, Jr.;;",  metal ,5\r\n' + // 10
  `t7,X,${'g'.repeat(256)},1\r\n`; // 11 value_too_long

const USERS =
  'user_id,user_age,user_country\n' + // 1
  'u1,20,FR\n' + // 2
  'u2,,DE\n' + // 3: unknown age
  'u1,70,US\n' + // 4: a duplicate
  ',30,FR\n' + // 5 missing_user_id
  'u3,40\n' + // 6 malformed
  'u4,abc,FR'; // 7: unknown age, no final line break

const STREAM_A =
  BOM +
  'user_id,track_id,listen_time\r\n' + // 1
  'u1,t1,2024-06-01 10:00:00\r\n' + // 2
  'u1,t1\r\n' + // 3 malformed
  '\r\n' + // 4
  ',t1,2024-06-01 10:00:00\r\n' + // 5 missing_user_id
  'u1,  ,2024-06-01 10:00:00\r\n' + // 6 missing_track_id
  'u1,t1,2024-02-30 10:00:00\r\n' + // 7 bad_listen_time
  'u1,t1,2024-06-01 24:00:00\r\n' + // 8 bad_listen_time
  'u2,t2,2024-06-01T23:30:00-01:00\r\n' + // 9: 2024-06-02 00h UTC
  'u2,t2,2024-06-02 04:50:00+05:30\r\n' + // 10: 2024-06-01 23h UTC
  ' u9 , t9 ,2024-06-03 01:02:03.123Z\r\n' + // 11: an orphan, kept
  '"u,1","t""2","2024-06-01 10:00:00"\r\n' + // 12
  '"u\r\nx",t1,2024-06-01 10:00:00\r\n' + // 13-14
  'u1,t1,2024-06-01 10:00:00,extra\r\n' + // 15 malformed
  'u1,t1,2024-06-01 10:00\r\n' + // 16 bad_listen_time
  'u1,t1,2024-06-01 10:00:00+2400\r\n' + // 17 bad_listen_time
  'u1,t1,"2024-06-01 10:00:00\r\n' + // 18: a quote never closed, to the end
  'u1,t1,2024-06-01 11:00:00\r\n';

const STREAM_B = gzipSync(
  'user_id,listen_time,track_id,user_id\n' + // 1: columns in another order, user_id twice
    'u1,2024-06-05 00:00:00,t1,zz\n' + // 2
    'u1,not a time,t1,zz\n' + // 3 bad_listen_time
    'u1,2024-06-05 00:00:00\n' + // 4 malformed
    '1969-12-31 23:00:00\n', // 5 malformed
);

/** A gzip file cut short: rows are read up to the damage, then it is a schema error. */
const STREAM_C = (() => {
  let text = 'user_id,track_id,listen_time\n';
  for (let i = 0; i < 20000; i++)
    text += i % 97 === 0 ? `u${i},,2024-06-0${1 + (i % 3)} 10:00:00\n` : `u${i},t${i % 50},2024-06-01 1${i % 10}:00:00\n`;
  const gz = gzipSync(text);
  return gz.subarray(0, Math.floor(gz.length * 0.6));
})();

const KEYS = { songs: 'songs.csv', users: 'users.csv' };
const FILES = ['streams/a.csv', 'streams/b.csv.gz', 'streams/c.csv.gz', 'streams/d.csv', 'streams/e.csv'];

function hostileLake(): MemoryLake {
  const lake = new MemoryLake({ chunkSizes: [5] });
  lake.put('songs.csv', SONGS);
  lake.put('users.csv', USERS);
  lake.put('streams/a.csv', STREAM_A);
  lake.put('streams/b.csv.gz', STREAM_B);
  lake.put('streams/c.csv.gz', STREAM_C);
  lake.put('streams/d.csv', 'user_id,track_id\nu1,t1\n');
  lake.put('streams/e.csv', '');
  return lake;
}

async function jobFor(
  lake: MemoryLake,
  opts: { runId?: string; shard?: number; shards?: number; files?: string[] } = {},
): Promise<NormalizeJob> {
  const dims: PlannedDimension[] = [];
  for (const kind of ['songs', 'users'] as const) {
    const o = (await lake.stat(KEYS[kind]))!;
    dims.push({ kind, key: o.key, fingerprint: o.fingerprint, size: o.size, shard: opts.shard ?? 0 });
  }
  const files = [];
  for (const [i, key] of (opts.files ?? FILES).entries()) files.push({ id: i + 1, key, fingerprint: (await lake.stat(key))!.fingerprint });
  return { runId: opts.runId ?? 'run-1', shard: opts.shard ?? 0, shards: opts.shards ?? 1, files, dimensions: dims };
}

const text = (lake: MemoryLake, key: string) => gunzipSync(lake.bytes(key)!).toString('utf8');
const partText = (staging: MemoryLake, m: ShardManifest, kind: keyof ShardManifest['parts']) =>
  m.parts[kind].map((p) => text(staging, p.key)).join('');

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (err) {
    if (isMkpiError(err)) return err.code;
    throw err;
  }
  return undefined;
}

/** Forwards to a RejectSink only the rejects normalize writes (the row-level ones, not orphans or duplicates). */
class RowLevelOnly implements RejectWriter {
  constructor(private readonly sink: RejectSink) {}
  add(file: string, line: number, reason: string, detail: string, fields: readonly string[]): void {
    const rowLevel =
      file === KEYS.songs || file === KEYS.users ? !reason.startsWith('duplicate_') : (BAD_ROW_REASONS as string[]).includes(reason);
    if (rowLevel) this.sink.add(file, line, reason, detail, fields);
  }
}

/** What the stream engine gives for the same lake: every file's scan, and its row-level rejects output. */
async function streamEngine(lake: MemoryLake): Promise<{ scans: StreamScan[]; rejects: string; count: number }> {
  const sink = new RejectSink();
  try {
    const writer = new RowLevelOnly(sink);
    const { dims } = await loadDimensions(lake, KEYS, { rejects: writer });
    const state = create(dims.trackCount, dims.userCount);
    const scans: StreamScan[] = [];
    for (const key of FILES) scans.push(await scanStreamFile(lake, (await lake.stat(key))!, dims, state, { rejects: writer }));
    const out = new MemoryLake();
    await sink.publish(out, 'r.csv');
    return { scans, rejects: out.text('r.csv') ?? REJECTS_HEADER, count: sink.count };
  } finally {
    sink.dispose();
  }
}

describe('stages/normalize: a hostile little lake', () => {
  let lake: MemoryLake;
  let staging: MemoryLake;
  let m: ShardManifest;
  let rows = 0;

  before(async () => {
    lake = hostileLake();
    staging = new MemoryLake();
    let tick = 0;
    m = await normalizeShard(lake, staging, await jobFor(lake), {
      onRows: (n) => (rows += n),
      now: () => new Date(Date.UTC(2024, 5, 2, 3, 0, tick++)),
    });
  });

  it('writes the listens of every row that passes the row-level rules, orphans included, IDs trimmed, date and hour in UTC', () => {
    const all = partText(staging, m, 'listens');
    const cut = all.indexOf('\n3,') + 1;
    expect(all.slice(0, cut)).to.equal(
      [
        '1,2,u1,t1,2024-06-01,10',
        '1,9,u2,t2,2024-06-02,0',
        '1,10,u2,t2,2024-06-01,23',
        '1,11,u9,t9,2024-06-03,1',
        '1,12,"u,1","t""2",2024-06-01,10',
        '1,13,"u\r\nx",t1,2024-06-01,10',
        '2,2,u1,t1,2024-06-05,0',
        '',
      ].join('\n'),
    );
    // The corrupt file's rows up to the damage (the run will not load them: its schema error stops it).
    const tail = all.slice(cut).split('\n');
    expect(tail.pop()).to.equal('');
    expect(tail.length).to.equal(m.files[2].listens);
    for (const l of tail) expect(l).to.match(/^3,\d+,u\d+,t\d+,2024-06-01,1\d$/);
    const a = m.files[0];
    expect([a.rows, a.listens, a.dates]).to.deep.equal([15, 6, ['2024-06-01', '2024-06-02', '2024-06-03']]);
    expect(a.rejected).to.deep.equal({ malformed: 3, missing_user_id: 1, missing_track_id: 1, bad_listen_time: 4 });
    expect(m.files[1].duplicateHeaders).to.deep.equal(['user_id']);
    expect(m.files[1].dates).to.deep.equal(['2024-06-05']);
    expect(m.parts.listens.reduce((n, p) => n + p.rows, 0)).to.equal(m.files.reduce((n, f) => n + f.listens, 0));
  });

  it('writes every valid song row (duplicates too) with its distinct artists, and every valid user row', () => {
    expect(partText(staging, m, 'songs')).to.equal('2,t1,pop,200000\n3,t2,rock,180000.5\n5,t1,jazz,1000\n10,t6,metal,5\n');
    expect(partText(staging, m, 'artists')).to.equal('2,t1,A\n2,t1,B\n3,t2,"C\r\nD"\n5,t1,Z\n10,t6,"A, Jr."\n');
    expect(partText(staging, m, 'users')).to.equal('2,u1,0\n3,u2,\n4,u1,5\n7,u4,\n');
    const [songs, users] = m.dimensions;
    expect([songs.kind, songs.rows, songs.valid, songs.bytes]).to.deep.equal(['songs', 9, 4, Buffer.byteLength(SONGS)]);
    expect(songs.rejected).to.deep.equal({
      malformed: 1,
      missing_track_id: 1,
      missing_track_genre: 1,
      bad_duration_ms: 1,
      value_too_long: 1,
    });
    expect([users.kind, users.rows, users.valid]).to.deep.equal(['users', 6, 4]);
    expect(users.rejected).to.deep.equal({ malformed: 1, missing_user_id: 1 });
  });

  it('reads every file as the stream engine does: rows, row-level counts, content hash, bytes, dates, headers, schema errors', async () => {
    const { scans } = await streamEngine(lake);
    for (const [i, s] of scans.entries()) {
      const f = m.files[i];
      expect(f.key).to.equal(s.key);
      expect([f.rows, f.bytes, f.contentHash, f.duplicateHeaders], s.key).to.deep.equal([
        s.rows,
        s.bytes,
        s.contentHash,
        s.duplicateHeaders,
      ]);
      for (const r of BAD_ROW_REASONS) expect(f.rejected[r], `${s.key} ${r}`).to.equal(s.rejected[r]);
      expect(f.listens, s.key).to.equal(s.complete + s.rejected.unknown_track + s.rejected.unknown_user);
      expect(f.dates, s.key).to.deep.equal([...s.days].sort((x, y) => x - y).map(dayToDate));
      expect(f.schemaError?.message, s.key).to.equal(s.schemaError?.message);
      expect(f.schemaError?.hint, s.key).to.equal(s.schemaError?.hint);
    }
    expect(m.files[0].contentHash).to.equal(createHash('sha256').update(STREAM_A).digest('hex'));
    expect(m.files[1].contentHash).to.equal(createHash('sha256').update(STREAM_B).digest('hex'));
    expect(m.files.map((f) => f.schemaError !== undefined)).to.deep.equal([false, false, true, true, true]);
    // The corrupt file's rows before the damage were read, as the stream engine reads them.
    expect(m.files[2].rows).to.be.greaterThan(1000);
  });

  it('writes the row-level rejects lines the stream engine writes, byte for byte, one part per file in line order', async () => {
    const { rejects, count } = await streamEngine(lake);
    const keys = [m.dimensions[0].rejectsKey, m.dimensions[1].rejectsKey, ...m.files.map((f) => f.rejectsKey)];
    const prefix = shardPrefix('run-1', 0, 1);
    expect(keys).to.deep.equal([
      `${prefix}rejects-songs.csv.gz`,
      `${prefix}rejects-users.csv.gz`,
      `${prefix}rejects-1.csv.gz`,
      `${prefix}rejects-2.csv.gz`,
      `${prefix}rejects-3.csv.gz`,
      null,
      null,
    ]);
    const ours = keys.filter((k): k is string => k !== null).map((k) => text(staging, k));
    expect(REJECTS_HEADER + ours.join('')).to.equal(rejects);
    const counts = [...m.dimensions, ...m.files].map((f) => f.rejectsCount);
    expect(counts.reduce((a, b) => a + b, 0)).to.equal(count);
    expect(ours[2]).to.contain('streams/a.csv,7,bad_listen_time,');
    expect(ours[2]).to.contain('streams/a.csv,18,malformed,quote never closed');
  });

  it('writes parts as gzip CSV without header, LF, no BOM; the manifest last, listing every object of the shard', async () => {
    const prefix = shardPrefix('run-1', 0, 1);
    const listed = new Set([
      ...Object.values(m.parts).flatMap((ps) => ps.map((p) => p.key)),
      ...[...m.files, ...m.dimensions].map((f) => f.rejectsKey).filter((k) => k !== null),
      manifestKey('run-1', 0, 1),
    ]);
    expect(staging.keys(prefix).sort()).to.deep.equal([...listed].sort());
    for (const kind of ['listens', 'songs', 'artists', 'users'] as const) {
      expect(m.parts[kind].map((p) => p.key)).to.deep.equal([`${prefix}${kind}-00000.csv.gz`]);
      for (const p of m.parts[kind]) {
        expect(p.bytes).to.equal(staging.bytes(p.key)!.length);
        const t = text(staging, p.key);
        expect(t.startsWith(BOM)).to.equal(false);
        expect(t.split('\n').length - 1).to.be.at.least(p.rows);
      }
    }
    expect(JSON.parse(staging.text(manifestKey('run-1', 0, 1))!)).to.deep.equal(m);
    expect([m.startedAt, m.finishedAt]).to.deep.equal(['2024-06-02T03:00:00.000Z', '2024-06-02T03:00:01.000Z']);
    expect(rows).to.equal(m.files.reduce((n, f) => n + f.rows, 0) + m.dimensions.reduce((n, d) => n + d.rows, 0));
  });
});

describe('stages/normalize: running a shard again', () => {
  const prefix = shardPrefix('run-1', 0, 1);

  it('replaces its output: parts of other sizes, leftovers removed, the same rows', async () => {
    const lake = hostileLake();
    const staging = new MemoryLake();
    const job = await jobFor(lake);
    const first = await normalizeShard(lake, staging, job, {});
    const kinds = ['listens', 'songs', 'artists', 'users'] as const;
    const before = kinds.map((kind) => partText(staging, first, kind));
    const small = await normalizeShard(lake, staging, job, { partBytes: 4000 });
    expect(small.parts.listens.length).to.be.greaterThan(3);
    expect(small.parts.listens.every((p) => p.rows >= 1)).to.equal(true);
    expect(kinds.map((kind) => partText(staging, small, kind))).to.deep.equal(before);
    // Each part but the last reaches the bound, and goes past it by less than a row.
    for (const p of small.parts.listens.slice(0, -1)) expect(Buffer.byteLength(text(staging, p.key))).to.be.within(4000, 4000 + 40);
    staging.put(`${prefix}stray.tmp`, 'x');
    const again = await normalizeShard(lake, staging, job, {});
    expect(again.parts.listens.map((p) => p.key)).to.deep.equal([`${prefix}listens-00000.csv.gz`]);
    expect(staging.keys(prefix).filter((k) => k.includes('listens-'))).to.deep.equal([`${prefix}listens-00000.csv.gz`]);
    expect(staging.has(`${prefix}stray.tmp`)).to.equal(false);
    expect({ ...again, startedAt: '', finishedAt: '' }).to.deep.equal({ ...first, startedAt: '', finishedAt: '' });
  });

  it('a run that fails leaves the shard without a manifest (incomplete), and leaves other shards alone', async () => {
    const lake = hostileLake();
    const staging = new MemoryLake();
    const job = await jobFor(lake);
    await normalizeShard(lake, staging, job, {});
    staging.put('run-1/shard-0001-of-0002/manifest.json', '{}');
    staging.failOn('write', /listens-00002/);
    expect(await codeOf(normalizeShard(lake, staging, job, { partBytes: 40 }))).to.equal('MKPI_LAKE_UNAVAILABLE');
    expect(staging.has(manifestKey('run-1', 0, 1))).to.equal(false);
    expect(staging.has('run-1/shard-0001-of-0002/manifest.json')).to.equal(true);
    staging.heal();
    await normalizeShard(lake, staging, job, {});
    expect(staging.has(manifestKey('run-1', 0, 1))).to.equal(true);
  });

  it('the reread shard (-1) writes under the run reread/ prefix', async () => {
    const lake = hostileLake();
    const staging = new MemoryLake();
    const job = { ...(await jobFor(lake, { files: ['streams/a.csv'] })), shard: -1, dimensions: [] };
    const m = await normalizeShard(lake, staging, job, {});
    expect(m.shard).to.equal(-1);
    expect(m.parts.listens.map((p) => p.key)).to.deep.equal(['run-1/reread/listens-00000.csv.gz']);
    expect(staging.has('run-1/reread/manifest.json')).to.equal(true);
    expect(m.parts.songs).to.deep.equal([]);
  });
});

describe('stages/normalize: a plan gone stale', () => {
  it('a planned stream file that changed or vanished is MKPI_PLAN_STALE, and no manifest is written', async () => {
    for (const change of ['rewrite', 'delete', 'dimension'] as const) {
      const lake = hostileLake();
      const staging = new MemoryLake();
      const job = await jobFor(lake);
      if (change === 'rewrite') lake.put('streams/b.csv.gz', STREAM_B);
      else if (change === 'delete') lake.delete('streams/d.csv');
      else lake.put('users.csv', USERS);
      expect(await codeOf(normalizeShard(lake, staging, job, {})), change).to.equal('MKPI_PLAN_STALE');
      expect(staging.has(manifestKey('run-1', 0, 1)), change).to.equal(false);
    }
  });
});

/** A lake that counts the bytes its readers took. */
class CountingLake extends MemoryLake {
  taken = 0;
  override async read(key: string, signal?: AbortSignal): Promise<Readable> {
    const inner = await super.read(key, signal);
    const count = (n: number) => (this.taken += n);
    async function* counted(): AsyncGenerator<Buffer> {
      for await (const c of inner as AsyncIterable<Buffer>) {
        count(c.length);
        yield c;
      }
    }
    return Readable.from(counted(), { objectMode: true, highWaterMark: 1 });
  }
}

/** A staging lake whose writes take no byte until released: a store that does not keep up. */
class StalledLake extends MemoryLake {
  release!: () => void;
  private readonly gate = new Promise<void>((r) => (this.release = r));
  override async write(key: string, body: Readable, signal?: AbortSignal): Promise<void> {
    await this.gate;
    return super.write(key, body, signal);
  }
}

describe('stages/normalize: memory stays bounded', () => {
  it('stops reading while the staging lake does not take the parts (backpressure), then finishes', async () => {
    const lake = new CountingLake();
    lake.put('songs.csv', SONGS);
    lake.put('users.csv', USERS);
    let big = 'user_id,track_id,listen_time\n';
    for (let i = 0; i < 150_000; i++)
      big += `user-${i % 977},track-${(i * 7919) % 100_003},2024-06-0${1 + (i % 3)} ${String(i % 24).padStart(2, '0')}:00:00\n`;
    lake.put('streams/big.csv', big);
    const staging = new StalledLake();
    const job = await jobFor(lake, { files: ['streams/big.csv'] });
    job.dimensions = [];
    const run = normalizeShard(lake, staging, job, {});
    await sleep(400);
    // What is held is the parts' buffers (a few hundred KB), not the file.
    expect(lake.taken).to.be.below(2_000_000);
    expect(big.length).to.be.above(6_000_000);
    staging.release();
    const m = await run;
    expect(lake.taken).to.equal(big.length);
    expect(m.files[0].listens).to.equal(150_000);
    expect(m.parts.listens[0].rows).to.equal(150_000);
  });
});
