import { Readable, finished } from 'node:stream';

import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
  type HeadObjectCommandOutput,
} from '@aws-sdk/client-s3';

import { MkpiError, redact, type ErrorCode } from '../../domain/errors.js';
import type { Lake, LakeObject, MoveOptions, MoveOutcome } from '../../domain/lake.js';
import { assertSafeKey, compareKeys, discard } from './local.js';

export interface S3LakeOptions {
  bucket: string;
  /** Key prefix of the lake root inside the bucket, without leading or trailing "/" ("" for the bucket root). */
  prefix: string;
  /** Custom endpoint of an S3-compatible store (MinIO, Ceph, s3rver...). */
  endpoint?: string;
  region?: string;
  /** Path-style addressing; defaults to true when `endpoint` is given (what most S3-compatible stores need). */
  forcePathStyle?: boolean;
  /**
   * Only compute/validate the SDK's flexible checksums when an operation requires them. Stores that do
   * not understand aws-chunked uploads (s3rver, older MinIO, Ceph) otherwise store the framing inside
   * the object. Defaults to true when `endpoint` is given.
   */
  checksumWhenRequired?: boolean;
  /** SDK attempts per request (network errors, 5xx, throttling). Default 5. */
  maxAttempts?: number;
  /** How many times in a row a read may resume after its connection broke without progress. Default 5. */
  readResumes?: number;
  /** First back-off before a read resumes, doubled on each attempt without progress. Default 200 ms. */
  resumeDelayMs?: number;
  /** Bytes held in memory per upload part by write(); at least 5 MiB (S3's minimum). Default 8 MiB. */
  partSize?: number;
}

const MiB = 1024 * 1024;
const MIN_PART_SIZE = 5 * MiB;
// Largest object a single CopyObject may copy.
const MAX_COPY_SIZE = 5 * 1024 * MiB;

type CopySourceStyle = 'aws' | 'uri';

interface S3ErrorLike {
  name?: string;
  code?: string;
  message?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number; requestId?: string };
}

function asS3Error(err: unknown): S3ErrorLike {
  return typeof err === 'object' && err !== null ? err : { message: String(err) };
}

function stripQuotes(etag: string | undefined): string {
  return (etag ?? '').replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
}

function errorName(err: unknown): string {
  const e = asS3Error(err);
  return e.name && e.name !== 'Error' ? e.name : (e.Code ?? e.code ?? e.name ?? 'Error');
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTDOWN',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
]);
const UNAVAILABLE_NAMES = new Set([
  'SlowDown',
  'ServiceUnavailable',
  'InternalError',
  'RequestTimeout',
  'RequestTimeoutException',
  'Throttling',
  'ThrottlingException',
  'TooManyRequestsException',
  'TimeoutError',
  'NetworkingError',
]);
const NO_INPUT_NAMES = new Set(['NoSuchBucket', 'NoSuchKey', 'NotFound']);
const CONFIG_NAMES = new Set([
  'AccessDenied',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'Forbidden',
  'AllAccessDisabled',
  'AccountProblem',
  'CredentialsProviderError',
  'PermanentRedirect',
  'AuthorizationHeaderMalformed',
  'InvalidBucketName',
  'IllegalLocationConstraintException',
]);

/** True for failures that may well succeed on another attempt (used to decide whether a read resumes). */
export function isTransientS3Error(err: unknown): boolean {
  if (err instanceof MkpiError) return err.code === 'MKPI_LAKE_UNAVAILABLE';
  const e = asS3Error(err);
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined && status >= 500) return true;
  if (UNAVAILABLE_NAMES.has(errorName(err))) return true;
  if (e.code && NETWORK_CODES.has(e.code)) return true;
  // Node reports a body cut mid-way as "aborted" / "socket hang up" without a stable code on some paths.
  return /aborted|socket hang up|premature close|ECONNRESET/i.test(e.message ?? '');
}

/**
 * Maps an SDK (or network) failure to the project's codes. `where` names the object, never a secret.
 */
