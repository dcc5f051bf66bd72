// The warehouse interface assumes neither COPY FROM STDIN nor advisory locks, so that a
// Redshift adapter (staging through S3, a lock row) fits behind it as well as PostgreSQL.

import type { GenreRow, HourlyRow } from './kpi.js';
import type { Readable } from 'node:stream';
import type { LedgerEntry } from './ledger.js';
import type { PartRef } from './shards.js';

/** The points of a load at which LoadBatch.onStep is called, in order. */
export type LoadStep = 'mid-copy' | 'staged' | 'mid-merge' | 'merged' | 'before-commit' | 'committed';

export interface LoadBatch {
  runId: string;
  /** Per table: the dates being replaced, and the rows that replace them. Absent = table untouched. */
  hourly?: { dates: string[]; rows: HourlyRow[] };
  genre?: { dates: string[]; rows: GenreRow[] };
  /** Ledger upserts: entries listed here get `tables` merged with what the ledger already had. */
  ledger: LedgerEntry[];
  /**
   * Ledger rows to delete in the same transaction: twins, i.e. second rows for a file the
   * ledger already holds (written by versions that identified files by fingerprint alone).
   * Their dates are among the batch's dates, so the tables are recomputed without them.
   */
  retire?: { fileKey: string; fingerprint: string }[];
  /**
   * Ledger rows to mark retracted in the same transaction (`musickpi retract`): they stay in the
   * ledger, with retractedAt set, and no longer count. Their dates are among the batch's dates.
   */
  retract?: { fileKey: string; fingerprint: string }[];
  /**
   * Called at each step of the load (the CLI's interruption checks and the tests' fault points
   * go through it): 'mid-copy' inside the staging, once its first rows are on their way
   * (PostgreSQL: the first COPY chunk has reached the server; Redshift: the first stage object
   * is stored in S3, before the COPY); 'staged' after every COPY; 'mid-merge' between the two tables' merges (or after the
   * only one); 'merged' after the ledger upsert; 'before-commit'; 'committed'. A throw before
   * 'committed' rolls the load back.
   */
  onStep?: (step: LoadStep) => Promise<void> | void;
}

export interface LoadResult {
  hourlyRowsWritten: number;
  genreRowsWritten: number;
  hourlyRowsDeleted: number;
  genreRowsDeleted: number;
}

export interface RunLock {
  release(): Promise<void>;
}

export interface QueryResult {
  columns: string[];
  rows: unknown[][];
  /** The command tag's verb as the server reports it: 'SELECT', 'DELETE', 'CREATE', …; '' for an empty statement. */
  command: string;
  /** Rows returned or affected as the server reports them; null when the command has no count (CREATE, SET). */
  rowCount: number | null;
}

export type RunStatus = 'ok' | 'failed';

/**
 * One run of a command as musickpi_runs keeps it (one row per run; docs of the columns: the
 * schema in sql/<dialect>/init.sql). Times are ISO 8601 instants in UTC; the JSON columns
 * (rejects, dates recomputed, timings) come back parsed.
 */
export interface RunRecord {
  runId: string;
  command: string;
  startedAt: string;
  finishedAt: string;
  status: RunStatus;
  exitCode: number;
  errorCode: string | null;
  /** Already redacted; the adapter truncates it to the column's width. */
  errorMessage: string | null;
  errorStage: string | null;
  dryRun: boolean;
  lake: string;
  rowsRead: number;
  completeRows: number;
  /** Reject reason → rows. */
  rejects: Record<string, number>;
  hourlyRowsWritten: number;
  genreRowsWritten: number;
  datesRecomputed: { hourly: string[]; genre: string[] };
  /** Stream files loaded by a committed load (0 when nothing committed). */
  filesLoaded: number;
  filesArchived: number;
  /** Milliseconds per stage. */
  timings: Record<string, number>;
  version: string;
  airflowDagId: string | null;
  airflowTaskId: string | null;
  airflowRunId: string | null;
  airflowTryNumber: number | null;
}

export interface ListRunsOptions {
  /** At most this many runs, newest first. */
  limit: number;
  status?: RunStatus;
}

