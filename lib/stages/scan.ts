// The stream shell around the pure stages: reads a lake object through the parser, checks
// each record (validate.ts) and feeds complete rows to the reducers (reduce.ts).

import type { Lake, LakeObject } from '../domain/lake.js';
import { isCorruptGzip, parseCsv, type Backpressure, type ParseResult } from './parse.js';
import { isGzipKey } from '../domain/layout.js';
import { MkpiError, isMkpiError } from '../domain/errors.js';
import { addToHour, hourState, type HourState, type KpiState } from './reduce.js';
import { IdIndex, type IdIndexData } from '../domain/id-index.js';
import type { RejectWriter } from './rejects.js';
import {
  COMPLETE,
  DimensionsBuilder,
  SONG_COLUMNS,
  STREAM_COLUMNS,
  USER_COLUMNS,
  checkSong,
  checkStreamRow,
  checkUser,
  duplicateDetail,
  newStreamRowCheck,
  resolveHeader,
  streamRejectDetail,
  type Dimensions,
  type ResolvedHeader,
} from './validate.js';
import {
  REJECT_REASONS,
  SONG_DUPLICATE_REASON,
  SONG_REJECT_REASONS,
  USER_DUPLICATE_REASON,
  USER_REJECT_REASONS,
} from '../domain/reject-reasons.js';

const PROGRESS_EVERY = 1 << 16;

export interface DimensionFileReport {
  file: string;
  bytes: number;
  rows: number;
  valid: number;
  duplicates: number;
  rejected: Record<string, number>;
  duplicateHeaders: string[];
}

export interface ScanOptions {
  signal?: AbortSignal;
  rejects?: RejectWriter;
  onRows?: (rows: number) => void;
}

/**
 * A byte range of a plain stream file, read by one of several readers (parallel-scan.ts). `start`
 * is a record boundary (RecordBoundaryScanner); a range that does not start the file gets the
 * file's header, resolved by the caller, and its line numbers count from its own start.
 */
export interface ScanRange {
  start: number;
  end: number;
  header?: ResolvedHeader;
}

/**
 * Reads one lake file through the parser: resolves its header (`required` columns), then calls
 * `onRow` for every record after it. A `.gz` key is inflated; a corrupt one is MKPI_SCHEMA, as
 * a missing column is. The stream engine's scans and the warehouse engine's normalize share
 * it, so that both see the same records, line numbers and content hash.
 */
export async function readHeaderAndRows(
  lake: Lake,
  key: string,
  required: readonly string[],
  opts: ScanOptions & { hash?: boolean; range?: ScanRange; backpressure?: Backpressure },
  onRow: (fields: string[], line: number, flag: number, header: ResolvedHeader) => void,
): Promise<{ bytes: number; sha256?: string; header: ResolvedHeader; lineEndings: number; endedAtBoundary: boolean }> {
  const range = opts.range;
  let header: ResolvedHeader | undefined = range !== undefined && range.start > 0 ? range.header : undefined;
  let pending = 0;
  const gunzip = isGzipKey(key);
  if (range !== undefined && (gunzip || lake.readRange === undefined || (range.start > 0 && header === undefined))) {
    throw new MkpiError('MKPI_INTERNAL', `${key}: cannot read a byte range of it`);
  }
  const source = range === undefined ? await lake.read(key, opts.signal) : await lake.readRange!(key, range.start, range.end, opts.signal);
  let read: ParseResult;
  try {
    read = await parseCsv(
      source,
      (fields, line, flag) => {
        if (header === undefined) {
          header = resolveHeader(key, flag === 0 ? fields : [], required);
          return;
        }
        onRow(fields, line, flag, header);
        if (++pending === PROGRESS_EVERY) {
          opts.onRows?.(pending);
          pending = 0;
        }
      },
      { signal: opts.signal, hash: opts.hash, gunzip, bom: range === undefined || range.start === 0, backpressure: opts.backpressure },
    );
  } catch (err) {
    if (!(gunzip && isCorruptGzip(err))) throw err;
    // The rows read before the damage are counted: progress must add up to them.
    if (pending > 0) opts.onRows?.(pending);
    throw corruptGzip(key, err);
  }
  const { bytes, sha256, lineEndings, endedAtBoundary } = read;
  if (pending > 0) opts.onRows?.(pending);
  if (header === undefined) header = resolveHeader(key, null, required);
  return { bytes, sha256, header, lineEndings, endedAtBoundary };
}