export function mapS3Error(err: unknown, action: string, where: string, endpoint?: string): MkpiError {
  if (err instanceof MkpiError) return err;
  const e = asS3Error(err);
  const name = errorName(err);
  const status = e.$metadata?.httpStatusCode;
  const details: Record<string, unknown> = { s3Error: name };
  if (status !== undefined) details['httpStatus'] = status;
  if (e.$metadata?.requestId) details['requestId'] = e.$metadata.requestId;
  const message = `${action} ${where}: ${name}${e.message && e.message !== name ? `: ${e.message}` : ''}`;
  const make = (code: ErrorCode, hint?: string): MkpiError =>
    new MkpiError(code, redact(message), { cause: err, details, ...(hint ? { hint } : {}) });

  if (name === 'AbortError') return make('MKPI_INTERRUPTED');
  if (NO_INPUT_NAMES.has(name) || status === 404) {
    return make('MKPI_NO_INPUT', name === 'NoSuchBucket' ? 'Check the bucket name of the lake URI (s3://bucket/prefix).' : undefined);
  }
  if (CONFIG_NAMES.has(name) || status === 401 || status === 403 || status === 301) {
    return make(
      'MKPI_CONFIG',
      name === 'PermanentRedirect' || name === 'AuthorizationHeaderMalformed' || status === 301
        ? 'The bucket lives in another region: set AWS_REGION (or the S3 region option) to its region.'
        : 'Check the AWS credentials of the default chain (AWS_PROFILE, AWS_ACCESS_KEY_ID...) and their permissions on this bucket.',
    );
  }
  if (/region is missing/i.test(e.message ?? '')) {
    return make('MKPI_CONFIG', 'Set AWS_REGION (or the S3 region option).');
  }
  if (isTransientS3Error(err)) {
    return make(
      'MKPI_LAKE_UNAVAILABLE',
      endpoint ? `Is the S3 endpoint ${redact(endpoint)} reachable?` : 'S3 did not answer after retries; try again later.',
    );
  }
  if (status !== undefined && status >= 400) return make('MKPI_INTERNAL');
  return make('MKPI_LAKE_UNAVAILABLE');
}

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

/** An ETag is the MD5 of the content only for single-part uploads that are not SSE-KMS/SSE-C encrypted. */
function etagIsContentMd5(head: HeadObjectCommandOutput): boolean {
  const etag = stripQuotes(head.ETag);
  if (!/^[0-9a-f]{32}$/i.test(etag)) return false;
  const sse = head.ServerSideEncryption ?? '';
  return !sse.startsWith('aws:kms') && !head.SSECustomerAlgorithm;
}

interface ResumeOptions {
  total: number | undefined;
  describe: string;
  maxResumes: number;
  delayMs: number;
  /** Opens the object again from `offset`; must check it is still the same version. */
  open: (offset: number, signal: AbortSignal) => Promise<Readable>;
}

/**
 * The bytes of one object as a single stream, even when the connection under it breaks: on a body
 * error (or an early end) it asks for the rest with a Range request from the offset reached.
 * Back-pressure is passed through by pausing the HTTP body, so a slow consumer holds at most
 * one highWaterMark here.
 */
class ResumingObjectStream extends Readable {
  private body: Readable | undefined;
  private offset = 0;
  private failuresWithoutProgress = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly controller = new AbortController();

  constructor(
    private readonly opts: ResumeOptions,
    first: Readable,
  ) {
    super({ highWaterMark: 256 * 1024 });
    this.attach(first);
  }

  override _read(): void {
    if (this.body?.isPaused()) this.body.resume();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    if (this.timer) clearTimeout(this.timer);
    this.controller.abort();
    // Destroying the HTTP body closes its socket: nothing keeps downloading behind our back.
    this.body?.destroy();
    this.body = undefined;
    callback(err);
  }

