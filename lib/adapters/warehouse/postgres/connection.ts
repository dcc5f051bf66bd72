// Connections to the warehouse: one shared, serialised connection for short work, and fresh
// ones for whoever needs a session of its own (a load, the run lock).

import os from 'node:os';
import pg from 'pg';
import { MkpiError, redact } from '../../../domain/errors.js';
import { isConnectionLoss, toError, type ErrorTarget } from './errors.js';
import { TYPES } from './type-parsers.js';

/** Connection settings that are also allowed in a connection string, and nothing else. */
export type ConnectionConfig = Pick<pg.ClientConfig, 'host' | 'port' | 'user' | 'password' | 'database'>;

export interface Conn {
  client: pg.Client;
  dead: boolean;
}

const APP = 'musickpi';

export class Connections implements ErrorTarget {
  readonly description: string;
  readonly secrets: string[];
  private readonly baseConfig: pg.ClientConfig;
  private readonly connectTimeoutMs: number;
  private work: Conn | undefined;
  private workQueue: Promise<unknown> = Promise.resolve();
  private isClosed = false;

  constructor(connectionString: string, config: ConnectionConfig | undefined, connectTimeoutMs: number) {
    this.connectTimeoutMs = connectTimeoutMs;
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
  }

  get closed(): boolean {
    return this.isClosed;
  }

  async connect(what: string, application = APP): Promise<Conn> {
    if (this.isClosed) throw new MkpiError('MKPI_INTERNAL', 'warehouse used after close()');
    const client = new pg.Client({
      ...this.baseConfig,
      types: TYPES,
      application_name: application,
      connectionTimeoutMillis: this.connectTimeoutMs,
      keepAlive: true,
    });
    const conn: Conn = { client, dead: false };
    // Without a listener, a server-side termination while idle crashes the whole process.
    client.on('error', () => {
      conn.dead = true;
    });
    client.on('end', () => {
      conn.dead = true;
    });
    try {
      await client.connect();
    } catch (err) {
      conn.dead = true;
      await client.end().catch(() => undefined);
      const e = this.toError(err, `connecting for ${what}`);
      // A server that refuses the session for a reason of its own ("database does not allow
      // connections", SQLSTATE 55000, and the like) is unavailable, not a bug of ours.
      if (e.code !== 'MKPI_INTERNAL') throw e;
      throw new MkpiError('MKPI_WAREHOUSE_UNAVAILABLE', e.message, {
        hint: `check that PostgreSQL at ${this.description} accepts connections, then run again`,
        cause: e.cause,
        details: e.details,
      });
    }
    return conn;
  }

  /** Serialises use of the shared connection, reconnecting when the last one broke. */
  withWork<T>(what: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
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
    await this.workQueue;
    this.isClosed = true;
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
