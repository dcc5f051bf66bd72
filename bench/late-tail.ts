// The late-tail sequence (issue 12): daily files that each also carry 2 % of each of the previous
// 7 days' listens, delivered one a day and run one `musickpi run` a day into PostgreSQL with
// archiving, as a scheduler would. Each day's run is timed (whole process); the sequence is
// repeated and the medians per day reported as day k / day 1. The tables at the end must equal
// those of one run over all the files (the differential check of the late-file rule).

import { copyFileSync, linkSync, mkdirSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import { musickpi } from './children.js';
import { GENRE_KEY, HOURLY_KEY, diffTables, tableRows } from './differential.js';
import { BenchFailure, log } from './env.js';
import { copyLake, streamFiles } from './lakes.js';
import { dropDatabase, newDatabase } from './services.js';
import { fmtMb, fmtS } from './stats.js';

export interface LateTailDay {
  /** Whole-process wall of each repetition's run of this day. */
  walls: number[];
  rss: number[];
  cpu: number[];
  rows: number;
  rereadFiles: number;
  rereadBytes: number;
  /** Late dates whose saved state stood in for their loaded files. */
  restored: number;
  timings: Record<string, number>[];
}

export interface LateTailResult {
  /** The default: dates' states saved and read back (lib/stages/date-state.ts). */
  days: LateTailDay[];
  /** The same sequence with --no-date-state (the archived files re-read), alternating with it. */
  reread: LateTailDay[];
  repeats: number;
  differential: { table: string; rows: number; maxRel: number }[];
}

function link(from: string, to: string): void {
  try {
    linkSync(from, to);
  } catch {
    copyFileSync(from, to);
  }
}

const VARIANTS = [
  { name: 'states', flags: [] as string[] },
  { name: 'no-states', flags: ['--no-date-state'] },
] as const;

export async function lateTail(adminUrl: string, lake: string, work: string, repeats: number): Promise<LateTailResult> {
  const files = streamFiles(lake);
  const newDays = (): LateTailDay[] =>
    files.map(() => ({ walls: [], rss: [], cpu: [], rows: 0, rereadFiles: 0, rereadBytes: 0, restored: 0, timings: [] }));
  const results = { states: newDays(), 'no-states': newDays() };
  const differential: LateTailResult['differential'] = [];
  for (let rep = 0; rep < repeats; rep++) {
    const setups = [];
    for (const v of VARIANTS) {
      const name = `bench_late_${rep}_${v.name.replace('-', '_')}`;
      const url = await newDatabase(adminUrl, name);
      const dir = join(work, `late-${rep}-${v.name}`);
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(join(dir, 'streams'), { recursive: true });
      for (const f of ['songs.csv', 'users.csv']) link(join(lake, f), join(dir, f));
      setups.push({ v, name, url, dir });
    }
    for (let k = 0; k < files.length; k++) {
      // Alternating which variant runs first, so that a disturbance hits both.
      for (const { v, url, dir } of (k + rep) % 2 === 0 ? setups : [...setups].reverse()) {
        link(files[k], join(dir, 'streams', basename(files[k])));
        const m = await musickpi(
          ['run', '--warehouse', url, '--lake', dir, ...v.flags],
          `musickpi run (late tail, ${v.name}, day ${k + 1})`,
        );
        if (!m.report.loaded || (m.report.archived?.length ?? 0) !== 1)
          throw new BenchFailure(`late tail, ${v.name}, day ${k + 1}: not loaded and archived`);
        const reread = m.report.reread ?? [];
        const d = results[v.name][k];
        d.walls.push(m.run.wallMs);
        d.rss.push(m.run.maxRssMb);
        d.cpu.push(m.run.cpuMs);
        d.rows = m.report.totals.rowsRead;
        d.rereadFiles = reread.length;
        d.rereadBytes = reread.reduce((a, r) => a + r.bytes, 0);
        d.restored = m.report.dateState?.restored.length ?? 0;
        d.timings.push(m.report.timings);
        log(
          `late tail ${rep + 1}/${repeats}, ${v.name}, day ${k + 1}: ${fmtS(m.run.wallMs)} (CPU ${fmtS(m.run.cpuMs)}) ${fmtMb(m.run.maxRssMb)}, ` +
            `${reread.length} archived file(s) re-read, ${d.restored} date(s) read back`,
        );
      }
    }
    if (rep === 0) {
      // The differential: one run over all the files, into a fresh database, against both sequences.
      const allName = 'bench_late_all';
      const allUrl = await newDatabase(adminUrl, allName);
      const copy = join(work, 'late-all');
      copyLake(lake, copy);
      await musickpi(['run', '--warehouse', allUrl, '--lake', copy], 'musickpi run (late tail, all files at once)');
      for (const { v, url } of setups) {
        for (const [table, key] of [
          ['hourly_kpis', HOURLY_KEY],
          ['genre_level_kpis', GENRE_KEY],
        ] as const) {
          const seq = await tableRows(url, table);
          const once = await tableRows(allUrl, table);
          const { diffs, maxRel } = diffTables(table, key, seq, once);
          if (diffs.length > 0)
            throw new BenchFailure(
              `DIFFERENTIAL CHECK FAILED (late tail, ${v.name}: day by day vs all at once, ${table}):\n  ${diffs.join('\n  ').replaceAll('DuckDB', 'all at once').replaceAll('musickpi', 'day by day')}`,
            );
          if (v.name === 'states') differential.push({ table, rows: seq.length, maxRel });
        }
      }
      await dropDatabase(adminUrl, allName);
      rmSync(copy, { recursive: true, force: true });
    }
    for (const { name, dir } of setups) {
      await dropDatabase(adminUrl, name);
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return { days: results.states, reread: results['no-states'], repeats, differential };
}
