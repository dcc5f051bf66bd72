// Listing the lake's stream files, and deciding from the ledger which of them a run must
// read: files not yet loaded into every requested table (pending), and, for late files
// (spec §9), already-loaded files that carry a date being recomputed.

import { excludedPrefixes, isStreamFileName, type LakeLayout } from '../domain/layout.js';
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Lake, LakeObject } from '../domain/lake.js';
import { MkpiError } from '../domain/errors.js';
import { KPI_TABLES, type KpiTable } from '../domain/kpi.js';
import type { LedgerEntry } from '../domain/ledger.js';

export interface StreamListing {
  files: LakeObject[];
  /**
   * Keys under the streams prefix that are not read: other extensions, files in sub-folders
   * (all of them, unless the layout is recursive; in hidden folders, even then).
   */
  ignored: string[];
}

/**
 * Stream files (contract §1.2) are the `*.csv` and `*.csv.gz` objects directly under the streams
 * prefix, or, when the layout is recursive, at any depth under it. The archive and retracted
 * prefixes are excluded by the lake itself, so they are never picked up as new input.
 */
export async function listStreamFiles(lake: Lake, layout: LakeLayout): Promise<StreamListing> {
  const all = await lake.list(layout.streams, excludedPrefixes(layout));
  const files: LakeObject[] = [];
  const ignored: string[] = [];
  for (const obj of all) {
    const folders = obj.key.slice(layout.streams.length).split('/');
    const name = folders.pop()!;
    const inScope = folders.length === 0 || (layout.recursive === true && !folders.some(isHiddenFolder));
    if (inScope && isStreamFileName(name)) files.push(obj);
    else ignored.push(obj.key);
  }
  return { files, ignored };
}

/**
 * Folders that writers use for work in progress or metadata (Spark's `_temporary/`, `.staging/`):
 * files in them are not (yet) data, and a file read there would count again once it is
 * renamed to its final key.
 */
function isHiddenFolder(name: string): boolean {
  return name.startsWith('.') || name.startsWith('_');
}

export function identity(key: string, fingerprint: string): string {
  return key + '\u0000' + fingerprint;
}

/** SHA-256 (hex) of an object's bytes, streamed. */
export async function hashObject(lake: Lake, key: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  const body = await lake.read(key, signal);
  await pipeline(
    body,
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        cb();
      },
    }),
    { signal },
  );
  return hash.digest('hex');
}

/**
 * Which ledger entry, if any, a listed object is. A file is the same file when its key and its
 * content are the same (docs/contract.md, "What identifies a file"). The fingerprint (size:mtime
 * on disk, the ETag on S3) settles the common case for free; only an object whose key the ledger
 * holds under another fingerprint of the same size is hashed (a `cp`, a `touch`, a multipart
 * re-upload), and compared with the content hash the ledger recorded when it read that file.
 * Ledger rows from before content hashes were recorded are compared with their copy in the lake.
 */
export class FileMatcher {
  private readonly byId: Map<string, LedgerEntry>;
  private readonly byKey = new Map<string, LedgerEntry[]>();
  private readonly hashes = new Map<string, Promise<string>>();

  constructor(
    private readonly lake: Lake,
    private readonly layout: LakeLayout,
    ledger: readonly LedgerEntry[],
    private readonly signal?: AbortSignal,
  ) {
    this.byId = new Map(ledger.map((e) => [identity(e.fileKey, e.fingerprint), e]));
    for (const e of ledger) {
      const list = this.byKey.get(e.fileKey);
      if (list) list.push(e);
      else this.byKey.set(e.fileKey, [e]);
    }
  }

  /** The object's SHA-256, computed at most once per (key, fingerprint). */
  hashOf(obj: LakeObject): Promise<string> {
    const id = identity(obj.key, obj.fingerprint);
    let h = this.hashes.get(id);
    if (h === undefined) {
      h = hashObject(this.lake, obj.key, this.signal);
      this.hashes.set(id, h);
    }
    return h;
  }

