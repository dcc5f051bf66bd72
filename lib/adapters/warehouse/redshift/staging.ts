// The S3 side of a Redshift load: each table's rows as gzip CSV objects under a directory of
// their own below the staging prefix, and a manifest naming exactly those objects (a key
// prefix would also load look-alike keys). The objects go once the load commits or fails; a
// killed run's are swept by a later one.
//
// CSV for COPY … FORMAT AS CSV NULL AS '\000': every string is quoted (an empty string is "",
// never an empty field, and a value that looks like a marker stays a string), and NULL is a
// field holding only NUL (U+0000), the marker AWS documents for CSV data. No value musickpi
// writes can hold NUL (the contract refuses it in every string it stores), so none is mistaken
// for a NULL, whatever Redshift makes of quotes around it.

import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import { DeleteObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { MkpiError, redact } from '../../../domain/errors.js';
import { mapS3Error } from '../../lake/s3/errors.js';

const gzip = promisify(gzipCb);

export interface StagingS3Options {
  /** S3-compatible endpoint (a test server, MinIO); path-style and no flexible checksums by default then. */
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  /** Tests only: fixed credentials instead of the SDK's default chain. */
  credentials?: S3ClientConfig['credentials'];
  /** Tests only: a client of their own (a mock, or one pointed at a test server). */
  client?: S3Client;
}

export interface StagingOptions {
  /** s3://bucket/prefix/ */
  uri: string;
  s3?: StagingS3Options;
}

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Bucket and key prefix ("" or ending with "/") of a staging URI. Spliced into COPY: kept to safe characters. */
export function parseStagingUri(uri: string): { bucket: string; keyPrefix: string; root: string } {
  const m = /^s3:\/\/([^/]*)(?:\/(.*))?$/.exec(uri.trim());
  const hint = 'give --staging s3://bucket/prefix/ (a prefix of its own, not under the lake’s streams/)';
  if (!m) throw new MkpiError('MKPI_CONFIG', `the staging location ${JSON.stringify(redact(uri))} is not an s3:// URI`, { hint });
  const bucket = m[1];
  if (!BUCKET.test(bucket))
    throw new MkpiError('MKPI_CONFIG', `the staging bucket ${JSON.stringify(bucket)} is not a valid bucket name`, { hint });
  const prefix = (m[2] ?? '').replace(/^\/+/, '').replace(/\/*$/, '');
  if (prefix !== '') {
    if (!/^[A-Za-z0-9!_.*()/+=@,$&;:~ -]+$/.test(prefix) || prefix.split('/').some((s) => s === '' || s === '.' || s === '..')) {
      throw new MkpiError(
        'MKPI_CONFIG',
        `the staging prefix ${JSON.stringify(prefix)} has characters or segments musickpi does not put into COPY`,
        {
          hint: 'use letters, digits and - _ . / in the staging prefix',
        },
      );
    }
  }
  const keyPrefix = prefix === '' ? '' : `${prefix}/`;
  return { bucket, keyPrefix, root: `s3://${bucket}/${keyPrefix}` };
}

/** One CSV field for COPY … CSV NULL AS '\000' (see the top of this file). */
export function stageField(value: unknown): string {
  if (value === null || value === undefined) return '\u0000';
  if (typeof value === 'number') return String(value); // shortest round-trip; NaN/Infinity as float8 spells them
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'boolean') return value ? 't' : 'f';
  const s = typeof value === 'string' ? value : JSON.stringify(value);
  if (s.includes('\u0000')) {
    throw new MkpiError(
      'MKPI_INTERNAL',
      `a value to stage contains U+0000, which marks NULL in the stage files: ${JSON.stringify(s.slice(0, 80))}`,
    );
  }
  return `"${s.replaceAll('"', '""')}"`;
}

/** Rows as CSV lines, in column order, each newline-terminated. */
export function* stageLines<R>(rows: Iterable<R>, columns: readonly (keyof R & string)[]): Generator<string> {
  for (const row of rows) {
    let line = '';
    for (let i = 0; i < columns.length; i++) {
      if (i > 0) line += ',';
      line += stageField(row[columns[i]]);
    }
    yield line + '\n';
  }
}

/** The manifest COPY … MANIFEST reads: exactly these objects, each required. */
export function manifestJson(urls: string[]): string {
  return JSON.stringify({ entries: urls.map((url) => ({ url, mandatory: true })) });
}

/** A stage directory's name: the run, the token of the warehouse that wrote it (its lease's), a counter. */
export function stageDirName(runId: string, token: string, seq: number): string {
  const run =
    runId
      .replace(/[^A-Za-z0-9-]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 100) || 'run';
  return `${run}-${token}-${seq}`;
}

const STAGE_KEY = /^(.+)-([0-9a-f]{16})-(\d+)\/[^/]+$/;

/** The token of a key below the staging prefix when it is a stage object of musickpi; undefined otherwise. */
export function stageTokenOf(relativeKey: string): string | undefined {
  return STAGE_KEY.exec(relativeKey)?.[2];
}

export interface StagedTable {
  manifestUrl: string;
  objects: number;
}

export class Staging {
  readonly bucket: string;
  readonly keyPrefix: string;
  /** s3://bucket/prefix/ */
  readonly root: string;
  readonly client: S3Client;
  private readonly endpoint: string | undefined;
  private readonly checksumWhenRequired: boolean;
  /** Uncompressed characters per object: COPY reads the objects of a manifest in parallel. */
  readonly objectChars: number;

  constructor(opts: StagingOptions, objectChars = 32 * 1024 * 1024) {
    const { bucket, keyPrefix, root } = parseStagingUri(opts.uri);
    this.bucket = bucket;
    this.keyPrefix = keyPrefix;
    this.root = root;
    this.objectChars = objectChars;
    const s3 = opts.s3 ?? {};
    const custom = s3.endpoint !== undefined && s3.endpoint !== '';
    this.endpoint = s3.endpoint;
    this.checksumWhenRequired = custom;
    const region = s3.region || (custom ? 'us-east-1' : undefined);
    const checksums = custom ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED';
    // As for the lake: credentials from the SDK's default chain only (tests may pass their own).
    this.client =
      s3.client ??
      new S3Client({
        ...(custom ? { endpoint: s3.endpoint } : {}),
        ...(region ? { region } : {}),
        ...(s3.credentials ? { credentials: s3.credentials } : {}),
        followRegionRedirects: !custom,
        forcePathStyle: s3.forcePathStyle ?? custom,
        maxAttempts: 5,
        requestChecksumCalculation: checksums,
        responseChecksumValidation: checksums,
      });
  }

  url(key: string): string {
    return `s3://${this.bucket}/${key}`;
  }

  private fail(err: unknown, action: string, key: string): MkpiError {
    return mapS3Error(err, action, this.url(key), this.endpoint);
  }

  private async put(key: string, body: Buffer | string, keys: string[]): Promise<void> {
    // Recorded first: an upload that fails half-way may still have created the object.
    keys.push(key);
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body }));
    } catch (err) {
      throw this.fail(err, 'writing stage file', key);
    }
  }

  /**
   * Writes one table's rows under `dir` and the manifest naming them; `keys` collects every key
   * written (for removal). `onFirstObject` once the first object is stored. No rows, no objects.
   */
  async writeTable<R>(
    dir: string,
    table: string,
    rows: Iterable<R>,
    columns: readonly (keyof R & string)[],
    keys: string[],
    onFirstObject?: () => Promise<void>,
  ): Promise<StagedTable | undefined> {
    const urls: string[] = [];
    let parts: string[] = [];
    let chars = 0;
    const flush = async () => {
      const key = `${this.keyPrefix}${dir}/${table}-${String(urls.length).padStart(4, '0')}.csv.gz`;
      const body = await gzip(Buffer.from(parts.join(''), 'utf8'));
      parts = [];
      chars = 0;
      await this.put(key, body, keys);
      urls.push(this.url(key));
      if (urls.length === 1) await onFirstObject?.();
    };
    for (const line of stageLines(rows, columns)) {
      parts.push(line);
      chars += line.length;
      if (chars >= this.objectChars) await flush();
    }
    if (chars > 0) await flush();
    if (urls.length === 0) return undefined;
    const manifestKey = `${this.keyPrefix}${dir}/${table}.manifest`;
    await this.put(manifestKey, manifestJson(urls), keys);
    return { manifestUrl: this.url(manifestKey), objects: urls.length };
  }

  /** A manifest naming exactly `urls` under `dir`; its key joins `keys` (for removal). Returns its s3:// URL. */
  async writeManifest(dir: string, name: string, urls: string[], keys: string[]): Promise<string> {
    const key = `${this.keyPrefix}${dir}/${name}.manifest`;
    await this.put(key, manifestJson(urls), keys);
    return this.url(key);
  }

  /**
   * Deletes the keys and returns those that could not be deleted; failures are told to `warn`,
   * never thrown (a later attempt, or the sweep of a later run, removes what is left).
   */
  async remove(keys: readonly string[], warn?: (l: string) => void): Promise<string[]> {
    const left: string[] = [];
    for (const key of keys) {
      try {
        await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
      } catch (err) {
        left.push(key);
        warn?.(`could not remove the stage file ${this.url(key)}: ${this.fail(err, 'removing', key).message}`);
      }
    }
    return left;
  }

  /**
   * Removes stage objects left by earlier loads: those written under one of `tokens` (a lease
   * this run took over from a dead holder) at once, any other not written under `own` once
   * older than `olderThanMs`. Keys that are not stage objects of musickpi are left alone.
   * Returns how many were removed.
   */
  async sweep(opts: {
    own: string;
    tokens: ReadonlySet<string>;
    olderThanMs: number;
    now: number;
    warn?: (l: string) => void;
  }): Promise<number> {
    const stale: string[] = [];
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.keyPrefix, ContinuationToken: token }));
      } catch (err) {
        opts.warn?.(`could not list the staging prefix ${this.root} for leftovers: ${this.fail(err, 'listing', this.keyPrefix).message}`);
        return 0;
      }
      for (const obj of page.Contents ?? []) {
        if (!obj.Key) continue;
        const t = stageTokenOf(obj.Key.slice(this.keyPrefix.length));
        if (t === undefined || t === opts.own) continue;
        const modified = obj.LastModified?.getTime();
        if (opts.tokens.has(t) || (modified !== undefined && opts.now - modified > opts.olderThanMs)) stale.push(obj.Key);
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    const left = await this.remove(stale, opts.warn);
    return stale.length - left.length;
  }
}
