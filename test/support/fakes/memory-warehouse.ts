// A warehouse in memory that keeps the Warehouse port's promises (lib/domain/warehouse.ts) the
// way the PostgreSQL adapter keeps them (lib/adapters/warehouse/postgres/*, sql/*.sql):
//
// - init() creates empty tables and a ledger, idempotently; using them before is an error;
// - the run lock is one per database: a second acquire, from any session, is MKPI_LOCKED; a lock
//   whose session is lost (loseLock) makes the next load fail before COMMIT with MKPI_RETRY_LATER;
// - load() is one transaction: checked like checkBatch, applied to a copy of the data (stage,
//   merge hourly, 'mid-merge', merge genre, retire, upsert the ledger), swapped in at COMMIT.
//   LoadBatch.onStep runs at every LoadStep in the adapter's order; a throw before 'committed'
//   leaves the data as it was;
// - the ledger upsert merges like sql/upsert-ledger*.sql: tables and dates only grow, an archive
//   key once recorded stays, the content hash is kept when the batch has none, the archived
//   copy's fingerprint is never touched by a load, size/rows/run id are the batch's;
// - markArchived updates one ledger row (none: MKPI_INTERNAL); query() runs no SQL;
// - recordRun adds a run to the history outside any load (before init: MKPI_CONFIG, as the
//   adapters without musickpi_runs); listRuns gives it newest first (started at, then run id).
//
// Every step can be told to fail (failAt). session() opens another handle on the same database,
// as a second process would.

import { MkpiError } from '../../../lib/domain/errors.js';
import { KPI_TABLES, type GenreRow, type HourlyRow, type KpiTable } from '../../../lib/domain/kpi.js';
import type { LedgerEntry } from '../../../lib/domain/ledger.js';
import type {
  ListRunsOptions,
  LoadBatch,
  LoadResult,
  LoadStep,
  QueryResult,
  RunLock,
  RunRecord,
  Warehouse,
} from '../../../lib/domain/warehouse.js';
import { compareKeys } from '../../../lib/adapters/lake/keys.js';

/** Where a failure can be injected: each method, and each step of a load. */
export type WarehouseStep =
  | 'init'
  | 'isInitialised'
  | 'acquireRunLock'
  | 'readLedger'
  | 'load'
  | LoadStep
  | 'markArchived'
  | 'query'
  | 'claimLake'
  | 'lakeClaim'
  | 'recordRun'
  | 'listRuns';

export interface StepFaultOptions {
  /** What to throw; by default MKPI_WAREHOUSE_UNAVAILABLE, as a dropped connection gives. */
  error?: Error | (() => Error);
  /** How many times it fails; forever by default. */
  times?: number;
}

interface StoredEntry {
  fileKey: string;
  fingerprint: string;
  size: number;
  rows: number;
  runId: string;
  archivedKey: string | null;
  archivedFingerprint: string | null;
  contentHash: string | null;
  retractedAt?: string;
  tables: Set<KpiTable>;
  dates: Set<string>;
}

interface Data {
  hourly: Map<string, HourlyRow>;
  genre: Map<string, GenreRow>;
  ledger: Map<string, StoredEntry>;
}

interface HeldLock {
  owner: MemoryWarehouse;
  lost: boolean;
}

/** The database several sessions (MemoryWarehouse handles) share. */
class Database {
  data: Data | undefined;
  lock: HeldLock | undefined;
  claim: string | undefined;
  /** The run history, in the order recorded; kept apart from `data`, as musickpi_runs is written outside any load. */
  runs: RunRecord[] = [];
}

export interface WarehouseSnapshot {
  hourly: HourlyRow[];
  genre: GenreRow[];
  ledger: LedgerEntry[];
}

const DATE = /^\d{4}-\d{2}-\d{2}$/;

