// The warehouse engine's row-level stage (domain/shards.ts): one shard reads its planned files
// through the stream engine's own parser and header logic (scan.ts readHeaderAndRows) and the
// same row checks (validate.ts), and writes what the warehouse needs to do the rest in SQL:
// compact gzip CSV parts of the rows that pass the row-level rules, the row-level rejects of
// each file (the very lines RejectSink would write for them), and a manifest, last.
//
// Memory stays flat whatever the file sizes: each part is a gzip stream fed as the rows are
// read and written to the staging lake as it goes; the parser waits for the parts to drain
// before it takes the next chunk (parse.ts Backpressure).
//
// A file with a schema error (missing column, corrupt gzip) does not fail the shard: it is
// recorded in the manifest and the run's circuit breaker stops before anything is loaded. Rows
// read before a corrupt gzip member's damage stay in the parts, as they stay in the stream
// engine's rejects output; nothing of such a run is ever loaded.

import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip, type Gzip, type ZlibOptions } from 'node:zlib';
import type { Lake } from '../domain/lake.js';
import { MkpiError, isMkpiError } from '../domain/errors.js';
import { dayToDate } from '../domain/listen-time.js';
import {
  BAD_ROW_REASONS,
  REASON_UNKNOWN_TRACK,
  REJECT_REASONS,
  SONG_REJECT_REASONS,
  USER_REJECT_REASONS,
} from '../domain/reject-reasons.js';
import {
  MANIFEST_VERSION,
  encodePartId,
  manifestKey,
  shardPrefix,
  type NormalizedDimension,
  type NormalizedFile,
  type PartKind,
  type PartRef,
  type PlannedDimension,
  type ShardManifest,
} from '../domain/shards.js';
import { readHeaderAndRows } from './scan.js';
import { rejectLine } from './rejects.js';
import {
  COMPLETE,
  SONG_COLUMNS,
  STREAM_COLUMNS,
  USER_COLUMNS,
  checkSong,
  checkStreamRow,
  checkUser,
  couldBeSongId,
  newStreamRowCheck,
  streamRejectDetail,
  type IdLookup,
} from './validate.js';

/** Default size bound of a part, in uncompressed bytes: gzip parts of listens then stay within AWS's 1-125 MB COPY guidance. */
export const DEFAULT_PART_BYTES = 256 * 1024 * 1024;

/** Text gathered before it is handed to a part's gzip stream: fewer, larger writes. */
const FLUSH_CHARS = 64 * 1024;
const GZIP_HIGH_WATER = 256 * 1024;
/**
 * Compression level of the parts. Level 1 compresses a listens part at about twice the speed of
 * the default 6 for some 13% more bytes (3M listens: 1.9 s against 3.7 s of CPU, 51 MB against
 * 45 MB): gzip is most of a shard's CPU, and the parts are read once, by the warehouse's COPY.
 */
const GZIP_LEVEL = 1;

export interface NormalizeJob {
  runId: string;
  /** 0-based; -1 for the run's own reread shard. */
  shard: number;
  shards: number;
  files: { id: number; key: string; fingerprint: string }[];
  dimensions: PlannedDimension[];
  /** The dimension files' keys, which an unknown_track detail names (the plan's layout). */
  detailFiles?: { songs: string; users: string };
}

export interface NormalizeOptions {
  signal?: AbortSignal;
  /** Part size bound in uncompressed bytes; default DEFAULT_PART_BYTES. */
  partBytes?: number;
  /** Rows read since the last call. */
  onRows?: (n: number) => void;
  now?: () => Date;
}

/** A field of a part (PART_COLUMNS): RFC 4180 quoting only where the value needs it. */
function partField(s: string): string {
  return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}

/** One gzip object being written to the staging lake. */
class GzipPart {
  rows = 0;
  /** Uncompressed bytes handed over so far (text still buffered included). */
  raw = 0;
  private stored = 0;
  private readonly gz: Gzip;
  private buf: string[] = [];
  private bufChars = 0;
  private closing = false;
  private readonly settled: Promise<void>;
  private writeError: Error | undefined;
  private pipeError: Error | undefined;

