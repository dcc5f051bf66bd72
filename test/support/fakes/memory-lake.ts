// A lake in memory that keeps the Lake port's promises (lib/domain/lake.ts) the way the real
// adapters do: sorted listings that never return an excluded prefix, fingerprints that change on
// every write (as "size:mtime" does on a disk), moves that never overwrite, check the source's
// version and call afterCopy between the copy and the delete, reads that stream a snapshot of the
// bytes and stop on an abort. Any operation can be told to fail, for a key or for all.

import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';

import { MkpiError } from '../../../lib/domain/errors.js';
import type { Lake, LakeObject, MoveOptions, MoveOutcome } from '../../../lib/domain/lake.js';
import { assertSafeKey, compareKeys } from '../../../lib/adapters/lake/keys.js';
import { discard } from '../../../lib/adapters/lake/streams.js';

/**
 * Operations a fault can be injected into. 'mid-read' fails the stream after its first chunk;
 * 'move-delete' fails a move after the copy and afterCopy, when the source is to be deleted
 * (the copy stays, as it does on S3 and on disk).
 */
export type LakeOp = 'stat' | 'list' | 'read' | 'mid-read' | 'write' | 'move' | 'move-delete' | 'remove';

/** Which keys a fault applies to (for 'list', the prefix; for moves, the source key). */
export type KeyMatch = string | RegExp | ((key: string) => boolean);

export interface FaultOptions {
  /** What to throw; by default an MkpiError of the code the real adapters use for a store that fails. */
  error?: Error | ((key: string) => Error);
  /** How many times it fails before it works again; forever by default (a store that stays down). */
  times?: number;
}

export interface MemoryLakeOptions {
  root?: string;
  /**
   * The fingerprint a move's copy gets: 'keep' (a hard link on disk, a copy of a single-part S3
   * object) or 'new' (what AWS gives a copy of a multipart or SSE-KMS object).
   */
  copies?: 'keep' | 'new';
  /**
   * How writes are fingerprinted: 'clock' (default) a new fingerprint on every write, as
   * "size:mtime" on a disk; 'content-md5' the MD5 of the bytes, as S3 gives a single-part upload
   * (the same bytes written again keep their ETag; see putMultipart for the other kind).
   */
  fingerprints?: 'clock' | 'content-md5';
  /** Sizes of the chunks a read hands out; read n uses chunkSizes[n % length]. Default: 64 KiB. */
  chunkSizes?: number[];
}

interface StoredObject {
  body: Buffer;
  fingerprint: string;
}

interface Fault {
  op: LakeOp;
  match: KeyMatch | undefined;
  error: FaultOptions['error'];
  left: number;
}

function matches(match: KeyMatch | undefined, key: string): boolean {
  if (match === undefined) return true;
  if (typeof match === 'string') return match === key;
  if (match instanceof RegExp) return match.test(key);
  return match(key);
}

function interrupted(signal: AbortSignal, what: string): MkpiError {
  return new MkpiError('MKPI_INTERRUPTED', `${what} interrupted`, { cause: signal.reason });
}

export class MemoryLake implements Lake {
  readonly root: string;
  /** Keys of every read opened, in order. */
  readonly reads: string[] = [];
  private readonly objects = new Map<string, StoredObject>();
  private readonly faults: Fault[] = [];
  private readonly copies: 'keep' | 'new';
  private readonly fingerprints: 'clock' | 'content-md5';
  private readonly chunkSizes: number[];
  /** A clock that ticks on every write: what makes each write's fingerprint new. */
  private clock = 0;
  closed = false;

  constructor(opts: MemoryLakeOptions = {}) {
    this.root = opts.root ?? 'memory://lake';
    this.copies = opts.copies ?? 'keep';
    this.fingerprints = opts.fingerprints ?? 'clock';
    this.chunkSizes = opts.chunkSizes && opts.chunkSizes.length > 0 ? opts.chunkSizes : [64 * 1024];
    if (this.chunkSizes.some((n) => !(Number.isInteger(n) && n > 0))) throw new Error('chunk sizes must be positive integers');
  }

