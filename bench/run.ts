// The benchmark (issues 3 and 12), and a differential test: `make bench` / `npm run bench`
// (node dist/bench/run.js [--quick] [--full] [--runs N] [--shapes daily,bigfile,…] [--skip …] [--docs FILE]
// [--render tmp/bench/results.json]: the docs again from a run's figures, without measuring).
//
//   1. the lake shapes users have (bench/lakes.ts: the daily file, with string and with numeric
//      user IDs, one big file, shuffled rows, the time-ordered lake, a large catalogue; with
//      --full the 10M / 20-day and 30M / 90-day backfills), each generated once and cached under
//      tmp/bench/: musickpi `compute --dry-run` against a PostgreSQL started beforehand, the
//      spec-complete DuckDB peer and the simplest-user-query DuckDB peer (bench/duckdb-kpis.ts,
//      2 threads), and the physical floors (bench/floors.ts: reading the bytes from page cache,
//      the parser alone on both cores), each a child process, alternating, 1 warm-up + N runs
//      each: median whole-process wall, CPU, peak RSS, the ratio against the faster peer and the
//      distance to each floor; the one-big-file shape also with `--workers 0` (one reader);
//   2. the differential check: the KPI tables musickpi loads into PostgreSQL must equal the
//      complete peer's (spec §6: relative tolerance 1e-9) on every shape and on a generated messy
//      lake; any difference fails the benchmark loudly (exit 1);
//   3. end to end: `run` (load + archive) into a fresh database on a fresh copy of the daily lake
//      and of the time-ordered lake, against compute-only;
//   4. the late-tail sequence (bench/late-tail.ts): one `run` a day, day k / day 1, and the tables
//      equal to one run over all the files;
//   5. memory scaling: peak RSS at 5M and at 20M listens, same shape;
//   6. the lake on S3 (an in-process s3rver) against the local lake;
//   7. the parser comparison (bench/parsers.ts).
// --skip takes shape-diff, messy, scale, e2e, late, s3, parsers; --shapes names the shapes to run,
// big ones included. Progress goes to stderr, figures to stdout, and everything into
// docs/performance.md (full runs only; --quick writes tmp/bench/performance-quick.md and uses
// small lakes of the same shapes).
//
// Peak RSS: each child runs with `--import dist/bench/rss-probe.js`, which prints
// process.resourceUsage().maxRSS (getrusage: the whole process, worker threads included, over
// its whole life) as it exits. No sampling, no dependence on GNU time.

import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { startEmbedded, type EmbeddedServer } from '../lib/adapters/warehouse/embedded/index.js';
import { catFloor, duckdb, floor, musickpi, runChild, type ChildRun, type DuckOut } from './children.js';
import { GENRE_KEY, HOURLY_KEY, diffTables, tableRows } from './differential.js';
import { BIN, BenchFailure, CACHE, DIST_BENCH, DOCS, FULL, QUICK, RENDER, RUNS, SHAPES, SKIP, THREADS, log, out } from './env.js';
import { MESSY, copyLake, ensureLake, lakeBytes, lateTailShape, mainShape, shapes, streamFiles } from './lakes.js';
import { lateTail } from './late-tail.js';
import {
  machine,
  printDifferential,
  printE2e,
  printLateTail,
  printS3,
  printScale,
  printShape,
  printTargets,
  renderDocs,
  type Results,
  type ShapeResult,
} from './report.js';
import { S3_CREDS, dropDatabase, newDatabase, rawGet, startS3, uploadLake } from './services.js';
import { avgTimings, fmtMb, fmtS, median, type Series } from './stats.js';

const MAIN = mainShape(QUICK);
const SCALE = 4; // the memory-scaling lake has SCALE times the listens

/** Whether the simple peer's tables equal the complete one's (they should on the clean lakes). */
function sameTables(a: DuckOut, b: DuckOut): boolean {
  for (const [t, key] of [
    ['hourly', HOURLY_KEY],
    ['genre', GENRE_KEY],
  ] as const) {
    if (diffTables(t, key, a[t], b[t]).diffs.length > 0) return false;
  }
  return true;
}

