// Picks the warehouse a command talks to. Precedence, most explicit first:
// --warehouse URL > DATABASE_URL > PG* variables > the embedded PostgreSQL of the home.

import { MkpiError, redact } from '../../domain/errors.js';
import { startEmbedded } from './embedded/index.js';
import { PostgresWarehouse, type PostgresWarehouseOptions } from './postgres/postgres-warehouse.js';
import { quoteSchema } from './core/sql.js';
import type { Warehouse } from '../../domain/warehouse.js';

export interface OpenedWarehouse {
  warehouse: Warehouse;
  embedded: boolean;
  /** Closes the connections and, for the embedded warehouse, stops the server. Idempotent. */
  stop(): Promise<void>;
}

export interface OpenWarehouseOptions {
  warehouse?: string;
  env: NodeJS.ProcessEnv;
  schema: string;
  home: string;
  log?: (l: string) => void;
  /** Warnings the user must see (e.g. the embedded data moved to another folder). */
  warn?: (l: string) => void;
  /**
   * How long connecting to a PostgreSQL given by URL or PG* variables retries failures that
   * may heal by themselves (refused, reset, timed out, starting up, too many connections)
   * before MKPI_WAREHOUSE_UNAVAILABLE; 0 = a single attempt. Default DEFAULT_CONNECT_RETRY_MS.
   * The embedded server is known to be up once started: it gets a single attempt.
   */
  connectRetryMs?: number;
}

/** A server restart or failover usually completes within this. */
export const DEFAULT_CONNECT_RETRY_MS = 30_000;

/** The variables libpq-style clients (and pg) take a connection from. */
const PG_VARIABLES = ['PGHOST', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGPASSWORD'] as const;

function checkUrl(url: string, from: string): void {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(url)?.[1]?.toLowerCase();
  if (scheme === 'postgres' || scheme === 'postgresql') {
    try {
      new URL(url);
    } catch {
      // Never echo the URL: an unencoded '#' or '/' in a password is the usual cause.
      throw new MkpiError('MKPI_CONFIG', `${from}: the connection URL cannot be parsed`, {
        hint: 'percent-encode special characters of the user and password (e.g. # as %23, / as %2F), or use PGPASSWORD',
      });
    }
    return;
  }
  // The URL may hold a password: never echo it back.
  const shown = redact(url).replace(/[?#].*$/s, '');
  if (scheme === 'redshift') {
    throw new MkpiError('MKPI_CONFIG', `${from}: Redshift warehouses are not supported yet (${shown})`, {
      hint: 'use a postgres:// or postgresql:// URL, or leave the warehouse unset for the embedded PostgreSQL',
    });
  }
  throw new MkpiError('MKPI_CONFIG', `${from}: unsupported warehouse URL ${scheme ? `scheme "${scheme}"` : `"${shown}"`}`, {
    hint: 'expected postgres://user@host:port/database or postgresql://…',
  });
}

function retryOptions(opts: OpenWarehouseOptions): Pick<PostgresWarehouseOptions, 'connectRetryMs' | 'onConnectRetry'> {
  const ms = opts.connectRetryMs ?? DEFAULT_CONNECT_RETRY_MS;
  if (!(Number.isFinite(ms) && ms >= 0)) throw new MkpiError('MKPI_USAGE', `connect retry time must be a number of ms >= 0, got ${ms}`);
  const log = opts.log;
  return {
    connectRetryMs: ms,
    onConnectRetry: log
      ? (n) => log(`${n.error.message}; attempt ${n.attempt} failed, trying again in ${(n.delayMs / 1000).toFixed(1)} s`)
      : undefined,
  };
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | undefined;
  return () => (p ??= fn());
}

export async function openWarehouse(opts: OpenWarehouseOptions): Promise<OpenedWarehouse> {
  // Before anything starts: a bad schema name must not cost a server start.
  quoteSchema(opts.schema);
  const retry = retryOptions(opts);

  const explicit = opts.warehouse?.trim() ? { url: opts.warehouse.trim(), from: '--warehouse' } : undefined;
  const fromEnv = opts.env.DATABASE_URL?.trim() ? { url: opts.env.DATABASE_URL.trim(), from: 'DATABASE_URL' } : undefined;
  const chosen = explicit ?? fromEnv;
  if (chosen) {
    checkUrl(chosen.url, chosen.from);
    const warehouse = new PostgresWarehouse(chosen.url, { schema: opts.schema, ...retry });
    return { warehouse, embedded: false, stop: once(() => warehouse.close()) };
  }

  if (PG_VARIABLES.some((v) => opts.env[v])) {
    // Passed explicitly rather than left to pg, which would read process.env instead of opts.env.
    const port = opts.env.PGPORT ? Number(opts.env.PGPORT) : undefined;
    if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) {
      throw new MkpiError('MKPI_CONFIG', `PGPORT is not a port number: ${JSON.stringify(opts.env.PGPORT)}`);
    }
    const warehouse = new PostgresWarehouse('', {
      schema: opts.schema,
      ...retry,
      config: {
        host: opts.env.PGHOST || undefined,
        port,
        database: opts.env.PGDATABASE || undefined,
        user: opts.env.PGUSER || undefined,
        password: opts.env.PGPASSWORD || undefined,
      },
    });
    return { warehouse, embedded: false, stop: once(() => warehouse.close()) };
  }

  const server = await startEmbedded({ home: opts.home, log: opts.log, warn: opts.warn });
  let warehouse: PostgresWarehouse;
  try {
    warehouse = new PostgresWarehouse(server.url, { schema: opts.schema, connectRetryMs: 0 });
  } catch (err) {
    await server.stop();
    throw err;
  }
  return {
    warehouse,
    embedded: true,
    stop: once(async () => {
      try {
        await warehouse.close();
      } finally {
        await server.stop();
      }
    }),
  };
}
