// Validation per spec §1-§3: header checks, dimension loading (songs, users) and the
// classification of each stream row into complete or exactly one reject reason.

import type { SongRejectReason, UserRejectReason } from '../domain/reject-reasons.js';
import { MkpiError } from '../domain/errors.js';
import { exceedsCodePoints } from '../domain/text.js';
import type { ReduceDims } from './reduce.js';
import { detachField } from './parse.js';
import { parseListenTime } from '../domain/listen-time.js';
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
 * Whether a song value can land in a VARCHAR(255) KPI column: at most 255 characters (spec §2),
 * and no U+0000, which PostgreSQL text cannot hold at all (the load would fail). A NUL is
 * counted as `value_too_long` rather than silently stripped or replaced: either would make
 * two distinct genres or IDs collide in the tables' primary keys.
 */
function storable(value: string): boolean {
  return !exceedsCodePoints(value, MAX_VALUE_LENGTH) && !value.includes('\0');
}

export type SongCheck =
  { ok: true; trackId: string; genre: string; durationMs: number; artists: string[] } | { ok: false; reason: SongRejectReason };

export function checkSong(fields: string[], h: ResolvedHeader): SongCheck {
  if (fields.length !== h.fieldCount) return { ok: false, reason: 'malformed' };
  const [iId, iArtists, iGenre, iDur] = h.indexes;
  const trackId = fields[iId].trim();
  const genre = fields[iGenre].trim();
  const dur = fields[iDur].trim();
  if (trackId === '') return { ok: false, reason: 'missing_track_id' };
  if (genre === '') return { ok: false, reason: 'missing_track_genre' };
  if (!DECIMAL.test(dur)) return { ok: false, reason: 'bad_duration_ms' };
  const artists = splitArtists(fields[iArtists]);
  if (!storable(trackId) || !storable(genre) || !artists.every(storable)) {
    return { ok: false, reason: 'value_too_long' };
  }
  return { ok: true, trackId, genre, durationMs: Number(dur), artists };
}

export type UserCheck = { ok: true; userId: string; ageGroup: number } | { ok: false; reason: UserRejectReason };

export function checkUser(fields: string[], h: ResolvedHeader): UserCheck {
  if (fields.length !== h.fieldCount) return { ok: false, reason: 'malformed' };
  const [iId, iAge] = h.indexes;
  const userId = fields[iId].trim();
  if (userId === '') return { ok: false, reason: 'missing_user_id' };
  return { ok: true, userId, ageGroup: ageGroupOf(fields[iAge].trim()) };
}

/** Builds the interned dimensions incrementally; the first valid row of an ID wins. */
export class DimensionsBuilder {
  private readonly songIndex = new Map<string, number>();
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

  addSong(s: Extract<SongCheck, { ok: true }>): void {
    if (this.songIndex.has(s.trackId)) {
      this.duplicateSongs++;
      return;
    }
    // Dimension strings live for the whole run: detach them from the parser's chunk text.
    const trackId = detachField(s.trackId);
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
  }

  addUser(u: Extract<UserCheck, { ok: true }>): void {
    if (this.userIndex.has(u.userId)) {
      this.duplicateUsers++;
      return;
    }
    this.userIndex.set(detachField(u.userId), this.userAge.length);
    this.userAge.push(u.ageGroup);
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
    };
  }
}

export interface Dimensions extends ReduceDims {
  songIndex: Map<string, number>;
  userIndex: Map<string, number>;
  duplicateSongs: number;
  duplicateUsers: number;
}
