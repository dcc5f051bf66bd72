// A strict Amazon Redshift stand-in for tests: a PostgreSQL wire-protocol server that runs every
// statement on the test PostgreSQL behind it, after refusing what Redshift refuses and translating
// what Redshift spells or means differently. Built from AWS's Redshift documentation (no cluster
// can be reached from here); where a loader would notice a difference, it behaves like Redshift.
//
// Emulated
// - Wire: SSLRequest answered 'N' (sslmode=disable clients go on); a StartupMessage may carry only
//   user, database, application_name, client_encoding (UTF8), DateStyle, TimeZone and
//   extra_float_digits: anything else (options, search_path, statement_timeout, …) is refused with a
//   FATAL error. MD5 password authentication against the stand-in's password. Simple Query
//   protocol (several statements in one Query run as one implicit transaction unless they contain
//   transaction control) and the extended protocol (Parse/Bind/Describe portal/Execute with
//   maxRows/Close/Sync; text parameters and results). ReadyForQuery reports the backend's
//   transaction status (I/T/E); backend errors keep their SQLSTATE, detail and position (mapped
//   back to the statement as sent). CancelRequest cancels the backend statement.
// - Session defaults of Redshift: TimeZone UTC, DateStyle ISO, MDY, extra_float_digits 0 (float8
//   is returned with 15 significant digits, as Redshift does).
// - Refusals (SQLSTATE 0A000 unless noted; each recorded in `refused`): arrays (ARRAY, [], ::t[],
//   unnest, = ANY(array)), ON CONFLICT, RETURNING, ON COMMIT, format(), to_reg*(),
//   ADD COLUMN IF NOT EXISTS, CREATE/DROP INDEX, DO blocks, SERIAL types, sequences,
//   string_agg/array_agg/json(b) functions, advisory lock functions, LOCK … IN … MODE / NOWAIT,
//   SELECT … FOR UPDATE/SHARE, SKIP LOCKED, SET lock_timeout, SET statement_timeout with anything
//   but an integer (22023), SET of a parameter Redshift does not have (42704), savepoints,
//   LISTEN/NOTIFY, IS DISTINCT FROM, VALUES lists as tables, row constructors, PostgreSQL-only
//   types (json, jsonb, uuid, bytea, inet, money, interval columns, …), the PostgreSQL functions
//   AWS lists as unsupported (clock_timestamp, transaction_timestamp, pg_sleep, generate_subscripts,
//   …), CHECK constraints, an alias on DELETE's target or INSERT's, MERGE from a subquery,
//   several ALTER TABLE actions in one statement, ALTER COLUMN other than TYPE VARCHAR(n) or
//   ENCODE, TRUNCATE or VACUUM inside a transaction block or a multi-statement query (they commit
//   on Redshift; a loader must never rely on that), ALTER TABLE … ALTER COLUMN … TYPE there too
//   (25001), COPY FROM STDIN / TO STDOUT, statements over 16 MB (54000), any command Redshift
//   does not have. A multi-statement query with BEGIN/COMMIT in it runs statement by statement.
// - Leader-node-only functions (NOW(), CURRENT_TIMESTAMP, CURRENT_TIME, LOCALTIME, AGE(), SUBSTR(),
//   CURRENT_SCHEMA[()], CURRENT_SCHEMAS(), HAS_*_PRIVILEGE(), TIMEOFDAY(), GENERATE_SERIES(), the
//   bit/byte functions): refused (XX000, with Redshift's INFO notice per function) in a statement
//   that names a relation in FROM/JOIN/USING/INTO/UPDATE/TABLE/LOCK/TRUNCATE which is not a catalog
//   relation (pg_catalog.*, information_schema.*, or an unqualified pg_* name). CTE names do not
//   count; system tables (stl_*, sys_*) do, as on Redshift. Casts to object identifier types
//   (::regclass, ::oid, …) follow the same rule. ISFINITE() is refused everywhere.
// - A refused statement inside a transaction block aborts the block (status E), as a failing
//   statement does on Redshift.
// - Translations: GETDATE() → the statement's start to the second, SYSDATE → the transaction's start (both
//   timestamps without time zone, in UTC); DATEADD(part, n, t); DATEDIFF(part, a, b) (boundaries
//   crossed; parts microsecond to year, not week/quarter); NVL → coalesce; LEN → length;
//   LISTAGG(x, d) [WITHIN GROUP (ORDER BY …)] → string_agg; MINUS → EXCEPT; DELETE t … (no FROM)
//   → DELETE FROM t …; quoted identifiers fold to lower case
//   (downcase_delimited_identifier); pg_last_copy_id() / pg_last_copy_count() → the session's values;
//   stl_load_errors / sys_load_error_detail → the stand-in's tables.
// - DDL (CREATE TABLE, ALTER TABLE ADD COLUMN): VARCHAR(n) / CHARACTER VARYING / NVARCHAR count
//   BYTES: created as varchar(n) plus a CHECK (octet_length(col) <= n) named rsvc_<n>_…, so that
//   information_schema reports n and a value longer than n bytes fails with Redshift's
//   "value too long for type character varying(n)" (22001). VARCHAR without length and TEXT →
//   VARCHAR(256); VARCHAR(MAX) → 65535; over 65535 refused. CHAR(n)/NCHAR/BPCHAR: single-byte
//   characters only (check rsch_…); CHAR → CHAR(1), BPCHAR → CHAR(256), max 4096. DECIMAL/NUMERIC
//   without precision → NUMERIC(18,0). PRIMARY KEY, UNIQUE and REFERENCES are stripped (not
//   enforced; PRIMARY KEY columns become NOT NULL); their columns are remembered so ALTER COLUMN TYPE
//   refuses them. IDENTITY(s, t) → GENERATED ALWAYS AS IDENTITY, GENERATED BY DEFAULT AS IDENTITY(s, t)
//   likewise. ENCODE, DISTKEY, SORTKEY, DISTSTYLE, BACKUP, COLLATE CASE_SENSITIVE are dropped.
//   CREATE TABLE (LIKE t) copies the byte checks (INCLUDING CONSTRAINTS) and NOT NULL, not keys
//   or defaults (unless INCLUDING DEFAULTS). ALTER TABLE … ALTER COLUMN c TYPE VARCHAR(n) is
//   emulated outside transaction blocks: refused for non-VARCHAR columns, columns with a default or
//   a key, and when existing data is longer than n bytes.
// - COPY t [(cols)] FROM 's3://…' with IAM_ROLE 'arn…' | IAM_ROLE default | CREDENTIALS '…' |
//   ACCESS_KEY_ID/SECRET_ACCESS_KEY[/SESSION_TOKEN] (exactly one; the ARN's form is checked; the
//   objects are read with the stand-in's own S3 credentials), FORMAT [AS] CSV [QUOTE [AS] 'q'] or
//   CSV, MANIFEST, GZIP, IGNOREHEADER n (lines skipped in EACH file), DELIMITER 'c', EMPTYASNULL,
//   BLANKSASNULL, NULL AS 's' (default '\N'), DATEFORMAT/TIMEFORMAT 'auto' (or the defaults),
//   ACCEPTINVCHARS ['c'], MAXERROR n (fails when errors reach max(n, 1)), IGNOREALLERRORS,
//   TRUNCATECOLUMNS, FILLRECORD, TRIMBLANKS, IGNOREBLANKLINES, ROUNDEC (else extra decimals are
//   truncated), EXPLICIT_IDS, NOLOAD, ENCODING UTF8, COMPUPDATE, STATUPDATE, COMPROWS, REGION (must be
//   the S3 server's region). Other documented options (JSON, PARQUET, BZIP2, ESCAPE, …) are refused
//   as not emulated; unknown words are syntax errors (42601); a missing authorization fails.
//   Without MANIFEST the key is a prefix: every object under it loads, look-alikes included; no
//   object → error. With MANIFEST the JSON's entries load exactly; a missing mandatory one fails;
//   no file at all fails. Per object: gunzip, skip the header lines, parse Redshift CSV (quote
//   doubling, blanks around quoted fields ignored, LF-terminated records: a CR stays in the data),
//   then per field: NULL AS (matched on the field's value, quoted or not: AWS does not say quoting
//   exempts a field, so a loader must not count on it), an empty CHAR/VARCHAR field loads as ''
//   unless EMPTYASNULL, blanks as NULL with BLANKSASNULL, an empty or blank field of any other type
//   loads as NULL; values checked as Redshift's COPY checks them (bytes against the declared
//   length, digits, ranges, default date/time formats, UTF-8, CHAR single-byte, NOT NULL). Rows
//   are inserted on the client's own session (temp tables work) all-or-nothing; a bad row fails the
//   COPY with "Load into table 'x' failed. Check 'sys_load_error_detail' system table for details."
//   (XX000) and rows in redshift_standin.sys_load_error_detail and redshift_standin.stl_load_errors
//   (Redshift's column names and types; written outside the client's transaction, so they survive
//   its rollback). Inside a transaction block a failed COPY aborts the block. "COPY n" on success,
//   with Redshift's INFO notices; every COPY recorded in `copies`.
// - failNextCommits(n): the next n COMMIT/END of a transaction that ran LOCK fail with
//   ERROR 1023 / DETAIL "Serializable isolation violation on table - <oid>, …" (XX000), after a
//   rollback, as an older SERIALIZABLE cluster reports a conflict.
//
// Not emulated (differences a test on the stand-in cannot see)
// - SERIALIZABLE isolation itself (the backend runs READ COMMITTED; use failNextCommits), WLM,
//   concurrency scaling, implicit commits of TRUNCATE/VACUUM (refused instead).
// - Redshift-only catalog views (svv_table_info, pg_table_def, stv_locks, …): PostgreSQL's own
//   pg_catalog and information_schema answer, with more columns than Redshift's.
// - Trailing blanks are significant in VARCHAR comparisons here (insignificant on Redshift);
//   casts to VARCHAR(n) truncate by characters; CREATE TABLE … AS keeps PostgreSQL's lengths (COPY
//   still counts bytes against them).
// - TLS, IAM database credentials, the COPY's own S3 credentials, cross-region reads, Redshift's
//   other COPY formats, UNLOAD, stored procedures' PL/pgSQL dialect, Describe of a prepared
//   statement, binary parameters/results, SUPER/VARBYTE/GEOMETRY types.
// - Redshift-only syntax and functions beyond the translations above (TOP n, QUALIFY, TRY_CAST,
//   CONVERT_TIMEZONE, DATE_TRUNC/DATEDIFF on week or quarter, …) fail as PostgreSQL syntax errors or
//   unknown functions; SQL that PostgreSQL runs but Redshift would reject for reasons not listed
//   above gets through. Identifiers are cut at PostgreSQL's 63 bytes, not Redshift's 127.
// - SET of a parameter outside Redshift's configuration reference is refused, application_name
//   included (give it in the startup packet).

