// Shards normalized in parallel in one process (stages/normalize.ts): worker threads, each
// reopening the lake and the staging lake from their LakeSpecs (as parallel-scan.ts does),
// each normalizing one shard at a time as the next free reader. The manifests come back in
// jobs order. A worker's error comes back as the MkpiError it was (code, message, hint,
// details); a crashed worker is MKPI_INTERNAL; an abort is MKPI_INTERRUPTED. In every case the
// other workers are told to stop, given a moment to abandon the parts they were writing, then
// terminated: no worker outlives the call.

import type { Worker } from 'node:worker_threads';
import type { Lake, LakeSpec } from '../domain/lake.js';
import { MkpiError } from '../domain/errors.js';
import type { ShardManifest } from '../domain/shards.js';
import { normalizeShard, type NormalizeJob } from '../stages/normalize.js';
import { deserializeError, startWorkerModule, type SerializedError } from './parallel-scan.js';

export interface NormalizeWorkerInit {
  lake: LakeSpec;
  staging: LakeSpec;
  partBytes?: number;
}

export type ToNormalizeWorker = { type: 'job'; index: number; job: NormalizeJob } | { type: 'finish' } | { type: 'abort' };

export type FromNormalizeWorker =
  | { type: 'rows'; rows: number }
  | { type: 'done'; index: number; manifest: ShardManifest }
  | { type: 'error'; index: number; error: SerializedError };

export interface NormalizeShardsOptions {
  lake: Lake;
  staging: Lake;
  /** How workers reopen the lake and the staging lake; without both, the jobs run in this thread. */
  lakeSpec?: LakeSpec;
  stagingSpec?: LakeSpec;
  workers: number;
  signal?: AbortSignal;
  /** Rows read since the last call, in the calling thread. */
  onRows?: (n: number) => void;
  partBytes?: number;
  /** How long stopping workers get to abandon their writes before they are terminated; default 2 s. */
  stopGraceMs?: number;
}

let live = 0;

/** Normalize worker threads alive right now (for tests: none may outlive a call). */
export function liveNormalizeWorkers(): number {
  return live;
}

/** Normalizes every job (one shard each); returns their manifests in jobs order. */
export async function normalizeShards(jobs: NormalizeJob[], opts: NormalizeShardsOptions): Promise<ShardManifest[]> {
  const { signal } = opts;
  if (signal?.aborted) throw new MkpiError('MKPI_INTERRUPTED', 'interrupted', { cause: signal.reason });
  const count = Math.min(Math.floor(opts.workers), jobs.length);
  if (count <= 1 || opts.lakeSpec === undefined || opts.stagingSpec === undefined) {
    const out: ShardManifest[] = [];
    for (const job of jobs) {
      out.push(await normalizeShard(opts.lake, opts.staging, job, { signal, onRows: opts.onRows, partBytes: opts.partBytes }));
    }
    return out;
  }

  const init: NormalizeWorkerInit = {
    lake: opts.lakeSpec,
    staging: opts.stagingSpec,
    ...(opts.partBytes !== undefined ? { partBytes: opts.partBytes } : {}),
  };
  const results = new Array<ShardManifest | undefined>(jobs.length);
  let next = 0;
  let done = 0;
  let failure: unknown;
  let settle!: { resolve: () => void; reject: (e: unknown) => void };
  const finished = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  finished.catch(() => undefined);
  interface Slot {
    worker: Worker;
    exited: Promise<void>;
    finishing: boolean;
  }
  const slots: Slot[] = [];

  const fail = (err: unknown) => {
    if (failure !== undefined) return;
    failure = err;
    settle.reject(err);
  };
  const dispatch = (slot: Slot) => {
    if (failure !== undefined) return;
    if (next < jobs.length) {
      const index = next++;
      slot.worker.postMessage({ type: 'job', index, job: jobs[index] } satisfies ToNormalizeWorker);
    } else {
      slot.finishing = true;
      slot.worker.postMessage({ type: 'finish' } satisfies ToNormalizeWorker);
    }
  };
  const onMessage = (slot: Slot, m: FromNormalizeWorker) => {
    if (failure !== undefined) return;
    switch (m.type) {
      case 'rows':
        opts.onRows?.(m.rows);
        break;
      case 'done':
        results[m.index] = m.manifest;
        if (++done === jobs.length) settle.resolve();
        dispatch(slot);
        break;
      case 'error':
        fail(deserializeError(m.error));
        break;
    }
  };
  const stopAll = async (abort: boolean) => {
    if (abort) for (const s of slots) s.worker.postMessage({ type: 'abort' } satisfies ToNormalizeWorker);
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
  const onAbort = () => fail(new MkpiError('MKPI_INTERRUPTED', 'interrupted', { cause: signal?.reason }));
  signal?.addEventListener('abort', onAbort, { once: true });

  try {
    for (let i = 0; i < count; i++) {
      const worker = startWorkerModule('normalize-worker', init);
      let markExited!: () => void;
      const slot: Slot = { worker, exited: new Promise<void>((r) => (markExited = r)), finishing: false };
      slots.push(slot);
      live++;
      worker.on('message', (m: FromNormalizeWorker) => onMessage(slot, m));
      worker.on('error', (err) => fail(new MkpiError('MKPI_INTERNAL', `normalize worker failed: ${err.message}`, { cause: err })));
      worker.on('messageerror', (err) =>
        fail(new MkpiError('MKPI_INTERNAL', `normalize worker message failed: ${err.message}`, { cause: err })),
      );
      worker.on('exit', (code) => {
        live--;
        markExited();
        // Messages a worker posted before it stopped are delivered before 'exit'.
        if (!slot.finishing) fail(new MkpiError('MKPI_INTERNAL', `a normalize worker stopped unexpectedly (exit code ${code})`));
      });
      dispatch(slot);
    }
    await finished;
    return results.map((m, i) => {
      if (m === undefined) throw new MkpiError('MKPI_INTERNAL', `no manifest for shard ${jobs[i].shard}`);
      return m;
    });
  } catch (err) {
    fail(err);
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    await stopAll(failure !== undefined);
  }
}
