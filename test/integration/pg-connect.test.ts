// Connecting to PostgreSQL: credentials and database names that are wrong fail at once with
// MKPI_CONFIG (exit 78: fix the settings), failures that may heal are retried for about
// connectRetryMs and then end as MKPI_WAREHOUSE_UNAVAILABLE (exit 69). Against the run's test
// server (SCRAM authentication), a closed port, a fake server answering "starting up", and a
// proxy that opens the port only after a while.

import assert from 'node:assert/strict';
import net from 'node:net';
import pg from 'pg';
import { MkpiError } from '../../lib/domain/errors.js';
import { openWarehouse } from '../../lib/adapters/warehouse/open.js';
import { PostgresWarehouse } from '../../lib/adapters/warehouse/postgres/postgres-warehouse.js';
import { freshDatabase } from '../support/pg.js';

const SCHEMA = 'reporting_schema';

async function rejects(p: Promise<unknown>, code: string): Promise<MkpiError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof MkpiError, `expected an MkpiError, got ${String(err)}`);
    assert.equal(err.code, code, `${err.code}: ${err.message}`);
    return err;
  }
  assert.fail(`expected rejection with ${code}`);
}

async function adminQuery(url: string, sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => undefined);
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

async function listen(server: net.Server, port = 0): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return (server.address() as net.AddressInfo).port;
}