async function main(): Promise<void> {
  if (RENDER !== undefined) {
    // JSON wrote the NaNs of unmeasured series (the cat floor's memory) as null.
    const res = JSON.parse(readFileSync(RENDER, 'utf8'), (k, v: unknown) => (v === null && /^\d+$/.test(k) ? NaN : v)) as Results;
    printTargets(res);
    writeFileSync(DOCS, renderDocs(res));
    log(`wrote ${DOCS} from ${RENDER}`);
    return;
  }
  for (const f of ['rss-probe.js', 'duckdb-kpis.js', 'parsers.js', 'floors.js']) {
    if (!existsSync(join(DIST_BENCH, f)))
      throw new BenchFailure(`${join(DIST_BENCH, f)} is missing: run \`npm run build\` first (make bench does)`);
  }
  mkdirSync(CACHE, { recursive: true });
  const res: Results = {
    date: new Date().toISOString(),
    machine: machine(),
    loadBefore: os.loadavg(),
    shape: MAIN,
    bytes: { streams: 0, all: 0 },
    rows: MAIN.streams,
    shapes: [],
    differential: [],
  };
  if (res.loadBefore[0] > 0.5)
    log(
      `warning: load average ${res.loadBefore[0].toFixed(2)}: other processes compete for the ${os.availableParallelism()} cores; figures will be noisy`,
    );

  const lake = ensureLake(CACHE, MAIN, log);
  res.bytes = lakeBytes(lake);
  const messy = SKIP.has('messy') ? undefined : ensureLake(CACHE, MESSY, log, true);
  const big = SKIP.has('scale') ? undefined : ensureLake(CACHE, { ...MAIN, streams: MAIN.streams * SCALE }, log);

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

    // 1. Every shape: musickpi, the two DuckDB peers and the floors, alternating.
    let lastDuck: DuckOut | undefined;
    const push = (series: Series, run: ChildRun) => {
      series.walls.push(run.wallMs);
      series.rss.push(run.maxRssMb);
      series.cpu.push(run.cpuMs);
    };
    for (const named of shapes(QUICK, FULL || SHAPES !== undefined)) {
      if (SHAPES ? !SHAPES.has(named.id) : named.big && !FULL) continue;
      const dir = ensureLake(CACHE, named.shape, log);
      const files = streamFiles(dir);
      const sr: ShapeResult = {
        id: named.id,
        title: named.title,
        shape: named.shape,
        bytes: lakeBytes(dir),
        mk: { name: 'musickpi compute --dry-run', walls: [], rss: [], cpu: [] },
        duck: { name: `DuckDB complete, ${THREADS} threads`, walls: [], rss: [], cpu: [] },
        simple: { name: `DuckDB simple, ${THREADS} threads`, walls: [], rss: [], cpu: [] },
        read: { name: 'floor: read the stream files (Node, one thread)', walls: [], rss: [], cpu: [] },
        cat: { name: 'floor: cat the stream files > /dev/null', walls: [], rss: [], cpu: [] },
        parse: { name: `floor: CsvParser alone, ${THREADS} worker threads`, walls: [], rss: [], cpu: [] },
        oneReader: named.oneReader
          ? { name: 'musickpi compute --dry-run --workers 0 (one reader)', walls: [], rss: [], cpu: [] }
          : undefined,
        mkTimings: {},
        simpleEqual: true,
      };
      const duckOut = join(work, `duck-${named.id}.json`);
      const simpleOut = join(work, `simple-${named.id}.json`);
      const timings: Record<string, number>[] = [];
      let complete: DuckOut | undefined;
      for (let i = 0; i <= RUNS; i++) {
        const label = `${named.id} ${i === 0 ? 'warm-up' : `run ${i}/${RUNS}`}`;
        const m = await musickpi(computeArgs(dir), `musickpi compute (${named.id})`);
        if (m.report.totals.rowsRead !== named.shape.streams)
          throw new BenchFailure(`musickpi read ${m.report.totals.rowsRead} rows of ${named.id}, expected ${named.shape.streams}`);
        const d = await duckdb(dir, duckOut);
        const s = await duckdb(dir, simpleOut, true);
        const rd = await floor('read', files);
        const ct = await catFloor(files);
        const ps = await floor('parse', files);
        const one = sr.oneReader
          ? await musickpi([...computeArgs(dir), '--workers', '0'], `musickpi compute --workers 0 (${named.id})`)
          : undefined;
        if (rd.bytes !== sr.bytes.streams)
          throw new BenchFailure(`read floor: ${rd.bytes} bytes of ${named.id}, expected ${sr.bytes.streams}`);
        complete = d.result;
        log(
          `${label}: musickpi ${fmtS(m.run.wallMs)} (CPU ${fmtS(m.run.cpuMs)}) ${fmtMb(m.run.maxRssMb)}, ` +
            `DuckDB ${fmtS(d.run.wallMs)} (CPU ${fmtS(d.run.cpuMs)}) ${fmtMb(d.run.maxRssMb)}, ` +
            `simple ${fmtS(s.run.wallMs)} (CPU ${fmtS(s.run.cpuMs)}) ${fmtMb(s.run.maxRssMb)}, ` +
            `floors: read ${fmtS(rd.run.wallMs)} / cat ${fmtS(ct.wallMs)} / parse ${fmtS(ps.run.wallMs)}` +
            (one ? `, one reader ${fmtS(one.run.wallMs)}` : '') +
            `; load ${os.loadavg()[0].toFixed(2)}`,
        );
        if (d.result.completeRows !== m.report.totals.completeRows) {
          throw new BenchFailure(
            `DIFFERENTIAL CHECK FAILED (${named.id}): complete rows: musickpi ${m.report.totals.completeRows}, DuckDB ${d.result.completeRows}`,
          );
        }
        if (i === 0) {
          sr.simpleEqual = sameTables(d.result, s.result);
          continue;
        }
        push(sr.mk, m.run);
        push(sr.duck, d.run);
        push(sr.simple, s.run);
        push(sr.read, rd.run);
        push(sr.cat, ct);
        push(sr.parse, ps.run);
        if (one && sr.oneReader) push(sr.oneReader, one.run);
        timings.push(m.report.timings);
      }
      sr.mkTimings = avgTimings(timings);
      res.shapes.push(sr);
      printShape(sr);
      if (named.id === 'ordered') lastDuck = complete;
      if (!SKIP.has('shape-diff') && named.id !== 'ordered') {
        log(`differential check: ${named.id}`);
        await diffAgainst(named.id, dir, complete!);
      }
    }

    // 2. The differential check, through PostgreSQL: the tables `run` loads against DuckDB's.
    log('differential check: default lake');
    if (lastDuck === undefined) lastDuck = (await duckdb(lake, join(work, 'duck.json'))).result;
    await diffAgainst('default', lake, lastDuck);
    if (messy) {
      log('differential check: messy lake');
      const d = await duckdb(messy, join(work, 'duck-messy.json'));
      await diffAgainst('messy', messy, d.result, ['--max-bad-rows', '1000000000']);
    }
    printDifferential(res);

    if (!SKIP.has('e2e')) {
      // compute-only and run alternate, so that the ratio compares runs made under the same conditions.
      // With `existing`, each timed run goes into a database whose schema an earlier run made (a
      // copy of a template database `musickpi init` set up, as every daily run but the first
      // finds it), and a run into a fresh database (the schema created) alternates with it.
      const e2e = async (tag: string, lakeDir: string, files: number, existing = false) => {
        const template = existing ? `bench_e2e_${tag}_tpl` : undefined;
        if (template) {
          const url = await newDatabase(server!.url, template);
          const init = await runChild(BIN, ['init', '--warehouse', url, '--quiet']);
          if (init.code !== 0) throw new BenchFailure(`musickpi init failed: ${init.stderr}`);
        }
        const first: number[] = [];
        const walls: number[] = [];
        const computeWalls: number[] = [];
        const rss: number[] = [];
        const cpu: number[] = [];
        const timings: Record<string, number>[] = [];
        for (let i = 0; i <= RUNS; i++) {
          const c = await musickpi(computeArgs(lakeDir), 'musickpi compute');
          const name = `bench_e2e_${i}`;
          const url = await newDatabase(server!.url, name, template);
          // The same path every time, as a daily run's lake is: the dimension cache is keyed by the
          // lake's root, so a new folder per run would time a first run (parse and write the
          // cache) instead of a daily one. The warm-up run writes the entry.
          const copy = join(work, `e2e-${tag}`);
          copyLake(lakeDir, copy);
          const m = await musickpi(['run', '--warehouse', url, '--lake', copy], 'musickpi run');
          if (!m.report.loaded || (m.report.archived?.length ?? 0) !== files)
            throw new BenchFailure('musickpi run did not load and archive every file');
          log(
            `e2e ${tag} ${i === 0 ? 'warm-up' : `run ${i}/${RUNS}`}: compute-only ${fmtS(c.run.wallMs)}, run ${fmtS(m.run.wallMs)} ` +
              `${fmtMb(m.run.maxRssMb)} ${JSON.stringify(m.report.timings)}`,
          );
          await dropDatabase(server!.url, name);
          rmSync(copy, { recursive: true, force: true });
          if (template) {
            const fresh = await newDatabase(server!.url, name);
            copyLake(lakeDir, copy);
            const f = await musickpi(['run', '--warehouse', fresh, '--lake', copy], 'musickpi run (fresh database)');
            log(`e2e ${tag}: run into a fresh database ${fmtS(f.run.wallMs)}`);
            await dropDatabase(server!.url, name);
            rmSync(copy, { recursive: true, force: true });
            if (i > 0) first.push(f.run.wallMs);
          }
          if (i === 0) continue;
          walls.push(m.run.wallMs);
          computeWalls.push(c.run.wallMs);
          rss.push(m.run.maxRssMb);
          cpu.push(m.run.cpuMs);
          timings.push(m.report.timings);
        }
        if (template) await dropDatabase(server!.url, template);
        return { run: walls, compute: median(computeWalls), timings: avgTimings(timings), rss, cpu, ...(template ? { first } : {}) };
      };
      const daily = shapes(QUICK).find((x) => x.id === 'daily')!.shape;
      res.e2eDaily = await e2e('daily', ensureLake(CACHE, daily, log), daily.files, true);
      res.e2e = await e2e('main', lake, MAIN.files);
      printE2e(res);
    }

    // The late-tail sequence: one run a day into PostgreSQL, archive included.
    if (!SKIP.has('late')) {
      const shape = lateTailShape(QUICK);
      const dir = ensureLake(CACHE, shape, log);
      log(`late-tail sequence: ${shape.files} days, 3 repetitions`);
      res.lateTail = await lateTail(server.url, dir, work, 3);
      res.lateTailShape = shape;
      printLateTail(res);
    }

    // 3. Memory scaling.
    if (big) {
      log(`memory scaling: ${(MAIN.streams * SCALE).toLocaleString('en-US')} listens`);
      const small = await musickpi(computeArgs(lake), 'musickpi compute');
      const m = await musickpi(computeArgs(big), 'musickpi compute (scaled lake)');
      log(`scaled: ${fmtS(m.run.wallMs)} ${fmtMb(m.run.maxRssMb)}`);
      res.scale = {
        small: small.run.maxRssMb,
        smallWall: small.run.wallMs,
        big: m.run.maxRssMb,
        bigListens: MAIN.streams * SCALE,
        bigWall: m.run.wallMs,
      };
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

    res.loadAfter = os.loadavg();
    printTargets(res);
    mkdirSync(dirname(DOCS), { recursive: true });
    writeFileSync(DOCS, renderDocs(res));
    // The raw figures too, so that a later look can start from them rather than from the rendered doc.
    writeFileSync(join(CACHE, QUICK ? 'results-quick.json' : 'results.json'), JSON.stringify(res) + '\n');
    log(`wrote ${DOCS}`);
  } finally {
    if (s3) await s3.stop().catch(() => undefined);
    if (server) await server.stop().catch(() => undefined);
    rmSync(pgHome, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }
}

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
