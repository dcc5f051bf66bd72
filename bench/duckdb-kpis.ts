// The peer engine of the benchmark: the KPIs of docs/kpi-spec (spec §2-§5) in DuckDB SQL, as a
// data engineer would write them, over the same lake folder. Run as a child process by
// bench/run.ts: `node dist/bench/duckdb-kpis.js --lake DIR [--threads 2] [--out FILE] [--simple]` (--simple: the
// simplest user query instead, simpleSql below).
// Writes {hourly, genre, completeRows} as JSON to --out (or nothing), and its timings to stderr.
//
// What it implements of the validation rules: everything that decides whether a row is
// complete (trimmed IDs, the dimension rules, first duplicate wins, the listen_time grammar and
// calendar checks, UTC conversion), so that its tables must equal musickpi's on any lake whose
// CSV DuckDB reads the way spec §1 does. It does not produce rejects. Ties use DuckDB's default
// (binary) string order, which on UTF-8 is code point order, as the spec's ordinal order is.
// Measured choices are noted where they are made: it is meant to be a fair, fast peer.

import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';

/** The characters String.prototype.trim removes (WhiteSpace and LineTerminator of ECMA-262). */
const JS_WHITESPACE =
  '\t\n\u000b\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff';

const sqlString = (s: string) => `'${s.replace(/'/g, "''")}'`;
/** An RE2 class of the same characters. */
const WS_CLASS = `[\\s\\x{0b}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}\\x{feff}]`;
/** Read options: every column as text, RFC 4180 quoting, rows with the wrong field count skipped (they are rejects). */
const CSV = `header = true, all_varchar = true, delim = ',', quote = '"', escape = '"', ignore_errors = true`;

const ZONE = `'([+-])([0-9]{2}):?([0-9]{2})$'`;

/** Macros the queries share. */
const MACROS = [
  // JS's trim() (spec §2: values are trimmed), NULL (an empty CSV field) as ''. DuckDB's
  // trim(x, chars) costs ~1.5 µs a value with this set, so values that start and end with no
  // whitespace (nearly all) skip it.
  `CREATE TEMP MACRO js_trim(x) AS (
    CASE WHEN x IS NULL THEN ''
         WHEN regexp_matches(x, '^${WS_CLASS}|${WS_CLASS}$') THEN trim(x, ${sqlString(JS_WHITESPACE)})
         ELSE x END)`,
  // listen_time (spec §2) in full: trimmed, the grammar, the calendar and clock ranges, the zone
  // offset; the UTC hour key (epoch day * 24 + hour), NULL when invalid.
  `CREATE TEMP MACRO full_hour_key(lt) AS (
    CASE WHEN regexp_full_match(lt, '[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:?[0-9]{2})?')
          AND substr(lt, 1, 4) <> '0000'
          AND try_cast(substr(lt, 1, 10) AS DATE) IS NOT NULL
          AND try_cast(substr(lt, 12, 2) AS INT) <= 23 AND try_cast(substr(lt, 15, 2) AS INT) <= 59
          AND try_cast(substr(lt, 18, 2) AS INT) <= 59
          AND (NOT regexp_matches(lt, ${ZONE})
               OR (try_cast(regexp_extract(lt, ${ZONE}, 2) AS INT) <= 23 AND try_cast(regexp_extract(lt, ${ZONE}, 3) AS INT) <= 59))
    THEN CAST(floor((
           (date_diff('day', DATE '1970-01-01', try_cast(substr(lt, 1, 10) AS DATE)) * 24 + try_cast(substr(lt, 12, 2) AS INT)) * 60
           + try_cast(substr(lt, 15, 2) AS INT)
           - CASE regexp_extract(lt, ${ZONE}, 1) WHEN '+' THEN 1 WHEN '-' THEN -1 ELSE 0 END
             * coalesce(try_cast(regexp_extract(lt, ${ZONE}, 2) AS INT) * 60 + try_cast(regexp_extract(lt, ${ZONE}, 3) AS INT), 0)
         ) / 60) AS BIGINT)
    END)`,
  // The fast path first: a value that is exactly the canonical rendering of a timestamp
  // ('YYYY-MM-DD HH:MM:SS', or with a T) is valid by construction, and most values are. (DuckDB's
  // cast alone is lenient: it takes '2024-06-01 1:00:00 ' or 24:00:00, hence the round trip.)
  // ts is try_cast(raw AS TIMESTAMP) for 19-character values, computed once by the caller.
  `CREATE TEMP MACRO hour_key(raw, ts) AS (
    CASE WHEN coalesce(strftime(ts, '%Y-%m-%d %H:%M:%S') = replace(raw, 'T', ' '), false)
         THEN CAST(floor(epoch(ts) / 3600) AS BIGINT)
         ELSE full_hour_key(js_trim(raw)) END)`,
];

