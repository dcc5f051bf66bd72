// The warehouse engine's warehouse half (core/engine.ts) on the embedded PostgreSQL and on the
// Redshift stand-in: hand-written normalized parts, KPIs computed in SQL compared with values
// worked out by hand and with the stream engine's reducers on the same rows.

import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';

import { type Readable } from 'node:stream';

import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { expect } from 'chai';
import pg from 'pg';

import { MkpiError } from '../../lib/domain/errors.js';
import { type LedgerEntry } from '../../lib/domain/ledger.js';
import { dateToDay } from '../../lib/domain/listen-time.js';
import { type PartRef } from '../../lib/domain/shards.js';
import {
  type EngineFile,
  type EngineLoadBatch,
  type EngineParts,
  type EngineReject,
  type EngineStageInput,
  type LoadStep,
  type WarehouseEngine,
} from '../../lib/domain/warehouse.js';
import { type EngineOptions } from '../../lib/adapters/warehouse/core/engine.js';
import { PostgresWarehouse } from '../../lib/adapters/warehouse/postgres/postgres-warehouse.js';
import { RedshiftWarehouse } from '../../lib/adapters/warehouse/redshift/redshift-warehouse.js';
import { add, create, result } from '../../lib/stages/reduce.js';
import { DimensionsBuilder } from '../../lib/stages/validate.js';
import { freshDatabase, testDatabaseUrl } from '../support/pg.js';
import { s3rverOptions, startRedshiftStandIn, type RedshiftStandIn } from '../support/redshift/index.js';
import { startS3, type TestS3 } from '../support/s3.js';

type Cell = string | number | null;
type Row = Cell[];

const SCHEMA = 'reporting_schema';
const PARTS_BUCKET = 'engine-parts';
const RS_STAGE_BUCKET = 'engine-rs-stage';

