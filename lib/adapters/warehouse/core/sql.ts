// The schema name and the sql/ files of each dialect: the only SQL text spliced together
// rather than parameterised, so the schema name is validated before it gets anywhere near it.

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { MkpiError } from '../../../domain/errors.js';

const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** Validates a schema name and returns it quoted, ready to splice into SQL. */
export function quoteSchema(name: string): string {
  if (typeof name !== 'string' || !SCHEMA_NAME.test(name)) {
    throw new MkpiError('MKPI_CONFIG', `invalid warehouse schema name ${JSON.stringify(String(name))}`, {
      hint: 'a schema name is a letter or "_" followed by up to 62 letters, digits or "_"',
    });
  }
  // System schemas pass the pattern but must never receive KPI tables (or fail obscurely later).
  if (/^pg_/i.test(name) || name.toLowerCase() === 'information_schema') {
    throw new MkpiError('MKPI_CONFIG', `schema ${JSON.stringify(name)} is reserved by PostgreSQL`, {
      hint: 'pick a schema of your own, e.g. the default reporting_schema',
    });
  }
  // Quoted even though the pattern admits no quote: a reserved word ("user") stays usable,
  // and the name keeps its case exactly as configured.
  return `"${name}"`;
}

/** The folders of sql/, one per dialect. */
export type SqlDialect = 'postgres' | 'redshift';

let sqlDirCache: string | undefined;

/** The package's sql/ folder, found from this module both under lib/ (tsx) and dist/lib/ (built). */
export function sqlDir(): string {
  if (sqlDirCache) return sqlDirCache;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  // dist/lib/adapters/warehouse/core/ is five levels below the package root; one to spare.
  for (let i = 0; i < 7; i++) {
    const candidate = path.join(dir, 'sql');
    if (existsSync(path.join(candidate, 'postgres', 'init.sql'))) {
      sqlDirCache = candidate;
      return candidate;
    }
    dir = path.dirname(dir);
  }
  throw new MkpiError('MKPI_INTERNAL', 'cannot find the sql/ folder of the musickpi package');
}

const sqlText = new Map<string, string>();

/** sql/<dialect>/<name>.sql with every {{schema}} replaced by the validated, quoted schema name. */
export function renderTemplate(dialect: SqlDialect, name: string, schema: string): string {
  const quoted = quoteSchema(schema);
  const file = `${dialect}/${name}.sql`;
  let text = sqlText.get(file);
  if (text === undefined) {
    text = readFileSync(path.join(sqlDir(), file), 'utf8');
    sqlText.set(file, text);
  }
  return text.replaceAll('{{schema}}', quoted);
}

/**
 * The statements of a rendered file, comments dropped. The files are ours: a statement ends
 * with ";" at the end of a line, and no literal in them holds one.
 */
export function statements(text: string): string[] {
  return text
    .split('\n')
    .filter((line) => !/^\s*--/.test(line))
    .join('\n')
    .split(/;[ \t]*(?:\n|$)/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** The row count of each statement of a multi-statement query, in order. */
export async function multi(c: pg.Client, sql: string): Promise<number[]> {
  const res = (await c.query(sql)) as pg.QueryResult | pg.QueryResult[];
  const list = Array.isArray(res) ? res : [res];
  return list.map((r) => r.rowCount ?? 0);
}
