// Stream files scanned in parallel (issue 3: use both cores): worker threads, and by default the
// calling thread as one more reader. Each worker reopens the lake from a serialisable LakeSpec,
// shares the dimension indexes (SharedArrayBuffers, see id-index.ts), reduces into KPI state of
// its own and hands it back (transferred, not copied) for merge() into the caller's. Files are
// handed out in listing order to whichever reader is free; per-file results are delivered in
// listing order, and each file's rejects are spooled by its reader and appended to the run's
// RejectSink in listing order, so the report and the rejects output are those of the
// single-thread path, byte for byte.
//
// One large plain file (the only file of a run) is split into byte ranges instead, so that it
// keeps both cores busy too: the calling thread reads it once from the start, hashing it (its
// ledger identity) and finding record boundaries with the parser's own grammar
// (RecordBoundaryScanner: exact with quoted fields spanning lines), and hands each range to the
// next free reader as soon as its end is known. A range's line numbers count from its own start;
// its rejects are spooled with them and replayed in order, shifted by the line endings of the
// ranges before it, so the rejects output and the report are the single reader's, byte for
// byte. Each range's reader checks that it ended exactly at the next range's start. When the
// header cannot be resolved early (a schema error, an enormous header) the file is read whole.
//
// Failure: a worker's error (a lake read that failed, ...) comes back as the MkpiError it was
// (code, message, hint, details); a crashed worker is MKPI_INTERNAL; an abort signal is
// MKPI_INTERRUPTED. In every case the other readers are told to stop, workers are given a moment
// to close what they hold, then terminated: no worker outlives the call.

import { Worker } from 'node:worker_threads';
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import type { Lake, LakeObject, LakeSpec } from '../domain/lake.js';
import { MkpiError, isMkpiError, type ErrorCode } from '../domain/errors.js';
import { isGzipKey } from '../domain/layout.js';
import { merge, type HourState, type KpiState } from '../stages/reduce.js';
import type { SpillOptions, SpillPart, StateSpill } from './state-spill.js';
import { CsvParser, RecordBoundaryScanner } from '../stages/parse.js';
import { RejectSpool, type RejectSink, type RejectWriter } from '../stages/rejects.js';
import { scanStreamFile, streamDims, streamDimsData, type ScanRange, type StreamDimsData, type StreamScan } from '../stages/scan.js';
import { STREAM_COLUMNS, resolveHeader, type Dimensions, type ResolvedHeader } from '../stages/validate.js';

export interface ParallelOptions {
  /** How workers reopen the lake; without it every file is read in the calling thread. */
  lake?: LakeSpec;
  /** Worker threads; default min(2, available cores). 0 or 1: read in the calling thread. */
  workers?: number;
  /**
   * Pending stream bytes below which the calling thread reads them (a worker's start-up costs
   * ~50 ms); a `.gz` file counts as the text it is estimated to inflate to.
   */
  minBytes?: number;
  /** Whether the calling thread reads files too, next to the workers; default DEFAULT_MAIN_READS. */
  mainReads?: boolean;
  /** A single plain file at least this large is split into byte ranges; default DEFAULT_MIN_SPLIT_BYTES. */
  splitMinBytes?: number;
}

/** Whether one file can be split into byte ranges for several readers: plain CSV, large enough. */
export function splittable(obj: LakeObject, minBytes = DEFAULT_MIN_SPLIT_BYTES): boolean {
  return !isGzipKey(obj.key) && obj.size >= minBytes && obj.size > 0;
}

export const DEFAULT_MIN_PARALLEL_BYTES = 16 * 1024 * 1024;
/** A single plain file at least this large is split into byte ranges. */
export const DEFAULT_MIN_SPLIT_BYTES = 32 * 1024 * 1024;
/**
 * Size of a byte range of a split file. Smaller ranges balance the readers' tails better; each
 * costs a message, a file open and a reader's per-hour state that may not have existed yet.
 */
export const DEFAULT_RANGE_BYTES = 24 * 1024 * 1024;
/**
 * Where the ranges of a split file end (before each is moved to a record boundary): ranges of
 * `step` bytes while much is left, then each a share of what is left (guided self-scheduling),
 * down to step / 8, so that the readers finish together instead of one range running alone at
 * the end while the other cores idle.
 */
