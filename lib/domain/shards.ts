// The warehouse engine's staging (docs/scale.md): a plan fixes a run's input files and their
// shards once; each shard's normalize writes compact parts and a manifest; the run loads the
// parts into the warehouse. Every later step reads the plan, never the lake's listing again.
//
// Staging is a Lake of its own (a local folder or s3://…). Under it, per run:
//   <runId>/plan.json
//   <runId>/shard-<i>-of-<N>/listens-00000.csv.gz …   (i is 0-based, both zero-padded to 4 digits)
//   <runId>/shard-<i>-of-<N>/songs-00000.csv.gz, artists-…, users-…   (only the shard that holds them)
//   <runId>/shard-<i>-of-<N>/rejects-<file id>.csv.gz, rejects-songs.csv.gz, rejects-users.csv.gz
//   <runId>/shard-<i>-of-<N>/manifest.json   (written last: a shard is complete when it is there)
//   <runId>/reread/…   (the run's own shard for loaded files whose listens the warehouse lacks)

import { createHash } from 'node:crypto';
import type { KpiTable } from './kpi.js';
import type { LakeLayout } from './layout.js';

export const PLAN_VERSION = 1;
export const MANIFEST_VERSION = 1;

/** The kinds of normalized part, each a gzip CSV without header, LF line ends, no BOM. */
export type PartKind = 'listens' | 'songs' | 'artists' | 'users';

/**
 * The columns of each part kind, in order. Values are written as RFC 4180 fields (quoted only
 * when they hold a comma, quote, CR or LF). Only rows that pass the row-level rules are written.
 * - listens: `file_id,line,user_id,track_id,listen_date,listen_hour`: every stream row with
 *   the header's field count, both IDs non-empty and a valid listen_time (orphans included: the
 *   dimensions decide them in SQL). IDs trimmed; listen_date YYYY-MM-DD and listen_hour 0-23 in UTC.
 * - songs: `line,track_id,track_genre,duration_ms`: every valid song row (duplicates included:
 *   "the first row wins" is decided in SQL by `line`); duration_ms as written, trimmed.
 * - artists: `line,track_id,artist`: one row per distinct artist name of each valid song row.
 * - users: `line,user_id,age_group`: every valid user row; age_group 0 (18-25) … 5 (66+), empty when unknown.
 */
export const PART_COLUMNS: Record<PartKind, readonly string[]> = {
  listens: ['file_id', 'line', 'user_id', 'track_id', 'listen_date', 'listen_hour'],
  songs: ['line', 'track_id', 'track_genre', 'duration_ms'],
  artists: ['line', 'track_id', 'artist'],
  users: ['line', 'user_id', 'age_group'],
};

export interface PlannedFile {
  /** 1-based, in listing order: the `file_id` of its listens rows. */
  id: number;
  key: string;
  fingerprint: string;
  size: number;
  shard: number;
  /** The KPI tables the ledger lacks this file in (all of the run's tables for a new file). */
  missing: KpiTable[];
}

export interface PlannedDimension {
  kind: 'songs' | 'users';
  key: string;
  fingerprint: string;
  size: number;
  shard: number;
}

export interface ShardPlan {
  version: typeof PLAN_VERSION;
  runId: string;
  createdAt: string;
  /** The lake root the plan was made for; a run on another lake refuses the plan. */
  lake: string;
  layout: LakeLayout;
  kpis: KpiTable[];
  shards: number;
  dimensions: PlannedDimension[];
  files: PlannedFile[];
}

export interface PartRef {
  /** Key under the staging root. */
  key: string;
  /** Compressed bytes as stored. */
  bytes: number;
  rows: number;
}

/** A dimension file as its shard read it. */
export interface NormalizedDimension {
  kind: 'songs' | 'users';
  key: string;
  bytes: number;
  rows: number;
  /** Rows written to the part (valid rows, duplicates included). */
  valid: number;
  /** Invalid rows per reason (SONG_REJECT_REASONS / USER_REJECT_REASONS); duplicates are counted in SQL. */
  rejected: Record<string, number>;
  duplicateHeaders: string[];
  /** Staging key of its row-level rejects (rejects CSV lines without header, in line order), when any. */
  rejectsKey: string | null;
  rejectsCount: number;
  /** A schema failure (missing column, empty file, corrupt gzip): the run stops before loading. */
  schemaError?: { message: string; hint?: string };
}

/** A stream file as its shard read it. */
export interface NormalizedFile {
  id: number;
  key: string;
  fingerprint: string;
  /** SHA-256 of the stored bytes (the ledger's content hash); '' on a schema error. */
  contentHash: string;
  bytes: number;
  rows: number;
  /** Rows written to the listens parts. */
  listens: number;
  /** Row-level rejects per reason (malformed, missing_user_id, missing_track_id, bad_listen_time). */
  rejected: Record<string, number>;
  /** Every UTC date (YYYY-MM-DD) of a row with a valid listen_time, sorted. */
  dates: string[];
  duplicateHeaders: string[];
  rejectsKey: string | null;
  rejectsCount: number;
  schemaError?: { message: string; hint?: string };
}

export interface ShardManifest {
  version: typeof MANIFEST_VERSION;
  runId: string;
  /** 0-based; -1 for the run's own reread shard. */
  shard: number;
  shards: number;
  startedAt: string;
  finishedAt: string;
  parts: Record<PartKind, PartRef[]>;
  files: NormalizedFile[];
  dimensions: NormalizedDimension[];
}

const pad = (n: number) => String(n).padStart(4, '0');

export function planKey(runId: string): string {
  return `${runId}/plan.json`;
}

export function shardPrefix(runId: string, shard: number, shards: number): string {
  return shard < 0 ? `${runId}/reread/` : `${runId}/shard-${pad(shard)}-of-${pad(shards)}/`;
}

export function manifestKey(runId: string, shard: number, shards: number): string {
  return `${shardPrefix(runId, shard, shards)}manifest.json`;
}

/** Run ids a plan may carry: they name staging folders and Airflow's run ids fit. */
export const RUN_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:+-]{0,199}$/;

// IDs in parts. PostgreSQL text cannot hold U+0000, and Redshift's VARCHAR ends at 65,535 bytes,
// but a user_id may hold either (the contract limits song values only). User IDs are only ever
// joined and counted, never ordered or printed whole, so they go into parts under an injective
// encoding: `\` → `\\`, U+0000 → `\0`; an encoding longer than LONG_ID becomes `\h`, its SHA-256
// and its first 65 code points (enough for a reject's detail, which shows at most 64).
// Track IDs need none of it: one that is too long or holds U+0000 cannot be a song
// (value_too_long), so normalize rejects its rows as unknown_track itself.

const LONG_ID = 512;

export function encodePartId(id: string): string {
  const escaped = id.includes('\\') || id.includes('\0') ? id.replace(/\\/g, '\\\\').replace(/\0/g, '\\0') : id;
  if (escaped.length <= LONG_ID) return escaped;
  let prefix = '';
  let n = 0;
  for (const ch of id) {
    if (n++ === 65) break;
    prefix += ch;
  }
  return `\\h${createHash('sha256').update(id).digest('hex')}${prefix.replace(/\\/g, '\\\\').replace(/\0/g, '\\0')}`;
}

/** The ID an encodePartId value stands for (of a long one: its first 65 code points). */
export function decodePartId(encoded: string): string {
  const body = encoded.startsWith('\\h') ? encoded.slice(2 + 64) : encoded;
  return body.includes('\\') ? body.replace(/\\(\\|0)/g, (_m, c: string) => (c === '0' ? '\0' : '\\')) : body;
}
