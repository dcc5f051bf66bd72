// redshift://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=…] → pg settings. Built by hand rather
// than handed to pg as a connection string, so that nothing but user, database and
// application_name ever reaches the startup packet (Redshift refuses some parameters), and TLS
// is on and verified unless sslmode=disable says otherwise.

import { isIP } from 'node:net';
import type pg from 'pg';
import { MkpiError } from '../../../domain/errors.js';

export const DEFAULT_REDSHIFT_PORT = 5439;

export interface RedshiftUrl {
  host: string;
  port: number;
  /** Absent only where IAM names the database user (Serverless). */
  user: string | undefined;
  /** From the URL itself; PGPASSWORD and ~/.pgpass are read elsewhere. */
  password: string | undefined;
  database: string;
  ssl: NonNullable<pg.ClientConfig['ssl']>;
  /** "redshift://user@host:port/db": no password, no query string. */
  description: string;
  /** What must never appear in a message. */
  secrets: string[];
}

const SSL_MODES = new Set(['disable', 'require', 'verify-ca', 'verify-full']);

function decode(part: string, what: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new MkpiError('MKPI_CONFIG', `the Redshift URL's ${what} has a malformed %-escape`);
  }
}

/** Never echoes the URL: it may hold a password. */
export function parseRedshiftUrl(url: string, from = 'the warehouse URL'): RedshiftUrl {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new MkpiError('MKPI_CONFIG', `${from}: the Redshift URL cannot be parsed`, {
      hint: 'expected redshift://user@host:5439/database; percent-encode special characters of the user (or use PGPASSWORD for the password)',
    });
  }
  if (u.protocol !== 'redshift:') throw new MkpiError('MKPI_INTERNAL', `not a redshift:// URL (${u.protocol})`);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!host) throw new MkpiError('MKPI_CONFIG', `${from}: the Redshift URL names no host`, { hint: 'redshift://user@host:5439/database' });
  const port = u.port ? Number(u.port) : DEFAULT_REDSHIFT_PORT;
  const database = decode(u.pathname.replace(/^\//, ''), 'database');
  if (!database || database.includes('/')) {
    throw new MkpiError('MKPI_CONFIG', `${from}: the Redshift URL names no database`, {
      hint: 'redshift://user@host:5439/database (Redshift creates "dev" by default)',
    });
  }
  const user = u.username ? decode(u.username, 'user') : undefined;
  const secrets: string[] = [];
  let password: string | undefined;
  if (u.password) {
    secrets.push(u.password);
    password = decode(u.password, 'password');
    if (password !== u.password) secrets.push(password);
  }
  let sslmode = 'verify-full';
  for (const [key, value] of u.searchParams) {
    if (key !== 'sslmode') {
      throw new MkpiError('MKPI_CONFIG', `${from}: unsupported Redshift URL parameter ${JSON.stringify(key)}`, {
        hint: 'the only parameter is sslmode (disable, require, verify-ca or verify-full)',
      });
    }
    if (!SSL_MODES.has(value)) {
      throw new MkpiError('MKPI_CONFIG', `${from}: sslmode=${JSON.stringify(value)} is not supported for Redshift`, {
        hint: 'leave it out (TLS on, certificate verified), or sslmode=disable for a local endpoint without TLS',
      });
    }
    sslmode = value;
  }
  // Redshift's certificates are publicly trusted: "require" is verified too, as pg does it.
  // SNI carries host names only (RFC 6066): an address is verified against the certificate without it.
  const ssl: RedshiftUrl['ssl'] = sslmode === 'disable' ? false : { rejectUnauthorized: true, ...(isIP(host) ? {} : { servername: host }) };
  const who = user ? `${user}@` : '';
  return { host, port, user, password, database, ssl, description: `redshift://${who}${u.host}/${database}`, secrets };
}

/** What an endpoint's DNS name says about it (the names AWS gives clusters and workgroups). */
export type RedshiftEndpoint =
  | { kind: 'provisioned'; clusterId: string; region: string }
  | { kind: 'serverless'; workgroup: string; account: string; region: string }
  | { kind: 'other' };

const REGION = '([a-z]{2}(?:-[a-z]+)+-\\d+)';
const PROVISIONED = new RegExp(`^([a-z][a-z0-9-]*)\\.([a-z0-9]+)\\.${REGION}\\.redshift\\.amazonaws\\.com(?:\\.cn)?$`, 'i');
const SERVERLESS = new RegExp(`^([a-z0-9-]+)\\.(\\d{12})\\.${REGION}\\.redshift-serverless\\.amazonaws\\.com(?:\\.cn)?$`, 'i');

/** `my-cluster.abc123.eu-west-1.redshift.amazonaws.com`, `wg.123456789012.eu-west-1.redshift-serverless.amazonaws.com`. */
export function parseRedshiftHost(host: string): RedshiftEndpoint {
  const s = SERVERLESS.exec(host);
  if (s) return { kind: 'serverless', workgroup: s[1].toLowerCase(), account: s[2], region: s[3].toLowerCase() };
  const p = PROVISIONED.exec(host);
  if (p) return { kind: 'provisioned', clusterId: p[1].toLowerCase(), region: p[3].toLowerCase() };
  return { kind: 'other' };
}
