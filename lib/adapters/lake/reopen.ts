// How a worker thread reopens the lake its caller opened (domain/lake.ts, LakeSpec): openLake()
// minus the AWS SDK for local lakes, whose loading costs ~25 MB of memory per thread. The caller
// opened the same URI already, so it is valid.

import { fileURLToPath } from 'node:url';

import type { Lake, LakeConnectOptions } from '../../domain/lake.js';
import { LocalLake } from './local.js';

/** What LakeSpec.module names. */
export const REOPEN_MODULE = import.meta.url;

export async function reopenLake(uri: string, s3?: LakeConnectOptions): Promise<Lake> {
  const trimmed = uri.trim();
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(trimmed)?.[1]?.toLowerCase();
  if (scheme === undefined) return new LocalLake(trimmed);
  if (scheme === 'file') return new LocalLake(fileURLToPath(trimmed));
  // The SDK's process warnings (its Node-version notice) are the main thread's to print, once:
  // drop this thread's default printer before loading it.
  process.removeAllListeners('warning');
  const [{ openLakeWith }, { S3Lake }] = await Promise.all([import('./open.js'), import('./s3/s3-lake.js')]);
  return openLakeWith(uri, s3 ?? {}, (opts) => new S3Lake(opts));
}
