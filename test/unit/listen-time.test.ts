import { expect } from 'chai';
import { dateToDay, dayToDate, hourKeyToDate, hourKeyToHour, parseListenTime } from '../../lib/domain/listen-time.js';

/** The hour key an instant should get, computed independently through Date. */
function key(y: number, mo: number, d: number, h: number, mi = 0, offsetMinutes = 0): number {
  return Math.floor((Date.UTC(y, mo - 1, d, h, mi) / 60000 - offsetMinutes) / 60);
}

/**
 * A reference implementation: a regex for the shape, Date.UTC round-trip for the calendar.
 * Slow, but written differently enough from the scanner to make a useful differential oracle.
 */
const SHAPE = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|([+-])(\d{2}):?(\d{2}))?$/;
function reference(s: string): number {
  const m = SHAPE.exec(s);
  if (m === null) return NaN;
  if (m[8] !== undefined && m[8] !== 'Z' && m[8].length !== 6 && m[8].length !== 5) return NaN;
  if (m[8] !== undefined && m[8].length === 6 && m[8][3] !== ':') return NaN;
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map(Number);
  if (y === 0 || h > 23 || mi > 59 || sec > 59) return NaN;
  const probe = new Date(0);
  probe.setUTCFullYear(y, mo - 1, d);
  if (probe.getUTCFullYear() !== y || probe.getUTCMonth() !== mo - 1 || probe.getUTCDate() !== d) return NaN;
  let offset = 0;
  if (m[9] !== undefined) {
    const oh = Number(m[10]);
    const om = Number(m[11]);
    if (oh > 23 || om > 59) return NaN;
    offset = (m[9] === '+' ? 1 : -1) * (oh * 60 + om);
  }
  probe.setUTCHours(h, mi, 0, 0);
  return Math.floor((probe.getTime() / 60000 - offset) / 60);
}

