// KPI reducers (spec §4-§5). Pure: create / add / merge / result, no I/O. State is sized by
// the dimensions (tracks, users) and the number of distinct hours, never by the number of
// listens: per hour, a dense per-track counter, a bitset of listeners and six age-group
// counters. Every KPI of both tables is derived from that at result time.

import type { GenreRow, HourlyRow } from './warehouse/warehouse.js';
import { compareCodePoints } from './text.js';
import { dayToDate } from './listen-time.js';

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

export interface HourState {
  count: number;
  tracks: Int32Array; // listens per track index
  users: Int32Array; // bitset of user indexes
  ages: Float64Array; // listens per age group
}

export interface KpiState {
  trackCount: number;
  userCount: number;
  hours: Map<number, HourState>; // key: epochDay * 24 + hour
}

export function create(trackCount: number, userCount: number): KpiState {
  return { trackCount, userCount, hours: new Map() };
}

function newHour(state: KpiState): HourState {
  return {
    count: 0,
    tracks: new Int32Array(state.trackCount),
    users: new Int32Array((state.userCount + 31) >>> 5),
    ages: new Float64Array(AGE_GROUPS.length),
  };
}

export function hourState(state: KpiState, hourKey: number): HourState {
  let h = state.hours.get(hourKey);
  if (h === undefined) {
    h = newHour(state);
    state.hours.set(hourKey, h);
  }
  return h;
}

/** Adds one complete listen. ageGroup is -1 for a user of unknown age. */
export function add(state: KpiState, hourKey: number, track: number, user: number, ageGroup: number): void {
  const h = hourState(state, hourKey);
  h.count++;
  h.tracks[track]++;
  h.users[user >>> 5] |= 1 << (user & 31);
  if (ageGroup >= 0) h.ages[ageGroup]++;
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
    for (let i = 0; i < ha.tracks.length; i++) ha.tracks[i] += hb.tracks[i];
    for (let i = 0; i < ha.users.length; i++) ha.users[i] |= hb.users[i];
    for (let i = 0; i < ha.ages.length; i++) ha.ages[i] += hb.ages[i];
  }
  return a;
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
  /** Precomputed ordinal ranks (ordinalRanks(dims.artists / dims.trackIds)), to avoid re-sorting. */
  artistRank?: Int32Array;
  trackRank?: Int32Array;
}

export function result(state: KpiState, dims: ReduceDims, opts: ResultOptions = {}): KpiResult {
  const artistRank = opts.artistRank ?? ordinalRanks(dims.artists);
  const trackRank = opts.trackRank ?? ordinalRanks(dims.trackIds);
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
      for (let t = 0; t < T; t++) {
        const c = h.tracks[t];
        if (c === 0) continue;
        distinctTracks++;
        dayTracks[t] += c;
        for (let j = dims.artistStart[t]; j < dims.artistStart[t + 1]; j++) {
          const a = dims.artistList[j];
          if (artistCount[a] === 0) touched[nTouched++] = a;
          artistCount[a] += c;
        }
      }
      let best = -1;
      for (let i = 0; i < nTouched; i++) {
        const a = touched[i];
        if (best < 0 || artistCount[a] > artistCount[best] || (artistCount[a] === artistCount[best] && artistRank[a] < artistRank[best])) {
          best = a;
        }
      }
      for (let i = 0; i < nTouched; i++) artistCount[touched[i]] = 0;

      let users = 0;
      for (let i = 0; i < h.users.length; i++) if (h.users[i] !== 0) users += popcount32(h.users[i]);

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
      if (b < 0 || c > dayTracks[b] || (c === dayTracks[b] && trackRank[t] < trackRank[b])) genreBest[g] = t;
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
