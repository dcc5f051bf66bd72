import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { MkpiError } from '../../domain/errors.js';
import type { Lake, LakeConnectOptions } from '../../domain/lake.js';
import { LocalLake } from './local.js';
import type * as S3LakeModule from './s3/s3-lake.js';

/**
 * The S3 adapter, loaded the first time an S3 lake is opened: importing it loads the AWS SDK
 * (0.2-0.5 s of start-up and ~25 MB here), which a local lake never needs. require() keeps
 * openLake synchronous: Node 20.19+ loads an ES module that way (no top-level await in it),
 * from the same module cache as import, so S3Lake is the same class either way.
 */
function s3Lake(): typeof S3LakeModule.S3Lake {
  return (createRequire(import.meta.url)('./s3/s3-lake.js') as typeof S3LakeModule).S3Lake;
}

export type S3ConnectOptions = LakeConnectOptions;

// S3's bucket naming rules (3-63 chars, lowercase letters, digits, dots, hyphens); the dotted-quad
// and underscore forms of legacy buckets are refused by the SDK anyway.
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/**
 * Opens the lake a URI names: "s3://bucket/prefix" is S3 (credentials from the SDK's default
 * chain), "file:///path" or a plain path is a local folder.
 */
export function openLake(uri: string, s3: S3ConnectOptions = {}): Lake {
  return openLakeWith(uri, s3, (opts) => new (s3Lake())(opts));
}

/**
 * openLake with the S3 adapter's constructor given: a worker thread (reopen.ts) imports the
 * adapter itself, asynchronously, where require() of an ES module may not be hooked (tsx).
 */
export function openLakeWith(uri: string, s3: S3ConnectOptions, makeS3: (opts: S3LakeModule.S3LakeOptions) => Lake): Lake {
  const trimmed = uri.trim();
  if (trimmed === '') throw new MkpiError('MKPI_USAGE', 'The lake URI is empty', { hint: 'Give s3://bucket/prefix or a folder.' });

  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(trimmed)?.[1]?.toLowerCase();
  if (scheme === 's3' || scheme === 's3a') {
    const rest = trimmed.slice(scheme.length + 3);
    const slash = rest.indexOf('/');
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    const prefix = slash < 0 ? '' : rest.slice(slash + 1).replace(/^\/+|\/+$/g, '');
    if (!BUCKET.test(bucket)) {
      throw new MkpiError(
        'MKPI_USAGE',
        `Invalid S3 lake URI ${JSON.stringify(uri)}: ${JSON.stringify(bucket)} is not a valid bucket name`,
        {
          hint: 'Expected s3://bucket/prefix (bucket: 3-63 lowercase letters, digits, dots or hyphens).',
        },
      );
    }
    if (prefix.split('/').some((segment) => segment === '..' || segment === '.')) {
      throw new MkpiError('MKPI_USAGE', `Invalid S3 lake URI ${JSON.stringify(uri)}: "." and ".." segments are not allowed in the prefix`);
    }
    if (/[?#]/.test(prefix)) {
      throw new MkpiError('MKPI_USAGE', `Invalid S3 lake URI ${JSON.stringify(uri)}: the prefix may not contain "?" or "#"`);
    }
    return makeS3({
      bucket,
      prefix,
      ...(s3.endpoint ? { endpoint: s3.endpoint } : {}),
      ...(s3.region ? { region: s3.region } : {}),
      ...(s3.forcePathStyle !== undefined ? { forcePathStyle: s3.forcePathStyle } : {}),
    });
  }
  if (scheme === 'file') {
    let dir: string;
    try {
      dir = fileURLToPath(trimmed);
    } catch (err) {
      throw new MkpiError('MKPI_USAGE', `Invalid file URI ${JSON.stringify(uri)}: ${(err as Error).message}`, { cause: err });
    }
    return new LocalLake(dir);
  }
  if (scheme !== undefined) {
    // "gs://b/p" taken as a local folder named "gs:" would fail much later and much less clearly.
    throw new MkpiError('MKPI_USAGE', `Unsupported lake URI scheme "${scheme}://" in ${JSON.stringify(uri)}`, {
      hint: 'Use s3://bucket/prefix, file:///path or a folder path.',
    });
  }
  return new LocalLake(path.resolve(trimmed));
}
