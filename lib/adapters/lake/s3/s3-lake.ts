import type { Readable } from 'node:stream';

import { DeleteObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client, type HeadObjectCommandOutput } from '@aws-sdk/client-s3';

import { MkpiError } from '../../../domain/errors.js';
import type { Lake, LakeObject, MoveOptions, MoveOutcome } from '../../../domain/lake.js';
import { assertSafeKey, compareKeys } from '../keys.js';
import { S3Mover } from './copy.js';
import { asS3Error, errorName, mapS3Error } from './errors.js';
import { stripQuotes } from './etag.js';
import { readObject } from './read.js';
import { writeObject } from './write.js';

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
  private readonly mover: S3Mover;

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
    // The CLI's configuration resolves the region (flag, AWS_REGION, then AWS_DEFAULT_REGION,
    // which the JS SDK alone would ignore); an S3-compatible store rarely cares about the
    // region, but the signer needs one.
    const region = opts.region || (custom ? 'us-east-1' : undefined);
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
    this.mover = new S3Mover({
      client: this.client,
      bucket: this.bucket,
      fullKey: (key, what) => this.fullKey(key, what),
      where: (key) => this.where(key),
      fail: (err, action, key) => this.fail(err, action, key),
      head: (fullKey) => this.head(fullKey),
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
    return await readObject(
      {
        client: this.client,
        bucket: this.bucket,
        key: full,
        describe: this.where(key),
        maxResumes: this.readResumes,
        delayMs: this.resumeDelayMs,
        fail: (err) => this.fail(err, 'read', key),
      },
      signal,
    );
  }

  /**
   * Streams `body` to the object without a temp file: bodies smaller than one part go up in a single
   * PutObject from memory; larger ones become a multipart upload holding one part in memory at a
   * time. Either way the object appears whole or not at all (an upload that fails is aborted).
   */
  async write(key: string, body: Readable, signal?: AbortSignal): Promise<void> {
    const full = this.fullKey(key);
    await writeObject(
      {
        client: this.client,
        bucket: this.bucket,
        key: full,
        describe: this.where(key),
        partSize: this.partSize,
        checksumWhenRequired: this.checksumWhenRequired,
        fail: (err) => this.fail(err, 'write', key),
      },
      body,
      signal,
    );
  }

  moveNoOverwrite(from: string, to: string, opts: MoveOptions = {}): Promise<MoveOutcome> {
    return this.mover.moveNoOverwrite(from, to, opts);
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
