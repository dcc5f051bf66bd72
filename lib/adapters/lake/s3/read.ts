import { Readable, finished } from 'node:stream';

import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';

import { MkpiError } from '../../../domain/errors.js';
import { asS3Error, errorName, isTransientS3Error, mapS3Error } from './errors.js';
import { stripQuotes } from './etag.js';

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

/** One object to read, and how patiently to resume it. */
export interface ReadTarget {
  client: S3Client;
  bucket: string;
  /** Key in the bucket, the lake prefix included. */
  key: string;
  /** The object as messages name it (its lake URI). */
  describe: string;
  maxResumes: number;
  delayMs: number;
  /** The lake's mapping of a failed first GET (it knows the endpoint to hint at). */
  fail: (err: unknown) => MkpiError;
}

export async function readObject(target: ReadTarget, signal?: AbortSignal): Promise<Readable> {
  const { client, bucket, key: full, describe } = target;
  if (signal?.aborted) throw new MkpiError('MKPI_INTERRUPTED', `read ${describe} interrupted`, { cause: signal.reason });
  let first: { body: Readable; etag: string; total: number | undefined };
  try {
    const resp = await client.send(new GetObjectCommand({ Bucket: bucket, Key: full }), { abortSignal: signal });
    first = { body: asReadable(resp.Body, describe), etag: stripQuotes(resp.ETag), total: resp.ContentLength };
  } catch (err) {
    throw target.fail(err);
  }

  const open = async (offset: number, abort: AbortSignal): Promise<Readable> => {
    const resp = await client
      .send(
        new GetObjectCommand({
          Bucket: bucket,
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
    { total: first.total, describe, maxResumes: target.maxResumes, delayMs: target.delayMs, open },
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
