// A cache of the loaded dimensions across runs (docs/performance.md): the daily run reads the
// same songs.csv and users.csv day after day, and parsing and interning them was ~0.45 s of a
// ~1.7 s run. One file per version of the dimension files, named by a hash of its key: the lake
// root, each file's key, fingerprint and size as the lake states them, the cache format and
// musickpi's version. Any other version of a file is another key, so nothing can go stale; a
// file that cannot be read, or does not hold exactly that key, is a normal load, and is rewritten.
//
// The file: MAGIC, the header's length (u32 LE), a JSON header (the key, the counts, the reports,
// where each section is), then the sections, each at a multiple of 8: the typed arrays' bytes,
// the string tables (Latin-1 text when every character fits in a byte, else UTF-16, and the end
// offset of each string, so that any character, U+0000 included, survives), the ID indexes
// streamDims() would build, and the rejects lines of the dimension rows (rendered exactly as a
// fresh load writes them). The user IDs have no string table: the users index holds each whole.

import { createHash } from 'node:crypto';
import {
  closeSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import type { Lake, LakeObject } from '../domain/lake.js';
import { IdIndex, type IdIndexData } from '../domain/id-index.js';
import { loadDimensions, primeStreamDims, streamDims, type DimensionFileReport, type ScanOptions } from '../stages/scan.js';
import { rejectLine, type RejectSink, type RejectWriter } from '../stages/rejects.js';
import type { Dimensions } from '../stages/validate.js';

/** Bumped whenever what a load produces, or this file's layout, changes. */
export const DIMENSION_CACHE_FORMAT = 2;
/** Cache files kept in the folder (the newest used): one per lake in use, and the previous versions. */
export const DIMENSION_CACHE_KEEP = 4;
/** And no more bytes than this in all (the newest file is kept whatever its size). */
export const DIMENSION_CACHE_BYTES = 1 << 30;

const MAGIC = Buffer.from('MKPIDIMC', 'latin1');
const PREFIX = 'dimensions-';
const SUFFIX = '.bin';

export interface DimensionCacheOptions {
  /** The cache folder (created when missing). */
  dir: string;
  /** musickpi's version: part of the key. */
  version: string;
  /** Cache files kept; default DIMENSION_CACHE_KEEP. */
  keep?: number;
}

export interface LoadedDimensions {
  dims: Dimensions;
  songs: DimensionFileReport;
  users: DimensionFileReport;
  /** hit: read from the cache; miss: loaded from the lake (and the cache written, where it could be); off: no cache. */
  cache: 'hit' | 'miss' | 'off';
  /**
   * The versions of songs and users these dimensions were built from, as the lake states them;
   * absent unless asked for (`identify`) and proven: stated the same before and after the load.
   */
  files?: { songs: FileKey; users: FileKey };
}

export interface FileKey {
  key: string;
  fingerprint: string;
  size: number;
}

interface CacheKey {
  format: number;
  version: string;
  root: string;
  songs: FileKey;
  users: FileKey;
}

type SectionType = 'i32' | 'f64' | 'i8' | 'u16' | 'utf16' | 'latin1';
interface Section {
  name: string;
  type: SectionType;
  offset: number;
  bytes: number;
}

interface Header {
  key: CacheKey;
  /** Bytes after the header (which is padded to a multiple of 8): what makes a cut file detectable. */
  bodyBytes: number;
  /** Where (in the body) the text sections start; the typed arrays come before. */
  textStart: number;
  trackCount: number;
  userCount: number;
  duplicateSongs: number;
  duplicateUsers: number;
  songsFile: string;
  usersFile: string;
  tracksSize: number;
  usersSize: number;
  songs: DimensionFileReport;
  users: DimensionFileReport;
  rejects: number;
  sections: Section[];
}

/**
 * loadDimensions(), through the cache when `cache` is given: the same dimensions, reports and
 * rejects lines either way. The cache never fails a run: whatever goes wrong with it, the
 * dimensions are loaded from the lake.
 */
export async function loadDimensionsCached(
  lake: Lake,
  keys: { songs: string; users: string },
  opts: Omit<ScanOptions, 'rejects'> & { rejects?: RejectSink; cache?: DimensionCacheOptions; identify?: boolean },
): Promise<LoadedDimensions> {
  const cache = opts.cache;
  if (cache === undefined && !opts.identify) return { ...(await loadDimensions(lake, keys, opts)), cache: 'off' };
  const before = await statBoth(lake, keys);
  // A missing file: the normal load says so.
  if (before === undefined) return { ...(await loadDimensions(lake, keys, opts)), cache: 'off' };
  const stable = async (): Promise<{ songs: FileKey; users: FileKey } | undefined> => {
    const after = await statBoth(lake, keys).catch(() => undefined);
    return after !== undefined && sameFiles(before, after) ? fileKeys(before) : undefined;
  };
  if (cache === undefined) {
    const loaded = await loadDimensions(lake, keys, opts);
    const files = await stable();
    return { ...loaded, cache: 'off', ...(files ? { files } : {}) };
  }
  const key = cacheKey(lake.root, before, cache.version);
  const path = join(cache.dir, fileName(key));
  const hit = readCache(path, key);
  if (hit !== undefined) {
    opts.rejects?.addLines(hit.rejects.lines, hit.rejects.count);
    touch(path);
    return { dims: hit.dims, songs: hit.songs, users: hit.users, cache: 'hit', files: fileKeys(before) };
  }
  const recorded: string[] = [];
  const inner = opts.rejects;
  const recorder: RejectWriter = {
    add(file, line, reason, detail, fields) {
      recorded.push(rejectLine(file, line, reason, detail, fields));
      inner?.add(file, line, reason, detail, fields);
    },
  };
  const loaded = await loadDimensions(lake, keys, { ...opts, rejects: recorder });
  // Written only when the files did not change while they were read: the key must name what was read.
  const files = await stable();
  if (files !== undefined) {
    try {
      writeCache(cache, path, key, loaded, recorded);
    } catch {
      // A read-only or full disk costs the next run a normal load, nothing more.
    }
  }
  return { ...loaded, cache: 'miss', ...(files ? { files } : {}) };
}

async function statBoth(lake: Lake, keys: { songs: string; users: string }): Promise<{ songs: LakeObject; users: LakeObject } | undefined> {
  const songs = await lake.stat(keys.songs);
  const users = await lake.stat(keys.users);
  return songs === undefined || users === undefined ? undefined : { songs, users };
}

function sameFiles(a: { songs: LakeObject; users: LakeObject }, b: { songs: LakeObject; users: LakeObject }): boolean {
  return JSON.stringify(fileKeys(a)) === JSON.stringify(fileKeys(b));
}

function fileKeys(o: { songs: LakeObject; users: LakeObject }): { songs: FileKey; users: FileKey } {
  const f = (x: LakeObject): FileKey => ({ key: x.key, fingerprint: x.fingerprint, size: x.size });
  return { songs: f(o.songs), users: f(o.users) };
}

export function cacheKey(root: string, files: { songs: LakeObject; users: LakeObject }, version: string): CacheKey {
  return { format: DIMENSION_CACHE_FORMAT, version, root, ...fileKeys(files) };
}

function fileName(key: CacheKey): string {
  return PREFIX + createHash('sha256').update(JSON.stringify(key)).digest('hex').slice(0, 32) + SUFFIX;
}

function touch(path: string): void {
  try {
    const now = new Date();
    utimesSync(path, now, now);
  } catch {
    // pruning by age is all it is for
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

function writeCache(
  opts: DimensionCacheOptions,
  path: string,
  key: CacheKey,
  loaded: { dims: Dimensions; songs: DimensionFileReport; users: DimensionFileReport },
  rejects: string[],
): void {
  const { dims } = loaded;
  const sd = streamDims(dims);
  const parts: { name: string; type: SectionType; data: Buffer }[] = [];
  const typed = (name: string, type: SectionType, a: ArrayBufferView) =>
    parts.push({ name, type, data: Buffer.from(a.buffer, a.byteOffset, a.byteLength) });
  const texts: { name: string; type: SectionType; data: Buffer }[] = [];
  const strings = (name: string, list: readonly string[]) => {
    const ends = new Int32Array(list.length);
    let at = 0;
    for (let i = 0; i < list.length; i++) ends[i] = at += list[i].length;
    const all = list.join('');
    // One byte a character when every one fits (IDs and most names): half the bytes, and one-byte strings when read.
    const type = oneByte(all) ? 'latin1' : 'utf16';
    texts.push({ name: `${name}.text`, type, data: Buffer.from(all, type === 'latin1' ? 'latin1' : 'utf16le') });
    typed(`${name}.ends`, 'i32', ends);
  };
  typed('trackGenre', 'i32', dims.trackGenre);
  typed('trackDurationMs', 'f64', dims.trackDurationMs);
  typed('artistStart', 'i32', dims.artistStart);
  typed('artistList', 'i32', dims.artistList);
  typed('userAgeGroup', 'i8', dims.userAgeGroup);
  strings('trackIds', dims.trackIds);
  strings('genres', dims.genres);
  strings('artists', dims.artists);
  typed('tracks.table', 'i32', sd.tracks.table);
  typed('tracks.pool', 'u16', sd.tracks.pool);
  typed('users.table', 'i32', sd.users.table);
  typed('users.pool', 'u16', sd.users.pool);
  texts.push({ name: 'rejects', type: 'utf16', data: Buffer.from(rejects.join(''), 'utf16le') });

  // The typed arrays first, then the text: a reader reads the former straight into shared memory.
  const sections: Section[] = [];
  let offset = 0;
  let textStart = 0;
  for (const p of [...parts, ...texts]) {
    if (p === texts[0]) textStart = offset;
    sections.push({ name: p.name, type: p.type, offset, bytes: p.data.length });
    offset = align8(offset + p.data.length);
  }
  parts.push(...texts);
  const header: Header = {
    key,
    bodyBytes: offset,
    textStart,
    trackCount: dims.trackCount,
    userCount: dims.userCount,
    duplicateSongs: dims.duplicateSongs,
    duplicateUsers: dims.duplicateUsers,
    songsFile: dims.songsFile,
    usersFile: dims.usersFile,
    tracksSize: sd.tracks.size,
    usersSize: sd.users.size,
    songs: loaded.songs,
    users: loaded.users,
    rejects: rejects.length,
    sections,
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const start = align8(MAGIC.length + 4 + json.length);
  const out = Buffer.alloc(start + offset);
  MAGIC.copy(out, 0);
  out.writeUInt32LE(json.length, MAGIC.length);
  json.copy(out, MAGIC.length + 4);
  for (let i = 0; i < parts.length; i++) parts[i].data.copy(out, start + sections[i].offset);

  // IDs of the catalogue and its users: the folder and its files are the user's alone.
  mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  const tmp = join(opts.dir, `.${PREFIX}${process.pid}-${Math.random().toString(36).slice(2)}.tmp`);
  try {
    writeFileSync(tmp, out, { mode: 0o600 });
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  prune(opts.dir, opts.keep ?? DIMENSION_CACHE_KEEP);
}

function oneByte(s: string): boolean {
  return !/[^\u0000-\u00ff]/.test(s);
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

/**
 * Keeps the newest `keep` cache files of the folder, and of those no more than DIMENSION_CACHE_BYTES
 * in all (the newest is always kept: a catalogue of a million songs makes entries of ~200 MB).
 * Anything else in the folder is left alone.
 */
function prune(dir: string, keep: number): void {
  const files: { path: string; mtime: number; size: number }[] = [];
  for (const name of readdirSync(dir)) {
    if (!name.startsWith(PREFIX) || !name.endsWith(SUFFIX)) continue;
    const path = join(dir, name);
    try {
      const st = statSync(path);
      files.push({ path, mtime: st.mtimeMs, size: st.size });
    } catch {
      // removed meanwhile
    }
  }
  files.sort((a, b) => b.mtime - a.mtime);
  let bytes = 0;
  files.forEach((f, i) => {
    bytes += f.size;
    if (i > 0 && (i >= keep || bytes > DIMENSION_CACHE_BYTES)) rmSync(f.path, { force: true });
  });
}

// ---------------------------------------------------------------------------------------------
// Reading

interface Hit {
  dims: Dimensions;
  songs: DimensionFileReport;
  users: DimensionFileReport;
  rejects: { lines: string; count: number };
}

/** The cached load at `path` if it holds exactly `key` and reads back whole; otherwise undefined. */
export function readCache(path: string, key: CacheKey): Hit | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    return decode(fd, key);
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function readFully(fd: number, into: Uint8Array, position: number): void {
  let at = 0;
  while (at < into.length) {
    const n = readSync(fd, into, at, into.length - at, position + at);
    if (n === 0) throw new Error('dimension cache: cut short');
    at += n;
  }
}

function decode(fd: number, key: CacheKey): Hit | undefined {
  const size = fstatSync(fd).size;
  const lead = Buffer.alloc(MAGIC.length + 4);
  if (size < lead.length) return undefined;
  readFully(fd, lead, 0);
  if (!lead.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const headerLength = lead.readUInt32LE(MAGIC.length);
  if (lead.length + headerLength > size) return undefined;
  const headerBytes = Buffer.alloc(headerLength);
  readFully(fd, headerBytes, lead.length);
  const header = JSON.parse(headerBytes.toString('utf8')) as Header;
  const body = align8(lead.length + headerLength);
  const { textStart, bodyBytes } = header;
  if (JSON.stringify(header.key) !== JSON.stringify(key) || body + bodyBytes !== size) return undefined;
  if (!(Number.isSafeInteger(textStart) && textStart >= 0 && textStart <= bodyBytes && textStart % 8 === 0)) return undefined;
  // The typed arrays are views of one shared buffer (the ID indexes must be shared with the
  // worker threads anyway): read once, never copied. The text is decoded, then dropped.
  const shared = new SharedArrayBuffer(Math.max(8, textStart));
  readFully(fd, new Uint8Array(shared, 0, textStart), body);

  const byName = new Map(header.sections.map((s) => [s.name, s]));
  const section = (name: string, type: SectionType, width: number): Section => {
    const s = byName.get(name);
    const text = type === 'utf16' || type === 'latin1';
    const ok =
      s !== undefined &&
      s.type === type &&
      Number.isSafeInteger(s.offset) &&
      Number.isSafeInteger(s.bytes) &&
      s.offset % 8 === 0 &&
      s.bytes % width === 0 &&
      (text ? s.offset >= textStart && s.offset + s.bytes <= bodyBytes : s.offset >= 0 && s.offset + s.bytes <= textStart);
    if (!ok) throw new Error(`dimension cache: section ${name}`);
    return s;
  };
  const view = <T>(name: string, type: SectionType, width: number, make: (b: SharedArrayBuffer, at: number, n: number) => T): T => {
    const s = section(name, type, width);
    return make(shared, s.offset, s.bytes / width);
  };
  const i32 = (name: string) => view(name, 'i32', 4, (b, at, n) => new Int32Array(b, at, n));
  // Each text section is read on its own and dropped once decoded: no buffer of all the text at once.
  const text = (name: string) => {
    const latin1 = byName.get(name)?.type === 'latin1';
    const s = section(name, latin1 ? 'latin1' : 'utf16', latin1 ? 1 : 2);
    const buf = Buffer.allocUnsafe(s.bytes);
    readFully(fd, buf, body + s.offset);
    return buf.toString(latin1 ? 'latin1' : 'utf16le');
  };
  const strings = (name: string, count: number): string[] => {
    const all = text(`${name}.text`);
    const ends = i32(`${name}.ends`);
    if (ends.length !== count || (count > 0 && ends[count - 1] !== all.length)) throw new Error(`dimension cache: ${name}`);
    const out = new Array<string>(count);
    let at = 0;
    for (let i = 0; i < count; i++) {
      const end = ends[i];
      if (end < at) throw new Error(`dimension cache: ${name}`);
      out[i] = all.slice(at, end);
      at = end;
    }
    return out;
  };

  const { trackCount, userCount } = header;
  const trackIds = strings('trackIds', trackCount);
  const genres = strings('genres', byName.get('genres.ends')!.bytes / 4);
  const artists = strings('artists', byName.get('artists.ends')!.bytes / 4);
  const trackGenre = i32('trackGenre');
  const trackDurationMs = view('trackDurationMs', 'f64', 8, (b, at, n) => new Float64Array(b, at, n));
  const artistStart = i32('artistStart');
  const artistList = i32('artistList');
  const userAgeGroup = view('userAgeGroup', 'i8', 1, (b, at, n) => new Int8Array(b, at, n));
  if (
    trackGenre.length !== trackCount ||
    trackDurationMs.length !== trackCount ||
    artistStart.length !== trackCount + 1 ||
    artistStart[trackCount] !== artistList.length ||
    userAgeGroup.length !== userCount ||
    header.tracksSize !== trackCount ||
    header.usersSize !== userCount
  ) {
    return undefined;
  }
  const base: Omit<Dimensions, 'songIndex' | 'userIndex'> = {
    trackCount,
    userCount,
    trackIds,
    trackGenre,
    genres,
    trackDurationMs,
    artistStart,
    artistList,
    artists,
    userAgeGroup,
    duplicateSongs: header.duplicateSongs,
    duplicateUsers: header.duplicateUsers,
    songsFile: header.songsFile,
    usersFile: header.usersFile,
  };
  const dims = base as Dimensions;
  // The ID -> index Maps are built on first use: a run whose ID indexes come from the cache
  // (primeStreamDims) never needs them, and building them was most of a cached load's time.
  const index = (name: string, size: number): IdIndexData => {
    const table = i32(`${name}.table`);
    const data = { table, pool: view(`${name}.pool`, 'u16', 2, (b, at, n) => new Uint16Array(b, at, n)), size };
    // The scan's lookups and the user IDs (IdIndex.keys) trust the table (a power of two, at least
    // twice the keys, so that a lookup always meets an empty slot): a damaged one is a normal load.
    if (!IdIndex.valid(data, size)) throw new Error(`dimension cache: ${name} index`);
    return data;
  };
  const tracks = index('tracks', trackCount);
  const users = index('users', userCount);
  lazyIndex(dims, 'songIndex', () => trackIds);
  // The user IDs are not stored as text: the index holds each one whole, and only a caller of
  // userIndex (never a cached run's scan) needs them as strings.
  lazyIndex(dims, 'userIndex', () => IdIndex.keys(users));
  const rejects = { lines: text('rejects'), count: header.rejects };
  primeStreamDims(dims, tracks, users);
  return { dims, songs: header.songs, users: header.users, rejects };
}

/** `dims[name]`: a Map of ids[i] -> i, in index order (as the builder inserts them), made when first read. */
function lazyIndex(dims: Dimensions, name: 'songIndex' | 'userIndex', idsOf: () => readonly string[]): void {
  Object.defineProperty(dims, name, {
    enumerable: true,
    configurable: true,
    get(): Map<string, number> {
      const map = new Map<string, number>();
      const ids = idsOf();
      for (let i = 0; i < ids.length; i++) map.set(ids[i], i);
      Object.defineProperty(dims, name, { value: map, enumerable: true, configurable: true, writable: true });
      return map;
    },
    set(value: Map<string, number>) {
      Object.defineProperty(dims, name, { value, enumerable: true, configurable: true, writable: true });
    },
  });
}
