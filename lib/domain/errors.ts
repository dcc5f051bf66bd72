// Every failure musickpi reports carries a stable code; the CLI maps codes to exit
// statuses in exactly one place (lib/cli/exit-codes.ts). Tests assert codes, not wording.

export type ErrorCode =
  | 'MKPI_USAGE'
  | 'MKPI_CONFIG'
  | 'MKPI_SCHEMA'
  | 'MKPI_BAD_ROWS'
  | 'MKPI_ORPHAN_ROWS'
  | 'MKPI_UNEXPECTED_DATES'
  | 'MKPI_NO_INPUT'
  | 'MKPI_LEDGER_FILE_MISSING'
  | 'MKPI_LAKE_UNAVAILABLE'
  | 'MKPI_WAREHOUSE_UNAVAILABLE'
  | 'MKPI_EMBEDDED_PG'
  | 'MKPI_LOCKED'
  | 'MKPI_RETRY_LATER'
  | 'MKPI_ARCHIVE_FAILED'
  | 'MKPI_INTERRUPTED'
  | 'MKPI_PLAN_NOT_FOUND'
  | 'MKPI_PLAN_MISMATCH'
  | 'MKPI_PLAN_STALE'
  | 'MKPI_SHARDS_INCOMPLETE'
  | 'MKPI_INTERNAL';

export class MkpiError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, opts: { hint?: string; cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'MkpiError';
    this.code = code;
    this.hint = opts.hint;
    this.details = opts.details;
  }
}

export function isMkpiError(err: unknown): err is MkpiError {
  return err instanceof MkpiError;
}

/** Wraps anything thrown into an MkpiError, keeping MkpiErrors as they are. */
export function toMkpiError(err: unknown, fallback: ErrorCode = 'MKPI_INTERNAL'): MkpiError {
  if (err instanceof MkpiError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new MkpiError(fallback, message, { cause: err });
}

/** Removes the password part of any URL-looking substring, so secrets never reach logs or reports. */
export function redact(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*:)[^@\s]*@/gi, '$1***@');
}
