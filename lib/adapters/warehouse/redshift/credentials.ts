// Where a Redshift session's password comes from: the URL, PGPASSWORD, ~/.pgpass (as libpq
// reads them, from the environment the CLI hands over), or IAM: temporary database
// credentials fetched just before each connection (GetClusterCredentials for a provisioned
// cluster, GetCredentials for a Serverless workgroup), with AWS credentials from the SDK's
// default chain.

import { readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GetClusterCredentialsCommand, RedshiftClient } from '@aws-sdk/client-redshift';
import { GetCredentialsCommand, RedshiftServerlessClient } from '@aws-sdk/client-redshift-serverless';
import { MkpiError } from '../../../domain/errors.js';
import { parseRedshiftHost, type RedshiftUrl } from './url.js';

export type PasswordEnv = Readonly<Record<string, string | undefined>>;

/** One field of a ~/.pgpass line: "*" matches anything, "\:" and "\\" are escapes. */
function pgpassFields(line: string): string[] {
  const fields: string[] = [];
  let cur = '';
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (ch === '\\' && i + 1 < line.length) cur += line[++i];
    else if (ch === ':' && fields.length < 4) {
      fields.push(cur);
      cur = '';
    } else cur += ch;
  }
  fields.push(cur);
  return fields;
}

/** The password of the first matching line, as libpq finds it; undefined when none matches. */
export function pgpassLookup(text: string, target: { host: string; port: number; database: string; user: string }): string | undefined {
  const want = [target.host, String(target.port), target.database, target.user];
  for (const raw of text.split(/\r?\n/)) {
    if (raw.trim() === '' || raw.startsWith('#')) continue;
    const f = pgpassFields(raw);
    if (f.length !== 5) continue;
    if (want.every((w, i) => f[i] === '*' || f[i] === w)) return f[4];
  }
  return undefined;
}

/**
 * PGPASSWORD, else the pgpass file (PGPASSFILE or ~/.pgpass), which libpq ignores when others
 * may read it. `env` is the environment the CLI passes down, not necessarily this process's.
 */
export function passwordFromEnv(
  env: PasswordEnv,
  target: { host: string; port: number; database: string; user: string },
): string | undefined {
  if (env.PGPASSWORD) return env.PGPASSWORD;
  const home = env.HOME || os.homedir();
  const file = env.PGPASSFILE || (home ? path.join(home, '.pgpass') : undefined);
  if (!file) return undefined;
  try {
    const st = statSync(file);
    if (!st.isFile() || (process.platform !== 'win32' && (st.mode & 0o077) !== 0)) return undefined;
    return pgpassLookup(readFileSync(file, 'utf8'), target);
  } catch {
    return undefined;
  }
}

export interface IamOptions {
  /** Provisioned cluster; default: the host's first label. */
  clusterId?: string;
  /** Serverless workgroup; default: the host's first label when it is a Serverless endpoint. */
  workgroup?: string;
  /** Region of the Redshift API; default: the host's, then the SDK's (AWS_REGION). */
  region?: string;
  /** Lifetime asked for the temporary password (900 to 3600 s); default 900. */
  durationSeconds?: number;
}

/** Where IAM credentials are asked for, resolved from the options and the host. */
export type IamTarget =
  | { kind: 'provisioned'; clusterId: string; region: string | undefined; dbUser: string; database: string }
  | { kind: 'serverless'; workgroup: string; region: string | undefined; database: string };

export function iamTarget(url: RedshiftUrl, iam: IamOptions): IamTarget {
  const endpoint = parseRedshiftHost(url.host);
  const region = iam.region || (endpoint.kind === 'other' ? undefined : endpoint.region);
  const workgroup = iam.workgroup || (!iam.clusterId && endpoint.kind === 'serverless' ? endpoint.workgroup : undefined);
  if (workgroup) return { kind: 'serverless', workgroup, region, database: url.database };
  const clusterId = iam.clusterId || (endpoint.kind === 'provisioned' ? endpoint.clusterId : undefined);
  if (!clusterId) {
    throw new MkpiError('MKPI_CONFIG', `cannot tell the Redshift cluster of ${url.description} for IAM credentials`, {
      hint: 'give the cluster identifier (--redshift-cluster-id), or connect through the endpoint name AWS gives the cluster',
    });
  }
  if (!url.user) {
    throw new MkpiError('MKPI_CONFIG', `IAM credentials for cluster ${clusterId} need a database user: ${url.description} names none`, {
      hint: 'redshift://USER@host:5439/database',
    });
  }
  return { kind: 'provisioned', clusterId, region, dbUser: url.user, database: url.database };
}

