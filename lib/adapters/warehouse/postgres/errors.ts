// Failures talking to PostgreSQL, sorted into the MkpiError classes the CLI acts on, with
// every secret of the connection scrubbed before a message leaves the adapter.

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

/** Which MkpiError a failure talking to PostgreSQL becomes; undefined = not a known class. */
export function classifyPgError(err: unknown): ErrorCode | undefined {
  const code = errCode(err);
  if (code === '40001' || code === '40P01' || code === '55P03' || code === '57014') return 'MKPI_RETRY_LATER';
  // Wrong credentials or database name will not heal by retrying.
  if (code === '28000' || code === '28P01' || code === '3D000') return 'MKPI_CONFIG';
  if (code === '53300' || code === '53100') return 'MKPI_WAREHOUSE_UNAVAILABLE';
  if (isConnectionLoss(err)) return 'MKPI_WAREHOUSE_UNAVAILABLE';
  // TLS negotiation failures (no SSL on the server, untrusted certificate) are settings to fix.
  if (!(code && /^[0-9A-Z]{5}$/.test(code)) && /\bssl\b|certificate/i.test(errMessage(err))) return 'MKPI_CONFIG';
  return undefined;
}

/** The warehouse an error is about: how to name it, and what must never appear in a message. */
export interface ErrorTarget {
  readonly description: string;
  readonly secrets: readonly string[];
}

function scrub(text: string, secrets: readonly string[]): string {
  let out = redact(text);
  for (const s of secrets) if (s.length > 0) out = out.split(s).join('***');
  return out;
}

/** Any failure → MkpiError with a scrubbed message; MkpiErrors pass through untouched. */
export function toError(target: ErrorTarget, err: unknown, what: string, hint?: string): MkpiError {
  if (err instanceof MkpiError) return err;
  const code = classifyPgError(err);
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
        hint: hint ?? `check that PostgreSQL at ${target.description} is running and reachable, then run again`,
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
      return new MkpiError(code, `cannot use warehouse ${target.description}: ${message}${suffix}`, {
        hint: 'check the user, password, database and SSL settings of the warehouse connection',
        cause,
        details,
      });
    default:
      return new MkpiError('MKPI_INTERNAL', `warehouse error while ${what}: ${message}${suffix}`, {
        cause,
        details,
      });
  }
}
