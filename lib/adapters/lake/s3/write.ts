import type { Readable } from 'node:stream';

import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type S3Client,
} from '@aws-sdk/client-s3';

import { MkpiError } from '../../../domain/errors.js';
import { discard } from '../streams.js';
import { asS3Error, isTransientS3Error } from './errors.js';

/** One object to write, and how the upload is cut and checked. */
export interface WriteTarget {
  client: S3Client;
  bucket: string;
  /** Key in the bucket, the lake prefix included. */
  key: string;
  /** The object as messages name it (its lake URI). */
  describe: string;
  /** Bytes held in memory per part; at least S3's 5 MiB minimum. */
  partSize: number;
  /** The store does not understand aws-chunked uploads: send no flexible checksums. */
  checksumWhenRequired: boolean;
  /** The lake's mapping of a store failure (it knows the endpoint to hint at). */
  fail: (err: unknown) => MkpiError;
}

/**
 * Streams `body` to the object without a temp file: bodies smaller than one part go up in a single
 * PutObject from memory; larger ones become a multipart upload holding one part in memory at a
 * time. Either way the object appears whole or not at all (an upload that fails is aborted).
 */
export async function writeObject(target: WriteTarget, body: Readable, signal?: AbortSignal): Promise<void> {
  const { client, bucket, key: full, describe, partSize } = target;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let upload: { id: string; parts: CompletedPart[] } | undefined;
  const checksum = target.checksumWhenRequired ? {} : ({ ChecksumAlgorithm: 'CRC32' } as const);

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
      const created = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: full, ...checksum }), {
        abortSignal: signal,
      });
      if (!created.UploadId) throw new MkpiError('MKPI_LAKE_UNAVAILABLE', `write ${describe}: no UploadId returned`);
      upload = { id: created.UploadId, parts: [] };
    }
    const partNumber = upload.parts.length + 1;
    const resp = await client.send(
      new UploadPartCommand({
        Bucket: bucket,
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
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: full, Body: whole, ContentLength: whole.length }), {
        abortSignal: signal,
      });
      return;
    }
    if (pendingBytes > 0) await sendPart(takePart(pendingBytes));
    const current = upload;
    await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
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
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: full, UploadId: started.id })).catch(() => undefined);
    }
    if (signal?.aborted) throw new MkpiError('MKPI_INTERRUPTED', `write ${describe} interrupted`, { cause: signal.reason });
    const e = asS3Error(err);
    // Only store failures are the lake's; a failing body stream is the caller's own error.
    if (err instanceof MkpiError || e.$metadata !== undefined || isTransientS3Error(err)) throw target.fail(err);
    throw err;
  }
}