function csvField(v: Cell): string {
  if (v === null) return '';
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

function gz(rows: Row[]): Buffer {
  return gzipSync(Buffer.from(rows.map((r) => r.map(csvField).join(',') + '\n').join(''), 'utf8'));
}

interface EngineWh {
  openEngine(opts?: EngineOptions): Promise<WarehouseEngine>;
  init(): Promise<void>;
  close(): Promise<void>;
}

interface Target {
  /** A warehouse on a fresh database; `url` reaches that database on the backing PostgreSQL. */
  open(opts?: { init?: boolean }): Promise<{ wh: EngineWh; url: string }>;
  put(key: string, body: Buffer): Promise<void>;
  input(parts: EngineParts, files: EngineFile[]): EngineStageInput;
}

interface PartData {
  listens?: Row[][];
  songs?: Row[];
  artists?: Row[];
  users?: Row[];
}

let seq = 0;

async function writeParts(t: Target, data: PartData): Promise<EngineParts> {
  const tag = `p${++seq}`;
  const one = async (kind: string, i: number, rows: Row[]): Promise<PartRef> => {
    const key = `${tag}/${kind}-${String(i).padStart(5, '0')}.csv.gz`;
    const body = gz(rows);
    await t.put(key, body);
    return { key, bytes: body.length, rows: rows.length };
  };
  return {
    listens: await Promise.all((data.listens ?? []).map((rows, i) => one('listens', i, rows))),
    songs: data.songs ? [await one('songs', 0, data.songs)] : [],
    artists: data.artists ? [await one('artists', 0, data.artists)] : [],
    users: data.users ? [await one('users', 0, data.users)] : [],
  };
}

// ---- The hand-written data set ----

const SONGS: Row[] = [
  [2, 't1', 'pop', '200000'],
  [3, 't2', 'pop', '100000'],
  [4, 't3', 'rock', '300000'],
  [5, 't1', 'jazz', '999'], // duplicate of line 2: left out
  [6, 't4', 'rock', '150000.5'],
  [7, 't5', 'pop', '250000'],
  [8, 'B7', 'indie', '1000'],
  [9, 'a7', 'indie', '3000'],
  [10, 't2', 'jazz', '1'], // duplicate of line 3
  [11, 't1', 'jazz', '1'], // duplicate of line 2
];
const ARTISTS: Row[] = [
  [2, 't1', 'Zed'],
  [2, 't1', 'apple'],
  [3, 't2', 'Émile'],
  [3, 't2', 'Zed'],
  [4, 't3', 'apple'],
  [5, 't1', 'Nobody'],
  [7, 't5', 'Émile'],
  [8, 'B7', 'X'],
  [9, 'a7', 'Y'],
  [10, 't2', 'Nobody'],
  [11, 't1', 'Nobody'],
];
const USERS: Row[] = [
  [2, 'u1', 0],
  [3, 'u2', 1],
  [4, 'u3', null],
  [5, 'u1', 5], // duplicate of line 2: u1 stays 18-25
  [6, 'u4', 1],
  [7, 'u5', 0],
];
const DIMS: PartData = { songs: SONGS, artists: ARTISTS, users: USERS };

const FILE_A: EngineFile = { id: 1, fileKey: 'streams/a.csv', fingerprint: 'fa' };
const FILE_B: EngineFile = { id: 1, fileKey: 'streams/b.csv', fingerprint: 'fb' };
const FILE_C: EngineFile = { id: 2, fileKey: 'streams/c.csv', fingerprint: 'fc' };

const l = (file: number, line: number, user: string, track: string, date: string, hour: number): Row => [
  file,
  line,
  user,
  track,
  date,
  hour,
];

const LISTENS_A: Row[][] = [
  [
    l(1, 2, 'u1', 't1', '2024-01-01', 10),
    l(1, 3, 'u2', 't2', '2024-01-01', 10),
    l(1, 4, 'u3', 't3', '2024-01-01', 10),
    l(1, 5, 'u4', 't2', '2024-01-01', 10),
    l(1, 6, 'u1', 't3', '2024-01-01', 10),
    l(1, 7, 'u9', 't9', '2024-01-01', 10), // unknown_track (the user is unknown too)
    l(1, 8, 'u9', 't1', '2024-01-01', 10), // unknown_user
  ],
  [
    l(1, 9, 'u1', 't9', '2024-01-01', 11), // unknown_track
    l(1, 10, 'u5', 't3', '2024-01-01', 11),
    l(1, 11, 'u5', 't5', '2024-01-01', 11),
    l(1, 12, 'u3', 't4', '2024-01-01', 12),
    l(1, 13, 'u1', 'a7', '2024-01-02', 0),
    l(1, 14, 'u2', 'B7', '2024-01-02', 0),
  ],
];
const LISTENS_B: Row[][] = [
  [l(1, 2, 'u4', 'a7', '2024-01-02', 5), l(1, 3, 'u4', 'a7', '2024-01-02', 5), l(1, 4, 'u4', 'zz', '2024-01-02', 5)],
];
const LISTENS_C: Row[][] = [[l(2, 2, 'u1', 't9', '2024-01-03', 1), l(2, 3, 'u1', 't1', '2024-01-03', 1)]];

interface Hourly {
  listen_date: string;
  listen_hour: number;
  unique_listeners: number;
  listen_counts: number;
  top_artist: string | null;
  avg_sessions_per_user: number;
  diversity_index: number;
  most_engaged_age_group: string | null;
}
interface Genre {
  listen_date: string;
  track_genre: string;
  listen_count: number;
  popularity_index: number;
  average_duration: number;
  most_popular_track_id: string;
}

const h = (date: string, hour: number, users: number, count: number, top: string | null, tracks: number, age: string | null): Hourly => ({
  listen_date: date,
  listen_hour: hour,
  unique_listeners: users,
  listen_counts: count,
  top_artist: top,
  avg_sessions_per_user: count / users,
  diversity_index: tracks / count,
  most_engaged_age_group: age,
});
const g = (date: string, genre: string, count: number, total: number, durationSum: number, top: string): Genre => ({
  listen_date: date,
  track_genre: genre,
  listen_count: count,
  popularity_index: count / total,
  average_duration: durationSum / count / 1000,
  most_popular_track_id: top,
});

// Zed and apple tie at 3 (Z before a by code point); Émile sorts after both. u1 counts as 18-25
// (its duplicate row says 66+), tying 26-35 at 2: the youngest wins.
const HOURLY_JAN1: Hourly[] = [
  h('2024-01-01', 10, 4, 5, 'Zed', 3, '18-25'),
  h('2024-01-01', 11, 1, 2, 'apple', 2, '18-25'),
  h('2024-01-01', 12, 1, 1, null, 1, null),
];
const HOURLY_JAN2_A: Hourly[] = [h('2024-01-02', 0, 2, 2, 'X', 2, '18-25')];
const GENRE_JAN1: Genre[] = [g('2024-01-01', 'pop', 4, 8, 650000, 't2'), g('2024-01-01', 'rock', 4, 8, 1050000.5, 't3')];
// B7 and a7 tie at 1: B before a by code point.
const GENRE_JAN2_A: Genre[] = [g('2024-01-02', 'indie', 2, 2, 4000, 'B7')];
// After file B (late, 2024-01-02 only): a7 3 listens, B7 1.
const HOURLY_JAN2_AB: Hourly[] = [...HOURLY_JAN2_A, h('2024-01-02', 5, 1, 2, 'Y', 1, '26-35')];
const GENRE_JAN2_AB: Genre[] = [g('2024-01-02', 'indie', 4, 4, 10000, 'a7')];

function entry(f: EngineFile, dates: string[], rows: number): LedgerEntry {
  return {
    fileKey: f.fileKey,
    fingerprint: f.fingerprint,
    contentHash: null,
    size: 100,
    rows,
    dates,
    tables: ['hourly', 'genre'],
    runId: 'r',
    archivedKey: null,
  };
}

async function exec<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(sql)).rows;
  } finally {
    await c.end();
  }
}

