// listen_time (spec §2) -> UTC hour key, and the calendar helpers around it.
//
// parseListenTime runs once per stream row (5M+ per run), so it is a charCodeAt scanner with
// integer civil-from-days arithmetic: no Date, no regex, no allocation. Date.parse would also
// be wrong here: it accepts many more formats and normalises impossible dates like 02-30.
//
// Invalid input yields NaN, not -1: the key is epochDay * 24 + hour with negative days before
// 1970, so -1 is a real key (1969-12-31 23h UTC). Test validity with `key !== key` or
// Number.isNaN.

const MINUS = 45;
const COLON = 58;
const DOT = 46;
const SPACE = 32;
const UPPER_T = 84;
const UPPER_Z = 90;
const PLUS = 43;

/** Value of the two decimal digits at s[i], s[i+1], or -1. The caller guarantees i + 1 < s.length. */
function twoDigits(s: string, i: number): number {
  const a = s.charCodeAt(i) - 48;
  const b = s.charCodeAt(i + 1) - 48;
  // Unsigned compare folds the "below '0'" case into the "above '9'" one.
  if (a >>> 0 > 9 || b >>> 0 > 9) return -1;
  return a * 10 + b;
}

function isLeap(y: number): boolean {
  return y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
}

function daysInMonth(y: number, m: number): number {
  if (m === 2) return isLeap(y) ? 29 : 28;
  // 31 for Jan, Mar, May, Jul, Aug, Oct, Dec: odd months up to July, even ones from August.
  return 30 + ((m + (m >> 3)) & 1);
}

/**
 * Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil), for
 * years >= 1 only: the year is shifted to start in March, so that year - 1 >= 0 and every
 * division below is a truncating one on non-negative numbers.
 */
function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = (yy / 400) | 0;
  const yoe = yy - era * 400;
  const doy = (((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5) | 0) + d - 1;
  const doe = yoe * 365 + ((yoe / 4) | 0) - ((yoe / 100) | 0) + doy;
  return era * 146097 + doe - 719468;
}

/** Hour keys of 0001-01-01 00h and 9999-12-31 23h UTC: the range of a YYYY-MM-DD listen_date. */
const MIN_HOUR_KEY = daysFromCivil(1, 1, 1) * 24;
const MAX_HOUR_KEY = daysFromCivil(9999, 12, 31) * 24 + 23;

/** Epoch day of a YYYY-MM-DD date at s[0..9], or NaN when it is not a real date. */
function scanDate(s: string): number {
  const yh = twoDigits(s, 0);
  const yl = twoDigits(s, 2);
  const month = twoDigits(s, 5);
  const day = twoDigits(s, 8);
  if (yh < 0 || yl < 0 || month < 1 || month > 12 || day < 1) return NaN;
  if (s.charCodeAt(4) !== MINUS || s.charCodeAt(7) !== MINUS) return NaN;
  const year = yh * 100 + yl;
  if (year === 0 || day > daysInMonth(year, month)) return NaN;
  return daysFromCivil(year, month, day);
}

/**
 * UTC hour key (epochDay * 24 + hour) of a trimmed listen_time, or NaN when it is not one of
 * the formats of spec §2 or its UTC instant falls outside years 0001-9999.
 */
export function parseListenTime(s: string): number {
  const n = s.length;
  if (n < 19) return NaN;
  const sep = s.charCodeAt(10);
  if (sep !== SPACE && sep !== UPPER_T) return NaN;
  const hour = twoDigits(s, 11);
  const min = twoDigits(s, 14);
  const sec = twoDigits(s, 17);
  if (hour < 0 || hour > 23 || min < 0 || min > 59 || sec < 0 || sec > 59) return NaN;
  if (s.charCodeAt(13) !== COLON || s.charCodeAt(16) !== COLON) return NaN;
  const day = scanDate(s);
  if (day !== day) return NaN;

  let i = 19;
  if (i < n && s.charCodeAt(i) === DOT) {
    const start = ++i;
    while (i < n && (s.charCodeAt(i) - 48) >>> 0 <= 9) i++;
    if (i === start) return NaN;
  }
  if (i === n) return day * 24 + hour;

  const z = s.charCodeAt(i);
  if (z === UPPER_Z) return i + 1 === n ? day * 24 + hour : NaN;
  if (z !== PLUS && z !== MINUS) return NaN;
  let oh: number;
  let om: number;
  if (n - i === 6 && s.charCodeAt(i + 3) === COLON) {
    oh = twoDigits(s, i + 1);
    om = twoDigits(s, i + 4);
  } else if (n - i === 5) {
    oh = twoDigits(s, i + 1);
    om = twoDigits(s, i + 3);
  } else {
    return NaN;
  }
  if (oh < 0 || oh > 23 || om < 0 || om > 59) return NaN;
  // The offset is local minus UTC, so UTC = local - offset; minutes matter for offsets like
  // +05:30, which move 10:20 into the 04h UTC hour.
  const offset = oh * 60 + om;
  const utcMinutes = (day * 24 + hour) * 60 + min + (z === PLUS ? -offset : offset);
  const key = Math.floor(utcMinutes / 60);
  // listen_date is a YYYY-MM-DD date (spec §2-§3), so the UTC instant must fall in years
  // 0001-9999 too: an offset can push 0001-01-01 00:30+01:00 into year 0 (which PostgreSQL's
  // DATE cannot take in that form) or 9999-12-31 23:30-01:00 into year 10000.
  return key < MIN_HOUR_KEY || key > MAX_HOUR_KEY ? NaN : key;
}

/** "YYYY-MM-DD" of an epoch day (civil_from_days; any integer day, negative included). */
export function dayToDate(epochDay: number): string {
  const z = epochDay + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  const y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  return `${String(y).padStart(4, '0')}-${m < 10 ? '0' : ''}${m}-${d < 10 ? '0' : ''}${d}`;
}

/** Epoch day of a "YYYY-MM-DD" date, or NaN when the text is not exactly a real date. */
export function dateToDay(date: string): number {
  return date.length === 10 ? scanDate(date) : NaN;
}

export function hourKeyToDate(key: number): string {
  return dayToDate(Math.floor(key / 24));
}

/** Hour of day (0-23) of an hour key; non-negative for keys before 1970 too. */
export function hourKeyToHour(key: number): number {
  return key - Math.floor(key / 24) * 24;
}