export function kpiSql(lake: string): string[] {
  const path = (p: string) => sqlString(resolve(lake, p));
  const T = (x: string) => `js_trim(${x})`;
  return [
    ...MACROS,
    // Songs (spec §2): invalid rows out, then the first row of each track_id wins.
    `CREATE TEMP TABLE songs_raw AS SELECT * FROM read_csv(${path('songs.csv')}, ${CSV})`,
    `CREATE TEMP TABLE songs AS
      WITH s AS (
        SELECT rowid AS rn, ${T('track_id')} AS track_id, ${T('track_genre')} AS genre, ${T('duration_ms')} AS dur,
               list_distinct(list_filter(list_transform(string_split(coalesce(artists, ''), ';'), a -> ${T('a')}), a -> a <> '')) AS artist_list
        FROM songs_raw)
      SELECT CAST(row_number() OVER () AS INT) AS sid, track_id, genre, CAST(dur AS DOUBLE) AS duration_ms, artist_list FROM (
      SELECT * FROM s
      WHERE track_id <> '' AND genre <> '' AND regexp_full_match(dur, '[0-9]+(\\.[0-9]+)?')
        AND length(track_id) <= 255 AND length(genre) <= 255 AND len(list_filter(artist_list, a -> length(a) > 255)) = 0
        AND NOT contains(track_id, chr(0)) AND NOT contains(genre, chr(0)) AND len(list_filter(artist_list, a -> contains(a, chr(0)))) = 0
      QUALIFY row_number() OVER (PARTITION BY track_id ORDER BY rn) = 1)`,
    // Users: a non-empty id; the first row wins; an age of digits only, 1-120, else unknown.
    `CREATE TEMP TABLE users_raw AS SELECT * FROM read_csv(${path('users.csv')}, ${CSV})`,
    `CREATE TEMP TABLE users AS
      WITH u AS (SELECT rowid AS rn, ${T('user_id')} AS user_id, ${T('user_age')} AS age FROM users_raw)
      SELECT CAST(row_number() OVER () AS INT) AS uid, * FROM (
      SELECT user_id,
        CASE WHEN NOT regexp_full_match(age, '[0-9]+') THEN -1
             WHEN CAST(age AS DOUBLE) < 1 OR CAST(age AS DOUBLE) > 120 THEN -1
             WHEN CAST(age AS DOUBLE) <= 25 THEN 0
             WHEN CAST(age AS DOUBLE) >= 66 THEN 5
             ELSE CAST(floor((CAST(age AS DOUBLE) - 26) / 10) AS INT) + 1 END AS age_group
      FROM u WHERE user_id <> ''
      QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY rn) = 1)`,
    // Complete listens (spec §3): valid IDs and time, known track and user.
    // Complete listens (spec §3): valid IDs and time, known track and user; kept as integer keys.
    `CREATE TEMP TABLE listens AS
      WITH r AS (
        SELECT ${T('user_id')} AS user_id, ${T('track_id')} AS track_id, listen_time,
               CASE WHEN length(listen_time) = 19 THEN try_cast(listen_time AS TIMESTAMP) END AS ts
        FROM read_csv(${path('streams/*.csv')}, ${CSV}, union_by_name = true)),
      k AS (SELECT user_id, track_id, hour_key(listen_time, ts) AS hk FROM r)
      SELECT k.hk, s.sid, u.uid, u.age_group
      FROM k JOIN songs s ON s.track_id = k.track_id JOIN users u ON u.user_id = k.user_id
      -- listen_date must be a year 0001-9999 date
      WHERE k.hk BETWEEN ${-719162 * 24} AND ${2932896 * 24 + 23}`,
  ];
}

