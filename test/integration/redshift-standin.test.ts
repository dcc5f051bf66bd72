// The Redshift stand-in (test/support/redshift) with node-pg as the client: every refusal,
// translation and COPY rule it claims, over the run's test PostgreSQL and an S3 test server.

import type { EventEmitter } from 'node:events';
import * as net from 'node:net';
import { gzipSync } from 'node:zlib';

import { expect } from 'chai';
import pg from 'pg';

import { freshDatabase, testDatabaseUrl } from '../support/pg.js';
import { s3rverOptions, startRedshiftStandIn, type RedshiftStandIn } from '../support/redshift/index.js';
import { startS3, type TestS3 } from '../support/s3.js';

const BUCKET = 'stage';
const ROLE = "IAM_ROLE 'arn:aws:iam::123456789012:role/redshift-copy'";

interface Tracked {
  client: pg.Client;
  /** Transaction status of the last ReadyForQuery. */
  status(): string;
  notices: string[];
}

async function expectError(promise: Promise<unknown>, code?: string, message?: RegExp): Promise<pg.DatabaseError> {
  try {
    await promise;
  } catch (err) {
    const e = err as pg.DatabaseError;
    if (code) expect(e.code, e.message).to.equal(code);
    if (message) expect(e.message).to.match(message);
    return e;
  }
  throw new Error(`expected an error${code ? ` ${code}` : ''}, got success`);
}

