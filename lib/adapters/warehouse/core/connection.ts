// Connections to the warehouse: one shared, serialised connection for short work, and fresh
// ones for whoever needs a session of its own (a load, the run lock). Both dialects speak the
// PostgreSQL wire protocol through pg; what differs per server is in SessionSetup.

import os from 'node:os';
import type pg from 'pg';
import { pgModule } from './pg.js';
import { MkpiError, redact, type ErrorCode } from '../../../domain/errors.js';
import { classifyConnectFailure, isConnectionLoss, toError, type ErrorTarget } from './errors.js';
import { withRetry, type RetryClock, type RetryNotice } from './retry.js';
import { TYPES } from './type-parsers.js';

/** Connection settings that are also allowed in a connection string, and nothing else. */
export type ConnectionConfig = Pick<pg.ClientConfig, 'host' | 'port' | 'user' | 'password' | 'database'>;

export interface Conn {
  client: pg.Client;
  dead: boolean;
}

const APP = 'musickpi';

/** How connecting retries failures that may heal by themselves (see retry.ts). */
export interface ConnectRetry {
  /** Time within which further attempts may start after the first failed one; 0 = a single attempt. */
  totalMs: number;
  /** Told before each wait, with the failure already scrubbed of secrets. */
  onRetry?: (notice: ConnectRetryNotice) => void;
  /** Tests only: a fake clock. */
  clock?: RetryClock;
}

export interface ConnectRetryNotice extends RetryNotice {
  error: MkpiError;
}

/** What a dialect adds to the plain PostgreSQL way of connecting. */
export interface SessionSetup {
  /** How the server is named in messages and hints; default 'PostgreSQL'. */
  product?: string;
  /** Replaces the description derived from the URL or the settings (never holds a secret). */
  description?: string;
  /** TLS settings; unset leaves them to pg (PostgreSQL: the URL's sslmode, or none). */
  ssl?: pg.ClientConfig['ssl'];
  /**
   * Called just before each connection attempt, for credentials that expire (IAM temporary
   * passwords); the password returned is scrubbed from every message from then on.
   */
  credentials?: () => Promise<{ user: string; password: string }>;
  /** Run on every new session before it is used (session settings such as statement_timeout). */
  onConnect?: (client: pg.Client) => Promise<void>;
  /** Failures the dialect classifies itself, before the shared rules (undefined: no opinion). */
  classify?: (err: unknown) => ErrorCode | undefined;
  /** Type parsers; default the shared TYPES. */
  types?: pg.CustomTypesConfig;
  /** Tests only: builds the client (a fake that records the SQL it is sent). */
  newClient?: (config: pg.ClientConfig) => pg.Client;
}

export class Connections implements ErrorTarget {
  readonly description: string;
  readonly secrets: string[];
  readonly product: string;
  readonly classify: ((err: unknown) => ErrorCode | undefined) | undefined;
  private readonly baseConfig: pg.ClientConfig;
  private readonly setup: SessionSetup;
  private readonly connectTimeoutMs: number;
  private readonly retry: ConnectRetry;
  /** Aborted by close(): a retry loop waiting for a server stops waiting. */
  private readonly closing = new AbortController();
  private work: Conn | undefined;
  private workQueue: Promise<unknown> = Promise.resolve();
  private isClosed = false;
  /** The shared session, being opened ahead of its first use (warmWork). */
  private warmingWork: Promise<Conn | undefined> | undefined;
  /** A session of its own, opened ahead for the next session() (openSpare). */
  private spare: Promise<Conn | undefined> | undefined;

