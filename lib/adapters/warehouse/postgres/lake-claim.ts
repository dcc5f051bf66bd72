// Which lake the ledger belongs to: one row in musickpi_lake. Two lakes loading into one
// schema would each see the other's files in the ledger and skip or retire them.

import type pg from 'pg';
import { MkpiError, redact } from '../../../domain/errors.js';
import { errCode } from '../core/errors.js';

/**
 * Added after the first release, so init() creates it in older schemas too. The constant key
 * makes "one row" a constraint, and lets concurrent first claims race on it harmlessly.
 */
export function lakeTableDdl(quoted: string): string {
  return `CREATE TABLE IF NOT EXISTS ${quoted}.musickpi_lake (
    id         BOOLEAN     NOT NULL DEFAULT TRUE PRIMARY KEY CHECK (id),
    lake       TEXT        NOT NULL,
    claimed_at TIMESTAMPTZ NOT NULL DEFAULT now()
  )`;
}

/** 42P01 undefined_table, 3F000 invalid_schema_name: nothing initialised, hence nothing claimed. */
function isMissing(err: unknown): boolean {
  const code = errCode(err);
  return code === '42P01' || code === '3F000';
}

export async function lakeClaim(c: pg.Client, quoted: string): Promise<string | null> {
  try {
    const r = await c.query<{ lake: string }>(`SELECT lake FROM ${quoted}.musickpi_lake WHERE id`);
    return r.rows[0]?.lake ?? null;
  } catch (err) {
    if (isMissing(err)) return null;
    throw err;
  }
}

export async function claimLake(c: pg.Client, schema: string, quoted: string, lake: string, opts: { adopt?: boolean }): Promise<void> {
  if (typeof lake !== 'string' || lake === '') throw new MkpiError('MKPI_INTERNAL', 'claimLake needs a lake');
  let held: string | null;
  try {
    // Two statements, not one: the re-read takes a fresh snapshot, so it sees the row of a
    // concurrent claim that won the insert (ON CONFLICT waited for it to commit).
    await c.query(`INSERT INTO ${quoted}.musickpi_lake (id, lake) VALUES (TRUE, $1) ON CONFLICT (id) DO NOTHING`, [lake]);
    held = await lakeClaim(c, quoted);
  } catch (err) {
    if (isMissing(err)) throw new MkpiError('MKPI_INTERNAL', `the lake of schema ${schema} is recorded by init(), which has not run`);
    throw err;
  }
  if (held === lake) return;
  if (held !== null && !opts.adopt) {
    throw new MkpiError('MKPI_CONFIG', `schema ${schema} holds the ledger of lake ${redact(held)}; this run's lake is ${redact(lake)}`, {
      hint: 'give this lake its own --schema, or pass --adopt-lake if the lake moved',
      details: { schema, claimedLake: redact(held), lake: redact(lake) },
    });
  }
  // Adopting, or the row vanished between the two statements (deleted by hand): take it.
  await c.query(
    `INSERT INTO ${quoted}.musickpi_lake (id, lake) VALUES (TRUE, $1)
       ON CONFLICT (id) DO UPDATE SET lake = EXCLUDED.lake, claimed_at = now()`,
    [lake],
  );
}
