// COPY into the session-local stage tables. CSV for COPY ... WITH (FORMAT csv): an unquoted
// empty field is NULL, so every string is quoted (an empty string stays an empty string, and a
// lone "\." is not the end marker).

import { Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { createRequire } from 'node:module';
import type pg from 'pg';
import type PgCopy from 'pg-copy-streams';
import { type GenreRow, type HourlyRow, type KpiTable } from '../../../domain/kpi.js';
import { PART_COLUMNS, type PartKind } from '../../../domain/shards.js';
import { type EngineStageInput } from '../../../domain/warehouse.js';
import type * as Engine from '../core/engine.js';

let copyModule: typeof PgCopy | undefined;

/** pg-copy-streams, loaded by the first COPY: a dry run, or any command that loads nothing, never needs it. */
function pgCopy(): typeof PgCopy {
  copyModule ??= createRequire(import.meta.url)('pg-copy-streams') as typeof PgCopy;
  return copyModule;
}

/** The warehouse engine's part tables; its module loads with the engine's first COPY. */
function partTables(): typeof Engine.PART_TABLES {
  return (createRequire(import.meta.url)('../core/engine.js') as typeof Engine).PART_TABLES;
}

export function csvField(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') return String(value); // shortest round-trip; NaN/Infinity as float8 spells them
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'boolean') return value ? 't' : 'f';
  const s = typeof value === 'string' ? value : JSON.stringify(value);
  return `"${s.replaceAll('"', '""')}"`;
}

const CHUNK_CHARS = 64 * 1024;

/** CSV text for COPY, in chunks big enough that per-chunk stream overhead does not matter. */
export function* csvChunks<R>(rows: Iterable<R>, columns: readonly (keyof R & string)[]): Generator<string> {
  let buf = '';
  for (const row of rows) {
    let line = '';
    for (let i = 0; i < columns.length; i++) {
      if (i > 0) line += ',';
      line += csvField(row[columns[i]]);
    }
    buf += line + '\n';
    if (buf.length >= CHUNK_CHARS) {
      yield buf;
      buf = '';
    }
  }
  if (buf.length > 0) yield buf;
}

/** Fills the stage tables of one KPI table: its covered dates, then its rows through COPY. */
export async function stage<R extends HourlyRow | GenreRow>(
  c: pg.Client,
  table: KpiTable,
  dates: string[],
  rows: R[],
  columns: readonly (keyof R & string)[],
  onFirstChunk?: () => Promise<void>,
): Promise<void> {
  await c.query(`INSERT INTO musickpi_stage_${table}_dates (listen_date) SELECT DISTINCT unnest($1::date[])`, [dates]);
  if (rows.length === 0) return;
  const copy = c.query(pgCopy().from(`COPY musickpi_stage_${table} (${columns.join(', ')}) FROM STDIN WITH (FORMAT csv)`));
  const chunks = csvChunks(rows, columns);
  if (onFirstChunk) {
    // The first chunk goes out on its own; its write callback fires once the server has
    // answered the COPY and the bytes are on the socket. Then the step runs mid-COPY.
    const first = chunks.next();
    if (!first.done) {
      const early = new Promise<never>((_, reject) => copy.once('error', reject));
      early.catch(() => undefined);
      try {
        await Promise.race([
          new Promise<void>((resolve, reject) => copy.write(first.value, (err) => (err ? reject(err) : resolve()))),
          early,
        ]);
        await Promise.race([onFirstChunk(), early]);
      } catch (err) {
        // Abandon the COPY (CopyFail) and wait for the server's answer before load()'s ROLLBACK.
        if (!copy.destroyed) copy.destroy(err instanceof Error ? err : new Error(String(err)));
        await finished(copy).catch(() => undefined);
        throw err;
      }
    }
  }
  // A throw inside the generator destroys the COPY stream, which sends CopyFail: the
  // server aborts the COPY and the transaction, and the catch in load() rolls back.
  await pipeline(Readable.from(chunks), copy);
}

/**
 * The warehouse engine's parts into the session's stage tables, one COPY FROM STDIN per part,
 * gunzipped on the way. The parts are CSV as COPY … (FORMAT csv) reads it: an unquoted empty
 * field (an unknown age group) is NULL, and no other field of a part is empty.
 */
export async function copyParts(c: pg.Client, input: EngineStageInput): Promise<void> {
  for (const kind of ['songs', 'artists', 'users', 'listens'] as PartKind[]) {
    for (const part of input.parts[kind]) {
      const body = await input.read(part.key, input.signal);
      const copy = c.query(pgCopy().from(`COPY ${partTables()[kind]} (${PART_COLUMNS[kind].join(', ')}) FROM STDIN WITH (FORMAT csv)`));
      await pipeline(body, createGunzip(), copy, ...(input.signal ? [{ signal: input.signal }] : []));
    }
  }
}
