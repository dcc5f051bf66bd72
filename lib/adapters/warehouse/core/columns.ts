// Tables made by an older tool under the same names would silently take wrong data: before
// anything is loaded, every table must have the columns and types musickpi writes.

import { MkpiError } from '../../../domain/errors.js';

/** Column name → data_type as information_schema.columns spells it, per table. */
export type ExpectedColumns = Record<string, Record<string, string>>;

/** The KPI tables as the original DAG's DDL made them, and as both dialects check them. */
export const KPI_EXPECTED_COLUMNS: ExpectedColumns = {
  hourly_kpis: {
    listen_date: 'date',
    listen_hour: 'integer',
    unique_listeners: 'integer',
    listen_counts: 'integer',
    top_artist: 'character varying',
    avg_sessions_per_user: 'double precision',
    diversity_index: 'double precision',
    most_engaged_age_group: 'character varying',
  },
  genre_level_kpis: {
    listen_date: 'date',
    track_genre: 'character varying',
    listen_count: 'integer',
    popularity_index: 'double precision',
    average_duration: 'double precision',
    most_popular_track_id: 'character varying',
  },
};

export interface ActualColumn {
  table_name: string;
  column_name: string;
  data_type: string;
}

/** Throws MKPI_CONFIG naming every difference of the first table that differs. */
export function checkColumns(actual: ActualColumn[], expected: ExpectedColumns, schema: string): void {
  for (const [table, columns] of Object.entries(expected)) {
    const have = new Map(actual.filter((x) => x.table_name === table).map((x) => [x.column_name, x.data_type]));
    const problems: string[] = [];
    for (const [col, type] of Object.entries(columns)) {
      const t = have.get(col);
      if (t === undefined) problems.push(`missing column ${col}`);
      else if (t !== type) problems.push(`column ${col} is ${t}, expected ${type}`);
    }
    if (problems.length > 0) {
      throw new MkpiError('MKPI_CONFIG', `table ${schema}.${table} exists but differs: ${problems.join('; ')}`, {
        hint: 'rename or drop the old table, or point musickpi at another schema',
      });
    }
  }
}
