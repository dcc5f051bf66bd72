// The stream shell of the stages (lib/stages/scan.ts) on the memory lake: dimension files
// (contract §4), stream files classified row by row (§5), their dates (§10.1), content hash
// (§10.2), rejects with physical line numbers (§2.5), and results that do not depend on how the
// bytes are chunked (§8).

import { createHash } from 'node:crypto';

import { expect } from 'chai';

import { isMkpiError } from '../../../lib/domain/errors.js';
import { dateToDay } from '../../../lib/domain/listen-time.js';
import { create, result } from '../../../lib/stages/reduce.js';
import type { RejectWriter } from '../../../lib/stages/rejects.js';
import { loadDimensions, scanStreamFile } from '../../../lib/stages/scan.js';
import { MemoryLake, type MemoryLakeOptions } from '../../support/fakes/memory-lake.js';
import { SONGS, STREAMS, TINY_GENRE, TINY_HOURLY, USERS } from '../../support/fakes/tiny-lake.js';

const KEYS = { songs: 'songs.csv', users: 'users.csv' };

/** One row of each kind, in the contract's order of reasons, with an empty line in between. */
const MIXED =
  'user_id,track_id,listen_time\n' +
  'u1,t1,2024-06-01 10:00:00\n' + // 2 complete
  'u1,t1\n' + // 3 malformed
  '\n' + // 4 empty: not a row, but a line
  ',t1,2024-06-01 10:00:00\n' + // 5 missing_user_id
  'u1,,2024-06-01 10:00:00\n' + // 6 missing_track_id
  'u1,t1,2024-06-01 24:00:00\n' + // 7 bad_listen_time
  'u1,t9,2024-06-05 10:00:00\n' + // 8 unknown_track (its date counts)
  'u9,t1,2024-06-06T10:00:00Z\n'; // 9 unknown_user (its date counts)

function lakeWith(files: Record<string, string>, opts: MemoryLakeOptions = {}): MemoryLake {
  const lake = new MemoryLake(opts);
  lake.put('songs.csv', SONGS);
  lake.put('users.csv', USERS);
  for (const [k, v] of Object.entries(files)) lake.put(k, v);
  return lake;
}

class Collect implements RejectWriter {
  readonly rows: [string, number, string, string, string[]][] = [];
  add(file: string, line: number, reason: string, detail: string, fields: readonly string[]): void {
    this.rows.push([file, line, reason, detail, [...fields]]);
  }
}

async function scanAll(lake: MemoryLake, keys: string[], rejects?: RejectWriter) {
  const { dims } = await loadDimensions(lake, KEYS, {});
  const state = create(dims.trackCount, dims.userCount);
  const scans = [];
  for (const key of keys) scans.push(await scanStreamFile(lake, (await lake.stat(key))!, dims, state, { rejects }));
  return { scans, kpis: result(state, dims), dims, state };
}

async function thrown(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a failure');
}