async function hourlyRows(url: string): Promise<Hourly[]> {
  return exec<Hourly>(
    url,
    `SELECT listen_date::text AS listen_date, listen_hour, unique_listeners, listen_counts, top_artist,
            avg_sessions_per_user, diversity_index, most_engaged_age_group
       FROM ${SCHEMA}.hourly_kpis ORDER BY listen_date, listen_hour`,
  );
}

async function genreRows(url: string): Promise<Genre[]> {
  return exec<Genre>(
    url,
    `SELECT listen_date::text AS listen_date, track_genre, listen_count, popularity_index, average_duration, most_popular_track_id
       FROM ${SCHEMA}.genre_level_kpis ORDER BY listen_date, track_genre COLLATE "C"`,
  );
}

function close(a: number, b: number): boolean {
  return a === b || Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b));
}

function expectRows<T extends object>(actual: T[], expected: T[], what: string): void {
  expect(actual.length, `${what}: ${JSON.stringify(actual)}`).to.equal(expected.length);
  actual.forEach((row, i) => {
    const e = expected[i] as Record<string, unknown>;
    for (const [k, v] of Object.entries(row as Record<string, unknown>)) {
      const want = e[k];
      if (typeof want === 'number' && !Number.isInteger(want)) {
        expect(close(Number(v), want), `${what}[${i}].${k}: ${String(v)} vs ${want}`).to.equal(true);
      } else {
        expect(v, `${what}[${i}].${k} in ${JSON.stringify(row)}`).to.deep.equal(want);
      }
    }
  });
}

async function state(url: string) {
  const [hourly, genre, ledger, listens, files] = await Promise.all([
    hourlyRows(url),
    genreRows(url),
    exec(url, `SELECT file_key, fingerprint, retracted_at IS NOT NULL AS retracted FROM ${SCHEMA}.musickpi_ledger ORDER BY 1, 2`),
    exec(url, `SELECT file_id, line, user_id, track_id, listen_date::text AS d, listen_hour FROM ${SCHEMA}.musickpi_listens ORDER BY 1, 2`),
    exec(url, `SELECT file_id, file_key, fingerprint, rows FROM ${SCHEMA}.musickpi_listen_files ORDER BY 1`),
  ]);
  return { hourly, genre, ledger, listens, files };
}

