// Listing the lake's stream files, and deciding from the ledger which of them a run must
// read: files not yet loaded into every requested table (pending), and, for late files
// (spec §9), already-loaded files that carry a date being recomputed.

import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import type { Lake, LakeObject } from './lake/lake.js';
import { MkpiError } from './errors.js';
import type { KpiTable, LedgerEntry } from './warehouse/warehouse.js';

export interface LakeLayout {
  songs: string;
  users: string;
  /** Prefix of new stream files, with a trailing '/'. */
  streams: string;
  /** Prefix of archived stream files, with a trailing '/'. */
  archive: string;
}

export const DEFAULT_LAYOUT: LakeLayout = {
  songs: 'songs.csv',
  users: 'users.csv',
  streams: 'streams/',
  archive: 'streams/archived/',
};

export function normalisePrefix(p: string): string {
  const s = p.replace(/^\.?\/+/, '').replace(/\/+$/, '');
  return s === '' ? '' : s + '/';
}

export interface StreamListing {
  files: LakeObject[];
  /** Keys under the streams prefix that are not stream files (nested folders, other extensions). */
  ignored: string[];
}

/**
 * Stream files are the `*.csv` objects directly under the streams prefix (spec §1). The
 * archive prefix is excluded by the lake itself, so it is never picked up as new input.
 */
export async function listStreamFiles(lake: Lake, layout: LakeLayout): Promise<StreamListing> {
  const all = await lake.list(layout.streams, [layout.archive]);
  const files: LakeObject[] = [];
  const ignored: string[] = [];
  for (const obj of all) {
    const rest = obj.key.slice(layout.streams.length);
    if (!rest.includes('/') && rest.toLowerCase().endsWith('.csv')) files.push(obj);
    else ignored.push(obj.key);
  }
  return { files, ignored };
}

export function identity(key: string, fingerprint: string): string {
  return key + '\u0000' + fingerprint;
}

export interface PendingFile {
  obj: LakeObject;
  entry: LedgerEntry | undefined;
  /** The requested tables this file has not been loaded into yet. */
  missing: KpiTable[];
}

export interface Plan {
  pending: PendingFile[];
  /** Files still in streams/ that are loaded into every requested table. */
  alreadyLoaded: { obj: LakeObject; entry: LedgerEntry }[];
}

export function planPending(files: LakeObject[], ledger: LedgerEntry[], kpis: readonly KpiTable[]): Plan {
  const byId = new Map(ledger.map((e) => [identity(e.fileKey, e.fingerprint), e]));
  const plan: Plan = { pending: [], alreadyLoaded: [] };
  for (const obj of files) {
    const entry = byId.get(identity(obj.key, obj.fingerprint));
    const missing = kpis.filter((t) => !entry?.tables.includes(t));
    if (missing.length > 0) plan.pending.push({ obj, entry, missing });
    else plan.alreadyLoaded.push({ obj, entry: entry! });
  }
  return plan;
}

/** Ledger entries, other than the pending files, that carry any of `dates`: they must be read again. */
export function filesToReread(ledger: LedgerEntry[], pending: PendingFile[], dates: ReadonlySet<string>): LedgerEntry[] {
  const skip = new Set(pending.map((p) => identity(p.obj.key, p.obj.fingerprint)));
  return ledger.filter((e) => !skip.has(identity(e.fileKey, e.fingerprint)) && e.dates.some((d) => dates.has(d)));
}

/** Where archive puts a file: same name, or a name derived from its fingerprint when that is taken by another file. */
export function archiveKeys(layout: LakeLayout, key: string, fingerprint: string): [string, string] {
  const base = posix.basename(key);
  const ext = posix.extname(base);
  const stem = base.slice(0, base.length - ext.length);
  const tag = createHash('sha256').update(fingerprint).digest('hex').slice(0, 10);
  return [layout.archive + base, `${layout.archive}${stem}~${tag}${ext}`];
}

/**
 * Whether `obj` is the file `entry` records: the same fingerprint, or, at the key the ledger
 * says archive put it, the copy's fingerprint recorded then (a copy can get a new one: on S3,
 * multipart and SSE-KMS objects do). Ledgers from before that fingerprint was recorded have only
 * the size to check the recorded archive key against.
 */
export function isLedgerFile(obj: LakeObject, entry: LedgerEntry): boolean {
  if (obj.fingerprint === entry.fingerprint) return true;
  if (obj.key !== entry.archivedKey || obj.size !== entry.size) return false;
  return entry.archivedFingerprint ? obj.fingerprint === entry.archivedFingerprint : true;
}

/** Finds a loaded file wherever it is now: where the ledger says, still in streams/, or in the archive. */
export async function locate(lake: Lake, layout: LakeLayout, entry: LedgerEntry): Promise<LakeObject> {
  const candidates = [entry.archivedKey, entry.fileKey, ...archiveKeys(layout, entry.fileKey, entry.fingerprint)];
  const tried = new Set<string>();
  for (const key of candidates) {
    if (!key || tried.has(key)) continue;
    tried.add(key);
    const obj = await lake.stat(key);
    if (obj && isLedgerFile(obj, entry)) return obj;
  }
  throw new MkpiError('MKPI_LEDGER_FILE_MISSING', `${entry.fileKey} was loaded earlier but is no longer in the lake`, {
    hint: `its dates (${entry.dates.join(', ')}) need it to be recomputed; restore it to ${layout.streams} or ${layout.archive}`,
    details: { file: entry.fileKey, fingerprint: entry.fingerprint },
  });
}