const HOURLY_COLUMNS = [
  'listen_date',
  'listen_hour',
  'unique_listeners',
  'listen_counts',
  'top_artist',
  'avg_sessions_per_user',
  'diversity_index',
  'most_engaged_age_group',
] as const satisfies readonly (keyof HourlyRow)[];
const GENRE_COLUMNS = [
  'listen_date',
  'track_genre',
  'listen_count',
  'popularity_index',
  'average_duration',
  'most_popular_track_id',
] as const satisfies readonly (keyof GenreRow)[];

function ledgerKey(fileKey: string, fingerprint: string): string {
  return `${fileKey}\u0000${fingerprint}`;
}

function hourlyKey(r: HourlyRow): string {
  return `${r.listen_date}\u0000${r.listen_hour}`;
}

function genreKey(r: GenreRow): string {
  return `${r.listen_date}\u0000${r.track_genre}`;
}

/** Only the table's columns, as a row read back from the database has. */
function pick<R extends object, K extends keyof R>(row: R, columns: readonly K[]): Pick<R, K> {
  const out = {} as Pick<R, K>;
  for (const c of columns) out[c] = row[c];
  return out;
}

function cloneData(d: Data): Data {
  const ledger = new Map<string, StoredEntry>();
  for (const [k, e] of d.ledger) ledger.set(k, { ...e, tables: new Set(e.tables), dates: new Set(e.dates) });
  return { hourly: new Map(d.hourly), genre: new Map(d.genre), ledger };
}

function toEntry(e: StoredEntry): LedgerEntry {
  return {
    fileKey: e.fileKey,
    fingerprint: e.fingerprint,
    size: e.size,
    rows: e.rows,
    dates: [...e.dates].sort(),
    tables: KPI_TABLES.filter((t) => e.tables.has(t)),
    runId: e.runId,
    archivedKey: e.archivedKey,
    contentHash: e.contentHash,
    // Present only once known, as readLedger gives it.
    ...(e.archivedFingerprint !== null ? { archivedFingerprint: e.archivedFingerprint } : {}),
    ...(e.retractedAt ? { retractedAt: e.retractedAt } : {}),
  };
}

function byDateThen<R extends { listen_date: string }>(second: (r: R) => string | number) {
  return (a: R, b: R): number => {
    if (a.listen_date !== b.listen_date) return a.listen_date < b.listen_date ? -1 : 1;
    const x = second(a);
    const y = second(b);
    return x === y ? 0 : x < y ? -1 : 1;
  };
}

export class MemoryWarehouse implements Warehouse {
  readonly description: string;
  /** Every batch a load committed, as it was given (without onStep), oldest first. */
  readonly committedBatches: Omit<LoadBatch, 'onStep'>[] = [];
  /** Every load step reached, across loads. */
  readonly steps: LoadStep[] = [];
  private readonly db: Database;
  private readonly faults: { step: WarehouseStep; error: StepFaultOptions['error']; left: number }[] = [];
  private myLock: HeldLock | undefined;
  private closed = false;

  constructor(opts: { description?: string } = {}, db: Database = new Database()) {
    this.description = opts.description ?? 'memory://warehouse';
    this.db = db;
  }

  // --- what tests use ---------------------------------------------------------------------------

  /** Another handle on the same database (another process): shared data, lock and claim. */
  session(): MemoryWarehouse {
    return new MemoryWarehouse({ description: this.description }, this.db);
  }

  /** Makes `step` fail; chainable. */
  failAt(step: WarehouseStep, opts: StepFaultOptions = {}): this {
    this.faults.push({ step, error: opts.error, left: opts.times ?? Infinity });
    return this;
  }

  heal(): this {
    this.faults.length = 0;
    return this;
  }

  /** This handle's lock session dies: the lock is gone from the database, as when its connection drops. */
  loseLock(): void {
    const lock = this.myLock;
    if (!lock) return;
    lock.lost = true;
    if (this.db.lock === lock) this.db.lock = undefined;
  }

  get lockHeld(): boolean {
    return this.db.lock !== undefined;
  }

