// Worker thread entry of parallel-scan.ts: reopens the lake, scans the files it is handed one at
// a time into its own KPI state, spools each file's rejects, and at 'finish' transfers its state
// to the main thread and exits.

import { parentPort, workerData } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import type { Lake } from './lake/lake.js';
import { LocalLake } from './lake/local.js';
import { create } from './reduce.js';
import { RejectSpool } from './rejects.js';
import { scanStreamFile, streamDimsFrom } from './scan.js';
import { MkpiError } from './errors.js';
import { serializeError, spoolPath, toScanData, type FromWorker, type HourData, type ToWorker, type WorkerInit } from './parallel-scan.js';

const port = parentPort!;
const init = workerData as WorkerInit;
const dims = streamDimsFrom(init.dims);
const state = create(dims.trackCount, dims.userCount);
const controller = new AbortController();

/**
 * openLake()'s reading of the URI, minus the AWS SDK for local lakes: loading it costs ~25 MB
 * of memory per thread. The main thread opened the same URI already, so it is valid.
 */
async function reopen(spec: WorkerInit['lake']): Promise<Lake> {
  const uri = spec.uri.trim();
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(uri)?.[1]?.toLowerCase();
  if (scheme === undefined) return new LocalLake(uri);
  if (scheme === 'file') return new LocalLake(fileURLToPath(uri));
  // The SDK's process warnings (its Node-version notice) are the main thread's to print, once:
  // drop this thread's default printer before loading it.
  process.removeAllListeners('warning');
  const { openLake } = await import('./lake/open.js');
  return openLake(spec.uri, spec.s3);
}

let lake: Lake | undefined;
let opened: unknown;
let queue: Promise<void> = reopen(init.lake).then(
  (l) => {
    lake = l;
  },
  // Reported on the first file handed over.
  (err: unknown) => {
    opened = err;
  },
);

const post = (m: FromWorker, transfer?: ArrayBuffer[]) => port.postMessage(m, transfer);

async function scan(index: number, obj: Extract<ToWorker, { type: 'scan' }>['obj']): Promise<void> {
  if (lake === undefined) {
    post({ type: 'error', index, error: serializeError(opened) });
    return;
  }
  const spool = init.spoolDir === null ? undefined : new RejectSpool(spoolPath(init.spoolDir, index));
  try {
    const result = await scanStreamFile(lake, obj, dims, state, {
      signal: controller.signal,
      rejects: spool,
      onRows: (rows) => post({ type: 'rows', index, rows }),
    });
    spool?.close();
    post({ type: 'done', index, scan: toScanData(result), rejects: spool?.count ?? 0 });
  } catch (err) {
    spool?.close();
    const e = controller.signal.aborted ? new MkpiError('MKPI_INTERRUPTED', 'interrupted', { cause: err }) : err;
    post({ type: 'error', index, error: serializeError(e) });
  }
}

async function finish(): Promise<void> {
  const hours: HourData[] = [];
  const transfer: ArrayBuffer[] = [];
  for (const [key, h] of state.hours) {
    hours.push({ key, count: h.count, tracks: h.tracks, users: h.users, log: h.log, logLen: h.logLen, ages: h.ages });
    for (const a of [h.tracks, h.users, h.log, h.ages]) if (a !== null) transfer.push(a.buffer as ArrayBuffer);
  }
  state.hours.clear();
  post({ type: 'state', hours }, transfer);
  await stop();
}

async function stop(): Promise<void> {
  await lake?.close().catch(() => undefined);
  port.close();
}

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'scan':
      queue = queue.then(() => scan(m.index, m.obj));
      break;
    case 'finish':
      queue = queue.then(finish);
      break;
    case 'abort':
      controller.abort(new MkpiError('MKPI_INTERRUPTED', 'interrupted'));
      queue = queue.then(stop);
      break;
  }
});