  private attach(body: Readable): void {
    this.body = body;
    let progressed = false;
    const onData = (chunk: Buffer | string): void => {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      this.offset += buf.length;
      if (!progressed && buf.length > 0) {
        progressed = true;
        this.failuresWithoutProgress = 0;
      }
      if (!this.push(buf)) body.pause();
    };
    body.on('data', onData);
    const stopWatching = finished(body, (err) => {
      body.off('data', onData);
      stopWatching();
      if (this.destroyed || this.body !== body) return;
      this.body = undefined;
      const { total } = this.opts;
      if (!err && (total === undefined || this.offset === total)) {
        this.push(null);
        return;
      }
      if (total !== undefined && this.offset >= total) {
        // Every byte arrived and still the body failed (say, the SDK's checksum check): no Range
        // request can repair that.
        this.destroy(
          new MkpiError(
            'MKPI_LAKE_UNAVAILABLE',
            `read ${this.opts.describe}: got ${this.offset} bytes of ${total}${err ? `, then: ${err.message}` : ''}`,
            {
              ...(err ? { cause: err } : {}),
            },
          ),
        );
        return;
      }
      body.destroy();
      this.scheduleResume(err ?? new Error(`connection ended after ${this.offset} of ${total} bytes`));
    });
  }

  private scheduleResume(cause: unknown): void {
    this.failuresWithoutProgress += 1;
    if (this.failuresWithoutProgress > this.opts.maxResumes) {
      this.destroy(
        new MkpiError(
          'MKPI_LAKE_UNAVAILABLE',
          `read ${this.opts.describe}: connection lost at byte ${this.offset} of ${this.opts.total ?? '?'} and ${this.opts.maxResumes} resume attempts failed`,
          { cause, details: { offset: this.offset, total: this.opts.total } },
        ),
      );
      return;
    }
    // Exponential back-off with jitter so that many readers do not hammer a recovering store together.
    const delay = Math.min(this.opts.delayMs * 2 ** (this.failuresWithoutProgress - 1), 10_000) * (0.75 + Math.random() / 4);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.opts.open(this.offset, this.controller.signal).then(
        (next) => {
          if (this.destroyed) {
            next.destroy();
            return;
          }
          this.attach(next);
          // The consumer may be waiting in read() already; the new body starts flowing on its own
          // (a 'data' listener), and pauses again if the consumer is not.
        },
        (err: unknown) => {
          if (this.destroyed) return;
          if (isTransientS3Error(err)) this.scheduleResume(err);
          else this.destroy(err instanceof MkpiError ? err : mapS3Error(err, 'read', this.opts.describe));
        },
      );
    }, delay);
  }
}

export class S3Lake implements Lake {
  readonly root: string;
  readonly bucket: string;
  /** "" or "some/prefix/" (always ends with "/" when not empty). */
  readonly keyPrefix: string;
  readonly client: S3Client;
  private readonly endpoint: string | undefined;
  private readonly readResumes: number;
  private readonly resumeDelayMs: number;
  private readonly partSize: number;
  private readonly checksumWhenRequired: boolean;
  // Learnt once per lake: which x-amz-copy-source encoding this server decodes.
  private copySourceStyle: CopySourceStyle | undefined;
  // Whether the server accepts If-None-Match on CopyObject (AWS does; some S3-compatible stores refuse it).
  private conditionalCopy = true;

  constructor(opts: S3LakeOptions) {
    if (!opts.bucket) throw new MkpiError('MKPI_USAGE', 'S3 lake: bucket name is empty');
    this.bucket = opts.bucket;
    const prefix = opts.prefix.replace(/^\/+|\/+$/g, '');
    if (prefix !== '') assertSafeKey(prefix, 'S3 prefix');
    this.keyPrefix = prefix === '' ? '' : `${prefix}/`;
    this.root = prefix === '' ? `s3://${opts.bucket}` : `s3://${opts.bucket}/${prefix}`;
    this.endpoint = opts.endpoint;
    this.readResumes = opts.readResumes ?? 5;
    this.resumeDelayMs = opts.resumeDelayMs ?? 200;
    this.partSize = Math.max(opts.partSize ?? 8 * MiB, MIN_PART_SIZE);
    const custom = opts.endpoint !== undefined && opts.endpoint !== '';
    this.checksumWhenRequired = opts.checksumWhenRequired ?? custom;
    const checksums = this.checksumWhenRequired ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED';
    // Credentials come only from the SDK's default chain (env, profile, SSO, instance role):
    // they are never accepted as options, so they can never leak through flags or reports.
    // The JS SDK ignores AWS_DEFAULT_REGION, which the AWS CLI (and so many shells) sets; an
    // S3-compatible store rarely cares about the region, but the signer needs one.
    const region =
      opts.region ||
      (process.env['AWS_REGION'] ? undefined : process.env['AWS_DEFAULT_REGION']) ||
      (custom && !process.env['AWS_REGION'] ? 'us-east-1' : undefined);
    this.client = new S3Client({
      ...(custom ? { endpoint: opts.endpoint } : {}),
      ...(region ? { region } : {}),
      // On AWS a bucket in another region than the configured one is followed, not an error.
      followRegionRedirects: !custom,
      forcePathStyle: opts.forcePathStyle ?? custom,
      maxAttempts: opts.maxAttempts ?? 5,
      requestChecksumCalculation: checksums,
      responseChecksumValidation: checksums,
    });
  }