const UNAVAILABLE =
  /Throttl|TooManyRequests|RequestLimitExceeded|ServiceUnavailable|InternalFailure|InternalServer|TimeoutError|RequestTimeout/;
const NETWORK = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE']);

function iamError(err: unknown, target: IamTarget): MkpiError {
  const e = err as { name?: string; message?: string; code?: string; $metadata?: { httpStatusCode?: number; requestId?: string } };
  const name = e?.name ?? 'Error';
  const status = e?.$metadata?.httpStatusCode;
  const where = target.kind === 'provisioned' ? `cluster ${target.clusterId}` : `workgroup ${target.workgroup}`;
  const api = target.kind === 'provisioned' ? 'redshift:GetClusterCredentials' : 'redshift-serverless:GetCredentials';
  const details: Record<string, unknown> = { awsError: name, ...(status !== undefined ? { httpStatus: status } : {}) };
  const message = `fetching IAM database credentials for ${where}: ${name}${e?.message && e.message !== name ? `: ${e.message}` : ''}`;
  if ((status !== undefined && status >= 500) || UNAVAILABLE.test(name) || (e?.code !== undefined && NETWORK.has(e.code))) {
    return new MkpiError('MKPI_WAREHOUSE_UNAVAILABLE', message, {
      hint: 'the Redshift API did not answer; run again later',
      cause: err,
      details: { ...details, retryable: true },
    });
  }
  return new MkpiError('MKPI_CONFIG', message, {
    hint:
      /region/i.test(e?.message ?? '') && !target.region
        ? 'set AWS_REGION to the region of the Redshift endpoint'
        : `check the AWS credentials of the default chain (AWS_PROFILE, AWS_ACCESS_KEY_ID, an instance role…), their ${api} permission on ${where}, and the database name`,
    cause: err,
    details,
  });
}

/** Temporary credentials, reused until a minute before they expire. */
export class IamCredentials {
  private cached: { user: string; password: string; expiresAt: number } | undefined;

  constructor(
    readonly target: IamTarget,
    private readonly durationSeconds = 900,
    private readonly now: () => number = Date.now,
  ) {}

  async get(): Promise<{ user: string; password: string }> {
    const c = this.cached;
    if (c && c.expiresAt - 60_000 > this.now()) return { user: c.user, password: c.password };
    const t = this.target;
    let user: string | undefined;
    let password: string | undefined;
    let expiration: Date | undefined;
    try {
      if (t.kind === 'provisioned') {
        const client = new RedshiftClient(t.region ? { region: t.region } : {});
        try {
          const r = await client.send(
            new GetClusterCredentialsCommand({
              ClusterIdentifier: t.clusterId,
              DbUser: t.dbUser,
              DbName: t.database,
              DurationSeconds: this.durationSeconds,
              AutoCreate: false,
            }),
          );
          ({ DbUser: user, DbPassword: password, Expiration: expiration } = r);
        } finally {
          client.destroy();
        }
      } else {
        const client = new RedshiftServerlessClient(t.region ? { region: t.region } : {});
        try {
          const r = await client.send(
            new GetCredentialsCommand({ workgroupName: t.workgroup, dbName: t.database, durationSeconds: this.durationSeconds }),
          );
          ({ dbUser: user, dbPassword: password, expiration } = r);
        } finally {
          client.destroy();
        }
      }
    } catch (err) {
      throw iamError(err, t);
    }
    if (!user || !password) throw new MkpiError('MKPI_INTERNAL', 'the Redshift API returned credentials without a user or password');
    // Without an expiry, assume the shortest lifetime AWS grants.
    const expiresAt = expiration ? expiration.getTime() : this.now() + this.durationSeconds * 1000;
    this.cached = { user, password, expiresAt };
    return { user, password };
  }
}
