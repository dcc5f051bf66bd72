// The differential check: the KPI tables musickpi loads into PostgreSQL against the DuckDB peer's
// (spec §6: integers and strings exactly, floats within a relative 1e-9).

import pg from 'pg';

export type Row = Record<string, string | number | null>;

export const HOURLY_KEY = ['listen_date', 'listen_hour'];
export const GENRE_KEY = ['listen_date', 'track_genre'];
export const FLOATS = new Set(['avg_sessions_per_user', 'diversity_index', 'popularity_index', 'average_duration']);

export async function tableRows(url: string, table: 'hourly_kpis' | 'genre_level_kpis'): Promise<Row[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const r = await client.query(`SELECT *, listen_date::text AS listen_date FROM reporting_schema.${table}`);
    return r.rows as Row[];
  } finally {
    await client.end();
  }
}

/** Differences between two KPI tables (spec §6: floats within a relative 1e-9), at most `limit`. */
export function diffTables(name: string, key: string[], ours: Row[], theirs: Row[], limit = 10): { diffs: string[]; maxRel: number } {
  const diffs: string[] = [];
  let maxRel = 0;
  const k = (r: Row) => key.map((c) => String(r[c])).join(' | ');
  const a = new Map(ours.map((r) => [k(r), r]));
  const b = new Map(theirs.map((r) => [k(r), r]));
  for (const [id, ra] of a) {
    const rb = b.get(id);
    if (!rb) {
      diffs.push(`${name} [${id}]: only in musickpi`);
      continue;
    }
    for (const col of Object.keys(rb)) {
      const x = ra[col];
      const y = rb[col];
      if (FLOATS.has(col)) {
        const rel = Math.abs(Number(x) - Number(y)) / Math.max(Math.abs(Number(x)), Math.abs(Number(y)), Number.MIN_VALUE);
        maxRel = Math.max(maxRel, rel);
        if (!(rel <= 1e-9)) diffs.push(`${name} [${id}] ${col}: musickpi ${x}, DuckDB ${y}`);
      } else if (String(x ?? null) !== String(y ?? null)) {
        diffs.push(`${name} [${id}] ${col}: musickpi ${JSON.stringify(x)}, DuckDB ${JSON.stringify(y)}`);
      }
    }
  }
  for (const id of b.keys()) if (!a.has(id)) diffs.push(`${name} [${id}]: only in DuckDB`);
  return { diffs: diffs.slice(0, limit).concat(diffs.length > limit ? [`… ${diffs.length - limit} more`] : []), maxRel };
}