describe('stages/scan', () => {
  describe('loadDimensions', () => {
    it('reads the tiny songs and users: first valid row wins, duplicates counted', async () => {
      const { dims, songs, users } = await loadDimensions(lakeWith({}), KEYS, {});
      expect(songs).to.deep.include({ file: 'songs.csv', bytes: SONGS.length, rows: 5, valid: 4, duplicates: 1, duplicateHeaders: [] });
      expect(Object.values(songs.rejected).every((n) => n === 0)).to.equal(true);
      expect(users).to.deep.include({ file: 'users.csv', rows: 4, valid: 4, duplicates: 0 });
      expect(dims.trackIds).to.deep.equal(['t1', 't2', 't3', 't4']);
      expect(dims.genres[dims.trackGenre[dims.songIndex.get('t1')!]]).to.equal('pop');
    });

    it('drops invalid rows before first-row-wins, counting them per reason and writing them to the rejects', async () => {
      const lake = lakeWith({
        'songs.csv':
          'track_id,artists,track_genre,duration_ms\n' +
          't1,A,pop,abc\n' + // bad_duration_ms: dropped, so the next t1 enters the dimension
          't1,B,rock,1000\n' +
          ',A,pop,1\n' +
          't2,A,,1\n' +
          't3,A,pop\n',
        'users.csv': 'user_id,user_age,user_country\n,30,DE\nu1,33.0,US\nu1,20,FR\n',
      });
      const rejects = new Collect();
      const { dims, songs, users } = await loadDimensions(lake, KEYS, { rejects });
      expect(songs.rejected).to.deep.equal({
        malformed: 1,
        missing_track_id: 1,
        missing_track_genre: 1,
        bad_duration_ms: 1,
        value_too_long: 0,
      });
      expect(songs).to.deep.include({ rows: 5, valid: 1, duplicates: 0 });
      expect(dims.genres[dims.trackGenre[dims.songIndex.get('t1')!]]).to.equal('rock');
      expect(users).to.deep.include({ rows: 3, valid: 1, duplicates: 1, rejected: { malformed: 0, missing_user_id: 1 } });
      expect(rejects.rows.map(([f, l, r, d]) => [f, l, r, d])).to.deep.equal([
        ['songs.csv', 2, 'bad_duration_ms', 'duration_ms "abc" is not a plain decimal'],
        ['songs.csv', 4, 'missing_track_id', 'track_id is empty'],
        ['songs.csv', 5, 'missing_track_genre', 'track_genre is empty'],
        ['songs.csv', 6, 'malformed', '3 fields, header has 4'],
        ['users.csv', 2, 'missing_user_id', 'user_id is empty'],
        // The second valid u1 loses to the first: listed, but counted as a duplicate, not a reject.
        ['users.csv', 4, 'duplicate_user_id', 'user_id "u1" first seen on line 3'],
      ]);
    });

    it('lists every duplicate with the line of the row that won, counted only among duplicates', async () => {
      const lake = lakeWith({
        'songs.csv':
          'track_id,artists,track_genre,duration_ms\n' +
          't1,A,pop,1000\n' + // 2: t1 wins
          '\n' + // 3: empty, still a line
          ' t1 ,B,rock,2000\n' + // 4: the same ID after trimming
          't2,A,,1\n' + // 5: invalid, so not where t2 is first seen
          't2,A,pop,1\n' + // 6: t2 wins
          't1,C,jazz,3\n' + // 7
          't2,"A,B",pop,1\n', // 8
        'users.csv': 'user_id,user_age,user_country\nu1,30,DE\nu2,40,FR\nu1,20,FR\n',
      });
      const rejects = new Collect();
      const { dims, songs, users } = await loadDimensions(lake, KEYS, { rejects });
      expect(songs).to.deep.include({ rows: 6, valid: 2, duplicates: 3 });
      expect(Object.values(songs.rejected).reduce((a, b) => a + b, 0)).to.equal(1);
      expect(users).to.deep.include({ rows: 3, valid: 2, duplicates: 1, rejected: { malformed: 0, missing_user_id: 0 } });
      expect(dims.genres[dims.trackGenre[dims.songIndex.get('t1')!]]).to.equal('pop');
      expect(rejects.rows).to.deep.equal([
        ['songs.csv', 4, 'duplicate_track_id', 'track_id "t1" first seen on line 2', [' t1 ', 'B', 'rock', '2000']],
        ['songs.csv', 5, 'missing_track_genre', 'track_genre is empty', ['t2', 'A', '', '1']],
        ['songs.csv', 7, 'duplicate_track_id', 'track_id "t1" first seen on line 2', ['t1', 'C', 'jazz', '3']],
        ['songs.csv', 8, 'duplicate_track_id', 'track_id "t2" first seen on line 6', ['t2', 'A,B', 'pop', '1']],
        ['users.csv', 4, 'duplicate_user_id', 'user_id "u1" first seen on line 2', ['u1', '20', 'FR']],
      ]);
    });

    it('gives each dimension reject its detail, and names the file it was read from', async () => {
      const long = 'x'.repeat(300);
      const lake = lakeWith({
        'dims/s.csv':
          'track_id,artists,track_genre,duration_ms\n' +
          't1,A,pop,1.\n' +
          't2,A,pop, \n' +
          `${long},A,pop,1\n` +
          `t3,A;${'é'.repeat(256)},pop,1\n` +
          't4,A,g\u0000,1\n' +
          '  ,A,pop,1\n' +
          't5,A,pop,1,extra\n' +
          't6,"A,pop,1\n',
        'dims/u.csv': 'user_id,user_age,user_country\n\t,30,DE\nu1,30\n',
      });
      const rejects = new Collect();
      const { dims } = await loadDimensions(lake, { songs: 'dims/s.csv', users: 'dims/u.csv' }, { rejects });
      expect(dims).to.deep.include({ songsFile: 'dims/s.csv', usersFile: 'dims/u.csv' });
      expect(rejects.rows.map(([f, l, r, d]) => [f, l, r, d])).to.deep.equal([
        ['dims/s.csv', 2, 'bad_duration_ms', 'duration_ms "1." is not a plain decimal'],
        ['dims/s.csv', 3, 'bad_duration_ms', 'duration_ms is only whitespace'],
        ['dims/s.csv', 4, 'value_too_long', `track_id "${'x'.repeat(64)}"… is 300 characters, more than 255`],
        ['dims/s.csv', 5, 'value_too_long', `artist "${'é'.repeat(64)}"… is 256 characters, more than 255`],
        ['dims/s.csv', 6, 'value_too_long', 'track_genre "g\\u0000" contains U+0000'],
        ['dims/s.csv', 7, 'missing_track_id', 'track_id is only whitespace'],
        ['dims/s.csv', 8, 'malformed', '5 fields, header has 4'],
        ['dims/s.csv', 9, 'malformed', 'quote never closed: the record runs to the end of the file'],
        ['dims/u.csv', 2, 'missing_user_id', 'user_id is only whitespace'],
        ['dims/u.csv', 3, 'malformed', '2 fields, header has 3'],
      ]);
    });

    it('stops with MKPI_NO_INPUT when a dimension file is missing, and MKPI_SCHEMA when it lacks a column', async () => {
      const lake = lakeWith({});
      lake.delete('users.csv');
      const missing = await thrown(loadDimensions(lake, KEYS, {}));
      expect(isMkpiError(missing) && missing.code).to.equal('MKPI_NO_INPUT');
      expect(lake.reads, 'nothing read before both are known to exist').to.deep.equal([]);
      lake.put('users.csv', 'user_id,user_age\nu1,20\n');
      const schema = await thrown(loadDimensions(lake, KEYS, {}));
      expect(isMkpiError(schema) && schema.code).to.equal('MKPI_SCHEMA');
    });

    it('reports repeated header names and uses the first column of each', async () => {
      const lake = lakeWith({ 'users.csv': 'user_id,user_age,user_country,user_id\nu1,20,FR,zz\n' });
      const { dims, users } = await loadDimensions(lake, KEYS, {});
      expect(users.duplicateHeaders).to.deep.equal(['user_id']);
      expect([...dims.userIndex.keys()]).to.deep.equal(['u1']);
    });
  });

  describe('scanStreamFile', () => {
    it('classifies every row with one reason, in the contract order, and writes rejects with physical line numbers', async () => {
      const lake = lakeWith({ 'streams/m.csv': MIXED });
      const rejects = new Collect();
      const { scans } = await scanAll(lake, ['streams/m.csv'], rejects);
      const [s] = scans;
      expect(s.rows).to.equal(7);
      expect(s.complete).to.equal(1);
      expect(s.reduced).to.equal(1);
      expect(s.rejected).to.deep.equal({
        malformed: 1,
        missing_user_id: 1,
        missing_track_id: 1,
        bad_listen_time: 1,
        unknown_track: 1,
        unknown_user: 1,
      });
      expect(s.complete + Object.values(s.rejected).reduce((a, b) => a + b, 0)).to.equal(s.rows);
      expect(rejects.rows).to.deep.equal([
        ['streams/m.csv', 3, 'malformed', '2 fields, header has 3', ['u1', 't1']],
        ['streams/m.csv', 5, 'missing_user_id', 'user_id is empty', ['', 't1', '2024-06-01 10:00:00']],
        ['streams/m.csv', 6, 'missing_track_id', 'track_id is empty', ['u1', '', '2024-06-01 10:00:00']],
        ['streams/m.csv', 7, 'bad_listen_time', 'listen_time "2024-06-01 24:00:00": hour 24', ['u1', 't1', '2024-06-01 24:00:00']],
        ['streams/m.csv', 8, 'unknown_track', 'track_id "t9" is not a valid song in songs.csv', ['u1', 't9', '2024-06-05 10:00:00']],
        ['streams/m.csv', 9, 'unknown_user', 'user_id "u9" is not a valid user in users.csv', ['u9', 't1', '2024-06-06T10:00:00Z']],
      ]);
      // Every valid listen_time gives its date, orphans included.
      expect([...s.days].sort()).to.deep.equal(['2024-06-01', '2024-06-05', '2024-06-06'].map(dateToDay));
    });

    it('gives stream rejects their details from the columns the header names, in any order, with extra columns', async () => {
      const lake = lakeWith({
        'streams/x.csv':
          'listen_time,extra,track_id,user_id\n' +
          '2024-06-01 10:00:00,a, t9 ,u1\n' + // 2 unknown_track: the trimmed ID
          '2024-06-01T10:00:00z,b,t1,u1\n' + // 3
          '"2024-06-01 10:00:00,c,t1,u1\n', // 4 runs to the end
        'streams/y.csv': 'user_id,track_id,listen_time\nu1,\u3000,2024-06-01 10:00:00\n',
      });
      const rejects = new Collect();
      await scanAll(lake, ['streams/x.csv', 'streams/y.csv'], rejects);
      expect(rejects.rows.map(([f, l, r, d]) => [f, l, r, d])).to.deep.equal([
        ['streams/x.csv', 2, 'unknown_track', 'track_id "t9" is not a valid song in songs.csv'],
        [
          'streams/x.csv',
          3,
          'bad_listen_time',
          'listen_time "2024-06-01T10:00:00z": "z" after the time is not a zone (Z, +HH:MM or +HHMM)',
        ],
        ['streams/x.csv', 4, 'malformed', 'quote never closed: the record runs to the end of the file'],
        ['streams/y.csv', 2, 'missing_track_id', 'track_id is only whitespace'],
      ]);
    });

    it("records the file's size, fingerprint and SHA-256, and feeds the complete rows to the KPIs", async () => {
      const lake = lakeWith({ 'streams/a.csv': STREAMS['a.csv'], 'streams/b.csv': STREAMS['b.csv'] });
      const { scans, kpis } = await scanAll(lake, ['streams/a.csv', 'streams/b.csv']);
      expect(scans[0]).to.deep.include({
        key: 'streams/a.csv',
        fingerprint: lake.fingerprintOf('streams/a.csv'),
        bytes: STREAMS['a.csv'].length,
        contentHash: createHash('sha256').update(STREAMS['a.csv']).digest('hex'),
      });
      expect(kpis.hourly).to.deep.equal(TINY_HOURLY);
      expect(kpis.genre).to.deep.equal(TINY_GENRE);
    });

    it('gives the same scans and KPIs however the bytes are chunked', async () => {
      const files = { 'streams/a.csv': STREAMS['a.csv'], 'streams/b.csv': STREAMS['b.csv'], 'streams/m.csv': MIXED };
      const keys = Object.keys(files);
      const strip = (o: Awaited<ReturnType<typeof scanAll>>) => ({ scans: o.scans.map(({ fingerprint: _f, ...s }) => s), kpis: o.kpis });
      const whole = strip(await scanAll(lakeWith(files), keys));
      for (const chunkSizes of [[1], [2, 5], [3, 7, 11]]) {
        expect(strip(await scanAll(lakeWith(files, { chunkSizes }), keys)), String(chunkSizes)).to.deep.equal(whole);
      }
    });

    it('with a day filter, only rows of those days feed the KPIs; counts and dates still cover the whole file', async () => {
      const lake = lakeWith({ 'streams/a.csv': STREAMS['a.csv'] + 'u1,t1,2024-06-02 10:00:00\n' });
      const { dims } = await loadDimensions(lake, KEYS, {});
      const state = create(dims.trackCount, dims.userCount);
      const s = await scanStreamFile(lake, (await lake.stat('streams/a.csv'))!, dims, state, {
        dayFilter: new Set([dateToDay('2024-06-02')]),
      });
      expect(s).to.deep.include({ rows: 7, complete: 7, reduced: 1 });
      expect(s.days.size).to.equal(2);
      expect(result(state, dims).hourly.map((r) => r.listen_date)).to.deep.equal(['2024-06-02']);
    });

    it('reports a schema failure in the scan instead of throwing, for a missing column or an empty file', async () => {
      const lake = lakeWith({ 'streams/x.csv': 'user_id,track\nu1,t1\n', 'streams/e.csv': '' });
      const { scans } = await scanAll(lake, ['streams/x.csv', 'streams/e.csv']);
      for (const s of scans) {
        expect(s.schemaError?.code, s.key).to.equal('MKPI_SCHEMA');
        expect(s.contentHash).to.equal('');
      }
    });

    it('warns of repeated header names through duplicateHeaders', async () => {
      const lake = lakeWith({ 'streams/d.csv': 'user_id,track_id,listen_time,track_id\nu1,t1,2024-06-01 10:00:00,t9\n' });
      const { scans } = await scanAll(lake, ['streams/d.csv']);
      expect(scans[0]).to.deep.include({ duplicateHeaders: ['track_id'], complete: 1 });
    });

    it('reports rows read through onRows, adding up to the rows of the file', async () => {
      const lake = lakeWith({ 'streams/m.csv': MIXED });
      const { dims } = await loadDimensions(lake, KEYS, {});
      let n = 0;
      await scanStreamFile(lake, (await lake.stat('streams/m.csv'))!, dims, create(dims.trackCount, dims.userCount), {
        onRows: (k) => (n += k),
      });
      expect(n).to.equal(7);
    });

    it('lets a failing lake fail the scan with its code, whether opening or mid-read', async () => {
      for (const op of ['read', 'mid-read'] as const) {
        const lake = lakeWith({ 'streams/a.csv': STREAMS['a.csv'] }, { chunkSizes: [16] });
        const { dims } = await loadDimensions(lake, KEYS, {});
        lake.failOn(op, 'streams/a.csv');
        const err = await thrown(
          scanStreamFile(lake, (await lake.stat('streams/a.csv'))!, dims, create(dims.trackCount, dims.userCount), {}),
        );
        expect(isMkpiError(err) && err.code, op).to.equal('MKPI_LAKE_UNAVAILABLE');
      }
    });

    it('stops when the signal is aborted', async () => {
      const lake = lakeWith({ 'streams/a.csv': STREAMS['a.csv'] });
      const { dims } = await loadDimensions(lake, KEYS, {});
      const err = await thrown(
        scanStreamFile(lake, (await lake.stat('streams/a.csv'))!, dims, create(dims.trackCount, dims.userCount), {
          signal: AbortSignal.abort(),
        }),
      );
      expect(isMkpiError(err) && err.code).to.equal('MKPI_INTERRUPTED');
    });
  });
});