async function collect(it: AsyncIterable<EngineReject>): Promise<EngineReject[]> {
  const out: EngineReject[] = [];
  for await (const r of it) out.push(r);
  return out;
}

function contract(name: string, target: () => Target) {
  describe(`warehouse engine on ${name}`, function () {
    this.timeout(120_000);
    const open: EngineWh[] = [];
    afterEach(async () => {
      for (const wh of open.splice(0)) await wh.close();
    });

    async function setup(opts: { init?: boolean } = {}) {
      const t = target();
      const r = await t.open(opts);
      open.push(r.wh);
      return { t, ...r };
    }

    async function stageAndLoad(
      t: Target,
      wh: EngineWh,
      data: PartData,
      files: EngineFile[],
      batch: Omit<EngineLoadBatch, 'runId'>,
      opts?: EngineOptions,
    ) {
      const engine = await wh.openEngine(opts);
      try {
        const staged = await engine.stage(t.input(await writeParts(t, data), files));
        const loaded = await engine.load({ runId: 'run-1', ...batch });
        return { staged, loaded };
      } finally {
        await engine.close();
      }
    }

    const loadA = (t: Target, wh: EngineWh, onStep?: (s: LoadStep) => void, dryRun?: boolean) =>
      stageAndLoad(t, wh, { ...DIMS, listens: LISTENS_A }, [FILE_A], {
        hourly: ['2024-01-01', '2024-01-02'],
        genre: ['2024-01-01', '2024-01-02'],
        store: [FILE_A],
        ledger: [entry(FILE_A, ['2024-01-01', '2024-01-02'], 13)],
        onStep,
        dryRun,
      });

    it('init creates the listens tables, idempotently, and adds them to a schema from before them', async () => {
      const { wh, url } = await setup();
      await wh.init();
      await exec(url, `DROP TABLE ${SCHEMA}.musickpi_listens; DROP TABLE ${SCHEMA}.musickpi_listen_files`);
      await wh.init();
      const cols = await exec<{ table_name: string; column_name: string }>(
        url,
        `SELECT table_name, column_name FROM information_schema.columns
          WHERE table_schema = '${SCHEMA}' AND table_name IN ('musickpi_listens', 'musickpi_listen_files') ORDER BY table_name, ordinal_position`,
      );
      expect(cols.map((c) => `${c.table_name}.${c.column_name}`)).to.deep.equal([
        'musickpi_listen_files.file_id',
        'musickpi_listen_files.file_key',
        'musickpi_listen_files.fingerprint',
        'musickpi_listen_files.rows',
        'musickpi_listen_files.run_id',
        'musickpi_listen_files.stored_at',
        'musickpi_listens.file_id',
        'musickpi_listens.line',
        'musickpi_listens.user_id',
        'musickpi_listens.track_id',
        'musickpi_listens.listen_date',
        'musickpi_listens.listen_hour',
      ]);
    });

    it('computes the KPIs: first valid line wins, artists credited once, code point ties, youngest age group, orphans', async () => {
      const { t, wh, url } = await setup();
      const steps: LoadStep[] = [];
      const { staged, loaded } = await loadA(t, wh, (s) => void steps.push(s));
      expect(staged.songs).to.deep.equal({ valid: 10, duplicates: 3 });
      expect(staged.users).to.deep.equal({ valid: 6, duplicates: 1 });
      expect([...staged.orphans]).to.deep.equal([[1, { unknown_track: 2, unknown_user: 1 }]]);
      expect([...staged.complete]).to.deep.equal([[1, 10]]);
      expect(steps).to.deep.equal(['mid-copy', 'staged', 'mid-merge', 'merged', 'before-commit', 'committed']);
      expect(loaded).to.deep.equal({ hourlyRowsWritten: 4, genreRowsWritten: 3, hourlyRowsDeleted: 0, genreRowsDeleted: 0 });
      const s = await state(url);
      expectRows(s.hourly, [...HOURLY_JAN1, ...HOURLY_JAN2_A], 'hourly');
      expectRows(s.genre, [...GENRE_JAN1, ...GENRE_JAN2_A], 'genre');
      expect(s.ledger).to.deep.equal([{ file_key: 'streams/a.csv', fingerprint: 'fa', retracted: false }]);
      // Every listen kept, orphans included, under the warehouse's own file id.
      expect(s.listens).to.have.length(13);
      expect(s.listens[5]).to.deep.include({ file_id: 1, user_id: 'u9', track_id: 't9', d: '2024-01-01', listen_hour: 10 });
      expect(s.files).to.deep.equal([{ file_id: 1, file_key: 'streams/a.csv', fingerprint: 'fa', rows: '13' }]);
    });

    it('lists the rejects in order (songs, users by line, orphans by file and line), page by page', async () => {
      const { t, wh } = await setup();
      for (const pageSize of [2, 1, 10_000]) {
        const engine = await wh.openEngine({ pageSize });
        try {
          const parts = await writeParts(t, { ...DIMS, listens: [...LISTENS_C, ...LISTENS_A] });
          await engine.stage(t.input(parts, [FILE_A, FILE_C]));
          expect(await collect(engine.rejects()), `page size ${pageSize}`).to.deep.equal([
            { kind: 'duplicate', dimension: 'songs', line: 5, id: 't1', firstLine: 2 },
            { kind: 'duplicate', dimension: 'songs', line: 10, id: 't2', firstLine: 3 },
            { kind: 'duplicate', dimension: 'songs', line: 11, id: 't1', firstLine: 2 },
            { kind: 'duplicate', dimension: 'users', line: 5, id: 'u1', firstLine: 2 },
            { kind: 'orphan', fileId: 1, line: 7, reason: 'unknown_track', userId: 'u9', trackId: 't9' },
            { kind: 'orphan', fileId: 1, line: 8, reason: 'unknown_user', userId: 'u9', trackId: 't1' },
            { kind: 'orphan', fileId: 1, line: 9, reason: 'unknown_track', userId: 'u1', trackId: 't9' },
            { kind: 'orphan', fileId: 2, line: 2, reason: 'unknown_track', userId: 'u1', trackId: 't9' },
          ]);
        } finally {
          await engine.close();
        }
      }
    });

    it('recomputes a late file’s date over stored and staged listens; a retracted file’s listens no longer count', async () => {
      const { t, wh, url } = await setup();
      await loadA(t, wh);
      const engine = await wh.openEngine();
      try {
        expect(await engine.storedFiles([FILE_A, FILE_B, FILE_A])).to.deep.equal(new Set(['streams/a.csv\nfa']));
      } finally {
        await engine.close();
      }
      const late = await stageAndLoad(t, wh, { ...DIMS, listens: LISTENS_B }, [FILE_B], {
        hourly: ['2024-01-02'],
        genre: ['2024-01-02'],
        store: [FILE_B],
        ledger: [entry(FILE_B, ['2024-01-02'], 3)],
      });
      expect(late.loaded).to.deep.equal({ hourlyRowsWritten: 2, genreRowsWritten: 1, hourlyRowsDeleted: 1, genreRowsDeleted: 1 });
      let s = await state(url);
      expectRows(s.hourly, [...HOURLY_JAN1, ...HOURLY_JAN2_AB], 'hourly after the late file');
      expectRows(s.genre, [...GENRE_JAN1, ...GENRE_JAN2_AB], 'genre after the late file');
      expect(s.files.map((f) => [f.file_id, f.file_key])).to.deep.equal([
        [1, 'streams/a.csv'],
        [2, 'streams/b.csv'],
      ]);
      expect(s.listens).to.have.length(16);

      // Retracted: its stored listens stay, and no longer count.
      await stageAndLoad(t, wh, DIMS, [], {
        hourly: ['2024-01-02'],
        genre: ['2024-01-02'],
        store: [],
        ledger: [],
        retract: [{ fileKey: FILE_B.fileKey, fingerprint: FILE_B.fingerprint }],
      });
      s = await state(url);
      expectRows(s.hourly, [...HOURLY_JAN1, ...HOURLY_JAN2_A], 'hourly after the retraction');
      expectRows(s.genre, [...GENRE_JAN1, ...GENRE_JAN2_A], 'genre after the retraction');
      expect(s.ledger.map((x) => x.retracted)).to.deep.equal([false, true]);

      // Staging file A again replaces its stored listens (same key and fingerprint), under a new id.
      await loadA(t, wh);
      s = await state(url);
      expect(s.files.map((f) => [f.file_id, f.file_key])).to.deep.equal([
        [2, 'streams/b.csv'],
        [3, 'streams/a.csv'],
      ]);
      expect(s.listens).to.have.length(16);
      expectRows(s.hourly, [...HOURLY_JAN1, ...HOURLY_JAN2_A], 'hourly after file A again');
    });

    it('a dry run computes the counts and writes nothing, even on a schema never initialised', async () => {
      for (const init of [true, false]) {
        const { t, wh, url } = await setup({ init });
        const steps: LoadStep[] = [];
        const { loaded } = await loadA(t, wh, (s) => void steps.push(s), true);
        expect(loaded).to.deep.equal({ hourlyRowsWritten: 4, genreRowsWritten: 3, hourlyRowsDeleted: 0, genreRowsDeleted: 0 });
        if (init) {
          const s = await state(url);
          expect([s.hourly, s.genre, s.ledger, s.listens, s.files]).to.deep.equal([[], [], [], [], []]);
        } else {
          expect(await exec(url, `SELECT 1 FROM information_schema.schemata WHERE schema_name = '${SCHEMA}'`)).to.deep.equal([]);
        }
      }
    });

    it('a real load on a schema without the listens tables is refused (MKPI_CONFIG), telling to run init', async () => {
      const { t, wh } = await setup({ init: false });
      let err: unknown;
      await loadA(t, wh).catch((e: unknown) => (err = e));
      expect((err as MkpiError | undefined)?.code).to.equal('MKPI_CONFIG');
    });

    it('a dry run after a load counts the rows it would replace', async () => {
      const { t, wh, url } = await setup();
      await loadA(t, wh);
      const before = await state(url);
      const { loaded } = await loadA(t, wh, undefined, true);
      expect(loaded).to.deep.equal({ hourlyRowsWritten: 4, genreRowsWritten: 3, hourlyRowsDeleted: 4, genreRowsDeleted: 3 });
      expect(await state(url)).to.deep.equal(before);
    });

    for (const at of ['mid-copy', 'staged', 'mid-merge', 'merged', 'before-commit'] as LoadStep[]) {
      it(`a failure at '${at}' rolls everything back: tables, ledger, stored listens`, async () => {
        const { t, wh, url } = await setup();
        await loadA(t, wh);
        const before = await state(url);
        let err: unknown;
        try {
          await stageAndLoad(t, wh, { ...DIMS, listens: LISTENS_B }, [FILE_B], {
            hourly: ['2024-01-02'],
            genre: ['2024-01-02'],
            store: [FILE_B],
            ledger: [entry(FILE_B, ['2024-01-02'], 3)],
            onStep: (s) => {
              if (s === at) throw new MkpiError('MKPI_INTERRUPTED', `stop at ${s}`);
            },
          });
        } catch (e) {
          err = e;
        }
        expect((err as MkpiError | undefined)?.code).to.equal('MKPI_INTERRUPTED');
        expect(await state(url)).to.deep.equal(before);
      });
    }

    it('gives the stream engine’s tables on random rows', async () => {
      const { t, wh, url } = await setup();
      // mulberry32: a fixed seed, so that a failure reproduces.
      let seed = 12345;
      const rnd = (n: number) => {
        seed = (seed + 0x6d2b79f5) | 0;
        let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
        x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
        return Math.floor((((x ^ (x >>> 14)) >>> 0) / 4294967296) * n);
      };
      const trackIds = ['t1', 'T1', 'a', 'B', 'é', 'Z', '\u{1F600}', '\uFF21', 'x,y', 'q"q'];
      const genres = ['pop', 'Rock', 'électro'];
      const names = ['a', 'B', 'é', 'Zed', '\u{1F600}', '\uFF21'];
      const songs: Row[] = [];
      const artists: Row[] = [];
      for (let i = 0; i < 14; i++) {
        const line = i + 2;
        const id = trackIds[rnd(trackIds.length)];
        songs.push([line, id, genres[rnd(genres.length)], String(1000 + rnd(300_000))]);
        const credited = new Set<string>();
        for (let k = rnd(4); k > 0; k--) credited.add(names[rnd(names.length)]);
        for (const n of credited) artists.push([line, id, n]);
      }
      const userIds = ['u1', 'U1', 'u2', 'ü', 'u3', 'u4', 'u5'];
      const users: Row[] = [];
      for (let i = 0; i < 9; i++) users.push([i + 2, userIds[rnd(userIds.length)], rnd(8) === 0 ? null : rnd(6)]);
      const dates = ['2024-03-01', '2024-03-02', '2024-03-03'];
      const listens: Row[] = [];
      for (let i = 0; i < 400; i++) {
        const track = rnd(10) === 0 ? 'nope' : trackIds[rnd(trackIds.length)];
        const user = rnd(12) === 0 ? 'nobody' : userIds[rnd(userIds.length)];
        listens.push(l(1, i + 2, user, track, dates[rnd(3)], rnd(24)));
      }

      const b = new DimensionsBuilder();
      for (const s of songs) {
        const line = Number(s[0]);
        b.addSong(
          {
            ok: true,
            trackId: String(s[1]),
            genre: String(s[2]),
            durationMs: Number(s[3]),
            artists: artists.filter((a) => a[0] === line).map((a) => String(a[2])),
          },
          line,
        );
      }
      for (const u of users) b.addUser({ ok: true, userId: String(u[1]), ageGroup: u[2] === null ? -1 : Number(u[2]) }, Number(u[0]));
      const d = b.build();
      const st = create(d.trackCount, d.userCount);
      for (const r of listens) {
        const ti = d.songIndex.get(String(r[3]));
        const ui = d.userIndex.get(String(r[2]));
        if (ti === undefined || ui === undefined) continue;
        add(st, dateToDay(String(r[4])) * 24 + Number(r[5]), ti, ui, d.userAgeGroup[ui]);
      }
      const want = result(st, d);
      expect(want.hourly.length).to.be.greaterThan(40);

      await stageAndLoad(t, wh, { songs, artists, users, listens: [listens.slice(0, 150), listens.slice(150)] }, [FILE_A], {
        hourly: dates,
        genre: dates,
        store: [FILE_A],
        ledger: [entry(FILE_A, dates, listens.length)],
      });
      expectRows(await hourlyRows(url), want.hourly as Hourly[], 'hourly vs the stream engine');
      expectRows(await genreRows(url), want.genre as Genre[], 'genre vs the stream engine');
    });
  });
}

