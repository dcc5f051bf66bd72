// The warehouse engine's SQL, shared by both dialects: the normalized parts sit in session temp
// tables (mkpi_e_*), the dimensions are resolved there (the smallest line of an ID wins), and the
// one load transaction computes each recomputed date's KPIs over the listens of every counted
// file (stored in musickpi_listens, and staged now) into the load's stage tables, so that the
// existing merge (merge-hourly / merge-genre) deletes and inserts them. What differs per dialect
// (column types, how ties compare strings, the clock, how parts arrive) is in EngineSql; the
// statements use only what both have: no arrays, no row constructors, no QUALIFY, DISTINCT ON or
// FILTER, no correlated subqueries; string ties in code point order (PostgreSQL COLLATE "C",
// Redshift's byte order of UTF-8).

import type pg from 'pg';
import { MkpiError } from '../../../domain/errors.js';
import { type KpiTable } from '../../../domain/kpi.js';
import {
  type EngineFile,
  type EngineLoadBatch,
  type EngineReject,
  type EngineStaged,
  type EngineStageInput,
  type LoadBatch,
  type LoadResult,
  type WarehouseEngine,
} from '../../../domain/warehouse.js';
import { PART_COLUMNS, type PartKind } from '../../../domain/shards.js';
import { type Conn, type Connections } from './connection.js';
import { GENRE_COLUMNS, HOURLY_COLUMNS, KPI_TABLE_NAMES } from './kpi-columns.js';

/** What the shared SQL needs to know of a dialect. */
export interface EngineSql {
  /** The validated, quoted schema. */
  quoted: string;
  /** A stream ID of any length (PostgreSQL TEXT; Redshift VARCHAR(65535), its widest). */
  idType: string;
  /** A dimension string: track_id of a song, genre, artist (at most 255 code points). */
  nameType: string;
  /** A file key and a fingerprint, as the ledger holds them. */
  keyType: string;
  fingerprintType: string;
  runIdType: string;
  /** Appended to every ORDER BY of a string so that ties go by code point (PostgreSQL: ' COLLATE "C"'). */
  collate: string;
  /** The current time, for stored_at. */
  now: string;
}

export const ENGINE_PAGE_SIZE = 10_000;

/** The session temp tables of the parts, in PART_COLUMNS order. */
export const PART_TABLES: Record<PartKind, string> = {
  listens: 'mkpi_e_listens',
  songs: 'mkpi_e_songs',
  artists: 'mkpi_e_artists',
  users: 'mkpi_e_users',
};

const AGE_LABELS = ['18-25', '26-35', '36-45', '46-55', '56-65', '66+'];

function temp(name: string, columns: string): string[] {
  // Dropped first rather than ON COMMIT DROP (Redshift has no ON COMMIT): a table left by an
  // earlier load of the same session, or a staging done again, starts empty.
  return [`DROP TABLE IF EXISTS ${name}`, `CREATE TEMP TABLE ${name} (${columns})`];
}

/** The stage tables of the four part kinds and of the staged files, created empty. */
export function partTablesDdl(d: EngineSql): string[] {
  return [
    ...temp(
      PART_TABLES.listens,
      `file_id INT NOT NULL, line BIGINT NOT NULL, user_id ${d.idType} NOT NULL, track_id ${d.idType} NOT NULL, ` +
        'listen_date DATE NOT NULL, listen_hour SMALLINT NOT NULL',
    ),
    ...temp(
      PART_TABLES.songs,
      `line BIGINT NOT NULL, track_id ${d.nameType} NOT NULL, track_genre ${d.nameType} NOT NULL, duration_ms DOUBLE PRECISION NOT NULL`,
    ),
    ...temp(PART_TABLES.artists, `line BIGINT NOT NULL, track_id ${d.nameType} NOT NULL, artist ${d.nameType} NOT NULL`),
    ...temp(PART_TABLES.users, `line BIGINT NOT NULL, user_id ${d.idType} NOT NULL, age_group SMALLINT`),
    ...temp('mkpi_e_files', `file_id INT NOT NULL, file_key ${d.keyType} NOT NULL, fingerprint ${d.fingerprintType} NOT NULL`),
  ];
}

