// Each loaded date's reducer state, kept where the next run reads it back (docs/performance.md,
// "Late data"). A late file makes its dates be recomputed over every file that carries them
// (docs/contract.md#late); without this, each such date's archived files are parsed again, so
// the cost of a late row follows the archive. With it, a run adds the saved counts of a date to
// its new rows, and parses only the loaded files the saved state does not cover.
//
// A saved state is used only where it is provably the same as re-reading: it names the
// dimensions it was built with (their keys, fingerprints and sizes, and musickpi's version:
// interned indexes mean nothing under other dimensions) and the ledger identities of exactly
// the files whose rows it holds. A run uses it for a date only when those files are all still
// counted for that date; the counted files it lacks are re-read for that date alone. Anything
// else (other dimensions, a file retracted or repaired away, a damaged object) is a re-read
// from the files, as before.
//
// The object: MAGIC, the header's length (u32 LE), a JSON header, the body (per hour, its tracks
// as the gap from the previous track and the count, then its listeners as gaps, all unsigned
// LEB128 varints), and the SHA-256 of everything before it: a cut or altered object is detected
// and ignored.

import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Lake, LakeObject } from '../domain/lake.js';
import { dateToDay, dayToDate } from '../domain/listen-time.js';
import { AGE_GROUPS, addCounts, hourCounts, type HourCounts, type KpiState } from './reduce.js';

/** Bumped whenever the object's layout, or what the reducers keep, changes. */
export const DATE_STATE_FORMAT = 1;

const MAGIC = Buffer.from('MKPIDATE', 'latin1');
const SUFFIX = '.state';
/** A state larger than this is not read back (a damaged length, or a catalogue past any sane day). */
const MAX_STATE_BYTES = 1 << 30;

/** Where the states live: a lake (the data lake itself by default) and a prefix in it. */
export interface DateStateStore {
  lake: Lake;
  /** Ends with '/'. */
  prefix: string;
}

/** The dimension files a state was built with, as the lake states them. */
export interface DimensionsVersion {
  version: string;
  songs: { key: string; fingerprint: string; size: number };
  users: { key: string; fingerprint: string; size: number };
}

/** A hash naming the dimensions (and the code) a state's indexes belong to. */
export function dimensionsKey(v: DimensionsVersion): string {
  const canonical = { format: DATE_STATE_FORMAT, version: v.version, songs: v.songs, users: v.users };
  return createHash('sha256').update(JSON.stringify(canonical)).digest('hex');
}

interface HourHeader {
  hour: number;
  count: number;
  ages: number[];
  tracks: number;
  users: number;
}

interface Header {
  format: number;
  date: string;
  dimensions: string;
  trackCount: number;
  userCount: number;
  /** Ledger identities (plan.ts identity()) of the files whose rows of this date the state holds, sorted. */
  files: string[];
  hours: HourHeader[];
  bodyBytes: number;
}

/** A state read back. */
export interface DateState {
  date: string;
  dimensions: string;
  files: string[];
  hours: { hour: number; counts: HourCounts }[];
}

export function dateStateKey(store: DateStateStore, date: string): string {
  return `${store.prefix}${date}${SUFFIX}`;
}