const HOURLY = `
  WITH per_track AS (SELECT hk, sid, count(*) AS n FROM listens GROUP BY ALL),
  credits AS (
    SELECT hk, artist, sum(n) AS cnt FROM (
      SELECT p.hk, unnest(s.artist_list) AS artist, p.n FROM per_track p JOIN songs s USING (sid))
    GROUP BY ALL),
  top AS (SELECT hk, first(artist ORDER BY cnt DESC, artist ASC) AS top_artist FROM credits GROUP BY hk),
  ages AS (SELECT hk, age_group, count(*) AS n FROM listens WHERE age_group >= 0 GROUP BY ALL),
  topage AS (SELECT hk, first(age_group ORDER BY n DESC, age_group ASC) AS g FROM ages GROUP BY hk),
  base AS (
    SELECT hk, count(*) AS listens, count(DISTINCT uid) AS users, count(DISTINCT sid) AS tracks
    FROM listens GROUP BY hk)
  SELECT strftime(DATE '1970-01-01' + CAST(floor(b.hk / 24) AS INT), '%Y-%m-%d') AS listen_date,
         CAST(b.hk - floor(b.hk / 24) * 24 AS INT) AS listen_hour,
         CAST(b.users AS INT) AS unique_listeners,
         CAST(b.listens AS INT) AS listen_counts,
         t.top_artist,
         b.listens / b.users AS avg_sessions_per_user,
         b.tracks / b.listens AS diversity_index,
         CASE a.g WHEN 0 THEN '18-25' WHEN 1 THEN '26-35' WHEN 2 THEN '36-45' WHEN 3 THEN '46-55' WHEN 4 THEN '56-65' WHEN 5 THEN '66+' END
           AS most_engaged_age_group
  FROM base b LEFT JOIN top t USING (hk) LEFT JOIN topage a USING (hk)
  ORDER BY b.hk`;

const GENRE = `
  WITH per_track AS (
    SELECT CAST(floor(l.hk / 24) AS INT) AS day, l.sid, count(*) AS n FROM listens l GROUP BY ALL),
  g AS (
    SELECT p.day, s.genre, sum(p.n) AS cnt, sum(p.n * s.duration_ms) AS dur_sum,
           first(s.track_id ORDER BY p.n DESC, s.track_id ASC) AS top_track
    FROM per_track p JOIN songs s USING (sid) GROUP BY ALL)
  SELECT strftime(DATE '1970-01-01' + day, '%Y-%m-%d') AS listen_date, genre AS track_genre,
         CAST(cnt AS INT) AS listen_count,
         cnt / sum(cnt) OVER (PARTITION BY day) AS popularity_index,
         dur_sum / cnt / 1000 AS average_duration,
         top_track AS most_popular_track_id
  FROM g ORDER BY day, genre`;

/**
 * The simplest query a user would write for clean data (issue 12's second peer): read_csv all
 * varchar, cast the timestamp, join, group by, arg_min over (-count, name) for the ties. No
 * trimming, no listen_time grammar, no first-row-wins for duplicate dimension rows: on the
 * benchmark's clean lakes it gives the same tables, on a messy lake it does not (and is not
 * checked there).
 */
export function simpleSql(lake: string): string[] {
  const path = (p: string) => sqlString(resolve(lake, p));
  return [
    `CREATE TEMP TABLE songs AS SELECT * FROM read_csv(${path('songs.csv')}, header = true, all_varchar = true)`,
    `CREATE TEMP TABLE users AS SELECT * FROM read_csv(${path('users.csv')}, header = true, all_varchar = true)`,
    `CREATE TEMP TABLE listens AS
      SELECT CAST(l.listen_time AS TIMESTAMP) AS ts, l.user_id, l.track_id, s.artists, s.track_genre,
             CAST(s.duration_ms AS DOUBLE) AS duration_ms, TRY_CAST(u.user_age AS INT) AS age
      FROM read_csv(${path('streams/*.csv')}, header = true, all_varchar = true) l
      JOIN songs s USING (track_id) JOIN users u USING (user_id)`,
  ];
}