/** The dimensions as the stream engine has them: among the staged (valid) rows, the smallest line of an ID wins. */
export function resolveSql(d: EngineSql): string[] {
  return [
    ...temp(
      'mkpi_e_song',
      `track_id ${d.nameType} NOT NULL, line BIGINT NOT NULL, track_genre ${d.nameType} NOT NULL, duration_ms DOUBLE PRECISION NOT NULL`,
    ),
    `INSERT INTO mkpi_e_song (track_id, line, track_genre, duration_ms)
     SELECT s.track_id, s.line, s.track_genre, s.duration_ms
       FROM mkpi_e_songs s
       JOIN (SELECT track_id, MIN(line) AS line FROM mkpi_e_songs GROUP BY track_id) w
         ON w.track_id = s.track_id AND w.line = s.line`,
    // The artists of the winning row only; the part already holds each name once per row.
    ...temp('mkpi_e_song_artist', `track_id ${d.nameType} NOT NULL, artist ${d.nameType} NOT NULL`),
    `INSERT INTO mkpi_e_song_artist (track_id, artist)
     SELECT DISTINCT a.track_id, a.artist
       FROM mkpi_e_artists a
       JOIN mkpi_e_song s ON s.line = a.line AND s.track_id = a.track_id`,
    ...temp('mkpi_e_user', `user_id ${d.idType} NOT NULL, line BIGINT NOT NULL, age_group SMALLINT`),
    `INSERT INTO mkpi_e_user (user_id, line, age_group)
     SELECT u.user_id, u.line, u.age_group
       FROM mkpi_e_users u
       JOIN (SELECT user_id, MIN(line) AS line FROM mkpi_e_users GROUP BY user_id) w
         ON w.user_id = u.user_id AND w.line = u.line`,
  ];
}

/** Per staged file: orphans (unknown_track first, else unknown_user) and complete rows. */
export const FILE_COUNTS_SQL = `SELECT l.file_id,
         SUM(CASE WHEN s.track_id IS NULL THEN 1 ELSE 0 END) AS unknown_track,
         SUM(CASE WHEN s.track_id IS NOT NULL AND u.user_id IS NULL THEN 1 ELSE 0 END) AS unknown_user,
         SUM(CASE WHEN s.track_id IS NOT NULL AND u.user_id IS NOT NULL THEN 1 ELSE 0 END) AS complete
    FROM mkpi_e_listens l
    LEFT JOIN mkpi_e_song s ON s.track_id = l.track_id
    LEFT JOIN mkpi_e_user u ON u.user_id = l.user_id
   GROUP BY l.file_id`;

export const DIMENSION_COUNTS_SQL = `SELECT (SELECT COUNT(*) FROM mkpi_e_songs) AS songs_valid,
         (SELECT COUNT(*) FROM mkpi_e_song) AS songs_resolved,
         (SELECT COUNT(*) FROM mkpi_e_users) AS users_valid,
         (SELECT COUNT(*) FROM mkpi_e_user) AS users_resolved`;

function limit(n: number): string {
  if (!Number.isInteger(n) || n < 1) throw new MkpiError('MKPI_INTERNAL', `invalid page size ${n}`);
  return `LIMIT ${n}`;
}

/** One page of a dimension's duplicates after line `$1`, by line. */
export function duplicatesPageSql(dimension: 'songs' | 'users', pageSize: number): string {
  const [staged, resolved, id] =
    dimension === 'songs' ? ['mkpi_e_songs', 'mkpi_e_song', 'track_id'] : ['mkpi_e_users', 'mkpi_e_user', 'user_id'];
  return `SELECT r.line, r.${id} AS id, w.line AS first_line
    FROM ${staged} r
    JOIN ${resolved} w ON w.${id} = r.${id}
   WHERE r.line > w.line AND r.line > $1
   ORDER BY r.line
   ${limit(pageSize)}`;
}

