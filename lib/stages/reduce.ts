// KPI reducers (spec §4-§5). Pure: create / add / merge / result, no I/O. State is sized by
// the dimensions (tracks, users) and the number of distinct hours, never by the number of
// listens: per hour, a dense per-track counter, a bitset of listeners and six age-group
// counters. Every KPI of both tables is derived from that at result time.

import type { GenreRow, HourlyRow } from '../domain/kpi.js';
import { compareCodePoints } from '../domain/text.js';
import { dayToDate } from '../domain/listen-time.js';

export const AGE_GROUPS = ['18-25', '26-35', '36-45', '46-55', '56-65', '66+'] as const;

/** The dimension facts the reducers need, with tracks and users interned to dense indexes. */
export interface ReduceDims {
  trackCount: number;
  userCount: number;
  trackIds: readonly string[];
  trackGenre: Int32Array; // track index -> genre index
  genres: readonly string[];
  trackDurationMs: Float64Array;
  /** CSR layout: the artists of track t are artistList[artistStart[t] .. artistStart[t+1]), deduplicated. */
  artistStart: Int32Array;
  artistList: Int32Array;
  artists: readonly string[];
  userAgeGroup: Int8Array; // user index -> age group index, -1 when unknown
}

/**
 * One hour's state. It starts sparse: a log of (track, user) pairs, so that a lake whose rows
 * spread over many hours (a backfill, a year of late data, hostile timestamps) costs memory in
 * proportion to its rows, not hours × catalogue. Once the log would cost half the dense form,
 * the hour turns dense: a counter per track and a bitset of listeners.
 */
export interface HourState {
  count: number;
  tracks: Int32Array | null; // dense: listens per track index
  users: Int32Array | null; // dense: bitset of user indexes
  log: Int32Array | null; // sparse: track, user, track, user, …
  logLen: number; // ints used in `log`
  ages: Float64Array; // listens per age group
}

export interface KpiState {
  trackCount: number;
  userCount: number;
  /** Log length (ints) past which an hour turns dense. */
  denseAt: number;
  hours: Map<number, HourState>; // key: epochDay * 24 + hour
  /**
   * Bumped whenever hours leave the state (takeDay): a reader that caches an hour's object looks
   * it up again when this moved, since another reader of the same state (the thread merging a
   * worker's state, and spilling it) may have taken it out mid-file.
   */
  removals?: number;
}

/**
 * An hour turns dense once its log would hold half the dense form's ints: a log costs 8 B a
 * listen, the dense form 4 B a track plus a bit a user, so a sparse hour never costs more than
 * half a dense one. (A quarter, before: measured, half keeps the hours of a large catalogue and
 * of a long backfill sparse, 40 MB less at 1M tracks with one reader, and no slower.)
 */
const DENSE_SHIFT = 1;

export function create(trackCount: number, userCount: number): KpiState {
  const denseInts = trackCount + ((userCount + 31) >>> 5);
  return { trackCount, userCount, denseAt: Math.max(64, denseInts >>> DENSE_SHIFT), hours: new Map() };
}

function newHour(): HourState {
  return { count: 0, tracks: null, users: null, log: new Int32Array(16), logLen: 0, ages: new Float64Array(AGE_GROUPS.length) };
}

export function hourState(state: KpiState, hourKey: number): HourState {
  let h = state.hours.get(hourKey);
  if (h === undefined) {
    h = newHour();
    state.hours.set(hourKey, h);
  }
  return h;
}

/** Turns a sparse hour dense. */
export function densify(state: KpiState, h: HourState): void {
  if (h.tracks !== null) return;
  const tracks = new Int32Array(state.trackCount);
  const users = new Int32Array((state.userCount + 31) >>> 5);
  const log = h.log!;
  for (let i = 0; i < h.logLen; i += 2) {
    tracks[log[i]]++;
    const u = log[i + 1];
    users[u >>> 5] |= 1 << (u & 31);
  }
  h.tracks = tracks;
  h.users = users;
  h.log = null;
  h.logLen = 0;
}

/** The sparse half of add(): kept out of line so the dense path stays small. */
export function addSparse(state: KpiState, h: HourState, track: number, user: number): void {
  let log = h.log!;
  if (h.logLen + 2 > log.length) {
    if (log.length >= state.denseAt) {
      densify(state, h);
      h.tracks![track]++;
      h.users![user >>> 5] |= 1 << (user & 31);
      return;
    }
    const grown = new Int32Array(Math.min(log.length * 2, state.denseAt + 2));
    grown.set(log);
    h.log = log = grown;
  }
  log[h.logLen++] = track;
  log[h.logLen++] = user;
}

/** Adds one complete listen. ageGroup is -1 for a user of unknown age. */
export function add(state: KpiState, hourKey: number, track: number, user: number, ageGroup: number): void {
  addToHour(state, hourState(state, hourKey), track, user, ageGroup);
}

