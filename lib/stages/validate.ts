// Validation per spec §1-§3: header checks, dimension loading (songs, users), the
// classification of each stream row into complete or exactly one reject reason, and the
// `detail` that the rejects CSV gives for each reason.

import type { SongRejectReason, UserRejectReason } from '../domain/reject-reasons.js';
import { MkpiError } from '../domain/errors.js';
import { exceedsCodePoints } from '../domain/text.js';
import type { ReduceDims } from './reduce.js';
import { DEFAULT_MAX_RECORD_CHARS, FLAG_TOO_LONG, FLAG_UNTERMINATED, detachField } from './parse.js';
import { dateToDay, parseListenTime } from '../domain/listen-time.js';
import {
  REASON_BAD_LISTEN_TIME,
  REASON_MALFORMED,
  REASON_MISSING_TRACK_ID,
  REASON_MISSING_USER_ID,
  REASON_UNKNOWN_TRACK,
  REASON_UNKNOWN_USER,
} from '../domain/reject-reasons.js';

export const SONG_COLUMNS = ['track_id', 'artists', 'track_genre', 'duration_ms'] as const;
export const USER_COLUMNS = ['user_id', 'user_age', 'user_country'] as const;
export const STREAM_COLUMNS = ['user_id', 'track_id', 'listen_time'] as const;

export const MAX_VALUE_LENGTH = 255;

/** A stream row that feeds the KPIs; otherwise `reason` is the index of its REJECT_REASONS code. */
export const COMPLETE = -1;

/**
 * The outcome of checking one stream row. One object is reused for every row of a scan, so the
 * hot loop allocates nothing: checkStreamRow overwrites it.
 */
export interface StreamRowCheck {
  reason: number;
  /** Hours since the epoch (UTC) of listen_time; NaN when it is not valid or not reached. */
  hourKey: number;
  track: number;
  user: number;
}

export function newStreamRowCheck(): StreamRowCheck {
  return { reason: COMPLETE, hourKey: NaN, track: -1, user: -1 };
}

/**
 * Classifies one stream row (contract §5): complete, or exactly one reject reason, checked in
 * the contract's order — malformed, missing_user_id, missing_track_id, bad_listen_time,
 * unknown_track, unknown_user. `flag` is the parser's record flag (non-zero: the record is
 * broken, e.g. an unterminated quote).
 */
export function checkStreamRow(
  out: StreamRowCheck,
  fields: string[],
  flag: number,
  h: ResolvedHeader,
  tracks: IdLookup,
  users: IdLookup,
): StreamRowCheck {
  out.hourKey = NaN;
  out.track = -1;
  out.user = -1;
  if (flag !== 0 || fields.length !== h.fieldCount) return reasonIs(out, REASON_MALFORMED);
  const userId = fields[h.indexes[0]].trim();
  if (userId === '') return reasonIs(out, REASON_MISSING_USER_ID);
  const trackId = fields[h.indexes[1]].trim();
  if (trackId === '') return reasonIs(out, REASON_MISSING_TRACK_ID);
  const hourKey = parseListenTime(fields[h.indexes[2]].trim());
  if (hourKey !== hourKey) return reasonIs(out, REASON_BAD_LISTEN_TIME);
  out.hourKey = hourKey;
  const track = tracks.get(trackId);
  if (track < 0) return reasonIs(out, REASON_UNKNOWN_TRACK);
  out.track = track;
  const user = users.get(userId);
  if (user < 0) return reasonIs(out, REASON_UNKNOWN_USER);
  out.user = user;
  return reasonIs(out, COMPLETE);
}

/** What checkStreamRow needs of an ID index: the dense index of an ID, or -1. */
export interface IdLookup {
  get(id: string): number;
}

function reasonIs(out: StreamRowCheck, reason: number): StreamRowCheck {
  out.reason = reason;
  return out;
}

export interface ResolvedHeader {
  /** Column index of each required column, in the order asked. */
  indexes: number[];
  fieldCount: number;
  /** Header names that appear more than once (the first occurrence is used). */
  duplicates: string[];
}

