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

  /** Writes an object from a stream (used for the rejects output). */
  write(key: string, body: Readable, signal?: AbortSignal): Promise<void>;

  /**
   * Moves `from` to `to` without ever overwriting an existing object: copy, verify
   * (size, and ETag where the store has one), then delete the source.
   * Returns 'moved', or 'exists' when `to` already exists (nothing is changed then).
   */
  moveNoOverwrite(from: string, to: string): Promise<'moved' | 'exists'>;

  /** Deletes one object (no error when it is already gone). */
  remove(key: string): Promise<void>;

  close(): Promise<void>;
}
