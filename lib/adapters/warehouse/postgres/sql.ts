// PostgreSQL's SQL files (sql/postgres/). The schema name rules are shared (core/sql.ts).

import { renderTemplate } from '../core/sql.js';

export { multi, quoteSchema } from '../core/sql.js';

export type SqlName = 'init' | 'stage' | 'merge-hourly' | 'merge-genre' | 'upsert-ledger' | 'upsert-ledger-dates';

/** A file of sql/postgres/ with every {{schema}} replaced by the validated, quoted schema name. */
export function renderSql(name: SqlName, schema: string): string {
  return renderTemplate('postgres', name, schema);
}