  /** The last committed batch. */
  get lastBatch(): Omit<LoadBatch, 'onStep'> | undefined {
    return this.committedBatches[this.committedBatches.length - 1];
  }

  /** The committed tables and ledger, sorted (empty before init). */
  snapshot(): WarehouseSnapshot {
    const d = this.db.data;
    if (!d) return { hourly: [], genre: [], ledger: [] };
    return {
      hourly: [...d.hourly.values()].map((r) => ({ ...r })).sort(byDateThen((r) => r.listen_hour)),
      genre: [...d.genre.values()].map((r) => ({ ...r })).sort(byDateThen((r) => r.track_genre)),
      ledger: this.ledgerNow(d),
    };
  }

  // --- the Warehouse port -----------------------------------------------------------------------

  async init(): Promise<void> {
    this.usable('init');
    this.db.data ??= { hourly: new Map(), genre: new Map(), ledger: new Map() };
  }

  async isInitialised(): Promise<boolean> {
    this.usable('isInitialised');
    return this.db.data !== undefined;
  }

  async acquireRunLock(): Promise<RunLock> {
    this.usable('acquireRunLock');
    if (this.db.lock) {
      throw new MkpiError('MKPI_LOCKED', `another musickpi run is loading ${this.description}`, {
        hint: 'another musickpi run holds the lock; wait for it to finish.',
      });
    }
    const lock: HeldLock = { owner: this, lost: false };
    this.db.lock = lock;
    this.myLock = lock;
    let released = false;
    return {
      release: async () => {
        if (released) return;
        released = true;
        if (this.db.lock === lock) this.db.lock = undefined;
        if (this.myLock === lock) this.myLock = undefined;
      },
    };
  }

  async readLedger(): Promise<LedgerEntry[]> {
    return this.ledgerNow(this.tables('readLedger'));
  }

  async load(batch: LoadBatch): Promise<LoadResult> {
    const committed = this.tables('load');
    checkBatch(batch);
    const ledger = mergeEntries(batch.ledger);
    const work = cloneData(committed);
    const result: LoadResult = { hourlyRowsWritten: 0, genreRowsWritten: 0, hourlyRowsDeleted: 0, genreRowsDeleted: 0 };
    const step = async (s: LoadStep): Promise<void> => {
      this.steps.push(s);
      this.inject(s);
      await batch.onStep?.(s);
    };

    // Staging: 'mid-copy' once, inside the first COPY that sends any row.
    const hourly = batch.hourly && { dates: [...batch.hourly.dates], rows: batch.hourly.rows.map((r) => pick(r, HOURLY_COLUMNS)) };
    const genre = batch.genre && { dates: [...batch.genre.dates], rows: batch.genre.rows.map((r) => pick(r, GENRE_COLUMNS)) };
    if ((hourly?.rows.length ?? 0) > 0 || (genre?.rows.length ?? 0) > 0) await step('mid-copy');
    await step('staged');

    if (hourly) [result.hourlyRowsDeleted, result.hourlyRowsWritten] = replaceDates(work.hourly, hourly, hourlyKey, 'hourly_kpis');
    await step('mid-merge');
    if (genre) [result.genreRowsDeleted, result.genreRowsWritten] = replaceDates(work.genre, genre, genreKey, 'genre_level_kpis');
    for (const r of batch.retire ?? []) work.ledger.delete(ledgerKey(r.fileKey, r.fingerprint));
    for (const r of batch.retract ?? []) {
      const e = work.ledger.get(ledgerKey(r.fileKey, r.fingerprint));
      if (e) e.retractedAt = new Date().toISOString();
    }
    for (const e of ledger) upsert(work.ledger, e, batch.runId);
    await step('merged');

    if (this.myLock?.lost) {
      throw new MkpiError('MKPI_RETRY_LATER', 'the run lock was lost (its connection ended) before commit; the load was rolled back', {
        hint: 'another run may have started meanwhile; run again',
      });
    }
    await step('before-commit');
    if (this.closed) throw new MkpiError('MKPI_WAREHOUSE_UNAVAILABLE', 'Connection terminated before COMMIT');
    // COMMIT. Runs are serialised by the run lock, so swapping the whole data set loses nothing.
    this.db.data = work;
    const { onStep: _onStep, ...given } = batch;
    this.committedBatches.push(structuredClone(given));
    await step('committed');
    return result;
  }

