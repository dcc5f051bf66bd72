// Stream files scanned in parallel (issue 3: use both cores): worker threads, and by default the
// calling thread as one more reader. Each worker reopens the lake from a serialisable LakeSpec,
// shares the dimension indexes (SharedArrayBuffers, see id-index.ts), reduces into KPI state of
// its own and hands it back (transferred, not copied) for merge() into the caller's. Files are
// handed out in listing order to whichever reader is free; per-file results are delivered in
// listing order, and each file's rejects are spooled by its reader and appended to the run's
// RejectSink in listing order, so the report and the rejects output are those of the
// single-thread path, byte for byte.
//
// Failure: a worker's error (a lake read that failed, ...) comes back as the MkpiError it was
// (code, message, hint, details); a crashed worker is MKPI_INTERNAL; an abort signal is
// MKPI_INTERRUPTED. In every case the other readers are told to stop, workers are given a moment
// to close what they hold, then terminated: no worker outlives the call.

import { Worker } from 'node:worker_threads';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import type { Lake, LakeObject, LakeSpec } from '../domain/lake.js';
import { MkpiError, isMkpiError, type ErrorCode } from '../domain/errors.js';
import { isGzipKey } from '../domain/layout.js';
import { merge, type HourState, type KpiState } from '../stages/reduce.js';
import { RejectSpool, type RejectSink } from '../stages/rejects.js';
import { scanStreamFile, streamDims, streamDimsData, type StreamDimsData, type StreamScan } from '../stages/scan.js';
import type { Dimensions } from '../stages/validate.js';

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
}

export const DEFAULT_MIN_PARALLEL_BYTES = 16 * 1024 * 1024;
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
  const n = Math.min(opts.workers ?? defaultWorkers(), files.length);
  // One file has one reader: a worker for it would only add a thread's start-up.
  if (files.length < 2 || !(n >= 1)) return 0;
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
}

export type ToWorker = { type: 'scan'; index: number; obj: LakeObject } | { type: 'finish' } | { type: 'abort' };

export type FromWorker =
  | { type: 'rows'; index: number; rows: number }
  | { type: 'done'; index: number; scan: ScanData; rejects: number }
  | { type: 'state'; hours: HourData[] }
  | { type: 'error'; index: number; error: SerializedError };

export function spoolPath(dir: string, index: number): string {
  return join(dir, `file-${index}.csv`);
}

let live = 0;

/** Worker threads of this module still running (tests check that none outlives a scan). */
export function liveWorkers(): number {
  return live;
}

function startWorker(init: WorkerInit): Worker {
  const options = {
    workerData: init,
    stdout: false,
    stderr: false,
    // The scan's garbage is short-lived (field strings): a small young generation keeps each
    // thread's footprint down (-20 MB per worker at 5M listens) at no measurable CPU cost.
    resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GEN_MB },
  };
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./parallel-scan-worker.js', import.meta.url), options);
  // Running from the TypeScript sources under tsx (the tests): a worker does not inherit tsx's
  // loader, so it registers it before importing its entry.
  const entry = new URL('./parallel-scan-worker.ts', import.meta.url).href;
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
  /** How long stopping workers get to close their streams before they are terminated. */
  stopGraceMs?: number;
}

interface Slot {
  worker: Worker;
  exited: Promise<void>;
  alive: boolean;
  finished: boolean;
  stateIn: boolean;
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
  const spoolDir = opts.rejects ? mkdtempSync(join(opts.tmpDir ?? tmpdir(), 'musickpi-spool-')) : null;
  const init: WorkerInit = { lake: opts.lake, dims: streamDimsData(sd), spoolDir };
  const count = Math.max(1, Math.min(opts.workers, files.length));
  const scans = new Array<StreamScan | undefined>(files.length);
  const spooled = new Array<number | undefined>(files.length);
  let delivered = 0;
  let nextFile = 0;
  let doneFiles = 0;
  let statesIn = 0;
  let mainDone = opts.local === undefined;
  const slots: Slot[] = [];
  // Stops the calling thread's own reading when anything fails.
  const stop = new AbortController();

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
    settle.reject(err);
  };

  const complete = () => {
    if (statesIn === slots.length && mainDone && doneFiles === files.length) settle.resolve();
  };

  /** Hands on, in listing order, the scans and reject spools of every file done so far. */
  const deliver = () => {
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

  const dispatch = (slot: Slot) => {
    if (failure !== undefined) return;
    if (nextFile < files.length) {
      const index = nextFile++;
      slot.worker.postMessage({ type: 'scan', index, obj: files[index] } satisfies ToWorker);
    } else if (!slot.finished) {
      slot.finished = true;
      slot.worker.postMessage({ type: 'finish' } satisfies ToWorker);
    }
  };

  const onMessage = (slot: Slot, m: FromWorker) => {
    if (failure !== undefined) return;
    try {
      switch (m.type) {
        case 'rows':
          opts.onRows?.(m.rows);
          break;
        case 'done':
          scans[m.index] = fromScanData(m.scan);
          spooled[m.index] = m.rejects;
          doneFiles++;
          deliver();
          dispatch(slot);
          break;
        case 'error':
          fail(deserializeError(m.error));
          break;
        case 'state': {
          const hours = new Map<number, HourState>();
          for (const h of m.hours)
            hours.set(h.key, { count: h.count, tracks: h.tracks, users: h.users, log: h.log, logLen: h.logLen, ages: h.ages });
          merge(state, { trackCount: state.trackCount, userCount: state.userCount, denseAt: state.denseAt, hours });
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

  /** The calling thread as one more reader: takes the next file whenever it is free. */
  const readHere = async (lake: Lake) => {
    while (failure === undefined && nextFile < files.length) {
      const index = nextFile++;
      const spool = spoolDir === null ? undefined : new RejectSpool(spoolPath(spoolDir, index));
      try {
        const scan = await scanStreamFile(lake, files[index], sd, state, { signal: stop.signal, rejects: spool, onRows: opts.onRows });
        spool?.close();
        if (failure !== undefined) return;
        scans[index] = scan;
        spooled[index] = spool?.count ?? 0;
        doneFiles++;
        deliver();
      } catch (err) {
        spool?.close();
        fail(err);
        return;
      }
    }
    mainDone = true;
    complete();
  };

  let here: Promise<void> | undefined;
  const onAbort = () => fail(new MkpiError('MKPI_INTERRUPTED', 'interrupted', { cause: signal?.reason }));
  signal?.addEventListener('abort', onAbort, { once: true });

  try {
    for (let i = 0; i < count; i++) {
      const worker = startWorker(init);
      let markExited!: () => void;
      const slot: Slot = { worker, exited: new Promise<void>((r) => (markExited = r)), alive: true, finished: false, stateIn: false };
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
    if (opts.local) here = readHere(opts.local);
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
    await here;
    if (spoolDir) rmSync(spoolDir, { recursive: true, force: true });
  }
}
