// The stream shell around the pure stages: reads a lake object through the parser, checks
// each record (validate.ts) and feeds complete rows to the reducers (reduce.ts).

import type { Lake, LakeObject } from './lake/lake.js';
import { parseCsv } from './parse.js';
import { parseListenTime } from './listen-time.js';
import { MkpiError, isMkpiError } from './errors.js';
import { add, type KpiState } from './reduce.js';
import type { RejectSink } from './rejects.js';
import {
  DimensionsBuilder,
  REJECT_REASONS,
  SONG_COLUMNS,
  SONG_REJECT_REASONS,
  STREAM_COLUMNS,
  USER_COLUMNS,
  USER_REJECT_REASONS,
  checkSong,
  checkUser,
  resolveHeader,
  type Dimensions,
  type ResolvedHeader,
} from './validate.js';

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
  rejects?: RejectSink;
  onRows?: (rows: number) => void;
}

async function readHeaderAndRows(
  lake: Lake,
  key: string,
  required: readonly string[],
  opts: ScanOptions,
  onRow: (fields: string[], line: number, flag: number, header: ResolvedHeader) => void,
): Promise<{ bytes: number; header: ResolvedHeader }> {
  let header: ResolvedHeader | undefined;
  let pending = 0;
  const source = await lake.read(key, opts.signal);
  const { bytes } = await parseCsv(
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
    { signal: opts.signal },
  );
  if (pending > 0) opts.onRows?.(pending);
  if (header === undefined) header = resolveHeader(key, null, required);
  return { bytes, header };
}

function emptyCounts(reasons: readonly string[]): Record<string, number> {
  return Object.fromEntries(reasons.map((r) => [r, 0]));
}

export async function loadDimensions(
  lake: Lake,
  keys: { songs: string; users: string },
  opts: ScanOptions,
): Promise<{ dims: Dimensions; songs: DimensionFileReport; users: DimensionFileReport }> {
  const builder = new DimensionsBuilder();
  for (const key of [keys.songs, keys.users]) {
    if ((await lake.stat(key)) === undefined) {
      throw new MkpiError('MKPI_NO_INPUT', `${lake.root}: ${key} not found`, {
        hint: 'a lake needs songs.csv and users.csv at its root (or point --songs / --users at them)',
        details: { file: key },
      });
    }
  }

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
    const check = flag === 0 ? checkSong(fields, h) : ({ ok: false, reason: 'malformed' } as const);
    if (check.ok) {
      songs.valid++;
      builder.addSong(check);
    } else {
      songs.rejected[check.reason]++;
      opts.rejects?.add(keys.songs, line, check.reason, fields);
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
    const check = flag === 0 ? checkUser(fields, h) : ({ ok: false, reason: 'malformed' } as const);
    if (check.ok) {
      users.valid++;
      builder.addUser(check);
    } else {
      users.rejected[check.reason]++;
      opts.rejects?.add(keys.users, line, check.reason, fields);
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

export interface StreamScan {
  key: string;
  fingerprint: string;
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
}

export interface StreamScanOptions extends ScanOptions {
  /** Re-reading an already-loaded file for late-file recomputation: only these days feed the reducers. */
  dayFilter?: ReadonlySet<number>;
}

export async function scanStreamFile(
  lake: Lake,
  obj: LakeObject,
  dims: Dimensions,
  state: KpiState,
  opts: StreamScanOptions,
): Promise<StreamScan> {
  const counts = new Float64Array(REJECT_REASONS.length);
  const days = new Set<number>();
  const { songIndex, userIndex, userAgeGroup } = dims;
  const rejects = opts.rejects;
  const dayFilter = opts.dayFilter;
  const key = obj.key;
  let rows = 0;
  let complete = 0;
  let reduced = 0;
  let lastDay = NaN;

  const reject = (reason: number, fields: string[], line: number): void => {
    counts[reason]++;
    rejects?.add(key, line, REJECT_REASONS[reason], fields);
  };

  const scan: StreamScan = {
    key,
    fingerprint: obj.fingerprint,
    bytes: 0,
    rows: 0,
    complete: 0,
    reduced: 0,
    rejected: {},
    days,
    duplicateHeaders: [],
  };
  try {
    const { bytes, header } = await readHeaderAndRows(lake, key, STREAM_COLUMNS, opts, (fields, line, flag, h) => {
      rows++;
      if (flag !== 0 || fields.length !== h.fieldCount) return reject(0, fields, line);
      const userId = fields[h.indexes[0]].trim();
      if (userId === '') return reject(1, fields, line);
      const trackId = fields[h.indexes[1]].trim();
      if (trackId === '') return reject(2, fields, line);
      const hourKey = parseListenTime(fields[h.indexes[2]].trim());
      if (hourKey !== hourKey) return reject(3, fields, line);
      const day = Math.floor(hourKey / 24);
      if (day !== lastDay) {
        days.add(day);
        lastDay = day;
      }
      const track = songIndex.get(trackId);
      if (track === undefined) return reject(4, fields, line);
      const user = userIndex.get(userId);
      if (user === undefined) return reject(5, fields, line);
      complete++;
      if (dayFilter !== undefined && !dayFilter.has(day)) return;
      reduced++;
      add(state, hourKey, track, user, userAgeGroup[user]);
    });
    scan.bytes = bytes;
    scan.duplicateHeaders = header.duplicates;
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