const SIMPLE_HOURLY = `
  WITH h AS (SELECT date_trunc('hour', ts) AS hr, * FROM listens),
  base AS (SELECT hr, count(*) AS n, count(DISTINCT user_id) AS users, count(DISTINCT track_id) AS tracks FROM h GROUP BY hr),
  art AS (SELECT hr, a, count(*) AS n FROM (SELECT hr, unnest(string_split(artists, ';')) AS a FROM h) GROUP BY ALL),
  top AS (SELECT hr, arg_min(a, (-n, a)) AS top_artist FROM art GROUP BY hr),
  ag AS (SELECT hr, g, count(*) AS n FROM (
           SELECT hr, CASE WHEN age IS NULL OR age < 1 OR age > 120 THEN NULL WHEN age <= 25 THEN '18-25' WHEN age <= 35 THEN '26-35'
                           WHEN age <= 45 THEN '36-45' WHEN age <= 55 THEN '46-55' WHEN age <= 65 THEN '56-65' ELSE '66+' END AS g
           FROM h) WHERE g IS NOT NULL GROUP BY ALL),
  topage AS (SELECT hr, arg_min(g, (-n, g)) AS g FROM ag GROUP BY hr)
  SELECT strftime(b.hr, '%Y-%m-%d') AS listen_date, CAST(hour(b.hr) AS INT) AS listen_hour,
         CAST(b.users AS INT) AS unique_listeners, CAST(b.n AS INT) AS listen_counts, t.top_artist,
         b.n / b.users AS avg_sessions_per_user, b.tracks / b.n AS diversity_index, a.g AS most_engaged_age_group
  FROM base b LEFT JOIN top t USING (hr) LEFT JOIN topage a USING (hr) ORDER BY b.hr`;

const SIMPLE_GENRE = `
  WITH d AS (SELECT CAST(ts AS DATE) AS day, * FROM listens),
  pt AS (SELECT day, track_genre, track_id, count(*) AS n FROM d GROUP BY ALL),
  g AS (SELECT day, track_genre, count(*) AS n, avg(duration_ms) / 1000 AS average_duration FROM d GROUP BY ALL),
  top AS (SELECT day, track_genre, arg_min(track_id, (-n, track_id)) AS most_popular_track_id FROM pt GROUP BY ALL)
  SELECT strftime(day, '%Y-%m-%d') AS listen_date, track_genre, CAST(n AS INT) AS listen_count,
         n / sum(n) OVER (PARTITION BY day) AS popularity_index, average_duration, most_popular_track_id
  FROM g JOIN top USING (day, track_genre) ORDER BY day, track_genre`;

export interface DuckKpis {
  hourly: Record<string, unknown>[];
  genre: Record<string, unknown>[];
  completeRows: number;
}

export async function duckdbKpis(
  lake: string,
  threads: number,
  log: (s: string) => void = () => undefined,
  simple = false,
): Promise<DuckKpis> {
  const instance = await DuckDBInstance.create(':memory:', { threads: String(threads), preserve_insertion_order: 'true' });
  const con = await instance.connect();
  try {
    const t0 = performance.now();
    for (const sql of simple ? simpleSql(lake) : kpiSql(lake)) await con.run(sql);
    const t1 = performance.now();
    const toPlain = (rows: Record<string, unknown>[]) =>
      rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'bigint' ? Number(v) : v])));
    const hourly = toPlain((await con.runAndReadAll(simple ? SIMPLE_HOURLY : HOURLY)).getRowObjectsJS());
    const genre = toPlain((await con.runAndReadAll(simple ? SIMPLE_GENRE : GENRE)).getRowObjectsJS());
    const complete = (await con.runAndReadAll('SELECT count(*) AS n FROM listens')).getRowObjectsJS()[0] as { n: bigint };
    log(`duckdb: load+validate ${(t1 - t0).toFixed(0)} ms, KPIs ${(performance.now() - t1).toFixed(0)} ms`);
    return { hourly, genre, completeRows: Number(complete.n) };
  } finally {
    con.closeSync();
    instance.closeSync();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      lake: { type: 'string' },
      threads: { type: 'string', default: '2' },
      out: { type: 'string' },
      simple: { type: 'boolean', default: false },
    },
  });
  if (!values.lake) {
    process.stderr.write('usage: duckdb-kpis --lake DIR [--threads N] [--out FILE] [--simple]\n');
    process.exit(64);
  }
  const res = await duckdbKpis(values.lake, Number(values.threads), (s) => process.stderr.write(s + '\n'), values.simple ?? false);
  if (values.out) {
    const { writeFile } = await import('node:fs/promises');
    await writeFile(values.out, JSON.stringify(res));
  }
  process.stderr.write(`duckdb: ${res.completeRows} complete rows, ${res.hourly.length} hourly rows, ${res.genre.length} genre rows\n`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
