// Archiving (spec §8): only files that a committed load read move, from streams/ to the
// archive prefix, never overwriting a different file. A file keeps its path under streams/
// (streams/2024-06-03/x.csv -> <archive>2024-06-03/x.csv, see archiveKeys), so same-named files
// of two folders do not collide. Idempotent, so a run that died half-way through is finished by
// the next one.
//
// Per file: copy (verified by the lake) → record the copy in the ledger (markArchived, with the
// copy's own fingerprint) → delete the source. A crash between any two steps leaves the source
// in streams/ and a complete copy in the archive; the next run recognises that copy as this
// file's (same fingerprint, the fingerprint the ledger recorded, or, failing both, the same
// bytes), records it if need be and deletes the source. The copy's fingerprint is recorded
// because it can differ from the source's: on S3, a copy of a multipart or SSE-KMS object gets
// a new ETag.

import type { Readable } from 'node:stream';

import type { Lake, LakeObject } from '../domain/lake.js';
import { KPI_TABLES } from '../domain/kpi.js';
import { type LedgerEntry } from '../domain/ledger.js';
import { type Warehouse } from '../domain/warehouse.js';
import { FileMatcher, archiveKeys, listStreamFiles } from './plan.js';
import { type LakeLayout } from '../domain/layout.js';
import { MkpiError, isMkpiError } from '../domain/errors.js';

/** One file the archive stage moved. */
export interface ArchivedFile {
  from: string;
  to: string;
  renamed: boolean;
}

/**
 * Test-only fault points of the archive stage, in order: after the listing; per file, after the
 * copy (before the ledger knows it), after the ledger records it (before the source is deleted),
 * after the source is deleted.
 */
export type ArchiveFault = 'after-archive-list' | 'after-archive-copy' | 'after-archive-mark' | 'after-archive-delete';

export interface ArchiveOptions {
  fault?: (point: ArchiveFault) => void | Promise<void>;
  onFile?: (file: ArchivedFile) => void;
  /** A loaded file that was replaced by a newer one of the same name: it stays in streams/. */
  onSkip?: (key: string, reason: string) => void;
  /** Checked between files: an interruption finishes the file in hand, then stops. */
  signal?: AbortSignal;
}

export async function archiveLoaded(
  lake: Lake,
  warehouse: Warehouse,
  layout: LakeLayout,
  opts: ArchiveOptions = {},
): Promise<ArchivedFile[]> {
  const matcher = new FileMatcher(lake, layout, await warehouse.readLedger(), opts.signal);
  const { files } = await listStreamFiles(lake, layout);
  await opts.fault?.('after-archive-list');
  const archived: ArchivedFile[] = [];
  for (const obj of files) {
    // A re-delivered copy of a loaded file matches that file's entry: when the archive already
    // holds the loaded bytes, archiveOne finds them there and only removes the copy.
    const entry = await matcher.match(obj).catch((err: unknown) => {
      throw archiveFailed(obj.key, err, archived);
    });
    if (!entry || !KPI_TABLES.every((t) => entry.tables.includes(t))) continue;
    if (opts.signal?.aborted) {
      throw new MkpiError('MKPI_INTERRUPTED', 'interrupted while archiving', {
        cause: opts.signal.reason,
        details: { archived },
      });
    }
    try {
      const done = await archiveOne(lake, warehouse, layout, obj, entry, opts);
      if (done === 'changed') {
        opts.onSkip?.(
          obj.key,
          'it was replaced by a newer file of the same name after it was listed; the newer file stays for the next run',
        );
        continue;
      }
      await opts.fault?.('after-archive-delete');
      archived.push(done);
      opts.onFile?.(done);
    } catch (err) {
      throw archiveFailed(obj.key, err, archived);
    }
  }
  return archived;
}

function archiveFailed(key: string, err: unknown, archived: ArchivedFile[]): MkpiError {
  const cause = isMkpiError(err) ? err : undefined;
  return new MkpiError('MKPI_ARCHIVE_FAILED', `archiving ${key} failed: ${err instanceof Error ? err.message : String(err)}`, {
    hint: 'the load is committed; run `musickpi archive` (or the next run) to finish moving the loaded files',
    cause: err,
    details: { file: key, archived, causeCode: cause?.code },
  });
}

