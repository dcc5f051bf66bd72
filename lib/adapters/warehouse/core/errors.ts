// Failures talking to the warehouse (PostgreSQL, or Redshift through the same protocol), sorted
// into the MkpiError classes the CLI acts on, with every secret of the connection scrubbed
// before a message leaves the adapter.

import { MkpiError, redact, type ErrorCode } from '../../../domain/errors.js';

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EPIPE',
  'ECONNABORTED',
]);

const CONNECTION_MESSAGES = /connection terminated|connection timeout|not queryable|client was closed|connection ended|socket hang up/i;

export function errCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function errMessage(err: unknown): string {
  if (err instanceof Error) {
    if (err.message) return err.message;
    // Node's happy-eyeballs connect fails with an AggregateError whose message is empty.
    const inner = (err as { errors?: unknown[] }).errors;
    if (Array.isArray(inner) && inner.length > 0) return inner.map(errMessage).join('; ');
    return errCode(err) ?? err.name;
  }
  return String(err);
}

/** True when the error means the connection it happened on cannot be used any more. */
export function isConnectionLoss(err: unknown): boolean {
  const code = errCode(err);
  if (code && (NETWORK_CODES.has(code) || code.startsWith('08') || /^57P0[123]$/.test(code))) return true;
  return CONNECTION_MESSAGES.test(errMessage(err));
}

/**
 * Failures of a connection attempt that may well succeed a moment later: nobody listening yet
 * (a server or proxy restarting), a reset or timed-out handshake, a DNS hiccup, a server still
 * starting up or in recovery (57P03 cannot_connect_now), every slot taken (53300
 * too_many_connections). Anything else is as likely to fail the same way on the next try.
 */
const TRANSIENT_CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  '57P03',
  '53300',
]);

/** 28P01 invalid_password; 28000 invalid_authorization_specification (pg_hba.conf rejections). */
const AUTH_CODES = new Set(['28P01', '28000']);

/**
 * pg's own refusal to authenticate without a password: the server asked for one (SCRAM or a
 * password callback) and none was configured. pg throws these as plain Errors with no code at
 * all, so its message is the only thing to go by; this is the one place that reads it.
 */
export function isMissingPasswordError(err: unknown): boolean {
  return errCode(err) === undefined && /\bpassword must be a (non-empty )?string\b/i.test(errMessage(err));
}

/** Why a connection attempt failed, as far as what to do next is concerned. */
export type ConnectFailure = 'auth' | 'unknown-database' | 'transient' | 'other';

export function classifyConnectFailure(err: unknown): ConnectFailure {
  const code = errCode(err);
  if ((code && AUTH_CODES.has(code)) || isMissingPasswordError(err)) return 'auth';
  if (code === '3D000') return 'unknown-database';
  if (code && TRANSIENT_CONNECT_CODES.has(code)) return 'transient';
  return 'other';
}

/** Which MkpiError a failure talking to PostgreSQL becomes; undefined = not a known class. */
export function classifyPgError(err: unknown): ErrorCode | undefined {
  const code = errCode(err);
  if (code === '40001' || code === '40P01' || code === '55P03' || code === '57014') return 'MKPI_RETRY_LATER';
  // Wrong credentials or database name will not heal by retrying.
  const connect = classifyConnectFailure(err);
  if (connect === 'auth' || connect === 'unknown-database') return 'MKPI_CONFIG';
  if (code === '53300' || code === '53100') return 'MKPI_WAREHOUSE_UNAVAILABLE';
  if (isConnectionLoss(err)) return 'MKPI_WAREHOUSE_UNAVAILABLE';
  // TLS negotiation failures (no SSL on the server, untrusted certificate) are settings to fix.
  if (!(code && /^[0-9A-Z]{5}$/.test(code)) && /\bssl\b|certificate/i.test(errMessage(err))) return 'MKPI_CONFIG';
  return undefined;
}

/** What a configuration error asks the user to fix; no secret ever goes into it. */
function configHint(err: unknown, target: ErrorTarget): string {
  const connect = classifyConnectFailure(err);
  if (connect === 'auth') {
    const hba = errCode(err) === '28000' ? " or the server's pg_hba.conf does not admit this user, host or SSL mode;" : '';
    return (
      `the server refused the credentials for ${target.description}:${hba} ` +
      'set the password in PGPASSWORD or in ~/.pgpass (host:port:database:user:password, mode 0600), and check the user name'
    );
  }
  if (connect === 'unknown-database') {
    return (
      `the database of ${target.description} does not exist: fix the database name in the warehouse URL or PGDATABASE, ` +
      'or create it (createdb); musickpi init creates the schema and tables, not the database'
    );
  }
  return 'check the user, password, database and SSL settings of the warehouse connection';
}

/** The warehouse an error is about: how to name it, and what must never appear in a message. */
export interface ErrorTarget {
  readonly description: string;
  readonly secrets: readonly string[];
  /** How the server is named in hints; default 'PostgreSQL'. */
  readonly product?: string;
  /** The dialect's own classification, tried before the shared one. */
  readonly classify?: (err: unknown) => ErrorCode | undefined;
}

function scrub(text: string, secrets: readonly string[]): string {
  let out = redact(text);
  for (const s of secrets) if (s.length > 0) out = out.split(s).join('***');
  return out;
}

/** Any failure → MkpiError with a scrubbed message; MkpiErrors pass through untouched. */
export function toError(target: ErrorTarget, err: unknown, what: string, hint?: string): MkpiError {
  if (err instanceof MkpiError) return err;
  const code = target.classify?.(err) ?? classifyPgError(err);
  const sqlstate = errCode(err);
  const raw = errMessage(err);
  const message = scrub(raw, target.secrets);
  // The cause is kept for debugging unless it would carry a secret along with it.
  const cause = message === raw ? err : undefined;
  const isSqlstate = sqlstate !== undefined && /^[0-9A-Z]{5}$/.test(sqlstate);
  const details = { operation: what, ...(sqlstate ? (isSqlstate ? { sqlstate } : { errno: sqlstate }) : {}) };
  const suffix = isSqlstate ? ` (SQLSTATE ${sqlstate})` : '';
  switch (code) {
    case 'MKPI_WAREHOUSE_UNAVAILABLE':
      return new MkpiError(code, `warehouse ${target.description} unavailable while ${what}: ${message}${suffix}`, {
        hint: hint ?? `check that ${target.product ?? 'PostgreSQL'} at ${target.description} is running and reachable, then run again`,
        cause,
        details,
      });
    case 'MKPI_RETRY_LATER':
      return new MkpiError(code, `warehouse busy while ${what}: ${message}${suffix}`, {
        hint: hint ?? 'a concurrent transaction or lock got in the way; nothing was changed, run again later',
        cause,
        details,
      });
    case 'MKPI_CONFIG':
      // pg's wording ("SASL: SCRAM-SERVER-FIRST-MESSAGE: client password must be a string") says nothing to a user.
      return new MkpiError(
        code,
        `cannot use warehouse ${target.description}: ${isMissingPasswordError(err) ? 'the server asks for a password and none is set' : message}${suffix}`,
        {
          hint: configHint(err, target),
          cause,
          // Lets a caller tell credentials from a database name without reading the message.
          details: { ...details, reason: classifyConnectFailure(err) },
        },
      );
    default:
      return new MkpiError('MKPI_INTERNAL', `warehouse error while ${what}: ${message}${suffix}`, {
        cause,
        details,
      });
  }
}