/**
 * A `.gz` file whose bytes zlib refuses is a data error of that file, like a missing column:
 * nothing of it can be trusted, the run loads nothing, and the operator has to replace it
 * (contract §1.3). Rows read before the damage was found stay counted in the report.
 */
function corruptGzip(key: string, err: Error & { code: string }): MkpiError {
  return new MkpiError('MKPI_SCHEMA', `${key}: not a valid gzip file (${err.message})`, {
    hint: 'the file is damaged, cut short, or not gzip-compressed (a plain CSV must not end in .gz); replace it and run again',
    cause: err,
    details: { file: key, reason: 'corrupt_gzip', zlibCode: err.code },
  });
}

function emptyCounts(reasons: readonly string[]): Record<string, number> {
  return Object.fromEntries(reasons.map((r) => [r, 0]));
}

/** Both dimension files as the lake lists them; MKPI_NO_INPUT naming the first one missing. */
export async function requireDimensionFiles(
  lake: Lake,
  keys: { songs: string; users: string },
): Promise<{ songs: LakeObject; users: LakeObject }> {
  const found: LakeObject[] = [];
  for (const key of [keys.songs, keys.users]) {
    const obj = await lake.stat(key);
    if (obj === undefined) {
      throw new MkpiError('MKPI_NO_INPUT', `${lake.root}: ${key} not found`, {
        hint: 'a lake needs songs.csv and users.csv at its root (or point --songs / --users at them)',
        details: { file: key },
      });
    }
    found.push(obj);
  }
  return { songs: found[0], users: found[1] };
}

export async function loadDimensions(
  lake: Lake,
  keys: { songs: string; users: string },
  opts: ScanOptions,
): Promise<{ dims: Dimensions; songs: DimensionFileReport; users: DimensionFileReport }> {
  const builder = new DimensionsBuilder(keys);
  await requireDimensionFiles(lake, keys);

  const songs: DimensionFileReport = {
    file: keys.songs,
    bytes: 0,
    rows: 0,
    valid: 0,
    duplicates: 0,
    rejected: emptyCounts(SONG_REJECT_REASONS),
    duplicateHeaders: [],
  };
  const s = await readHeaderAndRows(lake, keys.songs, SONG_COLUMNS, opts, (fields, line, flag, h) => {
    songs.rows++;
    const check = checkSong(fields, h, flag);
    if (check.ok) {
      songs.valid++;
      const first = builder.addSong(check, line);
      // A duplicate is listed, not counted as a reject: it stays in `duplicates` (contract §4.1).
      if (first !== undefined) {
        opts.rejects?.add(keys.songs, line, SONG_DUPLICATE_REASON, duplicateDetail('track_id', check.trackId, first), fields);
      }
    } else {
      songs.rejected[check.reason]++;
      opts.rejects?.add(keys.songs, line, check.reason, check.detail, fields);
    }
  });
  songs.bytes = s.bytes;
  songs.duplicateHeaders = s.header.duplicates;

  const users: DimensionFileReport = {
    file: keys.users,
    bytes: 0,
    rows: 0,
    valid: 0,
    duplicates: 0,
    rejected: emptyCounts(USER_REJECT_REASONS),
    duplicateHeaders: [],
  };
  const u = await readHeaderAndRows(lake, keys.users, USER_COLUMNS, opts, (fields, line, flag, h) => {
    users.rows++;
    const check = checkUser(fields, h, flag);
    if (check.ok) {
      users.valid++;
      const first = builder.addUser(check, line);
      if (first !== undefined) {
        opts.rejects?.add(keys.users, line, USER_DUPLICATE_REASON, duplicateDetail('user_id', check.userId, first), fields);
      }
    } else {
      users.rejected[check.reason]++;
      opts.rejects?.add(keys.users, line, check.reason, check.detail, fields);
    }
  });
  users.bytes = u.bytes;
  users.duplicateHeaders = u.header.duplicates;

  const dims = builder.build();
  songs.duplicates = dims.duplicateSongs;
  songs.valid -= dims.duplicateSongs;
  users.duplicates = dims.duplicateUsers;
  users.valid -= dims.duplicateUsers;
  return { dims, songs, users };
}

/**
 * The dimension facts a stream scan needs, in a form worker threads can share: the ID indexes
 * (typed arrays in SharedArrayBuffers) and the users' age groups.
 */
export interface StreamDims {
  readonly kind: 'stream-dims';
  trackCount: number;
  userCount: number;
  tracks: IdIndex;
  users: IdIndex;
  userAgeGroup: Int8Array;
  /** Lake keys of the dimension files, which unknown_track and unknown_user details name. */
  songsFile: string;
  usersFile: string;
}