export function rangeTargets(size: number, step: number, readers: number): number[] {
  if (!(step >= 1)) throw new RangeError(`range size must be at least 1 byte (got ${step})`);
  const targets: number[] = [];
  const least = Math.max(1, Math.floor(step / 8));
  const shares = 2 * Math.max(1, readers);
  for (let t = 0; ;) {
    t += Math.max(least, Math.min(step, Math.ceil((size - t) / shares)));
    if (t >= size) return targets;
    targets.push(t);
  }
}

/**
 * The calling thread reads files too. With 2 workers on 2 cores that is 3 readers: the OS
 * time-slices them, so that with 5 equal files the last one does not run alone while a core
 * idles (2.5 file-times instead of 3), at no memory cost (no extra isolate).
 */
export const DEFAULT_MAIN_READS = true;
const WORKER_YOUNG_GEN_MB = 8;

export function defaultWorkers(): number {
  return Math.max(1, Math.min(2, availableParallelism()));
}

/** Worker threads to use for these files: 0 means in-thread. */
export function plannedWorkers(opts: ParallelOptions | undefined, files: readonly LakeObject[]): number {
  if (!opts?.lake) return 0;
  // One file is split into byte ranges when it is large and plain; else it has one reader, and a
  // worker for it would only add a thread's start-up.
  const split = files.length === 1 && splittable(files[0], opts.splitMinBytes);
  // A split file's ranges shrink towards its end, so its readers finish together: one reader a
  // core, this thread being one when it reads too. (Whole files need the third reader for their
  // tails; on a split file it only added an isolate: measured on the 5M-listen file, 2 cores,
  // 3.58 s and 214 MB with 1 worker + this thread against 3.74 s and 252 MB with 2 workers + it.)
  const splitDefault = Math.max(1, defaultWorkers() - ((opts.mainReads ?? DEFAULT_MAIN_READS) ? 1 : 0));
  const n = split ? (opts.workers ?? splitDefault) : Math.min(opts.workers ?? defaultWorkers(), files.length);
  if ((files.length < 2 && !split) || !(n >= 1)) return 0;
  let bytes = 0;
  for (const f of files) bytes += isGzipKey(f.key) ? f.size * GZIP_TEXT_RATIO : f.size;
  return bytes < (opts.minBytes ?? DEFAULT_MIN_PARALLEL_BYTES) ? 0 : Math.floor(n);
}

/**
 * What the work of reading a `.gz` file is estimated at, in text bytes per stored byte: listen
 * CSVs, whose IDs are random, compress about 3.5x (a generated 58 MB file: 17 MB).
 */
const GZIP_TEXT_RATIO = 3;

// ---- messages between the threads (plain, structured-clonable data) ----

export interface SerializedError {
  code: ErrorCode;
  message: string;
  hint?: string;
  details?: Record<string, unknown>;
  stack?: string;
}

export function serializeError(err: unknown): SerializedError {
  const e: MkpiError = isMkpiError(err) ? err : new MkpiError('MKPI_INTERNAL', err instanceof Error ? err.message : String(err));
  let details: Record<string, unknown> | undefined;
  try {
    details = e.details === undefined ? undefined : structuredClone(e.details);
  } catch {
    details = undefined;
  }
  const stack = err instanceof Error ? err.stack : undefined;
  return {
    code: e.code,
    message: e.message,
    ...(e.hint ? { hint: e.hint } : {}),
    ...(details ? { details } : {}),
    ...(stack ? { stack } : {}),
  };
}

export function deserializeError(s: SerializedError): MkpiError {
  const err = new MkpiError(s.code, s.message, { hint: s.hint, details: s.details });
  if (s.stack) err.stack = s.stack;
  return err;
}

/** A StreamScan as it crosses threads: the day set as an array, the error as plain data. */
export interface ScanData extends Omit<StreamScan, 'days' | 'schemaError'> {
  days: number[];
  schemaError?: SerializedError;
}

