// Who musickpi is to lineage and metrics systems: its version (from its own package.json,
// found from this module under lib/ and dist/lib/ alike) and the URL naming it as a producer.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The project's home; OpenLineage producers are URLs of the producing code at a version. */
export const PROJECT_URL = 'https://github.com/musickpi/musickpi';

let versionCache: string | undefined;

export function musickpiVersion(): string {
  if (versionCache !== undefined) return versionCache;
  let dir = dirname(fileURLToPath(import.meta.url));
  // dist/lib/cli/observe/ is four levels below the package root; two to spare.
  for (let i = 0; i < 6; i++) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      try {
        const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === 'musickpi' && typeof pkg.version === 'string') return (versionCache = pkg.version);
      } catch {
        // not ours, or unreadable: keep looking upwards
      }
    }
    dir = dirname(dir);
  }
  return (versionCache = '0.0.0');
}

/** `producer` and every facet's `_producer`. */
export function producerUrl(): string {
  return `${PROJECT_URL}/tree/v${musickpiVersion()}`;
}

/** Where the schemas of musickpi's own facets live (facets.schema.json beside this module). */
export function customFacetSchemaUrl(def: string): string {
  return `${PROJECT_URL}/blob/v${musickpiVersion()}/lib/cli/observe/facets.schema.json#/$defs/${def}`;
}
