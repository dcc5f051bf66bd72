import { expect } from 'chai';
import {
  COMPLETE,
  ageGroupOf,
  checkSong,
  checkStreamRow,
  checkUser,
  duplicateDetail,
  listenTimeDetail,
  listenTimeProblem,
  malformedDetail,
  newStreamRowCheck,
  resolveHeader,
  shown,
  splitArtists,
  streamRejectDetail,
  type IdLookup,
} from '../../lib/stages/validate.js';
import { isMkpiError } from '../../lib/domain/errors.js';
import { parseListenTime } from '../../lib/domain/listen-time.js';
import { FLAG_OK, FLAG_TOO_LONG, FLAG_UNTERMINATED } from '../../lib/stages/parse.js';
import { REJECT_REASONS } from '../../lib/domain/reject-reasons.js';

describe('validate', () => {
  it('matches header names exactly after trimming, extra columns allowed', () => {
    const h = resolveHeader('f', [' user_id', 'x', 'track_id ', 'listen_time'], ['user_id', 'track_id', 'listen_time']);
    expect(h.indexes).to.deep.equal([0, 2, 3]);
    expect(h.fieldCount).to.equal(4);
  });

  it('fails schema validation on a missing or differently-cased column', () => {
    for (const header of [['user_id', 'track_id'], ['User_id', 'track_id', 'listen_time'], null]) {
      try {
        resolveHeader('streams/x.csv', header, ['user_id', 'track_id', 'listen_time']);
        expect.fail('should throw');
      } catch (err) {
        expect(isMkpiError(err) && err.code).to.equal('MKPI_SCHEMA');
      }
    }
  });

  it('uses the first of repeated header names and reports them', () => {
    const h = resolveHeader('f', ['user_id', 'user_id', 'track_id', 'listen_time'], ['user_id', 'track_id', 'listen_time']);
    expect(h.indexes[0]).to.equal(0);
    expect(h.duplicates).to.deep.equal(['user_id']);
  });

  it('maps ages to groups; non-digit or out-of-range ages are unknown', () => {
    const cases: [string, number][] = [
      ['1', 0],
      ['17', 0],
      ['25', 0],
      ['26', 1],
      ['35', 1],
      ['36', 2],
      ['45', 2],
      ['46', 3],
      ['55', 3],
      ['56', 4],
      ['65', 4],
      ['66', 5],
      ['120', 5],
      ['121', -1],
      ['0', -1],
      ['', -1],
      ['33.0', -1],
      ['+33', -1],
      ['-5', -1],
      ['033', 1],
    ];
    for (const [raw, g] of cases) expect(ageGroupOf(raw), raw).to.equal(g);
  });

  it('splits artists on ";", trims, drops empties and repeats', () => {
    expect(splitArtists(' A ; ;B;A;')).to.deep.equal(['A', 'B']);
    expect(splitArtists('')).to.deep.equal([]);
  });

  const songHeader = resolveHeader(
    'songs',
    ['track_id', 'artists', 'track_genre', 'duration_ms'],
    ['track_id', 'artists', 'track_genre', 'duration_ms'],
  );
  it('accepts plain decimal durations only', () => {
    for (const ok of ['210000', '210000.0', '0', '1.5']) expect(checkSong(['t', 'a', 'g', ok], songHeader).ok, ok).to.equal(true);
    for (const bad of ['2e5', '-1', '+1', 'NaN', '1.', '.5', '1,000', 'Infinity']) {
      expect(checkSong(['t', 'a', 'g', bad], songHeader)).to.deep.equal({
        ok: false,
        reason: 'bad_duration_ms',
        detail: `duration_ms "${bad}" is not a plain decimal`,
      });
    }
    expect(checkSong(['t', 'a', 'g', ''], songHeader)).to.deep.equal({
      ok: false,
      reason: 'bad_duration_ms',
      detail: 'duration_ms is empty',
    });
  });

  it('rejects songs with empty ids or genres and over-long values', () => {
    expect(checkSong(['  ', 'a', 'g', '1'], songHeader)).to.deep.equal({
      ok: false,
      reason: 'missing_track_id',
      detail: 'track_id is only whitespace',
    });
    expect(checkSong(['', 'a', 'g', '1'], songHeader)).to.deep.equal({
      ok: false,
      reason: 'missing_track_id',
      detail: 'track_id is empty',
    });
    expect(checkSong(['t', 'a', ' ', '1'], songHeader)).to.deep.equal({
      ok: false,
      reason: 'missing_track_genre',
      detail: 'track_genre is only whitespace',
    });
    const long = 'x'.repeat(256);
    const cut = `"${'x'.repeat(64)}"…`;
    const tooLong = (detail: string) => ({ ok: false, reason: 'value_too_long', detail });
    expect(checkSong([long, 'a', 'g', '1'], songHeader)).to.deep.equal(tooLong(`track_id ${cut} is 256 characters, more than 255`));
    expect(checkSong(['t', `a;${long}`, 'g', '1'], songHeader)).to.deep.equal(tooLong(`artist ${cut} is 256 characters, more than 255`));
    expect(checkSong(['t', 'a', long, '1'], songHeader)).to.deep.equal(tooLong(`track_genre ${cut} is 256 characters, more than 255`));
    // Counted in code points, as the limit is: 256 astral characters are 512 UTF-16 units.
    const astral = '\u{1F600}'.repeat(256);
    expect(checkSong([astral, 'a', 'g', '1'], songHeader)).to.deep.equal(
      tooLong(`track_id "${'\u{1F600}'.repeat(64)}"… is 256 characters, more than 255`),
    );
    // 255 astral characters are 510 UTF-16 units but 255 characters: allowed.
    expect(checkSong(['\u{1F600}'.repeat(255), 'a', 'g', '1'], songHeader).ok).to.equal(true);
    expect(checkSong(['t', 'a', 'g'], songHeader)).to.deep.equal({ ok: false, reason: 'malformed', detail: '3 fields, header has 4' });
  });

  it('rejects songs whose id, genre or an artist holds a NUL, which PostgreSQL text cannot store', () => {
    const nul = (detail: string) => ({ ok: false, reason: 'value_too_long', detail });
    expect(checkSong(['t\u0000', 'a', 'g', '1'], songHeader)).to.deep.equal(nul('track_id "t\\u0000" contains U+0000'));
    expect(checkSong(['t', 'a;b\u0000c', 'g', '1'], songHeader)).to.deep.equal(nul('artist "b\\u0000c" contains U+0000'));
    expect(checkSong(['t', 'a', '\u0000', '1'], songHeader)).to.deep.equal(nul('track_genre "\\u0000" contains U+0000'));
    // Other control characters are storable and stay valid.
    expect(checkSong(['t\u0001', 'a\u001b[31m', 'g\u007f', '1'], songHeader).ok).to.equal(true);
    // An empty artist name (dropped) holding nothing is not a NUL; a NUL in an extra column does not matter.
    expect(checkSong(['t', ';;', 'g', '1'], songHeader).ok).to.equal(true);
  });

  it('keeps users of unknown age and rejects empty ids', () => {
    const h = resolveHeader('users', ['user_id', 'user_age', 'user_country'], ['user_id', 'user_age', 'user_country']);
    expect(checkUser([' u1 ', ' 30 ', 'DE'], h)).to.deep.equal({ ok: true, userId: 'u1', ageGroup: 1 });
    expect(checkUser(['u1', 'abc', 'DE'], h)).to.deep.equal({ ok: true, userId: 'u1', ageGroup: -1 });
    expect(checkUser(['', '30', 'DE'], h)).to.deep.equal({ ok: false, reason: 'missing_user_id', detail: 'user_id is empty' });
    expect(checkUser(['u1', '30'], h)).to.deep.equal({ ok: false, reason: 'malformed', detail: '2 fields, header has 3' });
  });

  it('rejects a dimension record the parser flagged as malformed, whatever its fields', () => {
    const h = resolveHeader('users', ['user_id', 'user_age', 'user_country'], ['user_id', 'user_age', 'user_country']);
    expect(checkUser(['u1', '30', 'DE'], h, FLAG_UNTERMINATED)).to.deep.equal({
      ok: false,
      reason: 'malformed',
      detail: 'quote never closed: the record runs to the end of the file',
    });
    expect(checkSong([], songHeader, FLAG_TOO_LONG)).to.deep.equal({
      ok: false,
      reason: 'malformed',
      detail: 'record over 1000000 characters, not kept',
    });
  });

  describe('details of the rejects output', () => {
    const streamHeader = resolveHeader('s', ['user_id', 'track_id', 'listen_time'], ['user_id', 'track_id', 'listen_time']);
    const ids = (...known: string[]): IdLookup => ({ get: (id) => known.indexOf(id) });
    const dims = { songsFile: 'songs.csv', usersFile: 'dims/users.csv' };
    /** What checkStreamRow says of a row, and the detail of that reason. */
    const classify = (fields: string[], flag = FLAG_OK): [string, string] | 'complete' => {
      const c = checkStreamRow(newStreamRowCheck(), fields, flag, streamHeader, ids('t1'), ids('u1'));
      if (c.reason === COMPLETE) return 'complete';
      return [REJECT_REASONS[c.reason], streamRejectDetail(c.reason, fields, flag, streamHeader, dims)];
    };

    it('says why for each stream reason', () => {
      const T = '2024-06-01 10:00:00';
      expect(classify(['u1', 't1', T])).to.equal('complete');
      expect(classify(['u1', 't1'])).to.deep.equal(['malformed', '2 fields, header has 3']);
      expect(classify(['u1'])).to.deep.equal(['malformed', '1 field, header has 3']);
      expect(classify(['u1', 't1', T, 'x'])).to.deep.equal(['malformed', '4 fields, header has 3']);
      expect(classify(['u1', 't1', T], FLAG_UNTERMINATED)).to.deep.equal([
        'malformed',
        'quote never closed: the record runs to the end of the file',
      ]);
      expect(classify([], FLAG_TOO_LONG)).to.deep.equal(['malformed', 'record over 1000000 characters, not kept']);
      expect(classify(['', 't1', T])).to.deep.equal(['missing_user_id', 'user_id is empty']);
      expect(classify([' \t', 't1', T])).to.deep.equal(['missing_user_id', 'user_id is only whitespace']);
      expect(classify(['u1', '', T])).to.deep.equal(['missing_track_id', 'track_id is empty']);
      expect(classify(['u1', 't1', '2024-06-01T24:00:00Z'])).to.deep.equal([
        'bad_listen_time',
        'listen_time "2024-06-01T24:00:00Z": hour 24',
      ]);
      expect(classify(['u1', 't1', ''])).to.deep.equal(['bad_listen_time', 'listen_time is empty']);
      expect(classify(['u1', ' t9 ', T])).to.deep.equal(['unknown_track', 'track_id "t9" is not a valid song in songs.csv']);
      expect(classify(['u9', 't1', T])).to.deep.equal(['unknown_user', 'user_id "u9" is not a valid user in dims/users.csv']);
    });

    it('names the first-seen line of a duplicate', () => {
      expect(duplicateDetail('track_id', 't1', 2)).to.equal('track_id "t1" first seen on line 2');
      expect(duplicateDetail('user_id', 'u"1', 40)).to.equal('user_id "u\\"1" first seen on line 40');
    });

    it('shows values JSON-escaped, and cut after 64 characters', () => {
      expect(shown('t9')).to.equal('"t9"');
      expect(shown('a"b\\c\n\u0000')).to.equal('"a\\"b\\\\c\\n\\u0000"');
      expect(shown('y'.repeat(64))).to.equal(`"${'y'.repeat(64)}"`);
      expect(shown('y'.repeat(65))).to.equal(`"${'y'.repeat(64)}"…`);
      // Cut between code points, never inside a surrogate pair.
      expect(shown('\u{1F600}'.repeat(65))).to.equal(`"${'\u{1F600}'.repeat(64)}"…`);
      expect(malformedDetail(['a', 'b'], FLAG_OK, streamHeader)).to.equal('2 fields, header has 3');
    });

    it('says what is wrong with a listen_time, left to right', () => {
      const cases: [string, string][] = [
        ['2024-06-01T24:00:00Z', 'hour 24'],
        ['2024-06-01 10:60:00', 'minute 60'],
        ['2024-06-01 10:00:60', 'second 60'],
        ['0000-06-01 10:00:00', 'year 0000'],
        ['2024-13-01 10:00:00', 'month 13'],
        ['2024-00-01 10:00:00', 'month 00'],
        ['2024-04-31 10:00:00', 'day 31 is not in 2024-04'],
        ['2023-02-29 10:00:00', 'day 29 is not in 2023-02'],
        ['2024-06-00 10:00:00', 'day 00 is not in 2024-06'],
        ['2024-6-01 10:00:00', 'the date is not YYYY-MM-DD'],
        ['2024/06/01 10:00:00', 'the date is not YYYY-MM-DD'],
        ['２０２４-06-01 10:00:00', 'the date is not YYYY-MM-DD'],
        ['1717236000', 'the date is not YYYY-MM-DD'],
        ['nope', 'the date is not YYYY-MM-DD'],
        ['2024-06-01', 'a date without a time'],
        ['2024-06-01t10:00:00', '"t" between date and time, not a space or T'],
        ['2024-06-01 10:00', 'the time is not HH:MM:SS'],
        ['2024-06-01 10.00.00', 'the time is not HH:MM:SS'],
        ['2024-06-01 10:00:00.', 'no digits after "."'],
        ['2024-06-01 10:00:00,5', '",5" after the time is not a zone (Z, +HH:MM or +HHMM)'],
        ['2024-06-01 10:00:00z', '"z" after the time is not a zone (Z, +HH:MM or +HHMM)'],
        ['2024-06-01 10:00:00 Z', '" Z" after the time is not a zone (Z, +HH:MM or +HHMM)'],
        ['2024-06-01 10:00:00ZZ', '"ZZ" after the time is not a zone (Z, +HH:MM or +HHMM)'],
        ['2024-06-01 10:00:00+05', '"+05" after the time is not a zone (Z, +HH:MM or +HHMM)'],
        ['2024-06-01 10:00:00+5:30', '"+5:30" after the time is not a zone (Z, +HH:MM or +HHMM)'],
        ['2024-06-01 10:00:00UTC', '"UTC" after the time is not a zone (Z, +HH:MM or +HHMM)'],
        ['2024-06-01 10:00:00+24:00', 'offset hour 24'],
        ['2024-06-01 10:00:00-0560', 'offset minute 60'],
        ['0001-01-01 00:30:00+01:00', 'in UTC it falls outside years 0001-9999'],
        ['9999-12-31 23:30:00-01:00', 'in UTC it falls outside years 0001-9999'],
      ];
      for (const [value, problem] of cases) {
        expect(parseListenTime(value), value).to.be.NaN;
        expect(listenTimeProblem(value), value).to.equal(problem);
        expect(listenTimeDetail(` ${value} `), value).to.equal(`listen_time ${JSON.stringify(value)}: ${problem}`);
      }
      expect(listenTimeDetail('')).to.equal('listen_time is empty');
      expect(listenTimeDetail('   ')).to.equal('listen_time is only whitespace');
      for (const ok of ['2024-06-01 10:00:00', '2024-06-01T10:00:00.123456789Z', '2024-02-29 00:00:00+05:30', '9999-12-31 23:59:59-0000']) {
        expect(listenTimeProblem(ok), ok).to.equal(undefined);
      }
    });

    it('finds a problem exactly when parseListenTime refuses the value (random edits of valid ones)', () => {
      let seed = 12345;
      const next = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
      const alphabet = '0123456789-:T tZz+.,05239';
      const bases = ['2024-06-01 10:00:00', '2024-02-29T23:59:59.5+05:30', '0001-01-01 00:30:00+0100', '9999-12-31T23:30:00-01:00'];
      let refused = 0;
      for (let i = 0; i < 20000; i++) {
        let v = bases[next() % bases.length];
        for (let k = next() % 3; k >= 0; k--) {
          const at = next() % (v.length + 1);
          const op = next() % 3;
          const ch = alphabet[next() % alphabet.length];
          v =
            op === 0
              ? v.slice(0, at) + ch + v.slice(at + 1)
              : op === 1
                ? v.slice(0, at) + ch + v.slice(at)
                : v.slice(0, at) + v.slice(at + 1);
        }
        const invalid = Number.isNaN(parseListenTime(v));
        if (invalid) refused++;
        const problem = listenTimeProblem(v);
        expect(problem !== undefined, v).to.equal(invalid);
        // Only an offset can push a well-formed value out of range, and only from the first or last day.
        if (problem === 'in UTC it falls outside years 0001-9999') expect(v, v).to.match(/^(0001-01-01|9999-12-31).{9,}[+-]/);
      }
      expect(refused).to.be.greaterThan(5000);
    });
  });
});