  constructor(
    connectionString: string,
    config: ConnectionConfig | undefined,
    connectTimeoutMs: number,
    retry: ConnectRetry = { totalMs: 0 },
    setup: SessionSetup = {},
  ) {
    this.connectTimeoutMs = connectTimeoutMs;
    this.retry = retry;
    this.setup = setup;
    this.product = setup.product ?? 'PostgreSQL';
    this.classify = setup.classify;
    this.secrets = [];
    if (connectionString) {
      const info = describeUrl(connectionString);
      this.description = info.description;
      this.secrets.push(...info.secrets);
      this.baseConfig = { connectionString };
    } else {
      const c = config ?? {};
      if (typeof c.password === 'string' && c.password) this.secrets.push(c.password);
      this.baseConfig = { ...c };
      const user = c.user ?? os.userInfo().username;
      const host = c.host ?? 'localhost';
      this.description = `postgresql://${user}@${host}:${c.port ?? 5432}/${c.database ?? user}`;
    }
    if (setup.description) this.description = setup.description;
    if (setup.ssl !== undefined) this.baseConfig.ssl = setup.ssl;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /**
   * A new session. Failures that may heal (nothing listening, a server starting up, no free
   * slot) are retried within retry.totalMs; wrong credentials or database fail at once.
   */
  async connect(what: string, application = APP): Promise<Conn> {
    return withRetry(() => this.connectOnce(application), {
      totalMs: this.retry.totalMs,
      clock: this.retry.clock,
      signal: this.closing.signal,
      // A dialect's own failure (fetching credentials) says itself whether it may heal.
      isTransient: (err) => (err instanceof MkpiError ? err.details?.['retryable'] === true : classifyConnectFailure(err) === 'transient'),
      onRetry: this.retry.onRetry && ((n) => this.retry.onRetry?.({ ...n, error: this.connectError(n.error, what) })),
      giveUp: (err, attempts, elapsedMs) => {
        const e = this.connectError(err, what);
        if (attempts <= 1) return e;
        return new MkpiError(e.code, `${e.message}; gave up after ${attempts} attempts in ${(elapsedMs / 1000).toFixed(1)} s`, {
          hint: e.hint,
          cause: e.cause,
          details: { ...e.details, attempts, elapsedMs: Math.round(elapsedMs) },
        });
      },
    });
  }

  /**
   * Starts opening the shared session now, so that connecting overlaps with what the caller
   * does meanwhile (taking the run lock on its own session). One attempt, told nobody: if it
   * fails, the first withWork() connects as it would have, retrying and reporting its failure.
   */
  warmWork(): void {
    if (this.work || this.warmingWork || this.isClosed) return;
    this.warmingWork = this.connectOnce(APP).catch(() => undefined);
  }

  /**
   * Starts opening a session of its own for the next session() (a load's): by then it is
   * usually open, and the load does not wait for a connection. One attempt, told nobody: if it
   * fails or has died meanwhile, session() connects as connect() does.
   */
  openSpare(): void {
    if (this.spare || this.isClosed) return;
    this.spare = this.connectOnce(APP).catch(() => undefined);
  }

  /** A session of its own for `what`: the spare (openSpare) if it is open and alive, else a new one. */
  async session(what: string): Promise<Conn> {
    const spare = this.spare;
    this.spare = undefined;
    const conn = await spare;
    if (conn && !conn.dead && !this.isClosed) return conn;
    if (conn) await conn.client.end().catch(() => undefined);
    return this.connect(what);
  }

  private async connectOnce(application: string): Promise<Conn> {
    if (this.isClosed) throw new MkpiError('MKPI_INTERNAL', 'warehouse used after close()');
    let credentials: { user: string; password: string } | undefined;
    if (this.setup.credentials) {
      credentials = await this.setup.credentials();
      if (credentials.password && !this.secrets.includes(credentials.password)) this.secrets.push(credentials.password);
    }
    const config: pg.ClientConfig = {
      ...this.baseConfig,
      ...credentials,
      types: this.setup.types ?? TYPES,
      application_name: application,
      keepAlive: true,
    };
    const client = this.setup.newClient ? this.setup.newClient(config) : new (pgModule().Client)(config);
    const conn: Conn = { client, dead: false };
    // Without a listener, a server-side termination while idle crashes the whole process.
    client.on('error', () => {
      conn.dead = true;
    });
    client.on('end', () => {
      conn.dead = true;
    });
    // Our own connect timeout rather than pg's connectionTimeoutMillis, whose error has no code:
    // this one carries ETIMEDOUT, so it is classified (and retried) like any other timeout.
    const timer = setTimeout(() => {
      const err = Object.assign(new Error(`no connection after ${this.connectTimeoutMs} ms`), { code: 'ETIMEDOUT' });
      client.connection.stream.destroy(err);
    }, this.connectTimeoutMs);
    try {
      await client.connect();
    } catch (err) {
      conn.dead = true;
      await client.end().catch(() => undefined);
      throw err;
    } finally {
      clearTimeout(timer);
    }
    if (this.setup.onConnect) {
      try {
        await this.setup.onConnect(client);
      } catch (err) {
        conn.dead = true;
        await client.end().catch(() => undefined);
        throw err;
      }
    }
    return conn;
  }

  private connectError(err: unknown, what: string): MkpiError {
    const e = this.toError(err, `connecting for ${what}`);
    // A server that refuses the session for a reason of its own ("database does not allow
    // connections", SQLSTATE 55000, and the like) is unavailable, not a bug of ours.
    if (e.code !== 'MKPI_INTERNAL' || err instanceof MkpiError) return e;
    return new MkpiError('MKPI_WAREHOUSE_UNAVAILABLE', e.message, {
      hint: `check that ${this.product} at ${this.description} accepts connections, then run again`,
      cause: e.cause,
      details: e.details,
    });
  }

  /** Serialises use of the shared connection, reconnecting when the last one broke. */
  withWork<T>(what: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      if (!this.work && this.warmingWork) {
        const warm = await this.warmingWork;
        this.warmingWork = undefined;
        if (warm && !warm.dead) this.work = warm;
        else if (warm) await warm.client.end().catch(() => undefined);
      }
      if (!this.work || this.work.dead) {
        if (this.work) await this.work.client.end().catch(() => undefined);
        this.work = undefined;
        this.work = await this.connect(what);
      }
      const conn = this.work;
      try {
        return await fn(conn.client);
      } catch (err) {
        if (isConnectionLoss(err)) conn.dead = true;
        throw this.toError(err, what);
      }
    };
    const result = this.workQueue.then(run, run);
    this.workQueue = result.catch(() => undefined);
    return result;
  }