async function closedPort(): Promise<number> {
  const s = net.createServer();
  const port = await listen(s);
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A PostgreSQL ErrorResponse message, as a server sends one before closing a session. */
function errorResponse(sqlstate: string, message: string): Buffer {
  const fields = Buffer.concat([
    ...(
      [
        ['S', 'FATAL'],
        ['V', 'FATAL'],
        ['C', sqlstate],
        ['M', message],
      ] as const
    ).map(([k, v]) => Buffer.from(`${k}${v}\0`, 'utf8')),
    Buffer.from([0]),
  ]);
  const head = Buffer.alloc(5);
  head.write('E', 0, 'latin1');
  head.writeInt32BE(fields.length + 4, 1);
  return Buffer.concat([head, fields]);
}

/** A server that answers every startup packet with one error: counts the attempts it saw. */
async function refusingServer(
  sqlstate: string,
  message: string,
): Promise<{ port: number; attempts: () => number; close(): Promise<void> }> {
  let attempts = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    attempts++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.once('data', () => s.end(errorResponse(sqlstate, message)));
  });
  const port = await listen(server);
  return {
    port,
    attempts: () => attempts,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

function withPort(url: string, port: number): string {
  const u = new URL(url);
  u.port = String(port);
  return u.toString();
}

describe('connecting to the warehouse: configuration errors vs. retried outages (real PostgreSQL)', function () {
  this.timeout(60_000);
  let url: string;
  const opened: PostgresWarehouse[] = [];
  const role = `mkpi_auth_${process.pid}`;
  const password = 'Corr3ct:h0rse/b@ttery';

  function warehouse(u: string, opts: Partial<ConstructorParameters<typeof PostgresWarehouse>[1]> = {}): PostgresWarehouse {
    const w = new PostgresWarehouse(u, { schema: SCHEMA, ...opts });
    opened.push(w);
    return w;
  }

  function as(user: string, pw?: string): string {
    const u = new URL(url);
    u.username = user;
    u.password = pw === undefined ? '' : encodeURIComponent(pw);
    return u.toString();
  }

  before(async () => {
    url = await freshDatabase('pgconnect');
    await adminQuery(url, `DROP ROLE IF EXISTS ${role}; CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
    await adminQuery(url, `DROP ROLE IF EXISTS ${role}_nologin; CREATE ROLE ${role}_nologin NOLOGIN PASSWORD '${password}'`);
  });

  after(async () => {
    for (const w of opened.splice(0)) await w.close();
    await adminQuery(url, `DROP ROLE IF EXISTS ${role}; DROP ROLE IF EXISTS ${role}_nologin`);
  });

  it('the test server checks passwords (SCRAM): the right one connects', async () => {
    const w = warehouse(as(role, password));
    assert.deepEqual((await w.query('SELECT current_user')).rows, [[role]]);
  });

  it('a wrong password → MKPI_CONFIG (28P01) at once, not retried, hint names PGPASSWORD and ~/.pgpass', async () => {
    let retries = 0;
    const w = warehouse(as(role, password + 'x'), { connectRetryMs: 10_000, onConnectRetry: () => retries++ });
    const err = await rejects(w.isInitialised(), 'MKPI_CONFIG');
    assert.equal(err.details?.sqlstate, '28P01');
    assert.equal(err.details?.reason, 'auth');
    assert.match(err.hint ?? '', /PGPASSWORD/);
    assert.match(err.hint ?? '', /~\/\.pgpass/);
    assert.equal(retries, 0);
    const text = `${err.message}\n${err.hint}\n${JSON.stringify(err.details)}\n${err.stack}`;
    assert.ok(!text.includes(password) && !text.includes(encodeURIComponent(password)), text);
  });

  it('no password at all for a role that needs one → MKPI_CONFIG, not MKPI_WAREHOUSE_UNAVAILABLE', async () => {
    // pg falls back to PGPASSWORD and ~/.pgpass (PGPASSFILE): make sure neither supplies one.
    const saved = { PGPASSWORD: process.env.PGPASSWORD, PGPASSFILE: process.env.PGPASSFILE };
    delete process.env.PGPASSWORD;
    process.env.PGPASSFILE = '/nonexistent/musickpi-test-pgpass';
    try {
      let retries = 0;
      const w = warehouse(as(role), { connectRetryMs: 10_000, onConnectRetry: () => retries++ });
      const err = await rejects(w.readLedger(), 'MKPI_CONFIG');
      assert.equal(err.details?.reason, 'auth');
      assert.match(err.message, /none is set/);
      assert.match(err.hint ?? '', /PGPASSWORD/);
      assert.equal(retries, 0);
      // The same through PG* variables, as openWarehouse passes them.
      const env = warehouse('', {
        config: { host: '127.0.0.1', port: Number(new URL(url).port), user: role, database: new URL(url).pathname.slice(1) },
      });
      await rejects(env.isInitialised(), 'MKPI_CONFIG');
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it('a role that may not log in (28000, like a pg_hba.conf rejection) → MKPI_CONFIG', async () => {
    const err = await rejects(warehouse(as(`${role}_nologin`, password)).isInitialised(), 'MKPI_CONFIG');
    assert.equal(err.details?.sqlstate, '28000');
    assert.match(err.hint ?? '', /pg_hba\.conf/);
  });

  it('an unknown database (3D000) → MKPI_CONFIG at once, hint about the database name', async () => {
    const u = new URL(url);
    u.pathname = '/no_such_database_here';
    let retries = 0;
    const err = await rejects(
      warehouse(u.toString(), { connectRetryMs: 10_000, onConnectRetry: () => retries++ }).isInitialised(),
      'MKPI_CONFIG',
    );
    assert.equal(err.details?.sqlstate, '3D000');
    assert.equal(err.details?.reason, 'unknown-database');
    assert.match(err.hint ?? '', /database/);
    assert.equal(retries, 0);
  });

  it('a closed port: retried for about connectRetryMs, then MKPI_WAREHOUSE_UNAVAILABLE saying how long it tried', async () => {
    const port = await closedPort();
    let retries = 0;
    const started = performance.now();
    const w = warehouse(withPort(url, port), { connectRetryMs: 1500, onConnectRetry: () => retries++ });
    const err = await rejects(w.acquireRunLock(), 'MKPI_WAREHOUSE_UNAVAILABLE');
    assert.ok(retries >= 1, `retries: ${retries}`);
    assert.equal(err.details?.attempts, retries + 1);
    assert.equal(err.details?.errno, 'ECONNREFUSED');
    assert.ok((err.details?.elapsedMs as number) >= 1500, JSON.stringify(err.details));
    assert.ok(performance.now() - started >= 1500);
    assert.match(err.message, /gave up after \d+ attempts in \d+\.\d s/);
  });

  it('connectRetryMs 0 (the default of PostgresWarehouse): a single attempt', async () => {
    let retries = 0;
    const err = await rejects(
      warehouse(withPort(url, await closedPort()), { onConnectRetry: () => retries++ }).isInitialised(),
      'MKPI_WAREHOUSE_UNAVAILABLE',
    );
    assert.equal(retries, 0);
    assert.equal(err.details?.attempts, undefined);
  });

  it('a server answering 57P03 (starting up) is retried; one answering 28P01 is not', async () => {
    const starting = await refusingServer('57P03', 'the database system is starting up');
    const wrong = await refusingServer('28P01', 'password authentication failed for user "x"');
    try {
      const e1 = await rejects(
        warehouse(withPort(url, starting.port), { connectRetryMs: 1000 }).isInitialised(),
        'MKPI_WAREHOUSE_UNAVAILABLE',
      );
      assert.equal(e1.details?.sqlstate, '57P03');
      assert.ok(starting.attempts() > 1, `attempts: ${starting.attempts()}`);
      assert.equal(e1.details?.attempts, starting.attempts());
      await rejects(warehouse(withPort(url, wrong.port), { connectRetryMs: 1000 }).isInitialised(), 'MKPI_CONFIG');
      assert.equal(wrong.attempts(), 1);
    } finally {
      await starting.close();
      await wrong.close();
    }
  });

  it('a server that comes up while connecting is retried is used: the run goes on', async () => {
    const port = await closedPort();
    const target = Number(new URL(url).port);
    const proxy = net.createServer((client) => {
      const upstream = net.connect(target, '127.0.0.1');
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
      client.pipe(upstream).pipe(client);
    });
    let retries = 0;
    const w = warehouse(withPort(url, port), {
      connectRetryMs: 20_000,
      onConnectRetry: () => {
        // Opens the port after the second failed attempt.
        if (++retries === 2) void listen(proxy, port);
      },
    });
    try {
      assert.deepEqual((await w.query('SELECT 1')).rows, [[1]]);
      assert.ok(retries >= 2);
    } finally {
      await w.close();
      await new Promise<void>((r) => proxy.close(() => r()));
    }
  });

  it('openWarehouse: connectRetryMs is passed on, and each retry is logged without the password', async () => {
    const port = await closedPort();
    const lines: string[] = [];
    const w = await openWarehouse({
      warehouse: `postgresql://${role}:${encodeURIComponent(password)}@127.0.0.1:${port}/db`,
      env: {},
      schema: SCHEMA,
      home: '/nonexistent/musickpi-home-never-used',
      log: (l) => lines.push(l),
      connectRetryMs: 800,
    });
    try {
      const err = await rejects(w.warehouse.isInitialised(), 'MKPI_WAREHOUSE_UNAVAILABLE');
      assert.ok(lines.length >= 1, 'at least one retry logged');
      assert.equal(err.details?.attempts, lines.length + 1);
      for (const l of lines) {
        assert.match(l, /trying again in \d+\.\d s/);
        assert.ok(!l.includes(password) && !l.includes(encodeURIComponent(password)), l);
      }
    } finally {
      await w.stop();
    }
    await assert.rejects(
      openWarehouse({ warehouse: url, env: {}, schema: SCHEMA, home: '/nonexistent', connectRetryMs: -1 }),
      (e: unknown) => e instanceof MkpiError && e.code === 'MKPI_USAGE',
    );
  });
});
