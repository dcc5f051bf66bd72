// Redshift's own failures, as far as a loader must tell them apart.

import { type ErrorCode } from '../../../domain/errors.js';
import { errCode } from '../core/errors.js';

/**
 * A serializable isolation violation ("ERROR: 1023 DETAIL: Serializable isolation violation on
 * table …", SQLSTATE XX000), raised by clusters running SERIALIZABLE when concurrent
 * transactions conflict. Redshift gives it no SQLSTATE of its own: the code text is all there
 * is, so this is the one place that reads it.
 */
export function isSerializableConflict(err: unknown): boolean {
  const code = errCode(err);
  if (code !== undefined && code !== 'XX000') return false;
  const e = err as { message?: unknown; detail?: unknown } | null;
  const text = `${typeof e?.message === 'string' ? e.message : ''}\n${typeof e?.detail === 'string' ? e.detail : ''}`;
  return /(^|\D)1023(\D|$)/.test(text) || /serializable isolation violation/i.test(text);
}

/** The dialect's classification, tried before the shared one (core/errors.ts). */
export function classifyRedshiftError(err: unknown): ErrorCode | undefined {
  return isSerializableConflict(err) ? 'MKPI_RETRY_LATER' : undefined;
}

/** A COPY that could not read its files (the role, its policy, the bucket): a setting to fix. */
export function isCopyAccessError(err: unknown): boolean {
  const message = (err as { message?: unknown } | null)?.message;
  return (
    typeof message === 'string' &&
    /access ?denied|not authorized|assume ?role|invalidaccesskeyid|signaturedoesnotmatch|\b403\b/i.test(message)
  );
}