/**
 * Header names match exactly after trimming; extra columns are ignored. A missing required
 * column is a schema failure. A repeated name resolves to its first occurrence, reported
 * as a warning, as pandas and DuckDB readers would rename the later ones.
 */
export function resolveHeader(file: string, fields: string[] | null, required: readonly string[]): ResolvedHeader {
  const names = (fields ?? []).map((f) => f.trim());
  const first = new Map<string, number>();
  const duplicates = new Set<string>();
  names.forEach((n, i) => (first.has(n) ? duplicates.add(n) : first.set(n, i)));
  const missing = required.filter((c) => !first.has(c));
  if (missing.length > 0) {
    throw new MkpiError(
      'MKPI_SCHEMA',
      fields === null
        ? `${file}: the file is empty (no header row); required columns: ${required.join(', ')}`
        : `${file}: missing required column${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`,
      {
        hint: `the header must name ${required.join(', ')} (exact, case-sensitive, surrounding spaces ignored)`,
        details: { file, missing },
      },
    );
  }
  return { indexes: required.map((c) => first.get(c)!), fieldCount: names.length, duplicates: [...duplicates] };
}

const DECIMAL = /^[0-9]+(\.[0-9]+)?$/;
const DIGITS = /^[0-9]+$/;

/** Age group index per spec §4 (0 = 18-25 … 5 = 66+), or -1 for an unknown age. */
export function ageGroupOf(raw: string): number {
  if (!DIGITS.test(raw)) return -1;
  const age = Number(raw);
  if (age < 1 || age > 120) return -1;
  if (age <= 25) return 0;
  if (age >= 66) return 5;
  return Math.floor((age - 26) / 10) + 1;
}

/** The artist names of an artists value: split on ';', trimmed, empties dropped, repeats credited once. */
export function splitArtists(raw: string): string[] {
  const out: string[] = [];
  for (const part of raw.split(';')) {
    const name = part.trim();
    if (name !== '' && !out.includes(name)) out.push(name);
  }
  return out;
}

/**
 * Why a song value cannot land in a VARCHAR(255) KPI column, or undefined when it can: over 255
 * characters (spec §2), or holding a U+0000, which PostgreSQL text cannot hold at all (the load
 * would fail). A NUL is counted as `value_too_long` rather than silently stripped or replaced:
 * either would make two distinct genres or IDs collide in the tables' primary keys.
 */
function unstorable(name: string, value: string): string | undefined {
  if (exceedsCodePoints(value, MAX_VALUE_LENGTH)) {
    return `${name} ${shown(value)} is ${codePoints(value)} characters, more than ${MAX_VALUE_LENGTH}`;
  }
  if (value.includes('\0')) return `${name} ${shown(value)} contains U+0000`;
  return undefined;
}

/**
 * Whether a stream row's track_id could be that of a valid song: one over 255 characters or
 * holding U+0000 never is (checkSong rejects it as value_too_long), so its row is unknown_track
 * whatever the songs file holds.
 */
export function couldBeSongId(trackId: string): boolean {
  return unstorable('track_id', trackId) === undefined;
}

export type SongCheck =
  | { ok: true; trackId: string; genre: string; durationMs: number; artists: string[] }
  | { ok: false; reason: SongRejectReason; detail: string };

