// Which lake the ledger belongs to, on Redshift: one row in musickpi_lake, kept to one by a
// LOCK around every write (no ON CONFLICT, and keys are not enforced).

import type pg from 'pg';
import { MkpiError, redact } from '../../../domain/errors.js';
import { errCode } from '../core/errors.js';
import { lockedTransaction, type ConflictRetry, type Timeouts } from './tx.js';

/** 42P01 undefined_table, 3F000 invalid_schema_name: nothing initialised, hence nothing claimed. */
function isMissing(err: unknown): boolean {
  const code = errCode(err);
  return code === '42P01' || code === '3F000';
}

async function readClaim(c: pg.Client, quoted: string): Promise<string | null> {
  const r = await c.query<{ lake: string }>(`SELECT lake FROM ${quoted}.musickpi_lake ORDER BY claimed_at DESC LIMIT 1`);
  return r.rows[0]?.lake ?? null;
}

export async function lakeClaim(c: pg.Client, quoted: string): Promise<string | null> {
  try {
    return await readClaim(c, quoted);
  } catch (err) {
    if (isMissing(err)) return null;
    throw err;
  }
}

export async function claimLake(
  c: pg.Client,
  schema: string,
  quoted: string,
  lake: string,
  opts: { adopt?: boolean },
  t: Timeouts,
  retry: ConflictRetry,
): Promise<void> {
  if (typeof lake !== 'string' || lake === '') throw new MkpiError('MKPI_INTERNAL', 'claimLake needs a lake');
  const table = `${quoted}.musickpi_lake`;
  try {
    await lockedTransaction(c, [table], t, retry, async (tx) => {
      const held = await readClaim(tx, quoted);
      if (held === lake) return;
      if (held !== null && !opts.adopt) {
        throw new MkpiError(
          'MKPI_CONFIG',
          `schema ${schema} holds the ledger of lake ${redact(held)}; this run's lake is ${redact(lake)}`,
          {
            hint: 'give this lake its own --schema, or pass --adopt-lake if the lake moved',
            details: { schema, claimedLake: redact(held), lake: redact(lake) },
          },
        );
      }
      if (held !== null) await tx.query(`DELETE FROM ${table}`);
      await tx.query(`INSERT INTO ${table} (id, lake, claimed_at) VALUES (TRUE, $1, GETDATE())`, [lake]);
    });
  } catch (err) {
    if (isMissing(err)) throw new MkpiError('MKPI_INTERNAL', `the lake of schema ${schema} is recorded by init(), which has not run`);
    throw err;
  }
}