  private fullKey(key: string, what = 'key'): string {
    assertSafeKey(key, what);
    return this.keyPrefix + key;
  }

  private where(key: string): string {
    return `${this.root}/${key}`;
  }

  private fail(err: unknown, action: string, key: string): MkpiError {
    return mapS3Error(err, action, this.where(key), this.endpoint);
  }

  private async head(fullKey: string): Promise<HeadObjectCommandOutput | undefined> {
    try {
      return await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: fullKey }));
    } catch (err) {
      const e = asS3Error(err);
      // HEAD has no error body, so a missing bucket also looks like this; list() tells them apart.
      if (e.name === 'NotFound' || e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404) return undefined;
      throw err;
    }
  }

  async stat(key: string): Promise<LakeObject | undefined> {
    const full = this.fullKey(key);
    try {
      const head = await this.head(full);
      if (!head) return undefined;
      return { key, size: head.ContentLength ?? 0, fingerprint: stripQuotes(head.ETag) };
    } catch (err) {
      throw this.fail(err, 'stat', key);
    }
  }

  async list(prefix: string, exclude: string[] = []): Promise<LakeObject[]> {
    if (prefix !== '') assertSafeKey(prefix, 'prefix');
    for (const e of exclude) assertSafeKey(e, 'exclude prefix');
    const out: LakeObject[] = [];
    if (exclude.some((e) => prefix.startsWith(e))) return out;
    const cut = this.keyPrefix.length;
    // The archive only grows, and paging through it on every run would make listing slower each
    // day. Keys come back in byte order, so all keys under an excluded prefix form one contiguous
    // run: on meeting the first of them, start a fresh listing just past the run (StartAfter).
    // Delimiter-based walking would work too, but it trusts the store's CommonPrefixes, which
    // s3rver gets wrong for folders holding only deeper keys; a missed input file is silent.
    const jumped = new Set<string>();
    let token: string | undefined;
    let startAfter: string | undefined;
    const seen = new Set<string>();
    try {
      for (;;) {
        const resp = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.keyPrefix + prefix,
            ...(token !== undefined ? { ContinuationToken: token } : startAfter !== undefined ? { StartAfter: startAfter } : {}),
          }),
        );
        let jumpPast: string | undefined;
        for (const obj of resp.Contents ?? []) {
          if (obj.Key === undefined || !obj.Key.startsWith(this.keyPrefix)) continue;
          const key = obj.Key.slice(cut);
          const excludedBy = exclude.find((e) => key.startsWith(e));
          if (excludedBy !== undefined) {
            // A store that ignores StartAfter would send us here again: then just filter.
            if (!jumped.has(excludedBy)) {
              jumped.add(excludedBy);
              jumpPast = excludedBy;
              break;
            }
            continue;
          }
          // Zero-byte "folder" markers made by consoles are not files.
          if (key === '' || key.endsWith('/') || !key.startsWith(prefix)) continue;
          out.push({ key, size: obj.Size ?? 0, fingerprint: stripQuotes(obj.ETag) });
        }
        if (jumpPast !== undefined) {
          // U+10FFFF is the largest code point, so this sorts after every real key of the run.
          startAfter = this.keyPrefix + jumpPast + '\u{10FFFF}';
          token = undefined;
          continue;
        }
        if (!resp.IsTruncated) break;
        token = resp.NextContinuationToken;
        if (!token) {
          throw new MkpiError('MKPI_LAKE_UNAVAILABLE', `list ${this.root}/${prefix}: truncated listing without a continuation token`);
        }
        // A store that hands back the same token forever would loop forever.
        if (seen.has(token)) {
          throw new MkpiError('MKPI_LAKE_UNAVAILABLE', `list ${this.root}/${prefix}: the store repeated a continuation token`);
        }
        seen.add(token);
      }
    } catch (err) {
      throw this.fail(err, 'list', prefix);
    }
    return out.sort((a, b) => compareKeys(a.key, b.key));
  }

  async read(key: string, signal?: AbortSignal): Promise<Readable> {
    const full = this.fullKey(key);
    const describe = this.where(key);
    if (signal?.aborted) throw new MkpiError('MKPI_INTERRUPTED', `read ${describe} interrupted`, { cause: signal.reason });
    let first: { body: Readable; etag: string; total: number | undefined };
    try {
      const resp = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: full }), { abortSignal: signal });
      first = { body: asReadable(resp.Body, describe), etag: stripQuotes(resp.ETag), total: resp.ContentLength };
    } catch (err) {
      throw this.fail(err, 'read', key);
    }

    const open = async (offset: number, abort: AbortSignal): Promise<Readable> => {
      const resp = await this.client
        .send(
          new GetObjectCommand({
            Bucket: this.bucket,
            Key: full,
            Range: `bytes=${offset}-`,
            // The rest must come from the same version of the object, or the bytes would not fit together.
            ...(first.etag ? { IfMatch: `"${first.etag}"` } : {}),
          }),
          { abortSignal: abort },
        )
        .catch((err: unknown) => {
          const e = asS3Error(err);
          if (errorName(err) === 'PreconditionFailed' || e.$metadata?.httpStatusCode === 412) {
            throw changedWhileReading(describe, err);
          }
          throw err;
        });
      const body = asReadable(resp.Body, describe);
      // Not every store honours If-Match on GET (s3rver ignores it): check the version ourselves.
      if (first.etag && stripQuotes(resp.ETag) !== first.etag) {
        body.destroy();
        throw changedWhileReading(describe);
      }
      // A store that ignores Range would send the object from byte 0 again.
      if (offset > 0 && !(resp.ContentRange ?? '').startsWith(`bytes ${offset}-`)) {
        body.destroy();
        throw new MkpiError(
          'MKPI_LAKE_UNAVAILABLE',
          `read ${describe}: the store did not honour a Range request (got ${resp.ContentRange ?? 'no Content-Range'})`,
        );
      }
      return body;
    };

    const stream = new ResumingObjectStream(
      { total: first.total, describe, maxResumes: this.readResumes, delayMs: this.resumeDelayMs, open },
      first.body,
    );
    if (signal) {
      const onAbort = (): void => {
        stream.destroy(new MkpiError('MKPI_INTERRUPTED', `read ${describe} interrupted`, { cause: signal.reason }));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      stream.once('close', () => signal.removeEventListener('abort', onAbort));
    }
    return stream;
  }

  /**
   * Streams `body` to the object without a temp file: bodies smaller than one part go up in a single
   * PutObject from memory; larger ones become a multipart upload holding one part in memory at a
   * time. Either way the object appears whole or not at all (an upload that fails is aborted).
   */
  async write(key: string, body: Readable, signal?: AbortSignal): Promise<void> {
    const full = this.fullKey(key);
    const partSize = this.partSize;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let upload: { id: string; parts: CompletedPart[] } | undefined;
    const checksum = this.checksumWhenRequired ? {} : ({ ChecksumAlgorithm: 'CRC32' } as const);

    const takePart = (size: number): Buffer => {
      const all = pending.length === 1 ? pending[0] : Buffer.concat(pending, pendingBytes);
      const part = all.subarray(0, size);
      const rest = all.subarray(size);
      pending = rest.length > 0 ? [rest] : [];
      pendingBytes = rest.length;
      return part;
    };
    const sendPart = async (part: Buffer): Promise<void> => {
      if (!upload) {
        const created = await this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: full, ...checksum }), {
          abortSignal: signal,
        });
        if (!created.UploadId) throw new MkpiError('MKPI_LAKE_UNAVAILABLE', `write ${this.where(key)}: no UploadId returned`);
        upload = { id: created.UploadId, parts: [] };
      }
      const partNumber = upload.parts.length + 1;
      const resp = await this.client.send(
        new UploadPartCommand({
          Bucket: this.bucket,
          Key: full,
          UploadId: upload.id,
          PartNumber: partNumber,
          Body: part,
          ContentLength: part.length,
          ...checksum,
        }),
        { abortSignal: signal },
      );
      upload.parts.push({
        PartNumber: partNumber,
        ETag: resp.ETag,
        ...(resp.ChecksumCRC32 ? { ChecksumCRC32: resp.ChecksumCRC32 } : {}),
      });
    };

    try {
      if (signal?.aborted) throw signal.reason ?? new Error('aborted');
      // for-await pulls one chunk at a time, so a fast producer waits while a part uploads.
      for await (const chunk of body) {
        const buf: Buffer = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
        pending.push(buf);
        pendingBytes += buf.length;
        while (pendingBytes >= partSize) await sendPart(takePart(partSize));
        if (signal?.aborted) throw signal.reason ?? new Error('aborted');
      }
      if (!upload) {
        const whole = takePart(pendingBytes);
        await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: full, Body: whole, ContentLength: whole.length }), {
          abortSignal: signal,
        });
        return;
      }
      if (pendingBytes > 0) await sendPart(takePart(pendingBytes));
      const current = upload;
      await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: full,
          UploadId: current.id,
          MultipartUpload: { Parts: current.parts },
        }),
        { abortSignal: signal },
      );
    } catch (err) {
      discard(body);
      const started = upload as { id: string } | undefined;
      if (started) {
        // Uncompleted parts are billed until aborted (or a lifecycle rule removes them).
        await this.client
          .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: full, UploadId: started.id }))
          .catch(() => undefined);
      }
      if (signal?.aborted) throw new MkpiError('MKPI_INTERRUPTED', `write ${this.where(key)} interrupted`, { cause: signal.reason });
      const e = asS3Error(err);
      // Only store failures are the lake's; a failing body stream is the caller's own error.
      if (err instanceof MkpiError || e.$metadata !== undefined || isTransientS3Error(err)) throw this.fail(err, 'write', key);
      throw err;
    }
  }

  async moveNoOverwrite(from: string, to: string, opts: MoveOptions = {}): Promise<MoveOutcome> {
    const src = this.fullKey(from, 'source key');
    const dst = this.fullKey(to, 'target key');
    let srcHead: HeadObjectCommandOutput | undefined;
    try {
      if (await this.head(dst)) return 'exists';
      srcHead = await this.head(src);
    } catch (err) {
      throw this.fail(err, 'archive', from);
    }
    if (!srcHead) throw new MkpiError('MKPI_NO_INPUT', `archive: ${this.where(from)} does not exist`);
    // A newer object under the same name is not the version that was loaded: it stays.
    if (opts.expectFingerprint !== undefined && stripQuotes(srcHead.ETag) !== opts.expectFingerprint) return 'changed';
    const size = srcHead.ContentLength ?? 0;
    if (size > MAX_COPY_SIZE) {
      throw new MkpiError(
        'MKPI_ARCHIVE_FAILED',
        `archive: ${this.where(from)} is ${size} bytes, over the 5 GiB a single S3 copy can move`,
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
        const now = await this.head(dst).catch(() => undefined);
        if (now) return 'exists';
        if (opts.expectFingerprint !== undefined) return 'changed';
        throw new MkpiError('MKPI_ARCHIVE_FAILED', `archive: ${this.where(from)} changed while being archived`, { cause: err });
      }
      if (errorName(err) === 'ConditionalRequestConflict' || asS3Error(err).$metadata?.httpStatusCode === 409) {
        throw new MkpiError('MKPI_RETRY_LATER', `archive: a concurrent write to ${this.where(to)} is in progress`, { cause: err });
      }
      const mapped = this.fail(err, 'archive', from);
      throw mapped.code === 'MKPI_NO_INPUT' || mapped.code === 'MKPI_CONFIG' || mapped.code === 'MKPI_LAKE_UNAVAILABLE'
        ? mapped
        : new MkpiError('MKPI_ARCHIVE_FAILED', mapped.message, { cause: err });
    }

    let dstHead: HeadObjectCommandOutput | undefined;
    try {
      dstHead = await this.head(dst);
    } catch (err) {
      throw this.fail(err, 'archive', to);
    }
    const problem = verifyCopy(srcHead, dstHead, copyEtag);
    if (problem) {
      // The source stays: a failed verification must never lose data.
      throw new MkpiError('MKPI_ARCHIVE_FAILED', `archive: copy of ${this.where(from)} to ${this.where(to)} did not verify: ${problem}`, {
        details: {
          sourceSize: srcHead.ContentLength,
          sourceEtag: stripQuotes(srcHead.ETag),
          targetSize: dstHead?.ContentLength,
          targetEtag: stripQuotes(dstHead?.ETag),
        },
      });
    }
    await opts.afterCopy?.({ key: to, size: dstHead?.ContentLength ?? 0, fingerprint: stripQuotes(dstHead?.ETag) });
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: src }));
    } catch (err) {
      const mapped = this.fail(err, 'archive (delete source)', from);
      throw new MkpiError(
        mapped.code === 'MKPI_CONFIG' ? 'MKPI_CONFIG' : 'MKPI_ARCHIVE_FAILED',
        `${mapped.message} (the copy at ${this.where(to)} is complete)`,
        {
          cause: err,
        },
      );
    }
    return 'moved';
  }

  /** Server-side copy; returns the ETag the store reports for the new object. */
  private async copy(src: string, dst: string, srcEtag: string | undefined): Promise<string | undefined> {
    const aws = encodeCopySource(this.bucket, src, 'aws');
    const uri = encodeCopySource(this.bucket, src, 'uri');
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
      Bucket: this.bucket,
      Key: dst,
      CopySource: copySource,
      ...(srcEtag ? { CopySourceIfMatch: srcEtag } : {}),
    };
    if (this.conditionalCopy) {
      try {
        // If-None-Match makes "never overwrite" atomic on stores that support it (AWS).
        const resp = await this.client.send(new CopyObjectCommand({ ...input, IfNoneMatch: '*' }));
        return resp.CopyObjectResult?.ETag;
      } catch (err) {
        const name = errorName(err);
        if (name !== 'NotImplemented' && asS3Error(err).$metadata?.httpStatusCode !== 501) throw err;
        this.conditionalCopy = false;
      }
    }
    const resp = await this.client.send(new CopyObjectCommand(input));
    return resp.CopyObjectResult?.ETag;
  }

  async remove(key: string): Promise<void> {
    const full = this.fullKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: full }));
    } catch (err) {
      const mapped = this.fail(err, 'remove', key);
      if (mapped.code === 'MKPI_NO_INPUT' && errorName(err) !== 'NoSuchBucket') return;
      throw mapped;
    }
  }

  close(): Promise<void> {
    this.client.destroy();
    return Promise.resolve();
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

function changedWhileReading(describe: string, cause?: unknown): MkpiError {
  return new MkpiError('MKPI_RETRY_LATER', `read ${describe}: the object changed while it was being read`, {
    hint: 'Another process replaced the file; run again once uploads are finished.',
    ...(cause === undefined ? {} : { cause }),
  });
}

function asReadable(body: unknown, describe: string): Readable {
  if (body instanceof Readable) return body;
  throw new MkpiError('MKPI_INTERNAL', `read ${describe}: the S3 client returned a body that is not a Node stream`);
}
