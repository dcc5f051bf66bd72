// Picks the warehouse a command talks to. Precedence, most explicit first:
// --warehouse URL > DATABASE_URL > PG* variables > the embedded PostgreSQL of the home.
// A URL is postgres:// or postgresql:// (PostgreSQL), or redshift:// (Amazon Redshift).

import { createRequire } from 'node:module';
import { MkpiError, redact } from '../../domain/errors.js';
import type * as EmbeddedModule from './embedded/index.js';
import { PostgresWarehouse, type PostgresWarehouseOptions } from './postgres/postgres-warehouse.js';
import type * as RedshiftModule from './redshift/redshift-warehouse.js';
import { parseRedshiftUrl } from './redshift/url.js';
import { quoteSchema } from './core/sql.js';
import type { Warehouse } from '../../domain/warehouse.js';

/**
 * The Redshift adapter and the embedded server, loaded by the first warehouse that needs them:
 * the Redshift adapter imports the AWS SDK (~0.15 s of every start-up here), which a PostgreSQL
 * warehouse never uses. require() rather than import(), as for the S3 lake (lake/open.ts): the
 * same module cache as the static imports, so MkpiError is the same class either way.
 */
const load = createRequire(import.meta.url);
const redshiftModule = () => load('./redshift/redshift-warehouse.js') as typeof RedshiftModule;
const embeddedModule = () => load('./embedded/index.js') as typeof EmbeddedModule;

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
  /** Settings of a redshift:// warehouse; ignored for PostgreSQL. */
  redshift?: RedshiftOpenOptions;
}

export interface RedshiftOpenOptions {
  /** s3://bucket/prefix/ for the stage files and manifests (--staging, MUSICKPI_STAGING). Required. */
  staging?: string;
  /** The role ARN COPY reads the stage files with (--iam-role, MUSICKPI_IAM_ROLE); default the cluster's default role. */
  iamRole?: string;
  /** Temporary database credentials from IAM (--redshift-iam) instead of PGPASSWORD / ~/.pgpass. */
  iam?: boolean;
  /** The provisioned cluster for IAM credentials (--redshift-cluster-id); default the host's first label. */
  clusterId?: string;
  /** How to reach the staging bucket (--s3-endpoint, --s3-region, --s3-force-path-style). */
  s3?: { endpoint?: string; region?: string; forcePathStyle?: boolean };
  /** Shown to other runs as the holder of the run lock (the run id). */
  runId?: string;
}

/** A server restart or failover usually completes within this. */
export const DEFAULT_CONNECT_RETRY_MS = 30_000;

/** The variables libpq-style clients (and pg) take a connection from. */
const PG_VARIABLES = ['PGHOST', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGPASSWORD'] as const;

function schemeOf(url: string): string | undefined {
  return /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(url)?.[1]?.toLowerCase();
}

function checkUrl(url: string, from: string): void {
  const scheme = schemeOf(url);
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
  if (scheme === 'redshift') {
    parseRedshiftUrl(url, from);
    return;
  }
  // The URL may hold a password: never echo it back.
  const shown = redact(url).replace(/[?#].*$/s, '');
  throw new MkpiError('MKPI_CONFIG', `${from}: unsupported warehouse URL ${scheme ? `scheme "${scheme}"` : `"${shown}"`}`, {
    hint: 'expected postgres://user@host:port/database, postgresql://… or redshift://user@host:5439/database',
  });
}

function openRedshift(
  url: string,
  from: string,
  opts: OpenWarehouseOptions,
  retry: ReturnType<typeof retryOptions>,
): RedshiftModule.RedshiftWarehouse {
  const rs = opts.redshift ?? {};
  const staging = rs.staging?.trim();
  if (!staging) {
    throw new MkpiError('MKPI_CONFIG', `${from}: a Redshift warehouse loads through S3, and no staging location is set`, {
      hint: 'give --staging s3://bucket/prefix/ (or MUSICKPI_STAGING); with a lake on S3 it defaults to _musickpi/staging/ under the lake root',
    });
  }
  return new (redshiftModule().RedshiftWarehouse)(url, {
    schema: opts.schema,
    staging: { uri: staging, s3: rs.s3 },
    iamRole: rs.iamRole,
    iam: rs.iam ? { clusterId: rs.clusterId || undefined } : undefined,
    env: opts.env,
    runId: rs.runId,
    warn: opts.warn,
    ...retry,
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
    const warehouse =
      schemeOf(chosen.url) === 'redshift'
        ? openRedshift(chosen.url, chosen.from, opts, retry)
        : new PostgresWarehouse(chosen.url, { schema: opts.schema, ...retry });
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

  const server = await embeddedModule().startEmbedded({ home: opts.home, log: opts.log, warn: opts.warn });
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