  constructor(
    staging: Lake,
    readonly key: string,
    signal: AbortSignal | undefined,
  ) {
    // zlib streams take the stream options too, which ZlibOptions does not declare.
    this.gz = createGzip({ level: GZIP_LEVEL, writableHighWaterMark: GZIP_HIGH_WATER } as ZlibOptions);
    const counter = new Transform({
      transform: (chunk: Buffer, _enc, cb) => {
        this.stored += chunk.length;
        cb(null, chunk);
      },
    });
    const piping = pipeline(this.gz, counter).catch((err: unknown) => {
      this.pipeError ??= asError(err);
    });
    const writing = staging.write(key, counter, signal).catch((err: unknown) => {
      this.writeError ??= asError(err);
    });
    this.settled = Promise.all([piping, writing]).then(() => undefined);
  }

  /** What made the part fail, when it did: the lake's error before the stream's. */
  get failure(): Error | undefined {
    return this.writeError ?? this.pipeError;
  }

  add(text: string): void {
    if (this.gz.destroyed) throw this.failure ?? new MkpiError('MKPI_INTERNAL', `${this.key}: the part's stream closed early`);
    this.rows++;
    this.raw += Buffer.byteLength(text);
    this.buf.push(text);
    this.bufChars += text.length;
    if (this.bufChars >= FLUSH_CHARS) this.flush();
  }

  private flush(): void {
    if (this.buf.length === 0) return;
    this.gz.write(this.buf.join(''));
    this.buf = [];
    this.bufChars = 0;
  }

  /** Whether the parser must wait for this part: its gzip stream is full, or it failed. Never once it is closing. */
  get needsDrain(): boolean {
    return !this.closing && (this.gz.writableNeedDrain || this.gz.destroyed);
  }

  async drained(): Promise<void> {
    const gz = this.gz;
    try {
      await new Promise<void>((resolve, reject) => {
        if (gz.destroyed) return reject(new Error(`${this.key}: the part's stream closed early`));
        if (!gz.writableNeedDrain) return resolve();
        const done = (err?: Error) => {
          gz.off('drain', onDrain);
          gz.off('close', onClose);
          gz.off('error', done);
          if (err) reject(err);
          else resolve();
        };
        const onDrain = () => done();
        const onClose = () => done(new Error(`${this.key}: the part's stream closed early`));
        gz.on('drain', onDrain);
        gz.on('close', onClose);
        gz.on('error', done);
      });
    } catch (err) {
      await this.settled;
      throw this.failure ?? err;
    }
  }

  async close(): Promise<PartRef> {
    this.closing = true;
    this.flush();
    this.gz.end();
    await this.settled;
    if (this.failure !== undefined) throw this.failure;
    return { key: this.key, bytes: this.stored, rows: this.rows };
  }

  async abort(): Promise<void> {
    if (!this.gz.destroyed) this.gz.destroy(new Error(`${this.key}: abandoned`));
    await this.settled;
  }
}

/** Every part a shard has open: what the parser waits on, and what a failure abandons. */
class OpenParts {
  readonly open = new Set<GzipPart>();
  /** Closes started in the middle of a file (a rolled part), awaited before the next chunk is read. */
  private closing: Promise<unknown>[] = [];

  constructor(
    readonly staging: Lake,
    readonly signal: AbortSignal | undefined,
  ) {}

  start(key: string): GzipPart {
    const part = new GzipPart(this.staging, key, this.signal);
    this.open.add(part);
    return part;
  }

  async close(part: GzipPart): Promise<PartRef> {
    try {
      return await part.close();
    } finally {
      this.open.delete(part);
    }
  }

  /** Closes a part without waiting; its outcome is awaited by the next backpressure() or settle(). */
  closeLater(part: GzipPart, done: (ref: PartRef) => void): void {
    const p = this.close(part).then(done);
    p.catch(() => undefined);
    this.closing.push(p);
  }

  /** The parser's wait (parse.ts Backpressure): until every open part drained and rolled parts are closed. */
  backpressure = (): Promise<void> | undefined => {
    const waits: Promise<unknown>[] = this.closing;
    this.closing = [];
    for (const p of this.open) if (p.needsDrain) waits.push(p.drained());
    return waits.length === 0 ? undefined : Promise.all(waits).then(() => undefined);
  };

