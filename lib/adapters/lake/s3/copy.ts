import { CopyObjectCommand, DeleteObjectCommand, type HeadObjectCommandOutput, type S3Client } from '@aws-sdk/client-s3';

import { MkpiError } from '../../../domain/errors.js';
import type { MoveOptions, MoveOutcome } from '../../../domain/lake.js';
import { asS3Error, errorName } from './errors.js';
import { etagIsContentMd5, stripQuotes } from './etag.js';

const MiB = 1024 * 1024;
// Largest object a single CopyObject may copy.
const MAX_COPY_SIZE = 5 * 1024 * MiB;

export type CopySourceStyle = 'aws' | 'uri';

/**
 * x-amz-copy-source must be URL-encoded. AWS decodes it like a form value, so "+" has to travel
 * as %2B or it becomes a space ('aws' style, per segment so "/" stays). Some servers (s3rver)
 * apply decodeURI instead, which leaves %2B, %3D, %26... encoded: 'uri' style serves those.
 */
export function encodeCopySource(bucket: string, key: string, style: CopySourceStyle): string {
  if (style === 'uri') return encodeURI(`${bucket}/${key}`);
  return `${bucket}/${key}`
    .split('/')
    .map((segment) => encodeURIComponent(segment))
    .join('/');
}

/** What a move needs of its lake. */
export interface MoveTarget {
  readonly client: S3Client;
  readonly bucket: string;
  fullKey(key: string, what: string): string;
  where(key: string): string;
  fail(err: unknown, action: string, key: string): MkpiError;
  head(fullKey: string): Promise<HeadObjectCommandOutput | undefined>;
}

/** The lake's moveNoOverwrite(), with what it learns about the server along the way. */
export class S3Mover {
  // Learnt once per lake: which x-amz-copy-source encoding this server decodes.
  private copySourceStyle: CopySourceStyle | undefined;
  // Whether the server accepts If-None-Match on CopyObject (AWS does; some S3-compatible stores refuse it).
  private conditionalCopy = true;

  constructor(private readonly lake: MoveTarget) {}

  async moveNoOverwrite(from: string, to: string, opts: MoveOptions = {}): Promise<MoveOutcome> {
    const src = this.lake.fullKey(from, 'source key');
    const dst = this.lake.fullKey(to, 'target key');
    let srcHead: HeadObjectCommandOutput | undefined;
    try {
      if (await this.lake.head(dst)) return 'exists';
      srcHead = await this.lake.head(src);
    } catch (err) {
      throw this.lake.fail(err, 'archive', from);
    }
    if (!srcHead) throw new MkpiError('MKPI_NO_INPUT', `archive: ${this.lake.where(from)} does not exist`);
    // A newer object under the same name is not the version that was loaded: it stays.
    if (opts.expectFingerprint !== undefined && stripQuotes(srcHead.ETag) !== opts.expectFingerprint) return 'changed';
    const size = srcHead.ContentLength ?? 0;
    if (size > MAX_COPY_SIZE) {
      throw new MkpiError(
        'MKPI_ARCHIVE_FAILED',
        `archive: ${this.lake.where(from)} is ${size} bytes, over the 5 GiB a single S3 copy can move`,
        {
          hint: 'Split the file, or move it to the archive prefix by hand.',
        },
      );
    }

    let copyEtag: string | undefined;
    try {
      copyEtag = await this.copy(src, dst, srcHead.ETag);
    } catch (err) {
      if (errorName(err) === 'PreconditionFailed' || asS3Error(err).$metadata?.httpStatusCode === 412) {
        // Either the target appeared since our HEAD (If-None-Match) or the source changed (CopySourceIfMatch).
        const now = await this.lake.head(dst).catch(() => undefined);
        if (now) return 'exists';
        if (opts.expectFingerprint !== undefined) return 'changed';
        throw new MkpiError('MKPI_ARCHIVE_FAILED', `archive: ${this.lake.where(from)} changed while being archived`, { cause: err });
      }
      if (errorName(err) === 'ConditionalRequestConflict' || asS3Error(err).$metadata?.httpStatusCode === 409) {
        throw new MkpiError('MKPI_RETRY_LATER', `archive: a concurrent write to ${this.lake.where(to)} is in progress`, { cause: err });
      }
      const mapped = this.lake.fail(err, 'archive', from);
      throw mapped.code === 'MKPI_NO_INPUT' || mapped.code === 'MKPI_CONFIG' || mapped.code === 'MKPI_LAKE_UNAVAILABLE'
        ? mapped
        : new MkpiError('MKPI_ARCHIVE_FAILED', mapped.message, { cause: err });
    }

    let dstHead: HeadObjectCommandOutput | undefined;
    try {
      dstHead = await this.lake.head(dst);
    } catch (err) {
      throw this.lake.fail(err, 'archive', to);
    }
    const problem = verifyCopy(srcHead, dstHead, copyEtag);
    if (problem) {
      // The source stays: a failed verification must never lose data.
      throw new MkpiError(
        'MKPI_ARCHIVE_FAILED',
        `archive: copy of ${this.lake.where(from)} to ${this.lake.where(to)} did not verify: ${problem}`,
        {
          details: {
            sourceSize: srcHead.ContentLength,
            sourceEtag: stripQuotes(srcHead.ETag),
            targetSize: dstHead?.ContentLength,
            targetEtag: stripQuotes(dstHead?.ETag),
          },
        },
      );
    }
    await opts.afterCopy?.({ key: to, size: dstHead?.ContentLength ?? 0, fingerprint: stripQuotes(dstHead?.ETag) });
    try {
      await this.lake.client.send(new DeleteObjectCommand({ Bucket: this.lake.bucket, Key: src }));
    } catch (err) {
      const mapped = this.lake.fail(err, 'archive (delete source)', from);
      throw new MkpiError(
        mapped.code === 'MKPI_CONFIG' ? 'MKPI_CONFIG' : 'MKPI_ARCHIVE_FAILED',
        `${mapped.message} (the copy at ${this.lake.where(to)} is complete)`,
        {
          cause: err,
        },
      );
    }
    return 'moved';
  }

