import type { Readable } from 'node:stream';

/** One object of the lake, addressed by its key relative to the lake root ("streams/a.csv"). */
export interface LakeObject {
  key: string;
  size: number;
  /**
   * Identity of the object's content as the store sees it: the ETag on S3,
   * "size:mtimeMs" on a local disk. Two objects with the same key and fingerprint
   * are the same file for the ledger.
   */
  fingerprint: string;
}

/** How to reach an object store (S3 or compatible); a local lake needs none of it. */
export interface LakeConnectOptions {
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
}

/**
 * How another thread reopens a lake: `module` is the URL of a module exporting
 * `reopenLake(uri, options)` (the adapters' reopen.ts). The pipeline hands it to its worker
 * threads without knowing any lake kind.
 */
export interface LakeSpec {
  module: string;
  uri: string;
  s3?: LakeConnectOptions;
}

export type MoveOutcome = 'moved' | 'exists' | 'changed';

export interface MoveOptions {
  /**
   * Only move the source if it is still this version (its fingerprint when it was listed).
   * Checked atomically where the store allows it (S3: CopySourceIfMatch).
   */
  expectFingerprint?: string;
  /**
   * Called once the copy is complete and verified, before the source is deleted, with the
   * copy as the store now describes it (its fingerprint may differ from the source's: on S3 a
   * copy of a multipart or SSE-KMS object gets a new ETag). If it throws, the source stays.
   */
  afterCopy?: (copy: LakeObject) => Promise<void> | void;
}

/**
 * A lake is a root (local folder or s3://bucket/prefix). Keys are always relative to the
 * root and use "/" separators. Implementations: LocalLake, S3Lake.
 */
export interface Lake {
  /** Human-readable root, for reports ("s3://bucket/prefix" or an absolute path). */
  readonly root: string;

  /** Metadata of one object, or undefined when it does not exist. */
  stat(key: string): Promise<LakeObject | undefined>;

  /**
   * Every object whose key starts with `prefix`, following pagination to the end, sorted by key.
   * Objects whose key starts with any of `exclude` are never returned.
   */
  list(prefix: string, exclude?: string[]): Promise<LakeObject[]>;

  /** A stream of the object's bytes; never buffers the whole object. */
  read(key: string, signal?: AbortSignal): Promise<Readable>;

  /**
   * The bytes [start, end) of the object, where the store can serve a part of an object (a
   * local file). Optional: without it, a file is read whole by one reader.
   */
  readRange?(key: string, start: number, end: number, signal?: AbortSignal): Promise<Readable>;

  /** Writes an object from a stream (used for the rejects output). */
  write(key: string, body: Readable, signal?: AbortSignal): Promise<void>;

  /**
   * Moves `from` to `to` without ever overwriting an existing object: copy, verify
   * (size, and ETag where the store has one), then delete the source.
   * Returns 'moved'; 'exists' when `to` already exists; 'changed' when `opts.expectFingerprint`
   * is given and the source is no longer that version (a newer file landed under the same
   * name). Nothing is changed in the last two cases.
   */
  moveNoOverwrite(from: string, to: string, opts?: MoveOptions): Promise<MoveOutcome>;

  /** Deletes one object (no error when it is already gone). */
  remove(key: string): Promise<void>;

  close(): Promise<void>;
}
