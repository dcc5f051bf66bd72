// `musickpi query`: the user's SQL on a session whose search path starts at the warehouse
// schema, the last statement's result returned with its command tag and row count.

import type pg from 'pg';
import { MkpiError } from '../../../domain/errors.js';
import { type QueryResult } from '../../../domain/warehouse.js';

/** Runs `sql` after setting the search path (the previous statement may have changed it: the SQL is the user's). */
export async function runUserQuery(c: pg.Client, quoted: string, schema: string, sql: string): Promise<QueryResult> {
  await c.query(`SET search_path TO ${quoted}, public`);
  const res = (await c.query({ text: sql, rowMode: 'array' }).catch((err: unknown) => {
    throw statementError(err, schema) ?? err;
  })) as pg.QueryResult<unknown[]> | pg.QueryResult<unknown[]>[];
  // Several statements yield one result each; the last one is what a user expects to see.
  const last = Array.isArray(res) ? res[res.length - 1] : res;
  return {
    columns: (last?.fields ?? []).map((f) => f.name),
    rows: last?.rows ?? [],
    // pg leaves both null for an empty statement.
    command: last?.command ?? '',
    rowCount: last?.rowCount ?? null,
  };
}

/**
 * An error in the user's statement (bad syntax, an unknown table or column, a type error) is a
 * usage error with a hint fitting its SQLSTATE; connection and server troubles are not.
 */
export function statementError(err: unknown, schema: string): MkpiError | undefined {
  const code = (err as { code?: unknown })?.code;
  if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code) || /^(08|53|57|58|XX)/.test(code)) return undefined;
  const position = (err as { position?: unknown }).position;
  const at = typeof position === 'string' && position ? ` (at character ${position})` : '';
  const hints: Record<string, string> = {
    '42601': 'check the statement near the position given; quote it in single quotes in the shell',
    '42P01': `the KPI tables are hourly_kpis and genre_level_kpis in schema ${schema} (created by a first run or \`musickpi init\`); --schema picks another`,
    '42703': 'see the columns with: musickpi query "select * from hourly_kpis limit 1"',
    '3F000': 'the schema does not exist yet: run `musickpi init`, or pick another with --schema',
  };
  const message = err instanceof Error ? err.message : String(err);
  return new MkpiError('MKPI_USAGE', `${message}${at}`, {
    hint: hints[code] ?? (code.startsWith('42') ? 'check the statement: names, types and permissions' : undefined),
    cause: err,
    details: { sqlstate: code },
  });
}