/** Plain data for postMessage: what streamDimsFrom() turns back into StreamDims in a worker. */
export interface StreamDimsData {
  trackCount: number;
  userCount: number;
  tracks: IdIndexData;
  users: IdIndexData;
  userAgeGroup: Int8Array;
  songsFile: string;
  usersFile: string;
}

const streamDimsCache = new WeakMap<Dimensions, StreamDims>();

/** The stream-scan view of loaded dimensions; built once per Dimensions object (~0.1 s at 164k IDs). */
export function streamDims(dims: Dimensions): StreamDims {
  let sd = streamDimsCache.get(dims);
  if (sd === undefined) {
    const userIds = new Array<string>(dims.userCount);
    for (const [id, i] of dims.userIndex) userIds[i] = id;
    sd = {
      kind: 'stream-dims',
      trackCount: dims.trackCount,
      userCount: dims.userCount,
      tracks: IdIndex.build(dims.trackIds, { shared: true }),
      users: IdIndex.build(userIds, { shared: true }),
      userAgeGroup: dims.userAgeGroup,
      songsFile: dims.songsFile,
      usersFile: dims.usersFile,
    };
    streamDimsCache.set(dims, sd);
  }
  return sd;
}

/**
 * Hands streamDims() ID indexes built earlier for these very dimensions (the dimension cache
 * keeps them), so that it does not build them again. Arrays not in shared memory are copied there.
 */
export function primeStreamDims(dims: Dimensions, tracks: IdIndexData, users: IdIndexData): void {
  const shared = (d: IdIndexData): IdIndexData => {
    if (d.table.buffer instanceof SharedArrayBuffer && d.pool.buffer instanceof SharedArrayBuffer) return d;
    const table = new Int32Array(new SharedArrayBuffer(d.table.byteLength));
    table.set(d.table);
    const pool = new Uint16Array(new SharedArrayBuffer(Math.max(2, d.pool.byteLength)));
    pool.set(d.pool);
    return { table, pool, size: d.size };
  };
  streamDimsCache.set(dims, {
    kind: 'stream-dims',
    trackCount: dims.trackCount,
    userCount: dims.userCount,
    tracks: IdIndex.from(shared(tracks)),
    users: IdIndex.from(shared(users)),
    userAgeGroup: dims.userAgeGroup,
    songsFile: dims.songsFile,
    usersFile: dims.usersFile,
  });
}

export function streamDimsData(sd: StreamDims): StreamDimsData {
  return {
    trackCount: sd.trackCount,
    userCount: sd.userCount,
    tracks: sd.tracks.data,
    users: sd.users.data,
    userAgeGroup: sd.userAgeGroup,
    songsFile: sd.songsFile,
    usersFile: sd.usersFile,
  };
}

export function streamDimsFrom(data: StreamDimsData): StreamDims {
  return {
    kind: 'stream-dims',
    trackCount: data.trackCount,
    userCount: data.userCount,
    tracks: IdIndex.from(data.tracks),
    users: IdIndex.from(data.users),
    userAgeGroup: data.userAgeGroup,
    songsFile: data.songsFile,
    usersFile: data.usersFile,
  };
}

export interface StreamScan {
  key: string;
  fingerprint: string;
  /**
   * SHA-256 of the file's bytes as stored (a `.gz` file's compressed bytes): with the key, what
   * identifies the file in the ledger. Empty on a schema error.
   */
  contentHash: string;
  /** Bytes of the file as stored (compressed, for a `.gz` file), as `LakeObject.size` counts them. */
  bytes: number;
  rows: number;
  complete: number;
  /** Complete rows that fed the reducers (fewer than `complete` when a day filter applies). */
  reduced: number;
  rejected: Record<string, number>;
  /** Epoch days of every row with a valid listen_time. */
  days: Set<number>;
  duplicateHeaders: string[];
  schemaError?: MkpiError;
  /** With a range: the line endings it held (what the next range's line numbers start after). */
  lineEndings?: number;
  /** With a range: whether it ended exactly at a record boundary (its end was a true split point). */
  endedAtBoundary?: boolean;
}

