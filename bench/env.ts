// The benchmark's settings and output: where the repository and the built files are, the command
// line (--quick, --full, --runs, --skip, --shapes, --docs, --cache), progress on stderr and figures on stdout.

import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

export function findRepo(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'bin', 'musickpi'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the repository root (package.json + bin/musickpi)');
    dir = up;
  }
  return dir;
}

export const REPO = findRepo();
export const DIST_BENCH = join(REPO, 'dist', 'bench');
export const BIN = join(REPO, 'bin', 'musickpi');
export const PROBE = pathToFileURL(join(DIST_BENCH, 'rss-probe.js')).href;

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    full: { type: 'boolean', default: false },
    runs: { type: 'string' },
    skip: { type: 'string', default: '' },
    docs: { type: 'string' },
    cache: { type: 'string' },
    shapes: { type: 'string' },
    render: { type: 'string' },
  },
});
/** --render FILE: no measuring; the docs rendered again from a results.json a full run wrote (after a change of their text). */
export const RENDER = args.render;
export const QUICK = args.quick ?? false;
/** --full: the big shapes too (the 10M and 30M backfills: minutes a run, gigabytes of state). */
export const FULL = args.full ?? false;
export const RUNS = Math.max(3, Number(args.runs ?? (args.quick ? 3 : 5)));
export const SKIP = new Set(
  (args.skip ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
);
export const CACHE = resolve(REPO, args.cache ?? join('tmp', 'bench'));
export const DOCS = args.docs ? resolve(args.docs) : QUICK ? join(CACHE, 'performance-quick.md') : join(REPO, 'docs', 'performance.md');
export const THREADS = 2;
/** --shapes daily,bigfile,…: only these lake shapes in the shape table, big ones included (default: all but the big ones). */
export const SHAPES = args.shapes === undefined ? undefined : new Set(args.shapes.split(',').map((x) => x.trim()));

// The AWS SDK's notice that its 2027 releases need Node 22 would interrupt the progress lines.
process.removeAllListeners('warning');
process.on('warning', (w) => {
  if (!`${w.name} ${w.message}`.includes('NodeVersionSupportWarning')) process.stderr.write(`warning: ${w.name}: ${w.message}\n`);
});

export const t0 = Date.now();
export function log(msg: string): void {
  process.stderr.write(`[bench ${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
}
export function out(line = ''): void {
  process.stdout.write(line + '\n');
}

export class BenchFailure extends Error {}