  async markArchived(fileKey: string, fingerprint: string, archivedKey: string, archivedFingerprint?: string): Promise<void> {
    const d = this.tables('markArchived');
    const e = d.ledger.get(ledgerKey(fileKey, fingerprint));
    if (!e) throw new MkpiError('MKPI_INTERNAL', `no ledger entry for ${fileKey} (${fingerprint}) to mark as archived`);
    e.archivedKey = archivedKey;
    e.archivedFingerprint = archivedFingerprint ?? null;
  }

  async query(_sql: string): Promise<QueryResult> {
    this.usable('query');
    throw new MkpiError('MKPI_USAGE', 'the memory warehouse runs no SQL: query is not supported');
  }

  async recordRun(run: RunRecord): Promise<void> {
    this.usable('recordRun');
    if (!this.db.data) {
      throw new MkpiError('MKPI_CONFIG', `${this.description} has no run history table (musickpi_runs)`, {
        hint: 'musickpi init (or any run that loads) creates it',
      });
    }
    this.db.runs.push(structuredClone(run));
  }

  async listRuns(opts: ListRunsOptions): Promise<RunRecord[]> {
    this.usable('listRuns');
    if (!this.db.data) return [];
    const newestFirst = (a: RunRecord, b: RunRecord) =>
      b.startedAt.localeCompare(a.startedAt) || (a.runId < b.runId ? 1 : a.runId > b.runId ? -1 : 0);
    return this.db.runs
      .filter((r) => opts.status === undefined || r.status === opts.status)
      .sort(newestFirst)
      .slice(0, opts.limit)
      .map((r) => structuredClone(r));
  }

  /** The history as recorded, oldest first (for tests). */
  get runs(): RunRecord[] {
    return this.db.runs.map((r) => structuredClone(r));
  }

  /**
   * Ties the warehouse to one lake (one row). Claiming it again for the same lake is a no-op;
   * for another lake it is MKPI_CONFIG, unless `adopt` hands the warehouse over to that lake.
   */
  async claimLake(lake: string, opts: { adopt?: boolean } = {}): Promise<void> {
    this.usable('claimLake');
    const have = this.db.claim;
    if (have === undefined || have === lake || opts.adopt) {
      this.db.claim = lake;
      return;
    }
    throw new MkpiError('MKPI_CONFIG', `${this.description} holds the KPIs of another lake (${have}), not ${lake}`, {
      hint: 'point musickpi at the lake this warehouse was loaded from, or at another schema',
      details: { claimed: have, lake },
    });
  }

  /** The lake this warehouse is tied to, if any. */
  async lakeClaim(): Promise<string | null> {
    this.usable('lakeClaim');
    return this.db.claim ?? null;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Ending the session is what drops its lock.
    if (this.myLock && this.db.lock === this.myLock) this.db.lock = undefined;
    this.myLock = undefined;
  }

  // --- internals --------------------------------------------------------------------------------

  private ledgerNow(d: Data): LedgerEntry[] {
    return [...d.ledger.values()]
      .sort((a, b) => compareKeys(a.fileKey, b.fileKey) || compareKeys(a.fingerprint, b.fingerprint))
      .map(toEntry);
  }

  private inject(step: WarehouseStep): void {
    const f = this.faults.find((x) => x.step === step && x.left > 0);
    if (!f) return;
    f.left--;
    if (typeof f.error === 'function') throw f.error();
    throw f.error ?? new MkpiError('MKPI_WAREHOUSE_UNAVAILABLE', `memory warehouse: injected failure at ${step}`, { details: { step } });
  }