  // --- what tests use to arrange and inspect the lake (no faults apply) -------------------------

  /** Stores an object, as an upload would; returns its new fingerprint (or the one given). */
  put(key: string, body: string | Buffer, opts: { fingerprint?: string } = {}): string {
    assertSafeKey(key);
    const buf = Buffer.from(body);
    const fingerprint = opts.fingerprint ?? this.nextFingerprint(buf);
    this.objects.set(key, { body: buf, fingerprint });
    return fingerprint;
  }

  /**
   * The bytes uploaded in `parts` parts: S3 gives them the ETag "MD5 of the parts' MD5s-N",
   * which is not the MD5 of the content.
   */
  putMultipart(key: string, body: string | Buffer, parts = 2): string {
    const buf = Buffer.from(body);
    const size = Math.max(1, Math.ceil(buf.length / parts));
    const all = createHash('md5');
    for (let i = 0; i < parts; i++)
      all.update(
        createHash('md5')
          .update(buf.subarray(i * size, (i + 1) * size))
          .digest(),
      );
    return this.put(key, buf, { fingerprint: `${all.digest('hex')}-${parts}` });
  }

  /** Removes an object behind the pipeline's back (a user deleting a file). */
  delete(key: string): void {
    this.objects.delete(key);
  }

  has(key: string): boolean {
    return this.objects.has(key);
  }

  text(key: string): string | undefined {
    return this.objects.get(key)?.body.toString('utf8');
  }

  bytes(key: string): Buffer | undefined {
    const o = this.objects.get(key);
    return o && Buffer.from(o.body);
  }

  fingerprintOf(key: string): string | undefined {
    return this.objects.get(key)?.fingerprint;
  }

  /** Every key (under `prefix`), sorted as a listing sorts them. */
  keys(prefix = ''): string[] {
    return [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort(compareKeys);
  }

  /** key → text of every object (under `prefix`). */
  contents(prefix = ''): Record<string, string> {
    return Object.fromEntries(this.keys(prefix).map((k) => [k, this.text(k)!]));
  }

  /** Makes `op` fail (for the keys `key` matches); chainable. */
  failOn(op: LakeOp, key?: KeyMatch, opts: FaultOptions = {}): this {
    this.faults.push({ op, match: key, error: opts.error, left: opts.times ?? Infinity });
    return this;
  }

  /** Every injected fault is gone. */
  heal(): this {
    this.faults.length = 0;
    return this;
  }

  // --- the Lake port --------------------------------------------------------------------------

  async stat(key: string): Promise<LakeObject | undefined> {
    assertSafeKey(key);
    this.inject('stat', key);
    return this.describe(key);
  }

  async list(prefix: string, exclude: string[] = []): Promise<LakeObject[]> {
    if (prefix !== '') assertSafeKey(prefix, 'prefix');
    this.inject('list', prefix);
    return this.keys(prefix)
      .filter((k) => !exclude.some((e) => k.startsWith(e)))
      .map((k) => this.describe(k)!);
  }

  async read(key: string, signal?: AbortSignal): Promise<Readable> {
    assertSafeKey(key);
    if (signal?.aborted) throw interrupted(signal, `read ${key}`);
    this.inject('read', key);
    const o = this.objects.get(key);
    if (!o) throw new MkpiError('MKPI_NO_INPUT', `read: ${this.root}/${key} does not exist`);
    // The bytes as they are now: a later write under the key is another version (S3's GET, an
    // open file descriptor after a rename).
    const body = o.body;
    const size = this.chunkSizes[this.reads.length % this.chunkSizes.length];
    this.reads.push(key);
    const midRead = this.takeFault('mid-read', key);
    async function* chunks(): AsyncGenerator<Buffer> {
      for (let i = 0; i < body.length; i += size) {
        if (i > 0 && midRead) throw midRead;
        yield body.subarray(i, i + size);
      }
      if (midRead) throw midRead;
    }
    // Object mode with a high-water mark of one: each chunk reaches the reader as cut.
    const stream = Readable.from(chunks(), { objectMode: true, highWaterMark: 1 });
    if (signal) {
      const onAbort = (): void => {
        stream.destroy(interrupted(signal, `read ${key}`));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      stream.once('close', () => signal.removeEventListener('abort', onAbort));
    }
    return stream;
  }

  async write(key: string, body: Readable, signal?: AbortSignal): Promise<void> {
    assertSafeKey(key);
    if (signal?.aborted) {
      discard(body);
      throw interrupted(signal, `write ${key}`);
    }
    try {
      this.inject('write', key);
    } catch (err) {
      discard(body);
      throw err;
    }
    const parts: Buffer[] = [];
    for await (const chunk of body) {
      if (signal?.aborted) {
        discard(body);
        throw interrupted(signal, `write ${key}`);
      }
      parts.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string));
    }
    // Published whole or not at all, as the adapters do (rename on disk, one PUT on S3).
    const buf = Buffer.concat(parts);
    this.objects.set(key, { body: buf, fingerprint: this.nextFingerprint(buf) });
  }