export interface StreamScanOptions extends ScanOptions {
  /** Re-reading an already-loaded file for late-file recomputation: only these days feed the reducers. */
  dayFilter?: ReadonlySet<number>;
  /**
   * Only this byte range of the file (a plain one), not hashed: `contentHash` stays empty and
   * `bytes` counts the range. Its caller hashes the file and puts the ranges' scans together.
   */
  range?: ScanRange;
  /**
   * Called every CHECKPOINT_ROWS rows fed to the reducers, between two rows: the caller may take
   * hours out of `state` there (a memory budget spilling them, state-spill.ts).
   */
  checkpoint?: () => void;
}

/** Rows between two checkpoints: often enough to hold a budget, rare enough to cost nothing. */
export const CHECKPOINT_ROWS = 65_536;

/**
 * Reads one stream file: classifies every row (spec §3), feeds complete rows to `state` and
 * returns the file's counts. The per-row work allocates nothing beyond the parser's field
 * array and strings: ID lookups go through IdIndex, and the current hour's state is cached
 * (files are mostly in time order, so consecutive rows share an hour).
 */
export async function scanStreamFile(
  lake: Lake,
  obj: LakeObject,
  dimensions: Dimensions | StreamDims,
  state: KpiState,
  opts: StreamScanOptions,
): Promise<StreamScan> {
  const dims = 'kind' in dimensions ? dimensions : streamDims(dimensions);
  const counts = new Float64Array(REJECT_REASONS.length);
  const days = new Set<number>();
  const tracks = dims.tracks;
  const users = dims.users;
  const userAgeGroup = dims.userAgeGroup;
  const rejects = opts.rejects;
  const dayFilter = opts.dayFilter;
  const key = obj.key;
  let rows = 0;
  let complete = 0;
  let reduced = 0;
  let lastDay = NaN;
  let lastHourKey = NaN;
  let hour: HourState | undefined;
  let removals = state.removals;
  const checkpoint = opts.checkpoint;
  let untilCheckpoint = CHECKPOINT_ROWS;

  // Rejected rows are rare: only they pay for their detail, which re-reads the row.
  const reject = (reason: number, fields: string[], line: number, flag: number, h: ResolvedHeader): void => {
    counts[reason]++;
    if (rejects !== undefined) rejects.add(key, line, REJECT_REASONS[reason], streamRejectDetail(reason, fields, flag, h, dims), fields);
  };

  const scan: StreamScan = {
    key,
    fingerprint: obj.fingerprint,
    contentHash: '',
    bytes: 0,
    rows: 0,
    complete: 0,
    reduced: 0,
    rejected: {},
    days,
    duplicateHeaders: [],
  };
  try {
    const check = newStreamRowCheck();
    const { bytes, sha256, header, lineEndings, endedAtBoundary } = await readHeaderAndRows(
      lake,
      key,
      STREAM_COLUMNS,
      { ...opts, hash: opts.range === undefined },
      (fields, line, flag, h) => {
        rows++;
        const c = checkStreamRow(check, fields, flag, h, tracks, users);
        const hourKey = c.hourKey;
        // Every row with a valid listen_time gives its date, orphans included (contract §12).
        if (hourKey === hourKey) {
          const day = Math.floor(hourKey / 24);
          if (day !== lastDay) {
            days.add(day);
            lastDay = day;
          }
        }
        if (c.reason !== COMPLETE) return reject(c.reason, fields, line, flag, h);
        complete++;
        if (dayFilter !== undefined && !dayFilter.has(lastDay)) return;
        reduced++;
        if (checkpoint !== undefined && --untilCheckpoint === 0) {
          untilCheckpoint = CHECKPOINT_ROWS;
          checkpoint();
        }
        // Rows of one file mostly share their hour: its state is looked up only when the hour changes,
        // or when hours left the state since (a spill, here or by the thread merging a worker's state).
        if (hourKey !== lastHourKey || state.removals !== removals) {
          removals = state.removals;
          hour = hourState(state, hourKey);
          lastHourKey = hourKey;
        }
        addToHour(state, hour!, c.track, c.user, userAgeGroup[c.user]);
      },
    );
    scan.bytes = bytes;
    scan.contentHash = sha256 ?? '';
    scan.duplicateHeaders = header.duplicates;
    if (opts.range !== undefined) {
      scan.lineEndings = lineEndings;
      scan.endedAtBoundary = endedAtBoundary;
    }
  } catch (err) {
    if (isMkpiError(err) && err.code === 'MKPI_SCHEMA') scan.schemaError = err;
    else throw err;
  }
  scan.rows = rows;
  scan.complete = complete;
  scan.reduced = reduced;
  scan.rejected = Object.fromEntries(REJECT_REASONS.map((r, i) => [r, counts[i]]));
  return scan;
}
