// The tiny lake (fixtures/tiny, whose KPIs are checked by hand in its README) in memory, plus
// two later stream files, for tests that run the pipeline against the fakes.

import { DEFAULT_LAYOUT, type LakeLayout } from '../../../lib/domain/layout.js';
import type { GenreRow, HourlyRow } from '../../../lib/domain/kpi.js';
import { runPipeline, type PipelineOptions } from '../../../lib/pipeline/pipeline.js';
import type { RunReport } from '../../../lib/pipeline/report.js';
import { MemoryLake, type MemoryLakeOptions } from './memory-lake.js';
import { MemoryWarehouse } from './memory-warehouse.js';

export const SONGS =
  'track_id,artists,album_name,track_genre,duration_ms\n' +
  't1,Alice;Bob,"Album, One",pop,200000\n' +
  't2,Bob,Two,pop,100000\n' +
  't3,Carol,Three,rock,300000.0\n' +
  't1,Zed,Duplicate of t1: ignored,jazz,1\n' +
  't4,,No artist,ambient,60000\n';

export const USERS = 'user_id,user_age,user_country\nu1,22,US\nu2,30,DE\nu3,,FR\nu4,70,BR\n';

const HEADER = 'user_id,track_id,listen_time\n';

/** Stream files by name. a and b are fixtures/tiny's; b's third row is an orphan (t9). */
export const STREAMS = {
  'a.csv':
    HEADER +
    'u1,t1,2024-06-01 10:05:00\n' +
    'u2,t1,2024-06-01 10:15:00\n' +
    'u1,t2,2024-06-01 10:20:00\n' +
    'u3,t3,2024-06-01T10:59:59Z\n' +
    'u4,t4,2024-06-01 11:00:00\n' +
    'u2,t3,2024-06-01 12:30:00+02:00\n',
  'b.csv': HEADER + 'u4,t3,2024-06-02 00:10:00\n' + 'u4,t2,2024-06-01T23:30:00-01:00\n' + 'u1,t9,2024-06-02 00:40:00\n',
  /** A late row for 2024-06-01 (a's date) and a new date. */
  'c.csv': HEADER + 'u2,t2,2024-06-01 11:30:00\n' + 'u1,t3,2024-06-03 08:00:00\n',
  /** Rows for 2024-06-02 (b's date) and 2024-06-03 (c's). */
  'd.csv': HEADER + 'u3,t4,2024-06-03 09:00:00\n' + 'u1,t1,2024-06-02 00:05:00\n',
} as const;

export type StreamName = keyof typeof STREAMS;

/** fixtures/tiny/expected: the KPIs of a.csv and b.csv. */
export const TINY_HOURLY: HourlyRow[] = [
  {
    listen_date: '2024-06-01',
    listen_hour: 10,
    unique_listeners: 3,
    listen_counts: 5,
    top_artist: 'Bob',
    avg_sessions_per_user: 5 / 3,
    diversity_index: 0.6,
    most_engaged_age_group: '18-25',
  },
  {
    listen_date: '2024-06-01',
    listen_hour: 11,
    unique_listeners: 1,
    listen_counts: 1,
    top_artist: null,
    avg_sessions_per_user: 1,
    diversity_index: 1,
    most_engaged_age_group: '66+',
  },
  {
    listen_date: '2024-06-02',
    listen_hour: 0,
    unique_listeners: 1,
    listen_counts: 2,
    top_artist: 'Bob',
    avg_sessions_per_user: 2,
    diversity_index: 1,
    most_engaged_age_group: '66+',
  },
];

export const TINY_GENRE: GenreRow[] = [
  {
    listen_date: '2024-06-01',
    track_genre: 'ambient',
    listen_count: 1,
    popularity_index: 1 / 6,
    average_duration: 60,
    most_popular_track_id: 't4',
  },
  {
    listen_date: '2024-06-01',
    track_genre: 'pop',
    listen_count: 3,
    popularity_index: 0.5,
    average_duration: 500 / 3,
    most_popular_track_id: 't1',
  },
  {
    listen_date: '2024-06-01',
    track_genre: 'rock',
    listen_count: 2,
    popularity_index: 2 / 6,
    average_duration: 300,
    most_popular_track_id: 't3',
  },
  {
    listen_date: '2024-06-02',
    track_genre: 'pop',
    listen_count: 1,
    popularity_index: 0.5,
    average_duration: 100,
    most_popular_track_id: 't2',
  },
  {
    listen_date: '2024-06-02',
    track_genre: 'rock',
    listen_count: 1,
    popularity_index: 0.5,
    average_duration: 300,
    most_popular_track_id: 't3',
  },
];

export const LAYOUT: LakeLayout = DEFAULT_LAYOUT;

/** A memory lake holding songs.csv, users.csv and the named stream files. */
export function tinyLake(files: readonly StreamName[] = ['a.csv', 'b.csv'], opts: MemoryLakeOptions = {}): MemoryLake {
  const lake = new MemoryLake(opts);
  lake.put('songs.csv', SONGS);
  lake.put('users.csv', USERS);
  for (const f of files) lake.put(LAYOUT.streams + f, STREAMS[f]);
  return lake;
}

export function addStreams(lake: MemoryLake, files: readonly StreamName[]): void {
  for (const f of files) lake.put(LAYOUT.streams + f, STREAMS[f]);
}

let runNo = 0;

/** runPipeline with the defaults the CLI uses for `run` (rejects written, no bad rows allowed). */
export function runOn(lake: MemoryLake, warehouse: MemoryWarehouse | undefined, over: Partial<PipelineOptions> = {}): Promise<RunReport> {
  const runId = over.runId ?? `r${String(++runNo).padStart(4, '0')}`;
  return runPipeline({
    command: 'run',
    lake,
    layout: LAYOUT,
    warehouse,
    maxBadRows: 0,
    maxOrphanRows: Infinity,
    rejectsKey: `rejects/${runId}/rejects.csv`,
    runId,
    ...over,
  });
}