class VarintWriter {
  private buf = new Uint8Array(1 << 16);
  length = 0;
  put(v: number): void {
    if (this.length + 5 > this.buf.length) {
      const grown = new Uint8Array(this.buf.length * 2);
      grown.set(this.buf.subarray(0, this.length));
      this.buf = grown;
    }
    while (v >= 0x80) {
      this.buf[this.length++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[this.length++] = v;
  }
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

/** The saved form of one date of `state`, holding the rows of `files` (ledger identities). */
export function encodeDateState(state: KpiState, day: number, meta: { dimensions: string; files: Iterable<string> }): Buffer {
  const keys = [...state.hours.keys()].filter((k) => Math.floor(k / 24) === day).sort((a, b) => a - b);
  const body = new VarintWriter();
  const hours: HourHeader[] = [];
  for (const key of keys) {
    const h = state.hours.get(key)!;
    if (h.count === 0) continue;
    const c = hourCounts(state, h);
    let prev = 0;
    for (let i = 0; i < c.tracks.length; i += 2) {
      body.put(c.tracks[i] - prev);
      body.put(c.tracks[i + 1]);
      prev = c.tracks[i];
    }
    prev = 0;
    for (let i = 0; i < c.users.length; i++) {
      body.put(c.users[i] - prev);
      prev = c.users[i];
    }
    hours.push({ hour: key - day * 24, count: c.count, ages: [...c.ages], tracks: c.tracks.length / 2, users: c.users.length });
  }
  const bytes = body.bytes();
  const header: Header = {
    format: DATE_STATE_FORMAT,
    date: dayToDate(day),
    dimensions: meta.dimensions,
    trackCount: state.trackCount,
    userCount: state.userCount,
    files: [...new Set(meta.files)].sort(),
    hours,
    bodyBytes: bytes.length,
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length);
  const sealed = Buffer.concat([MAGIC, len, json, bytes]);
  return Buffer.concat([sealed, createHash('sha256').update(sealed).digest()]);
}

/**
 * A saved state, or undefined when the bytes are not one built for these dimensions (wrong
 * magic or format, cut, altered, or indexes out of range): such a state is never used.
 */
export function decodeDateState(buf: Buffer, expect: { dimensions: string; trackCount: number; userCount: number }): DateState | undefined {
  try {
    if (buf.length < MAGIC.length + 4 + 32 || !buf.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
    const end = buf.length - 32;
    if (!createHash('sha256').update(buf.subarray(0, end)).digest().equals(buf.subarray(end))) return undefined;
    const hlen = buf.readUInt32LE(MAGIC.length);
    const start = MAGIC.length + 4 + hlen;
    if (start > end) return undefined;
    const header = JSON.parse(buf.subarray(MAGIC.length + 4, start).toString('utf8')) as Header;
    if (header.format !== DATE_STATE_FORMAT || header.dimensions !== expect.dimensions) return undefined;
    if (header.trackCount !== expect.trackCount || header.userCount !== expect.userCount) return undefined;
    const body = buf.subarray(start, end);
    if (body.length !== header.bodyBytes) return undefined;
    if (!Array.isArray(header.files) || !header.files.every((f) => typeof f === 'string')) return undefined;
    let pos = 0;
    const get = (): number => {
      let v = 0;
      let shift = 0;
      for (;;) {
        if (pos >= body.length || shift > 28) throw new Error('varint');
        const b = body[pos++];
        v += (b & 0x7f) * 2 ** shift;
        if (b < 0x80) return v;
        shift += 7;
      }
    };
    const hours: DateState['hours'] = [];
    let lastHour = -1;
    for (const hh of header.hours) {
      if (!Number.isInteger(hh.hour) || hh.hour <= lastHour || hh.hour > 23) return undefined;
      lastHour = hh.hour;
      if (!Number.isInteger(hh.count) || hh.count < 1 || hh.users < 1 || hh.users > hh.count || hh.tracks < 1) return undefined;
      if (!Array.isArray(hh.ages) || hh.ages.length !== AGE_GROUPS.length) return undefined;
      let aged = 0;
      for (const a of hh.ages) {
        if (!Number.isInteger(a) || a < 0) return undefined;
        aged += a;
      }
      if (aged > hh.count) return undefined;
      const tracks = new Int32Array(hh.tracks * 2);
      let t = 0;
      let listens = 0;
      for (let i = 0; i < hh.tracks; i++) {
        const d = get();
        if (i > 0 && d === 0) return undefined;
        t += d;
        const n = get();
        if (t >= expect.trackCount || n < 1) return undefined;
        tracks[2 * i] = t;
        tracks[2 * i + 1] = n;
        listens += n;
      }
      if (listens !== hh.count) return undefined;
      const users = new Int32Array(hh.users);
      let u = 0;
      for (let i = 0; i < hh.users; i++) {
        const d = get();
        if (i > 0 && d === 0) return undefined;
        u += d;
        if (u >= expect.userCount) return undefined;
        users[i] = u;
      }
      hours.push({ hour: hh.hour, counts: { count: hh.count, tracks, users, ages: Float64Array.from(hh.ages) } });
    }
    if (pos !== body.length) return undefined;
    return { date: header.date, dimensions: header.dimensions, files: header.files, hours };
  } catch {
    return undefined;
  }
}

/** Adds a saved date's counts to the run's state (reduce.ts addCounts, hour by hour). */
export function restoreDateState(state: KpiState, saved: DateState): void {
  const day = dateToDay(saved.date);
  for (const { hour, counts } of saved.hours) addCounts(state, day * 24 + hour, counts);
}

/** The saved states under the store, by date (one listing, however many dates). */
export async function listDateStates(store: DateStateStore): Promise<Map<string, LakeObject>> {
  const out = new Map<string, LakeObject>();
  for (const obj of await store.lake.list(store.prefix)) {
    const name = obj.key.slice(store.prefix.length);
    if (!name.endsWith(SUFFIX) || name.includes('/')) continue;
    out.set(name.slice(0, -SUFFIX.length), obj);
  }
  return out;
}

/** The bytes of one saved state, or undefined when it cannot be read (a missing state is a re-read). */
export async function readDateStateBytes(store: DateStateStore, obj: LakeObject, signal?: AbortSignal): Promise<Buffer | undefined> {
  if (obj.size > MAX_STATE_BYTES) return undefined;
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of await store.lake.read(obj.key, signal)) {
      const b = chunk as Buffer;
      total += b.length;
      if (total > MAX_STATE_BYTES) return undefined;
      chunks.push(b);
    }
    return Buffer.concat(chunks, total);
  } catch {
    if (signal?.aborted) throw signal.reason;
    return undefined;
  }
}

/** Writes one date's state (the lakes write aside and rename, or PUT: never half an object). */
export async function writeDateState(store: DateStateStore, date: string, bytes: Buffer, signal?: AbortSignal): Promise<void> {
  await store.lake.write(dateStateKey(store, date), Readable.from([bytes]), signal);
}

/** Removes a saved state that no longer holds (no error when it is gone). */
export async function removeDateState(store: DateStateStore, date: string): Promise<void> {
  await store.lake.remove(dateStateKey(store, date));
}
