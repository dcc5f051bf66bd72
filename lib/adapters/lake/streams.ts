import type { Readable } from 'node:stream';

/**
 * Destroys a body stream we will not read, and swallows its later errors: a file stream
 * destroyed before it opened still reports its open failure (the caller may be deleting the
 * file right now), and an unheard 'error' would crash the process.
 */
export function discard(body: Readable): void {
  body.on('error', () => undefined);
  if (!body.destroyed) body.destroy();
}