  /** Server-side copy; returns the ETag the store reports for the new object. */
  private async copy(src: string, dst: string, srcEtag: string | undefined): Promise<string | undefined> {
    const aws = encodeCopySource(this.lake.bucket, src, 'aws');
    const uri = encodeCopySource(this.lake.bucket, src, 'uri');
    // Both spell this key alike: nothing to choose.
    if (aws === uri) return this.sendCopy(aws, dst, srcEtag);
    if (this.copySourceStyle) return this.sendCopy(this.copySourceStyle === 'aws' ? aws : uri, dst, srcEtag);
    try {
      const etag = await this.sendCopy(aws, dst, srcEtag);
      this.copySourceStyle = 'aws';
      return etag;
    } catch (err) {
      // We have just seen the source with HEAD: "no such key" here means this server decodes the
      // copy source differently (decodeURI). Try that spelling; CopySourceIfMatch keeps it safe.
      if (errorName(err) !== 'NoSuchKey') throw err;
    }
    const etag = await this.sendCopy(uri, dst, srcEtag);
    this.copySourceStyle = 'uri';
    return etag;
  }

  private async sendCopy(copySource: string, dst: string, srcEtag: string | undefined): Promise<string | undefined> {
    const input = {
      Bucket: this.lake.bucket,
      Key: dst,
      CopySource: copySource,
      ...(srcEtag ? { CopySourceIfMatch: srcEtag } : {}),
    };
    if (this.conditionalCopy) {
      try {
        // If-None-Match makes "never overwrite" atomic on stores that support it (AWS).
        const resp = await this.lake.client.send(new CopyObjectCommand({ ...input, IfNoneMatch: '*' }));
        return resp.CopyObjectResult?.ETag;
      } catch (err) {
        const name = errorName(err);
        if (name !== 'NotImplemented' && asS3Error(err).$metadata?.httpStatusCode !== 501) throw err;
        this.conditionalCopy = false;
      }
    }
    const resp = await this.lake.client.send(new CopyObjectCommand(input));
    return resp.CopyObjectResult?.ETag;
  }
}

/** Returns why the copy does not match its source, or undefined when it does. */
function verifyCopy(
  src: HeadObjectCommandOutput,
  dst: HeadObjectCommandOutput | undefined,
  copyEtag: string | undefined,
): string | undefined {
  if (!dst) return 'the copy is missing';
  if (dst.ContentLength !== src.ContentLength) return `size ${dst.ContentLength} != ${src.ContentLength}`;
  const srcEtag = stripQuotes(src.ETag);
  const dstEtag = stripQuotes(dst.ETag);
  if (srcEtag !== '' && srcEtag === dstEtag) return undefined;
  if (etagIsContentMd5(src) && etagIsContentMd5(dst)) return `ETag ${dstEtag} != ${srcEtag}`;
  // Multipart ("-N") and SSE-KMS/SSE-C ETags are not content hashes and a copy gets a new one, so
  // equality cannot be asked for. The proof is then: S3 copied exactly the version we saw
  // (CopySourceIfMatch), the sizes agree, and the object now there is the one the copy made.
  if (copyEtag !== undefined && stripQuotes(copyEtag) === dstEtag) return undefined;
  return `ETag ${dstEtag} is neither the source's (${srcEtag}) nor the copy's (${stripQuotes(copyEtag)})`;
}