export function toScanData(s: StreamScan): ScanData {
  const { days, schemaError, ...rest } = s;
  return { ...rest, days: [...days], ...(schemaError ? { schemaError: serializeError(schemaError) } : {}) };
}

function fromScanData(d: ScanData): StreamScan {
  const { days, schemaError, ...rest } = d;
  return { ...rest, days: new Set(days), ...(schemaError ? { schemaError: deserializeError(schemaError) } : {}) };
}

export interface HourData {
  key: number;
  count: number;
  tracks: Int32Array | null;
  users: Int32Array | null;
  log: Int32Array | null;
  logLen: number;
  ages: Float64Array;
}

export interface WorkerInit {
  lake: LakeSpec;
  dims: StreamDimsData;
  /** Folder for per-file reject spools, or null when the run writes no rejects. */
  spoolDir: string | null;
  /** The memory budget each reader holds its state under (state-spill.ts); absent: none. */
  spill?: SpillOptions;
}

export type ToWorker = { type: 'scan'; index: number; obj: LakeObject; range?: ScanRange } | { type: 'finish' } | { type: 'abort' };

export type FromWorker =
  | { type: 'rows'; index: number; rows: number }
  | { type: 'done'; index: number; scan: ScanData; rejects: number }
  | { type: 'state'; hours: HourData[]; spilled: SpillPart[] }
  | { type: 'error'; index: number; error: SerializedError };

export function spoolPath(dir: string, index: number): string {
  return join(dir, `file-${index}.csv`);
}

/**
 * The rejects of one byte range, with line numbers relative to the range's start (those of the
 * ranges before it are not known yet): one JSON array a line, replayed into the run's
 * RejectSink once they are (replayRangeSpool).
 */
export class RangeSpool implements RejectWriter {
  private fd: number;
  private buf: string[] = [];
  private len = 0;
  count = 0;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'w');
  }

  add(file: string, line: number, reason: string, detail: string, fields: readonly string[]): void {
    this.count++;
    const s = JSON.stringify([line, reason, detail, fields]) + '\n';
    this.buf.push(s);
    this.len += s.length;
    if (this.len >= 1 << 20) this.flush();
  }

  private flush(): void {
    if (this.buf.length === 0) return;
    writeSync(this.fd, this.buf.join(''));
    this.buf = [];
    this.len = 0;
  }

  close(): void {
    if (this.fd < 0) return;
    try {
      this.flush();
    } finally {
      closeSync(this.fd);
      this.fd = -1;
    }
  }
}

/** Adds a closed RangeSpool's rejects to `sink` as rejects of `key`, their lines shifted by `lineOffset`. */
export function replayRangeSpool(path: string, key: string, lineOffset: number, sink: RejectWriter): void {
  const fd = openSync(path, 'r');
  try {
    const chunk = Buffer.allocUnsafe(1 << 20);
    const decoder = new StringDecoder('utf8');
    let rest = '';
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, null);
      const text = rest + (n === 0 ? decoder.end() : decoder.write(chunk.subarray(0, n)));
      let start = 0;
      for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
        const [line, reason, detail, fields] = JSON.parse(text.slice(start, nl)) as [number, string, string, string[]];
        sink.add(key, line + lineOffset, reason, detail, fields);
        start = nl + 1;
      }
      rest = text.slice(start);
      if (n === 0) break;
    }
  } finally {
    closeSync(fd);
  }
}

let live = 0;

/** Worker threads of this module still running (tests check that none outlives a scan). */
export function liveWorkers(): number {
  return live;
}

function startWorker(init: WorkerInit): Worker {
  return startWorkerModule('parallel-scan-worker', init);
}

/**
 * Starts a worker thread on the module `<name>` of lib/pipeline/ (`.js` in the compiled build,
 * `.ts` under tsx) with `workerData`.
 */