async function archiveOne(
  lake: Lake,
  warehouse: Warehouse,
  layout: LakeLayout,
  obj: LakeObject,
  entry: LedgerEntry,
  opts: ArchiveOptions,
): Promise<ArchivedFile | 'changed'> {
  for (const [i, candidate] of archiveKeys(layout, obj.key, obj.fingerprint).entries()) {
    const outcome = await lake.moveNoOverwrite(obj.key, candidate, {
      expectFingerprint: obj.fingerprint,
      afterCopy: async (copy) => {
        await opts.fault?.('after-archive-copy');
        await warehouse.markArchived(entry.fileKey, entry.fingerprint, candidate, copy.fingerprint);
        await opts.fault?.('after-archive-mark');
      },
    });
    if (outcome === 'changed') return 'changed';
    if (outcome === 'moved') return { from: obj.key, to: candidate, renamed: i > 0 };

    // The name is taken: by this very file, copied by a run that died before deleting the
    // source, or by a different file (then try the next name).
    const existing = await lake.stat(candidate);
    if (!existing || !(await isCopyOf(lake, obj, entry, existing, opts.signal))) continue;
    if (entry.archivedKey !== candidate || entry.archivedFingerprint !== existing.fingerprint) {
      await warehouse.markArchived(entry.fileKey, entry.fingerprint, candidate, existing.fingerprint);
    }
    // Delete the source only if it is still the version that was loaded and copied.
    const now = await lake.stat(obj.key);
    if (now && now.fingerprint !== obj.fingerprint) return 'changed';
    if (now) await lake.remove(obj.key);
    return { from: obj.key, to: candidate, renamed: i > 0 };
  }
  throw new MkpiError('MKPI_ARCHIVE_FAILED', `${obj.key}: every archive name is taken by a different file`, {
    details: { file: obj.key },
  });
}

/**
 * Whether `existing` (in the archive) is a copy of `obj` (the loaded source): the copy the
 * ledger recorded for that key, or else the same bytes. Never true for a different file: an
 * equal fingerprint is not enough, since on a local disk two files of one size written in the
 * same millisecond share one (this path is rare, and deleting a source is not undone).
 */
export async function isCopyOf(
  lake: Lake,
  obj: LakeObject,
  entry: LedgerEntry,
  existing: LakeObject,
  signal?: AbortSignal,
): Promise<boolean> {
  if (existing.size !== obj.size) return false;
  if (entry.archivedKey === existing.key && entry.archivedFingerprint === existing.fingerprint) return true;
  // A copy whose store gave it a new fingerprint, made by a run that died before recording it.
  return sameContent(lake, obj.key, existing.key, signal);
}

/** Byte-for-byte comparison of two objects, streaming both. */
export async function sameContent(lake: Lake, a: string, b: string, signal?: AbortSignal): Promise<boolean> {
  const opened = await Promise.allSettled([lake.read(a, signal), lake.read(b, signal)]);
  const failed = opened.find((o) => o.status === 'rejected');
  if (failed) {
    // Close the one that did open before giving up.
    for (const o of opened) if (o.status === 'fulfilled') o.value.destroy();
    throw failed.reason;
  }
  const [ra, rb] = opened.map((o) => (o as PromiseFulfilledResult<Readable>).value) as [Readable, Readable];
  const ia = ra[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const ib = rb[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let bufA = Buffer.alloc(0);
  let bufB = Buffer.alloc(0);
  let endA = false;
  let endB = false;
  try {
    for (;;) {
      if (bufA.length === 0 && !endA) {
        const n = await ia.next();
        if (n.done) endA = true;
        else bufA = Buffer.from(n.value);
      }
      if (bufB.length === 0 && !endB) {
        const n = await ib.next();
        if (n.done) endB = true;
        else bufB = Buffer.from(n.value);
      }
      if (bufA.length === 0 && bufB.length === 0) {
        if (endA && endB) return true;
        continue;
      }
      if (bufA.length === 0 || bufB.length === 0) {
        if ((bufA.length === 0 && endA) || (bufB.length === 0 && endB)) return false;
        continue;
      }
      const n = Math.min(bufA.length, bufB.length);
      if (!bufA.subarray(0, n).equals(bufB.subarray(0, n))) return false;
      bufA = bufA.subarray(n);
      bufB = bufB.subarray(n);
    }
  } finally {
    ra.destroy();
    rb.destroy();
  }
}