import type { AddressInfo } from 'node:net';
import * as net from 'node:net';

import { S3Client } from '@aws-sdk/client-s3';
import pg from 'pg';

import { S3RVER_ENV } from '../s3.js';
import { LOAD_ERROR_DDL } from './copy.js';
import { Session, type CopyRecord, type Shared } from './session.js';

export type { CopyRecord } from './session.js';

export interface RedshiftStandInOptions {
  /** postgresql:// URL of the test PostgreSQL, with user and password; its database part is replaced per connection. */
  backendUrl: string;
  /** Where COPY reads s3:// objects (the S3 test server). */
  s3: { endpoint: string; region?: string; accessKeyId: string; secretAccessKey: string; forcePathStyle: true };
  /** The password clients must give (any user name is accepted). Default: 'redshift-standin'. */
  password?: string;
}

export interface RedshiftStandIn {
  /** redshift://user@127.0.0.1:PORT/db?sslmode=disable (no password: give `password`, e.g. through PGPASSWORD). `database` may also be a postgres URL, whose database name is taken. */
  url(database: string, user?: string): string;
  /** The password the stand-in expects. */
  password: string;
  /** node-pg client settings for a database (the URL's parts plus the password). */
  config(database: string, user?: string): { host: string; port: number; user: string; database: string; password: string; ssl: false };
  /** Environment for a child process (the CLI): DATABASE_URL and PGPASSWORD. */
  env(database: string, user?: string): { DATABASE_URL: string; PGPASSWORD: string };
  port: number;
  /** Every statement received (one entry per statement of a multi-statement query; Parse texts for the extended protocol). */
  statements: string[];
  /** Every successful COPY. */
  copies: CopyRecord[];
  /** Every refused statement (and startup parameter) with the reason. */
  refused: { sql: string; reason: string }[];
  /** The next `n` COMMITs of a transaction that ran LOCK fail with Redshift's serializable isolation error 1023. */
  failNextCommits(n: number): void;
  /** 1023 errors injected so far. */
  readonly injectedConflicts: number;
  /** Connections open now. */
  readonly connections: number;
  stop(): Promise<void>;
}