  async settle(): Promise<void> {
    const closing = this.closing;
    this.closing = [];
    await Promise.all(closing);
  }

  /** Abandons every open part; the first lake failure among them, if any. */
  async abortAll(): Promise<unknown> {
    const parts = [...this.open];
    await Promise.allSettled(this.closing);
    this.closing = [];
    await Promise.all(parts.map((p) => p.abort()));
    this.open.clear();
    return parts.map((p) => p.failure).find((f) => isMkpiError(f));
  }
}

/** Parts of one kind, rolled at the size bound: `<kind>-00000.csv.gz`, `-00001`, … */
class RollingParts {
  private current: GzipPart | undefined;
  private next = 0;
  private readonly refs: (PartRef | undefined)[] = [];

  constructor(
    private readonly parts: OpenParts,
    private readonly prefix: string,
    private readonly kind: PartKind,
    private readonly partBytes: number,
  ) {}

  add(text: string): void {
    if (this.current === undefined)
      this.current = this.parts.start(`${this.prefix}${this.kind}-${String(this.next++).padStart(5, '0')}.csv.gz`);
    this.current.add(text);
    if (this.current.raw >= this.partBytes) {
      const slot = this.refs.length;
      this.refs.push(undefined);
      this.parts.closeLater(this.current, (ref) => (this.refs[slot] = ref));
      this.current = undefined;
    }
  }

  async finish(): Promise<PartRef[]> {
    if (this.current !== undefined) {
      const part = this.current;
      this.current = undefined;
      this.refs.push(await this.parts.close(part));
    }
    await this.parts.settle();
    return this.refs.map((r) => {
      if (r === undefined) throw new MkpiError('MKPI_INTERNAL', `${this.prefix}${this.kind}: a part was not closed`);
      return r;
    });
  }
}

/** The rejects lines of one input file: one part, started at its first reject. */
class RejectsPart {
  count = 0;
  private part: GzipPart | undefined;

  constructor(
    private readonly parts: OpenParts,
    readonly key: string,
  ) {}

  add(file: string, line: number, reason: string, detail: string, fields: readonly string[]): void {
    this.count++;
    (this.part ??= this.parts.start(this.key)).add(rejectLine(file, line, reason, detail, fields));
  }

