// Connection failures sorted into what to do about them (fix the settings, or try again), and
// the retry loop's schedule, run against a fake clock. No PostgreSQL needed.

import assert from 'node:assert/strict';
import net from 'node:net';
import { MkpiError } from '../../../lib/domain/errors.js';
import { Connections } from '../../../lib/adapters/warehouse/core/connection.js';
import { classifyConnectFailure, classifyPgError, isMissingPasswordError, toError } from '../../../lib/adapters/warehouse/core/errors.js';
import { backoffDelay, withRetry, type RetryClock } from '../../../lib/adapters/warehouse/core/retry.js';

function coded(code: string, message = 'x'): Error {
  return Object.assign(new Error(message), { code });
}

/** Time passes only when the code under test sleeps. */
function fakeClock(random = 0.5): RetryClock & { t: number; sleeps: number[] } {
  const clock = {
    t: 1000,
    sleeps: [] as number[],
    now: () => clock.t,
    sleep: async (ms: number) => {
      clock.sleeps.push(ms);
      clock.t += ms;
    },
    random: () => random,
  };
  return clock;
}

const target = { description: 'postgresql://alice@db.example:5432/kpis', secrets: ['hunter2'] };

/** A port on which, a moment ago, nothing listened (and nothing does yet). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('warehouse/postgres connecting (unit)', () => {
  describe('classifyConnectFailure', () => {
    it('credentials: 28P01, 28000 (pg_hba.conf), and pg refusing to authenticate without a password', () => {
      for (const e of [
        coded('28P01', 'password authentication failed for user "alice"'),
        coded('28000', 'no pg_hba.conf entry for host "10.0.0.1", user "alice", database "kpis", no encryption'),
        new Error('SASL: SCRAM-SERVER-FIRST-MESSAGE: client password must be a string'),
        new Error('SASL: SCRAM-SERVER-FIRST-MESSAGE: client password must be a non-empty string'),
        new TypeError('Password must be a string'),
      ]) {
        assert.equal(classifyConnectFailure(e), 'auth', e.message);
        assert.equal(classifyPgError(e), 'MKPI_CONFIG', e.message);
      }
    });

    it('only a code-less error is read for its message', () => {
      assert.equal(isMissingPasswordError(new Error('SASL: SCRAM-SERVER-FIRST-MESSAGE: client password must be a string')), true);
      assert.equal(isMissingPasswordError(coded('42601', 'syntax error near "password must be a string"')), false);
      assert.equal(classifyConnectFailure(coded('42601', 'password must be a string')), 'other');
    });

    it('unknown database: 3D000', () => {
      assert.equal(classifyConnectFailure(coded('3D000', 'database "kpis" does not exist')), 'unknown-database');
      assert.equal(classifyPgError(coded('3D000')), 'MKPI_CONFIG');
    });

    it('transient: refused, reset, timed out, DNS try-again, starting up, too many connections', () => {
      for (const code of ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EAI_AGAIN', '57P03', '53300']) {
        assert.equal(classifyConnectFailure(coded(code)), 'transient', code);
        assert.equal(classifyPgError(coded(code)), 'MKPI_WAREHOUSE_UNAVAILABLE', code);
      }
      // Node's happy-eyeballs connect: an AggregateError with the code on the outside.
      const agg = Object.assign(new AggregateError([coded('ECONNREFUSED')], ''), { code: 'ECONNREFUSED' });
      assert.equal(classifyConnectFailure(agg), 'transient');
    });

    it('anything else is neither: one attempt, classified as before', () => {
      for (const e of [
        coded('ENOTFOUND'),
        coded('55000', 'database "kpis" is not currently accepting connections'),
        coded('57P01'),
        coded('42P01'),
        new Error('Connection terminated unexpectedly'),
        new Error('boom'),
      ]) {
        assert.equal(classifyConnectFailure(e), 'other', e.message);
      }
    });
  });

  describe('toError for configuration failures', () => {
    it('a wrong password: hint names PGPASSWORD and ~/.pgpass, never the password', () => {
      const e = toError(target, coded('28P01', 'password authentication failed for user "alice" (hunter2)'), 'connecting for x');
      assert.equal(e.code, 'MKPI_CONFIG');
      assert.match(e.hint ?? '', /PGPASSWORD/);
      assert.match(e.hint ?? '', /~\/\.pgpass/);
      assert.equal(e.details?.reason, 'auth');
      assert.equal(e.details?.sqlstate, '28P01');
      assert.ok(!`${e.message}${e.hint}${JSON.stringify(e.details)}`.includes('hunter2'));
    });

    it('no password at all: says so instead of quoting SASL', () => {
      const e = toError(target, new Error('SASL: SCRAM-SERVER-FIRST-MESSAGE: client password must be a string'), 'connecting for x');
      assert.equal(e.code, 'MKPI_CONFIG');
      assert.match(e.message, /none is set/);
      assert.doesNotMatch(e.message, /SASL/);
      assert.match(e.hint ?? '', /PGPASSWORD/);
    });

    it('pg_hba.conf rejection (28000) mentions pg_hba.conf too', () => {
      const e = toError(target, coded('28000', 'no pg_hba.conf entry'), 'connecting for x');
      assert.equal(e.code, 'MKPI_CONFIG');
      assert.match(e.hint ?? '', /pg_hba\.conf/);
      assert.match(e.hint ?? '', /PGPASSWORD/);
    });

    it('an unknown database: the hint is about the database name', () => {
      const e = toError(target, coded('3D000', 'database "kpis" does not exist'), 'connecting for x');
      assert.equal(e.code, 'MKPI_CONFIG');
      assert.equal(e.details?.reason, 'unknown-database');
      assert.match(e.hint ?? '', /PGDATABASE/);
      assert.doesNotMatch(e.hint ?? '', /PGPASSWORD/);
    });
  });

  describe('backoffDelay', () => {
    it('doubles from 200 ms up to 5 s, jittered between half and all of it', () => {
      assert.deepEqual(
        [1, 2, 3, 4, 5, 6, 7, 20].map((n) => backoffDelay(n, 0.999999)),
        [200, 400, 800, 1600, 3200, 5000, 5000, 5000],
      );
      assert.deepEqual(
        [1, 2, 3, 6].map((n) => backoffDelay(n, 0)),
        [100, 200, 400, 2500],
      );
    });
  });

  describe('withRetry', () => {
    const transient = () => coded('ECONNREFUSED');
    const options = (clock: RetryClock, totalMs: number) => ({
      totalMs,
      clock,
      isTransient: (e: unknown) => classifyConnectFailure(e) === 'transient',
      giveUp: (e: unknown, attempts: number, elapsedMs: number) => Object.assign(new Error('gave up'), { last: e, attempts, elapsedMs }),
    });

    it('retries transient failures until the bound, one last attempt at the deadline', async () => {
      const clock = fakeClock(1 - 1e-9);
      let attempts = 0;
      const notices: number[] = [];
      const err = await withRetry(
        async () => {
          attempts++;
          throw transient();
        },
        { ...options(clock, 10_000), onRetry: (n) => notices.push(n.attempt) },
      ).catch((e: { attempts: number; elapsedMs: number }) => e);
      assert.equal(err.attempts, attempts);
      assert.equal(err.elapsedMs, 10_000);
      // 200 + 400 + 800 + 1600 + 3200 = 6200, then 3800 (cut to the deadline).
      assert.deepEqual(clock.sleeps, [200, 400, 800, 1600, 3200, 3800]);
      assert.equal(attempts, 7);
      assert.deepEqual(notices, [1, 2, 3, 4, 5, 6]);
    });

    it('returns as soon as an attempt succeeds', async () => {
      const clock = fakeClock();
      let attempts = 0;
      const v = await withRetry(
        async () => {
          if (++attempts < 3) throw coded('57P03', 'the database system is starting up');
          return 'ok';
        },
        options(clock, 30_000),
      );
      assert.equal(v, 'ok');
      assert.equal(attempts, 3);
    });

    it('one attempt for a failure that retrying cannot fix, or with a bound of 0', async () => {
      for (const [fail, totalMs] of [
        [coded('28P01'), 30_000],
        [coded('3D000'), 30_000],
        [transient(), 0],
      ] as const) {
        const clock = fakeClock();
        let attempts = 0;
        const err = await withRetry(
          async () => {
            attempts++;
            throw fail;
          },
          options(clock, totalMs),
        ).catch((e: { attempts: number; last: unknown }) => e);
        assert.equal(attempts, 1);
        assert.equal(err.attempts, 1);
        assert.equal(err.last, fail);
        assert.deepEqual(clock.sleeps, []);
      }
    });

    it('an abort stops the loop at its next wait', async () => {
      const clock = fakeClock();
      const ac = new AbortController();
      let attempts = 0;
      const err = await withRetry(
        async () => {
          if (++attempts === 2) ac.abort();
          throw transient();
        },
        { ...options(clock, 30_000), signal: ac.signal },
      ).catch((e: { attempts: number }) => e);
      assert.equal(attempts, 2);
      assert.equal(err.attempts, 2);
    });
  });

  describe('Connections.connect', () => {
    it('a closed port: retried within the bound (fake clock), then MKPI_WAREHOUSE_UNAVAILABLE saying how long', async () => {
      const port = await closedPort();
      const clock = fakeClock();
      const notices: MkpiError[] = [];
      const db = new Connections(`postgresql://bob:hunter2@127.0.0.1:${port}/db`, undefined, 2000, {
        totalMs: 30_000,
        clock,
        onRetry: (n) => notices.push(n.error),
      });
      const err = await db.connect('testing').catch((e: unknown) => e);
      assert.ok(err instanceof MkpiError);
      assert.equal(err.code, 'MKPI_WAREHOUSE_UNAVAILABLE');
      assert.ok((err.details?.attempts as number) > 1, JSON.stringify(err.details));
      assert.equal(err.details?.attempts, notices.length + 1);
      assert.equal(err.details?.elapsedMs, 30_000);
      assert.match(err.message, /gave up after \d+ attempts in 30\.0 s/);
      for (const e of [err, ...notices]) assert.ok(!`${e.message}${e.hint}${e.stack}`.includes('hunter2'));
      await db.close();
    });

    it('close() ends a retry loop that is waiting', async () => {
      const port = await closedPort();
      const db = new Connections(`postgresql://127.0.0.1:${port}/db`, undefined, 2000, { totalMs: 60_000 });
      const started = performance.now();
      const pending = db.connect('testing').catch((e: unknown) => e);
      await new Promise((r) => setTimeout(r, 50));
      await db.close();
      const err = await pending;
      assert.ok(err instanceof MkpiError);
      assert.equal(err.code, 'MKPI_WAREHOUSE_UNAVAILABLE');
      assert.ok(performance.now() - started < 30_000);
    });

    it('the connect timeout is an ETIMEDOUT, hence retried', async () => {
      // Accepts TCP and never answers: a black-holed server.
      const sockets: net.Socket[] = [];
      const silent = net.createServer((s) => void sockets.push(s));
      await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
      const port = (silent.address() as net.AddressInfo).port;
      try {
        const clock = fakeClock();
        const db = new Connections(`postgresql://127.0.0.1:${port}/db`, undefined, 100, { totalMs: 300, clock });
        const err = await db.connect('testing').catch((e: unknown) => e);
        assert.ok(err instanceof MkpiError);
        assert.equal(err.code, 'MKPI_WAREHOUSE_UNAVAILABLE');
        assert.equal(err.details?.errno, 'ETIMEDOUT');
        assert.ok((err.details?.attempts as number) > 1);
        await db.close();
      } finally {
        for (const s of sockets) s.destroy();
        await new Promise<void>((r) => silent.close(() => r()));
      }
    });
  });
});