/** The `s3` option for a stand-in reading from the S3 test server of test/support/s3.ts (startS3()). */
export function s3rverOptions(endpoint: string): RedshiftStandInOptions['s3'] {
  return {
    endpoint,
    region: S3RVER_ENV.AWS_REGION,
    accessKeyId: S3RVER_ENV.AWS_ACCESS_KEY_ID,
    secretAccessKey: S3RVER_ENV.AWS_SECRET_ACCESS_KEY,
    forcePathStyle: true,
  };
}

function databaseName(database: string): string {
  if (/^postgres(ql)?:\/\//.test(database)) return decodeURIComponent(new URL(database).pathname.slice(1));
  return database;
}

export async function startRedshiftStandIn(opts: RedshiftStandInOptions): Promise<RedshiftStandIn> {
  const password = opts.password ?? 'redshift-standin';
  const region = opts.s3.region ?? 'us-east-1';
  const s3 = new S3Client({
    endpoint: opts.s3.endpoint,
    region,
    forcePathStyle: opts.s3.forcePathStyle,
    credentials: { accessKeyId: opts.s3.accessKeyId, secretAccessKey: opts.s3.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const sideClients = new Map<string, Promise<pg.Client>>();
  const catalogs = new Map<string, Promise<void>>();
  let queryId = 100_000;
  const shared: Shared = {
    password,
    backendUrl: opts.backendUrl,
    s3,
    region,
    statements: [],
    copies: [],
    refused: [],
    keyColumns: new Map(),
    faults: { failCommits: 0, injected: 0 },
    sessions: new Set(),
    nextQueryId: () => ++queryId,
    side(database) {
      let p = sideClients.get(database);
      if (!p) {
        p = (async () => {
          const url = new URL(opts.backendUrl);
          url.pathname = '/' + encodeURIComponent(database);
          const c = new pg.Client({ connectionString: url.toString(), application_name: 'redshift-standin-side' });
          c.on('error', () => sideClients.delete(database));
          await c.connect();
          return c;
        })();
        p.catch(() => sideClients.delete(database));
        sideClients.set(database, p);
      }
      return p;
    },
    ensureCatalog(database) {
      let p = catalogs.get(database);
      if (!p) {
        p = (async () => {
          const side = await shared.side(database);
          for (let attempt = 0; ; attempt++) {
            try {
              await side.query(LOAD_ERROR_DDL);
              return;
            } catch (err) {
              // Another stand-in creating the same objects at the same moment.
              const code = (err as { code?: string }).code;
              if (attempt < 3 && (code === '23505' || code === '42P06' || code === '42P07')) continue;
              throw err;
            }
          }
        })();
        p.catch(() => catalogs.delete(database));
        catalogs.set(database, p);
      }
      return p;
    },
  };
  const server = net.createServer((socket) => {
    new Session(socket, shared);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const url = (database: string, user = 'etl') =>
    `redshift://${encodeURIComponent(user)}@127.0.0.1:${port}/${encodeURIComponent(databaseName(database))}?sslmode=disable`;
  return {
    url,
    password,
    config: (database, user = 'etl') => ({ host: '127.0.0.1', port, user, database: databaseName(database), password, ssl: false }),
    env: (database, user) => ({ DATABASE_URL: url(database, user), PGPASSWORD: password }),
    port,
    statements: shared.statements,
    copies: shared.copies,
    refused: shared.refused,
    failNextCommits(n) {
      shared.faults.failCommits = n;
    },
    get injectedConflicts() {
      return shared.faults.injected;
    },
    get connections() {
      return shared.sessions.size;
    },
    async stop() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all([...shared.sessions].map((s) => s.close()));
      await closed;
      for (const p of sideClients.values()) await p.then((c) => c.end()).catch(() => undefined);
      s3.destroy();
    },
  };
}
