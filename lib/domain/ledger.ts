// The ledger: which stream files were loaded into which tables (docs/contract.md §10).

import type { KpiTable } from './kpi.js';

/**
 * One stream file as the ledger knows it. (file_key, fingerprint) is its row's key; what makes
 * two objects the same file is the key and the content (`contentHash`): a fingerprint is only
 * the store's cheap stand-in for the content (size:mtime, an ETag), and it changes on a plain
 * `cp` or a multipart re-upload of the same bytes.
 */
export interface LedgerEntry {
  fileKey: string; // key under the lake root when it was loaded, e.g. "streams/2024-06-01.csv"
  fingerprint: string;
  /** SHA-256 (hex) of the file's bytes; null in rows written before it was recorded. */
  contentHash?: string | null;
  size: number;
  rows: number; // data rows read from the file
  dates: string[]; // YYYY-MM-DD of every row with a valid listen_time
  tables: KpiTable[]; // the KPI tables this file has been loaded into
  runId: string;
  archivedKey: string | null; // where archive put it, once archived
  /**
   * The archived copy's own fingerprint, recorded by markArchived. It can differ from
   * `fingerprint`: on S3 a copy of a multipart or SSE-KMS object gets a new ETag.
   * Absent/null until archived (and in ledgers written before it was recorded).
   */
  archivedFingerprint?: string | null;
  /**
   * When `musickpi retract` took the file back out (ISO time); null/absent while it counts.
   * A retracted file's dates were recomputed without it, and the same bytes are never loaded again.
   */
  retractedAt?: string | null;
}
