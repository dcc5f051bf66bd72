// COPY from the stage manifest into a stage table, and a readable error when it fails.

import type pg from 'pg';
import { MkpiError } from '../../../domain/errors.js';
import { isConnectionLoss } from '../core/errors.js';
import { isCopyAccessError } from './errors.js';

const IAM_ROLE_ARN = /^arn:aws[a-z-]*:iam::\d{12}:role\/[A-Za-z0-9+=,.@_/-]{1,512}$/;

/** A role ARN to splice into COPY (checked, so it cannot carry SQL); undefined = the cluster's default role. */
export function checkIamRole(role: string | undefined): string | undefined {
  if (role === undefined || role.trim() === '' || role.trim().toLowerCase() === 'default') return undefined;
  const roles = role.split(',').map((r) => r.trim());
  if (!roles.every((r) => IAM_ROLE_ARN.test(r))) {
    throw new MkpiError('MKPI_CONFIG', `the IAM role for COPY is not a role ARN: ${JSON.stringify(role)}`, {
      hint: 'give --iam-role arn:aws:iam::123456789012:role/NAME (chained roles separated by commas), or leave it out for the cluster’s default role',
    });
  }
  return roles.join(',');
}

function literal(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

export interface CopyOptions {
  /** A checked ARN (checkIamRole), or undefined for IAM_ROLE default. */
  iamRole: string | undefined;
  /** Where the staging bucket is, when it is not the cluster's region. */
  region?: string;
}

/**
 * COPY … FROM the manifest, as the stage files are written: CSV, gzip, NULL as a field of only
 * NUL, every file required, no header. Compression analysis and statistics are off: the
 * target is a temp table that lives for one load.
 */
export function copySql(stageTable: string, columns: readonly string[], manifestUrl: string, opts: CopyOptions): string {
  return [
    `COPY ${stageTable} (${columns.join(', ')})`,
    `FROM ${literal(manifestUrl)}`,
    opts.iamRole ? `IAM_ROLE ${literal(opts.iamRole)}` : 'IAM_ROLE default',
    // The synopsis' order: source, authorization, format, then the other parameters.
    'FORMAT AS CSV',
    'MANIFEST',
    'GZIP',
    "NULL AS '\\000'",
    ...(opts.region ? [`REGION ${literal(opts.region)}`] : []),
    'COMPUPDATE OFF',
    'STATUPDATE OFF',
  ].join('\n');
}

export interface LoadErrorRow {
  file: string | null;
  line: number | string | null;
  col: string | null;
  code: number | string | null;
  reason: string | null;
}

/**
 * What Redshift recorded about the failed COPY of files under `dirUrl`: sys_load_error_detail
 * (provisioned and Serverless), else stl_load_errors (older clusters). Empty when neither says anything.
 */
export async function loadErrors(c: pg.Client, dirUrl: string): Promise<LoadErrorRow[]> {
  const like = `${dirUrl}%`;
  const queries = [
    `SELECT TRIM(file_name) AS file, line_number AS line, TRIM(column_name) AS col, error_code AS code, TRIM(error_message) AS reason
       FROM sys_load_error_detail WHERE file_name LIKE $1 ORDER BY start_time DESC LIMIT 5`,
    `SELECT TRIM(filename) AS file, line_number AS line, TRIM(colname) AS col, err_code AS code, TRIM(err_reason) AS reason
       FROM stl_load_errors WHERE filename LIKE $1 ORDER BY starttime DESC LIMIT 5`,
  ];
  for (const q of queries) {
    try {
      const r = await c.query<LoadErrorRow>(q, [like]);
      if (r.rows.length > 0) return r.rows;
    } catch {
      // the view is missing or not readable: try the next one
    }
  }
  return [];
}

/** The COPY's failure with what Redshift recorded about it; connection losses are left to the shared classification. */
export async function copyError(c: pg.Client, err: unknown, table: string, manifestUrl: string, dirUrl: string): Promise<unknown> {
  if (err instanceof MkpiError || isConnectionLoss(err)) return err;
  const message = err instanceof Error ? err.message : String(err);
  const sqlstate = (err as { code?: unknown }).code;
  if (isCopyAccessError(err)) {
    return new MkpiError('MKPI_CONFIG', `COPY into the ${table} stage could not read ${manifestUrl}: ${message}`, {
      hint:
        'the IAM role COPY uses (--iam-role, or the cluster’s default role) needs s3:GetObject on the staging prefix and ' +
        's3:ListBucket on its bucket, and must be associated with the cluster or workgroup',
      cause: err,
      details: { sqlstate },
    });
  }
  const rows = await loadErrors(c, dirUrl);
  const first = rows[0];
  const where = first
    ? `; ${first.file ?? '?'}, line ${first.line ?? '?'}${first.col ? `, column ${first.col}` : ''}: ${first.reason ?? '(no reason recorded)'}${first.code !== null ? ` (load error ${first.code})` : ''}`
    : '';
  const tooLong = /exceeds ddl length|value too long/i.test(`${first?.reason ?? ''} ${message}`);
  return new MkpiError(
    tooLong ? 'MKPI_CONFIG' : 'MKPI_INTERNAL',
    `COPY into the ${table} stage from ${manifestUrl} failed: ${message}${where}`,
    {
      hint: tooLong ? 'a column of the table is narrower than the value; run musickpi init to widen it (as the table’s owner)' : undefined,
      cause: err,
      details: { sqlstate, loadErrors: rows },
    },
  );
}