  private usable(step: WarehouseStep): void {
    if (this.closed) throw new MkpiError('MKPI_INTERNAL', 'warehouse used after close()');
    this.inject(step);
  }

  /** The committed data, for a step that needs the tables to exist. */
  private tables(step: WarehouseStep): Data {
    this.usable(step);
    if (!this.db.data) throw new MkpiError('MKPI_INTERNAL', `${step}: the warehouse is not initialised (relation does not exist)`);
    return this.db.data;
  }
}

/** What checkBatch (postgres/batch.ts) refuses: an invalid date, a row outside the covered dates. */
function checkBatch(batch: LoadBatch): void {
  for (const table of KPI_TABLES) {
    const part = batch[table];
    if (!part) continue;
    const covered = new Set(part.dates);
    for (const d of part.dates) if (!DATE.test(d)) throw new MkpiError('MKPI_INTERNAL', `load batch: ${table} covers an invalid date ${d}`);
    for (const row of part.rows) {
      if (!covered.has(row.listen_date)) {
        throw new MkpiError('MKPI_INTERNAL', `load batch: a ${table} row has listen_date ${row.listen_date} outside the covered dates`);
      }
    }
  }
  for (const e of batch.ledger) {
    for (const d of e.dates) if (!DATE.test(d)) throw new MkpiError('MKPI_INTERNAL', `load batch: ${e.fileKey} has an invalid date ${d}`);
  }
}

/** Entries of one batch for the same row are folded into one, as mergeLedgerEntries does. */
function mergeEntries(entries: LedgerEntry[]): LedgerEntry[] {
  const map = new Map<string, LedgerEntry>();
  for (const e of entries) {
    const k = ledgerKey(e.fileKey, e.fingerprint);
    const prev = map.get(k);
    map.set(
      k,
      prev
        ? {
            ...e,
            dates: [...new Set([...prev.dates, ...e.dates])],
            tables: KPI_TABLES.filter((t) => prev.tables.includes(t) || e.tables.includes(t)),
            archivedKey: e.archivedKey ?? prev.archivedKey,
            contentHash: e.contentHash ?? prev.contentHash ?? null,
          }
        : { ...e, dates: [...e.dates], tables: [...e.tables] },
    );
  }
  return [...map.values()];
}

/** DELETE every row of a covered date, then INSERT the staged rows; a duplicate key fails the load. */
function replaceDates<R extends { listen_date: string }>(
  table: Map<string, R>,
  part: { dates: string[]; rows: R[] },
  key: (r: R) => string,
  name: string,
): [deleted: number, inserted: number] {
  const covered = new Set(part.dates);
  let deleted = 0;
  for (const [k, r] of table) {
    if (covered.has(r.listen_date)) {
      table.delete(k);
      deleted++;
    }
  }
  for (const r of part.rows) {
    const k = key(r);
    if (table.has(k)) throw new MkpiError('MKPI_INTERNAL', `duplicate key value violates unique constraint "${name}_pkey"`);
    table.set(k, r);
  }
  return [deleted, part.rows.length];
}

/** sql/upsert-ledger.sql and sql/upsert-ledger-dates.sql, for one row. */
function upsert(ledger: Map<string, StoredEntry>, e: LedgerEntry, runId: string): void {
  const k = ledgerKey(e.fileKey, e.fingerprint);
  const old = ledger.get(k);
  ledger.set(k, {
    fileKey: e.fileKey,
    fingerprint: e.fingerprint,
    size: e.size,
    rows: e.rows,
    runId,
    archivedKey: e.archivedKey ?? old?.archivedKey ?? null,
    archivedFingerprint: old?.archivedFingerprint ?? null,
    contentHash: e.contentHash ?? old?.contentHash ?? null,
    tables: new Set([...(old?.tables ?? []), ...e.tables]),
    dates: new Set([...(old?.dates ?? []), ...e.dates]),
  });
}
