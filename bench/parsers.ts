// Parser throughput on a streams-like file: raw read as the ceiling, fast-csv as the baseline
// this project replaced, and our parser (bare core and stream shell); then the cost of one
// parseListenTime call against the obvious regex + Date.parse. Generates its own input in a
// temp folder, so it runs anywhere: `npx tsx bench/parsers.ts [rows]` or
// `node dist/bench/parsers.js [rows]`.

import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { parse as fastCsvParse } from 'fast-csv';
import { CsvParser, parseCsv } from '../lib/stages/parse.js';
import { parseListenTime } from '../lib/domain/listen-time.js';

const ROWS = Number(process.argv[2] ?? 1_000_000);
const RUNS = 3;
const TRACK_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** Deterministic, so runs and machines compare on the same bytes. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 0x100000000;
  };
}

async function generate(path: string, rows: number): Promise<void> {
  const rand = lcg(42);
  const tracks: string[] = [];
  for (let t = 0; t < 5000; t++) {
    let id = '';
    for (let k = 0; k < 22; k++) id += TRACK_ALPHABET[Math.floor(rand() * TRACK_ALPHABET.length)];
    tracks.push(id);
  }
  const out = createWriteStream(path);
  const base = Date.UTC(2024, 0, 1) / 1000;
  let block = 'user_id,track_id,listen_time\n';
  for (let r = 0; r < rows; r++) {
    const user = String(Math.floor(rand() * 100_000));
    const track = tracks[Math.floor(rand() * tracks.length)];
    const time = new Date((base + Math.floor(rand() * 86400 * 30)) * 1000).toISOString();
    const when = time.slice(0, 10) + ' ' + time.slice(11, 19);
    // About one row in twenty quotes a field, as exports from spreadsheets tend to.
    block += r % 20 === 7 ? `${user},"${track}",${when}\n` : `${user},${track},${when}\n`;
    if (block.length > 1 << 16) {
      if (!out.write(block)) await once(out, 'drain');
      block = '';
    }
  }
  out.end(block);
  await once(out, 'finish');
}

interface Result {
  name: string;
  seconds: number;
  rows: number;
}

async function rawNewlines(path: string): Promise<number> {
  let n = 0;
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    let i = chunk.indexOf(10);
    while (i !== -1) {
      n++;
      i = chunk.indexOf(10, i + 1);
    }
  }
  return n;
}

async function fastCsv(path: string): Promise<number> {
  let n = 0;
  const stream = createReadStream(path).pipe(fastCsvParse({ headers: false }));
  stream.on('data', () => n++);
  await once(stream, 'end');
  return n;
}

async function csvParserCore(path: string): Promise<number> {
  let n = 0;
  const parser = new CsvParser(() => n++);
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) parser.write(chunk);
  parser.end();
  return n;
}

async function parseCsvShell(path: string): Promise<number> {
  let n = 0;
  await parseCsv(createReadStream(path), () => n++);
  return n;
}

async function best(name: string, path: string, run: (path: string) => Promise<number>): Promise<Result> {
  let seconds = Infinity;
  let rows = 0;
  for (let i = 0; i < RUNS; i++) {
    const t0 = process.hrtime.bigint();
    rows = await run(path);
    seconds = Math.min(seconds, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return { name, seconds, rows };
}

const LISTEN_TIME = /^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$/;

/** What parseListenTime replaces; not spec-exact (Date.parse rolls 02-30 over to March). */
function listenTimeViaDate(s: string): number {
  const m = LISTEN_TIME.exec(s);
  if (m === null) return NaN;
  return Math.floor(Date.parse(s.replace(' ', 'T') + (m[2] === undefined ? 'Z' : '')) / 3600000);
}

/** Nanoseconds per call, best of RUNS, over listen_time values sliced from the file like the parser's. */
async function listenTimeNs(path: string, parse: (s: string) => number): Promise<number> {
  const values: string[] = [];
  const parser = new CsvParser((fields) => values.push(fields[2]));
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) parser.write(chunk);
  parser.end();
  values.shift();
  let best = Infinity;
  let sink = 0;
  for (let r = 0; r < RUNS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < values.length; i++) sink += parse(values[i]);
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / values.length);
  }
  if (sink !== sink) throw new Error('a generated listen_time did not parse');
  return best;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'musickpi-bench-'));
  try {
    const path = join(dir, 'streams.csv');
    await generate(path, ROWS);
    const bytes = (await stat(path)).size;
    const mb = bytes / 1e6;
    const results = [
      await best('raw read + count newlines', path, rawNewlines),
      await best('fast-csv 5', path, fastCsv),
      await best('CsvParser (core)', path, csvParserCore),
      await best('parseCsv (pipeline shell)', path, parseCsvShell),
    ];
    console.log(`input: ${ROWS.toLocaleString('en-US')} rows, ${mb.toFixed(1)} MB, best of ${RUNS}, node ${process.version}\n`);
    console.log('| parser | MB/s | M rows/s | rows |');
    console.log('| --- | ---: | ---: | ---: |');
    for (const r of results) {
      console.log(
        `| ${r.name} | ${(mb / r.seconds).toFixed(0)} | ${(r.rows / r.seconds / 1e6).toFixed(2)} | ${r.rows.toLocaleString('en-US')} |`,
      );
    }
    const scanner = await listenTimeNs(path, parseListenTime);
    const viaDate = await listenTimeNs(path, listenTimeViaDate);
    console.log('\n| listen_time parser | ns/call |');
    console.log('| --- | ---: |');
    console.log(`| parseListenTime | ${scanner.toFixed(0)} |`);
    console.log(`| regex + Date.parse | ${viaDate.toFixed(0)} |`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
