// Dataset identities after the OpenLineage naming conventions: a lake file is `s3://bucket` +
// object key, or `file` + absolute path; a warehouse table is `postgres://host:port` (or
// `redshift://cluster.region:port`) + `database.schema.table`. The same file or table gets the
// same identity from every producer, so musickpi's datasets join those of Airflow, Spark or dbt.

import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config.js';

export interface DatasetId {
  namespace: string;
  name: string;
}

/** Turns a lake key into its dataset identity. */
export type LakeNamer = (key: string) => DatasetId;

export function lakeNamer(uri: string, cwd = process.cwd()): LakeNamer {
  const trimmed = uri.trim();
  const s3 = /^s3a?:\/\/([^/]+)\/*(.*?)\/*$/i.exec(trimmed);
  if (s3) {
    const [, bucket, prefix] = s3;
    return (key) => ({ namespace: `s3://${bucket}`, name: prefix ? `${prefix}/${key}` : key });
  }
  let root: string;
  try {
    root = /^file:\/\//i.test(trimmed) ? fileURLToPath(trimmed) : resolve(cwd, trimmed);
  } catch {
    root = resolve(cwd, trimmed);
  }
  root = root.replace(/\/+$/, '') || '/';
  return (key) => ({ namespace: 'file', name: root === '/' ? `/${key}` : `${root}/${key}` });
}

const REDSHIFT_HOST = /^([a-z0-9-]+)\.[a-z0-9]+\.([a-z0-9-]+)\.redshift(?:-serverless)?\.amazonaws\.com$/i;

/**
 * The namespace and database of the warehouse a report describes ("postgresql://user@host:5432/db",
 * never a password). The embedded PostgreSQL listens on a new port at each start: its tables are
 * named without the port, so that runs on one home stay one dataset.
 */
export function warehouseNamespace(description: string, embedded: boolean): { namespace: string; database: string } | undefined {
  let u: URL;
  try {
    u = new URL(description);
  } catch {
    return undefined;
  }
  const scheme = u.protocol.replace(/:$/, '').toLowerCase();
  const host = u.hostname.toLowerCase();
  const database = decodeURIComponent(u.pathname.replace(/^\/+/, '')) || decodeURIComponent(u.username) || 'postgres';
  const redshift = REDSHIFT_HOST.exec(host);
  if (scheme === 'redshift' || redshift) {
    const port = u.port || '5439';
    return { namespace: redshift ? `redshift://${redshift[1]}.${redshift[2]}:${port}` : `redshift://${host}:${port}`, database };
  }
  if (embedded) return { namespace: `postgres://${host}`, database };
  return { namespace: `postgres://${host}:${u.port || '5432'}`, database };
}

/** Whether the warehouse adapter falls back to the embedded PostgreSQL (no URL, no PG* variables). */
export function isEmbeddedWarehouse(config: Readonly<Config>): boolean {
  const w = config.warehouse;
  if (!w) return false;
  if (w.url?.trim() || w.env.DATABASE_URL?.trim()) return false;
  return !['PGHOST', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGPASSWORD'].some((k) => w.env[k]);
}