/** add() for a caller that holds the hour's state already (the scan caches it across rows of one hour). */
export function addToHour(state: KpiState, h: HourState, track: number, user: number, ageGroup: number): void {
  h.count++;
  if (h.tracks !== null) {
    h.tracks[track]++;
    h.users![user >>> 5] |= 1 << (user & 31);
  } else {
    addSparse(state, h, track, user);
  }
  if (ageGroup >= 0) h.ages[ageGroup]++;
}

/** Bytes the state's hours hold (their arrays, plus a little per hour for the objects). */
export function stateBytes(state: KpiState): number {
  let bytes = 0;
  for (const h of state.hours.values()) {
    bytes += 160 + h.ages.byteLength;
    if (h.tracks !== null) bytes += h.tracks.byteLength + h.users!.byteLength;
    else bytes += h.log!.byteLength;
  }
  return bytes;
}

/** Moves one date's hours out of `state` into a state of their own (nothing is copied). */
export function takeDay(state: KpiState, day: number): KpiState {
  const out: KpiState = { trackCount: state.trackCount, userCount: state.userCount, denseAt: state.denseAt, hours: new Map() };
  for (let hour = 0; hour < 24; hour++) {
    const key = day * 24 + hour;
    const h = state.hours.get(key);
    if (h === undefined) continue;
    out.hours.set(key, h);
    state.hours.delete(key);
  }
  if (out.hours.size > 0) state.removals = (state.removals ?? 0) + 1;
  return out;
}

/** Folds `b` into `a` and returns `a`. Both must come from the same dimensions. */
export function merge(a: KpiState, b: KpiState): KpiState {
  if (a.trackCount !== b.trackCount || a.userCount !== b.userCount) {
    throw new Error('cannot merge KPI states built on different dimensions');
  }
  for (const [key, hb] of b.hours) {
    const ha = a.hours.get(key);
    if (ha === undefined) {
      a.hours.set(key, hb);
      continue;
    }
    ha.count += hb.count;
    for (let i = 0; i < ha.ages.length; i++) ha.ages[i] += hb.ages[i];
    if (ha.tracks === null && hb.tracks === null) {
      const log = hb.log!;
      for (let i = 0; i < hb.logLen; i += 2) {
        // addSparse may turn `ha` dense part-way through.
        if (ha.tracks === null) addSparse(a, ha, log[i], log[i + 1]);
        else {
          ha.tracks[log[i]]++;
          ha.users![log[i + 1] >>> 5] |= 1 << (log[i + 1] & 31);
        }
      }
      continue;
    }
    densify(a, ha);
    densify(b, hb);
    const ta = ha.tracks!;
    const tb = hb.tracks!;
    for (let i = 0; i < ta.length; i++) ta[i] += tb[i];
    const ua = ha.users!;
    const ub = hb.users!;
    for (let i = 0; i < ua.length; i++) ua[i] |= ub[i];
  }
  return a;
}

/**
 * What result() reads of one hour, without the listens: the listen count, each distinct track
 * played with its count (ascending), each distinct listener (ascending) and the age-group
 * counts. It is what an hour is worth to a later run (date-state.ts): hours merge by adding
 * counts and joining listeners, so the counts of earlier files stand in for their rows.
 */
export interface HourCounts {
  count: number;
  /** track, listens, track, listens, …, tracks ascending */
  tracks: Int32Array;
  /** listener indexes, ascending */
  users: Int32Array;
  ages: Float64Array;
}

/** One hour's counts (a sparse hour is counted; a dense one read in order). */
export function hourCounts(state: KpiState, h: HourState): HourCounts {
  if (h.tracks !== null) {
    let nt = 0;
    for (let t = 0; t < h.tracks.length; t++) if (h.tracks[t] !== 0) nt++;
    const tracks = new Int32Array(nt * 2);
    for (let t = 0, j = 0; t < h.tracks.length; t++) {
      if (h.tracks[t] === 0) continue;
      tracks[j++] = t;
      tracks[j++] = h.tracks[t];
    }
    const bits = h.users!;
    let nu = 0;
    for (let i = 0; i < bits.length; i++) if (bits[i] !== 0) nu += popcount32(bits[i]);
    const users = new Int32Array(nu);
    for (let i = 0, j = 0; i < bits.length; i++) {
      let w = bits[i];
      while (w !== 0) {
        const low = w & -w;
        users[j++] = i * 32 + (31 - Math.clz32(low));
        w ^= low;
      }
    }
    return { count: h.count, tracks, users, ages: h.ages.slice() };
  }
  // A sparse hour: its tracks and listeners sorted (typed arrays, no Map or Set), then counted in runs.
  const log = h.log!;
  const n = h.logLen >>> 1;
  const ts = new Int32Array(n);
  const us = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    ts[i] = log[2 * i];
    us[i] = log[2 * i + 1];
  }
  ts.sort();
  us.sort();
  let nt = 0;
  for (let i = 0; i < n; i++) if (i === 0 || ts[i] !== ts[i - 1]) nt++;
  const tracks = new Int32Array(nt * 2);
  for (let i = 0, j = -2; i < n; i++) {
    if (i === 0 || ts[i] !== ts[i - 1]) {
      j += 2;
      tracks[j] = ts[i];
    }
    tracks[j + 1]++;
  }
  let nu = 0;
  for (let i = 0; i < n; i++) if (i === 0 || us[i] !== us[i - 1]) us[nu++] = us[i];
  return { count: h.count, tracks, users: us.slice(0, nu), ages: h.ages.slice() };
}

