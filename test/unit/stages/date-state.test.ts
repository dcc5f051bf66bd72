// The saved date states (lib/stages/date-state.ts) and the reducers' counts of an hour
// (reduce.ts hourCounts / addCounts): a state read back and added to new rows gives the
// results of all the rows, byte for byte; anything that is not such a state is refused.

import { createHash } from 'node:crypto';

import { expect } from 'chai';
import { add, addCounts, create, densify, hourCounts, result, type KpiState } from '../../../lib/stages/reduce.js';
import {
  DATE_STATE_FORMAT,
  decodeDateState,
  dimensionsKey,
  encodeDateState,
  listDateStates,
  readDateStateBytes,
  restoreDateState,
  writeDateState,
  type DimensionsVersion,
} from '../../../lib/stages/date-state.js';
import { DimensionsBuilder, type Dimensions } from '../../../lib/stages/validate.js';
import { dateToDay } from '../../../lib/domain/listen-time.js';
import { MemoryLake } from '../../support/fakes/memory-lake.js';
import { rng } from '../../../bench/generate-lake.js';

function catalogue(tracks: number, users: number): Dimensions {
  const b = new DimensionsBuilder();
  for (let t = 0; t < tracks; t++) {
    b.addSong({
      ok: true,
      trackId: `t${t}`,
      artists: t % 7 === 0 ? [] : [`A${t % 13}`, `B${t % 5}`],
      genre: `g${t % 4}`,
      durationMs: 1000 + t,
    });
  }
  for (let u = 0; u < users; u++) b.addUser({ ok: true, userId: `u${u}`, ageGroup: u % 9 === 0 ? -1 : u % 6 });
  return b.build();
}

type Row = [hourKey: number, track: number, user: number];

function rows(seed: number, n: number, days: number[], d: Dimensions, hot = 1): Row[] {
  const next = rng(seed);
  const out: Row[] = [];
  for (let i = 0; i < n; i++) {
    const day = days[Math.floor(next() * days.length)];
    // `hot` < 1 crowds the rows onto a few tracks and users, so that hours stay sparse.
    out.push([day * 24 + Math.floor(next() * 24), Math.floor(next() * d.trackCount * hot), Math.floor(next() * d.userCount * hot)]);
  }
  return out;
}

function feed(state: KpiState, d: Dimensions, list: Row[]): KpiState {
  for (const [h, t, u] of list) add(state, h, t, u, d.userAgeGroup[u]);
  return state;
}

const VERSION: DimensionsVersion = {
  version: '1.0.0',
  songs: { key: 'songs.csv', fingerprint: '10:1', size: 10 },
  users: { key: 'users.csv', fingerprint: '20:2', size: 20 },
};
const KEY = dimensionsKey(VERSION);
const D1 = dateToDay('2024-06-01');
const D2 = dateToDay('2024-06-02');

describe('date state: reduce.ts hourCounts / addCounts', () => {
  const d = catalogue(300, 200);

  for (const [name, hot] of [
    ['sparse hours', 0.05],
    ['dense hours', 1],
  ] as const) {
    it(`${name}: the counts of earlier rows added to new rows give the results of all the rows`, () => {
      for (let seed = 1; seed <= 20; seed++) {
        const old = rows(seed, 40 + seed * 37, [D1, D2], d, hot);
        const fresh = rows(seed + 100, 30 + seed * 11, [D1], d, hot);
        const all = feed(feed(create(d.trackCount, d.userCount), d, old), d, fresh);
        const before = feed(create(d.trackCount, d.userCount), d, old);
        // Some hours of the new rows' state are dense, some sparse: both take counts.
        const next = feed(create(d.trackCount, d.userCount), d, fresh);
        if (seed % 3 === 0) for (const h of next.hours.values()) densify(next, h);
        for (const [key, h] of before.hours) addCounts(next, key, hourCounts(before, h));
        expect(result(next, d), `seed ${seed}`).to.deep.equal(result(all, d));
      }
    });
  }

  it('hourCounts lists tracks and listeners ascending, the same for a sparse and a dense hour', () => {
    const s = feed(create(d.trackCount, d.userCount), d, [
      [5, 9, 4],
      [5, 2, 4],
      [5, 9, 1],
      [5, 9, 150],
    ]);
    const h = s.hours.get(5)!;
    const sparse = hourCounts(s, h);
    expect([...sparse.tracks]).to.deep.equal([2, 1, 9, 3]);
    expect([...sparse.users]).to.deep.equal([1, 4, 150]);
    expect(sparse.count).to.equal(4);
    densify(s, h);
    expect(hourCounts(s, h)).to.deep.equal(sparse);
  });
});

