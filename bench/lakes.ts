// The benchmark's lakes: the shapes users have (issue 12), generated deterministically at bench
// time by generate-lake.ts and cached under tmp/bench/ (a marker file says a lake is complete).

import { copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateLake, type LakeSpec } from './generate-lake.js';

export interface Shape {
  songs: number;
  users: number;
  streams: number;
  files: number;
  days: number;
  seed: number;
  order?: 'time' | 'random';
}

export interface NamedShape {
  /** Short id, for --shapes and the tables. */
  id: string;
  title: string;
  shape: Shape;
}

const FULL: NamedShape[] = [
  {
    id: 'daily',
    title: 'one day, 300k listens, one file (the daily run)',
    shape: { songs: 114_000, users: 50_000, streams: 300_000, files: 1, days: 1, seed: 42 },
  },
  {
    id: 'bigfile',
    title: '5M listens in one file',
    shape: { songs: 114_000, users: 50_000, streams: 5_000_000, files: 1, days: 3, seed: 42 },
  },
  {
    id: 'shuffled',
    title: '5M listens, 5 files, random time order over 3 days',
    shape: { songs: 114_000, users: 50_000, streams: 5_000_000, files: 5, days: 3, seed: 42, order: 'random' },
  },
  {
    id: 'ordered',
    title: "5M listens, 5 files, each in time order (the benchmark's lake)",
    shape: { songs: 114_000, users: 50_000, streams: 5_000_000, files: 5, days: 3, seed: 42 },
  },
  {
    id: 'largecat',
    title: 'a large catalogue: 1M songs, 1M users, 5M listens in one day',
    shape: { songs: 1_000_000, users: 1_000_000, streams: 5_000_000, files: 5, days: 1, seed: 42 },
  },
];

/** The same shapes, small: a smoke run of every code path in well under a minute. */
const QUICK: NamedShape[] = [
  { id: 'daily', title: 'one day, one file (quick)', shape: { songs: 5_000, users: 2_000, streams: 30_000, files: 1, days: 1, seed: 42 } },
  { id: 'bigfile', title: 'one file (quick)', shape: { songs: 5_000, users: 2_000, streams: 200_000, files: 1, days: 3, seed: 42 } },
  {
    id: 'shuffled',
    title: 'random time order, 5 files (quick)',
    shape: { songs: 5_000, users: 2_000, streams: 200_000, files: 5, days: 3, seed: 42, order: 'random' },
  },
  {
    id: 'ordered',
    title: 'time order, 5 files (quick)',
    shape: { songs: 5_000, users: 2_000, streams: 200_000, files: 5, days: 3, seed: 42 },
  },
  {
    id: 'largecat',
    title: 'a larger catalogue (quick)',
    shape: { songs: 50_000, users: 50_000, streams: 200_000, files: 5, days: 1, seed: 42 },
  },
];

export function shapes(quick: boolean): NamedShape[] {
  return quick ? QUICK : FULL;
}

/** The lake that the sections other than the shape table use (the differential, scaling, e2e, S3). */
export function mainShape(quick: boolean): Shape {
  return shapes(quick).find((s) => s.id === 'ordered')!.shape;
}

export const MESSY: Shape = { songs: 5_000, users: 2_000, streams: 150_000, files: 4, days: 3, seed: 7 };

export function lakeName(s: Shape, messy = false): string {
  const order = s.order === 'random' ? '-random' : '';
  return `lake-${s.songs}s-${s.users}u-${s.streams}l-${s.files}f-${s.days}d-${s.seed}${order}${messy ? '-messy' : ''}`;
}

/** Generates the lake once; later runs reuse it. */
export function ensureLake(cache: string, s: Shape, log: (m: string) => void, messy = false): string {
  const dir = join(cache, lakeName(s, messy));
  const marker = join(dir, '.complete');
  if (existsSync(marker)) return dir;
  rmSync(dir, { recursive: true, force: true });
  log(`generating ${dir} (${s.streams.toLocaleString('en-US')} listens; cached for later runs)`);
  const spec: LakeSpec = { out: dir, ...s, messy, startDate: '2024-06-01' };
  generateLake(spec);
  writeFileSync(marker, JSON.stringify(spec) + '\n');
  return dir;
}

export function lakeBytes(dir: string): { streams: number; all: number } {
  let streams = 0;
  for (const f of readdirSync(join(dir, 'streams'))) if (f.endsWith('.csv')) streams += statSync(join(dir, 'streams', f)).size;
  return { streams, all: streams + statSync(join(dir, 'songs.csv')).size + statSync(join(dir, 'users.csv')).size };
}

/** A fresh copy of a lake for a run that archives: hard links (archiving links and unlinks, never writes in place). */
export function copyLake(src: string, dst: string): void {
  rmSync(dst, { recursive: true, force: true });
  const walk = (from: string, to: string) => {
    mkdirSync(to, { recursive: true });
    for (const e of readdirSync(from, { withFileTypes: true })) {
      if (e.name === '.complete') continue;
      const a = join(from, e.name);
      const b = join(to, e.name);
      if (e.isDirectory()) walk(a, b);
      else {
        try {
          linkSync(a, b);
        } catch {
          copyFileSync(a, b);
        }
      }
    }
  };
  walk(src, dst);
}
