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
  userIds?: 'string' | 'numeric';
  lateTail?: { prevDays: number; fraction: number };
}

export interface NamedShape {
  /** Short id, for --shapes and the tables. */
  id: string;
  title: string;
  shape: Shape;
  /** Behind `--full` (or named in `--shapes`): minutes per run, gigabytes of state. */
  big?: boolean;
  /** Also timed with `--workers 0` (one reader) in the same alternation: the split target. */
  oneReader?: boolean;
}

const FULL: NamedShape[] = [
  {
    id: 'daily',
    title: 'one day, 300k listens, one file (the daily run)',
    shape: { songs: 114_000, users: 50_000, streams: 300_000, files: 1, days: 1, seed: 42 },
  },
  {
    id: 'daily-num',
    title: 'the daily file with plain numeric user IDs (1, 2, …)',
    shape: { songs: 114_000, users: 50_000, streams: 300_000, files: 1, days: 1, seed: 42, userIds: 'numeric' },
  },
  {
    id: 'bigfile',
    title: '5M listens in one file',
    shape: { songs: 114_000, users: 50_000, streams: 5_000_000, files: 1, days: 3, seed: 42 },
    oneReader: true,
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
    id: 'ordered-num',
    title: 'the time-ordered lake with plain numeric user IDs',
    shape: { songs: 114_000, users: 50_000, streams: 5_000_000, files: 5, days: 3, seed: 42, userIds: 'numeric' },
  },
  {
    id: 'largecat',
    title: 'a large catalogue: 1M songs, 1M users, 5M listens in one day',
    shape: { songs: 1_000_000, users: 1_000_000, streams: 5_000_000, files: 5, days: 1, seed: 42 },
  },
  {
    id: 'backfill20',
    title: 'backfill: 10M listens, 10 files, random order over 20 days',
    shape: { songs: 114_000, users: 50_000, streams: 10_000_000, files: 10, days: 20, seed: 42, order: 'random' },
    big: true,
  },
  {
    id: 'backfill90',
    title: 'backfill: 30M listens, 30 files over 90 days, each in time order',
    shape: { songs: 114_000, users: 50_000, streams: 30_000_000, files: 30, days: 90, seed: 42 },
    big: true,
  },
];

/** The same shapes, small: a smoke run of every code path in well under a minute. */
const QUICK: NamedShape[] = [
  { id: 'daily', title: 'one day, one file (quick)', shape: { songs: 5_000, users: 2_000, streams: 30_000, files: 1, days: 1, seed: 42 } },
  {
    id: 'daily-num',
    title: 'one day, numeric user IDs (quick)',
    shape: { songs: 5_000, users: 2_000, streams: 30_000, files: 1, days: 1, seed: 42, userIds: 'numeric' },
  },
  {
    id: 'bigfile',
    title: 'one file (quick)',
    shape: { songs: 5_000, users: 2_000, streams: 200_000, files: 1, days: 3, seed: 42 },
    oneReader: true,
  },
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
    id: 'ordered-num',
    title: 'time order, numeric user IDs (quick)',
    shape: { songs: 5_000, users: 2_000, streams: 200_000, files: 5, days: 3, seed: 42, userIds: 'numeric' },
  },
  {
    id: 'largecat',
    title: 'a larger catalogue (quick)',
    shape: { songs: 50_000, users: 50_000, streams: 200_000, files: 5, days: 1, seed: 42 },
  },
  {
    id: 'backfill20',
    title: 'backfill, random order over 20 days (quick)',
    shape: { songs: 5_000, users: 2_000, streams: 400_000, files: 10, days: 20, seed: 42, order: 'random' },
    big: true,
  },
  {
    id: 'backfill90',
    title: 'backfill, 30 files over 90 days (quick)',
    shape: { songs: 5_000, users: 2_000, streams: 600_000, files: 30, days: 90, seed: 42 },
    big: true,
  },
];

/** Every shape; the big ones only with `full` (`--full`). */
export function shapes(quick: boolean, full = true): NamedShape[] {
  return (quick ? QUICK : FULL).filter((s) => full || !s.big);
}

/** The lake that the sections other than the shape table use (the differential, scaling, e2e, S3). */
export function mainShape(quick: boolean): Shape {
  return shapes(quick).find((s) => s.id === 'ordered')!.shape;
}

/**
 * The late-tail sequence (issue 12): one file a day, 300k listens, each also carrying 2 % of each
 * of the previous 7 days' listens; run day by day into PostgreSQL with archiving.
 */
export function lateTailShape(quick: boolean): Shape {
  const days = quick ? 5 : 9;
  const base = quick ? { songs: 5_000, users: 2_000, perDay: 30_000 } : { songs: 114_000, users: 50_000, perDay: 300_000 };
  return {
    songs: base.songs,
    users: base.users,
    streams: base.perDay * days,
    files: days,
    days,
    seed: 42,
    lateTail: { prevDays: 7, fraction: 0.02 },
  };
}

export const MESSY: Shape = { songs: 5_000, users: 2_000, streams: 150_000, files: 4, days: 3, seed: 7 };

export function lakeName(s: Shape, messy = false): string {
  const order = s.order === 'random' ? '-random' : '';
  const ids = s.userIds === 'numeric' ? '-numids' : '';
  const late = s.lateTail ? `-late${s.lateTail.prevDays}x${s.lateTail.fraction}` : '';
  return `lake-${s.songs}s-${s.users}u-${s.streams}l-${s.files}f-${s.days}d-${s.seed}${order}${ids}${late}${messy ? '-messy' : ''}`;
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

/** The stream files of a lake, in listing order. */
export function streamFiles(dir: string): string[] {
  return readdirSync(join(dir, 'streams'))
    .filter((f) => f.endsWith('.csv'))
    .sort()
    .map((f) => join(dir, 'streams', f));
}