export function startWorkerModule(name: string, workerData: unknown): Worker {
  const options = {
    workerData,
    stdout: false,
    stderr: false,
    // The scan's garbage is short-lived (field strings): a small young generation keeps each
    // thread's footprint down (-20 MB per worker at 5M listens) at no measurable CPU cost.
    resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GEN_MB },
  };
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL(`./${name}.js`, import.meta.url), options);
  // Running from the TypeScript sources under tsx (the tests): a worker does not inherit tsx's
  // loader, so it registers it before importing its entry.
  const entry = new URL(`./${name}.ts`, import.meta.url).href;
  const tsx =
    typeof import.meta.resolve === 'function'
      ? import.meta.resolve('tsx/esm/api')
      : // tsx compiled this module to CommonJS (mocha require()s specs): its import.meta lacks
        // resolve(), and require.resolve finds the API's CommonJS build; the ESM one is beside it.
        new URL('./index.mjs', pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api'))).href;
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(boot, { ...options, eval: true });
}

export interface ParallelScanOptions {
  lake: LakeSpec;
  workers: number;
  /**
   * The calling thread's own handle on the same lake: when given, the calling thread reads files
   * too, as one more reader next to the workers (see DEFAULT_MAIN_READS).
   */
  local?: Lake;
  signal?: AbortSignal;
  rejects?: RejectSink;
  /** Rows read since the last call (every 64k rows of a file, and at its end), in the calling thread. */
  onRows?: (rows: number) => void;
  /** Each file's scan, in `files` order (a file finished early waits for the ones before it). */
  onScan?: (scan: StreamScan) => void;
  /** Where the per-file reject spools go (in a folder of their own, removed at the end); default os.tmpdir(). */
  tmpDir?: string;
  /**
   * The memory budget: the calling thread holds `state` under it with this spill (and its
   * parts receive the workers'), each worker with one of its own on the same options.
   */
  spill?: StateSpill;
  /** How long stopping workers get to close their streams before they are terminated. */
  stopGraceMs?: number;
  /** A single plain file at least this large is split into byte ranges; default DEFAULT_MIN_SPLIT_BYTES. */
  splitMinBytes?: number;
  /** Size of the ranges of a split file; default DEFAULT_RANGE_BYTES. */
  rangeBytes?: number;
}

interface Slot {
  worker: Worker;
  exited: Promise<void>;
  alive: boolean;
  finished: boolean;
  stateIn: boolean;
  /** Waiting for a task (a split file's next range is not known yet). */
  idle: boolean;
}

/** A unit of reading: a whole file, or a byte range of the one file being split. */
interface Task {
  obj: LakeObject;
  range?: ScanRange;
}

/** What the calling thread learns reading a split file from its start. */
interface SplitPass {
  bytes: number;
  sha256: string;
  header: ResolvedHeader;
}

/** The scan option that holds `state` under the budget, if there is one. */
function checkpointOf(opts: ParallelScanOptions, state: KpiState): { checkpoint?: () => void } {
  const spill = opts.spill;
  return spill ? { checkpoint: () => spill.check(state) } : {};
}

/**
 * Scans `files` in worker threads into `state`; returns their scans in `files` order. The
 * caller's `state` must be built on `dims` (merge() checks the sizes).
 */