  async moveNoOverwrite(from: string, to: string, opts: MoveOptions = {}): Promise<MoveOutcome> {
    assertSafeKey(from, 'source key');
    assertSafeKey(to, 'target key');
    this.inject('move', from);
    if (this.objects.has(to)) return 'exists';
    const src = this.objects.get(from);
    if (!src) throw new MkpiError('MKPI_NO_INPUT', `archive: ${this.root}/${from} does not exist`);
    if (opts.expectFingerprint !== undefined && src.fingerprint !== opts.expectFingerprint) return 'changed';
    const copy: StoredObject = {
      body: src.body,
      fingerprint: this.copies === 'keep' ? src.fingerprint : this.copyFingerprint(src.body),
    };
    this.objects.set(to, copy);
    // A throw here leaves the complete copy and the source, as on disk and on S3.
    await opts.afterCopy?.({ key: to, size: copy.body.length, fingerprint: copy.fingerprint });
    const failed = this.takeFault('move-delete', from);
    if (failed) throw failed;
    // Deleted by key, as both adapters do.
    this.objects.delete(from);
    return 'moved';
  }

  async remove(key: string): Promise<void> {
    assertSafeKey(key);
    this.inject('remove', key);
    this.objects.delete(key);
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  // --- internals ------------------------------------------------------------------------------

  private describe(key: string): LakeObject | undefined {
    const o = this.objects.get(key);
    return o && { key, size: o.body.length, fingerprint: o.fingerprint };
  }

  private nextFingerprint(body: Buffer): string {
    if (this.fingerprints === 'content-md5') return createHash('md5').update(body).digest('hex');
    return `${body.length}:${++this.clock}`;
  }

  /** What AWS gives a copy of a multipart or SSE-KMS object: an ETag that is no content hash. */
  private copyFingerprint(body: Buffer): string {
    return `${createHash('md5').update(`copy ${++this.clock}`).digest('hex')}-${Math.max(1, Math.ceil(body.length / (8 << 20)))}`;
  }

  /** The error of the first live fault of `op` matching `key`, counting it as used. */
  private takeFault(op: LakeOp, key: string): Error | undefined {
    const f = this.faults.find((x) => x.op === op && x.left > 0 && matches(x.match, key));
    if (!f) return undefined;
    f.left--;
    if (typeof f.error === 'function') return f.error(key);
    if (f.error) return f.error;
    const code = op === 'move-delete' ? 'MKPI_ARCHIVE_FAILED' : 'MKPI_LAKE_UNAVAILABLE';
    return new MkpiError(code, `memory lake: injected failure of ${op} ${key}`, { details: { op, key } });
  }

  private inject(op: LakeOp, key: string): void {
    const err = this.takeFault(op, key);
    if (err) throw err;
  }
}