/**
 * Adds an hour's counts (hourCounts) to the state, as if its listens were added again. A sparse
 * hour takes them as (track, listener) pairs, one per listen: the k-th listen of the expanded
 * track list goes with listener k mod n. Every listener appears (there are never more
 * listeners than listens), and the per-track counts, the listener set and the count are exact,
 * which is all result() reads of a log.
 */
export function addCounts(state: KpiState, hourKey: number, c: HourCounts): void {
  if (c.count === 0) return;
  const h = hourState(state, hourKey);
  h.count += c.count;
  for (let g = 0; g < h.ages.length; g++) h.ages[g] += c.ages[g];
  if (h.tracks === null && h.logLen + 2 * c.count > state.denseAt) densify(state, h);
  if (h.tracks !== null) {
    for (let i = 0; i < c.tracks.length; i += 2) h.tracks[c.tracks[i]] += c.tracks[i + 1];
    const bits = h.users!;
    for (let i = 0; i < c.users.length; i++) bits[c.users[i] >>> 5] |= 1 << (c.users[i] & 31);
    return;
  }
  // The log fits (checked above), so it never turns dense part-way through.
  const n = c.users.length;
  let k = 0;
  for (let i = 0; i < c.tracks.length; i += 2) {
    for (let j = 0; j < c.tracks[i + 1]; j++) addSparse(state, h, c.tracks[i], c.users[k++ % n]);
  }
}

function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}

/** Ranks of names in ordinal code-point order, so ties resolve by integer comparison. */
export function ordinalRanks(names: readonly string[]): Int32Array {
  const order = names.map((_, i) => i).sort((x, y) => compareCodePoints(names[x], names[y]));
  const rank = new Int32Array(names.length);
  order.forEach((idx, pos) => (rank[idx] = pos));
  return rank;
}

export interface KpiResult {
  hourly: HourlyRow[];
  genre: GenreRow[];
  /** Every date (epoch day) that has at least one complete listen. */
  days: number[];
}

export interface ResultOptions {
  /** Only these dates (epoch days) are produced; all when absent. */
  days?: ReadonlySet<number>;
  /**
   * Ordinal ranks (ordinalRanks(dims.artists / dims.trackIds)) to break ties with; without them
   * the tied names are compared directly (same answer, no sort of the catalogue).
   */
  artistRank?: Int32Array;
  trackRank?: Int32Array;
}