describe('date state: the saved object (date-state.ts)', () => {
  const d = catalogue(500, 400);

  function stateOf(list: Row[]): KpiState {
    return feed(create(d.trackCount, d.userCount), d, list);
  }
  const expect1 = { dimensions: KEY, trackCount: 500, userCount: 400 };

  it('a date saved and read back gives, with new rows, the results of all the rows; only that date is saved', () => {
    const old = rows(7, 3000, [D1, D2], d);
    const bytes = encodeDateState(stateOf(old), D1, { dimensions: KEY, files: ['streams/b.csv\u0000fp2', 'streams/a.csv\u0000fp1'] });
    const saved = decodeDateState(bytes, expect1)!;
    expect(saved.date).to.equal('2024-06-01');
    expect(saved.files).to.deep.equal(['streams/a.csv\u0000fp1', 'streams/b.csv\u0000fp2']);
    const fresh = rows(8, 500, [D1], d);
    const next = stateOf(fresh);
    restoreDateState(next, saved);
    const days = new Set([D1]);
    expect(result(next, d, { days })).to.deep.equal(result(stateOf([...old, ...fresh]), d, { days }));
    // D2's hours were not saved with D1.
    expect(result(next, d).days).to.deep.equal([D1]);
  });

  it('a date without rows saves an empty state that restores nothing', () => {
    const saved = decodeDateState(encodeDateState(stateOf([]), D1, { dimensions: KEY, files: ['x'] }), expect1)!;
    expect(saved.hours).to.deep.equal([]);
    expect(saved.files).to.deep.equal(['x']);
  });

  it('is small: varints of the gaps between indexes, not the dense arrays', () => {
    const big = catalogue(20000, 20000);
    const list = rows(3, 20000, [D1], big);
    const bytes = encodeDateState(feed(create(big.trackCount, big.userCount), big, list), D1, { dimensions: KEY, files: [] });
    // 24 dense hours would be 24 × (20000 × 4 + 20000 / 8) bytes ≈ 1.9 MB.
    expect(bytes.length).to.be.below(120_000);
  });

  it('refuses other dimensions, another catalogue size, another format, and any cut or altered byte', () => {
    const bytes = encodeDateState(stateOf(rows(9, 400, [D1], d)), D1, { dimensions: KEY, files: ['f'] });
    expect(decodeDateState(bytes, expect1)).to.not.equal(undefined);
    const other = dimensionsKey({ ...VERSION, songs: { ...VERSION.songs, fingerprint: '10:3' } });
    expect(other).to.not.equal(KEY);
    expect(decodeDateState(bytes, { ...expect1, dimensions: other })).to.equal(undefined);
    expect(dimensionsKey({ ...VERSION, version: '1.0.1' })).to.not.equal(KEY);
    expect(decodeDateState(bytes, { ...expect1, trackCount: 501 })).to.equal(undefined);
    expect(decodeDateState(bytes, { ...expect1, userCount: 399 })).to.equal(undefined);
    expect(decodeDateState(bytes.subarray(0, bytes.length - 1), expect1)).to.equal(undefined);
    expect(decodeDateState(Buffer.concat([bytes, Buffer.from([0])]), expect1)).to.equal(undefined);
    for (const at of [0, 5, 12, 40, bytes.length - 3, bytes.length - 1]) {
      const flipped = Buffer.from(bytes);
      flipped[at] ^= 0x01;
      expect(decodeDateState(flipped, expect1), `byte ${at}`).to.equal(undefined);
    }
  });

  /** The object with its header changed by `edit`, sealed again with a correct checksum. */
  function reseal(bytes: Buffer, edit: (header: Record<string, unknown>) => void, body?: Buffer): Buffer {
    const hlen = bytes.readUInt32LE(8);
    const header = JSON.parse(bytes.subarray(12, 12 + hlen).toString('utf8')) as Record<string, unknown>;
    edit(header);
    const oldBody = bytes.subarray(12 + hlen, bytes.length - 32);
    const nextBody = body ?? oldBody;
    header.bodyBytes = nextBody.length;
    const json = Buffer.from(JSON.stringify(header), 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(json.length);
    const sealed = Buffer.concat([bytes.subarray(0, 8), len, json, nextBody]);
    return Buffer.concat([sealed, createHash('sha256').update(sealed).digest()]);
  }

  it('refuses a sealed object whose indexes, counts or hours do not hold', () => {
    const small = catalogue(10, 10);
    const s = feed(create(small.trackCount, small.userCount), small, [
      [D1 * 24 + 3, 9, 9],
      [D1 * 24 + 3, 2, 9],
    ]);
    const bytes = encodeDateState(s, D1, { dimensions: KEY, files: [] });
    const at = { dimensions: KEY, trackCount: 10, userCount: 10 };
    expect(decodeDateState(bytes, at)).to.not.equal(undefined);
    expect(
      decodeDateState(
        reseal(bytes, () => undefined),
        at,
      ),
    ).to.not.equal(undefined);
    const hour = (h: Record<string, unknown>) => (h.hours as Record<string, unknown>[])[0];
    // Each a sealed object (a correct checksum) that must still be refused.
    const refused: [string, Buffer, typeof at][] = [
      // Track 9 and user 9 do not exist in a catalogue of 9.
      ['track out of range', reseal(bytes, (h) => (h.trackCount = 9)), { ...at, trackCount: 9 }],
      ['user out of range', reseal(bytes, (h) => (h.userCount = 9)), { ...at, userCount: 9 }],
      ['count ≠ Σ tracks', reseal(bytes, (h) => (hour(h).count = 3)), at],
      ['hour 24', reseal(bytes, (h) => (hour(h).hour = 24)), at],
      ['ages > count', reseal(bytes, (h) => (hour(h).ages = [3, 0, 0, 0, 0, 0])), at],
      ['more listeners than listens', reseal(bytes, (h) => (hour(h).users = 3)), at],
      ['format', reseal(bytes, (h) => (h.format = DATE_STATE_FORMAT + 1)), at],
      ['no body', reseal(bytes, () => undefined, Buffer.concat([bytes.subarray(0, 0)])), at],
    ];
    for (const [what, sealed, expected] of refused) expect(decodeDateState(sealed, expected), what).to.equal(undefined);
  });

  it('lives in a lake under its prefix: listed by date in one listing, written whole, read back', async () => {
    const lake = new MemoryLake();
    const store = { lake, prefix: '_musickpi/state/' };
    const bytes = encodeDateState(stateOf(rows(1, 50, [D1], d)), D1, { dimensions: KEY, files: [] });
    await writeDateState(store, '2024-06-01', bytes);
    lake.put('_musickpi/state/notes.txt', 'x');
    lake.put('_musickpi/state/old/2024-06-02.state', 'x');
    const listed = await listDateStates(store);
    expect([...listed.keys()]).to.deep.equal(['2024-06-01']);
    const back = await readDateStateBytes(store, listed.get('2024-06-01')!);
    expect(back?.equals(bytes)).to.equal(true);
    expect(await readDateStateBytes(store, { key: '_musickpi/state/gone.state', size: 3, fingerprint: 'x' })).to.equal(undefined);
  });
});
