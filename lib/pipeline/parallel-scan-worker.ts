// Worker thread entry of parallel-scan.ts: reopens the lake, scans the files it is handed one at
// a time into its own KPI state, spools each file's rejects, and at 'finish' transfers its state
// to the main thread and exits.

import { parentPort, workerData } from 'node:worker_threads';
import type { Lake, LakeSpec } from '../domain/lake.js';
import { create } from '../stages/reduce.js';
import { StateSpill } from './state-spill.js';
import { RejectSpool } from '../stages/rejects.js';
import { scanStreamFile, streamDimsFrom } from '../stages/scan.js';
import { MkpiError } from '../domain/errors.js';
import {
  RangeSpool,
  serializeError,
  spoolPath,
  toScanData,
  type FromWorker,
  type HourData,
  type ToWorker,
  type WorkerInit,
} from './parallel-scan.js';
import type { ScanRange } from '../stages/scan.js';

const port = parentPort!;
const init = workerData as WorkerInit;
const dims = streamDimsFrom(init.dims);
const state = create(dims.trackCount, dims.userCount);
const controller = new AbortController();
const spill = init.spill ? new StateSpill(init.spill) : undefined;

/** The lake, reopened by the module the caller named (domain/lake.ts, LakeSpec). */
async function reopen(spec: WorkerInit['lake']): Promise<Lake> {
  const mod = (await import(spec.module)) as { reopenLake(uri: string, s3?: LakeSpec['s3']): Promise<Lake> };
  return mod.reopenLake(spec.uri, spec.s3);
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

async function scan(index: number, obj: Extract<ToWorker, { type: 'scan' }>['obj'], range: ScanRange | undefined): Promise<void> {
  if (lake === undefined) {
    post({ type: 'error', index, error: serializeError(opened) });
    return;
  }
  // A byte range's rejects carry lines relative to its start: the caller shifts them (RangeSpool).
  const path = init.spoolDir === null ? undefined : spoolPath(init.spoolDir, index);
  const spool = path === undefined ? undefined : range ? new RangeSpool(path) : new RejectSpool(path);
  try {
    const result = await scanStreamFile(lake, obj, dims, state, {
      signal: controller.signal,
      range,
      rejects: spool,
      onRows: (rows) => post({ type: 'rows', index, rows }),
      ...(spill ? { checkpoint: () => spill.check(state) } : {}),
    });
    spool?.close();
    spill?.check(state);
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
  spill?.close();
  post({ type: 'state', hours, spilled: spill?.all() ?? [] }, transfer);
  await stop();
}

async function stop(): Promise<void> {
  // A thread's open files are the process's: closed here, or they outlive the thread.
  spill?.close();
  await lake?.close().catch(() => undefined);
  port.close();
}

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'scan':
      queue = queue.then(() => scan(m.index, m.obj, m.range));
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
