import { expect } from 'chai';
import { add, create, merge, result, ordinalRanks, type KpiState } from '../../lib/stages/reduce.js';
import { DimensionsBuilder, type Dimensions } from '../../lib/stages/validate.js';
import { dateToDay } from '../../lib/domain/listen-time.js';

function dims(songs: [string, string[], string, number][], users: [string, number][]): Dimensions {
  const b = new DimensionsBuilder();
  for (const [trackId, artists, genre, durationMs] of songs) b.addSong({ ok: true, trackId, artists, genre, durationMs });
  for (const [userId, ageGroup] of users) b.addUser({ ok: true, userId, ageGroup });
  return b.build();
}

const hk = (date: string, hour: number) => dateToDay(date) * 24 + hour;

function feed(state: KpiState, d: Dimensions, rows: [string, string, string, number][]): void {
  for (const [user, track, date, hour] of rows) {
    const u = d.userIndex.get(user)!;
    add(state, hk(date, hour), d.songIndex.get(track)!, u, d.userAgeGroup[u]);
  }
}

describe('reduce', () => {
  const d = dims(
    [
      ['b', ['Zoe'], 'pop', 1000],
      ['a', ['Zoe', 'Ann'], 'pop', 3000],
      ['c', ['\u{1F600}'], 'rock', 2000],
      ['e', ['\uFF21'], 'rock', 4000],
      ['n', [], 'none', 500],
    ],
    [
      ['u1', 0],
      ['u2', 1],
      ['u3', -1],
      ['u4', 5],
    ],
  );

  it('counts listens, distinct listeners and tracks per hour', () => {
    const s = create(d.trackCount, d.userCount);
    feed(s, d, [
      ['u1', 'a', '2024-01-01', 5],
      ['u1', 'a', '2024-01-01', 5],
      ['u2', 'b', '2024-01-01', 5],
      ['u3', 'b', '2024-01-01', 6],
    ]);
    const r = result(s, d);
    expect(r.hourly).to.have.length(2);
    const h5 = r.hourly[0];
    expect(h5).to.include({ listen_date: '2024-01-01', listen_hour: 5, listen_counts: 3, unique_listeners: 2 });
    expect(h5.avg_sessions_per_user).to.equal(3 / 2);
    expect(h5.diversity_index).to.equal(2 / 3);
    expect(h5.top_artist).to.equal('Zoe'); // Zoe 3 (a twice, b once), Ann 2
  });

  it('breaks artist ties by code point order, not UTF-16 order', () => {
    const s = create(d.trackCount, d.userCount);
    feed(s, d, [
      ['u1', 'c', '2024-01-01', 1],
      ['u1', 'e', '2024-01-01', 1],
    ]);
    // U+FF21 < U+1F600 by code point, though JS '<' on UTF-16 says the opposite.
    expect('\u{1F600}' < '\uFF21').to.equal(true);
    expect(result(s, d).hourly[0].top_artist).to.equal('\uFF21');
  });

  it('credits each artist of a track once and ties to the smallest name', () => {
    const s = create(d.trackCount, d.userCount);
    feed(s, d, [['u1', 'a', '2024-01-01', 1]]);
    expect(result(s, d).hourly[0].top_artist).to.equal('Ann');
  });

  it('leaves top_artist NULL when no listen credits an artist', () => {
    const s = create(d.trackCount, d.userCount);
    feed(s, d, [['u1', 'n', '2024-01-01', 1]]);
    expect(result(s, d).hourly[0].top_artist).to.equal(null);
  });

  it('picks the age group with the most listens, youngest on ties, ignoring unknown ages', () => {
    const s = create(d.trackCount, d.userCount);
    feed(s, d, [
      ['u4', 'a', '2024-01-01', 1],
      ['u2', 'a', '2024-01-01', 1],
      ['u3', 'a', '2024-01-01', 1],
      ['u3', 'a', '2024-01-01', 1],
    ]);
    expect(result(s, d).hourly[0].most_engaged_age_group).to.equal('26-35');
    const only = create(d.trackCount, d.userCount);
    feed(only, d, [['u3', 'a', '2024-01-01', 1]]);
    expect(result(only, d).hourly[0].most_engaged_age_group).to.equal(null);
    const heavy = create(d.trackCount, d.userCount);
    feed(heavy, d, [
      ['u4', 'a', '2024-01-01', 1],
      ['u4', 'a', '2024-01-01', 1],
      ['u1', 'a', '2024-01-01', 1],
    ]);
    expect(result(heavy, d).hourly[0].most_engaged_age_group).to.equal('66+');
  });

  it('computes genre KPIs per date with the smallest track_id on ties', () => {
    const s = create(d.trackCount, d.userCount);
    feed(s, d, [
      ['u1', 'b', '2024-01-01', 1],
      ['u1', 'a', '2024-01-01', 2],
      ['u2', 'c', '2024-01-01', 3],
      ['u2', 'c', '2024-01-01', 3],
    ]);
    const g = result(s, d).genre;
    expect(g.map((r) => r.track_genre)).to.deep.equal(['pop', 'rock']);
    expect(g[0]).to.include({ listen_count: 2, popularity_index: 0.5, average_duration: 2, most_popular_track_id: 'a' });
    expect(g[1]).to.include({ listen_count: 2, popularity_index: 0.5, average_duration: 2, most_popular_track_id: 'c' });
  });

  it('merge of partial states equals one state over all rows', () => {
    const rows: [string, string, string, number][] = [];
    const users = ['u1', 'u2', 'u3', 'u4'];
    const tracks = ['a', 'b', 'c', 'e', 'n'];
    let seed = 7;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) >>> 0) % n;
    for (let i = 0; i < 2000; i++) rows.push([users[rnd(4)], tracks[rnd(5)], rnd(2) ? '2024-01-01' : '2024-01-02', rnd(24)]);
    const whole = create(d.trackCount, d.userCount);
    feed(whole, d, rows);
    const a = create(d.trackCount, d.userCount);
    const b = create(d.trackCount, d.userCount);
    feed(a, d, rows.slice(0, 700));
    feed(b, d, rows.slice(700));
    expect(result(merge(a, b), d)).to.deep.equal(result(whole, d));
  });

  it('sparse hours (few rows) and dense hours give the same results, also when merged', () => {
    let seed = 11;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) >>> 0) % n;
    const users = ['u1', 'u2', 'u3', 'u4'];
    const tracks = ['a', 'b', 'c', 'e', 'n'];
    const rows: [string, string, string, number][] = [];
    // Busy hours turn dense, quiet ones stay sparse.
    for (let i = 0; i < 3000; i++) rows.push([users[rnd(4)], tracks[rnd(5)], '2024-01-01', rnd(3)]);
    for (let i = 0; i < 40; i++) rows.push([users[rnd(4)], tracks[rnd(5)], '2024-01-02', rnd(24)]);
    const dense = create(d.trackCount, d.userCount);
    dense.denseAt = 0;
    feed(dense, d, rows);
    for (const h of dense.hours.values()) expect(h.tracks).to.not.equal(null);
    const mixed = create(d.trackCount, d.userCount);
    feed(mixed, d, rows);
    const kinds = new Set([...mixed.hours.values()].map((h) => (h.tracks === null ? 'sparse' : 'dense')));
    expect([...kinds].sort()).to.deep.equal(['dense', 'sparse']);
    expect(result(mixed, d)).to.deep.equal(result(dense, d));
    const a = create(d.trackCount, d.userCount);
    const b = create(d.trackCount, d.userCount);
    b.denseAt = 0;
    feed(
      a,
      d,
      rows.filter((_, i) => i % 2 === 0),
    );
    feed(
      b,
      d,
      rows.filter((_, i) => i % 2 === 1),
    );
    expect(result(merge(a, b), d)).to.deep.equal(result(dense, d));
  });

  it('a sparse hour gives the dense result whether it played few of the tracks or many (both ways of crediting them)', () => {
    let seed = 5;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) >>> 0) % n;
    // Artists shared between tracks and names out of index order, so that ties and sums cross tracks.
    const big = dims(
      Array.from({ length: 4000 }, (_, i): [string, string[], string, number] => [
        `t${(i * 7919) % 4000}`,
        [`ar${i % 37}`, `ar${(i * 3) % 11}`],
        `g${i % 5}`,
        1000 + i,
      ]),
      Array.from({ length: 50 }, (_, i): [string, number] => [`u${i}`, i % 7 === 6 ? -1 : i % 6]),
    );
    const rows: [string, string, string, number][] = [];
    // Hour 0: 8 tracks of 4000 (few); hour 1: ~380 (many); both stay sparse by row count.
    for (let i = 0; i < 60; i++) rows.push([`u${rnd(50)}`, `t${rnd(8) * 500}`, '2024-03-01', 0]);
    for (let i = 0; i < 400; i++) rows.push([`u${rnd(50)}`, `t${rnd(4000)}`, '2024-03-01', 1]);
    const sparse = create(big.trackCount, big.userCount);
    feed(sparse, big, rows);
    for (const h of sparse.hours.values()) expect(h.tracks).to.equal(null);
    const dense = create(big.trackCount, big.userCount);
    dense.denseAt = 0;
    feed(dense, big, rows);
    expect(result(sparse, big)).to.deep.equal(result(dense, big));
    expect(result(sparse, big, { trackRank: ordinalRanks(big.trackIds), artistRank: ordinalRanks(big.artists) })).to.deep.equal(
      result(dense, big),
    );
  });

  it('merging two sparse hours that together cross the dense threshold', () => {
    const a = create(d.trackCount, d.userCount);
    const b = create(d.trackCount, d.userCount);
    const whole = create(d.trackCount, d.userCount);
    const rows: [string, string, string, number][] = [];
    for (let i = 0; i < 60; i++) rows.push([['u1', 'u2', 'u3'][i % 3], ['a', 'b', 'c'][i % 3], '2024-01-01', 1]);
    feed(a, d, rows.slice(0, 30));
    feed(b, d, rows.slice(30));
    feed(whole, d, rows);
    expect(a.hours.get(hk('2024-01-01', 1))!.tracks).to.equal(null);
    expect(result(merge(a, b), d)).to.deep.equal(result(whole, d));
  });

  it('memory follows rows, not hours x catalogue, when rows spread over many hours', () => {
    const big = create(1_000_000, 1_000_000);
    for (let h = 0; h < 10_000; h++) add(big, h, h % 1000, h % 777, 0);
    let ints = 0;
    for (const h of big.hours.values()) ints += (h.tracks?.length ?? 0) + (h.users?.length ?? 0) + (h.log?.length ?? 0);
    // Dense would be 10,000 hours x ~1M ints; sparse keeps a 16-int log per hour.
    expect(ints).to.be.below(10_000 * 64);
  });

  it('satisfies the spec §6 invariants', () => {
    const s = create(d.trackCount, d.userCount);
    let seed = 3;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) >>> 0) % n;
    const users = ['u1', 'u2', 'u3', 'u4'];
    const tracks = ['a', 'b', 'c', 'e', 'n'];
    const perDate = new Map<string, number>();
    for (let i = 0; i < 5000; i++) {
      const date = `2024-03-0${1 + rnd(3)}`;
      perDate.set(date, (perDate.get(date) ?? 0) + 1);
      feed(s, d, [[users[rnd(4)], tracks[rnd(5)], date, rnd(24)]]);
    }
    const r = result(s, d);
    for (const [date, n] of perDate) {
      const hours = r.hourly.filter((h) => h.listen_date === date);
      const genres = r.genre.filter((g) => g.listen_date === date);
      expect(hours.reduce((a, h) => a + h.listen_counts, 0)).to.equal(n);
      expect(genres.reduce((a, g) => a + g.listen_count, 0)).to.equal(n);
      expect(genres.reduce((a, g) => a + g.popularity_index, 0)).to.be.closeTo(1, 1e-9);
    }
    for (const h of r.hourly) {
      expect(h.unique_listeners).to.be.at.most(h.listen_counts);
      expect(h.diversity_index).to.be.greaterThan(0).and.at.most(1);
    }
  });

  it('restricts results to the requested dates', () => {
    const s = create(d.trackCount, d.userCount);
    feed(s, d, [
      ['u1', 'a', '2024-01-01', 1],
      ['u1', 'a', '2024-01-02', 1],
    ]);
    const r = result(s, d, { days: new Set([dateToDay('2024-01-02')]) });
    expect(r.hourly.map((h) => h.listen_date)).to.deep.equal(['2024-01-02']);
    expect(r.genre.map((h) => h.listen_date)).to.deep.equal(['2024-01-02']);
  });

  it('ranks names by code point', () => {
    expect([...ordinalRanks(['b', 'a', '\uFF21', '\u{1F600}'])]).to.deep.equal([1, 0, 2, 3]);
  });

  it('breaks ties the same with precomputed ranks and without (names compared directly)', () => {
    // Names whose UTF-16 and code point orders differ, many tied counts.
    const names = ['b', 'a', '\uFF21', '\u{1F600}', 'ab', 'a\u{1F600}', '\uFFFF', 'Z'];
    const songs: [string, string[], string, number][] = names.map((n, i) => [
      `t${n}`,
      [n, names[(i + 3) % names.length]],
      `g${i % 2}`,
      1000,
    ]);
    const d = dims(songs, [
      ['u1', 0],
      ['u2', 1],
    ]);
    const s = create(d.trackCount, d.userCount);
    let x = 7;
    for (let i = 0; i < 400; i++) {
      x = (x * 1103515245 + 12345) % 2147483648;
      add(s, hk('2024-01-01', x % 5), x % d.trackCount, (x >> 8) % 2, 0);
    }
    const plain = result(s, d);
    const ranked = result(s, d, { artistRank: ordinalRanks(d.artists), trackRank: ordinalRanks(d.trackIds) });
    expect(plain).to.deep.equal(ranked);
  });
});