export function result(state: KpiState, dims: ReduceDims, opts: ResultOptions = {}): KpiResult {
  // Ties are rare: without precomputed ranks, the two names are compared when one occurs, which
  // saves sorting the whole catalogue on every run (~0.1 s at 114k tracks, seconds at 1M).
  const artistRank = opts.artistRank;
  const trackRank = opts.trackRank;
  const artistBefore = (a: number, b: number): boolean =>
    artistRank !== undefined ? artistRank[a] < artistRank[b] : compareCodePoints(dims.artists[a], dims.artists[b]) < 0;
  const trackBefore = (a: number, b: number): boolean =>
    trackRank !== undefined ? trackRank[a] < trackRank[b] : compareCodePoints(dims.trackIds[a], dims.trackIds[b]) < 0;
  const T = state.trackCount;
  const artistCount = new Float64Array(dims.artists.length);
  const touched = new Int32Array(dims.artists.length);

  const byDay = new Map<number, number[]>();
  for (const key of state.hours.keys()) {
    const day = Math.floor(key / 24);
    if (opts.days && !opts.days.has(day)) continue;
    let list = byDay.get(day);
    if (!list) byDay.set(day, (list = []));
    list.push(key);
  }
  const days = [...byDay.keys()].sort((a, b) => a - b);

  const hourly: HourlyRow[] = [];
  const genre: GenreRow[] = [];
  const dayTracks = new Float64Array(T);
  const genreCount = new Float64Array(dims.genres.length);
  const genreDuration = new Float64Array(dims.genres.length);
  const genreBest = new Int32Array(dims.genres.length);
  const scratchTracks = new Int32Array(T);
  const scratchTrackList = new Int32Array(T);
  const scratchUsers = new Int32Array((state.userCount + 31) >>> 5);
  const scratchUserList = new Int32Array(state.userCount);

  for (const day of days) {
    const date = dayToDate(day);
    const keys = byDay.get(day)!.sort((a, b) => a - b);
    dayTracks.fill(0);
    let dayTotal = 0;
    for (const key of keys) {
      const h = state.hours.get(key)!;
      if (h.count === 0) continue;
      let distinctTracks = 0;
      let nTouched = 0;
      let users = 0;
      const credit = (t: number, c: number): void => {
        distinctTracks++;
        dayTracks[t] += c;
        for (let j = dims.artistStart[t]; j < dims.artistStart[t + 1]; j++) {
          const a = dims.artistList[j];
          if (artistCount[a] === 0) touched[nTouched++] = a;
          artistCount[a] += c;
        }
      };
      if (h.tracks !== null) {
        for (let t = 0; t < T; t++) if (h.tracks[t] !== 0) credit(t, h.tracks[t]);
        const bits = h.users!;
        for (let i = 0; i < bits.length; i++) if (bits[i] !== 0) users += popcount32(bits[i]);
      } else {
        // Sparse hour: count into scratch arrays, visiting only the tracks and users it holds.
        const log = h.log!;
        let nTracks = 0;
        let nUsers = 0;
        for (let i = 0; i < h.logLen; i += 2) {
          const t = log[i];
          if (scratchTracks[t]++ === 0) scratchTrackList[nTracks++] = t;
          const u = log[i + 1];
          const bit = 1 << (u & 31);
          if ((scratchUsers[u >>> 5] & bit) === 0) {
            scratchUsers[u >>> 5] |= bit;
            scratchUserList[nUsers++] = u;
          }
        }
        // What credit() sums is the same in any order, and the tie rules compare names, never
        // positions. Many tracks played: in index order, a sequential pass (the per-track arrays
        // read in order, as for a dense hour); few: in first-seen order.
        if (nTracks * 16 > T) {
          for (let t = 0; t < T; t++) {
            const c = scratchTracks[t];
            if (c === 0) continue;
            credit(t, c);
            scratchTracks[t] = 0;
          }
        } else {
          for (let i = 0; i < nTracks; i++) {
            const t = scratchTrackList[i];
            credit(t, scratchTracks[t]);
            scratchTracks[t] = 0;
          }
        }
        for (let i = 0; i < nUsers; i++) scratchUsers[scratchUserList[i] >>> 5] = 0;
        users = nUsers;
      }
      let best = -1;
      for (let i = 0; i < nTouched; i++) {
        const a = touched[i];
        if (best < 0 || artistCount[a] > artistCount[best] || (artistCount[a] === artistCount[best] && artistBefore(a, best))) {
          best = a;
        }
      }
      for (let i = 0; i < nTouched; i++) artistCount[touched[i]] = 0;

      let ageBest = -1;
      for (let g = 0; g < h.ages.length; g++) {
        // Strictly greater keeps the youngest group on ties.
        if (h.ages[g] > 0 && (ageBest < 0 || h.ages[g] > h.ages[ageBest])) ageBest = g;
      }

      dayTotal += h.count;
      hourly.push({
        listen_date: date,
        listen_hour: key - day * 24,
        unique_listeners: users,
        listen_counts: h.count,
        top_artist: best < 0 ? null : dims.artists[best],
        avg_sessions_per_user: h.count / users,
        diversity_index: distinctTracks / h.count,
        most_engaged_age_group: ageBest < 0 ? null : AGE_GROUPS[ageBest],
      });
    }
    if (dayTotal === 0) continue;

    genreCount.fill(0);
    genreDuration.fill(0);
    genreBest.fill(-1);
    for (let t = 0; t < T; t++) {
      const c = dayTracks[t];
      if (c === 0) continue;
      const g = dims.trackGenre[t];
      genreCount[g] += c;
      genreDuration[g] += c * dims.trackDurationMs[t];
      const b = genreBest[g];
      if (b < 0 || c > dayTracks[b] || (c === dayTracks[b] && trackBefore(t, b))) genreBest[g] = t;
    }
    const genreIdx: number[] = [];
    for (let g = 0; g < genreCount.length; g++) if (genreCount[g] > 0) genreIdx.push(g);
    genreIdx.sort((x, y) => compareCodePoints(dims.genres[x], dims.genres[y]));
    for (const g of genreIdx) {
      genre.push({
        listen_date: date,
        track_genre: dims.genres[g],
        listen_count: genreCount[g],
        popularity_index: genreCount[g] / dayTotal,
        average_duration: genreDuration[g] / genreCount[g] / 1000,
        most_popular_track_id: dims.trackIds[genreBest[g]],
      });
    }
  }
  return { hourly, genre, days };
}