  async finish(): Promise<string | null> {
    if (this.part === undefined) return null;
    await this.parts.close(this.part);
    return this.key;
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function stale(key: string, why: string): MkpiError {
  return new MkpiError('MKPI_PLAN_STALE', `${key}: ${why} since the run was planned`, {
    hint: 'plan the run again (musickpi plan) so that it reads the files as they are now',
    details: { file: key },
  });
}

async function checkFingerprint(lake: Lake, key: string, fingerprint: string): Promise<void> {
  const now = await lake.stat(key);
  if (now === undefined) throw stale(key, 'it is gone');
  if (now.fingerprint !== fingerprint) throw stale(key, `it changed (fingerprint ${now.fingerprint}, planned ${fingerprint})`);
}

function schemaErrorOf(err: unknown): { message: string; hint?: string } | undefined {
  if (!isMkpiError(err) || err.code !== 'MKPI_SCHEMA') return undefined;
  return err.hint === undefined ? { message: err.message } : { message: err.message, hint: err.hint };
}

/** Every ID is "found": only the row-level reasons (malformed … bad_listen_time) can come out; the warehouse decides orphans. */
const FOUND: IdLookup = { get: () => 0 };

/**
 * Normalizes one shard of a plan: reads its dimension and stream files from `lake`, writes
 * their parts, rejects and manifest under the shard's prefix in `staging`, and returns the
 * manifest. Running it again replaces its output: the manifest goes first, objects the new
 * manifest does not list are removed, and the manifest is written last.
 */
export async function normalizeShard(lake: Lake, staging: Lake, job: NormalizeJob, opts: NormalizeOptions = {}): Promise<ShardManifest> {
  const { signal } = opts;
  const now = opts.now ?? (() => new Date());
  const partBytes = opts.partBytes ?? DEFAULT_PART_BYTES;
  if (!(partBytes > 0)) throw new MkpiError('MKPI_INTERNAL', `partBytes must be positive, not ${partBytes}`);
  const startedAt = now().toISOString();
  const prefix = shardPrefix(job.runId, job.shard, job.shards);
  const mKey = manifestKey(job.runId, job.shard, job.shards);
  await staging.remove(mKey);

  const open = new OpenParts(staging, signal);
  const listens = new RollingParts(open, prefix, 'listens', partBytes);
  const songs = new RollingParts(open, prefix, 'songs', partBytes);
  const artists = new RollingParts(open, prefix, 'artists', partBytes);
  const users = new RollingParts(open, prefix, 'users', partBytes);
  const read = { signal, onRows: opts.onRows, backpressure: open.backpressure };
  const dimensions: NormalizedDimension[] = [];
  const files: NormalizedFile[] = [];

  try {
    for (const dim of job.dimensions) {
      if (signal?.aborted) throw interrupted(signal);
      await checkFingerprint(lake, dim.key, dim.fingerprint);
      const rejects = new RejectsPart(open, `${prefix}rejects-${dim.kind}.csv.gz`);
      const reasons = dim.kind === 'songs' ? SONG_REJECT_REASONS : USER_REJECT_REASONS;
      const out: NormalizedDimension = {
        kind: dim.kind,
        key: dim.key,
        bytes: 0,
        rows: 0,
        valid: 0,
        rejected: Object.fromEntries(reasons.map((r) => [r, 0])),
        duplicateHeaders: [],
        rejectsKey: null,
        rejectsCount: 0,
      };
      try {
        const r =
          dim.kind === 'songs'
            ? await readHeaderAndRows(lake, dim.key, SONG_COLUMNS, read, (fields, line, flag, h) => {
                out.rows++;
                const c = checkSong(fields, h, flag);
                if (!c.ok) {
                  out.rejected[c.reason]++;
                  rejects.add(dim.key, line, c.reason, c.detail, fields);
                  return;
                }
                out.valid++;
                const id = partField(c.trackId);
                songs.add(`${line},${id},${partField(c.genre)},${fields[h.indexes[3]].trim()}\n`);
                for (const a of c.artists) artists.add(`${line},${id},${partField(a)}\n`);
              })
            : await readHeaderAndRows(lake, dim.key, USER_COLUMNS, read, (fields, line, flag, h) => {
                out.rows++;
                const c = checkUser(fields, h, flag);
                if (!c.ok) {
                  out.rejected[c.reason]++;
                  rejects.add(dim.key, line, c.reason, c.detail, fields);
                  return;
                }
                out.valid++;
                users.add(`${line},${partField(encodePartId(c.userId))},${c.ageGroup < 0 ? '' : c.ageGroup}\n`);
              });
        out.bytes = r.bytes;
        out.duplicateHeaders = r.header.duplicates;
      } catch (err) {
        const schema = schemaErrorOf(err);
        if (schema === undefined) throw err;
        out.schemaError = schema;
      }
      await checkFingerprint(lake, dim.key, dim.fingerprint);
      out.rejectsKey = await rejects.finish();
      out.rejectsCount = rejects.count;
      dimensions.push(out);
    }

    const check = newStreamRowCheck();
    for (const file of job.files) {
      if (signal?.aborted) throw interrupted(signal);
      await checkFingerprint(lake, file.key, file.fingerprint);
      const rejects = new RejectsPart(open, `${prefix}rejects-${file.id}.csv.gz`);
      const counts = new Float64Array(BAD_ROW_REASONS.length);
      const days = new Set<number>();
      const fileId = String(file.id);
      const key = file.key;
      const detailDims = { songsFile: job.detailFiles?.songs ?? 'songs.csv', usersFile: job.detailFiles?.users ?? 'users.csv' };
      let unknownTracks = 0;
      let rows = 0;
      let kept = 0;
      let lastDay = NaN;
      let lastDate = '';
      const out: NormalizedFile = {
        id: file.id,
        key,
        fingerprint: file.fingerprint,
        contentHash: '',
        bytes: 0,
        rows: 0,
        listens: 0,
        rejected: {},
        dates: [],
        duplicateHeaders: [],
        rejectsKey: null,
        rejectsCount: 0,
      };
      try {
        const r = await readHeaderAndRows(lake, key, STREAM_COLUMNS, { ...read, hash: true }, (fields, line, flag, h) => {
          rows++;
          const c = checkStreamRow(check, fields, flag, h, FOUND, FOUND);
          if (c.reason !== COMPLETE) {
            counts[c.reason]++;
            rejects.add(key, line, REJECT_REASONS[c.reason], streamRejectDetail(c.reason, fields, flag, h, detailDims), fields);
            return;
          }
          const hourKey = c.hourKey;
          const day = Math.floor(hourKey / 24);
          if (day !== lastDay) {
            days.add(day);
            lastDay = day;
            lastDate = dayToDate(day);
          }
          const trackId = fields[h.indexes[1]].trim();
          // No song can have this track_id: the row is an orphan whatever the dimensions hold.
          if (!couldBeSongId(trackId)) {
            unknownTracks++;
            rejects.add(key, line, 'unknown_track', streamRejectDetail(REASON_UNKNOWN_TRACK, fields, flag, h, detailDims), fields);
            return;
          }
          kept++;
          listens.add(
            `${fileId},${line},${partField(encodePartId(fields[h.indexes[0]].trim()))},${partField(trackId)},${lastDate},${hourKey - day * 24}\n`,
          );
        });
        out.bytes = r.bytes;
        out.contentHash = r.sha256 ?? '';
        out.duplicateHeaders = r.header.duplicates;
      } catch (err) {
        const schema = schemaErrorOf(err);
        if (schema === undefined) throw err;
        out.schemaError = schema;
      }
      // The file must not have changed while it was read either: its hash and rows would not be those of the planned version.
      await checkFingerprint(lake, key, file.fingerprint);
      out.rows = rows;
      out.listens = kept;
      out.rejected = Object.fromEntries(BAD_ROW_REASONS.map((r, i) => [r, counts[i]]));
      if (unknownTracks > 0) out.rejected.unknown_track = unknownTracks;
      out.dates = [...days].sort((a, b) => a - b).map(dayToDate);
      out.rejectsKey = await rejects.finish();
      out.rejectsCount = rejects.count;
      files.push(out);
    }

    const parts: Record<PartKind, PartRef[]> = {
      listens: await listens.finish(),
      songs: await songs.finish(),
      artists: await artists.finish(),
      users: await users.finish(),
    };
    const manifest: ShardManifest = {
      version: MANIFEST_VERSION,
      runId: job.runId,
      shard: job.shard,
      shards: job.shards,
      startedAt,
      finishedAt: '',
      parts,
      files,
      dimensions,
    };
    // A shard run again with other part sizes, or on other data, must not leave objects of the earlier run behind.
    const keep = new Set<string>([mKey]);
    for (const refs of Object.values(parts)) for (const p of refs) keep.add(p.key);
    for (const f of [...files, ...dimensions]) if (f.rejectsKey !== null) keep.add(f.rejectsKey);
    for (const obj of await staging.list(prefix)) {
      if (signal?.aborted) throw interrupted(signal);
      if (!keep.has(obj.key)) await staging.remove(obj.key);
    }
    manifest.finishedAt = now().toISOString();
    await staging.write(mKey, Readable.from([JSON.stringify(manifest, null, 2) + '\n']), signal);
    return manifest;
  } catch (err) {
    const lakeFailure = await open.abortAll();
    if (signal?.aborted) throw isMkpiError(err) && err.code === 'MKPI_INTERRUPTED' ? err : interrupted(signal, err);
    throw isMkpiError(err) ? err : (lakeFailure ?? err);
  }
}

function interrupted(signal: AbortSignal, cause: unknown = signal.reason): MkpiError {
  return new MkpiError('MKPI_INTERRUPTED', 'interrupted', { cause });
}