describe('listen-time', () => {
  describe('parseListenTime: accepted formats', () => {
    const cases: [string, number][] = [
      ['2024-03-10 14:05:09', key(2024, 3, 10, 14)],
      ['2024-03-10T14:05:09', key(2024, 3, 10, 14)],
      ['2024-03-10T14:05:09Z', key(2024, 3, 10, 14)],
      ['2024-03-10 14:05:09Z', key(2024, 3, 10, 14)],
      ['2024-03-10T14:05:09.1', key(2024, 3, 10, 14)],
      ['2024-03-10T14:05:09.123456', key(2024, 3, 10, 14)],
      ['2024-03-10T14:05:09.123456789123Z', key(2024, 3, 10, 14)],
      ['2024-03-10T14:05:09+02:00', key(2024, 3, 10, 12)],
      ['2024-03-10T14:05:09+0200', key(2024, 3, 10, 12)],
      ['2024-03-10T14:05:09-02:00', key(2024, 3, 10, 16)],
      ['2024-03-10T14:05:09-0200', key(2024, 3, 10, 16)],
      ['2024-03-10T14:05:09+00:00', key(2024, 3, 10, 14)],
      ['2024-03-10T14:05:09-00:00', key(2024, 3, 10, 14)],
      ['2024-03-10T14:05:09.5+02:00', key(2024, 3, 10, 12)],
      ['2024-03-10 14:05:09.999-0200', key(2024, 3, 10, 16)],
      ['2024-03-10T14:59:59.999999', key(2024, 3, 10, 14)],
      ['2024-03-10T00:00:00', key(2024, 3, 10, 0)],
      ['2024-03-10T23:59:59', key(2024, 3, 10, 23)],
    ];
    for (const [s, want] of cases) {
      it(s, () => expect(parseListenTime(s)).to.equal(want));
    }
  });

  describe('parseListenTime: calendar', () => {
    it('accepts Feb 29 of leap years only (proleptic Gregorian)', () => {
      expect(parseListenTime('2024-02-29 10:00:00')).to.equal(key(2024, 2, 29, 10));
      expect(parseListenTime('2000-02-29 10:00:00')).to.equal(key(2000, 2, 29, 10));
      expect(parseListenTime('1600-02-29 10:00:00')).to.equal(key(1600, 2, 29, 10));
      expect(parseListenTime('2023-02-29 10:00:00')).to.be.NaN;
      expect(parseListenTime('1900-02-29 10:00:00')).to.be.NaN;
      expect(parseListenTime('2100-02-29 10:00:00')).to.be.NaN;
      expect(parseListenTime('2024-02-30 10:00:00')).to.be.NaN;
    });

    it('knows the length of every month', () => {
      const lengths = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
      lengths.forEach((n, i) => {
        const mm = String(i + 1).padStart(2, '0');
        expect(parseListenTime(`2023-${mm}-${n} 00:00:00`), `${mm}-${n}`).to.equal(key(2023, i + 1, n, 0));
        expect(parseListenTime(`2023-${mm}-${n + 1} 00:00:00`), `${mm}-${n + 1}`).to.be.NaN;
      });
    });

    it('rejects month and day 00 or out of range, and year 0000', () => {
      for (const s of ['2024-00-10 10:00:00', '2024-13-10 10:00:00', '2024-01-00 10:00:00', '2024-01-32 10:00:00', '0000-01-01 10:00:00']) {
        expect(parseListenTime(s), s).to.be.NaN;
      }
      expect(parseListenTime('0001-01-01 00:00:00')).to.equal(-719162 * 24);
      expect(parseListenTime('9999-12-31 23:59:59')).to.equal(key(9999, 12, 31, 23));
    });

    it('rejects 24:00:00, minute 60 and leap seconds', () => {
      expect(parseListenTime('2024-01-01 24:00:00')).to.be.NaN;
      expect(parseListenTime('2024-01-01 23:60:00')).to.be.NaN;
      expect(parseListenTime('2024-01-01 23:59:60')).to.be.NaN;
      expect(parseListenTime('2016-12-31T23:59:60Z')).to.be.NaN;
    });

    it('gives dates before 1970 negative keys, and -1 is a real key', () => {
      expect(parseListenTime('1969-12-31T23:59:59Z')).to.equal(-1);
      expect(parseListenTime('1970-01-01T00:30:00+01:00')).to.equal(-1);
      expect(parseListenTime('1969-12-31 22:00:00')).to.equal(-2);
      expect(parseListenTime('1900-01-01 05:00:00')).to.equal(key(1900, 1, 1, 5));
    });
  });

  describe('parseListenTime: the UTC instant must fall in years 0001-9999', () => {
    it('rejects an offset that moves the instant before 0001-01-01 or after 9999-12-31 UTC', () => {
      for (const s of [
        '0001-01-01T00:30:00+01:00',
        '0001-01-01 00:00:00+00:01',
        '0001-01-01T23:00:00+23:59',
        '9999-12-31T23:30:00-01:00',
        '9999-12-31 23:59:59-0001',
        '9999-12-31T00:01:00-23:59',
      ]) {
        expect(parseListenTime(s), s).to.be.NaN;
      }
    });

    it('keeps the first and last hours of the range', () => {
      expect(parseListenTime('0001-01-01T01:00:00+01:00')).to.equal(-719162 * 24);
      expect(parseListenTime('0001-01-01 00:59:59Z')).to.equal(-719162 * 24);
      expect(parseListenTime('0001-01-01T00:00:00-01:00')).to.equal(-719162 * 24 + 1);
      expect(parseListenTime('9999-12-31T22:59:59-01:00')).to.equal(key(9999, 12, 31, 23));
      expect(parseListenTime('9999-12-31T23:59:59+00:00')).to.equal(key(9999, 12, 31, 23));
      expect(hourKeyToDate(parseListenTime('0001-01-02T00:30:00+01:00'))).to.equal('0001-01-01');
      expect(hourKeyToDate(parseListenTime('9999-12-30T23:30:00-01:00'))).to.equal('9999-12-31');
    });
  });

  describe('parseListenTime: offsets shift the instant', () => {
    it('rolls back over a year boundary', () => {
      const k = parseListenTime('2024-01-01T00:30:00+01:00');
      expect(hourKeyToDate(k)).to.equal('2023-12-31');
      expect(hourKeyToHour(k)).to.equal(23);
    });

    it('rolls forward over a year boundary', () => {
      const k = parseListenTime('2023-12-31T23:30:00-0100');
      expect(hourKeyToDate(k)).to.equal('2024-01-01');
      expect(hourKeyToHour(k)).to.equal(0);
    });

    it('rolls over month ends, leap day included', () => {
      expect(hourKeyToDate(parseListenTime('2024-03-01T00:00:00+00:01'))).to.equal('2024-02-29');
      expect(hourKeyToDate(parseListenTime('2023-03-01T00:59:59+01:00'))).to.equal('2023-02-28');
      expect(hourKeyToDate(parseListenTime('2024-02-29T23:00:00-01:00'))).to.equal('2024-03-01');
      expect(hourKeyToDate(parseListenTime('2024-04-30T20:00:00-05:00'))).to.equal('2024-05-01');
    });

    it('counts the minutes of the offset and of the time', () => {
      expect(parseListenTime('2024-03-10T10:20:00+05:30')).to.equal(key(2024, 3, 10, 4));
      expect(parseListenTime('2024-03-10T10:40:00+05:30')).to.equal(key(2024, 3, 10, 5));
      expect(parseListenTime('2024-03-10T10:20:00-09:30')).to.equal(key(2024, 3, 10, 19));
      expect(parseListenTime('2024-03-10T10:40:00-09:30')).to.equal(key(2024, 3, 10, 20));
      expect(parseListenTime('2024-03-10T00:00:00+23:59')).to.equal(key(2024, 3, 9, 0, 1));
      expect(parseListenTime('2024-03-10T23:59:59-23:59')).to.equal(key(2024, 3, 11, 23, 58));
    });
  });

  describe('parseListenTime: everything else is invalid', () => {
    const bad = [
      '',
      ' ',
      '2024-03-10',
      '2024-03-10 14:05',
      '2024-03-10T14:05',
      '2024-03-10 14:5:09',
      '2024-3-10 14:05:09',
      '24-03-10 14:05:09',
      '2024/03/10 14:05:09',
      '2024-03-10t14:05:09',
      '2024-03-10_14:05:09',
      '2024-03-10  14:05:09',
      '2024-03-10 14:05:09z',
      '2024-03-10 14:05:09 Z',
      '2024-03-10 14:05:09Zx',
      '2024-03-10 14:05:09ZZ',
      '2024-03-10 14:05:09Z+01:00',
      '2024-03-10 14:05:09x',
      '2024-03-10 14:05:09 ',
      ' 2024-03-10 14:05:09',
      '2024-03-10 14:05:09.',
      '2024-03-10 14:05:09.Z',
      '2024-03-10 14:05:09,123',
      '2024-03-10 14:05:09.12a',
      '2024-03-10 14:05:09.1.2',
      '2024-03-10 14:05:09+01',
      '2024-03-10 14:05:09+1:00',
      '2024-03-10 14:05:09+01:0',
      '2024-03-10 14:05:09+01:000',
      '2024-03-10 14:05:09+010',
      '2024-03-10 14:05:09+01000',
      '2024-03-10 14:05:09+01-00',
      '2024-03-10 14:05:09+24:00',
      '2024-03-10 14:05:09+01:60',
      '2024-03-10 14:05:09 +01:00',
      '2024-03-10 14:05:09UTC',
      '+2024-03-10 14:05:09',
      '-2024-03-10 14:05:09',
      '2024-03-10 14:05:-9',
      '2024-03-10 14:05:+9',
      '２０２４-03-10 14:05:09',
      '2024-03-10 14:05:09\n',
      'not a time at all, no',
      '1710079509',
    ];
    for (const s of bad) {
      it(JSON.stringify(s), () => expect(parseListenTime(s)).to.be.NaN);
    }
  });

  it('agrees with a regex + Date reference on mutated inputs', () => {
    const seeds = ['2024-02-29T23:59:59.5+05:30', '1999-12-31 00:00:00-0130', '2023-02-28T12:00:00Z', '2000-01-01 23:59:59'];
    const alphabet = '0123456789-: T.Z+zt9';
    let state = 12345;
    const rand = (n: number): number => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state % n;
    };
    let valid = 0;
    for (let i = 0; i < 50_000; i++) {
      let s = seeds[rand(seeds.length)];
      for (let m = rand(3); m >= 0; m--) {
        const at = rand(s.length + 1);
        const c = alphabet[rand(alphabet.length)];
        const op = rand(3);
        s =
          op === 0 ? s.slice(0, at) + c + s.slice(at + 1) : op === 1 ? s.slice(0, at) + c + s.slice(at) : s.slice(0, at) + s.slice(at + 1);
      }
      const want = reference(s);
      if (want === want) valid++;
      expect(parseListenTime(s), s).to.deep.equal(want);
    }
    expect(valid).to.be.greaterThan(1000);
  });

  describe('calendar helpers', () => {
    it('dayToDate and dateToDay are inverse, and agree with Date, over 1600-2400', () => {
      const first = dateToDay('1600-01-01');
      const last = dateToDay('2400-12-31');
      const wrong: string[] = [];
      for (let d = first; d <= last; d++) {
        const date = dayToDate(d);
        if (dateToDay(date) !== d || date !== new Date(d * 86400000).toISOString().slice(0, 10)) wrong.push(`${d}`);
      }
      expect(wrong).to.deep.equal([]);
      expect(dayToDate(0)).to.equal('1970-01-01');
      expect(dayToDate(-1)).to.equal('1969-12-31');
      expect(dateToDay('0001-01-01')).to.equal(-719162);
      expect(dayToDate(-719162)).to.equal('0001-01-01');
    });

    it('dateToDay rejects anything but a real YYYY-MM-DD date', () => {
      for (const s of ['', '2024-02-30', '2024-1-01', '2024-01-01 ', '2024-01-01T00', '0000-01-01', '2024/01/01']) {
        expect(dateToDay(s), s).to.be.NaN;
      }
    });

    it('splits hour keys into date and hour, before 1970 too', () => {
      const k = parseListenTime('2024-07-04 17:30:00');
      expect(hourKeyToDate(k)).to.equal('2024-07-04');
      expect(hourKeyToHour(k)).to.equal(17);
      expect(hourKeyToDate(-1)).to.equal('1969-12-31');
      expect(hourKeyToHour(-1)).to.equal(23);
      expect(hourKeyToHour(-24)).to.equal(0);
      expect(hourKeyToDate(-24)).to.equal('1969-12-31');
      expect(hourKeyToDate(-25)).to.equal('1969-12-30');
    });
  });
});