/** Checks a song row (contract §3.2); `flag` is the parser's record flag, as for checkStreamRow. */
export function checkSong(fields: string[], h: ResolvedHeader, flag = 0): SongCheck {
  if (flag !== 0 || fields.length !== h.fieldCount) return { ok: false, reason: 'malformed', detail: malformedDetail(fields, flag, h) };
  const [iId, iArtists, iGenre, iDur] = h.indexes;
  const trackId = fields[iId].trim();
  const genre = fields[iGenre].trim();
  const dur = fields[iDur].trim();
  if (trackId === '') return { ok: false, reason: 'missing_track_id', detail: emptyDetail('track_id', fields[iId]) };
  if (genre === '') return { ok: false, reason: 'missing_track_genre', detail: emptyDetail('track_genre', fields[iGenre]) };
  if (!DECIMAL.test(dur)) {
    const detail = dur === '' ? emptyDetail('duration_ms', fields[iDur]) : `duration_ms ${shown(dur)} is not a plain decimal`;
    return { ok: false, reason: 'bad_duration_ms', detail };
  }
  const artists = splitArtists(fields[iArtists]);
  let tooLong = unstorable('track_id', trackId) ?? unstorable('track_genre', genre);
  for (let i = 0; tooLong === undefined && i < artists.length; i++) tooLong = unstorable('artist', artists[i]);
  if (tooLong !== undefined) return { ok: false, reason: 'value_too_long', detail: tooLong };
  return { ok: true, trackId, genre, durationMs: Number(dur), artists };
}

export type UserCheck = { ok: true; userId: string; ageGroup: number } | { ok: false; reason: UserRejectReason; detail: string };

/** Checks a user row (contract §3.3); `flag` is the parser's record flag, as for checkStreamRow. */
export function checkUser(fields: string[], h: ResolvedHeader, flag = 0): UserCheck {
  if (flag !== 0 || fields.length !== h.fieldCount) return { ok: false, reason: 'malformed', detail: malformedDetail(fields, flag, h) };
  const [iId, iAge] = h.indexes;
  const userId = fields[iId].trim();
  if (userId === '') return { ok: false, reason: 'missing_user_id', detail: emptyDetail('user_id', fields[iId]) };
  return { ok: true, userId, ageGroup: ageGroupOf(fields[iAge].trim()) };
}

/** The dimension files' lake keys, named in the rejects' details (`… is not a valid song in songs.csv`). */
export interface DimensionFiles {
  songs: string;
  users: string;
}

/** Builds the interned dimensions incrementally; the first valid row of an ID wins. */
export class DimensionsBuilder {
  private readonly songIndex = new Map<string, number>();
  /** Line of the row that holds each track (by dense index), and of each user: what a duplicate names. */
  private readonly songLine: number[] = [];
  private readonly userLine: number[] = [];
  private readonly trackIds: string[] = [];
  private readonly genreIndex = new Map<string, number>();
  private readonly genres: string[] = [];
  private readonly artistIndex = new Map<string, number>();
  private readonly artists: string[] = [];
  private readonly trackGenre: number[] = [];
  private readonly trackDuration: number[] = [];
  private readonly artistStart: number[] = [0];
  private readonly artistList: number[] = [];
  private readonly userIndex = new Map<string, number>();
  private readonly userAge: number[] = [];
  duplicateSongs = 0;
  duplicateUsers = 0;

  constructor(private readonly files: DimensionFiles = { songs: 'songs.csv', users: 'users.csv' }) {}

  /**
   * Adds a valid song row read at `line`. Returns undefined when it enters the dimension, or the
   * line of the earlier row that holds its track_id when it is a duplicate (and is left out).
   */
  addSong(s: Extract<SongCheck, { ok: true }>, line = 0): number | undefined {
    // Dimension strings live for the whole run: detach them from the parser's chunk text. First,
    // so that the lookup and the insert hash the same string once (a copy hashes afresh).
    const trackId = detachField(s.trackId);
    const first = this.songIndex.get(trackId);
    if (first !== undefined) {
      this.duplicateSongs++;
      return this.songLine[first];
    }
    this.songLine.push(line);
    this.songIndex.set(trackId, this.trackIds.length);
    this.trackIds.push(trackId);
    let g = this.genreIndex.get(s.genre);
    if (g === undefined) {
      g = this.genres.length;
      const genre = detachField(s.genre);
      this.genreIndex.set(genre, g);
      this.genres.push(genre);
    }
    this.trackGenre.push(g);
    this.trackDuration.push(s.durationMs);
    for (const name of s.artists) {
      let a = this.artistIndex.get(name);
      if (a === undefined) {
        a = this.artists.length;
        const artist = detachField(name);
        this.artistIndex.set(artist, a);
        this.artists.push(artist);
      }
      this.artistList.push(a);
    }
    this.artistStart.push(this.artistList.length);
    return undefined;
  }

