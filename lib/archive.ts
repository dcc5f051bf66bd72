// Archiving (spec §8): only files that a committed load read move, from streams/ to the
// archive prefix, never overwriting a different file. Idempotent, so a run that died half-way
// through is finished by the next one.

import type { Lake } from './lake/lake.js';
import { KPI_TABLES, type Warehouse } from './warehouse/warehouse.js';
import { archiveKeys, identity, listStreamFiles, type LakeLayout } from './list.js';
import type { ArchivedFile } from './report.js';
import { MkpiError, isMkpiError } from './errors.js';

export type ArchiveFault = 'after-archive-copy' | 'after-archive-delete';

export interface ArchiveOptions {
  fault?: (point: ArchiveFault) => void | Promise<void>;
  onFile?: (file: ArchivedFile) => void;
}

export async function archiveLoaded(
  lake: Lake,
  warehouse: Warehouse,
  layout: LakeLayout,
  opts: ArchiveOptions = {},
): Promise<ArchivedFile[]> {
  const ledger = new Map((await warehouse.readLedger()).map((e) => [identity(e.fileKey, e.fingerprint), e]));
  const { files } = await listStreamFiles(lake, layout);
  const archived: ArchivedFile[] = [];
  for (const obj of files) {
    const entry = ledger.get(identity(obj.key, obj.fingerprint));
    if (!entry || !KPI_TABLES.every((t) => entry.tables.includes(t))) continue;
    try {
      let to: string | undefined;
      let renamed = false;
      for (const [i, candidate] of archiveKeys(layout, obj.key, obj.fingerprint).entries()) {
        const outcome = await lake.moveNoOverwrite(obj.key, candidate);
        if (outcome === 'moved') {
          await opts.fault?.('after-archive-copy');
          to = candidate;
          renamed = i > 0;
          break;
        }
        const existing = await lake.stat(candidate);
        if (existing && existing.fingerprint === obj.fingerprint && existing.size === obj.size) {
          // A previous run copied it and died before deleting the source.
          await lake.remove(obj.key);
          to = candidate;
          renamed = i > 0;
          break;
        }
      }
      if (to === undefined) {
        throw new MkpiError('MKPI_ARCHIVE_FAILED', `${obj.key}: every archive name is taken by a different file`, {
          details: { file: obj.key },
        });
      }
      await opts.fault?.('after-archive-delete');
      await warehouse.markArchived(entry.fileKey, entry.fingerprint, to);
      const file = { from: obj.key, to, renamed };
      archived.push(file);
      opts.onFile?.(file);
    } catch (err) {
      const cause = isMkpiError(err) ? err : undefined;
      throw new MkpiError(
        'MKPI_ARCHIVE_FAILED',
        `archiving ${obj.key} failed: ${err instanceof Error ? err.message : String(err)}`,
        {
          hint: 'the load is committed; run `musickpi archive` (or the next run) to finish moving the loaded files',
          cause: err,
          details: { file: obj.key, archived, causeCode: cause?.code },
        },
      );
    }
  }
  return archived;
}
