// Worker thread entry of normalize-workers.ts: reopens the lake and the staging lake, normalizes
// the shards it is handed one at a time, and at 'finish' closes both and exits.

import { parentPort, workerData } from 'node:worker_threads';
import type { Lake, LakeSpec } from '../domain/lake.js';
import { MkpiError } from '../domain/errors.js';
import { normalizeShard, type NormalizeJob } from '../stages/normalize.js';
import { serializeError } from './parallel-scan.js';
import type { FromNormalizeWorker, NormalizeWorkerInit, ToNormalizeWorker } from './normalize-workers.js';

const port = parentPort!;
const init = workerData as NormalizeWorkerInit;
const controller = new AbortController();

/** A lake, reopened by the module its spec names (domain/lake.ts, LakeSpec). */
async function reopen(spec: LakeSpec): Promise<Lake> {
  const mod = (await import(spec.module)) as { reopenLake(uri: string, s3?: LakeSpec['s3']): Promise<Lake> };
  return mod.reopenLake(spec.uri, spec.s3);
}

let lakes: { lake: Lake; staging: Lake } | undefined;
let opened: unknown;
let queue: Promise<void> = Promise.all([reopen(init.lake), reopen(init.staging)]).then(
  ([lake, staging]) => {
    lakes = { lake, staging };
  },
  // Reported on the first job handed over.
  (err: unknown) => {
    opened = err;
  },
);

const post = (m: FromNormalizeWorker) => port.postMessage(m);

async function run(index: number, job: NormalizeJob): Promise<void> {
  if (lakes === undefined) {
    post({ type: 'error', index, error: serializeError(opened) });
    return;
  }
  try {
    const manifest = await normalizeShard(lakes.lake, lakes.staging, job, {
      signal: controller.signal,
      partBytes: init.partBytes,
      onRows: (rows) => post({ type: 'rows', rows }),
    });
    post({ type: 'done', index, manifest });
  } catch (err) {
    const e = controller.signal.aborted ? new MkpiError('MKPI_INTERRUPTED', 'interrupted', { cause: err }) : err;
    post({ type: 'error', index, error: serializeError(e) });
  }
}

async function stop(): Promise<void> {
  await lakes?.lake.close().catch(() => undefined);
  await lakes?.staging.close().catch(() => undefined);
  port.close();
}

port.on('message', (m: ToNormalizeWorker) => {
  switch (m.type) {
    case 'job':
      queue = queue.then(() => run(m.index, m.job));
      break;
    case 'finish':
      queue = queue.then(stop);
      break;
    case 'abort':
      controller.abort(new MkpiError('MKPI_INTERRUPTED', 'interrupted'));
      queue = queue.then(stop);
      break;
  }
});