describe('Redshift stand-in', function () {
  this.timeout(120_000);
  let s3: TestS3;
  let rs: RedshiftStandIn;
  let db: string;
  const open: pg.Client[] = [];
  let seq = 0;
  /** A fresh table name per test. */
  const name = (base: string) => `${base}_${++seq}`;

  before(async () => {
    s3 = await startS3();
    await s3.bucket(BUCKET);
    db = await freshDatabase('rs_standin');
    rs = await startRedshiftStandIn({ backendUrl: testDatabaseUrl(), s3: s3rverOptions(s3.endpoint) });
  });

  afterEach(async () => {
    for (const c of open.splice(0)) await c.end().catch(() => undefined);
  });

  after(async () => {
    await rs?.stop();
    await s3?.stop();
  });

  async function connect(): Promise<Tracked> {
    const client = new pg.Client(rs.config(db));
    client.on('error', () => undefined);
    let status = '?';
    const notices: string[] = [];
    (client as unknown as { connection: EventEmitter }).connection.on('readyForQuery', (m: { status: string }) => {
      status = m.status;
    });
    client.on('notice', (n) => notices.push(n.message ?? ''));
    await client.connect();
    open.push(client);
    return { client, status: () => status, notices };
  }

  /** Runs `sql` and expects the stand-in to refuse it, with a reason matching `reason`. */
  async function expectRefused(c: pg.Client, sql: string, reason: RegExp, code?: string): Promise<pg.DatabaseError> {
    const before = rs.refused.length;
    const err = await expectError(c.query(sql), code);
    expect(err.message, sql).to.match(/refused by the Redshift stand-in/);
    const entry = rs.refused.slice(before).find((r) => r.sql === sql.trim());
    expect(entry, `no refused entry for: ${sql}`).to.not.equal(undefined);
    expect(entry!.reason, sql).to.match(reason);
    return err;
  }

  async function rows<T = Record<string, unknown>>(c: pg.Client, sql: string, values?: unknown[]): Promise<T[]> {
    return (await c.query(sql, values)).rows as T[];
  }

  describe('wire protocol', () => {
    it('takes a redshift:// URL with sslmode=disable and the password from PGPASSWORD', async () => {
      const saved = process.env['PGPASSWORD'];
      process.env['PGPASSWORD'] = rs.password;
      try {
        const client = new pg.Client({ connectionString: rs.url(db) });
        await client.connect();
        open.push(client);
        expect(rs.url(db)).to.match(/^redshift:\/\/etl@127\.0\.0\.1:\d+\/rs_standin_\w+\?sslmode=disable$/);
        expect((await client.query('SELECT 1 AS one')).rows).to.deep.equal([{ one: 1 }]);
        expect((await client.query('SHOW timezone')).rows[0].TimeZone).to.equal('UTC');
      } finally {
        if (saved === undefined) delete process.env['PGPASSWORD'];
        else process.env['PGPASSWORD'] = saved;
      }
    });

    it('refuses a wrong password', async () => {
      const client = new pg.Client({ ...rs.config(db), password: 'wrong' });
      client.on('error', () => undefined);
      await expectError(client.connect(), '28P01', /password authentication failed/);
    });

    it('answers an SSL request with N, so a client that requires TLS cannot connect', async () => {
      const client = new pg.Client({ ...rs.config(db), ssl: { rejectUnauthorized: false } });
      client.on('error', () => undefined);
      await expectError(client.connect(), undefined, /does not support SSL/);
    });

    for (const [label, extra] of [
      ['options', { options: '-c search_path=public' }],
      ['statement_timeout', { statement_timeout: 1000 }],
      ['lock_timeout', { lock_timeout: 1000 }],
    ] as const) {
      it(`refuses the startup parameter ${label}`, async () => {
        const before = rs.refused.length;
        const client = new pg.Client({ ...rs.config(db), ...extra });
        client.on('error', () => undefined);
        await expectError(client.connect(), '0A000', new RegExp(`startup parameter "${label}" is not accepted`));
        expect(rs.refused.slice(before).map((r) => r.reason)).to.deep.equal([`startup parameter ${label}`]);
      });
    }

    it('accepts what node-pg sends by default, application_name included', async () => {
      const client = new pg.Client({ ...rs.config(db), application_name: 'musickpi' });
      await client.connect();
      open.push(client);
      expect((await client.query('SELECT current_setting($1) AS v', ['application_name'])).rows[0].v).to.equal('musickpi');
    });

    it('runs parameterized statements over the extended protocol, NULLs included', async () => {
      const { client } = await connect();
      const t = name('params');
      await client.query(`CREATE TABLE ${t} (id int, label varchar(20), amount float)`);
      await client.query(`INSERT INTO ${t} (id, label, amount) VALUES ($1, $2, $3), ($4, $5, $6)`, [1, 'a', 1.5, 2, null, null]);
      const r = await client.query(`SELECT id, label, amount FROM ${t} WHERE id >= $1 ORDER BY id`, [1]);
      expect(r.rows).to.deep.equal([
        { id: 1, label: 'a', amount: 1.5 },
        { id: 2, label: null, amount: null },
      ]);
      expect(r.rowCount).to.equal(2);
      const ins = await client.query(`INSERT INTO ${t} (id) VALUES ($1)`, [3]);
      expect(ins.command).to.equal('INSERT');
      expect(ins.rowCount).to.equal(1);
      // A named prepared statement is parsed once and bound twice.
      for (const id of [1, 2]) {
        const q = await client.query({ name: 'by-id', text: `SELECT label FROM ${t} WHERE id = $1`, values: [id] });
        expect(q.rows.length).to.equal(1);
      }
      // node-pg's queryMode 'extended' (missing from its types) sends a Parse even without parameters.
      await expectError(
        client.query({ text: 'SELECT 1; SELECT 2', values: [], queryMode: 'extended' } as pg.QueryConfig),
        '42601',
        /multiple commands/,
      );
    });

    it('sends rows in chunks when the client asks for maxRows (portal suspension)', async () => {
      const { client } = await connect();
      const t = name('chunks');
      await client.query(`CREATE TABLE ${t} (id int)`);
      await client.query(`INSERT INTO ${t} VALUES (1), (2), (3), (4), (5)`);
      // node-pg's `rows` option sends Execute with a row limit and asks again after each PortalSuspended.
      const query = new pg.Query({ text: `SELECT id FROM ${t} WHERE id > $1 ORDER BY id`, values: [0], rows: 2 } as pg.QueryConfig);
      const ids = await new Promise<number[]>((resolve, reject) => {
        const out: number[] = [];
        query.on('row', (r: { id: number }) => out.push(r.id));
        query.on('end', () => resolve(out));
        query.on('error', reject);
        void client.query(query);
      });
      expect(ids).to.deep.equal([1, 2, 3, 4, 5]);
      const suspended = rs.statements.length;
      expect(rs.statements[suspended - 1]).to.equal(`SELECT id FROM ${t} WHERE id > $1 ORDER BY id`);
    });

    it('reports the transaction status (I, T, E) in ReadyForQuery', async () => {
      const c = await connect();
      expect(c.status()).to.equal('I');
      await c.client.query('BEGIN');
      expect(c.status()).to.equal('T');
      await expectError(c.client.query('SELECT 1/0'), '22012');
      expect(c.status()).to.equal('E');
      await expectError(c.client.query('SELECT 1'), '25P02');
      await c.client.query('ROLLBACK');
      expect(c.status()).to.equal('I');
      // A statement the stand-in refuses aborts the open block too, as on Redshift.
      await c.client.query('BEGIN');
      await expectRefused(c.client, 'SELECT ARRAY[1]', /arrays/);
      expect(c.status()).to.equal('E');
      await c.client.query('ROLLBACK');
      expect(c.status()).to.equal('I');
    });

    it('runs several statements of one Query as one implicit transaction', async () => {
      const { client } = await connect();
      const t = name('multi');
      await client.query(`CREATE TABLE ${t} (id int)`);
      const results = (await client.query(
        `INSERT INTO ${t} VALUES (1); INSERT INTO ${t} VALUES (2), (3); SELECT count(*)::int AS n FROM ${t}`,
      )) as unknown as pg.QueryResult[];
      expect(results.map((r) => r.rowCount)).to.deep.equal([1, 2, 1]);
      expect(results[2].rows).to.deep.equal([{ n: 3 }]);
      await expectError(client.query(`DELETE FROM ${t}; INSERT INTO ${t} VALUES ('x')`), '22P02');
      expect(await rows(client, `SELECT count(*)::int AS n FROM ${t}`)).to.deep.equal([{ n: 3 }]);
    });

    it('keeps the backend error fields, with the position mapped back to the statement as sent', async () => {
      const { client } = await connect();
      const sql = 'SELECT GETDATE(), "MissingColumn" FROM pg_catalog.pg_class';
      const err = await expectError(client.query(sql), '42703', /column "missingcolumn" does not exist/);
      expect(Number(err.position)).to.equal(sql.indexOf('"MissingColumn"') + 1);
      // In the second statement of a query string, counted from the string's start.
      const two = `SELECT 1;\n  SELECT LISTAGG(relname, ',') WITHIN GROUP (ORDER BY relname), nope FROM pg_class`;
      const err2 = await expectError(client.query(two), '42703');
      expect(Number(err2.position)).to.equal(two.indexOf('nope') + 1);
    });

    it('bounds a LOCK wait with SET statement_timeout in integer milliseconds', async () => {
      const a = (await connect()).client;
      const b = (await connect()).client;
      const t = name('locked');
      await a.query(`CREATE TABLE ${t} (id int)`);
      await a.query('BEGIN');
      await a.query(`LOCK ${t}`);
      await b.query('SET statement_timeout = 300');
      await b.query('BEGIN');
      const started = Date.now();
      await expectError(b.query(`LOCK ${t}`), '57014', /^Query \(\d+\) canceled on user's request$/);
      expect(Date.now() - started).to.be.within(250, 5000);
      await b.query('ROLLBACK');
      await a.query('COMMIT');
    });
    it('cancels a waiting statement on a CancelRequest', async () => {
      const a = (await connect()).client;
      const b = (await connect()).client;
      const t = name('cancel');
      await a.query(`CREATE TABLE ${t} (id int)`);
      await a.query('BEGIN');
      await a.query(`LOCK ${t}`);
      await b.query('BEGIN');
      const lock = new pg.Query(`LOCK ${t}`);
      const waiting = new Promise((resolve, reject) => {
        lock.on('end', resolve);
        lock.on('error', reject);
      });
      void b.query(lock);
      await new Promise((r) => setTimeout(r, 200));
      // A CancelRequest on a new connection, with the key the session got in BackendKeyData.
      const { processID, secretKey } = b as unknown as { processID: number; secretKey: number };
      await new Promise<void>((resolve, reject) => {
        const sock = net.connect(rs.port, '127.0.0.1', () => {
          const packet = Buffer.alloc(16);
          packet.writeInt32BE(16, 0);
          packet.writeInt32BE(80877102, 4);
          packet.writeInt32BE(processID, 8);
          packet.writeInt32BE(secretKey, 12);
          sock.end(packet);
        });
        sock.on('close', () => resolve());
        sock.on('error', reject);
      });
      await expectError(waiting, '57014');
      await b.query('ROLLBACK');
      await a.query('COMMIT');
    });

    it('ends the backend work of a client that goes away mid-statement', async () => {
      const a = (await connect()).client;
      const b = (await connect()).client;
      const t = name('gone');
      await a.query(`CREATE TABLE ${t} (id int)`);
      await a.query('BEGIN');
      await a.query(`LOCK ${t}`);
      await b.query('BEGIN');
      const { processID } = b as unknown as { processID: number };
      b.query(`LOCK ${t}`).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 200));
      (b as unknown as { connection: { stream: net.Socket } }).connection.stream.destroy();
      const direct = new pg.Client({ connectionString: testDatabaseUrl() });
      await direct.connect();
      try {
        let alive = 1;
        for (let i = 0; i < 50 && alive > 0; i++) {
          await new Promise((r) => setTimeout(r, 100));
          alive = (await direct.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1', [processID])).rows[0].n;
        }
        expect(alive).to.equal(0);
      } finally {
        await direct.end();
      }
      await a.query('COMMIT');
    });

    it('records every statement received, one per statement of a multi-statement query', async () => {
      const { client } = await connect();
      const before = rs.statements.length;
      await client.query('SELECT 1; SELECT 2 ;  SELECT 3');
      await client.query('SELECT $1::int AS x', [4]);
      expect(rs.statements.slice(before)).to.deep.equal(['SELECT 1', 'SELECT 2', 'SELECT 3', 'SELECT $1::int AS x']);
    });
  });

  describe('refusals', () => {
    let c: pg.Client;
    const t = 'refusal_t';
    const u = 'refusal_u';

    before(async () => {
      const client = new pg.Client(rs.config(db));
      await client.connect();
      await client.query(`CREATE TABLE ${t} (id int, name varchar(50), ts timestamp)`);
      await client.query(`CREATE TABLE ${u} (id int, name varchar(50), ts timestamp)`);
      await client.end();
    });

    beforeEach(async () => {
      c = (await connect()).client;
    });

    const cases: [string, RegExp, string?][] = [
      ['SELECT ARRAY[1, 2]', /arrays/],
      ["SELECT unnest('{a,b}'::text[])", /arrays/],
      ["SELECT 'a'::text[]", /arrays/],
      [`SELECT * FROM ${t} WHERE id = ANY('{1,2}')`, /ANY\(array\)/],
      [`SELECT * FROM ${t} WHERE id <> ALL($$1$$)`, /ALL\(array\)/],
      [`INSERT INTO ${t} (id) VALUES (1) ON CONFLICT DO NOTHING`, /ON CONFLICT/],
      [`INSERT INTO ${t} (id) VALUES (1) RETURNING id`, /RETURNING/],
      [`DELETE FROM ${t} WHERE id = 1 RETURNING *`, /RETURNING/],
      [`UPDATE ${t} SET id = 2 RETURNING id`, /RETURNING/],
      ['CREATE TEMP TABLE gone (a int) ON COMMIT DROP', /ON COMMIT/],
      ["SELECT format('%s', 1)", /format\(\)/],
      [`SELECT to_regclass('${t}')`, /to_regclass/],
      [`ALTER TABLE ${t} ADD COLUMN IF NOT EXISTS extra int`, /ADD COLUMN IF NOT EXISTS/],
      [`CREATE INDEX idx ON ${t} (id)`, /CREATE INDEX/],
      [`CREATE UNIQUE INDEX idx ON ${t} (id)`, /CREATE INDEX/],
      ['DO $$ BEGIN PERFORM 1; END $$', /DO blocks/],
      ['CREATE TABLE serials (id SERIAL, name text)', /SERIAL/],
      ['CREATE TABLE serials (id BIGSERIAL)', /SERIAL/],
      [`SELECT string_agg(name, ',') FROM ${t}`, /STRING_AGG/],
      [`SELECT array_agg(name) FROM ${t}`, /ARRAY_AGG/],
      ['SELECT pg_advisory_lock(42)', /advisory locks/],
      ['SELECT pg_try_advisory_xact_lock(42)', /advisory locks/],
      ['SELECT pg_advisory_unlock_all()', /advisory locks/],
      [`LOCK ${t} IN ACCESS EXCLUSIVE MODE`, /IN … MODE/],
      [`LOCK TABLE ${t} NOWAIT`, /NOWAIT/],
      ['SET lock_timeout = 1000', /lock_timeout/],
      ['SET LOCAL lock_timeout TO 1000', /lock_timeout/],
      ["SET statement_timeout = '30s'", /non-integer/, '22023'],
      ["SET statement_timeout TO '1min'", /non-integer/, '22023'],
      ['SET statement_timeout = 1.5', /non-integer/, '22023'],
      ["SET work_mem = '4MB'", /SET work_mem/, '42704'],
      [`SELECT now() FROM ${t}`, /leader-node-only function now\(\) in a statement over refusal_t/, 'XX000'],
      [`SELECT NOW(), id FROM public.${t} JOIN ${u} USING (id)`, /leader-node-only function now\(\)/, 'XX000'],
      [`INSERT INTO ${t} (id, ts) VALUES (1, CURRENT_TIMESTAMP)`, /current_timestamp/, 'XX000'],
      [`UPDATE ${t} SET ts = now()`, /now\(\)/, 'XX000'],
      [`DELETE FROM ${t} WHERE ts < now()`, /now\(\)/, 'XX000'],
      [`SELECT current_time FROM ${t}`, /current_time/, 'XX000'],
      [`SELECT localtime FROM ${t}`, /localtime/, 'XX000'],
      [`SELECT age(ts) FROM ${t}`, /age\(\)/, 'XX000'],
      [`SELECT substr(name, 1, 2) FROM ${t}`, /substr\(\)/, 'XX000'],
      [`SELECT current_schema() FROM ${t}`, /current_schema\(\)/, 'XX000'],
      [`SELECT has_table_privilege('${t}', 'select') FROM ${t}`, /has_table_privilege\(\)/, 'XX000'],
      [`SELECT id FROM ${t} WHERE ts > (SELECT max(ts) FROM ${u}) AND now() > ts`, /now\(\)/, 'XX000'],
      [`SELECT id FROM ${t} WHERE '${t}'::regclass > 0`, /::regclass in a statement over refusal_t/, 'XX000'],
      [`SELECT id FROM ${t} FOR UPDATE`, /FOR UPDATE/],
      [`SELECT id FROM ${t} FOR UPDATE SKIP LOCKED`, /FOR UPDATE/],
      ['SAVEPOINT sp', /savepoints/],
      [`SELECT * FROM ${t} WHERE name IS DISTINCT FROM 'x'`, /DISTINCT FROM/],
      ['SELECT * FROM (VALUES (1), (2)) AS v (x)', /VALUES lists/],
      [`INSERT INTO ${t} AS x (id) VALUES (1)`, /alias/],
      [`DELETE FROM ${t} x USING ${u} WHERE x.id = ${u}.id`, /alias for the target table of DELETE/],
      [`MERGE INTO ${t} USING (SELECT * FROM ${u}) s ON ${t}.id = s.id WHEN MATCHED THEN DELETE`, /subquery as source/],
      ['CREATE SEQUENCE s', /sequences/],
      ["SELECT nextval('s')", /sequences/],
      ['SELECT gen_random_uuid()', /UUID/],
      ["SELECT '{}'::jsonb", /JSONB type/],
      ['CREATE TABLE j (doc jsonb)', /JSONB type/],
      ['CREATE TABLE j (id uuid)', /UUID type/],
      ['CREATE TABLE j (a int CHECK (a > 0))', /CHECK constraints/],
      ['CREATE TABLE j (a int, CONSTRAINT positive CHECK (a > 0))', /CHECK constraints/],
      ['CREATE TABLE j (a varchar(65536))', /VARCHAR\(65536\)/],
      ['CREATE TABLE j (a int) PARTITION BY RANGE (a)', /PARTITION/],
      ['CREATE TABLE j (ts timestamp(3))', /TIMESTAMP\(p\)/],
      ['CREATE TABLE j (id int GENERATED ALWAYS AS IDENTITY)', /GENERATED ALWAYS/],
      [`ALTER TABLE ${t} ADD COLUMN a int, ADD COLUMN b int`, /several ALTER TABLE actions/],
      [`ALTER TABLE ${t} ALTER COLUMN name SET NOT NULL`, /ALTER COLUMN … SET/],
      [`ALTER TABLE ${t} ALTER COLUMN name SET DATA TYPE varchar(60)`, /SET DATA TYPE/],
      [`ALTER TABLE ${t} ALTER COLUMN id TYPE bigint`, /ALTER COLUMN … TYPE bigint/],
      [`ALTER TABLE ${t} ADD COLUMN k int PRIMARY KEY`, /ADD COLUMN with UNIQUE, PRIMARY KEY/],
      [`ALTER TABLE ${t} DROP COLUMN IF EXISTS nothing`, /DROP COLUMN IF EXISTS/],
      [`TRUNCATE ${t}, ${u}`, /TRUNCATE/],
      [`TRUNCATE ${t} RESTART IDENTITY`, /TRUNCATE/],
      ['LISTEN events', /LISTEN\/NOTIFY/],
      ['DISCARD ALL', /the DISCARD command/],
      ['SELECT clock_timestamp()', /CLOCK_TIMESTAMP/],
      ['SELECT pg_sleep(1)', /PG_SLEEP/],
      [`SELECT ROW(1, 2)`, /row constructors/],
      [`COPY ${t} FROM STDIN`, /COPY FROM STDIN/],
      [`COPY ${t} TO STDOUT`, /COPY TO/],
      ['COPY (SELECT 1) TO STDOUT', /COPY without a table/, '42601'],
      [`UNLOAD ('SELECT 1') TO 's3://stage/x' ${ROLE}`, /not emulated: UNLOAD/],
    ];
    for (const [sql, reason, code] of cases) {
      it(`refuses: ${sql}`, async () => {
        await expectRefused(c, sql, reason, code ?? (reason.source.includes('leader') ? 'XX000' : undefined));
      });
    }

    it('sends the INFO notice Redshift sends for each leader-node-only function', async () => {
      const tracked = await connect();
      await expectRefused(tracked.client, `SELECT now(), current_timestamp FROM ${t}`, /leader-node-only/, 'XX000');
      expect(tracked.notices).to.include.members(['Function "now()" not supported.', 'Function "current_timestamp" not supported.']);
    });

    it('refuses TRUNCATE inside a transaction block (it would commit on Redshift) and aborts the block', async () => {
      const tracked = await connect();
      await tracked.client.query('BEGIN');
      await expectRefused(tracked.client, `TRUNCATE ${t}`, /TRUNCATE inside a transaction block/);
      expect(tracked.status()).to.equal('E');
      await tracked.client.query('ROLLBACK');
      // A multi-statement query is one transaction block as well.
      const before = rs.refused.length;
      await expectError(tracked.client.query(`DELETE FROM ${t}; TRUNCATE ${t}`), '0A000', /TRUNCATE inside a transaction block/);
      expect(rs.refused.slice(before).map((r) => r.sql)).to.deep.equal([`TRUNCATE ${t}`]);
      await tracked.client.query(`TRUNCATE ${t}`);
    });

    it('refuses VACUUM inside a transaction block and accepts it outside (as a no-op)', async () => {
      await c.query('BEGIN');
      await expectRefused(c, `VACUUM ${t}`, /VACUUM inside a transaction block/);
      await c.query('ROLLBACK');
      expect((await c.query(`VACUUM DELETE ONLY ${t} TO 100 PERCENT`)).command).to.equal('VACUUM');
    });

    it('refuses ALTER COLUMN … TYPE inside a transaction block or a multi-statement query', async () => {
      await c.query('BEGIN');
      await expectRefused(c, `ALTER TABLE ${t} ALTER COLUMN name TYPE varchar(80)`, /inside a transaction block/, '25001');
      await c.query('ROLLBACK');
      await expectError(c.query(`SELECT 1; ALTER TABLE ${t} ALTER COLUMN name TYPE varchar(80)`), '25001');
    });

    it('refuses a statement over 16 MB', async () => {
      const big = `SELECT '${'x'.repeat(16 * 1024 * 1024)}' AS s`;
      const before = rs.refused.length;
      await expectError(c.query(big), '54000', /Statement is too large/);
      expect(rs.refused.slice(before).map((r) => r.reason)).to.deep.equal([`statement over 16 MB (${Buffer.byteLength(big)} bytes)`]);
      rs.refused.splice(before);
    });

    it('refuses over the extended protocol too', async () => {
      await expectRefused(c, `INSERT INTO ${t} (id) VALUES (1) RETURNING id`, /RETURNING/);
      const before = rs.refused.length;
      await expectError(c.query(`INSERT INTO ${t} (id) VALUES ($1) ON CONFLICT DO NOTHING`, [1]), '0A000');
      expect(rs.refused.slice(before).map((r) => r.reason)).to.deep.equal(['INSERT … ON CONFLICT']);
    });

    const valid: string[] = [
      'SELECT GETDATE()',
      'SELECT SYSDATE',
      `SELECT GETDATE(), SYSDATE, id FROM ${t}`,
      `INSERT INTO ${t} (id, name, ts) VALUES (1, 'a', GETDATE())`,
      `INSERT INTO ${t} (id, name, ts) VALUES (2, 'b', SYSDATE)`,
      `SELECT LISTAGG(name, ',') WITHIN GROUP (ORDER BY name) FROM ${t}`,
      `SELECT LISTAGG(DISTINCT name, '|') WITHIN GROUP (ORDER BY name) FROM ${t}`,
      `DELETE FROM ${t} USING ${u} WHERE ${t}.id = ${u}.id`,
      `DELETE ${t} WHERE id = 99`,
      `UPDATE ${t} SET name = 'z' FROM ${u} WHERE ${t}.id = ${u}.id`,
      `CREATE TEMP TABLE stage_like (LIKE ${t})`,
      'CREATE TEMP TABLE ident (id BIGINT IDENTITY(1, 1), note VARCHAR(MAX))',
      'CREATE TABLE IF NOT EXISTS dflt (id INT GENERATED BY DEFAULT AS IDENTITY(1, 1), at TIMESTAMP DEFAULT GETDATE() NOT NULL) DISTSTYLE EVEN SORTKEY (at)',
      'SET statement_timeout = 60000',
      'SET statement_timeout TO 60000',
      'SET statement_timeout TO DEFAULT',
      "SET query_group TO 'etl'",
      'RESET query_group',
      'SET search_path TO public',
      `MERGE INTO ${t} USING ${u} ON ${t}.id = ${u}.id WHEN MATCHED THEN UPDATE SET name = ${u}.name WHEN NOT MATCHED THEN INSERT (id, name) VALUES (${u}.id, ${u}.name)`,
      'SELECT now(), current_timestamp, current_schema()',
      "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'refusal_t'",
      "SELECT relname, now() FROM pg_catalog.pg_class WHERE relname = 'refusal_t'",
      'SELECT count(*) FROM pg_namespace WHERE nspname = current_schema()',
      `SELECT NVL(name, 'none') AS n, LEN(name) FROM ${t}`,
      `SELECT id FROM ${t} MINUS SELECT id FROM ${u}`,
      `SELECT substring(name, 1, 2), trim(both ' ' from name), extract(epoch from ts) FROM ${t}`,
      `WITH recent AS (SELECT id FROM ${t}) SELECT count(*) FROM recent`,
      `SELECT id FROM ${t} WHERE id IN (SELECT id FROM ${u}) UNION ALL (SELECT id FROM ${u})`,
      "SELECT 'ON CONFLICT RETURNING now() ARRAY[1] string_agg(' AS tricky",
      `INSERT INTO ${t} (id, name) VALUES (3, 'now() ::text[] ON CONFLICT')`,
      `SELECT "ID" FROM "REFUSAL_T" -- comment: RETURNING now()`,
      `BEGIN; LOCK ${t}, ${u}; DELETE FROM ${t} WHERE id < 0; COMMIT`,
      `ANALYZE ${t}`,
      `ALTER TABLE ${t} ALTER SORTKEY (id)`,
      `ALTER TABLE ${t} ADD CONSTRAINT pk PRIMARY KEY (id)`,
      `TRUNCATE TABLE ${u}`,
      `COMMENT ON TABLE ${t} IS 'kpis'`,
    ];
    for (const sql of valid) {
      it(`accepts: ${sql.slice(0, 120)}`, async () => {
        const before = rs.refused.length;
        await c.query(sql);
        expect(rs.refused.slice(before)).to.deep.equal([]);
      });
    }
  });

  describe('translations', () => {
    let c: pg.Client;
    beforeEach(async () => {
      c = (await connect()).client;
    });

    it('GETDATE() is the statement start to the second and SYSDATE the transaction start, both without time zone', async () => {
      const r = await c.query('SELECT GETDATE() AS g, SYSDATE AS s');
      expect(r.fields.map((f) => f.dataTypeID)).to.deep.equal([1114, 1114]);
      const g = r.rows[0].g as Date;
      expect(g.getMilliseconds()).to.equal(0);
      expect(Math.abs(g.getTime() - Date.now())).to.be.below(5000);
      await c.query('BEGIN');
      const first = (await c.query('SELECT GETDATE() AS g, SYSDATE AS s')).rows[0] as { g: Date; s: Date };
      await new Promise((r2) => setTimeout(r2, 1100));
      const second = (await c.query('SELECT GETDATE() AS g, SYSDATE AS s')).rows[0] as { g: Date; s: Date };
      await c.query('COMMIT');
      expect(second.s.getTime()).to.equal(first.s.getTime());
      expect(second.g.getTime()).to.be.above(first.g.getTime());
    });

    it('VARCHAR(n) counts bytes: 4 three-byte characters fit VARCHAR(12), 5 do not', async () => {
      const t = name('bytes');
      await c.query(`CREATE TABLE ${t} (v VARCHAR(12))`);
      await c.query(`INSERT INTO ${t} VALUES ($1)`, ['日本語字']);
      await expectError(
        c.query(`INSERT INTO ${t} VALUES ($1)`, ['日本語字書']),
        '22001',
        /^value too long for type character varying\(12\)$/,
      );
      await expectError(c.query(`UPDATE ${t} SET v = v || 'x'`), '22001', /character varying\(12\)/);
      // 255 characters of up to 4 bytes need VARCHAR(1020).
      const wide = name('wide');
      await c.query(`CREATE TABLE ${wide} (artist VARCHAR(1020), narrow VARCHAR(255))`);
      await c.query(`INSERT INTO ${wide} (artist) VALUES ($1)`, ['😀'.repeat(255)]);
      await expectError(c.query(`INSERT INTO ${wide} (narrow) VALUES ($1)`, ['é'.repeat(255)]), '22001', /character varying\(255\)/);
      const info = await rows(
        c,
        `SELECT column_name, character_maximum_length FROM information_schema.columns WHERE table_name = '${wide}' ORDER BY ordinal_position`,
      );
      expect(info).to.deep.equal([
        { column_name: 'artist', character_maximum_length: 1020 },
        { column_name: 'narrow', character_maximum_length: 255 },
      ]);
    });

    it('TEXT becomes VARCHAR(256): a 300-byte value fails as on Redshift', async () => {
      const t = name('text');
      await c.query(`CREATE TABLE ${t} (file_key TEXT NOT NULL, other VARCHAR, n NVARCHAR)`);
      await c.query(`INSERT INTO ${t} VALUES ($1, 'a', 'b')`, ['k'.repeat(256)]);
      await expectError(c.query(`INSERT INTO ${t} VALUES ($1, 'a', 'b')`, ['k'.repeat(300)]), '22001', /character varying\(256\)/);
      const info = await rows(
        c,
        `SELECT data_type, character_maximum_length FROM information_schema.columns WHERE table_name = '${t}' ORDER BY ordinal_position`,
      );
      expect(info).to.deep.equal([
        { data_type: 'character varying', character_maximum_length: 256 },
        { data_type: 'character varying', character_maximum_length: 256 },
        { data_type: 'character varying', character_maximum_length: 256 },
      ]);
    });

    it('VARCHAR(MAX) is 65535 bytes; CHAR holds single-byte characters only', async () => {
      const t = name('max');
      await c.query(`CREATE TABLE ${t} (v VARCHAR(MAX), c CHAR(4))`);
      const info = await rows(
        c,
        `SELECT character_maximum_length AS n FROM information_schema.columns WHERE table_name = '${t}' ORDER BY ordinal_position`,
      );
      expect(info).to.deep.equal([{ n: 65535 }, { n: 4 }]);
      await c.query(`INSERT INTO ${t} (c) VALUES ('abcd')`);
      await expectError(c.query(`INSERT INTO ${t} (c) VALUES ('é')`), 'XX000', /Multibyte character not supported for CHAR/);
    });

    it('does not enforce PRIMARY KEY or UNIQUE (duplicates go in), but a PRIMARY KEY column is NOT NULL', async () => {
      const t = name('pk');
      await c.query(`CREATE TABLE ${t} (a DATE NOT NULL, b INT, c VARCHAR(10) UNIQUE, PRIMARY KEY (a, b))`);
      await c.query(`INSERT INTO ${t} VALUES ('2024-01-01', 1, 'x'), ('2024-01-01', 1, 'x')`);
      expect(await rows(c, `SELECT count(*)::int AS n FROM ${t}`)).to.deep.equal([{ n: 2 }]);
      await expectError(c.query(`INSERT INTO ${t} VALUES ('2024-01-01', NULL, 'y')`), '23502');
      const pk = name('pk');
      await c.query(`CREATE TABLE ${pk} (id INT PRIMARY KEY, ref INT REFERENCES ${t} (b))`);
      await c.query(`INSERT INTO ${pk} VALUES (1, 99), (1, 98)`);
      const constraints = await rows(
        c,
        `SELECT contype FROM pg_constraint WHERE conrelid = '${t}'::regclass AND contype <> 'c' AND contype <> 'n'`,
      );
      expect(constraints).to.deep.equal([]);
    });

    it('DECIMAL without precision is DECIMAL(18,0); IDENTITY generates values and refuses explicit ones', async () => {
      const t = name('num');
      await c.query(`CREATE TABLE ${t} (id BIGINT IDENTITY(100, 5), d DECIMAL, note VARCHAR(10))`);
      await c.query(`INSERT INTO ${t} (d, note) VALUES (1.6, 'a'), (2.4, 'b')`);
      expect(await rows(c, `SELECT id::int AS id, d::text AS d FROM ${t} ORDER BY id`)).to.deep.equal([
        { id: 100, d: '2' },
        { id: 105, d: '2' },
      ]);
      const info = await rows(
        c,
        `SELECT numeric_precision AS p, numeric_scale AS s FROM information_schema.columns WHERE table_name = '${t}' AND column_name = 'd'`,
      );
      expect(info).to.deep.equal([{ p: 18, s: 0 }]);
      await expectError(c.query(`INSERT INTO ${t} (id, d) VALUES (1, 1)`), '428C9');
    });

    it('folds quoted identifiers to lower case, as Redshift does by default', async () => {
      await c.query('CREATE TABLE "MixedCase" ("SomeColumn" INT)');
      await c.query('INSERT INTO mixedcase (somecolumn) VALUES (7)');
      const r = await c.query('SELECT "SomeColumn" AS "Out" FROM "MIXEDCASE"');
      expect(r.rows).to.deep.equal([{ out: 7 }]);
    });

    it('DATEADD and DATEDIFF work as on Redshift (DATEDIFF counts boundaries crossed)', async () => {
      const r = await rows(
        c,
        `SELECT DATEADD(second, -30, '2024-01-01 00:00:10')::text AS a, DATEADD('day', 2, '2024-02-28'::date)::text AS b,
                DATEADD(month, 1, '2024-01-31 12:00:00'::timestamp)::text AS c2,
                DATEDIFF(day, '2024-01-01 23:59:59', '2024-01-02 00:00:01')::int AS d,
                DATEDIFF(second, '2024-01-01 00:00:00.900', '2024-01-01 00:00:01.100')::int AS e,
                DATEDIFF(month, '2023-12-31', '2024-01-01')::int AS f, DATEDIFF(year, '2024-06-01', '2023-01-01')::int AS g`,
      );
      expect(r).to.deep.equal([{ a: '2023-12-31 23:59:40', b: '2024-03-01 00:00:00', c2: '2024-02-29 12:00:00', d: 1, e: 1, f: 1, g: -1 }]);
      const t = name('lease');
      await c.query(`CREATE TABLE ${t} (holder VARCHAR(64), heartbeat TIMESTAMP)`);
      await c.query(`INSERT INTO ${t} VALUES ('run-1', DATEADD(minute, -10, GETDATE()))`);
      const stale = await rows(c, `SELECT holder FROM ${t} WHERE heartbeat < DATEADD(second, -$1::int, GETDATE())`, [60]);
      expect(stale).to.deep.equal([{ holder: 'run-1' }]);
    });

    it('ALTER TABLE ADD COLUMN gets the same byte semantics', async () => {
      const t = name('addcol');
      await c.query(`CREATE TABLE ${t} (id INT)`);
      await c.query(`ALTER TABLE ${t} ADD COLUMN content_hash VARCHAR(8) DEFAULT NULL`);
      await c.query(`ALTER TABLE ${t} ADD note TEXT`);
      await c.query(`INSERT INTO ${t} (content_hash) VALUES ('éééé')`);
      await expectError(c.query(`INSERT INTO ${t} (content_hash) VALUES ('ééééé')`), '22001', /character varying\(8\)/);
      const info = await rows(
        c,
        `SELECT column_name, character_maximum_length AS n FROM information_schema.columns WHERE table_name = '${t}' ORDER BY ordinal_position`,
      );
      expect(info).to.deep.equal([
        { column_name: 'id', n: null },
        { column_name: 'content_hash', n: 8 },
        { column_name: 'note', n: 256 },
      ]);
    });

    it('CREATE TABLE #name makes a temporary table, named #name in every statement', async () => {
      const t = name('hash');
      await c.query(`CREATE TABLE ${t} (k VARCHAR(4), v INT)`);
      await c.query(`CREATE TABLE #${t}_stage (LIKE ${t})`);
      await s3.putObject(BUCKET, `${t}/f.csv`, 'a,1\n');
      await c.query(`COPY #${t}_stage FROM 's3://${BUCKET}/${t}/f.csv' ${ROLE} FORMAT AS CSV`);
      await c.query(`INSERT INTO ${t} SELECT * FROM #${t}_stage`);
      expect(await rows(c, `SELECT k, v FROM #${t}_stage`)).to.deep.equal([{ k: 'a', v: 1 }]);
      const other = (await connect()).client;
      await expectError(other.query(`SELECT * FROM #${t}_stage`), '42P01');
      expect(await rows(other, `SELECT k FROM ${t}`)).to.deep.equal([{ k: 'a' }]);
    });

    it('version() says Redshift', async () => {
      expect((await rows<{ v: string }>(c, 'SELECT version() AS v'))[0].v).to.match(/^PostgreSQL 8\.0\.2 .*Redshift 1\.0\.\d+$/);
    });

    it('LISTAGG becomes string_agg, ordered by WITHIN GROUP', async () => {
      const t = name('agg');
      await c.query(`CREATE TABLE ${t} (g INT, v VARCHAR(5))`);
      await c.query(`INSERT INTO ${t} VALUES (1, 'b'), (1, 'a'), (2, 'c')`);
      expect(await rows(c, `SELECT g, LISTAGG(v, ',') WITHIN GROUP (ORDER BY v) AS l FROM ${t} GROUP BY g ORDER BY g`)).to.deep.equal([
        { g: 1, l: 'a,b' },
        { g: 2, l: 'c' },
      ]);
    });

    it('returns float8 with 15 significant digits (extra_float_digits 0) unless the session raises it', async () => {
      expect((await c.query('SELECT 1/3::float8 AS x')).rows[0].x).to.equal(0.333333333333333);
      await c.query('SET extra_float_digits TO 2');
      expect((await c.query('SELECT 1/3::float8 AS x')).rows[0].x).to.equal(1 / 3);
      await expectRefused(c, 'SET extra_float_digits TO 3', /extra_float_digits > 2/, '22023');
    });

    it('CREATE TEMP TABLE (LIKE t) keeps the byte lengths and NOT NULL, not the keys', async () => {
      const t = name('target');
      await c.query(`CREATE TABLE ${t} (k VARCHAR(6) NOT NULL, v INT, PRIMARY KEY (k))`);
      await c.query(`CREATE TEMP TABLE ${t}_stage (LIKE ${t})`);
      await c.query(`INSERT INTO ${t}_stage VALUES ('ééé', 1), ('ééé', 1)`);
      await expectError(c.query(`INSERT INTO ${t}_stage VALUES ('éééé', 1)`), '22001', /character varying\(6\)/);
      await expectError(c.query(`INSERT INTO ${t}_stage VALUES (NULL, 1)`), '23502');
      // Temp tables live in one session.
      const other = (await connect()).client;
      await expectError(other.query(`SELECT * FROM ${t}_stage`), '42P01');
    });

    it('ALTER COLUMN … TYPE VARCHAR(n) widens a column outside a transaction block, and never below the data', async () => {
      const t = name('widen');
      await c.query(`CREATE TABLE ${t} (artist VARCHAR(4), n INT, d VARCHAR(4) DEFAULT 'x')`);
      await c.query(`INSERT INTO ${t} (artist) VALUES ('éé')`);
      await expectError(c.query(`INSERT INTO ${t} (artist) VALUES ('ééé')`), '22001');
      expect((await c.query(`ALTER TABLE ${t} ALTER COLUMN artist TYPE VARCHAR(1020)`)).command).to.equal('ALTER');
      await c.query(`INSERT INTO ${t} (artist) VALUES ($1)`, ['😀'.repeat(255)]);
      const info = await rows(
        c,
        `SELECT character_maximum_length AS n FROM information_schema.columns WHERE table_name = '${t}' AND column_name = 'artist'`,
      );
      expect(info).to.deep.equal([{ n: 1020 }]);
      await expectError(
        c.query(`ALTER TABLE ${t} ALTER COLUMN artist TYPE VARCHAR(100)`),
        'XX000',
        /target column size should be greater or equal/,
      );
      await expectError(c.query(`ALTER TABLE ${t} ALTER COLUMN d TYPE VARCHAR(100)`), '0A000', /default value/);
      const k = name('keyed');
      await c.query(`CREATE TABLE ${k} (id VARCHAR(4) PRIMARY KEY)`);
      await expectError(c.query(`ALTER TABLE ${k} ALTER COLUMN id TYPE VARCHAR(8)`), '0A000', /PRIMARY KEY/);
    });

    it('pg_last_copy_id() and pg_last_copy_count() answer for the session', async () => {
      const t = name('lastcopy');
      await c.query(`CREATE TABLE ${t} (id INT)`);
      await s3.putObject(BUCKET, `${t}/part-0.csv`, '1\n2\n');
      await c.query(`COPY ${t} FROM 's3://${BUCKET}/${t}/' ${ROLE} FORMAT AS CSV`);
      const r = await rows<{ id: number; n: number }>(c, 'SELECT pg_last_copy_id() AS id, pg_last_copy_count() AS n');
      expect(r[0].n).to.equal(2);
      expect(r[0].id).to.be.above(0);
    });
  });

  describe('COPY from S3', () => {
    let c: pg.Client;
    let tracked: Tracked;
    beforeEach(async () => {
      tracked = await connect();
      c = tracked.client;
    });

    async function table(ddl: string): Promise<string> {
      const t = name('copy');
      await c.query(`CREATE TABLE ${t} (${ddl})`);
      return t;
    }

    async function loadErrors(queryId?: number): Promise<Record<string, unknown>[]> {
      const where = queryId === undefined ? 'query_id = pg_last_copy_id()' : `query_id = ${queryId}`;
      return rows(
        c,
        `SELECT trim(file_name) AS file_name, line_number::int AS line_number, trim(column_name) AS column_name, trim(column_type) AS column_type,
                trim(column_length) AS column_length, error_code, trim(error_message) AS error_message
           FROM sys_load_error_detail WHERE ${where} ORDER BY line_number`,
      );
    }

    it('without MANIFEST the key is a prefix: every object under it loads, look-alikes included', async () => {
      const t = await table('id INT, name VARCHAR(10)');
      await s3.putObject(BUCKET, `${t}/data.csv`, '1,a\n2,b\n');
      await s3.putObject(BUCKET, `${t}/data.csv.bak`, '3,stale\n');
      await s3.putObject(BUCKET, `${t}/other.csv`, '4,not-matched\n');
      const r = await c.query(`COPY ${t} FROM 's3://${BUCKET}/${t}/data.csv' ${ROLE} FORMAT AS CSV`);
      expect(r.command).to.equal('COPY');
      expect(r.rowCount).to.equal(3);
      expect(await rows(c, `SELECT id, name FROM ${t} ORDER BY id`)).to.deep.equal([
        { id: 1, name: 'a' },
        { id: 2, name: 'b' },
        { id: 3, name: 'stale' },
      ]);
      const rec = rs.copies[rs.copies.length - 1];
      expect(rec).to.deep.include({ table: t, from: `s3://${BUCKET}/${t}/data.csv`, rows: 3, manifest: false });
      expect(rec.files).to.deep.equal([`s3://${BUCKET}/${t}/data.csv`, `s3://${BUCKET}/${t}/data.csv.bak`]);
      expect(tracked.notices).to.include(`Load into table '${t}' completed, 3 record(s) loaded successfully.`);
    });

    it('with MANIFEST loads exactly the listed objects; a missing mandatory one fails, a missing optional one is skipped', async () => {
      const t = await table('id INT, name VARCHAR(10)');
      await s3.putObject(BUCKET, `${t}/a.csv`, '1,a\n');
      await s3.putObject(BUCKET, `${t}/a.csv.bak`, '9,stale\n');
      await s3.putObject(BUCKET, `${t}/b.csv`, '2,b\n');
      const manifest = (entries: { url: string; mandatory?: boolean }[]) => JSON.stringify({ entries });
      await s3.putObject(
        BUCKET,
        `${t}/manifest.json`,
        manifest([
          { url: `s3://${BUCKET}/${t}/a.csv`, mandatory: true },
          { url: `s3://${BUCKET}/${t}/b.csv`, mandatory: true },
          { url: `s3://${BUCKET}/${t}/gone.csv`, mandatory: false },
        ]),
      );
      const r = await c.query(
        `COPY ${t} FROM 's3://${BUCKET}/${t}/manifest.json' ${ROLE} MANIFEST FORMAT AS CSV COMPUPDATE OFF STATUPDATE OFF`,
      );
      expect(r.rowCount).to.equal(2);
      expect(await rows(c, `SELECT id FROM ${t} ORDER BY id`)).to.deep.equal([{ id: 1 }, { id: 2 }]);
      const rec = rs.copies[rs.copies.length - 1];
      expect(rec.manifest).to.equal(true);
      expect(rec.files).to.deep.equal([`s3://${BUCKET}/${t}/a.csv`, `s3://${BUCKET}/${t}/b.csv`]);
      expect(rec.options).to.include.members(['IAM_ROLE', 'MANIFEST', 'COMPUPDATE OFF', 'STATUPDATE OFF']);

      await s3.putObject(BUCKET, `${t}/m2.json`, manifest([{ url: `s3://${BUCKET}/${t}/gone.csv`, mandatory: true }]));
      await expectError(c.query(`COPY ${t} FROM 's3://${BUCKET}/${t}/m2.json' ${ROLE} MANIFEST CSV`), 'XX000', /mandatory file/);
      await expectError(
        c.query(`COPY ${t} FROM 's3://${BUCKET}/${t}/nothing.json' ${ROLE} MANIFEST CSV`),
        'XX000',
        /Problem reading manifest file/,
      );
      await expectError(c.query(`COPY ${t} FROM 's3://${BUCKET}/${t}/none/' ${ROLE} CSV`), 'XX000', /prefix .* does not exist/);
      expect(await rows(c, `SELECT count(*)::int AS n FROM ${t}`)).to.deep.equal([{ n: 2 }]);
    });

    it('IGNOREHEADER skips the header of every file', async () => {
      const t = await table('id INT, name VARCHAR(10)');
      await s3.putObject(BUCKET, `${t}/part-0.csv`, 'id,name\n1,a\n');
      await s3.putObject(BUCKET, `${t}/part-1.csv`, 'id,name\n2,b\n3,c\n');
      const r = await c.query(`COPY ${t} FROM 's3://${BUCKET}/${t}/part-' ${ROLE} FORMAT CSV IGNOREHEADER 1`);
      expect(r.rowCount).to.equal(3);
      // Without it, each header is a row, and 'id' is no integer.
      await expectError(c.query(`COPY ${t} FROM 's3://${BUCKET}/${t}/part-' ${ROLE} FORMAT CSV`), 'XX000', /Load into table '.*' failed/);
      const errs = await loadErrors();
      expect(errs[0]).to.deep.include({ file_name: `s3://${BUCKET}/${t}/part-0.csv`, line_number: 1, column_name: 'id', error_code: 1207 });
      expect(await rows(c, `SELECT count(*)::int AS n FROM ${t}`)).to.deep.equal([{ n: 3 }]);
    });

    it("applies Redshift's empty-field rule: '' for an empty CHAR/VARCHAR field, NULL for other types", async () => {
      const t = await table('id INT, name VARCHAR(10), n INT, d DATE, f FLOAT');
      await s3.putObject(BUCKET, `${t}/f.csv`, '1,,,,\n2,"",  ,2024-01-02,1.5\n3,\\N,\\N,\\N,\\N\n4,  ,5,,\n');
      await c.query(`COPY ${t} FROM 's3://${BUCKET}/${t}/f.csv' ${ROLE} FORMAT AS CSV`);
      expect(await rows(c, `SELECT id, name, n, d::text AS d, f FROM ${t} ORDER BY id`)).to.deep.equal([
        { id: 1, name: '', n: null, d: null, f: null },
        { id: 2, name: '', n: null, d: '2024-01-02', f: 1.5 },
        { id: 3, name: null, n: null, d: null, f: null },
        { id: 4, name: '  ', n: 5, d: null, f: null },
      ]);
    });

    it('EMPTYASNULL, BLANKSASNULL and NULL AS make empty, blank or marked fields NULL (quoted or not)', async () => {
      const t = await table('id INT, name VARCHAR(10)');
      await s3.putObject(BUCKET, `${t}/f.csv`, '1,\n2,""\n3,   \n4,x\n');
      await c.query(`COPY ${t} FROM 's3://${BUCKET}/${t}/f.csv' ${ROLE} FORMAT AS CSV EMPTYASNULL BLANKSASNULL`);
      expect(await rows(c, `SELECT id, name FROM ${t} ORDER BY id`)).to.deep.equal([
        { id: 1, name: null },
        { id: 2, name: null },
        { id: 3, name: null },
        { id: 4, name: 'x' },
      ]);
      const t2 = await table('id INT, name VARCHAR(10)');
      await s3.putObject(BUCKET, `${t2}/f.csv`, '1,NULL\n2,"NULL"\n3,\n4,null\n');
      await c.query(`COPY ${t2} FROM 's3://${BUCKET}/${t2}/f.csv' ${ROLE} CSV NULL AS 'NULL'`);
      expect(await rows(c, `SELECT id, name FROM ${t2} ORDER BY id`)).to.deep.equal([
        { id: 1, name: null },
        { id: 2, name: null },
        { id: 3, name: '' },
        { id: 4, name: 'null' },
      ]);
    });

    it('parses Redshift CSV: doubled quotes, delimiters and newlines inside quotes, blanks around quoted fields', async () => {
      const t = await table('id INT, name VARCHAR(40)');
      await s3.putObject(BUCKET, `${t}/f.csv`, '1,"say ""hi"""\n2,"a,b"\n3,"two\nlines"\n4,  "padded"  \n5;x\n');
      await expectError(c.query(`COPY ${t} FROM 's3://${BUCKET}/${t}/f.csv' ${ROLE} FORMAT AS CSV`), 'XX000');
      await s3.putObject(BUCKET, `${t}/f.csv`, '1,"say ""hi"""\n2,"a,b"\n3,"two\nlines"\n4,  "padded"  \n');
      await c.query(`COPY ${t} FROM 's3://${BUCKET}/${t}/f.csv' ${ROLE} FORMAT AS CSV`);
      expect(await rows(c, `SELECT id, name FROM ${t} ORDER BY id`)).to.deep.equal([
        { id: 1, name: 'say "hi"' },
        { id: 2, name: 'a,b' },
        { id: 3, name: 'two\nlines' },
        { id: 4, name: 'padded' },
      ]);
      const p = await table('id INT, name VARCHAR(40)');
      await s3.putObject(BUCKET, `${p}/f.psv`, "1|'quoted'\n");
      await c.query(`COPY ${p} FROM 's3://${BUCKET}/${p}/f.psv' ${ROLE} CSV QUOTE AS '''' DELIMITER '|'`);
      expect(await rows(c, `SELECT name FROM ${p}`)).to.deep.equal([{ name: 'quoted' }]);
    });

    it('keeps a CR of CRLF line ends in the data, so an integer column fails on it', async () => {
      const t = await table('name VARCHAR(10), id INT');
      await s3.putObject(BUCKET, `${t}/f.csv`, 'a,1\r\n');
      await expectError(c.query(`COPY ${t} FROM 's3://${BUCKET}/${t}/f.csv' ${ROLE} FORMAT AS CSV`), 'XX000');
      expect((await loadErrors())[0]).to.deep.include({ column_name: 'id', error_code: 1207 });
    });

    it('reads gzip objects with GZIP, and fails on them without it', async () => {
      const t = await table('id INT, name VARCHAR(10)');
      await s3.putObject(BUCKET, `${t}/f.csv.gz`, gzipSync(Buffer.from('1,a\n2,b\n')));
      expect((await c.query(`COPY ${t} FROM 's3://${BUCKET}/${t}/f.csv.gz' ${ROLE} FORMAT AS CSV GZIP`)).rowCount).to.equal(2);
      await expectError(c.query(`COPY ${t} FROM 's3://${BUCKET}/${t}/f.csv.gz' ${ROLE} FORMAT AS CSV`), 'XX000');
      await s3.putObject(BUCKET, `${t}/plain.csv`, '3,c\n');
      await expectError(c.query(`COPY ${t} FROM 's3://${BUCKET}/${t}/plain.csv' ${ROLE} FORMAT AS CSV GZIP`), 'XX000', /gzip/);
      expect(await rows(c, `SELECT count(*)::int AS n FROM ${t}`)).to.deep.equal([{ n: 2 }]);
    });

    it('MAXERROR tolerates bad rows: the good ones load, each bad one is recorded', async () => {
      const t = await table('id INT NOT NULL, artist VARCHAR(6), plays INT');
      const file = `s3://${BUCKET}/${t}/part-0.csv`;
      await s3.putObject(BUCKET, `${t}/part-0.csv`, 'id,artist,plays\n1,ok,1\n2,éééé,2\n3,x,abc\n4,y,1,extra\n5,z\n,w,1\n');
      const r = await c.query(`COPY ${t} FROM '${file}' ${ROLE} FORMAT AS CSV IGNOREHEADER 1 MAXERROR 100`);
      expect(r.rowCount).to.equal(1);
      expect(await rows(c, `SELECT id FROM ${t}`)).to.deep.equal([{ id: 1 }]);
      expect(tracked.notices.some((n) => /5 record\(s\) could not be loaded/.test(n))).to.equal(true);
      expect((await loadErrors()).map((e) => [e['line_number'], e['error_code']])).to.deep.equal([
        [3, 1204],
        [4, 1207],
        [5, 1202],
        [6, 1214],
        [7, 1213],
      ]);
      // MAXERROR n fails once n errors are reached.
      await expectError(c.query(`COPY ${t} FROM '${file}' ${ROLE} FORMAT AS CSV IGNOREHEADER 1 MAXERROR 5`), 'XX000', /Load into table/);
    });

    it('a bad row fails the COPY: nothing loads, the errors survive the rollback', async () => {
      const t = await table('id INT NOT NULL, artist VARCHAR(6), plays INT');
      const file = `s3://${BUCKET}/${t}/part-0.csv`;
      await s3.putObject(BUCKET, `${t}/part-0.csv`, 'id,artist,plays\n1,ok,1\n2,éééé,2\n');
      await c.query('BEGIN');
      await c.query(`INSERT INTO ${t} VALUES (0, 'before', 0)`);
      const err = await expectError(c.query(`COPY ${t} FROM '${file}' ${ROLE} FORMAT AS CSV IGNOREHEADER 1`), 'XX000');
      expect(err.message).to.equal(`Load into table '${t}' failed. Check 'sys_load_error_detail' system table for details.`);
      expect(tracked.status()).to.equal('E');
      await c.query('ROLLBACK');
      expect(await rows(c, `SELECT count(*)::int AS n FROM ${t}`)).to.deep.equal([{ n: 0 }]);
      expect(await loadErrors()).to.deep.equal([
        {
          file_name: file,
          line_number: 3,
          column_name: 'artist',
          column_type: 'varchar',
          column_length: '6',
          error_code: 1204,
          error_message: 'String length exceeds DDL length',
        },
      ]);
      const stl = await rows(
        c,
        `SELECT trim(filename) AS filename, line_number::int AS line, trim(colname) AS colname, trim(raw_line) AS raw_line,
                trim(raw_field_value) AS raw_field_value, err_code, trim(err_reason) AS err_reason
           FROM stl_load_errors WHERE query = pg_last_copy_id()`,
      );
      expect(stl).to.deep.equal([
        {
          filename: file,
          line: 3,
          colname: 'artist',
          raw_line: '2,....,2',
          raw_field_value: '....',
          err_code: 1204,
          err_reason: 'String length exceeds DDL length',
        },
      ]);
    });

    it('names each kind of bad row as Redshift does', async () => {
      const t = await table('id INT NOT NULL, name VARCHAR(6), amount DECIMAL(8,2), day DATE');
      const cases: [string, Record<string, unknown>][] = [
        ['1,a,1.5,2024-01-01,extra\n', { error_code: 1202, error_message: 'Extra column(s) found' }],
        ['1,a\n', { error_code: 1214, error_message: 'Delimiter not found', column_name: 'amount' }],
        ['x,a,1,2024-01-01\n', { error_code: 1207, column_name: 'id' }],
        [',a,1,2024-01-01\n', { error_code: 1213, error_message: 'Missing data for not-null field' }],
        ['1,a,1,01/02/2024\n', { error_code: 1205, column_name: 'day' }],
        ['1,"a,1,2024-01-01\n', { error_code: 1216 }],
        ['99999999999,a,1,2024-01-01\n', { error_code: 1222, column_name: 'id' }],
        ['\n', { error_code: 1211 }],
      ];
      for (const [data, expected] of cases) {
        await s3.putObject(BUCKET, `${t}/bad.csv`, data);
        await expectError(c.query(`COPY ${t} FROM 's3://${BUCKET}/${t}/bad.csv' ${ROLE} FORMAT AS CSV`), 'XX000', /Load into table/);
        const errs = await loadErrors();
        expect(errs.length, data).to.equal(1);
        expect(errs[0], data).to.deep.include(expected);
      }
      // Invalid UTF-8 fails, or is replaced with ACCEPTINVCHARS.
      await s3.putObject(BUCKET, `${t}/bad.csv`, Buffer.concat([Buffer.from('1,a'), Buffer.from([0xff]), Buffer.from(',1,2024-01-01\n')]));
      await expectError(c.query(`COPY ${t} FROM 's3://${BUCKET}/${t}/bad.csv' ${ROLE} FORMAT AS CSV`), 'XX000');
      expect((await loadErrors())[0]).to.deep.include({ error_code: 1220 });
      await c.query(`COPY ${t} FROM 's3://${BUCKET}/${t}/bad.csv' ${ROLE} FORMAT AS CSV ACCEPTINVCHARS AS '^'`);
      expect(await rows(c, `SELECT name FROM ${t}`)).to.deep.equal([{ name: 'a^' }]);
    });

    it('truncates extra decimal places (ROUNDEC rounds) and takes TRUNCATECOLUMNS, FILLRECORD, column lists', async () => {
      const t = await table("id INT, amount DECIMAL(8,2), name VARCHAR(4) DEFAULT 'dflt'");
      await s3.putObject(BUCKET, `${t}/f.csv`, '1,20.259\n');
      await c.query(`COPY ${t} (id, amount) FROM 's3://${BUCKET}/${t}/f.csv' ${ROLE} FORMAT AS CSV`);
      await c.query(`COPY ${t} (id, amount) FROM 's3://${BUCKET}/${t}/f.csv' ${ROLE} FORMAT AS CSV ROUNDEC`);
      expect(await rows(c, `SELECT amount::text AS a, name FROM ${t} ORDER BY amount`)).to.deep.equal([
        { a: '20.25', name: 'dflt' },
        { a: '20.26', name: 'dflt' },
      ]);
      await s3.putObject(BUCKET, `${t}/g.csv`, '2,1,éééé\n3\n');
      await c.query(`COPY ${t} FROM 's3://${BUCKET}/${t}/g.csv' ${ROLE} FORMAT AS CSV TRUNCATECOLUMNS FILLRECORD`);
      expect(await rows(c, `SELECT id, name FROM ${t} WHERE id > 1 ORDER BY id`)).to.deep.equal([
        { id: 2, name: 'éé' },
        { id: 3, name: '' },
      ]);
    });

    it('loads a temp table of the session (LIKE the target), and is rolled back with its transaction', async () => {
      const t = await table('k VARCHAR(8) NOT NULL, v INT');
      await s3.putObject(BUCKET, `${t}/f.csv`, 'a,1\nb,2\n');
      await c.query('BEGIN');
      await c.query(`CREATE TEMP TABLE ${t}_stage (LIKE ${t})`);
      await c.query(`COPY ${t}_stage FROM 's3://${BUCKET}/${t}/f.csv' ${ROLE} FORMAT AS CSV`);
      await c.query(`INSERT INTO ${t} SELECT * FROM ${t}_stage`);
      await c.query('ROLLBACK');
      expect(await rows(c, `SELECT count(*)::int AS n FROM ${t}`)).to.deep.equal([{ n: 0 }]);
      await c.query('BEGIN');
      await c.query(`CREATE TEMP TABLE ${t}_stage (LIKE ${t})`);
      await c.query(`COPY ${t}_stage FROM 's3://${BUCKET}/${t}/f.csv' ${ROLE} FORMAT AS CSV`);
      await c.query(`INSERT INTO ${t} SELECT * FROM ${t}_stage`);
      await c.query('COMMIT');
      expect(await rows(c, `SELECT k, v FROM ${t} ORDER BY k`)).to.deep.equal([
        { k: 'a', v: 1 },
        { k: 'b', v: 2 },
      ]);
      // The stage's byte limits are the target's.
      await s3.putObject(BUCKET, `${t}/long.csv`, 'ééééé,1\n');
      await expectError(c.query(`COPY ${t}_stage FROM 's3://${BUCKET}/${t}/long.csv' ${ROLE} FORMAT AS CSV`), 'XX000');
      expect((await loadErrors())[0]).to.deep.include({ error_code: 1204, column_length: '8' });
    });

    it('needs exactly one authorization and refuses unknown or unemulated options', async () => {
      const t = await table('id INT');
      await s3.putObject(BUCKET, `${t}/f.csv`, '1\n');
      const src = `'s3://${BUCKET}/${t}/f.csv'`;
      await expectRefused(c, `COPY ${t} FROM ${src} FORMAT AS CSV`, /without IAM_ROLE or CREDENTIALS/, 'XX000');
      await expectRefused(
        c,
        `COPY ${t} FROM ${src} ${ROLE} CREDENTIALS 'aws_iam_role=arn:aws:iam::123456789012:role/x' CSV`,
        /two kinds/,
        'XX000',
      );
      await expectRefused(c, `COPY ${t} FROM ${src} IAM_ROLE 'my-role' CSV`, /malformed IAM role/, 'XX000');
      await expectRefused(c, `COPY ${t} FROM ${src} ${ROLE} FORMAT AS CSV SPEEDY`, /unknown COPY option SPEEDY/, '42601');
      await expectRefused(c, `COPY ${t} FROM ${src} ${ROLE} FORMAT AS JSON 'auto'`, /not emulated: COPY FORMAT JSON/, '0A000');
      await expectRefused(c, `COPY ${t} FROM ${src} ${ROLE}`, /not emulated: COPY without FORMAT CSV/, '0A000');
      await expectRefused(c, `COPY ${t} FROM ${src} ${ROLE} CSV ESCAPE`, /CSV with ESCAPE/, 'XX000');
      await expectRefused(c, `COPY ${t} FROM ${src} ${ROLE} CSV GZIP GZIP`, /twice/, '42601');
      await expectRefused(c, `COPY ${t} FROM '/tmp/f.csv' ${ROLE} CSV`, /non-S3 source/, 'XX000');
      for (const auth of [
        'IAM_ROLE default',
        "CREDENTIALS 'aws_iam_role=arn:aws:iam::123456789012:role/redshift-copy'",
        "WITH CREDENTIALS AS 'aws_access_key_id=AKIA;aws_secret_access_key=secret'",
        "ACCESS_KEY_ID 'AKIA' SECRET_ACCESS_KEY 'secret' SESSION_TOKEN 'token'",
        "IAM_ROLE 'arn:aws:iam::123456789012:role/a,arn:aws:iam::210987654321:role/b'",
      ]) {
        await c.query(
          `COPY ${t} FROM ${src} ${auth} FORMAT AS CSV DATEFORMAT 'auto' TIMEFORMAT 'auto' REGION 'us-east-1' COMPUPDATE OFF STATUPDATE OFF EMPTYASNULL BLANKSASNULL ACCEPTINVCHARS MAXERROR 0 TRIMBLANKS IGNOREBLANKLINES ENCODING UTF8`,
        );
      }
      await expectError(c.query(`COPY ${t} FROM ${src} ${ROLE} CSV REGION 'eu-west-1'`), 'XX000', /specified endpoint/);
    });

    it('COPY from the extended protocol and with a column list of a table with an identity', async () => {
      const t = await table('id BIGINT IDENTITY(1, 1), name VARCHAR(10), n INT');
      await s3.putObject(BUCKET, `${t}/f.csv`, 'a,1\nb,2\n');
      const r = await c.query({
        text: `COPY ${t} (name, n) FROM 's3://${BUCKET}/${t}/f.csv' ${ROLE} FORMAT AS CSV`,
        values: [],
        queryMode: 'extended',
      } as pg.QueryConfig);
      expect(r.rowCount).to.equal(2);
      expect(await rows(c, `SELECT id::int AS id, name FROM ${t} ORDER BY id`)).to.deep.equal([
        { id: 1, name: 'a' },
        { id: 2, name: 'b' },
      ]);
      await s3.putObject(BUCKET, `${t}/g.csv`, 'c,3\n');
      await c.query(`COPY ${t} FROM 's3://${BUCKET}/${t}/g.csv' ${ROLE} FORMAT AS CSV`);
      expect(await rows(c, `SELECT count(*)::int AS n FROM ${t}`)).to.deep.equal([{ n: 3 }]);
    });
  });

  describe('serializable conflicts (failNextCommits)', () => {
    it('fails the next COMMITs of a LOCKed transaction with ERROR 1023 and rolls them back', async () => {
      const tracked = await connect();
      const c = tracked.client;
      const t = name('conflict');
      await c.query(`CREATE TABLE ${t} (id INT)`);
      const before = rs.injectedConflicts;
      rs.failNextCommits(2);
      // A transaction without LOCK is not what the switch targets.
      await c.query('BEGIN');
      await c.query(`INSERT INTO ${t} VALUES (0)`);
      await c.query('COMMIT');
      for (let attempt = 1; attempt <= 3; attempt++) {
        await c.query('BEGIN');
        await c.query(`LOCK ${t}`);
        await c.query(`INSERT INTO ${t} VALUES (${attempt})`);
        if (attempt <= 2) {
          const err = await expectError(c.query('COMMIT'), 'XX000', /^1023$/);
          expect(err.detail).to.match(
            /^Serializable isolation violation on table - \d+, transactions forming the cycle are: \d+, \d+ \(pid:\d+\)$/,
          );
          expect(err.detail).to.not.match(/table - 0,/);
          expect(tracked.status()).to.equal('I');
        } else {
          await c.query('END');
        }
      }
      expect(rs.injectedConflicts - before).to.equal(2);
      expect(await rows(c, `SELECT id FROM ${t} ORDER BY id`)).to.deep.equal([{ id: 0 }, { id: 3 }]);
    });
  });
});