/** One page of orphans after (file id $1, line $2), by file id and line: keyset, no row constructor. */
export function orphansPageSql(pageSize: number): string {
  return `SELECT l.file_id, l.line, l.user_id, l.track_id,
         CASE WHEN s.track_id IS NULL THEN 'unknown_track' ELSE 'unknown_user' END AS reason
    FROM mkpi_e_listens l
    LEFT JOIN mkpi_e_song s ON s.track_id = l.track_id
    LEFT JOIN mkpi_e_user u ON u.user_id = l.user_id
   WHERE (s.track_id IS NULL OR u.user_id IS NULL)
     AND (l.file_id > $1 OR (l.file_id = $1 AND l.line > $2))
   ORDER BY l.file_id, l.line
   ${limit(pageSize)}`;
}

/** What of the schema the load can read: a dry run may meet an older schema, or none. */
export interface SchemaPresence {
  ledger: boolean;
  listens: boolean;
  hourly: boolean;
  genre: boolean;
}

export async function schemaPresence(c: pg.Client, schema: string): Promise<SchemaPresence> {
  const names = ['musickpi_ledger', 'musickpi_listens', 'musickpi_listen_files', KPI_TABLE_NAMES.hourly, KPI_TABLE_NAMES.genre];
  const r = await c.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_name IN ($2, $3, $4, $5, $6)`,
    [schema, ...names],
  );
  const have = new Set(r.rows.map((x) => x.table_name));
  return {
    ledger: have.has('musickpi_ledger'),
    listens: have.has('musickpi_listens') && have.has('musickpi_listen_files'),
    hourly: have.has(KPI_TABLE_NAMES.hourly),
    genre: have.has(KPI_TABLE_NAMES.genre),
  };
}

/** The temp tables of one load's computation, created empty: the load's files and dates. */
export function computeTablesDdl(d: EngineSql): string[] {
  const pair = `file_key ${d.keyType} NOT NULL, fingerprint ${d.fingerprintType} NOT NULL`;
  return [
    ...temp('mkpi_e_gone', pair),
    ...temp('mkpi_e_new', pair),
    ...temp('mkpi_e_store', `file_id INT NOT NULL, ${pair}`),
    ...temp('mkpi_e_counted', 'file_id INT NOT NULL'),
    ...temp('mkpi_e_dates', 'listen_date DATE NOT NULL'),
    ...temp(
      'mkpi_e_complete',
      `listen_date DATE NOT NULL, listen_hour SMALLINT NOT NULL, user_id ${d.idType} NOT NULL, track_id ${d.nameType} NOT NULL, ` +
        `track_genre ${d.nameType} NOT NULL, duration_ms DOUBLE PRECISION NOT NULL, age_group SMALLINT`,
    ),
  ];
}

/**
 * The stored files that count (file ids of musickpi_listen_files): a ledger row that is not
 * retracted (or, for a file the ledger lacks, an entry of this batch), not retired or retracted
 * by this batch (mkpi_e_gone), and not staged again now (the staged listens replace them).
 */
export function countedFilesSql(d: EngineSql): string {
  const q = d.quoted;
  const on = (t: string) => `${t}.file_key = f.file_key AND ${t}.fingerprint = f.fingerprint`;
  return `INSERT INTO mkpi_e_counted (file_id)
  SELECT f.file_id
    FROM ${q}.musickpi_listen_files f
    LEFT JOIN (SELECT file_key, fingerprint, MAX(CASE WHEN retracted_at IS NULL THEN 1 ELSE 0 END) AS live
                 FROM ${q}.musickpi_ledger GROUP BY file_key, fingerprint) l ON ${on('l')}
    LEFT JOIN (SELECT DISTINCT file_key, fingerprint FROM mkpi_e_new) n ON ${on('n')}
    LEFT JOIN (SELECT DISTINCT file_key, fingerprint FROM mkpi_e_gone) g ON ${on('g')}
    LEFT JOIN (SELECT DISTINCT file_key, fingerprint FROM mkpi_e_files) s ON ${on('s')}
   WHERE g.file_key IS NULL AND s.file_key IS NULL
     AND (l.live = 1 OR (l.file_key IS NULL AND n.file_key IS NOT NULL))`;
}

/** The complete listens of the batch's dates: stored ones of counted files, then staged ones. */
export function completeSql(d: EngineSql, stored: boolean): string {
  const branches = [
    ...(stored
      ? [
          `SELECT m.listen_date, m.listen_hour, m.user_id, m.track_id
             FROM ${d.quoted}.musickpi_listens m
             JOIN mkpi_e_counted k ON k.file_id = m.file_id`,
        ]
      : []),
    'SELECT listen_date, listen_hour, user_id, track_id FROM mkpi_e_listens',
  ];
  return `INSERT INTO mkpi_e_complete (listen_date, listen_hour, user_id, track_id, track_genre, duration_ms, age_group)
  SELECT l.listen_date, l.listen_hour, u.user_id, s.track_id, s.track_genre, s.duration_ms, u.age_group
    FROM (${branches.join('\n UNION ALL\n')}) l
    JOIN mkpi_e_song s ON s.track_id = l.track_id
    JOIN mkpi_e_user u ON u.user_id = l.user_id
   WHERE l.listen_date IN (SELECT listen_date FROM mkpi_e_dates)`;
}

/** hourly_kpis rows of the dates in `datesTable` (contract §6), into `target`. */
export function hourlySql(d: EngineSql, target: string, datesTable: string): string {
  const c = `(SELECT * FROM mkpi_e_complete WHERE listen_date IN (SELECT listen_date FROM ${datesTable}))`;
  const label = `CASE g.age_group ${AGE_LABELS.map((l, i) => `WHEN ${i} THEN '${l}'`).join(' ')} END`;
  return `INSERT INTO ${target} (${HOURLY_COLUMNS.join(', ')})
  SELECT h.listen_date, h.listen_hour, h.unique_listeners, h.listen_counts, a.artist,
         CAST(h.listen_counts AS DOUBLE PRECISION) / h.unique_listeners,
         CAST(h.distinct_tracks AS DOUBLE PRECISION) / h.listen_counts,
         ${label}
    FROM (SELECT listen_date, listen_hour, COUNT(*) AS listen_counts, COUNT(DISTINCT user_id) AS unique_listeners,
                 COUNT(DISTINCT track_id) AS distinct_tracks
            FROM ${c} x GROUP BY listen_date, listen_hour) h
    LEFT JOIN (SELECT listen_date, listen_hour, artist,
                      ROW_NUMBER() OVER (PARTITION BY listen_date, listen_hour ORDER BY n DESC, artist${d.collate}) AS rn
                 FROM (SELECT x.listen_date, x.listen_hour, sa.artist, COUNT(*) AS n
                         FROM ${c} x JOIN mkpi_e_song_artist sa ON sa.track_id = x.track_id
                        GROUP BY x.listen_date, x.listen_hour, sa.artist) y) a
      ON a.listen_date = h.listen_date AND a.listen_hour = h.listen_hour AND a.rn = 1
    LEFT JOIN (SELECT listen_date, listen_hour, age_group,
                      ROW_NUMBER() OVER (PARTITION BY listen_date, listen_hour ORDER BY n DESC, age_group) AS rn
                 FROM (SELECT listen_date, listen_hour, age_group, COUNT(*) AS n
                         FROM ${c} x WHERE age_group IS NOT NULL
                        GROUP BY listen_date, listen_hour, age_group) z) g
      ON g.listen_date = h.listen_date AND g.listen_hour = h.listen_hour AND g.rn = 1`;
}

/** genre_level_kpis rows of the dates in `datesTable` (contract §7), into `target`. */
export function genreSql(d: EngineSql, target: string, datesTable: string): string {
  const c = `(SELECT * FROM mkpi_e_complete WHERE listen_date IN (SELECT listen_date FROM ${datesTable}))`;
  return `INSERT INTO ${target} (${GENRE_COLUMNS.join(', ')})
  SELECT g.listen_date, g.track_genre, g.listen_count,
         CAST(g.listen_count AS DOUBLE PRECISION) / t.total,
         g.duration_sum / g.listen_count / 1000,
         p.track_id
    FROM (SELECT listen_date, track_genre, COUNT(*) AS listen_count, SUM(duration_ms) AS duration_sum
            FROM ${c} x GROUP BY listen_date, track_genre) g
    JOIN (SELECT listen_date, COUNT(*) AS total FROM ${c} x GROUP BY listen_date) t ON t.listen_date = g.listen_date
    JOIN (SELECT listen_date, track_genre, track_id,
                 ROW_NUMBER() OVER (PARTITION BY listen_date, track_genre ORDER BY n DESC, track_id${d.collate}) AS rn
            FROM (SELECT listen_date, track_genre, track_id, COUNT(*) AS n
                    FROM ${c} x GROUP BY listen_date, track_genre, track_id) y) p
      ON p.listen_date = g.listen_date AND p.track_genre = g.track_genre AND p.rn = 1`;
}

/**
 * The batch's files' listens into musickpi_listens: stored listens of the same (file key,
 * fingerprint) go first; a new file takes the highest file id + 1 (in order of the staged ids).
 * Inside the load transaction, under the run lock. `$1` is the run id.
 */
export function storeListensSql(d: EngineSql): string[] {
  const q = d.quoted;
  return [
    `DELETE FROM ${q}.musickpi_listens
      USING ${q}.musickpi_listen_files f, mkpi_e_store s
      WHERE musickpi_listens.file_id = f.file_id AND f.file_key = s.file_key AND f.fingerprint = s.fingerprint`,
    `DELETE FROM ${q}.musickpi_listen_files
      USING mkpi_e_store s
      WHERE musickpi_listen_files.file_key = s.file_key AND musickpi_listen_files.fingerprint = s.fingerprint`,
    `INSERT INTO ${q}.musickpi_listen_files (file_id, file_key, fingerprint, rows, run_id, stored_at)
     SELECT COALESCE(m.top, 0) + ROW_NUMBER() OVER (ORDER BY s.file_id), s.file_key, s.fingerprint, COALESCE(n.n, 0),
            CAST($1 AS ${d.runIdType}), ${d.now}
       FROM mkpi_e_store s
      CROSS JOIN (SELECT MAX(file_id) AS top FROM ${q}.musickpi_listen_files) m
       LEFT JOIN (SELECT file_id, COUNT(*) AS n FROM mkpi_e_listens GROUP BY file_id) n ON n.file_id = s.file_id`,
    `INSERT INTO ${q}.musickpi_listens (${PART_COLUMNS.listens.join(', ')})
     SELECT f.file_id, l.line, l.user_id, l.track_id, l.listen_date, l.listen_hour
       FROM mkpi_e_listens l
       JOIN mkpi_e_store s ON s.file_id = l.file_id
       JOIN ${q}.musickpi_listen_files f ON f.file_key = s.file_key AND f.fingerprint = s.fingerprint`,
  ];
}

/** Bind parameters per statement: far below any protocol limit. */
const MAX_PARAMS = 6000;

/** Multi-row INSERT … VALUES in chunks (Redshift has no arrays to unnest). */
export async function insertValues(c: pg.Client, table: string, columns: readonly string[], rows: readonly unknown[][]): Promise<void> {
  const per = Math.max(1, Math.floor(MAX_PARAMS / columns.length));
  for (let i = 0; i < rows.length; i += per) {
    const values: unknown[] = [];
    const tuples = rows.slice(i, i + per).map((row) => `(${row.map((v) => (values.push(v), `$${values.length}`)).join(', ')})`);
    await c.query(`INSERT INTO ${table} (${columns.join(', ')}) VALUES ${tuples.join(', ')}`, values);
  }
}

const fileKey = (f: { fileKey: string; fingerprint: string }) => `${f.fileKey}\n${f.fingerprint}`;

function uniqueFiles<T extends { fileKey: string; fingerprint: string }>(list: readonly T[]): T[] {
  const seen = new Map<string, T>();
  for (const f of list) if (!seen.has(fileKey(f))) seen.set(fileKey(f), f);
  return [...seen.values()];
}

/** The engine's side of the shared load transaction (core/load.ts), given to the dialect's LoadDialect. */
export interface EngineLoadSteps {
  /** After the dialect's own stage tables: the computation's temp tables and what the batch says. */
  createStage(c: pg.Client): Promise<void>;
  /** The table's KPI rows into its stage table (after its dates): `onFirstRows` just before the insert ('mid-copy'). */
  compute(c: pg.Client, table: KpiTable, onFirstRows: () => Promise<void>): Promise<void>;
  /** The batch's listens stored (before the ledger is written). */
  store(c: pg.Client): Promise<void>;
}

/** What a dialect gives the shared engine. */
export interface EngineDialect {
  sql: EngineSql;
  /** The schema's name (unquoted), for catalog look-ups. */
  schema: string;
  /** COPYs every part into its table of PART_TABLES (created empty, on this session). */
  copyParts(c: pg.Client, input: EngineStageInput): Promise<void>;
  /** The one load transaction (runLoad on this session), with the engine's steps woven in. */
  load(conn: Conn, batch: LoadBatch, steps: EngineLoadSteps): Promise<LoadResult>;
  /** After close(): whatever staging left outside the session. Never throws. */
  finish?(): Promise<void>;
}

export interface EngineOptions {
  /** Rows per page of rejects(); default ENGINE_PAGE_SIZE. */
  pageSize?: number;
}

/** One run's session: the parts, the resolved dimensions and the load, on one connection held throughout. */
export class SqlEngine implements WarehouseEngine {
  private staged = false;
  private closed = false;
  private readonly pageSize: number;

  constructor(
    private readonly db: Connections,
    private readonly conn: Conn,
    private readonly loading: Set<Conn>,
    private readonly dialect: EngineDialect,
    opts: EngineOptions = {},
  ) {
    this.pageSize = opts.pageSize ?? ENGINE_PAGE_SIZE;
  }

  private get c(): pg.Client {
    if (this.closed) throw new MkpiError('MKPI_INTERNAL', 'warehouse engine used after close()');
    return this.conn.client;
  }

  private async run(what: string, fn: (c: pg.Client) => Promise<unknown>): Promise<void> {
    try {
      await fn(this.c);
    } catch (err) {
      throw this.db.toError(err, what);
    }
  }

  async stage(input: EngineStageInput): Promise<EngineStaged> {
    const d = this.dialect.sql;
    let result: EngineStaged | undefined;
    await this.run('staging the normalized parts', async (c) => {
      for (const s of partTablesDdl(d)) await c.query(s);
      await insertValues(
        c,
        'mkpi_e_files',
        ['file_id', 'file_key', 'fingerprint'],
        input.files.map((f) => [f.id, f.fileKey, f.fingerprint]),
      );
      await this.dialect.copyParts(c, input);
      for (const s of resolveSql(d)) await c.query(s);
      const dims = (await c.query<Record<string, string | number>>(DIMENSION_COUNTS_SQL)).rows[0];
      const counts = await c.query<{ file_id: number; unknown_track: string; unknown_user: string; complete: string }>(FILE_COUNTS_SQL);
      const orphans = new Map<number, { unknown_track: number; unknown_user: number }>();
      const complete = new Map<number, number>();
      for (const f of input.files) {
        orphans.set(f.id, { unknown_track: 0, unknown_user: 0 });
        complete.set(f.id, 0);
      }
      for (const r of counts.rows) {
        const id = Number(r.file_id);
        orphans.set(id, { unknown_track: Number(r.unknown_track), unknown_user: Number(r.unknown_user) });
        complete.set(id, Number(r.complete));
      }
      const songsValid = Number(dims.songs_valid);
      const usersValid = Number(dims.users_valid);
      result = {
        songs: { valid: songsValid, duplicates: songsValid - Number(dims.songs_resolved) },
        users: { valid: usersValid, duplicates: usersValid - Number(dims.users_resolved) },
        orphans,
        complete,
      };
    });
    this.staged = true;
    return result!;
  }

  private requireStaged(): void {
    if (!this.staged) throw new MkpiError('MKPI_INTERNAL', 'warehouse engine: stage() has not run');
  }

  async *rejects(): AsyncIterable<EngineReject> {
    this.requireStaged();
    for (const dimension of ['songs', 'users'] as const) {
      let after = 0;
      for (;;) {
        let rows: { line: string | number; id: string; first_line: string | number }[] = [];
        await this.run('reading the duplicate dimension rows', async (c) => {
          rows = (await c.query<(typeof rows)[number]>(duplicatesPageSql(dimension, this.pageSize), [after])).rows;
        });
        for (const r of rows) yield { kind: 'duplicate', dimension, line: Number(r.line), id: r.id, firstLine: Number(r.first_line) };
        if (rows.length < this.pageSize) break;
        after = Number(rows[rows.length - 1].line);
      }
    }
    let file = 0;
    let line = 0;
    for (;;) {
      let rows: { file_id: number; line: string | number; user_id: string; track_id: string; reason: 'unknown_track' | 'unknown_user' }[] =
        [];
      await this.run('reading the orphan rows', async (c) => {
        rows = (await c.query<(typeof rows)[number]>(orphansPageSql(this.pageSize), [file, line])).rows;
      });
      for (const r of rows) {
        yield { kind: 'orphan', fileId: Number(r.file_id), line: Number(r.line), reason: r.reason, userId: r.user_id, trackId: r.track_id };
      }
      if (rows.length < this.pageSize) break;
      file = Number(rows[rows.length - 1].file_id);
      line = Number(rows[rows.length - 1].line);
    }
  }

  async storedFiles(files: { fileKey: string; fingerprint: string }[]): Promise<Set<string>> {
    const found = new Set<string>();
    const list = uniqueFiles(files);
    if (list.length === 0) return found;
    await this.run('reading which files have their listens stored', async (c) => {
      if (!(await schemaPresence(c, this.dialect.schema)).listens) return;
      const per = 500;
      for (let i = 0; i < list.length; i += per) {
        const chunk = list.slice(i, i + per);
        const where = chunk.map((_, j) => `(file_key = $${2 * j + 1} AND fingerprint = $${2 * j + 2})`).join(' OR ');
        const r = await c.query<{ file_key: string; fingerprint: string }>(
          `SELECT DISTINCT file_key, fingerprint FROM ${this.dialect.sql.quoted}.musickpi_listen_files WHERE ${where}`,
          chunk.flatMap((f) => [f.fileKey, f.fingerprint]),
        );
        for (const row of r.rows) found.add(`${row.file_key}\n${row.fingerprint}`);
      }
    });
    return found;
  }

  /** The batch's files and dates into the computation's temp tables, then the complete listens. */
  private async prepareCompute(c: pg.Client, batch: EngineLoadBatch, presence: SchemaPresence): Promise<void> {
    const d = this.dialect.sql;
    for (const s of computeTablesDdl(d)) await c.query(s);
    const pairs = (list: { fileKey: string; fingerprint: string }[]) => uniqueFiles(list).map((f) => [f.fileKey, f.fingerprint]);
    await insertValues(c, 'mkpi_e_gone', ['file_key', 'fingerprint'], pairs([...(batch.retire ?? []), ...(batch.retract ?? [])]));
    await insertValues(c, 'mkpi_e_new', ['file_key', 'fingerprint'], pairs(batch.ledger));
    await insertValues(
      c,
      'mkpi_e_store',
      ['file_id', 'file_key', 'fingerprint'],
      uniqueFiles(batch.store).map((f: EngineFile) => [f.id, f.fileKey, f.fingerprint]),
    );
    const dates = [...new Set([...(batch.hourly ?? []), ...(batch.genre ?? [])])].map((x) => [x]);
    await insertValues(c, 'mkpi_e_dates', ['listen_date'], dates);
    const stored = presence.listens && presence.ledger;
    if (stored) await c.query(countedFilesSql(d));
    await c.query(completeSql(d, stored));
  }

  async load(batch: EngineLoadBatch): Promise<LoadResult> {
    this.requireStaged();
    if (batch.dryRun) return this.dryLoad(batch);
    // A real load runs after init(); a schema from before the engine gets its tables from there.
    let presence: SchemaPresence | undefined;
    await this.run('checking the warehouse schema', async (c) => {
      presence = await schemaPresence(c, this.dialect.schema);
    });
    if (!presence!.listens) {
      throw new MkpiError('MKPI_CONFIG', `schema ${this.dialect.schema} has no musickpi_listens table for the warehouse engine`, {
        hint: 'run musickpi init (it adds the table to an existing schema)',
      });
    }
    const steps: EngineLoadSteps = {
      createStage: (c) => this.prepareCompute(c, batch, presence!),
      compute: async (c, table, onFirstRows) => {
        await onFirstRows();
        const d = this.dialect.sql;
        await c.query(
          table === 'hourly'
            ? hourlySql(d, 'musickpi_stage_hourly', 'musickpi_stage_hourly_dates')
            : genreSql(d, 'musickpi_stage_genre', 'musickpi_stage_genre_dates'),
        );
      },
      store: async (c) => {
        if (batch.store.length === 0) return;
        for (const s of storeListensSql(this.dialect.sql)) await c.query(s, s.includes('$1') ? [batch.runId] : []);
      },
    };
    const loadBatch: LoadBatch = {
      runId: batch.runId,
      ...(batch.hourly ? { hourly: { dates: batch.hourly, rows: [] } } : {}),
      ...(batch.genre ? { genre: { dates: batch.genre, rows: [] } } : {}),
      ledger: batch.ledger,
      retire: batch.retire,
      retract: batch.retract,
      onStep: batch.onStep,
    };
    return this.dialect.load(this.conn, loadBatch, steps);
  }

  /** Computes into temp tables inside a transaction that is rolled back: counts only, nothing written, no lock taken. */
  private async dryLoad(batch: EngineLoadBatch): Promise<LoadResult> {
    const result: LoadResult = { hourlyRowsWritten: 0, genreRowsWritten: 0, hourlyRowsDeleted: 0, genreRowsDeleted: 0 };
    const d = this.dialect.sql;
    await this.run('computing the KPIs (dry run)', async (c) => {
      await c.query('BEGIN');
      try {
        const presence = await schemaPresence(c, this.dialect.schema);
        await this.prepareCompute(c, batch, presence);
        for (const table of ['hourly', 'genre'] as const) {
          const dates = batch[table];
          if (!dates) continue;
          const cols = table === 'hourly' ? HOURLY_COLUMNS : GENRE_COLUMNS;
          const types: Record<string, string> = {
            listen_date: 'DATE',
            listen_hour: 'INT',
            unique_listeners: 'INT',
            listen_counts: 'INT',
            listen_count: 'INT',
            top_artist: d.nameType,
            most_engaged_age_group: d.nameType,
            track_genre: d.nameType,
            most_popular_track_id: d.nameType,
          };
          for (const s of temp(`mkpi_e_dry_${table}`, cols.map((col) => `${col} ${types[col] ?? 'DOUBLE PRECISION'}`).join(', '))) {
            await c.query(s);
          }
          for (const s of temp(`mkpi_e_dry_${table}_dates`, 'listen_date DATE NOT NULL')) await c.query(s);
          await insertValues(
            c,
            `mkpi_e_dry_${table}_dates`,
            ['listen_date'],
            [...new Set(dates)].map((x) => [x]),
          );
          const build = table === 'hourly' ? hourlySql : genreSql;
          const written = (await c.query(build(d, `mkpi_e_dry_${table}`, `mkpi_e_dry_${table}_dates`))).rowCount ?? 0;
          let deleted = 0;
          if (presence[table]) {
            const r = await c.query<{ n: string | number }>(
              `SELECT COUNT(*) AS n FROM ${d.quoted}.${KPI_TABLE_NAMES[table]} t JOIN mkpi_e_dry_${table}_dates x ON x.listen_date = t.listen_date`,
            );
            deleted = Number(r.rows[0].n);
          }
          if (table === 'hourly') {
            result.hourlyRowsWritten = written;
            result.hourlyRowsDeleted = deleted;
          } else {
            result.genreRowsWritten = written;
            result.genreRowsDeleted = deleted;
          }
        }
      } finally {
        await c.query('ROLLBACK').catch(() => undefined);
      }
    });
    return result;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.loading.delete(this.conn);
    // The temp tables go with the session.
    await this.conn.client.end().catch(() => undefined);
    await this.dialect.finish?.();
  }
}
