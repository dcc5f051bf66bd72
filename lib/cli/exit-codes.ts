// The one place where error codes become exit statuses (sysexits, as Airflow and cron see them).

import type { ErrorCode } from '../domain/errors.js';

export const EXIT = {
  OK: 0,
  USAGE: 64,
  DATAERR: 65,
  NOINPUT: 66,
  UNAVAILABLE: 69,
  SOFTWARE: 70,
  IOERR: 74,
  TEMPFAIL: 75,
  CONFIG: 78,
  SIGINT: 130,
  SIGTERM: 143,
} as const;

const BY_CODE: Record<ErrorCode, number> = {
  MKPI_USAGE: EXIT.USAGE,
  MKPI_CONFIG: EXIT.CONFIG,
  MKPI_SCHEMA: EXIT.DATAERR,
  MKPI_BAD_ROWS: EXIT.DATAERR,
  MKPI_ORPHAN_ROWS: EXIT.DATAERR,
  MKPI_UNEXPECTED_DATES: EXIT.DATAERR,
  MKPI_NO_INPUT: EXIT.NOINPUT,
  MKPI_LEDGER_FILE_MISSING: EXIT.NOINPUT,
  MKPI_LAKE_UNAVAILABLE: EXIT.UNAVAILABLE,
  MKPI_WAREHOUSE_UNAVAILABLE: EXIT.UNAVAILABLE,
  MKPI_EMBEDDED_PG: EXIT.UNAVAILABLE,
  MKPI_LOCKED: EXIT.TEMPFAIL,
  MKPI_RETRY_LATER: EXIT.TEMPFAIL,
  MKPI_ARCHIVE_FAILED: EXIT.IOERR,
  MKPI_INTERRUPTED: EXIT.SIGINT,
  MKPI_INTERNAL: EXIT.SOFTWARE,
};

export function exitCodeFor(code: string | undefined, signal?: NodeJS.Signals): number {
  if (code === undefined) return EXIT.OK;
  if (code === 'MKPI_INTERRUPTED') return signal === 'SIGTERM' ? EXIT.SIGTERM : EXIT.SIGINT;
  return BY_CODE[code as ErrorCode] ?? EXIT.SOFTWARE;
}
