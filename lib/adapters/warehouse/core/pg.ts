// The pg module, loaded on first use. On Node 20, pg's load-time check for a Cloudflare Worker
// (pg/lib/stream.js) finds no global `navigator` and falls back to probing `new Response(…)`,
// which loads Node's bundled fetch implementation: ~20 ms of every start-up, for nothing (the
// probe then answers "not Cloudflare", as it does with a navigator). Node 21+ define `navigator`
// themselves; on Node 20 one is defined only while pg loads, and removed again.

import { createRequire } from 'node:module';
import type Pg from 'pg';

let loaded: typeof Pg | undefined;

export function pgModule(): typeof Pg {
  if (loaded) return loaded;
  const shim = !('navigator' in globalThis);
  if (shim) {
    Object.defineProperty(globalThis, 'navigator', {
      value: { userAgent: `Node.js/${process.versions.node.split('.')[0]}` },
      configurable: true,
      enumerable: false,
      writable: true,
    });
  }
  try {
    loaded = createRequire(import.meta.url)('pg') as typeof Pg;
  } finally {
    if (shim) delete (globalThis as { navigator?: unknown }).navigator;
  }
  return loaded;
}
