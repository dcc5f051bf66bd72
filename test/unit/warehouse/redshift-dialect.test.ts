// The Redshift dialect against a fake server that records every statement: the SQL it emits
// (none of PostgreSQL's own constructs, COPY as AWS documents it), the load transaction's
// order and steps, the retry of serializable conflicts, readable COPY failures, tables adopted
// from the original DDL, the connection settings.

import assert from 'node:assert/strict';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { MkpiError } from '../../../lib/domain/errors.js';
import { isSerializableConflict } from '../../../lib/adapters/warehouse/redshift/errors.js';
import { checkIamRole, copySql } from '../../../lib/adapters/warehouse/redshift/copy.js';
import { parseRedshiftHost, parseRedshiftUrl } from '../../../lib/adapters/warehouse/redshift/url.js';
import { FakeRedshift, redshiftColumns, serverError } from './redshift-fake.js';
import { fakeClock, fullBatch, hourlyRows, mockS3, rejects, ROLE, warehouseOn } from './redshift-support.js';

/** PostgreSQL-only SQL (or what Redshift refuses or mistreats), per the issue and AWS's docs. */
const FORBIDDEN: [string, RegExp][] = [
  ['arrays', /\[\]|\bARRAY\s*\[|\bunnest\b|=\s*ANY\s*\(|\barray_agg\b/i],
  ['ON CONFLICT', /\bON\s+CONFLICT\b/i],
  ['RETURNING', /\bRETURNING\b/i],
  ['ON COMMIT DROP', /\bON\s+COMMIT\b/i],
  ['format()', /\bformat\s*\(/i],
  ['to_regclass', /\bto_regclass\b|::regclass/i],
  ['ADD COLUMN IF NOT EXISTS', /\bADD\s+COLUMN\s+IF\s+NOT\s+EXISTS\b/i],
  ['indexes', /\bCREATE\s+(UNIQUE\s+)?INDEX\b/i],
  [
    'leader-node-only functions',
    /\bNOW\s*\(|\bCURRENT_TIMESTAMP\b|\bCURRENT_TIME\b|\bLOCALTIME(STAMP)?\b|\bAGE\s*\(|\bISFINITE\s*\(|\bSUBSTR\s*\(|\bCURRENT_SCHEMA\s*\(|\bHAS_\w+_PRIVILEGE\b|\bgenerate_series\b/i,
  ],
  ['TRUNCATE', /\bTRUNCATE\b/i],
  ['advisory locks', /pg_(try_)?advisory|pg_locks|hashtext/i],
  ['COPY FROM STDIN', /\bFROM\s+STDIN\b/i],
  ['lock modes and lock_timeout', /\bIN\s+\w+(\s+\w+)*\s+MODE\b|\bNOWAIT\b|\block_timeout\b|\bSET\s+LOCAL\b/i],
  ['string_agg', /\bstring_agg\b/i],
  ['SERIAL', /\b(BIG)?SERIAL\b/i],
  ['DO blocks', /^\s*DO\b/i],
  ['TEXT columns', /^(CREATE|ALTER)\b[\s\S]*\bTEXT\b/i],
  ['a statement_timeout that is not integer milliseconds', /statement_timeout(?!\s+TO\s+\d+\s*$)/i],
];

function scan(statements: string[]): string[] {
  const problems: string[] = [];
  for (const s of statements) for (const [what, re] of FORBIDDEN) if (re.test(s)) problems.push(`${what}: ${s.slice(0, 200)}`);
  return problems;
}

describe('warehouse/redshift: the dialect (a fake server)', () => {
  const { s3 } = mockS3();

  it('emits none of the PostgreSQL-only constructs, whatever it is asked to do', async () => {
    const fake = new FakeRedshift();
    const wh = warehouseOn(fake);
    const lock = await wh.acquireRunLock();
    await wh.isInitialised();
    await wh.init();
    await wh.claimLake('s3://lake/music');
    await wh.claimLake('s3://lake/elsewhere', { adopt: true });
    await wh.lakeClaim();
    await wh.readLedger();
    await wh.load(fullBatch());
    await wh.load({ runId: 'run-1', ledger: [], retire: [{ fileKey: 'k', fingerprint: 'f' }] });
    await wh.markArchived('streams/a.csv', 'f1', 'archive/a.csv', 'f2');
    await wh.query('SELECT 1 AS x');
    // Adopted tables: the narrow columns widened.
    const adopted = new FakeRedshift().initialised(redshiftColumns(true));
    const wh2 = warehouseOn(adopted);
    await wh2.init();
    await lock.release();
    await wh.close();
    await wh2.close();
    const all = [...fake.sql, ...adopted.sql];
    assert.deepEqual(scan(all), []);
    // The scan itself catches what it is meant to.
    assert.equal(
      scan([
        'INSERT INTO t SELECT * FROM unnest($1::text[])',
        'INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING',
        'CREATE TEMP TABLE s (LIKE t) ON COMMIT DROP',
        'SELECT now()',
        "SET statement_timeout = '30s'",
        'CREATE TABLE t (a TEXT)',
        'SELECT pg_try_advisory_lock(1)',
        'COPY t FROM STDIN',
        'TRUNCATE t',
      ]).length,
      9,
    );
    // Every musickpi session bounds its statements in integer milliseconds, after the startup packet.
    assert.ok(fake.sql.includes('SET statement_timeout TO 1800000'));
    assert.ok(fake.sql.includes('SET statement_timeout TO 60000'));
    assert.ok(
      adopted.sql.some((s) => /^ALTER TABLE "reporting_schema"\.hourly_kpis ALTER COLUMN top_artist TYPE VARCHAR\(1020\)$/.test(s)),
    );
  });

  it('puts nothing exotic in the startup packet, and verifies TLS by default', async () => {
    const fake = new FakeRedshift().initialised();
    const wh = warehouseOn(fake);
    await wh.isInitialised();
    await wh.close();
    const allowed = new Set(['host', 'port', 'user', 'password', 'database', 'ssl', 'types', 'application_name', 'keepAlive']);
    for (const config of fake.configs) {
      assert.deepEqual(
        Object.keys(config).filter((k) => !allowed.has(k) && (config as Record<string, unknown>)[k] !== undefined),
        [],
      );
      assert.deepEqual(config.ssl, { rejectUnauthorized: true, servername: 'my-cluster.abc123.eu-west-1.redshift.amazonaws.com' });
      assert.equal(config.user, 'etl');
      assert.equal(config.password, 's3cret');
      assert.equal(config.database, 'analytics');
      assert.equal(config.port, 5439);
    }
  });

  it('a load: stage files and COPY before BEGIN, then LOCK, fencing, delete covered dates, insert, ledger, COMMIT; steps in order', async () => {
    const fake = new FakeRedshift().initialised();
    const wh = warehouseOn(fake);
    const lock = await wh.acquireRunLock();
    const steps: string[] = [];
    const result = await wh.load(fullBatch((s) => void steps.push(s)));
    assert.deepEqual(steps, ['mid-copy', 'staged', 'mid-merge', 'merged', 'before-commit', 'committed']);
    assert.deepEqual(result, { hourlyRowsWritten: 3, genreRowsWritten: 3, hourlyRowsDeleted: 2, genreRowsDeleted: 2 });
    const session = fake.sent.find((s) => s.sql.startsWith('COPY '))!.session;
    const sqls = fake.sent.filter((s) => s.session === session).map((s) => s.sql.replace(/\s+/g, ' '));
    const at = (re: RegExp) => {
      const i = sqls.findIndex((s) => re.test(s));
      assert.ok(i >= 0, `missing ${re}`);
      return i;
    };
    const order = [
      at(/^CREATE TEMP TABLE musickpi_stage_hourly \(LIKE "reporting_schema"\.hourly_kpis\)/),
      at(/^INSERT INTO musickpi_stage_hourly_dates \(listen_date\) VALUES \(\$1\), \(\$2\)$/),
      at(/^COPY musickpi_stage_hourly /),
      at(/^COPY musickpi_stage_genre /),
      at(/^BEGIN$/),
      at(/^LOCK /),
      at(/^SELECT token FROM/),
      at(
        /^DELETE FROM "reporting_schema"\.hourly_kpis USING musickpi_stage_hourly_dates WHERE hourly_kpis\.listen_date = musickpi_stage_hourly_dates\.listen_date$/,
      ),
      at(/^INSERT INTO "reporting_schema"\.hourly_kpis \( listen_date, listen_hour,/),
      at(/^DELETE FROM "reporting_schema"\.genre_level_kpis USING/),
      at(/^INSERT INTO "reporting_schema"\.genre_level_kpis/),
      at(/^UPDATE "reporting_schema"\.musickpi_ledger SET retracted_at = GETDATE\(\) FROM musickpi_stage_retract/),
      at(/^DELETE FROM "reporting_schema"\.musickpi_ledger_dates USING musickpi_stage_retire/),
      at(/^INSERT INTO musickpi_ledger_merged /),
      at(/^DELETE FROM "reporting_schema"\.musickpi_ledger USING musickpi_stage_ledger /),
      at(/^INSERT INTO "reporting_schema"\.musickpi_ledger \(/),
      at(/^INSERT INTO "reporting_schema"\.musickpi_ledger_dates /),
      at(/^COMMIT$/),
    ];
    assert.deepEqual(
      order,
      [...order].sort((a, b) => a - b),
      'in order',
    );
    // The ledger entry staged with its dates, values bound (not spliced).
    const staged = fake.sent.find((s) => s.sql.startsWith('INSERT INTO musickpi_stage_ledger ('))!;
    assert.deepEqual(staged.values, ['streams/a.csv', 'f1', 10, 3, 'run-1', null, true, true, 'a'.repeat(64)]);
    assert.ok(!sqls.some((s) => /TRUNCATE/i.test(s)));
    // The stage files are gone once committed: every object written is deleted.
    const put = s3()
      .commandCalls(PutObjectCommand)
      .map((c) => c.args[0].input.Key);
    const deleted = s3()
      .calls()
      .filter((c) => c.args[0].constructor.name === 'DeleteObjectCommand')
      .map((c) => (c.args[0].input as { Key: string }).Key);
    assert.equal(put.length, 4, 'two tables: one object and a manifest each');
    assert.deepEqual(deleted.sort(), [...put].sort());
    for (const key of put) assert.match(key!, /^musickpi\/staging\/run-1-[0-9a-f]{16}-1\/(hourly|genre)(-0000\.csv\.gz|\.manifest)$/);
    await lock.release();
    await wh.close();
  });

  it('COPY reads the manifest with the role, as CSV, gzip, NUL as NULL, no compression analysis or statistics, in the synopsis order', async () => {
    const fake = new FakeRedshift().initialised();
    const wh = warehouseOn(fake);
    await wh.load(fullBatch());
    const copy = fake.sql.find((s) => s.startsWith('COPY musickpi_stage_hourly'))!;
    assert.match(
      copy,
      /^COPY musickpi_stage_hourly \(listen_date, listen_hour, unique_listeners, listen_counts, top_artist, avg_sessions_per_user, diversity_index, most_engaged_age_group\)\nFROM 's3:\/\/stage-bucket\/musickpi\/staging\/run-1-[0-9a-f]{16}-1\/hourly\.manifest'\nIAM_ROLE 'arn:aws:iam::123456789012:role\/redshift-copy'\nFORMAT AS CSV\nMANIFEST\nGZIP\nNULL AS '\\000'\nREGION 'eu-west-1'\nCOMPUPDATE OFF\nSTATUPDATE OFF$/,
    );
    assert.match(copySql('s', ['a'], 's3://b/m', { iamRole: undefined }), /\nIAM_ROLE default\n/);
    assert.equal(checkIamRole(undefined), undefined);
    assert.equal(checkIamRole('default'), undefined);
    assert.equal(checkIamRole(ROLE), ROLE);
    assert.throws(
      () => checkIamRole("arn:aws:iam::123456789012:role/x' ; DROP TABLE t; --"),
      (e: unknown) => e instanceof MkpiError && e.code === 'MKPI_CONFIG',
    );
    await wh.close();
  });

  it('a serializable conflict (ERROR 1023) runs the whole transaction again with backoff, then gives up with MKPI_RETRY_LATER', async () => {
    const conflict = () =>
      serverError('XX000', '1023', 'Serializable isolation violation on table - 123456, transactions forming the cycle are: 1, 2');
    const fake = new FakeRedshift().initialised();
    let failures = 2;
    fake.failWith = (s) => (/^DELETE FROM "reporting_schema"\.genre_level_kpis/.test(s.sql) && failures-- > 0 ? conflict() : undefined);
    const clock = fakeClock();
    const warnings: string[] = [];
    const wh = warehouseOn(fake, { warn: (l) => warnings.push(l), testing: { clock } });
    const steps: string[] = [];
    await wh.load(fullBatch((s) => void steps.push(s)));
    assert.equal(fake.sql.filter((s) => s === 'BEGIN').length, 3);
    assert.equal(fake.sql.filter((s) => s === 'ROLLBACK').length, 2);
    assert.equal(fake.sql.filter((s) => s === 'COMMIT').length, 1);
    assert.equal(fake.sql.filter((s) => s.startsWith('COPY ')).length, 2, 'staged once: the temp tables survive a rolled-back transaction');
    assert.deepEqual(clock.sleeps, [150, 300]);
    assert.equal(warnings.length, 2);
    assert.equal(steps.filter((s) => s === 'committed').length, 1);

    // Conflicts at COMMIT count too; a conflict every time ends the load.
    const always = new FakeRedshift().initialised();
    always.failWith = (s) => (s.sql === 'COMMIT' ? conflict() : undefined);
    const wh2 = warehouseOn(always, { conflictAttempts: 3 });
    const e = await rejects(wh2.load(fullBatch()), 'MKPI_RETRY_LATER');
    assert.equal(e.details?.attempts, 3);
    assert.match(e.message, /gave up after 3 attempts/);
    assert.equal(always.sql.filter((s) => s === 'BEGIN').length, 3);
    // Stage files removed after the failure as after a commit.
    await wh.close();
    await wh2.close();
  });

  it('isSerializableConflict reads the code text and nothing else', () => {
    assert.ok(isSerializableConflict(serverError('XX000', '1023', 'Serializable isolation violation on table - 1')));
    assert.ok(isSerializableConflict(serverError('XX000', 'ERROR: 1023 DETAIL: Serializable isolation violation on table')));
    assert.ok(!isSerializableConflict(serverError('XX000', 'Load into table failed')));
    assert.ok(!isSerializableConflict(serverError('23505', 'duplicate key 1023')));
    assert.ok(!isSerializableConflict(new Error('10230 rows')));
  });

  it('a failed COPY reports the file, line, column and reason Redshift recorded, and the transaction never starts', async () => {
    const fake = new FakeRedshift().initialised();
    fake.failWith = (s) =>
      s.sql.startsWith('COPY musickpi_stage_genre')
        ? serverError('XX000', "Load into table 'musickpi_stage_genre' failed. Check 'stl_load_errors' system table for details.")
        : undefined;
    fake.loadErrors = [
      {
        file: 's3://stage-bucket/musickpi/staging/x/genre-0000.csv.gz',
        line: 7,
        col: 'listen_count',
        code: 1207,
        reason: "Invalid digit, Value 'a', Pos 0, Type: Integer",
      },
    ];
    const wh = warehouseOn(fake);
    const e = await rejects(wh.load(fullBatch()), 'MKPI_INTERNAL');
    assert.match(e.message, /genre-0000\.csv\.gz, line 7, column listen_count: Invalid digit/);
    const q = fake.sent.find((s) => /sys_load_error_detail/.test(s.sql))!;
    assert.match(String(q.values?.[0]), /^s3:\/\/stage-bucket\/musickpi\/staging\/run-1-[0-9a-f]{16}-1\/%$/);
    assert.ok(!fake.sql.includes('BEGIN'));
    // An S3 permission problem is a setting to fix.
    fake.failWith = (s) => (s.sql.startsWith('COPY ') ? serverError('XX000', 'S3ServiceException:Access Denied,Status 403') : undefined);
    const e2 = await rejects(wh.load(fullBatch()), 'MKPI_CONFIG');
    assert.match(e2.hint ?? '', /s3:GetObject/);
    await wh.close();
  });

  it('adopted tables too narrow for a value (widening refused): refused before anything is staged, naming the value', async () => {
    const fake = new FakeRedshift().initialised(redshiftColumns(true));
    fake.failWith = (s) => (s.sql.startsWith('ALTER TABLE') ? serverError('42501', 'must be owner of relation hourly_kpis') : undefined);
    const warnings: string[] = [];
    const wh = warehouseOn(fake, { warn: (l) => warnings.push(l) });
    await wh.init();
    assert.equal(warnings.length, 4, 'one per narrow column');
    const rows = hourlyRows('2024-06-01', 1);
    rows[0].top_artist = 'é'.repeat(200); // 200 characters, 400 bytes
    const e = await rejects(wh.load({ runId: 'r', hourly: { dates: ['2024-06-01'], rows }, ledger: [] }), 'MKPI_CONFIG');
    assert.match(e.message, /hourly_kpis\.top_artist is VARCHAR\(255\), 255 bytes on Redshift.*listen_date 2024-06-01, hour 0.*400 bytes/);
    assert.equal(s3().commandCalls(PutObjectCommand).length, 0);
    assert.ok(!fake.sql.some((s) => s.startsWith('COPY')));
    // 255 characters of 4 bytes each fit the tables musickpi creates.
    const ok = new FakeRedshift().initialised();
    const wh2 = warehouseOn(ok);
    rows[0].top_artist = '𝄞'.repeat(255);
    await wh2.load({ runId: 'r', hourly: { dates: ['2024-06-01'], rows }, ledger: [] });
    await wh.close();
    await wh2.close();
  });

  it('init refuses tables that are not ours, and creates the lake and lease tables', async () => {
    const fake = new FakeRedshift().initialised(
      redshiftColumns().map((c) => (c.column_name === 'listen_count' ? { ...c, data_type: 'character varying' } : c)),
    );
    const wh = warehouseOn(fake);
    const e = await rejects(wh.init(), 'MKPI_CONFIG');
    assert.match(e.message, /genre_level_kpis exists but differs: column listen_count is character varying, expected integer/);
    await wh.close();
    const fresh = new FakeRedshift();
    const wh2 = warehouseOn(fresh);
    assert.equal(await wh2.isInitialised(), false);
    await wh2.init();
    for (const t of ['hourly_kpis', 'genre_level_kpis', 'musickpi_ledger', 'musickpi_ledger_dates', 'musickpi_lake', 'musickpi_run_lock'])
      assert.ok(fresh.tables.has(t), t);
    assert.ok(!fresh.sql.some((s) => /\bTEXT\b/.test(s)));
    await wh2.close();
  });

  it('claimLake: LOCKed, one row, another lake refused unless adopted', async () => {
    const fake = new FakeRedshift().initialised();
    const wh = warehouseOn(fake);
    assert.equal(await wh.lakeClaim(), null);
    await wh.claimLake('s3://lake/a');
    assert.equal(fake.lake, 's3://lake/a');
    await wh.claimLake('s3://lake/a');
    await rejects(wh.claimLake('s3://lake/b'), 'MKPI_CONFIG');
    await wh.claimLake('s3://lake/b', { adopt: true });
    assert.equal(await wh.lakeClaim(), 's3://lake/b');
    assert.ok(fake.sql.includes('LOCK "reporting_schema".musickpi_lake'));
    await wh.close();
    assert.equal(await warehouseOn(new FakeRedshift()).lakeClaim(), null, 'no table: no claim');
  });

  it('query(): the schema first on the search path, unbounded, then the session bound again; tag and count', async () => {
    const fake = new FakeRedshift().initialised();
    const wh = warehouseOn(fake);
    const r = await wh.query('SELECT 1 AS x');
    assert.deepEqual(r, { columns: ['x'], rows: [[1]], command: 'SELECT', rowCount: 1 });
    const i = fake.sql.indexOf('SELECT 1 AS x');
    assert.deepEqual(fake.sql.slice(i - 2, i + 2), [
      'SET statement_timeout TO 0',
      'SET search_path TO "reporting_schema", public',
      'SELECT 1 AS x',
      'SET statement_timeout TO 1800000',
    ]);
    await wh.close();
  });

  it('a Redshift warehouse needs its staging location', () => {
    assert.throws(
      () => warehouseOn(new FakeRedshift(), { staging: { uri: '' } }),
      (e: unknown) => e instanceof MkpiError && e.code === 'MKPI_CONFIG' && /--staging/.test(e.hint ?? ''),
    );
    for (const bad of ['gs://b/p/', 's3://Bad_Bucket/p/', "s3://bucket/it's/", 's3://bucket/../x/']) {
      assert.throws(
        () => warehouseOn(new FakeRedshift(), { staging: { uri: bad } }),
        (e: unknown) => e instanceof MkpiError && e.code === 'MKPI_CONFIG',
        bad,
      );
    }
  });
});

describe('warehouse/redshift: URL and host', () => {
  it('maps redshift:// to pg settings: TLS verified unless sslmode=disable, no password in the description', () => {
    const u = parseRedshiftUrl('redshift://etl:p%40ss@my-cluster.abc123.eu-west-1.redshift.amazonaws.com:5439/analytics');
    assert.deepEqual(
      [u.host, u.port, u.user, u.password, u.database],
      ['my-cluster.abc123.eu-west-1.redshift.amazonaws.com', 5439, 'etl', 'p@ss', 'analytics'],
    );
    assert.equal(u.description, 'redshift://etl@my-cluster.abc123.eu-west-1.redshift.amazonaws.com:5439/analytics');
    assert.deepEqual(u.secrets.sort(), ['p%40ss', 'p@ss']);
    assert.deepEqual(u.ssl, { rejectUnauthorized: true, servername: 'my-cluster.abc123.eu-west-1.redshift.amazonaws.com' });
    assert.equal(parseRedshiftUrl('redshift://u@127.0.0.1:6000/dev?sslmode=disable').ssl, false);
    assert.deepEqual(parseRedshiftUrl('redshift://u@h/dev?sslmode=require').ssl, { rejectUnauthorized: true, servername: 'h' });
    assert.equal(parseRedshiftUrl('redshift://u@h/dev').port, 5439);
    assert.deepEqual(parseRedshiftUrl('redshift://u@10.1.2.3/dev').ssl, { rejectUnauthorized: true });
    for (const bad of [
      'redshift://u@h',
      'redshift://u@h/dev?sslmode=prefer',
      'redshift://u@h/dev?options=-c%20x',
      'redshift://u:p#w@h/dev',
      'redshift:///dev',
    ]) {
      assert.throws(
        () => parseRedshiftUrl(bad),
        (e: unknown) => e instanceof MkpiError && e.code === 'MKPI_CONFIG' && !e.message.includes('p#w'),
        bad,
      );
    }
  });

  it('tells a provisioned cluster and a Serverless workgroup by their endpoint names', () => {
    assert.deepEqual(parseRedshiftHost('my-cluster.abc123xyz.eu-west-1.redshift.amazonaws.com'), {
      kind: 'provisioned',
      clusterId: 'my-cluster',
      region: 'eu-west-1',
    });
    assert.deepEqual(parseRedshiftHost('wg-1.123456789012.us-east-2.redshift-serverless.amazonaws.com'), {
      kind: 'serverless',
      workgroup: 'wg-1',
      account: '123456789012',
      region: 'us-east-2',
    });
    assert.deepEqual(parseRedshiftHost('c.x1.cn-north-1.redshift.amazonaws.com.cn'), {
      kind: 'provisioned',
      clusterId: 'c',
      region: 'cn-north-1',
    });
    assert.deepEqual(parseRedshiftHost('localhost'), { kind: 'other' });
    assert.deepEqual(parseRedshiftHost('redshift.internal.example.com'), { kind: 'other' });
  });
});