  /** Records a hash learned elsewhere (a scan hashes what it reads). */
  remember(obj: LakeObject, hash: string): void {
    if (hash) this.hashes.set(identity(obj.key, obj.fingerprint), Promise.resolve(hash));
  }

  async match(obj: LakeObject): Promise<LedgerEntry | undefined> {
    const exact = this.byId.get(identity(obj.key, obj.fingerprint));
    if (exact) return exact;
    const sameKey = (this.byKey.get(obj.key) ?? []).filter((e) => e.size === obj.size);
    if (sameKey.length === 0) return undefined;
    const hash = await this.hashOf(obj);
    const known = sameKey.find((e) => e.contentHash === hash);
    if (known) return known;
    for (const e of sameKey) {
      if (e.contentHash) continue;
      const copy = await locate(this.lake, this.layout, e).catch(() => undefined);
      if (copy && copy.key !== obj.key && (await this.hashOf(copy)) === hash) return e;
    }
    return undefined;
  }
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

export async function planPending(files: LakeObject[], matcher: FileMatcher, kpis: readonly KpiTable[]): Promise<Plan> {
  const plan: Plan = { pending: [], alreadyLoaded: [] };
  for (const obj of files) {
    const entry = await matcher.match(obj);
    const missing = kpis.filter((t) => !entry?.tables.includes(t));
    if (missing.length > 0) plan.pending.push({ obj, entry, missing });
    else plan.alreadyLoaded.push({ obj, entry: entry! });
  }
  return plan;
}

/** The ledger row a pending file is recorded under: its entry's, when the ledger knows the file already. */
export function ledgerIdentity(p: PendingFile): string {
  return p.entry ? identity(p.entry.fileKey, p.entry.fingerprint) : identity(p.obj.key, p.obj.fingerprint);
}

/** Ledger entries, other than the pending files, that carry any of `dates`: they must be read again. */
export function filesToReread(ledger: LedgerEntry[], pending: PendingFile[], dates: ReadonlySet<string>): LedgerEntry[] {
  const skip = new Set(pending.map(ledgerIdentity));
  return ledger.filter((e) => !skip.has(identity(e.fileKey, e.fingerprint)) && e.dates.some((d) => dates.has(d)));
}

export interface TwinGroup {
  /** The row that stays: the earliest load. */
  keep: LedgerEntry;
  /** Second rows for the same file, to be deleted and their dates recomputed. */
  twins: LedgerEntry[];
}

/**
 * Ledger rows that stand for one file twice: the same key and the same content hash, or the
 * same key archived to the same object (before content hashes, a re-delivered identical copy
 * was loaded again, and archive then found its bytes already archived and deleted it). Every
 * date of such a row was counted twice.
 */
export function findTwins(ledger: readonly LedgerEntry[]): TwinGroup[] {
  const groups: TwinGroup[] = [];
  const byKey = new Map<string, LedgerEntry[]>();
  for (const e of ledger) {
    const list = byKey.get(e.fileKey);
    if (list) list.push(e);
    else byKey.set(e.fileKey, [e]);
  }
  for (const entries of byKey.values()) {
    if (entries.length < 2) continue;
    const sorted = [...entries].sort((a, b) => (a.runId < b.runId ? -1 : a.runId > b.runId ? 1 : a.fingerprint < b.fingerprint ? -1 : 1));
    const taken = new Set<LedgerEntry>();
    for (const keep of sorted) {
      if (taken.has(keep)) continue;
      const twins = sorted.filter(
        (e) =>
          e !== keep &&
          !taken.has(e) &&
          ((keep.contentHash && e.contentHash === keep.contentHash) || (keep.archivedKey !== null && e.archivedKey === keep.archivedKey)),
      );
      if (twins.length === 0) continue;
      for (const t of twins) taken.add(t);
      taken.add(keep);
      groups.push({ keep, twins });
    }
  }
  return groups;
}

/**
 * Ledger rows that stand for one file twice (findTwins) are retired by this run's load,
 * and the dates they carry recomputed without them. A twin loaded into a table this run does not
 * write is left for a run that writes every table it is in.
 */
export function repairTwins(
  ledger: LedgerEntry[],
  kpis: readonly KpiTable[],
  warn: (m: string) => void,
): { ledger: LedgerEntry[]; retire: LedgerEntry[]; keepers: LedgerEntry[] } {
  const retire: LedgerEntry[] = [];
  const keepers: LedgerEntry[] = [];
  const replaced = new Map<LedgerEntry, LedgerEntry>();
  for (const { keep, twins } of findTwins(ledger)) {
    const fixable = twins.filter((t) => t.tables.every((table) => kpis.includes(table)));
    if (fixable.length < twins.length) {
      warn(`the ledger holds ${twins.length + 1} rows for one file, ${keep.fileKey}; run without --kpis to repair it`);
    }
    if (fixable.length === 0) continue;
    retire.push(...fixable);
    const tables = KPI_TABLES.filter((t) => keep.tables.includes(t) || fixable.some((f) => f.tables.includes(t)));
    const merged: LedgerEntry = {
      ...keep,
      tables,
      dates: [...new Set([...keep.dates, ...fixable.flatMap((f) => f.dates)])].sort(),
      contentHash: keep.contentHash ?? fixable.find((f) => f.contentHash)?.contentHash ?? null,
    };
    replaced.set(keep, merged);
    if (tables.length > keep.tables.length || merged.dates.length > keep.dates.length) keepers.push(merged);
    warn(`${keep.fileKey}: the ledger counted this file ${fixable.length + 1} times; its dates are recomputed with it once`);
  }
  const gone = new Set(retire);
  return { ledger: ledger.filter((e) => !gone.has(e)).map((e) => replaced.get(e) ?? e), retire, keepers };
}

/**
 * Where archive puts a file: its path under the streams prefix, under the archive prefix
 * (`streams/2024-06-03/x.csv` -> `<archive>2024-06-03/x.csv`); or, when that is taken by another
 * file, the same with a name derived from its fingerprint (`x~<tag>.csv`, `x~<tag>.csv.gz`).
 * A key outside the streams prefix (the layout changed since it was loaded) keeps its name only.
 */
export function archiveKeys(layout: LakeLayout, key: string, fingerprint: string): [string, string] {
  const rel = key.startsWith(layout.streams) ? key.slice(layout.streams.length) : posix.basename(key);
  const slash = rel.lastIndexOf('/');
  const dir = rel.slice(0, slash + 1);
  const base = rel.slice(slash + 1);
  // The whole stream-file extension stays at the end, so the other name is still read as what it is.
  const ext = /\.csv\.gz$/i.exec(base) && base.length > '.csv.gz'.length ? base.slice(-'.csv.gz'.length) : posix.extname(base);
  const stem = base.slice(0, base.length - ext.length);
  const tag = createHash('sha256').update(fingerprint).digest('hex').slice(0, 10);
  return [layout.archive + rel, `${layout.archive}${dir}${stem}~${tag}${ext}`];
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
export async function locate(lake: Lake, layout: LakeLayout, entry: LedgerEntry, signal?: AbortSignal): Promise<LakeObject> {
  const candidates = [entry.archivedKey, entry.fileKey, ...archiveKeys(layout, entry.fileKey, entry.fingerprint)];
  const tried = new Set<string>();
  const sameSize: LakeObject[] = [];
  for (const key of candidates) {
    if (!key || tried.has(key)) continue;
    tried.add(key);
    const obj = await lake.stat(key);
    if (obj && isLedgerFile(obj, entry)) return obj;
    if (obj && obj.size === entry.size) sameSize.push(obj);
  }
  // The same bytes under a new fingerprint (a `touch`, a re-upload): only the content can tell.
  if (entry.contentHash) {
    for (const obj of sameSize) if ((await hashObject(lake, obj.key, signal)) === entry.contentHash) return obj;
  }
  throw new MkpiError('MKPI_LEDGER_FILE_MISSING', `${entry.fileKey} was loaded earlier but is no longer in the lake`, {
    hint: `its dates (${entry.dates.join(', ')}) need it to be recomputed; restore it to ${layout.streams} or ${layout.archive}`,
    details: { file: entry.fileKey, fingerprint: entry.fingerprint },
  });
}
