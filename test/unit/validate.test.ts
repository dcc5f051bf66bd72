import { expect } from 'chai';
import { ageGroupOf, checkSong, checkUser, resolveHeader, splitArtists } from '../../lib/stages/validate.js';
import { isMkpiError } from '../../lib/domain/errors.js';

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
    for (const bad of ['2e5', '-1', '+1', 'NaN', '', '1.', '.5', '1,000', 'Infinity']) {
      expect(checkSong(['t', 'a', 'g', bad], songHeader)).to.deep.equal({ ok: false, reason: 'bad_duration_ms' });
    }
  });

  it('rejects songs with empty ids or genres and over-long values', () => {
    expect(checkSong(['  ', 'a', 'g', '1'], songHeader)).to.deep.equal({ ok: false, reason: 'missing_track_id' });
    expect(checkSong(['t', 'a', ' ', '1'], songHeader)).to.deep.equal({ ok: false, reason: 'missing_track_genre' });
    const long = 'x'.repeat(256);
    expect(checkSong([long, 'a', 'g', '1'], songHeader)).to.deep.equal({ ok: false, reason: 'value_too_long' });
    expect(checkSong(['t', `a;${long}`, 'g', '1'], songHeader)).to.deep.equal({ ok: false, reason: 'value_too_long' });
    expect(checkSong(['t', 'a', long, '1'], songHeader)).to.deep.equal({ ok: false, reason: 'value_too_long' });
    // 255 astral characters are 510 UTF-16 units but 255 characters: allowed.
    expect(checkSong(['\u{1F600}'.repeat(255), 'a', 'g', '1'], songHeader).ok).to.equal(true);
    expect(checkSong(['t', 'a', 'g'], songHeader)).to.deep.equal({ ok: false, reason: 'malformed' });
  });

  it('rejects songs whose id, genre or an artist holds a NUL, which PostgreSQL text cannot store', () => {
    expect(checkSong(['t\u0000', 'a', 'g', '1'], songHeader)).to.deep.equal({ ok: false, reason: 'value_too_long' });
    expect(checkSong(['t', 'a;b\u0000c', 'g', '1'], songHeader)).to.deep.equal({ ok: false, reason: 'value_too_long' });
    expect(checkSong(['t', 'a', '\u0000', '1'], songHeader)).to.deep.equal({ ok: false, reason: 'value_too_long' });
    // Other control characters are storable and stay valid.
    expect(checkSong(['t\u0001', 'a\u001b[31m', 'g\u007f', '1'], songHeader).ok).to.equal(true);
    // An empty artist name (dropped) holding nothing is not a NUL; a NUL in an extra column does not matter.
    expect(checkSong(['t', ';;', 'g', '1'], songHeader).ok).to.equal(true);
  });

  it('keeps users of unknown age and rejects empty ids', () => {
    const h = resolveHeader('users', ['user_id', 'user_age', 'user_country'], ['user_id', 'user_age', 'user_country']);
    expect(checkUser([' u1 ', ' 30 ', 'DE'], h)).to.deep.equal({ ok: true, userId: 'u1', ageGroup: 1 });
    expect(checkUser(['u1', 'abc', 'DE'], h)).to.deep.equal({ ok: true, userId: 'u1', ageGroup: -1 });
    expect(checkUser(['', '30', 'DE'], h)).to.deep.equal({ ok: false, reason: 'missing_user_id' });
  });
});