export async function scanFilesParallel(
  files: readonly LakeObject[],
  dims: Dimensions,
  state: KpiState,
  opts: ParallelScanOptions,
): Promise<StreamScan[]> {
  const signal = opts.signal;
  if (signal?.aborted) throw new MkpiError('MKPI_INTERRUPTED', 'interrupted', { cause: signal.reason });
  const sd = streamDims(dims);
  const local = opts.local;
  const split = files.length === 1 && local?.readRange !== undefined && splittable(files[0], opts.splitMinBytes);
  if (files.length === 1 && !split && local !== undefined) {
    // One file that cannot be split (compressed, small, or a lake that cannot read a part of it): one reader, here.
    const scan = await scanStreamFile(local, files[0], sd, state, {
      signal,
      rejects: opts.rejects,
      onRows: opts.onRows,
      ...checkpointOf(opts, state),
    });
    opts.onScan?.(scan);
    return [scan];
  }
  const spoolDir = opts.rejects ? mkdtempSync(join(opts.tmpDir ?? tmpdir(), 'musickpi-spool-')) : null;
  const init: WorkerInit = { lake: opts.lake, dims: streamDimsData(sd), spoolDir, ...(opts.spill ? { spill: opts.spill.options() } : {}) };
  const count = Math.max(1, split ? opts.workers : Math.min(opts.workers, files.length));
  // Tasks: the files, or the ranges of the split file as its first pass finds them.
  const tasks: Task[] = split ? [] : files.map((obj) => ({ obj }));
  let tasksClosed = !split;
  const scans = new Array<StreamScan | undefined>(split ? 0 : files.length);
  const spooled = new Array<number | undefined>(split ? 0 : files.length);
  let delivered = 0;
  let nextTask = 0;
  let doneTasks = 0;
  let statesIn = 0;
  let mainDone = local === undefined;
  let pass: SplitPass | undefined;
  const slots: Slot[] = [];
  // Stops the calling thread's own reading when anything fails.
  const stop = new AbortController();
  /** Wakes the calling thread's reader when a task arrives. */
  let wakeHere: (() => void) | undefined;

  let settle!: { resolve: () => void; reject: (e: unknown) => void };
  const finished = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  finished.catch(() => undefined); // a failure before the await below is still handled there
  let failure: unknown;

  /** Waits for every worker to exit (told to abort first when `abort`), terminating laggards. */
  const stopAll = async (abort: boolean): Promise<void> => {
    if (abort) for (const s of slots) if (s.alive) s.worker.postMessage({ type: 'abort' } satisfies ToWorker);
    const grace = opts.stopGraceMs ?? 2_000;
    await Promise.all(
      slots.map(async (s) => {
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<boolean>((r) => (timer = setTimeout(() => r(true), grace)));
        const late = await Promise.race([s.exited.then(() => false), timedOut]);
        clearTimeout(timer);
        if (late) await s.worker.terminate();
      }),
    );
  };

  const fail = (err: unknown) => {
    if (failure !== undefined) return;
    failure = err;
    stop.abort(err);
    wakeHere?.();
    settle.reject(err);
  };

  const complete = () => {
    if (statesIn === slots.length && mainDone && tasksClosed && doneTasks === tasks.length) {
      try {
        if (split) finishSplit();
      } catch (err) {
        fail(err);
        return;
      }
      settle.resolve();
    }
  };

  /** Hands on, in listing order, the scans and reject spools of every file done so far. */
  const deliver = () => {
    if (split) return;
    while (delivered < files.length && spooled[delivered] !== undefined) {
      const n = spooled[delivered]!;
      if (spoolDir && opts.rejects) {
        const path = spoolPath(spoolDir, delivered);
        opts.rejects.appendSpool(path, n);
        rmSync(path, { force: true });
      }
      opts.onScan?.(scans[delivered]!);
      delivered++;
    }
  };

  /** The split file's scan from its ranges' (all done), and its rejects, in order, with absolute lines. */
  const finishSplit = () => {
    const obj = files[0];
    let scan: StreamScan;
    if (tasks.length === 1 && tasks[0].range === undefined) {
      scan = scans[0]!;
      if (spoolDir && opts.rejects) {
        opts.rejects.appendSpool(spoolPath(spoolDir, 0), spooled[0]!);
        rmSync(spoolPath(spoolDir, 0), { force: true });
      }
    } else {
      const p = pass!;
      const rejected = Object.fromEntries(Object.keys(scans[0]!.rejected).map((r) => [r, 0]));
      scan = {
        key: obj.key,
        fingerprint: obj.fingerprint,
        contentHash: p.sha256,
        bytes: p.bytes,
        rows: 0,
        complete: 0,
        reduced: 0,
        rejected,
        days: new Set<number>(),
        duplicateHeaders: p.header.duplicates,
      };
      let lineOffset = 0;
      for (let i = 0; i < tasks.length; i++) {
        const r = scans[i]!;
        if (r.schemaError) throw r.schemaError;
        if (i < tasks.length - 1 && r.endedAtBoundary !== true) {
          throw new MkpiError('MKPI_INTERNAL', `${obj.key}: byte range ${i} did not end at a record boundary`);
        }
        scan.rows += r.rows;
        scan.complete += r.complete;
        scan.reduced += r.reduced;
        for (const [k, v] of Object.entries(r.rejected)) rejected[k] += v;
        for (const d of r.days) scan.days.add(d);
        if (spoolDir && opts.rejects) {
          const path = spoolPath(spoolDir, i);
          if (spooled[i]! > 0) replayRangeSpool(path, obj.key, lineOffset, opts.rejects);
          rmSync(path, { force: true });
        }
        lineOffset += r.lineEndings ?? 0;
      }
    }
    scans.length = 0;
    scans.push(scan);
    opts.onScan?.(scan);
  };

  const takeTask = (): number | undefined => (failure === undefined && nextTask < tasks.length ? nextTask++ : undefined);

  const dispatch = (slot: Slot) => {
    if (failure !== undefined) return;
    const index = takeTask();
    if (index !== undefined) {
      slot.idle = false;
      const t = tasks[index];
      slot.worker.postMessage({ type: 'scan', index, obj: t.obj, ...(t.range ? { range: t.range } : {}) } satisfies ToWorker);
    } else if (!tasksClosed) {
      slot.idle = true;
    } else if (!slot.finished) {
      slot.idle = false;
      slot.finished = true;
      slot.worker.postMessage({ type: 'finish' } satisfies ToWorker);
    }
  };

  /** A new task, or the end of them: idle readers take it. */
  const wake = () => {
    for (const s of slots) if (s.idle && s.alive) dispatch(s);
    wakeHere?.();
  };

  const taskDone = (index: number, scan: StreamScan, rejects: number) => {
    scans[index] = scan;
    spooled[index] = rejects;
    doneTasks++;
    deliver();
  };

  const onMessage = (slot: Slot, m: FromWorker) => {
    if (failure !== undefined) return;
    try {
      switch (m.type) {
        case 'rows':
          opts.onRows?.(m.rows);
          break;
        case 'done':
          taskDone(m.index, fromScanData(m.scan), m.rejects);
          dispatch(slot);
          complete();
          break;
        case 'error':
          fail(deserializeError(m.error));
          break;
        case 'state': {
          const hours = new Map<number, HourState>();
          for (const h of m.hours)
            hours.set(h.key, { count: h.count, tracks: h.tracks, users: h.users, log: h.log, logLen: h.logLen, ages: h.ages });
          merge(state, { trackCount: state.trackCount, userCount: state.userCount, denseAt: state.denseAt, hours });
          opts.spill?.add(m.spilled);
          opts.spill?.check(state);
          statesIn++;
          slot.stateIn = true;
          complete();
          break;
        }
      }
    } catch (err) {
      fail(err);
    }
  };

  /** The calling thread as one more reader: takes the next task whenever it is free. */
  const readHere = async (lake: Lake) => {
    for (;;) {
      if (failure !== undefined) return;
      const index = takeTask();
      if (index === undefined) {
        if (tasksClosed) break;
        await new Promise<void>((r) => (wakeHere = r));
        wakeHere = undefined;
        continue;
      }
      const t = tasks[index];
      const path = spoolDir === null ? undefined : spoolPath(spoolDir, index);
      const spool = path === undefined ? undefined : t.range ? new RangeSpool(path) : new RejectSpool(path);
      try {
        const scan = await scanStreamFile(lake, t.obj, sd, state, {
          signal: stop.signal,
          rejects: spool,
          onRows: opts.onRows,
          range: t.range,
          ...checkpointOf(opts, state),
        });
        spool?.close();
        if (failure !== undefined) return;
        opts.spill?.check(state);
        taskDone(index, scan, spool?.count ?? 0);
      } catch (err) {
        spool?.close();
        fail(err);
        return;
      }
    }
    mainDone = true;
    complete();
  };

  /**
   * The split file's first pass, in this thread: hashes it, resolves its header and finds a
   * record boundary near every rangeBytes, queueing each range as soon as its end is known.
   */
  const firstPass = async (lake: Lake) => {
    const obj = files[0];
    const step = Math.max(1, opts.rangeBytes ?? DEFAULT_RANGE_BYTES);
    const targets = rangeTargets(obj.size, step, count + (local === undefined ? 0 : 1));
    let header: ResolvedHeader | undefined;
    let headerFailed = false;
    let headerParser: CsvParser | undefined = new CsvParser((fields, _line, flag) => {
      if (header !== undefined || headerFailed) return;
      try {
        header = resolveHeader(obj.key, flag === 0 ? fields : [], STREAM_COLUMNS);
      } catch {
        headerFailed = true; // the whole-file read reports it, exactly as one reader does
      }
    });
    let start = 0;
    const ranges: ScanRange[] = [];
    const scanner = new RecordBoundaryScanner(targets, (boundary) => {
      if (header === undefined) {
        headerFailed = true; // no header before the first boundary: not worth being clever
        return;
      }
      ranges.push({ start, end: boundary, ...(start > 0 ? { header } : {}) });
      start = boundary;
      if (!headerFailed) {
        tasks.push({ obj, range: ranges[ranges.length - 1] });
        wake();
      }
    });
    const hash = createHash('sha256');
    const source = await lake.read(obj.key, stop.signal);
    for await (const chunk of source as AsyncIterable<Buffer>) {
      hash.update(chunk);
      // The header first: a boundary in this chunk needs it.
      if (headerParser !== undefined) {
        headerParser.write(chunk);
        if (header !== undefined || headerFailed) headerParser = undefined;
      }
      if (!headerFailed) scanner.write(chunk);
      if (headerFailed) break;
    }
    if (headerParser !== undefined && !headerFailed) {
      headerParser.end();
      if (header === undefined) headerFailed = true;
    }
    if (headerFailed) {
      source.destroy();
      // Read whole by one reader: only possible while no range was handed out.
      if (tasks.length > 0) throw new MkpiError('MKPI_INTERNAL', `${obj.key}: header lost after ranges were handed out`);
      tasks.push({ obj });
    } else {
      const bytes = scanner.bytes;
      if (start < bytes || tasks.length === 0)
        tasks.push({ obj, range: { start, end: Math.max(bytes, start + 1), ...(start > 0 ? { header } : {}) } });
      pass = { bytes, sha256: hash.digest('hex'), header: header! };
    }
    tasksClosed = true;
    wake();
  };

  let here: Promise<void> | undefined;
  let passDone: Promise<void> | undefined;
  const onAbort = () => fail(new MkpiError('MKPI_INTERRUPTED', 'interrupted', { cause: signal?.reason }));
  signal?.addEventListener('abort', onAbort, { once: true });

  try {
    for (let i = 0; i < count; i++) {
      const worker = startWorker(init);
      let markExited!: () => void;
      const slot: Slot = {
        worker,
        exited: new Promise<void>((r) => (markExited = r)),
        alive: true,
        finished: false,
        stateIn: false,
        idle: false,
      };
      slots.push(slot);
      worker.on('message', (m: FromWorker) => onMessage(slot, m));
      worker.on('error', (err) => fail(new MkpiError('MKPI_INTERNAL', `stream worker failed: ${err.message}`, { cause: err })));
      worker.on('messageerror', (err) =>
        fail(new MkpiError('MKPI_INTERNAL', `stream worker message failed: ${err.message}`, { cause: err })),
      );
      live++;
      worker.on('exit', (code) => {
        live--;
        slot.alive = false;
        markExited();
        // Messages a worker posted before it stopped are delivered before 'exit'.
        if (!slot.stateIn) fail(new MkpiError('MKPI_INTERNAL', `a stream worker stopped unexpectedly (exit code ${code})`));
      });
      dispatch(slot);
    }
    if (split) passDone = firstPass(local).catch(fail);
    if (local) here = (passDone ?? Promise.resolve()).then(() => readHere(local));
    await finished;
    return scans.map((s, i) => {
      if (s === undefined) throw new MkpiError('MKPI_INTERNAL', `no scan result for ${files[i].key}`);
      return s;
    });
  } catch (err) {
    fail(err);
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    await stopAll(failure !== undefined);
    await passDone;
    await here;
    if (spoolDir) rmSync(spoolDir, { recursive: true, force: true });
  }
}
