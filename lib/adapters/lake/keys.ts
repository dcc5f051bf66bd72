import { MkpiError } from '../../domain/errors.js';

/**
 * Orders keys by Unicode code point (= UTF-8 byte order), which is the order S3 lists in.
 * String's default `<` compares UTF-16 units and would order astral characters differently
 * on a local lake than on S3.
 */
export function compareKeys(a: string, b: string): number {
  if (a === b) return 0;
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * Refuses keys that could address something outside the lake root. Keys come from config and
 * from file names found in the lake, so a hostile "../../etc/x" must never reach the filesystem
 * (the rejects output in particular is written under a key built from input file names).
 * Backslashes count as separators too, so the same key is judged alike on every platform.
 */
export function assertSafeKey(key: string, what = 'key', allowEmpty = false): void {
  if (typeof key !== 'string' || (!allowEmpty && key.length === 0)) {
    throw new MkpiError('MKPI_CONFIG', `Invalid lake ${what}: empty`);
  }
  if (key.includes('\0')) {
    throw new MkpiError('MKPI_CONFIG', `Invalid lake ${what} ${JSON.stringify(key)}: contains a NUL byte`);
  }
  if (key.startsWith('/') || key.startsWith('\\') || /^[A-Za-z]:/.test(key)) {
    throw new MkpiError('MKPI_CONFIG', `Invalid lake ${what} ${JSON.stringify(key)}: must be relative to the lake root`, {
      hint: 'Lake keys are relative, like "streams/archived/".',
    });
  }
  if (key.split(/[\\/]/).some((segment) => segment === '..')) {
    throw new MkpiError('MKPI_CONFIG', `Invalid lake ${what} ${JSON.stringify(key)}: ".." segments are not allowed`, {
      hint: 'Lake keys may not point outside the lake root.',
    });
  }
}