  /** Adds a valid user row read at `line`; returns as addSong does. */
  addUser(u: Extract<UserCheck, { ok: true }>, line = 0): number | undefined {
    const userId = detachField(u.userId);
    const first = this.userIndex.get(userId);
    if (first !== undefined) {
      this.duplicateUsers++;
      return this.userLine[first];
    }
    this.userLine.push(line);
    this.userIndex.set(userId, this.userAge.length);
    this.userAge.push(u.ageGroup);
    return undefined;
  }

  build(): Dimensions {
    return {
      songIndex: this.songIndex,
      userIndex: this.userIndex,
      trackCount: this.trackIds.length,
      userCount: this.userAge.length,
      trackIds: this.trackIds,
      trackGenre: Int32Array.from(this.trackGenre),
      genres: this.genres,
      trackDurationMs: Float64Array.from(this.trackDuration),
      artistStart: Int32Array.from(this.artistStart),
      artistList: Int32Array.from(this.artistList),
      artists: this.artists,
      userAgeGroup: Int8Array.from(this.userAge),
      duplicateSongs: this.duplicateSongs,
      duplicateUsers: this.duplicateUsers,
      songsFile: this.files.songs,
      usersFile: this.files.users,
    };
  }
}

export interface Dimensions extends ReduceDims {
  songIndex: Map<string, number>;
  userIndex: Map<string, number>;
  duplicateSongs: number;
  duplicateUsers: number;
  /** Lake keys the dimensions were read from. */
  songsFile: string;
  usersFile: string;
}

// The rejects CSV's `detail` (contract §5.4): a few words on why a row was left out. Built only
// for a row that is rejected, never on the path of a complete row, so the scan stays as fast.

/** Values longer than this (in code points) are cut in a detail; the raw column has them whole. */
const SHOWN_MAX = 64;

/** A value as a detail quotes it: JSON-escaped (quotes, controls and U+0000 stay visible), cut when long. */
export function shown(value: string): string {
  if (value.length <= SHOWN_MAX) return JSON.stringify(value);
  let n = 0;
  let end = 0;
  for (const ch of value) {
    if (n++ === SHOWN_MAX) return `${JSON.stringify(value.slice(0, end))}…`;
    end += ch.length;
  }
  return JSON.stringify(value);
}

function codePoints(value: string): number {
  let n = 0;
  for (const _ of value) n++;
  return n;
}

function emptyDetail(column: string, raw: string): string {
  return raw === '' ? `${column} is empty` : `${column} is only whitespace`;
}

/** Why a record is `malformed`: the parser's flag, else its number of fields. */
export function malformedDetail(fields: readonly string[], flag: number, h: ResolvedHeader): string {
  if (flag === FLAG_TOO_LONG) return `record over ${DEFAULT_MAX_RECORD_CHARS} characters, not kept`;
  if (flag === FLAG_UNTERMINATED) return 'quote never closed: the record runs to the end of the file';
  return `${fields.length} field${fields.length === 1 ? '' : 's'}, header has ${h.fieldCount}`;
}

/** The file names a stream reject's detail refers to (the dimensions' lake keys). */
export interface DetailDims {
  songsFile: string;
  usersFile: string;
}

/**
 * The detail of a stream row that checkStreamRow rejected with `reason` (a REJECT_REASONS index).
 * It re-reads the row rather than keeping notes in the hot check, which stays allocation-free.
 */