  toError(err: unknown, what: string, hint?: string): MkpiError {
    return toError(this, err, what, hint);
  }

  /** Queued work runs to its end first: only a load is worth interrupting, never a short query. */
  async close(): Promise<void> {
    this.closing.abort();
    await this.workQueue;
    this.isClosed = true;
    // Sessions opened ahead and never used (a run that stopped before its first query or its load).
    for (const ahead of [this.warmingWork, this.spare]) {
      const conn = await ahead;
      if (conn) await conn.client.end().catch(() => undefined);
    }
    this.warmingWork = undefined;
    this.spare = undefined;
    if (this.work) await this.work.client.end().catch(() => undefined);
    this.work = undefined;
  }
}

/** Description of a connection URL without its secret parts, plus the secrets to scrub. */
export function describeUrl(url: string): { description: string; secrets: string[] } {
  const secrets: string[] = [];
  try {
    const u = new URL(url);
    if (u.password) {
      secrets.push(u.password);
      try {
        const decoded = decodeURIComponent(u.password);
        if (decoded !== u.password) secrets.push(decoded);
      } catch {
        // a malformed escape is already covered by the raw form
      }
    }
    const pw = u.searchParams.get('password');
    if (pw) secrets.push(pw);
    const user = u.username ? `${u.username}@` : '';
    return { description: `${u.protocol}//${user}${u.host}${u.pathname}`, secrets };
  } catch {
    // Not a WHATWG-parsable URL (multi-host, say): strip what could hold a password.
    const pw = /^[a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*:([^@\s]*)@/i.exec(url)?.[1];
    if (pw) secrets.push(pw);
    const noQuery = url.replace(/[?#].*$/s, '');
    return { description: redact(noQuery).replace(/:\*\*\*@/, '@'), secrets };
  }
}