// ---- PostgreSQL (the embedded server of the test run) ----

let localDir: string;
before(async () => {
  localDir = await fs.mkdtemp(path.join(os.tmpdir(), 'mkpi-engine-'));
});
after(async () => {
  await fs.rm(localDir, { recursive: true, force: true });
});

/** A database whose default collation is ICU's root locale, where 'apple' < 'Émile' < 'Zed': ties must not follow it. */
async function icuDatabase(): Promise<string> {
  const url = await freshDatabase('engine_icu');
  const name = new URL(url).pathname.slice(1);
  const admin = new pg.Client({ connectionString: testDatabaseUrl() });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE "${name}"`);
    await admin.query(`CREATE DATABASE "${name}" LOCALE_PROVIDER icu ICU_LOCALE 'und' LOCALE 'C' TEMPLATE template0`);
  } finally {
    await admin.end();
  }
  return url;
}

const postgresTarget = (database: () => Promise<string>) => (): Target => ({
  async open(opts = {}) {
    const url = await database();
    const wh = new PostgresWarehouse(url, { schema: SCHEMA });
    if (opts.init !== false) await wh.init();
    return { wh, url };
  },
  async put(key, body) {
    const file = path.join(localDir, key);
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, body);
  },
  input(parts, files) {
    return { parts, files, read: (key) => Promise.resolve(createReadStream(path.join(localDir, key))) };
  },
});

contract(
  'PostgreSQL',
  postgresTarget(() => freshDatabase('engine_pg')),
);
contract('PostgreSQL with an ICU default collation', postgresTarget(icuDatabase));

// ---- Redshift (the stand-in over the same PostgreSQL, COPY from s3rver) ----

let s3: TestS3 | undefined;
let rs: RedshiftStandIn | undefined;
const rsWarehouses: RedshiftWarehouse[] = [];

describe('warehouse engine: Redshift stand-in', function () {
  this.timeout(120_000);
  before(async () => {
    s3 = await startS3();
    await s3.bucket(PARTS_BUCKET);
    await s3.bucket(RS_STAGE_BUCKET);
    rs = await startRedshiftStandIn({ backendUrl: testDatabaseUrl(), s3: s3rverOptions(s3.endpoint) });
    // Ties compare bytes on Redshift; the stand-in's backend must do the same for an ORDER BY
    // without COLLATE (the test server is initialised with --locale=C).
    const [row] = await exec<{ datcollate: string }>(
      testDatabaseUrl(),
      'SELECT datcollate FROM pg_database WHERE datname = current_database()',
    );
    expect(row.datcollate).to.equal('C');
  });
  after(async () => {
    for (const wh of rsWarehouses.splice(0)) await wh.close();
    await rs?.stop();
    await s3?.stop();
  });

  const newWarehouse = (db: string) => {
    const wh = new RedshiftWarehouse(rs!.url(db), {
      schema: SCHEMA,
      staging: { uri: `s3://${RS_STAGE_BUCKET}/st/`, s3: { endpoint: s3!.endpoint, forcePathStyle: true, region: 'us-east-1' } },
      iamRole: 'arn:aws:iam::123456789012:role/musickpi-copy',
      env: { PGPASSWORD: rs!.password },
      runId: 'r-engine',
    });
    rsWarehouses.push(wh);
    return wh;
  };

  const target = (): Target => ({
    async open(opts = {}) {
      const url = await freshDatabase('engine_rs');
      const wh = newWarehouse(new URL(url).pathname.slice(1));
      if (opts.init !== false) await wh.init();
      return { wh, url };
    },
    put: (key, body) => s3!.putObject(PARTS_BUCKET, `parts/${key}`, body),
    input(parts, files) {
      return {
        parts,
        files,
        read: async (key) => {
          const r = await s3!.client.send(new GetObjectCommand({ Bucket: PARTS_BUCKET, Key: `parts/${key}` }));
          return r.Body as Readable;
        },
        s3Uri: (key) => `s3://${PARTS_BUCKET}/parts/${key}`,
      };
    },
  });

  let refusedBefore = 0;
  before(() => {
    refusedBefore = rs!.refused.length;
  });

  contract('Redshift', target);

  describe('Redshift only', () => {
    it('refuses staging that is not on S3 (MKPI_CONFIG)', async () => {
      const t = target();
      const { wh } = await t.open();
      const engine = await wh.openEngine();
      try {
        const parts = await writeParts(t, { ...DIMS, listens: LISTENS_A });
        const input = { ...t.input(parts, [FILE_A]), s3Uri: () => undefined };
        let err: unknown;
        await engine.stage(input).catch((e: unknown) => (err = e));
        expect((err as MkpiError | undefined)?.code).to.equal('MKPI_CONFIG');
      } finally {
        await engine.close();
      }
    });

    it('every part arrived by COPY from a manifest, no statement was refused, and no manifest is left', async () => {
      expect(rs!.refused.slice(refusedBefore)).to.deep.equal([]);
      expect(rs!.copies.some((c) => /mkpi_e_listens/i.test(JSON.stringify(c)))).to.equal(true);
      const left = await s3!.client.send(new ListObjectsV2Command({ Bucket: RS_STAGE_BUCKET, Prefix: 'st/' }));
      expect(left.Contents ?? []).to.deep.equal([]);
    });
  });
});