export interface Warehouse {
  /** Short description with no secret in it ("postgresql://user@host:5432/db"). */
  readonly description: string;
  /** Creates the schema, the KPI tables and the ledger when missing. Idempotent. */
  init(): Promise<void>;
  /** True when the schema and ledger exist (a dry run must not create them). */
  isInitialised(): Promise<boolean>;
  /**
   * Takes the run lock or throws MkpiError('MKPI_LOCKED'). Held until release(); the lock
   * must disappear by itself if the process dies.
   */
  acquireRunLock(): Promise<RunLock>;
  readLedger(): Promise<LedgerEntry[]>;
  /** One transaction: stage, delete covered dates, insert, upsert ledger, commit. All or nothing. */
  load(batch: LoadBatch): Promise<LoadResult>;
  /**
   * Records where archive moved a file, and the archived copy's fingerprint when known (it may
   * differ from the loaded file's: see LedgerEntry.archivedFingerprint).
   */
  markArchived(fileKey: string, fingerprint: string, archivedKey: string, archivedFingerprint?: string): Promise<void>;
  /**
   * Records that the ledger belongs to `lake` (one lake per schema: two lakes sharing a ledger
   * would take each other's files for already loaded). No claim yet: claims it. Same lake:
   * nothing. Another lake: throws MkpiError('MKPI_CONFIG'), unless opts.adopt, which moves the
   * claim to `lake` (the lake itself moved). Call after init(); safe under concurrent callers.
   */
  claimLake(lake: string, opts?: { adopt?: boolean }): Promise<void>;
  /** The lake the ledger belongs to; null when unclaimed or not initialised. Creates nothing. */
  lakeClaim(): Promise<string | null>;
  /**
   * Runs the user's SQL with the warehouse schema first on the search path (then public), so
   * the KPI tables can be named unqualified. The last statement's result is returned.
   */
  query(sql: string): Promise<QueryResult>;
  /**
   * Adds a run to the history (musickpi_runs), in a transaction of its own: never inside a
   * load, so that recording a run cannot change what was loaded. Creates nothing: without the
   * table (init() has not run) it throws MkpiError('MKPI_CONFIG').
   */
  recordRun(run: RunRecord): Promise<void>;
  /** The history, newest first (by started_at, then run id); empty when the table does not exist. */
  listRuns(opts: ListRunsOptions): Promise<RunRecord[]>;
  close(): Promise<void>;
}

// ---- The warehouse engine (docs/scale.md): the warehouse joins and aggregates normalized parts. ----

/** A stream file whose listens are staged for this run, by the `file_id` of its listens rows. */
export interface EngineFile {
  id: number;
  fileKey: string;
  fingerprint: string;
}

/** Where the parts are: keys under the staging root, readable by the adapter. */
export interface EngineParts {
  listens: PartRef[];
  songs: PartRef[];
  artists: PartRef[];
  users: PartRef[];
}

export interface EngineStageInput {
  parts: EngineParts;
  /** Every file whose listens rows the parts hold (new files, and loaded files re-read for late dates). */
  files: EngineFile[];
  /** Reads a part's bytes (gzip as stored) from staging: how PostgreSQL's COPY FROM STDIN gets them. */
  read(key: string, signal?: AbortSignal): Promise<Readable>;
  /** `s3://bucket/key` of a part, when staging is on S3 (Redshift COPYs from there); else undefined. */
  s3Uri?(key: string): string | undefined;
  signal?: AbortSignal;
}

export interface EngineStaged {
  songs: { valid: number; duplicates: number };
  users: { valid: number; duplicates: number };
  /** Orphan rows per staged file id: unknown_track (first), else unknown_user, as contract §3 orders them. */
  orphans: Map<number, { unknown_track: number; unknown_user: number }>;
  /** Complete rows per staged file id. */
  complete: Map<number, number>;
}

/** A rejected row the warehouse decides: an orphan stream row, or a dimension row whose ID an earlier row holds. */
export type EngineReject =
  | { kind: 'orphan'; fileId: number; line: number; reason: 'unknown_track' | 'unknown_user'; userId: string; trackId: string }
  | { kind: 'duplicate'; dimension: 'songs' | 'users'; line: number; id: string; firstLine: number };

export interface EngineLoadBatch {
  runId: string;
  /** Per table, the dates recomputed over every counted listen (stored and staged). Absent: table untouched. */
  hourly?: string[];
  genre?: string[];
  /**
   * The staged files whose listens are kept in the warehouse (musickpi_listens) by this load,
   * replacing any stored listens of the same (fileKey, fingerprint).
   */
  store: EngineFile[];
  /** As LoadBatch: ledger upserts, twins retired, files retracted. */
  ledger: LedgerEntry[];
  retire?: { fileKey: string; fingerprint: string }[];
  retract?: { fileKey: string; fingerprint: string }[];
  /** A dry run: the KPIs are computed (rows counted) but nothing is written. */
  dryRun?: boolean;
  onStep?: (step: LoadStep) => Promise<void> | void;
}

/**
 * One run's session on the warehouse: stage tables live as long as it does. The KPIs of a date
 * are computed over the listens of every file that counts (a ledger row not retracted, not
 * retired, plus this batch's entries): those stored in musickpi_listens and those staged now.
 */
export interface WarehouseEngine {
  /** COPYs the parts into the session's stage tables and resolves the dimensions (first line wins). */
  stage(input: EngineStageInput): Promise<EngineStaged>;
  /**
   * The warehouse-decided rejects, in the order the rejects CSV lists them: duplicates of songs
   * by line, then of users by line, then orphans by (file id, line). Fetched in pages, so that
   * memory stays flat however many there are.
   */
  rejects(): AsyncIterable<EngineReject>;
  /** Which of these loaded files have their listens stored (by fileKey + '\n' + fingerprint). */
  storedFiles(files: { fileKey: string; fingerprint: string }[]): Promise<Set<string>>;
  /** The one load transaction (or, dry, just the counts): compute, delete the dates, insert, store listens, ledger. */
  load(batch: EngineLoadBatch): Promise<LoadResult>;
  close(): Promise<void>;
}

/** A warehouse that can run the warehouse engine. */
export interface EngineWarehouse extends Warehouse {
  openEngine(): Promise<WarehouseEngine>;
}