export function streamRejectDetail(reason: number, fields: readonly string[], flag: number, h: ResolvedHeader, dims: DetailDims): string {
  switch (reason) {
    case REASON_MALFORMED:
      return malformedDetail(fields, flag, h);
    case REASON_MISSING_USER_ID:
      return emptyDetail('user_id', fields[h.indexes[0]]);
    case REASON_MISSING_TRACK_ID:
      return emptyDetail('track_id', fields[h.indexes[1]]);
    case REASON_BAD_LISTEN_TIME:
      return listenTimeDetail(fields[h.indexes[2]]);
    case REASON_UNKNOWN_TRACK:
      return `track_id ${shown(fields[h.indexes[1]].trim())} is not a valid song in ${dims.songsFile}`;
    case REASON_UNKNOWN_USER:
      return `user_id ${shown(fields[h.indexes[0]].trim())} is not a valid user in ${dims.usersFile}`;
    default:
      throw new Error(`not a reject reason: ${reason}`);
  }
}

/** The detail of a dimension row left out because an earlier valid row holds its ID (contract §4.1). */
export function duplicateDetail(column: 'track_id' | 'user_id', id: string, firstLine: number): string {
  return `${column} ${shown(id)} first seen on line ${firstLine}`;
}

/** The detail of a `bad_listen_time` row, from its listen_time field as read. */
export function listenTimeDetail(raw: string): string {
  const s = raw.trim();
  if (s === '') return emptyDetail('listen_time', raw);
  return `listen_time ${shown(s)}: ${listenTimeProblem(s) ?? 'does not parse'}`;
}

const isDigit = (s: string, i: number): boolean => {
  const c = s.charCodeAt(i);
  return c >= 48 && c <= 57;
};
const digitsAt = (s: string, from: number, to: number): boolean => {
  for (let i = from; i < to; i++) if (!isDigit(s, i)) return false;
  return true;
};
const ZONE = /^[+-]([0-9]{2}):?([0-9]{2})$/;

/**
 * What is wrong with a trimmed listen_time (contract §3.5, §3.6), read left to right, or
 * undefined when parseListenTime accepts it. It follows parseListenTime's rules but not its
 * speed: it runs once per rejected row only.
 */
export function listenTimeProblem(s: string): string | undefined {
  if (!(s.length >= 10 && digitsAt(s, 0, 4) && s[4] === '-' && digitsAt(s, 5, 7) && s[7] === '-' && digitsAt(s, 8, 10))) {
    return 'the date is not YYYY-MM-DD';
  }
  const yyyy = s.slice(0, 4);
  const mm = s.slice(5, 7);
  const dd = s.slice(8, 10);
  if (yyyy === '0000') return 'year 0000';
  if (mm === '00' || Number(mm) > 12) return `month ${mm}`;
  if (dd === '00' || Number.isNaN(dateToDay(s.slice(0, 10)))) return `day ${dd} is not in ${yyyy}-${mm}`;
  if (s.length === 10) return 'a date without a time';
  if (s[10] !== ' ' && s[10] !== 'T') return `${shown(s[10])} between date and time, not a space or T`;
  if (!(s.length >= 19 && digitsAt(s, 11, 13) && s[13] === ':' && digitsAt(s, 14, 16) && s[16] === ':' && digitsAt(s, 17, 19))) {
    return 'the time is not HH:MM:SS';
  }
  if (Number(s.slice(11, 13)) > 23) return `hour ${s.slice(11, 13)}`;
  if (Number(s.slice(14, 16)) > 59) return `minute ${s.slice(14, 16)}`;
  if (Number(s.slice(17, 19)) > 59) return `second ${s.slice(17, 19)}`;
  let i = 19;
  if (s[i] === '.') {
    const start = ++i;
    while (i < s.length && isDigit(s, i)) i++;
    if (i === start) return 'no digits after "."';
  }
  const zone = s.slice(i);
  if (zone !== '' && zone !== 'Z') {
    const m = ZONE.exec(zone);
    if (m === null) return `${shown(zone)} after the time is not a zone (Z, +HH:MM or +HHMM)`;
    if (Number(m[1]) > 23) return `offset hour ${m[1]}`;
    if (Number(m[2]) > 59) return `offset minute ${m[2]}`;
  }
  // Every part is well formed: only the UTC instant's range is left (an offset past year 0001 or 9999).
  return Number.isNaN(parseListenTime(s)) ? 'in UTC it falls outside years 0001-9999' : undefined;
}
